"""The Triton RMSNorm kernel (with and without the residual add) against layernorm.py's PyTorch
functions, which compute what Hugging Face's LlamaRMSNorm does."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
import torch

from minivllm.attention.ops.triton_utils import is_interpreting
from minivllm.model_executor.layers.layernorm import fused_add_rms_norm, rms_norm
from minivllm.model_executor.layers.triton_rms_norm import rms_norm as triton_rms_norm
from minivllm.model_executor.layers.triton_skinny_gemm import PartialSums

EPS = 1e-6
# Same dtype on both sides and the same roundings, so the two agree up to the order in which
# the mean of squares is summed: at most one step of the dtype's precision.
# Triton's CPU interpreter truncates float32 -> bfloat16 casts where a GPU rounds to nearest,
# which can cost one more step there.
ONE_ULP = {torch.float32: 2e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}
TRUNCATED = {torch.bfloat16} if is_interpreting() else set()


@pytest.mark.parametrize(
    ("shape", "dtype", "with_residual"),
    [
        ((1, 1024), torch.bfloat16, True),  # Qwen3-0.6B, one decode row
        ((7, 96), torch.float32, False),  # hidden size not a power of two: masked columns
        ((5, 200), torch.float16, True),
        ((3, 2, 64), torch.bfloat16, False),  # leading dimensions are rows
    ],
)
def test_matches_pytorch(shape: tuple[int, ...], dtype: torch.dtype, with_residual: bool,
                         randn: Callable[..., torch.Tensor]) -> None:
    hidden = shape[-1]
    # A view whose rows are strided (a slice of wider rows), as a fused projection gives.
    wide = randn(*shape[:-1], hidden + 32, dtype=dtype) * 4
    x = wide[..., :hidden]
    weight = randn(hidden, dtype=dtype)
    residual = randn(*shape, dtype=dtype) if with_residual else None

    if residual is None:
        out = triton_rms_norm(x, weight, EPS)
        expected = rms_norm(x, weight, EPS)
    else:
        out, summed = triton_rms_norm(x, weight, EPS, residual)
        _, expected_sum = fused_add_rms_norm(x, residual, weight, EPS)
        # x + residual rounded once to the dtype, as PyTorch does: the same bits.
        torch.testing.assert_close(summed, expected_sum, atol=0,
                                   rtol=ONE_ULP[dtype] if dtype in TRUNCATED else 0)
        expected = rms_norm(summed, weight, EPS)  # the norm alone, from the kernel's sum
    assert out.shape == x.shape and out.dtype == dtype
    steps = 2 if dtype in TRUNCATED else 1
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=steps * ONE_ULP[dtype])


@pytest.mark.parametrize(("splits", "dtype"), [(6, torch.bfloat16), (2, torch.float16),
                                               (1, torch.float32)])
def test_partial_sums_are_added_first(splits: int, dtype: torch.dtype,
                                      randn: Callable[..., torch.Tensor]) -> None:
    """x as a split-K matmul's partial sums (o_proj, down_proj in decode graphs): the kernel
    adds them in split order in fp32, rounds the sum to the model dtype, as the matmul would
    have written it, and goes on as from that x."""
    rows, hidden = 3, 96
    parts = randn(splits, rows, hidden)
    weight, residual = randn(hidden, dtype=dtype), randn(rows, hidden, dtype=dtype)
    total = functools.reduce(torch.add, parts)  # the splits added in order
    out, summed = triton_rms_norm(PartialSums(parts, dtype), weight, EPS, residual)
    # The sum made first: the same bits (the kernel rounds it to the dtype either way).
    expected_out, expected_sum = triton_rms_norm(PartialSums(total[None], dtype), weight, EPS,
                                                 residual)
    assert out.dtype == summed.dtype == dtype and out.shape == (rows, hidden)
    assert torch.equal(summed, expected_sum) and torch.equal(out, expected_out)
    assert torch.equal(triton_rms_norm(PartialSums(parts, dtype), weight, EPS),
                       triton_rms_norm(PartialSums(total[None], dtype), weight, EPS))
    # And that is the norm of x + residual with x the sum rounded to the dtype (by the
    # interpreter, where it truncates: up to a step at x's scale).
    steps = 2 if dtype in TRUNCATED else 1
    _, pytorch_sum = fused_add_rms_norm(total.to(dtype), residual, weight, EPS)
    torch.testing.assert_close(summed, pytorch_sum, rtol=ONE_ULP[dtype],
                               atol=(steps - 1) * ONE_ULP[dtype] * total.abs().max().item())
    torch.testing.assert_close(out, rms_norm(summed, weight, EPS), atol=1e-6,
                               rtol=steps * ONE_ULP[dtype])


def test_zero_rows(randn: Callable[..., torch.Tensor]) -> None:
    x = randn(0, 64)
    assert triton_rms_norm(x, randn(64), EPS).shape == (0, 64)
