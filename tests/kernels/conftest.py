"""Shared set-up of the Triton kernel tests: device, tolerances and random paged KV caches.

Without a CUDA device the kernels run under Triton's interpreter (NumPy on the CPU). The
interpreter is chosen when a kernel is *decorated*, so TRITON_INTERPRET must be set before the
kernel modules are imported: here, before any test module of this folder is collected.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")

# Kernel output vs the oracle run in float64 on the same inputs. fp32: the kernels ask for
# IEEE dots, so only summation order and exp2 differ. fp16/bf16: rounding of P and the output.
TOLERANCES = {
    torch.float32: {"atol": 1e-4, "rtol": 1e-4},
    torch.float16: {"atol": 3e-3, "rtol": 3e-3},
    torch.bfloat16: {"atol": 2e-2, "rtol": 2e-2},
}



def _assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """`actual` (the kernel's output, in the test dtype) against the float64 oracle."""
    assert not actual.isnan().any(), "NaN in the kernel output"
    torch.testing.assert_close(actual.double(), expected.double(),
                               **TOLERANCES[actual.dtype])


@dataclass
class PagedKV:
    """A random paged KV cache holding `context_lens` tokens per sequence.

    Each sequence owns randomly chosen (shuffled) physical blocks; block-table entries past its
    last block are 0, as the ModelRunner pads them. Every slot no sequence owns (free blocks,
    the tail of each last block) is `poison`, so a kernel reading outside the context shows.
    `clean_*` holds the same cache with zeros there, for the oracle.
    """

    key_cache: torch.Tensor
    value_cache: torch.Tensor
    clean_key_cache: torch.Tensor
    clean_value_cache: torch.Tensor
    block_tables: torch.Tensor
    context_lens: torch.Tensor


def _make_paged_kv(context_lens: list[int], num_kv_heads: int, head_dim: int, block_size: int,
                  dtype: torch.dtype, generator: torch.Generator, extra_blocks: int = 3,
                  poison: float = float("nan")) -> PagedKV:
    blocks_per_seq = [-(-n // block_size) for n in context_lens]
    max_blocks = max([*blocks_per_seq, 1])
    num_blocks = sum(blocks_per_seq) + extra_blocks
    shape = (num_blocks, block_size, num_kv_heads, head_dim)
    key = torch.randn(shape, generator=generator).to(dtype)
    value = torch.randn(shape, generator=generator).to(dtype)

    owned = torch.zeros(num_blocks * block_size, dtype=torch.bool)
    physical = torch.randperm(num_blocks, generator=generator)
    block_tables = torch.zeros(len(context_lens), max_blocks, dtype=torch.int32)
    used = 0
    for i, (n, nb) in enumerate(zip(context_lens, blocks_per_seq, strict=True)):
        table = physical[used:used + nb]
        used += nb
        block_tables[i, :nb] = table
        slots = (table[:, None] * block_size + torch.arange(block_size)).flatten()[:n]
        owned[slots] = True
    owned = owned.view(num_blocks, block_size, 1, 1)
    return PagedKV(
        key_cache=key.masked_fill(~owned, poison).to(DEVICE),
        value_cache=value.masked_fill(~owned, poison).to(DEVICE),
        clean_key_cache=key.masked_fill(~owned, 0.0).to(DEVICE),
        clean_value_cache=value.masked_fill(~owned, 0.0).to(DEVICE),
        block_tables=block_tables.to(DEVICE),
        context_lens=torch.tensor(context_lens, dtype=torch.int32, device=DEVICE),
    )


@pytest.fixture
def generator(request: pytest.FixtureRequest) -> torch.Generator:
    """A CPU generator seeded from the test's id: every case has its own fixed inputs."""
    return torch.Generator().manual_seed(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def randn(generator: torch.Generator) -> Callable[..., torch.Tensor]:
    def make(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.randn(shape, generator=generator).to(dtype).to(DEVICE)

    return make


@pytest.fixture
def graph_replays() -> Callable[[Callable[[], torch.Tensor], int], list[torch.Tensor]]:
    """`graph_replays(fn, n)`: capture `fn()` in a CUDA graph as `CUDAGraphRunner.capture` does
    (within `fused_kernels()`, after a warm-up call that compiles), replay the graph n times
    and return a copy of fn's output after each replay."""
    # Imported here: the kernel modules must not load before TRITON_INTERPRET is set (above).
    from minivllm.model_executor.layers.compile import fused_kernels

    def replay(fn: Callable[[], torch.Tensor], n: int) -> list[torch.Tensor]:
        graph = torch.cuda.CUDAGraph()
        with fused_kernels():
            fn()
            torch.cuda.synchronize()
            with torch.cuda.graph(graph):
                out = fn()
        results = []
        for _ in range(n):
            graph.replay()
            results.append(out.clone())
        return results

    return replay


@pytest.fixture
def make_paged_kv(generator: torch.Generator) -> Callable[..., PagedKV]:
    """`make_paged_kv(context_lens, num_kv_heads, head_dim, block_size, dtype)`."""

    def make(context_lens: list[int], num_kv_heads: int, head_dim: int, block_size: int,
             dtype: torch.dtype, **kwargs: float) -> PagedKV:
        return _make_paged_kv(context_lens, num_kv_heads, head_dim, block_size, dtype,
                              generator, **kwargs)

    return make


@pytest.fixture
def assert_close() -> Callable[[torch.Tensor, torch.Tensor], None]:
    return _assert_close
