"""The Triton argmax of the sampler against `torch.argmax`: the same positions, ties to the
first one, on rows longer than one chunk and not a multiple of it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from minivllm.attention.ops.triton_utils import handover_counters
from minivllm.model_executor.triton_argmax import BLOCK, triton_argmax


@pytest.mark.parametrize(("rows", "n", "dtype"), [
    (1, 151936, torch.bfloat16),  # Qwen3's vocabulary, one decode row
    (5, 3 * BLOCK + 17, torch.float32),  # a partial last chunk
    (3, 100, torch.float16),  # less than one chunk
])
def test_matches_torch_argmax(rows: int, n: int, dtype: torch.dtype,
                              randn: Callable[..., torch.Tensor]) -> None:
    x = randn(rows, n, dtype=dtype)
    assert torch.equal(triton_argmax(x), x.argmax(dim=-1))
    assert not handover_counters(x.device).any(), "the counters must be left at 0"


def test_ties_go_to_the_first_position_across_chunks(randn: Callable[..., torch.Tensor]
                                                     ) -> None:
    x = randn(4, 2 * BLOCK + 5)
    x[0, [7, BLOCK + 3]] = 100.0  # the same maximum in two chunks
    x[1, [BLOCK + 3, BLOCK + 9, 2 * BLOCK + 1]] = 100.0  # in one chunk, then the last one
    x[2] = float("-inf")  # a fully masked row: position 0, as torch says
    x[3, 2 * BLOCK + 4] = 100.0  # the very last position
    assert triton_argmax(x).tolist() == [7, BLOCK + 3, 0, 2 * BLOCK + 4]
    assert torch.equal(triton_argmax(x), x.argmax(dim=-1))


def test_strided_rows(randn: Callable[..., torch.Tensor]) -> None:
    """Rows of a wider tensor (a row stride that is not the row length)."""
    wide = randn(3, BLOCK + 64)
    x = wide[:, :BLOCK + 1]
    assert torch.equal(triton_argmax(x), x.argmax(dim=-1))
