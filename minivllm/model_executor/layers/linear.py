"""Linear layers split over tensor-parallel ranks (vLLM: `layers/linear.py`).

Megatron-LM's recipe splits a transformer block's two matmuls so that it needs only one
all-reduce per block:

    ColumnParallelLinear   W [out, in] split by output rows: rank r holds out/N rows and computes
                           its out/N columns of y. No communication; the next layer consumes
                           the split (attention runs on this rank's heads, SiluAndMul on this
                           rank's columns of gate and up).
    RowParallelLinear      W split by input columns: rank r multiplies its in/N slice of x (the
                           split the column-parallel layer produced) and gets a *partial sum* of
                           y; an all-reduce adds the N partial sums.

So attention is qkv_proj (column) -> attention on local heads -> o_proj (row, all-reduce), and
the MLP is gate_up_proj (column) -> SiluAndMul -> down_proj (row, all-reduce).

Hugging Face checkpoints store q_proj, k_proj, v_proj (and gate_proj, up_proj) as separate
matrices. vLLM stacks them into one weight at load time, so a decoder layer runs one matmul
instead of three (or two): fewer kernel launches on a GPU, better cache use on a CPU. Each
parameter carries a `weight_loader(param, loaded_weight[, shard_id])` that receives the *whole*
checkpoint tensor and copies this rank's slice of it into its place; the model's `load_weights`
calls it. With one rank every layer holds whole matrices and runs no collective.

The matmul itself is `F.linear` (cuBLAS on a GPU), except in CUDA-graph decode steps of up to
64 sequences, which run the split-K kernel of `triton_skinny_gemm.py`. There a row-parallel
layer built with `sum_in_next_norm` (o_proj, down_proj: an RMSNorm always follows them) returns
the kernel's K slices unsummed, `PartialSums`, and the norm adds them up: the same idea as the
all-reduce of partial sums between ranks, inside one GPU.

Parameters are created with `torch.empty`: the weights come from a checkpoint, so spending time
on a random initialisation (as `nn.Linear` does) would be wasted.
"""

from __future__ import annotations

import torch
from torch import nn

from minivllm.distributed import (
    divide,
    get_tensor_model_parallel_rank,
    get_tensor_model_parallel_world_size,
    tensor_model_parallel_all_reduce,
)
from minivllm.model_executor.layers.triton_skinny_gemm import (
    PartialSums,
    linear,
    runs_skinny,
    skinny_gemm_partial_sums,
)


def default_weight_loader(param: torch.Tensor, loaded_weight: torch.Tensor) -> None:
    """Copy a checkpoint tensor into a parameter of the same shape (casting dtype/device)."""
    if param.shape != loaded_weight.shape:
        raise ValueError(f"checkpoint tensor of shape {tuple(loaded_weight.shape)} does not fit "
                         f"a parameter of shape {tuple(param.shape)}")
    param.data.copy_(loaded_weight)


class LinearBase(nn.Module):
    """y = x W^T (+ b) with this rank's W [output_size_per_partition, input_size_per_partition];
    subclasses decide the partition and give every parameter a `weight_loader`."""

    def __init__(self, input_size_per_partition: int, output_size_per_partition: int,
                 bias: bool) -> None:
        super().__init__()
        self.tp_rank = get_tensor_model_parallel_rank()
        self.tp_size = get_tensor_model_parallel_world_size()
        self.weight = nn.Parameter(torch.empty(output_size_per_partition,
                                               input_size_per_partition))
        self.bias = nn.Parameter(torch.empty(output_size_per_partition)) if bias else None
        for param in self.parameters():
            param.weight_loader = self.weight_loader

    def weight_loader(self, param: torch.Tensor, loaded_weight: torch.Tensor) -> None:
        raise NotImplementedError


class ColumnParallelLinear(LinearBase):
    """Rank r holds output rows [r * out/N, (r+1) * out/N) of W (and of the bias); its output is
    its out/N columns of y."""

    def __init__(self, input_size: int, output_size: int, bias: bool = False) -> None:
        self.output_size_per_partition = divide(output_size,
                                                get_tensor_model_parallel_world_size(),
                                                "output_size")
        super().__init__(input_size, self.output_size_per_partition, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)

    def weight_loader(self, param: torch.Tensor, loaded_weight: torch.Tensor) -> None:
        size = param.shape[0]
        default_weight_loader(param, loaded_weight.narrow(0, self.tp_rank * size, size))


