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

1. loads its [BLOCK_N, K / SPLIT_K] piece of W, in one tile (a piece of up to MAX_BLOCK_K
   columns, a power of two, at up to ONE_TILE_ROWS rows) or in tiles of MIN_BLOCK_K. The
   weight is no earlier kernel's output, so with programmatic dependent launch
   (`triton_utils.use_pdl`) the first tile's load is issued while the previous kernel is still
   running; only then does the program wait for that kernel (`gdc_wait`) and load the input
   rows x. Later tiles are a loop, their loads in flight during the math (software
   pipelining, `num_stages`);
2. multiplies (tensor-core `tl.dot`, the rows padded to a power of two from 16, the smallest M
   it takes; padding costs no memory traffic);
3. with SPLIT_K > 1, writes its fp32 partial sums to a workspace and adds one to the column
   tile's counter (`triton_utils.last_to_arrive`, an atomic with release/acquire order): the
   program that finds SPLIT_K - 1 there is the last one, and all the others' partial sums are
   visible to it;
4. the last program adds the SPLIT_K partial sums in split order (so the result never depends
   on which program came last), adds the bias, writes y in the model dtype and sets the
   counter back to 0 for the next call.

gate_up_proj can also apply the MLP's activation as it writes y (SILU_AND_MUL): program n
multiplies x by columns n of both the gate and the up half of W and writes silu(gate) * up,
so the activation kernel that would run between gate_up_proj and down_proj disappears. On an
H200 that kernel, launched without PDL, cost ~2.5 us per layer (62 us of a 1.14 ms step at
batch 1).

A row-parallel layer (o_proj, down_proj) can also stop in the middle of step 3
(`skinny_gemm_partial_sums`): each program stores its partial sums and is done, with no counter
and no step 4, and the RMSNorm that follows adds them as it loads its input, as it adds the
residual (`PartialSums`). With tensor parallelism the ranks' partial sums of such a layer are
added by an all-reduce; here the splits' are added by the next kernel, which has to read its
input anyway. The matmul then needs no handover: no atomic, and no last program waiting for
the others' stores to reload them. On an H100 that took a decode step at context 512 from
1.017 to 0.956 ms at batch 1 and from 2.319 to 2.234 ms at batch 64.

One kernel per matmul, deterministic. The counters (`triton_utils.handover_counters`) are
shared by every call on a device, which is safe because the engine runs its kernels on one
stream, one after the other.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from minivllm.attention.ops.triton_utils import (
    HANDOVER_COUNTERS,
    dot_dtype,
    get_num_sms,
    handover_counters,
    last_to_arrive,
    pdl_wait,
    reset_counter,
    use_pdl,
)
from minivllm.model_executor.layers.compile import runs_fused

MAX_ROWS = 64
"""The most rows the kernel takes, padded to a power of two from 16 (the smallest tile tensor
cores take): decode steps of up to 64 sequences. On an H200 it beat cuBLAS by 7-25% at 32 and 64
rows, but at 128 it was slower on three of the four projections."""
MAX_BLOCK_K = 512
"""The longest K slice loaded in one piece: [32, 512] of bf16 weights (32 KB) and [16, 512] of
inputs fit in the registers of four warps, [32, 512] of inputs in those of eight."""
ONE_TILE_ROWS = 32
"""The most rows for which a slice is one tile, loaded whole before the wait; more rows loop
over tiles of MIN_BLOCK_K."""
MIN_BLOCK_K = 128
"""The tile of the loop over longer slices, and what K must be a multiple of."""
BLOCK_N = 32
"""Output columns per program (twice that for weights with many columns: `choose_tiling`)."""


class PartialSums(NamedTuple):
    """A split-K matmul's output before its splits are added: `parts` [SPLIT_K, M, N] fp32;
    y = parts[0] + parts[1] + ... (in that order, in fp32), rounded to `dtype`. The bias, if
    any, is in parts[0]. `triton_rms_norm.rms_norm` takes it where it takes x."""
    parts: torch.Tensor
    dtype: torch.dtype


