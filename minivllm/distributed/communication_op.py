"""The collectives a tensor-parallel model and its driver need (vLLM:
`vllm/distributed/communication_op.py` and `GroupCoordinator` in `parallel_state.py`).

- `tensor_model_parallel_all_reduce`: every rank holds a partial sum of the same tensor (a
  row-parallel layer's output, a vocabulary shard's embeddings); afterwards every rank holds the
  sum. Two per decoder layer: after attention's o_proj and after the MLP's down_proj.
- `tensor_model_parallel_gather`: the LM head's vocabulary shards of the logits, concatenated on
  the driver (rank 0), the only rank that samples.
- `broadcast_tensor_dict`: the driver sends each step's inputs to the workers.
- `all_reduce_min`: the number of KV blocks every rank has room for.

With one rank each is a no-op (or an identity), so single-process code pays nothing.

`record_all_reduce_time` lets a benchmark see how long the all-reduces take.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from minivllm.distributed.parallel_state import (
    get_tensor_model_parallel_rank,
    get_tensor_model_parallel_world_size,
    get_tp_cpu_group,
    get_tp_device_group,
)


@dataclass
class AllReduceStats:
    num_calls: int = 0
    seconds: float = 0.0
    num_bytes: int = 0


_all_reduce_stats: AllReduceStats | None = None


@contextmanager
def record_all_reduce_time() -> Iterator[AllReduceStats]:
    """Time every all-reduce this process runs inside the block (benchmarks only). Each one is
    bracketed by device synchronisations, so the steps measured run a little slower; an
    all-reduce replayed from a CUDA graph runs no Python and is not seen."""
    global _all_reduce_stats
    _all_reduce_stats = stats = AllReduceStats()
    try:
        yield stats
    finally:
        _all_reduce_stats = None


def _synchronize(tensor: torch.Tensor) -> None:
    if tensor.is_cuda:
        torch.cuda.synchronize(tensor.device)


def tensor_model_parallel_all_reduce(input_: torch.Tensor) -> torch.Tensor:
    """Sum `input_` over the ranks, in place; returns it."""
    if get_tensor_model_parallel_world_size() == 1:
        return input_
    stats = _all_reduce_stats
    if stats is None or (input_.is_cuda and torch.cuda.is_current_stream_capturing()):
        dist.all_reduce(input_, group=get_tp_device_group())
        return input_
    _synchronize(input_)  # time the all-reduce, not the kernels queued before it
    start = time.perf_counter()
    dist.all_reduce(input_, group=get_tp_device_group())
    _synchronize(input_)
    stats.seconds += time.perf_counter() - start
    stats.num_calls += 1
    stats.num_bytes += input_.numel() * input_.element_size()
    return input_


def tensor_model_parallel_gather(input_: torch.Tensor, dst: int = 0,
                                 dim: int = -1) -> torch.Tensor | None:
    """Concatenate every rank's `input_` along `dim` on rank `dst`; other ranks get None."""
    world_size = get_tensor_model_parallel_world_size()
    if world_size == 1:
        return input_
    input_ = input_.contiguous()
    is_dst = get_tensor_model_parallel_rank() == dst
    gather_list = [torch.empty_like(input_) for _ in range(world_size)] if is_dst else None
    dist.gather(input_, gather_list, dst=dst, group=get_tp_device_group())
    return torch.cat(gather_list, dim=dim) if is_dst else None


def all_reduce_min(value: int) -> int:
    """The smallest of every rank's `value`, on every rank (over the CPU group)."""
    if get_tensor_model_parallel_world_size() == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.long)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN, group=get_tp_cpu_group())
    return int(tensor.item())


@dataclass
class _TensorMeta:
    """Stands in for a tensor in the pickled part of a broadcast dict."""
    dtype: torch.dtype
    shape: torch.Size


def broadcast_tensor_dict(tensor_dict: dict[str, Any] | None = None, src: int = 0,
                          device: torch.device | str = "cpu") -> dict[str, Any] | None:
    """Send `tensor_dict` from rank `src` to every rank (vLLM's `broadcast_tensor_dict`).

    Its small values (ints, None, shapes and dtypes of the tensors) travel pickled over the CPU
    group; the tensors themselves over the device group, so GPU tensors go GPU to GPU without a
    copy through the host. Receivers pass `tensor_dict=None` and get the dict, with its tensors
    on `device`. The source may send None itself: every rank then gets None (the driver's
    "stop" signal)."""
    is_src = get_tensor_model_parallel_rank() == src
    metadata: list[Any] = [None]
    if is_src and tensor_dict is not None:
        metadata[0] = {k: _TensorMeta(v.dtype, v.shape) if isinstance(v, torch.Tensor) else v
                       for k, v in tensor_dict.items()}
    dist.broadcast_object_list(metadata, src=src, group=get_tp_cpu_group())
    if metadata[0] is None:
        return None
    result = {}
    for key, value in metadata[0].items():
        if not isinstance(value, _TensorMeta):
            result[key] = value
            continue
        tensor = (tensor_dict[key].contiguous() if is_src
                  else torch.empty(value.shape, dtype=value.dtype, device=device))
        if tensor.numel() > 0:
            dist.broadcast(tensor, src=src, group=get_tp_device_group())
        result[key] = tensor
    return result
