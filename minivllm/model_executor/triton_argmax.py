"""Row-wise argmax of a decode step's logits in one Triton kernel, for greedy sampling and
the exponential race of random sampling (`sampler.py`).

`torch.argmax` over [64, 151936] bf16 logits (Qwen3's vocabulary, 19 MB) took 22 us on an
H100, under a third of its copy bandwidth, and 9 us over one row. An argmax only needs every
value read once, by as many programs as it takes to keep the memory busy, so here each row is
cut into chunks of BLOCK values, one program each (2,432 programs for that batch, 38 for one
row):

1. program (row, chunk) loads its chunk, finds its largest value and the first position that
   holds it, and stores the pair in a workspace;
2. it counts itself in on the row's counter (`triton_utils.last_to_arrive`); the last program
   of the row reads every chunk's pair and keeps the largest value at the smallest position,
   so a tie goes to the first token, as with `torch.argmax`.

On the H100 this took 8.1 us for the 64 rows (6.5 at the copy bandwidth) and 3.2 us for one
(`triton.testing.do_bench_cudagraph`), and the decode step at batch 64 went from 2.346 to
2.332 ms. A NaN counts as +inf (`torch.argmax` ranks NaN above everything; the two differ only for a
row holding both). `argmax` runs the kernel on CUDA and `torch.argmax` elsewhere; the tests run
`triton_argmax` itself under the CPU interpreter too.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from minivllm.attention.ops.triton_utils import (
    HANDOVER_COUNTERS,
    handover_counters,
    last_to_arrive,
    reset_counter,
)

BLOCK = 4096
"""Values per program: 8 KB of bf16 logits."""


@triton.jit
def _argmax_kernel(out_ptr, x_ptr, max_ptr, pos_ptr, counters_ptr, n, stride_x,
                   NUM_CHUNKS: tl.constexpr, BLOCK: tl.constexpr, BLOCK_CHUNKS: tl.constexpr):
    row = tl.program_id(0)
    chunk = tl.program_id(1)
    cols = chunk * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + row.to(tl.int64) * stride_x + cols, mask=cols < n,
                other=float("-inf")).to(tl.float32)
    x = tl.where(x != x, float("inf"), x)  # NaN: +inf
    best = tl.max(x, axis=0)
    # The first position holding the maximum (an all -inf chunk: its first position).
    first = tl.min(tl.where(x == best, cols, n), axis=0)
    tl.store(max_ptr + row * NUM_CHUNKS + chunk, best)
    tl.store(pos_ptr + row * NUM_CHUNKS + chunk, first)
    if last_to_arrive(counters_ptr + row, NUM_CHUNKS):
        chunks = tl.arange(0, BLOCK_CHUNKS)
        mask = chunks < NUM_CHUNKS
        maxima = tl.load(max_ptr + row * NUM_CHUNKS + chunks, mask=mask, other=float("-inf"),
                         cache_modifier=".cg")
        positions = tl.load(pos_ptr + row * NUM_CHUNKS + chunks, mask=mask, other=n,
                            cache_modifier=".cg")
        best = tl.max(maxima, axis=0)
        tl.store(out_ptr + row, tl.min(tl.where(maxima == best, positions, n), axis=0))
        reset_counter(counters_ptr + row)


def argmax(x: torch.Tensor) -> torch.Tensor:
    """[B, V] -> [B] int64, the position of each row's largest value (the first one, on a tie):
    `x.argmax(dim=-1)`, in `triton_argmax` on CUDA."""
    if x.is_cuda and x.dim() == 2 and x.stride(1) == 1 and x.shape[0] <= HANDOVER_COUNTERS:
        return triton_argmax(x)
    return x.argmax(dim=-1)


def triton_argmax(x: torch.Tensor) -> torch.Tensor:
    """The kernel's `argmax` of x [B, V] (unit column stride, B <= HANDOVER_COUNTERS)."""
    rows, n = x.shape
    out = torch.empty(rows, dtype=torch.int64, device=x.device)
    if rows == 0:
        return out
    num_chunks = triton.cdiv(n, BLOCK)
    maxima = torch.empty(rows, num_chunks, dtype=torch.float32, device=x.device)
    positions = torch.empty(rows, num_chunks, dtype=torch.int32, device=x.device)
    _argmax_kernel[(rows, num_chunks)](
        out, x, maxima, positions, handover_counters(x.device), n, x.stride(0),
        NUM_CHUNKS=num_chunks, BLOCK=BLOCK, BLOCK_CHUNKS=triton.next_power_of_2(num_chunks),
        num_warps=4)
    return out
