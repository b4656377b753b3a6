"""The worker side: KV cache memory and the model runner (vLLM's `Worker` / `GPUModelRunner`)."""
