"""Layers shared by the models (vLLM: `vllm/model_executor/layers/`), one concept per file."""
