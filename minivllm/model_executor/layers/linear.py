"""Linear layers that know how checkpoint tensors load into them (vLLM: `layers/linear.py`).

Hugging Face checkpoints store q_proj, k_proj, v_proj (and gate_proj, up_proj) as separate
matrices. vLLM stacks them into one weight at load time, so a decoder layer runs one matmul
instead of three (or two): fewer kernel launches on a GPU, better cache use on a CPU. Each
parameter carries a `weight_loader(param, loaded_weight, shard_id)` that copies one checkpoint
tensor into its rows of the stacked weight; the model's `load_weights` calls it.

vLLM's versions also shard these weights across GPUs for tensor parallelism (hence "Parallel"
in the names); with one GPU every layer holds the whole matrix.

Parameters are created with `torch.empty`: the weights come from a checkpoint, so spending time
on a random initialisation (as `nn.Linear` does) would be wasted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def default_weight_loader(param: torch.Tensor, loaded_weight: torch.Tensor) -> None:
    """Copy a checkpoint tensor into a parameter of the same shape (casting dtype/device)."""
    if param.shape != loaded_weight.shape:
        raise ValueError(f"checkpoint tensor of shape {tuple(loaded_weight.shape)} does not fit "
                         f"a parameter of shape {tuple(param.shape)}")
    param.data.copy_(loaded_weight)


class ReplicatedLinear(nn.Module):
    """y = x W^T (+ b) with W [output_size, input_size], loaded as is."""

    def __init__(self, input_size: int, output_size: int, bias: bool = False) -> None:
        super().__init__()
        self.input_size = input_size
        self.output_size = output_size
        self.weight = nn.Parameter(torch.empty(output_size, input_size))
        self.bias = nn.Parameter(torch.empty(output_size)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class _StackedLinear(ReplicatedLinear):
    """A Linear whose output rows are several checkpoint matrices stacked; subclasses say where
    shard `shard_id` starts and how many rows it has."""

    def __init__(self, input_size: int, output_size: int, bias: bool) -> None:
        super().__init__(input_size, output_size, bias)
        for param in self.parameters():
            param.weight_loader = self.weight_loader

    def shard_rows(self, shard_id: int | str) -> tuple[int, int]:
        raise NotImplementedError

    def weight_loader(self, param: torch.Tensor, loaded_weight: torch.Tensor,
                      shard_id: int | str) -> None:
        offset, size = self.shard_rows(shard_id)
        default_weight_loader(param.data.narrow(0, offset, size), loaded_weight)


class QKVParallelLinear(_StackedLinear):
    """q, k and v projections in one matmul; output = [q | k | v] with q of num_heads heads and
    k, v of num_kv_heads heads each (fewer with GQA)."""

    def __init__(self, hidden_size: int, head_size: int, total_num_heads: int,
                 total_num_kv_heads: int, bias: bool = False) -> None:
        self.q_size = total_num_heads * head_size
        self.kv_size = total_num_kv_heads * head_size
        super().__init__(hidden_size, self.q_size + 2 * self.kv_size, bias)

    def shard_rows(self, shard_id: int | str) -> tuple[int, int]:
        offsets = {"q": (0, self.q_size), "k": (self.q_size, self.kv_size),
                   "v": (self.q_size + self.kv_size, self.kv_size)}
        return offsets[shard_id]


class MergedColumnParallelLinear(_StackedLinear):
    """Several projections of the same input in one matmul (gate_proj and up_proj of the MLP);
    shard i holds output_sizes[i] rows."""

    def __init__(self, input_size: int, output_sizes: list[int], bias: bool = False) -> None:
        self.output_sizes = output_sizes
        super().__init__(input_size, sum(output_sizes), bias)

    def shard_rows(self, shard_id: int | str) -> tuple[int, int]:
        return sum(self.output_sizes[:shard_id]), self.output_sizes[shard_id]
