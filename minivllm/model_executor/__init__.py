"""Everything that runs the network itself (vLLM: `vllm/model_executor/`).

- `layers/`: the building blocks every decoder shares (RMSNorm, rotary embedding, fused Linear
  layers, SiLU-and-mul), written once and reused by each model.
- `models/`: the model definitions and `ModelRegistry`, which maps a config's `model_type` to
  the class that implements it.
- `model_loader/`: `get_model` builds a model from an `EngineConfig` and streams checkpoint
  tensors into it.
- `sampler.py`: turns logits into next tokens.

This file imports nothing on purpose: `import minivllm.model_executor.sampler` should not pay
for building models.
"""
