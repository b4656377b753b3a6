"""ModelRegistry: which class implements a config (vLLM: `models/registry.py`).

vLLM keys its registry by the `architectures` entry of config.json ("Qwen3ForCausalLM") and
maps many of them to one implementation; we key by `model_type`, and all four families we
support are the Llama decoder with different switches (see `llama.py`).
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn
from transformers import PretrainedConfig

from minivllm.model_executor.models.llama import LlamaForCausalLM


class ModelRegistry:
    models: ClassVar[dict[str, type[nn.Module]]] = {
        "llama": LlamaForCausalLM,
        "mistral": LlamaForCausalLM,
        "qwen2": LlamaForCausalLM,
        "qwen3": LlamaForCausalLM,
    }

    @classmethod
    def resolve_model_cls(cls, config: PretrainedConfig) -> type[nn.Module]:
        if config.model_type not in cls.models:
            raise ValueError(f"model_type {config.model_type!r} is not supported; supported: "
                             f"{', '.join(sorted(cls.models))}")
        return cls.models[config.model_type]


__all__ = ["LlamaForCausalLM", "ModelRegistry"]
