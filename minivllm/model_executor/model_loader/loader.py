"""get_model: build the model an EngineConfig names and fill its weights (vLLM:
`model_loader/loader.py DefaultModelLoader`).

1. Read the Hugging Face config and pick the class from `ModelRegistry`.
2. Build the model directly on the target device and in the target dtype (vLLM's
   `set_default_torch_dtype` + `torch.device` context), so no float32 CPU copy is made first.
   Parameters start uninitialised (`torch.empty`); nothing is wasted on a random init.
3. Stream the checkpoint through `model.load_weights`: safetensors files for a folder, seeded
   random tensors for `random:<preset>`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from minivllm.config import EngineConfig
from minivllm.model_executor.model_loader.random_weights import random_weights
from minivllm.model_executor.model_loader.weight_utils import safetensors_weights_iterator
from minivllm.model_executor.models import ModelRegistry
from minivllm.transformers_utils.config import (
    RANDOM_PREFIX,
    get_generation_config,
    get_model_config,
    resolve_model_path,
)
from minivllm.transformers_utils.tokenizer import get_tokenizer


@contextmanager
def set_default_torch_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Floating-point tensors created inside the block get `dtype`."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def get_model(config: EngineConfig) -> nn.Module:
    """The model of `config.model` on `config.device` in `config.torch_dtype`, in eval mode,
    without gradients."""
    hf_config = get_model_config(config.model)
    model_cls = ModelRegistry.resolve_model_cls(hf_config)
    with set_default_torch_dtype(config.torch_dtype), torch.device(config.device):
        model = model_cls(hf_config, attention_backend=config.attention)
    if config.model.startswith(RANDOM_PREFIX):
        model.load_weights(random_weights(model))
    else:
        model.load_weights(safetensors_weights_iterator(resolve_model_path(config.model)))
    return model.requires_grad_(False).eval()


def save_random_model(preset: str, path: str | Path) -> Path:
    """Write `random:<preset>` as a Hugging Face folder (config, float32 safetensors, tokenizer,
    generation config) holding the same weights `get_model` gives it, so other tools
    (transformers, benchmarks' peers) can load the very same model."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model_name = RANDOM_PREFIX + preset
    hf_config = get_model_config(model_name)
    with torch.device("meta"):  # shapes only: no memory
        model = ModelRegistry.resolve_model_cls(hf_config)(hf_config)
    save_file(dict(random_weights(model)), path / "model.safetensors", metadata={"format": "pt"})
    hf_config.save_pretrained(path)
    get_tokenizer(model_name).save_pretrained(path)
    generation_config = get_generation_config(model_name)
    (path / "generation_config.json").write_text(json.dumps(generation_config, indent=2))
    return path
