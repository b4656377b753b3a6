"""Matmuls with a few rows, for decode steps: split-K with the reduction in the same kernel
(vLLM's skinny GEMMs for small batches, `wvSplitK` on ROCm; CUTLASS calls the reduction
"serial split-K").

A decode step multiplies one activation row per sequence by every weight matrix. It reads the
whole matrix and does two flops per weight, so its time is the time to stream the weight from
memory, and that takes many SMs reading at once. cuBLAS picks its kernels for large matmuls: on
an H200 at batch 1 it spent 13 us on o_proj of Qwen3-0.6B (a 4 MB weight, 0.3 TB/s), and for
down_proj it launched a second kernel just to add up its split-K partial sums.

Here the weight W [N, K] is cut into BLOCK_N output columns times SPLIT_K slices of K, one
program each, enough programs to cover the SMs even when N is small. Program (n, s):

1. multiplies the rows of x by its [BLOCK_N, K / SPLIT_K] slice of W (tensor-core `tl.dot`,
   the rows padded to 16, the smallest M it takes; padding costs no memory traffic);
2. with SPLIT_K > 1, writes its fp32 partial sums to a workspace and adds one to the column
   tile's counter, an atomic with release/acquire order: the program that finds SPLIT_K - 1
   there is the last one, and all the others' partial sums are visible to it;
3. the last program adds the SPLIT_K partial sums in split order (so the result never depends
   on which program came last), adds the bias, writes y in the model dtype and sets the
   counter back to 0 for the next call.

One kernel per matmul, deterministic. The counters are shared by every call on a device, which
is safe because the engine runs its kernels on one stream, one after the other.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from minivllm.attention.ops.triton_utils import dot_dtype, get_num_sms
from minivllm.model_executor.layers.compile import fused_kernels_enabled

MAX_ROWS = 64
"""The most rows the kernel takes (it pads them to a power of two, at least 16)."""
LINEAR_MAX_ROWS = 16
"""`linear` sends at most this many rows here: on an H200 cuBLAS was as fast from 32 rows on
(`benchmarks/kernels/bench_skinny_gemm.py` compares the two)."""
BLOCK_K = 128
MAX_COLUMN_TILES = 1 << 16
"""Size of the counter buffer: the most column tiles one split-K matmul may have."""


@triton.jit
def _skinny_gemm_kernel(y_ptr, x_ptr, w_ptr, bias_ptr, workspace_ptr, counters_ptr,
                        M, N, K, stride_y, stride_x, stride_w,
                        HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                        BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr, DOT_DTYPE: tl.constexpr):
    tile_n = tl.program_id(0)
    split = tl.program_id(1)
    rows = tl.arange(0, BLOCK_M)
    cols = tile_n * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < M
    col_mask = cols < N
    k_per_split = K // SPLIT_K
    ks = split * k_per_split + tl.arange(0, BLOCK_K)
    x_ptrs = x_ptr + rows[:, None] * stride_x + ks[None, :]
    w_ptrs = w_ptr + cols[:, None].to(tl.int64) * stride_w + ks[None, :]

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for _ in range(0, k_per_split, BLOCK_K):
        x = tl.load(x_ptrs, mask=row_mask[:, None], other=0.0)
        w = tl.load(w_ptrs, mask=col_mask[:, None], other=0.0)
        acc += tl.dot(x.to(DOT_DTYPE), tl.trans(w.to(DOT_DTYPE)), input_precision="ieee")
        x_ptrs += BLOCK_K
        w_ptrs += BLOCK_K

    out_mask = row_mask[:, None] & col_mask[None, :]
    if SPLIT_K > 1:
        # Workspace [SPLIT_K, M, N] fp32: this program's partial sums, then the handover.
        offsets = rows[:, None] * N + cols[None, :]
        tl.store(workspace_ptr + split * M * N + offsets, acc, mask=out_mask)
        tl.debug_barrier()  # every thread's stores are issued before the release below
        arrived = tl.atomic_add(counters_ptr + tile_n, 1, sem="acq_rel", scope="gpu")
        if arrived == SPLIT_K - 1:
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for s in tl.static_range(SPLIT_K):  # in split order: deterministic
                # .cg reads from L2, where the other programs' stores landed (L1 is per SM)
                acc += tl.load(workspace_ptr + s * M * N + offsets, mask=out_mask,
                               cache_modifier=".cg")
            tl.atomic_xchg(counters_ptr + tile_n, 0, sem="relaxed", scope="gpu")
            _store_output(y_ptr, bias_ptr, acc, rows, cols, stride_y, out_mask, col_mask,
                          HAS_BIAS)
    else:
        _store_output(y_ptr, bias_ptr, acc, rows, cols, stride_y, out_mask, col_mask, HAS_BIAS)


@triton.jit
def _store_output(y_ptr, bias_ptr, acc, rows, cols, stride_y, out_mask, col_mask,
                  HAS_BIAS: tl.constexpr):
    if HAS_BIAS:
        acc += tl.load(bias_ptr + cols, mask=col_mask, other=0.0).to(tl.float32)[None, :]
    tl.store(y_ptr + rows[:, None] * stride_y + cols[None, :],
             acc.to(y_ptr.dtype.element_ty), mask=out_mask)


@functools.cache
def _counters(device: torch.device) -> torch.Tensor:
    """Zeroed once; every split-K launch leaves its counters at 0 again."""
    return torch.zeros(MAX_COLUMN_TILES, dtype=torch.int32, device=device)


def choose_tiling(n: int, k: int, num_sms: int) -> tuple[int, int]:
    """(BLOCK_N, SPLIT_K): 32 output columns per program, and K split in 2 or 4 while there
    are fewer programs than half the SMs; each split keeps at least two BLOCK_K steps.

    On 132 SMs, Qwen3-0.6B's o_proj and down_proj (1024 columns: 32 tiles) split in 4, and
    qkv_proj (128 tiles) is not split: on an H200 it ran as fast as cuBLAS unsplit, and slower
    in two splits."""
    block_n = 32
    tiles = triton.cdiv(n, block_n)
    split_k = 1
    while (2 * tiles * split_k < num_sms and split_k < 4
           and k % (2 * split_k * BLOCK_K) == 0 and k // (2 * split_k) >= 2 * BLOCK_K):
        split_k *= 2
    return block_n, split_k


def supports(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Shapes this kernel runs: at most MAX_ROWS rows, K a multiple of BLOCK_K, contiguous rows."""
    return (x.dim() == 2 and 0 < x.shape[0] <= MAX_ROWS and x.shape[1] % BLOCK_K == 0
            and x.stride(1) == 1 and weight.stride(1) == 1
            and triton.cdiv(weight.shape[0], 32) <= MAX_COLUMN_TILES)


