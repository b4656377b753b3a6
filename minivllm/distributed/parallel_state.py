"""Who am I in the tensor-parallel group? (vLLM: `vllm/distributed/parallel_state.py`).

With tensor parallelism every weight matrix is split over `world_size` processes (ranks), one
per GPU. Each layer asks two questions when it is built, and keeps only its rank's shard:

    get_tensor_model_parallel_world_size()   how many ranks share the model
    get_tensor_model_parallel_rank()         which one this process is

Without an initialised group the answers are 1 and 0, so a single-process engine never touches
torch.distributed and its layers hold whole matrices.

`init_distributed_environment` joins two process groups over the same ranks, as vLLM's
`GroupCoordinator` does:

- the *device group* carries the model's collectives (all-reduce, gather): NCCL between GPUs,
  gloo between CPU processes;
- the *CPU group* (always gloo) carries the driver's control messages: each step's inputs and
  the shutdown signal. A worker waits on it for as long as the engine is idle, so it never times
  out; a peer that dies closes its sockets, which fails the wait at once instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.distributed import ProcessGroup

DEVICE_GROUP_TIMEOUT = timedelta(minutes=10)
"""How long a model collective may wait for a rank that is alive but stuck."""
CPU_GROUP_TIMEOUT = timedelta(days=365)
"""Control messages wait for the next step however long the engine idles."""


@dataclass
class TensorParallelState:
    rank: int
    world_size: int
    device_group: ProcessGroup | None = None
    cpu_group: ProcessGroup | None = None


_SINGLE_PROCESS = TensorParallelState(rank=0, world_size=1)
_TP = _SINGLE_PROCESS


def init_distributed_environment(world_size: int, rank: int, init_method: str,
                                 backend: str) -> None:
    """Join the tensor-parallel group as `rank` of `world_size` (every rank calls this with the
    same `init_method`, e.g. tcp://127.0.0.1:port, where rank 0 hosts the rendezvous)."""
    global _TP
    if model_parallel_is_initialized():
        raise RuntimeError("A tensor-parallel group already exists in this process: shut its "
                           "engine down first (LLMEngine.shutdown())")
    if backend == "nccl":
        # Lets NCCL collectives be captured in CUDA graphs (vLLM PR #2152).
        os.environ.setdefault("TORCH_NCCL_AVOID_RECORD_STREAMS", "1")
    dist.init_process_group(backend, init_method=init_method, world_size=world_size, rank=rank,
                            timeout=DEVICE_GROUP_TIMEOUT)
    try:
        cpu_group = dist.new_group(backend="gloo", timeout=CPU_GROUP_TIMEOUT)
        if backend == "nccl":
            # NCCL creates its communicator on the first collective; do it now, not inside a
            # CUDA graph capture, where creating it is not allowed.
            dist.all_reduce(torch.zeros(1, device="cuda"))
    except BaseException:
        dist.destroy_process_group()
        raise
    _TP = TensorParallelState(rank, world_size, dist.group.WORLD, cpu_group)


def destroy_distributed_environment() -> None:
    global _TP
    if model_parallel_is_initialized():
        dist.destroy_process_group()
    _TP = _SINGLE_PROCESS


def model_parallel_is_initialized() -> bool:
    return _TP.device_group is not None


def get_tensor_model_parallel_rank() -> int:
    return _TP.rank


def get_tensor_model_parallel_world_size() -> int:
    return _TP.world_size


def get_tp_device_group() -> ProcessGroup | None:
    return _TP.device_group


def get_tp_cpu_group() -> ProcessGroup | None:
    return _TP.cpu_group


@contextmanager
def as_tensor_parallel_rank(rank: int, world_size: int) -> Iterator[None]:
    """Layers built inside the block see this rank and world size, without any process group:
    to read a checkpoint's whole shapes (rank 0 of 1), or to look at one rank's shards in a
    test. Running a collective inside would fail; building layers does not run any."""
    global _TP
    previous = _TP
    _TP = TensorParallelState(rank, world_size)
    try:
        yield
    finally:
        _TP = previous