class MergedColumnParallelLinear(ColumnParallelLinear):
    """Several projections of the same input in one matmul (gate_proj and up_proj of the MLP):
    checkpoint shard i has output_sizes[i] rows, of which each rank keeps its 1/N. This rank's
    weight is [gate rows of rank r | up rows of rank r], so SiluAndMul can split it in half."""

    def __init__(self, input_size: int, output_sizes: list[int], bias: bool = False) -> None:
        tp_size = get_tensor_model_parallel_world_size()
        self.output_sizes = [divide(size, tp_size, "output_size") for size in output_sizes]
        super().__init__(input_size, sum(output_sizes), bias)

    def shard_rows(self, shard_id: int | str) -> tuple[int, int]:
        """(first row, number of rows) of checkpoint shard `shard_id` in this rank's weight."""
        return sum(self.output_sizes[:shard_id]), self.output_sizes[shard_id]

    def shard_rank(self, shard_id: int | str) -> int:
        """Which 1/N slice of checkpoint shard `shard_id` this rank keeps."""
        return self.tp_rank

    def weight_loader(self, param: torch.Tensor, loaded_weight: torch.Tensor,
                      shard_id: int | str) -> None:
        offset, size = self.shard_rows(shard_id)
        start = self.shard_rank(shard_id) * size
        default_weight_loader(param.data.narrow(0, offset, size),
                              loaded_weight.narrow(0, start, size))


class QKVParallelLinear(MergedColumnParallelLinear):
    """q, k and v projections in one matmul, split by attention heads: each rank computes
    [q | k | v] for num_heads/N query heads and their KV heads (fewer with GQA).

    With fewer KV heads than ranks (e.g. 1 KV head, 2 ranks) a KV head cannot be split: each is
    *replicated* on tp / total_num_kv_heads consecutive ranks, and rank r keeps KV head
    r // replicas, the one its query heads attend with."""

    def __init__(self, hidden_size: int, head_size: int, total_num_heads: int,
                 total_num_kv_heads: int, bias: bool = False) -> None:
        tp_size = get_tensor_model_parallel_world_size()
        self.num_heads = divide(total_num_heads, tp_size, "Total number of attention heads")
        if total_num_kv_heads >= tp_size:
            self.num_kv_heads = divide(total_num_kv_heads, tp_size, "Total number of KV heads")
            self.num_kv_head_replicas = 1
        elif tp_size % total_num_kv_heads:
            raise ValueError(f"tensor_parallel_size ({tp_size}) must be a multiple of the number "
                             f"of KV heads ({total_num_kv_heads}) when it exceeds it")
        else:
            self.num_kv_heads = 1
            self.num_kv_head_replicas = tp_size // total_num_kv_heads
        q_size = total_num_heads * head_size
        # k and v as if there were num_kv_heads heads per rank: the checkpoint's own size, or,
        # with replicas, one head per rank.
        kv_size = self.num_kv_heads * tp_size * head_size
        super().__init__(hidden_size, [q_size, kv_size, kv_size], bias)

    def shard_rows(self, shard_id: int | str) -> tuple[int, int]:
        return super().shard_rows({"q": 0, "k": 1, "v": 2}[shard_id])

    def shard_rank(self, shard_id: int | str) -> int:
        return self.tp_rank if shard_id == "q" else self.tp_rank // self.num_kv_head_replicas


class RowParallelLinear(LinearBase):
    """Rank r holds input columns [r * in/N, (r+1) * in/N) of W and multiplies its slice of x;
    an all-reduce sums the partial products. The bias is whole on every rank and added once,
    by rank 0 before the sum (as vLLM does).

    With `sum_in_next_norm`, the caller promises that an RMSNorm (`layernorm.RMSNorm`) takes
    the output: on one rank, in decode graphs, the output is then `PartialSums`."""

    def __init__(self, input_size: int, output_size: int, bias: bool = False,
                 sum_in_next_norm: bool = False) -> None:
        self.input_size_per_partition = divide(input_size,
                                               get_tensor_model_parallel_world_size(),
                                               "input_size")
        super().__init__(self.input_size_per_partition, output_size, bias)
        self.sum_in_next_norm = sum_in_next_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor | PartialSums:
        bias = self.bias if self.tp_rank == 0 else None
        if self.sum_in_next_norm and self.tp_size == 1 and runs_skinny(x, self.weight):
            return skinny_gemm_partial_sums(x, self.weight, bias)
        return tensor_model_parallel_all_reduce(linear(x, self.weight, bias))

    def weight_loader(self, param: torch.Tensor, loaded_weight: torch.Tensor) -> None:
        if param is self.bias:
            default_weight_loader(param, loaded_weight)
            return
        size = param.shape[1]
        default_weight_loader(param, loaded_weight.narrow(1, self.tp_rank * size, size))
