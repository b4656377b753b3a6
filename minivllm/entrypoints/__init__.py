"""User-facing entry points: `LLM` for offline batches (the server lives in minivllm.server)."""
