"""Matmuls with a few rows, for decode steps: split-K with the reduction in the same kernel
(vLLM's skinny GEMMs for small batches, `wvSplitK` on ROCm; CUTLASS calls the reduction
"serial split-K").

A decode step multiplies one activation row per sequence by every weight matrix. It reads the
whole matrix and does two flops per weight, so its time is the time to stream the weight from
memory. A small weight (Qwen3-0.6B's are 4 to 13 MB) streams in one to three microseconds on
an H200, about as long as the memory latency and the gap between two kernels, so what counts is
having much of the weight in flight at once, and starting early. cuBLAS picks its kernels for
large matmuls: at batch 1 it spent 13 us on o_proj (a 4 MB weight, 0.3 TB/s), and for
down_proj it launched a second kernel just to add up its split-K partial sums.

Here the weight W [N, K] is cut into BLOCK_N output columns times SPLIT_K slices of K, one
program each, enough programs to cover the SMs even when N is small. Program (n, s):

1. loads its [BLOCK_N, K / SPLIT_K] piece of W. A piece of up to MAX_BLOCK_K columns (a power
   of two) is one load, and the weight is no earlier kernel's output, so with programmatic
   dependent launch (`triton_utils.use_pdl`) it is issued while the previous kernel is still
   running; only then does the program wait for that kernel (`gdc_wait`) and load its slice
   of the input rows x. Longer pieces are a loop over tiles of MIN_BLOCK_K, the next tiles'
   loads in flight during the math (software pipelining, `num_stages`);
2. multiplies (tensor-core `tl.dot`, the rows padded to 16, the smallest M it takes; padding
   costs no memory traffic);
3. with SPLIT_K > 1, writes its fp32 partial sums to a workspace and adds one to the column
   tile's counter, an atomic with release/acquire order: the program that finds SPLIT_K - 1
   there is the last one, and all the others' partial sums are visible to it;
4. the last program adds the SPLIT_K partial sums in split order (so the result never depends
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

from minivllm.attention.ops.triton_utils import dot_dtype, get_num_sms, use_pdl
from minivllm.model_executor.layers.compile import fused_kernels_enabled

MAX_ROWS = 16
"""The most rows the kernel takes (padded to 16, one tensor-core tile): decode steps of up to 16
sequences. From 32 rows on, an earlier version of this kernel was no faster than cuBLAS on an
H200, and a whole [16, 512] input slice in registers leaves no room for more rows."""
MAX_BLOCK_K = 512
"""The longest K slice loaded in one piece: [32, 512] of bf16 weights (32 KB) and [16, 512] of
inputs fit in the registers of four warps."""
MIN_BLOCK_K = 128
"""The tile of the loop over longer slices, and what K must be a multiple of."""
BLOCK_N = 32
MAX_COLUMN_TILES = 1 << 16
"""Size of the counter buffer: the most column tiles one split-K matmul may have."""


@triton.jit
def _skinny_gemm_kernel(y_ptr, x_ptr, w_ptr, bias_ptr, workspace_ptr, counters_ptr,
                        M, N, stride_y, stride_x, stride_w,
                        HAS_BIAS: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                        NUM_TILES: tl.constexpr, SPLIT_K: tl.constexpr,
                        DOT_DTYPE: tl.constexpr, USE_PDL: tl.constexpr):
    tile_n = tl.program_id(0)
    split = tl.program_id(1)
    rows = tl.arange(0, BLOCK_M)
    cols = tile_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = split * NUM_TILES * BLOCK_K + tl.arange(0, BLOCK_K)
    row_mask = rows < M
    col_mask = cols < N
    w_ptrs = w_ptr + cols[:, None].to(tl.int64) * stride_w + ks[None, :]
    x_ptrs = x_ptr + rows[:, None] * stride_x + ks[None, :]

    if NUM_TILES == 1:  # the whole slice in one load, issued before waiting
        w = tl.load(w_ptrs, mask=col_mask[:, None], other=0.0)
        if USE_PDL:
            tl.extra.cuda.gdc_wait()  # the previous kernel is done: x written, y free to write
            tl.extra.cuda.gdc_launch_dependents()  # the next kernel may load its weights
        x = tl.load(x_ptrs, mask=row_mask[:, None], other=0.0)
        acc = tl.dot(x.to(DOT_DTYPE), tl.trans(w.to(DOT_DTYPE)), input_precision="ieee")
    else:  # tile by tile, the loads of later tiles in flight during the math (num_stages)
        if USE_PDL:
            tl.extra.cuda.gdc_wait()
            tl.extra.cuda.gdc_launch_dependents()
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for _ in range(NUM_TILES):
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
    """(SPLIT_K, BLOCK_K) for W [n, k].

    Split K in 2 or 4 while there are fewer programs (n / BLOCK_N column tiles times the
    splits) than half the SMs, each split keeping at least two tiles of MIN_BLOCK_K. A slice
    that is a power of two up to MAX_BLOCK_K is one tile, loaded whole before the wait;
    otherwise the program loops over tiles of MIN_BLOCK_K. On 132 SMs, Qwen3-0.6B's o_proj
    (1024 x 2048) runs 32 column tiles x 4 slices of 512, one tile each; down_proj (1024 x
    3072) 32 x 4 slices of 768, six tiles each; qkv_proj and gate_up_proj (128 and 192 column
    tiles, K = 1024) are not split and loop over 8 tiles."""
    tiles = triton.cdiv(n, BLOCK_N)
    split_k = 1
    while (2 * tiles * split_k < num_sms and split_k < 4
           and k % (2 * split_k * MIN_BLOCK_K) == 0 and k // (2 * split_k) >= 2 * MIN_BLOCK_K):
        split_k *= 2
    return split_k, _block_k(k // split_k)


def _block_k(k_slice: int) -> int:
    one_tile = k_slice & (k_slice - 1) == 0 and k_slice <= MAX_BLOCK_K
    return k_slice if one_tile else MIN_BLOCK_K


def supports(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Shapes this kernel runs: 1 to MAX_ROWS rows, K a multiple of MIN_BLOCK_K, unit column
    strides."""
    return (x.dim() == 2 and 0 < x.shape[0] <= MAX_ROWS and x.shape[1] % MIN_BLOCK_K == 0
            and x.stride(1) == 1 and weight.stride(1) == 1
            and triton.cdiv(weight.shape[0], BLOCK_N) <= MAX_COLUMN_TILES)