@triton.jit
def _skinny_gemm_kernel(y_ptr, x_ptr, w_ptr, bias_ptr, workspace_ptr, counters_ptr,
                        M, N, stride_y, stride_x, stride_w,
                        HAS_BIAS: tl.constexpr, SILU_AND_MUL: tl.constexpr,
                        ADD_PARTS: tl.constexpr,
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

    # The first tile of W is no earlier kernel's output: load it before waiting for that one.
    w = tl.load(w_ptrs, mask=col_mask[:, None], other=0.0)
    up_offset = N * stride_w  # with SILU_AND_MUL, W is [gate | up]: the up rows are N further
    w_up = tl.load(w_ptrs + up_offset, mask=col_mask[:, None], other=0.0) if SILU_AND_MUL else w
    pdl_wait(USE_PDL)  # the previous kernel is done: x written, y free to write
    x = tl.load(x_ptrs, mask=row_mask[:, None], other=0.0).to(DOT_DTYPE)
    acc = tl.dot(x, tl.trans(w.to(DOT_DTYPE)), input_precision="ieee")
    acc_up = acc  # the up half's sum with SILU_AND_MUL, unused otherwise
    if SILU_AND_MUL:
        acc_up = tl.dot(x, tl.trans(w_up.to(DOT_DTYPE)), input_precision="ieee")
    # The other tiles: the loads of later ones are in flight during the math (num_stages).
    for _ in range(1, NUM_TILES):
        x_ptrs += BLOCK_K
        w_ptrs += BLOCK_K
        x = tl.load(x_ptrs, mask=row_mask[:, None], other=0.0).to(DOT_DTYPE)
        w = tl.load(w_ptrs, mask=col_mask[:, None], other=0.0)
        acc += tl.dot(x, tl.trans(w.to(DOT_DTYPE)), input_precision="ieee")
        if SILU_AND_MUL:
            w_up = tl.load(w_ptrs + up_offset, mask=col_mask[:, None], other=0.0)
            acc_up += tl.dot(x, tl.trans(w_up.to(DOT_DTYPE)), input_precision="ieee")

    out_mask = row_mask[:, None] & col_mask[None, :]
    if not ADD_PARTS:
        # The next kernel adds the splits (PartialSums [SPLIT_K, M, N] at y): store this one's.
        if HAS_BIAS:  # in the first split's sums only
            bias = tl.load(bias_ptr + cols, mask=tl.where(split == 0, col_mask, False), other=0.0)
            acc += bias.to(tl.float32)[None, :]
        tl.store(y_ptr + split * M * N + rows[:, None] * N + cols[None, :], acc, mask=out_mask)
    elif SPLIT_K > 1:
        # Workspace [SPLIT_K, 1 or 2, M, N] fp32: this program's partial sums, then the handover.
        offsets = rows[:, None] * N + cols[None, :]
        halves: tl.constexpr = 2 if SILU_AND_MUL else 1
        part = workspace_ptr + split * halves * M * N + offsets
        tl.store(part, acc, mask=out_mask)
        if SILU_AND_MUL:
            tl.store(part + M * N, acc_up, mask=out_mask)
        if last_to_arrive(counters_ptr + tile_n, SPLIT_K):
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            acc_up = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for s in tl.static_range(SPLIT_K):  # in split order: deterministic
                # .cg reads from L2, where the other programs' stores landed (L1 is per SM)
                part = workspace_ptr + s * halves * M * N + offsets
                acc += tl.load(part, mask=out_mask, cache_modifier=".cg")
                if SILU_AND_MUL:
                    acc_up += tl.load(part + M * N, mask=out_mask, cache_modifier=".cg")
            reset_counter(counters_ptr + tile_n)
            _write_output(y_ptr, bias_ptr, acc, acc_up, rows, cols, N, stride_y, out_mask,
                          col_mask, HAS_BIAS, SILU_AND_MUL)
    else:
        _write_output(y_ptr, bias_ptr, acc, acc_up, rows, cols, N, stride_y, out_mask,
                      col_mask, HAS_BIAS, SILU_AND_MUL)


@triton.jit
def _write_output(y_ptr, bias_ptr, acc, acc_up, rows, cols, N, stride_y, out_mask, col_mask,
                  HAS_BIAS: tl.constexpr, SILU_AND_MUL: tl.constexpr):
    """y = acc + bias, or with SILU_AND_MUL y = silu(acc + gate bias) * (acc_up + up bias) in
    fp32 (`activation.silu_and_mul`), rounded once to y's dtype."""
    if HAS_BIAS:
        acc += tl.load(bias_ptr + cols, mask=col_mask, other=0.0).to(tl.float32)[None, :]
        if SILU_AND_MUL:
            acc_up += tl.load(bias_ptr + N + cols, mask=col_mask, other=0.0).to(tl.float32)[None, :]
    if SILU_AND_MUL:
        acc = acc * tl.sigmoid(acc) * acc_up
    tl.store(y_ptr + rows[:, None] * stride_y + cols[None, :],
             acc.to(y_ptr.dtype.element_ty), mask=out_mask)


class Tiling(NamedTuple):
    block_n: int
    split_k: int
    block_k: int
    num_warps: int


def choose_tiling(n: int, k: int, rows: int, num_sms: int,
                  silu_and_mul: bool = False) -> Tiling:
    """(BLOCK_N, SPLIT_K, BLOCK_K, num_warps) for n output columns, K = k and x of `rows` rows.

    Columns in tiles of BLOCK_N, or of twice that when there would be more tiles than SMs (a
    second wave of programs: on an H200, gate_up_proj's 6144 columns at 64 rows took 9.4 us in
    192 tiles of 32 and 6.4 us in 96 of 64); not with `silu_and_mul`, whose programs already
    load two tiles of W (gate and up), and whose pipeline stages at 64 rows would not fit in
    shared memory with tiles of 64 (240 KB of the H200's 227 KB).

    Split K in 2 or 4 while there are fewer programs (column tiles times splits) than half the
    SMs, each split keeping at least two tiles of MIN_BLOCK_K. Up to ONE_TILE_ROWS rows, a split
    K takes up to twice as many slices if that makes each a power of two up to MAX_BLOCK_K:
    such a slice is one tile, loaded whole before the wait. Otherwise the program loops over
    tiles of MIN_BLOCK_K, and only the first one's load overlaps the previous kernel.

    On 132 SMs, Qwen3-0.6B's o_proj (1024 x 2048) runs 32 column tiles x 4 slices of 512, and
    down_proj (1024 x 3072) 32 x 6 slices of 512, one tile each up to 32 rows (32 x 4 slices of
    768 in six tiles beyond); qkv_proj (128 tiles) and gate_up_proj with silu_and_mul (96 tiles
    of both halves) are not split and loop over K = 1024 in 8 tiles. Why whole slices, and up
    to 32 rows: the H100 sweep of tilings and the decode-step A/B in benchmarks/README.md
    ("Whole weight slices before the wait")."""
    widen = triton.cdiv(n, BLOCK_N) > num_sms and not silu_and_mul
    block_n = 2 * BLOCK_N if widen else BLOCK_N
    tiles = triton.cdiv(n, block_n)
    split_k = 1
    while (2 * tiles * split_k < num_sms and split_k < 4
           and k % (2 * split_k * MIN_BLOCK_K) == 0 and k // (2 * split_k) >= 2 * MIN_BLOCK_K):
        split_k *= 2
    if split_k > 1 and rows <= ONE_TILE_ROWS:
        split_k = _one_tile_split(k, split_k)
    return _tiling(block_n, split_k, k, rows)


def _one_tile_split(k: int, split_k: int) -> int:
    """The fewest slices, from split_k to twice that, that make each slice one tile (a power of
    two up to MAX_BLOCK_K): down_proj's K = 3072 in 6 slices of 512 rather than 4 of 768, so
    every program loads its whole slice before the wait; split_k if none does."""
    for s in range(split_k, 2 * split_k + 1):
        if k % s == 0 and _is_one_tile(k // s):
            return s
    return split_k


def _is_one_tile(k_slice: int) -> bool:
    return k_slice & (k_slice - 1) == 0 and MIN_BLOCK_K <= k_slice <= MAX_BLOCK_K


def _tiling(block_n: int, split_k: int, k: int, rows: int) -> Tiling:
    """The tiling with K in split_k slices: one tile per slice where it fits (eight warps
    from 17 rows, to hold the larger input tile), else tiles of MIN_BLOCK_K."""
    k_slice = k // split_k
    if _is_one_tile(k_slice) and rows <= ONE_TILE_ROWS:
        return Tiling(block_n, split_k, k_slice, 4 if rows <= 16 else 8)
    return Tiling(block_n, split_k, MIN_BLOCK_K, 4)


def supports(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Shapes this kernel runs: 1 to MAX_ROWS rows, K a multiple of MIN_BLOCK_K, unit column
    strides."""
    return (x.dim() == 2 and 0 < x.shape[0] <= MAX_ROWS and x.shape[1] % MIN_BLOCK_K == 0
            and x.stride(1) == 1 and weight.stride(1) == 1
            and triton.cdiv(weight.shape[0], BLOCK_N) <= HANDOVER_COUNTERS)


def skinny_gemm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                split_k: int | None = None, silu_and_mul: bool = False) -> torch.Tensor:
    """y = x W^T (+ bias) for x [M, K] with M <= MAX_ROWS, W [N, K]: `F.linear`'s contract.
    With `silu_and_mul`, W is [gate | up] (gate_up_proj) and y = silu(x gate^T) * (x up^T), of
    N / 2 columns: `activation.silu_and_mul` applied as the kernel writes y, so a decode step
    runs one kernel fewer per layer. `split_k` forces the number of K slices (each a multiple of
    MIN_BLOCK_K); by default `choose_tiling` picks it."""
    n = weight.shape[0] // (2 if silu_and_mul else 1)
    tiling = _checked_tiling(x, weight, n, split_k, silu_and_mul)
    return _launch(x, weight, bias, n, tiling, silu_and_mul)


def skinny_gemm_partial_sums(x: torch.Tensor, weight: torch.Tensor,
                             bias: torch.Tensor | None = None, *,
                             split_k: int | None = None) -> PartialSums:
    """x W^T (+ bias) as `skinny_gemm` computes it, with the K slices' partial sums left for
    the next kernel to add: the programs of a column tile need no handover."""
    tiling = _checked_tiling(x, weight, weight.shape[0], split_k, silu_and_mul=False)
    return PartialSums(_launch(x, weight, bias, weight.shape[0], tiling, add_parts=False),
                       x.dtype)


def _checked_tiling(x: torch.Tensor, weight: torch.Tensor, n: int, split_k: int | None,
                    silu_and_mul: bool) -> Tiling:
    """`choose_tiling`'s tiling, or the forced `split_k`'s, once the shapes are checked."""
    if not supports(x, weight):
        raise ValueError(f"skinny_gemm takes 1 to {MAX_ROWS} rows with K a multiple of "
                         f"{MIN_BLOCK_K}, got x {tuple(x.shape)}")
    m, k = x.shape
    tiling = choose_tiling(n, k, m, get_num_sms(x.device), silu_and_mul)
    if split_k is not None:
        if k % (split_k * MIN_BLOCK_K):
            raise ValueError(f"K={k} in {split_k} slices: each must be a multiple of "
                             f"{MIN_BLOCK_K}")
        tiling = _tiling(tiling.block_n, split_k, k, m)
    return tiling


def _launch(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, n: int,
            tiling: Tiling, silu_and_mul: bool = False, add_parts: bool = True) -> torch.Tensor:
    """Run the kernel on n output columns with the given tiling: y [M, n], or with
    `add_parts=False` the partial sums [SPLIT_K, M, n] fp32."""
    m, k = x.shape
    block_n, split_k, block_k, num_warps = tiling
    if add_parts:
        y = torch.empty(m, n, dtype=x.dtype, device=x.device)
        workspace = (torch.empty(split_k, 1 + silu_and_mul, m, n, dtype=torch.float32,
                                 device=x.device) if split_k > 1 else y)
    else:
        y = workspace = torch.empty(split_k, m, n, dtype=torch.float32, device=x.device)
    pdl = use_pdl(x.device)
    _skinny_gemm_kernel[(triton.cdiv(n, block_n), split_k)](
        y, x, weight, bias if bias is not None else y, workspace, handover_counters(x.device),
        m, n, y.stride(-2), x.stride(0), weight.stride(0),
        HAS_BIAS=bias is not None, SILU_AND_MUL=silu_and_mul, ADD_PARTS=add_parts,
        BLOCK_M=max(16, triton.next_power_of_2(m)), BLOCK_N=block_n, BLOCK_K=block_k,
        NUM_TILES=k // split_k // block_k, SPLIT_K=split_k, DOT_DTYPE=dot_dtype(x.dtype),
        USE_PDL=pdl, num_warps=num_warps, num_stages=4, launch_pdl=pdl)
    return y


def runs_skinny(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether `linear` sends x W^T to `skinny_gemm` (why: see `linear`)."""
    return runs_fused(x) and supports(x, weight)


def linear(x: torch.Tensor, weight: torch.Tensor,
           bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear`, except for decode steps of up to MAX_ROWS rows on CUDA within
    `fused_kernels()` (graph capture and its warm-up): there `skinny_gemm` runs instead.

    On an H200, in CUDA graphs with PDL, it ran Qwen3-0.6B's o_proj in 3.6 us at 1 to 16 rows
    where cuBLAS took 12.8 us at one row and 6.0 at 16, down_proj in 5.3 us against cuBLAS's
    7.6-7.9 (in two kernels), and the wide qkv_proj and gate_up_proj 7-15% faster than cuBLAS;
    at 64 rows 7-25% faster (`benchmarks/kernels/bench_skinny_gemm.py`). Only in graphs:
    launching a Triton kernel from Python costs about twice the host time of a cuBLAS call, and
    eager steps of a few rows are bound by host time, while a graph pays the launch once, at
    capture."""
    if runs_skinny(x, weight):
        return skinny_gemm(x, weight, bias)
    return F.linear(x, weight, bias)
