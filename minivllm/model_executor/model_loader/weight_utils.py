"""Reading checkpoint tensors (vLLM: `model_loader/weight_utils.py`).

A Hugging Face checkpoint is one `model.safetensors` or several shards
(`model-00001-of-00004.safetensors`, ...) listed in `model.safetensors.index.json`, whose
`weight_map` says which file holds each tensor. safetensors files are memory-mapped: a tensor
is read from disk only when asked for, so iterating tensor by tensor never holds the whole
checkpoint in memory twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open

SAFETENSORS_INDEX = "model.safetensors.index.json"


def safetensors_files(folder: Path) -> list[Path]:
    """The checkpoint files of a folder: those the index names, else every *.safetensors."""
    index = folder / SAFETENSORS_INDEX
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [folder / name for name in names]
    else:
        files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors weights in {folder}")
    return files


def safetensors_weights_iterator(folder: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) for every tensor of the checkpoint, on the CPU, in its stored dtype."""
    for file in safetensors_files(folder):
        with safe_open(file, framework="pt", device="cpu") as f:
            for name in f.keys():  # noqa: SIM118 (a safe_open handle is not iterable)
                yield name, f.get_tensor(name)