def skinny_gemm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                split_k: int | None = None) -> torch.Tensor:
    """y = x W^T (+ bias) for x [M, K] with M <= MAX_ROWS, W [N, K]: `F.linear`'s contract.
    `split_k` forces the number of K slices (each a multiple of MIN_BLOCK_K); by default
    `choose_tiling` picks it."""
    if not supports(x, weight):
        raise ValueError(f"skinny_gemm takes 1 to {MAX_ROWS} rows with K a multiple of "
                         f"{MIN_BLOCK_K}, got x {tuple(x.shape)}")
    m, n, k = x.shape[0], weight.shape[0], weight.shape[1]
    if split_k is None:
        split_k, block_k = choose_tiling(n, k, get_num_sms(x.device))
    elif k % (split_k * MIN_BLOCK_K):
        raise ValueError(f"K={k} in {split_k} slices: each must be a multiple of {MIN_BLOCK_K}")
    else:
        block_k = _block_k(k // split_k)
    y = torch.empty(m, n, dtype=x.dtype, device=x.device)
    workspace = (torch.empty(split_k, m, n, dtype=torch.float32, device=x.device)
                 if split_k > 1 else y)
    pdl = use_pdl(x.device)
    _skinny_gemm_kernel[(triton.cdiv(n, BLOCK_N), split_k)](
        y, x, weight, bias if bias is not None else y, workspace, _counters(x.device),
        m, n, y.stride(0), x.stride(0), weight.stride(0),
        HAS_BIAS=bias is not None, BLOCK_M=16, BLOCK_N=BLOCK_N, BLOCK_K=block_k,
        NUM_TILES=k // split_k // block_k, SPLIT_K=split_k, DOT_DTYPE=dot_dtype(x.dtype),
        USE_PDL=pdl, num_warps=4, num_stages=4, launch_pdl=pdl)
    return y


def runs_skinny(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether `linear` sends x W^T to `skinny_gemm` (why: see `linear`)."""
    return x.is_cuda and fused_kernels_enabled() and supports(x, weight)


def linear(x: torch.Tensor, weight: torch.Tensor,
           bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear`, except for decode steps of up to MAX_ROWS rows on CUDA within
    `fused_kernels()` (graph capture and its warm-up): there `skinny_gemm` runs instead.

    On an H200, in CUDA graphs with PDL, it ran Qwen3-0.6B's o_proj in 3.6 us at 1 to 16 rows
    where cuBLAS took 12.8 us at one row and 6.0 at 16, down_proj in 5.4 us against cuBLAS's
    7.7-8.0 (in two kernels), and the wide qkv_proj and gate_up_proj 7-15% faster than cuBLAS
    (`benchmarks/kernels/bench_skinny_gemm.py`). Only in graphs: launching a Triton kernel from
    Python costs about twice the host time of a cuBLAS call, and eager steps of a few rows are
    bound by host time, while a graph pays the launch once, at capture."""
    if runs_skinny(x, weight):
        return skinny_gemm(x, weight, bias)
    return F.linear(x, weight, bias)