def skinny_gemm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                split_k: int | None = None) -> torch.Tensor:
    """y = x W^T (+ bias) for x [M, K] with M <= MAX_ROWS, W [N, K]: `F.linear`'s contract.
    `split_k` forces the split (a power of two dividing K / BLOCK_K); by default
    `choose_tiling` picks it."""
    if not supports(x, weight):
        raise ValueError(f"skinny_gemm takes 1 to {MAX_ROWS} rows with K a multiple of "
                         f"{BLOCK_K}, got x {tuple(x.shape)}")
    m, k = x.shape
    n = weight.shape[0]
    y = torch.empty(m, n, dtype=x.dtype, device=x.device)
    block_n, chosen = choose_tiling(n, k, get_num_sms(x.device))
    split_k = split_k or chosen
    workspace = (torch.empty(split_k, m, n, dtype=torch.float32, device=x.device)
                 if split_k > 1 else y)
    _skinny_gemm_kernel[(triton.cdiv(n, block_n), split_k)](
        y, x, weight, bias if bias is not None else y, workspace, _counters(x.device),
        m, n, k, y.stride(0), x.stride(0), weight.stride(0),
        HAS_BIAS=bias is not None, BLOCK_M=max(16, triton.next_power_of_2(m)),
        BLOCK_N=block_n, BLOCK_K=BLOCK_K, SPLIT_K=split_k, DOT_DTYPE=dot_dtype(x.dtype),
        num_warps=4, num_stages=4)
    return y


def runs_skinny(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether `linear` sends x W^T to `skinny_gemm` (why: see `linear`)."""
    return (x.is_cuda and fused_kernels_enabled() and x.shape[0] <= LINEAR_MAX_ROWS
            and supports(x, weight)
            and choose_tiling(weight.shape[0], x.shape[1], get_num_sms(x.device))[1] > 1)


def linear(x: torch.Tensor, weight: torch.Tensor,
           bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear`, except where cuBLAS is slow: up to LINEAR_MAX_ROWS rows times a weight with
    too few output columns to fill the GPU without splitting K (o_proj and down_proj), on CUDA
    within `fused_kernels()` (graph capture and its warm-up). There `skinny_gemm` runs instead.

    On an H200 at batch 1 this took o_proj from 12.8 us to 5.0 us, and down_proj from 6.6 us in
    two kernels to 6.0 us in one. For wide weights (qkv_proj, gate_up_proj) cuBLAS was as fast
    or faster, so they stay there. Only in graphs: launching a Triton kernel from Python costs
    about twice the host time of a cuBLAS call, and eager steps of a few rows are bound by host
    time, while a graph pays the launch once, at capture."""
    if runs_skinny(x, weight):
        return skinny_gemm(x, weight, bias)
    return F.linear(x, weight, bias)
