"""Seeded random weights for `random:<preset>` models.

We produce them as a *checkpoint*, (Hugging Face name, tensor) pairs, and feed them through the
model's ordinary `load_weights`, so a random model is loaded exactly like a real one and can be
saved as a real folder (`save_random_model`) that Hugging Face transformers loads too.

The checkpoint's names and shapes are read off our own model, as one process would build it:
each parameter is one checkpoint tensor, except the stacked ones (qkv_proj, gate_up_proj), which
are split back into their shards with the model's `stacked_params_mapping`. With tensor
parallelism every rank draws this same whole checkpoint and its layers' weight loaders keep
their shards, so the model is the same for every `tensor_parallel_size`.

Values: norm weights 1 (an RMSNorm's neutral value), everything else normal(0, 0.02), the usual
initializer range, which keeps activations in a sane range through many layers. They are drawn on
the CPU from a fixed seed, so every device and every run gets the same weights.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from minivllm.distributed import as_tensor_parallel_rank, get_tensor_model_parallel_world_size

RANDOM_WEIGHTS_SEED = 0
INIT_STD = 0.02


def checkpoint_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Hugging Face tensor name -> shape, for every tensor a checkpoint of `model` holds."""
    if get_tensor_model_parallel_world_size() > 1:
        # `model` holds this rank's shards; the checkpoint holds whole tensors. Read them off
        # an unsharded copy built on the meta device (shapes only, no memory).
        with as_tensor_parallel_rank(0, 1), torch.device("meta"):
            model = type(model)(model.config)
    shapes = {}
    for name, param in model.named_parameters():
        shards = [(name.replace(param_name, shard_name), shard_id)
                  for param_name, shard_name, shard_id in model.stacked_params_mapping
                  if param_name in name]
        if not shards:
            shapes[name] = tuple(param.shape)
            continue
        layer = model.get_submodule(name.rpartition(".")[0])
        for shard_name, shard_id in shards:
            shapes[shard_name] = (layer.shard_rows(shard_id)[1], *param.shape[1:])
    return shapes


def random_weights(model: nn.Module, seed: int = RANDOM_WEIGHTS_SEED
                   ) -> Iterator[tuple[str, torch.Tensor]]:
    """A float32 random checkpoint for `model` (generated lazily, one tensor at a time)."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    for name, shape in checkpoint_shapes(model).items():
        tensor = torch.empty(shape, dtype=torch.float32, device="cpu")
        if name.endswith("norm.weight"):
            yield name, tensor.fill_(1.0)
        else:
            yield name, tensor.normal_(0.0, INIT_STD, generator=generator)
