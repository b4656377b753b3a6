"""The split-K skinny matmul of decode steps against `F.linear` in float64."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from minivllm.attention.ops.triton_utils import handover_counters, is_interpreting
from minivllm.model_executor.layers.activation import silu_and_mul
from minivllm.model_executor.layers.triton_skinny_gemm import (
    MAX_ROWS,
    choose_tiling,
    linear,
    skinny_gemm,
    skinny_gemm_partial_sums,
    supports,
)

# Both sides accumulate in fp32 (fp64 for the oracle); the output is rounded once to the dtype.
TOLERANCES = {torch.float32: {"atol": 1e-4, "rtol": 1e-4},
              torch.bfloat16: {"atol": 1e-2, "rtol": 1.6e-2}}


@pytest.mark.parametrize(
    ("rows", "n", "k", "split_k", "dtype", "with_bias"),
    [
        (1, 96, 512, 4, torch.bfloat16, False),  # a decode row; N not a multiple of BLOCK_N
        (5, 64, 256, 2, torch.float32, True),  # the bias is added once, after the reduction
        (16, 40, 256, 1, torch.bfloat16, True),  # no split: the program writes y directly
        (MAX_ROWS, 32, 1024, 8, torch.float32, False),
        (17, 64, 512, 2, torch.bfloat16, True),  # rows padded to 32; one tile of 256 each
        (40, 64, 512, 2, torch.bfloat16, True),  # rows padded to 64; slices in 2 tiles
        (2, 48, 768, 3, torch.float32, False),  # a split count that is not a power of two
        (2, 48, 768, 2, torch.float32, True),  # slices of 384: a loop over three tiles
        (3, 1000, 256, 2, torch.bfloat16, False),  # several column tiles, the last one masked
        (2, 5000, 256, 1, torch.float32, True),  # more tiles of 32 than SMs: tiles of 64
    ],
)
def test_matches_linear(rows: int, n: int, k: int, split_k: int, dtype: torch.dtype,
                        with_bias: bool, randn: Callable[..., torch.Tensor]) -> None:
    x = randn(rows, k, dtype=dtype)
    weight = randn(n, k, dtype=dtype) / k**0.5
    bias = randn(n, dtype=dtype) if with_bias else None
    expected = F.linear(x.double(), weight.double(), None if bias is None else bias.double())
    y = skinny_gemm(x, weight, bias, split_k=split_k)
    assert y.shape == (rows, n) and y.dtype == dtype
    torch.testing.assert_close(y.double(), expected, **TOLERANCES[dtype])
    # Every tile's counter is back at 0, so the next call starts clean...
    assert not handover_counters(x.device).any()
    # ...and the partial sums are added in a fixed order: the same bits every time.
    assert torch.equal(skinny_gemm(x, weight, bias, split_k=split_k), y)


@pytest.mark.parametrize(
    ("rows", "n", "k", "split_k", "dtype", "with_bias"),
    [
        (1, 96, 512, 4, torch.bfloat16, False),  # both halves' partial sums handed over
        (5, 40, 256, 1, torch.float32, True),  # the biases of gate and up, before the SiLU
        (16, 64, 768, 2, torch.bfloat16, True),  # slices of 384: a loop over three tiles
        (MAX_ROWS, 32, 512, 1, torch.float32, False),
    ],
)
def test_silu_and_mul_matches_activation(rows: int, n: int, k: int, split_k: int,
                                         dtype: torch.dtype, with_bias: bool,
                                         randn: Callable[..., torch.Tensor]) -> None:
    """gate_up_proj with the activation in its output: W [2n, K] is [gate | up], y has n
    columns, silu(x gate^T) * (x up^T), as `silu_and_mul` computes from the two halves."""
    x = randn(rows, k, dtype=dtype)
    weight = randn(2 * n, k, dtype=dtype) / k**0.5
    bias = randn(2 * n, dtype=dtype) if with_bias else None
    gate_up = F.linear(x.double(), weight.double(), None if bias is None else bias.double())
    y = skinny_gemm(x, weight, bias, split_k=split_k, silu_and_mul=True)
    assert y.shape == (rows, n) and y.dtype == dtype
    torch.testing.assert_close(y.double(), silu_and_mul(gate_up), **TOLERANCES[dtype])
    assert not handover_counters(x.device).any()
    assert torch.equal(skinny_gemm(x, weight, bias, split_k=split_k, silu_and_mul=True), y)


@pytest.mark.parametrize(
    ("rows", "n", "k", "split_k", "dtype", "with_bias"),
    [
        (1, 96, 1536, 6, torch.bfloat16, False),  # down_proj's split at a decode row
        (5, 64, 512, 2, torch.float32, True),  # the bias goes into the first split only
        (40, 40, 768, 2, torch.bfloat16, True),  # slices in 3 tiles, a masked column tile
        (3, 48, 512, 2, torch.float32, False),
        (3, 48, 256, 1, torch.float32, False),  # one split: y itself, in fp32
    ],
)
def test_partial_sums_add_up_to_skinny_gemm(rows: int, n: int, k: int, split_k: int,
                                            dtype: torch.dtype, with_bias: bool,
                                            randn: Callable[..., torch.Tensor]) -> None:
    """Left unsummed (o_proj, down_proj in decode graphs), split s holds x W^T over its K
    slice, and the splits added in order and rounded are what `skinny_gemm` writes."""
    x = randn(rows, k, dtype=dtype)
    weight = randn(n, k, dtype=dtype) / k**0.5
    bias = randn(n, dtype=dtype) if with_bias else None
    parts, out_dtype = skinny_gemm_partial_sums(x, weight, bias, split_k=split_k)
    assert parts.shape == (split_k, rows, n) and parts.dtype == torch.float32
    assert out_dtype == dtype
    width = k // split_k
    for s in range(split_k):
        ks = slice(s * width, (s + 1) * width)
        expected = F.linear(x[:, ks].double(), weight[:, ks].double(),
                            bias.double() if bias is not None and s == 0 else None)
        torch.testing.assert_close(parts[s].double(), expected, **TOLERANCES[torch.float32])
    total = functools.reduce(torch.add, parts)  # the splits added in order
    # The same additions in the same order: the same bits (but Triton's CPU interpreter
    # truncates fp32 -> bf16 where torch rounds to nearest).
    if bias is None and (dtype == torch.float32 or not is_interpreting()):
        assert torch.equal(total.to(dtype), skinny_gemm(x, weight, split_k=split_k))
    expected = F.linear(x.double(), weight.double(), None if bias is None else bias.double())
    torch.testing.assert_close(total.to(dtype).double(), expected, **TOLERANCES[dtype])
    assert not handover_counters(x.device).any()  # no counter was touched


def test_strided_rows_and_fallback(randn: Callable[..., torch.Tensor]) -> None:
    wide = randn(3, 256 + 64)
    x = wide[:, :256]  # rows of a wider tensor, as a slice of a fused projection
    weight = randn(48, 256)
    torch.testing.assert_close(skinny_gemm(x, weight, split_k=2), F.linear(x, weight),
                               **TOLERANCES[torch.float32])
    # Too many rows, or K not a multiple of BLOCK_K: `linear` is F.linear itself.
    for shape in [(MAX_ROWS + 1, 256), (2, 200)]:
        x, w = randn(*shape), randn(8, shape[1])
        assert not supports(x, w)
        assert torch.equal(linear(x, w), F.linear(x, w))
    assert supports(x[:, :128], w[:, :128])
    with pytest.raises(ValueError, match="rows"):
        skinny_gemm(randn(MAX_ROWS + 1, 256), weight)


def test_choose_tiling() -> None:
    # (BLOCK_N, SPLIT_K, BLOCK_K, num_warps) on 132 SMs. Qwen3-0.6B: o_proj splits K in 4 slices
    # of 512 and down_proj in 6 of 512, each loaded whole up to 32 rows (with eight warps from
    # 17) and a loop over tiles of 128 beyond; qkv_proj and gate_up_proj have enough column
    # tiles unsplit, and loop over K = 1024; gate_up_proj without the activation has so many
    # columns that its tiles widen.
    assert choose_tiling(1024, 2048, 16, 132) == (32, 4, 512, 4)
    assert choose_tiling(1024, 2048, 17, 132) == (32, 4, 512, 8)
    assert choose_tiling(1024, 2048, 33, 132) == (32, 4, 128, 4)
    assert choose_tiling(1024, 3072, 1, 132) == (32, 6, 512, 4)
    assert choose_tiling(1024, 3072, 64, 132) == (32, 4, 128, 4)
    assert choose_tiling(4096, 1024, 1, 132) == (32, 1, 128, 4)
    assert choose_tiling(3072, 1024, 64, 132) == (32, 1, 128, 4)  # gate_up with silu_and_mul
    assert choose_tiling(6144, 1024, 64, 132) == (64, 1, 128, 4)  # 192 tiles of 32: widened
    # Llama-3.2-1B's gate_up_proj with the activation: two tiles of W per program already
    assert choose_tiling(8192, 2048, 64, 132, silu_and_mul=True) == (32, 1, 128, 4)
    assert choose_tiling(1024, 256, 1, 132) == (32, 1, 256, 4)  # too short a K to split
    assert choose_tiling(512, 4096, 1, 132) == (32, 8, 512, 4)  # 4 slices of 1024: 8 of 512
    assert choose_tiling(512, 4096, 64, 132) == (32, 4, 128, 4)  # a loop: at most 4 slices


def test_slices_must_be_whole_tiles(randn: Callable[..., torch.Tensor]) -> None:
    x, weight = randn(2, 768), randn(8, 768)
    with pytest.raises(ValueError, match="multiple of 128"):
        skinny_gemm(x, weight, split_k=4)  # slices of 192


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
@pytest.mark.parametrize("rows", [1, 7, 16, 40, MAX_ROWS])
def test_in_cuda_graph_many_replays(rows: int, randn: Callable[..., torch.Tensor],
                                    graph_replays: Callable[..., list[torch.Tensor]]) -> None:
    """Qwen3-0.6B's o_proj inside a CUDA graph, as decode steps run it: within
    `fused_kernels()` `linear` takes the split-K kernel, and 50 replays give the same bits. On
    a GPU the programs of a tile really race for the counter (the interpreter runs them one at
    a time), so a wrong handover shows here as a wrong or varying result."""
    x = randn(rows, 2048, dtype=torch.bfloat16)
    weight = randn(1024, 2048, dtype=torch.bfloat16) / 2048**0.5
    expected = F.linear(x.double(), weight.double())
    results = graph_replays(lambda: linear(x, weight), 50)
    torch.testing.assert_close(results[0].double(), expected, **TOLERANCES[torch.bfloat16])
    assert all(torch.equal(r, results[0]) for r in results)
    assert torch.equal(results[0], skinny_gemm(x, weight))  # what `linear` ran in the graph
    assert not handover_counters(x.device).any()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
@pytest.mark.parametrize("split_k", [1, 2])
def test_silu_and_mul_in_cuda_graph(split_k: int, randn: Callable[..., torch.Tensor],
                                    graph_replays: Callable[..., list[torch.Tensor]]) -> None:
    """Qwen3-0.6B's gate_up_proj with the activation, in a graph, replayed: the same bits
    every time, with and without the handover of both halves' partial sums."""
    x = randn(MAX_ROWS, 1024, dtype=torch.bfloat16)
    weight = randn(2 * 3072, 1024, dtype=torch.bfloat16) / 1024**0.5
    expected = silu_and_mul(F.linear(x.double(), weight.double()))
    results = graph_replays(
        lambda: skinny_gemm(x, weight, split_k=split_k, silu_and_mul=True), 50)
    torch.testing.assert_close(results[0].double(), expected, **TOLERANCES[torch.bfloat16])
    assert all(torch.equal(r, results[0]) for r in results)
    assert not handover_counters(x.device).any()
