"""Paged decode attention in Triton against the PyTorch oracle (run in float64).

The cases cover, without taking the full product: context length 1, block boundaries +-1, one
block, many blocks, padding rows (context length 0), GQA groups of 1, 2, 3, 4 and 8, head_dim
64 and 128, block sizes 8 to 128, every dtype, and split-K off (1), forced (including more
splits than tiles, so some are empty) and chosen by the heuristic (None). Block tables are
shuffled and every cache slot outside the contexts holds NaN: reading one shows up as NaN.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from minivllm.attention.ops import torch_ref
from minivllm.attention.ops.triton_paged import paged_decode_attention
from minivllm.attention.ops.triton_paged_decode import choose_num_splits

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16

# (context_lens, num_heads, num_kv_heads, head_dim, block_size, dtype, num_splits)
CASES = [
    ([1], 4, 4, 64, 16, F32, 1),
    ([15, 16, 17], 4, 2, 64, 16, F16, 1),
    ([16], 9, 3, 64, 16, BF16, 1),
    ([200, 3, 77], 8, 2, 128, 16, BF16, 4),
    ([130, 0, 64], 8, 1, 64, 32, F32, 3),
    ([127, 128, 129], 6, 3, 64, 128, F16, None),
    ([0, 0], 4, 2, 64, 8, BF16, 1),
    ([0, 5], 4, 2, 64, 8, F32, 8),
    ([300], 16, 8, 128, 16, BF16, 16),
    ([40, 9], 4, 2, 128, 8, F32, 2),
    ([65], 3, 1, 64, 16, F16, 1),
    ([1, 100], 12, 3, 128, 32, F32, 5),
    ([64], 2, 2, 64, 64, BF16, 64),
    ([257, 31], 8, 8, 128, 128, F16, None),
]


def _oracle(query: torch.Tensor, kv, scale: float) -> torch.Tensor:
    return torch_ref.paged_decode_attention(
        query.double(), kv.clean_key_cache.double(), kv.clean_value_cache.double(),
        kv.block_tables, kv.context_lens, scale)


def _run_case(context_lens, num_heads, num_kv_heads, head_dim, block_size, dtype, num_splits,
              make_paged_kv, randn, assert_close) -> None:
    kv = make_paged_kv(context_lens, num_kv_heads, head_dim, block_size, dtype)
    # Queries of std 2 give peaked softmaxes whose max moves from tile to tile, so a missing
    # rescale of l or acc cannot hide.
    query = randn(len(context_lens), num_heads, head_dim, dtype=dtype) * 2
    scale = head_dim ** -0.5

    out = paged_decode_attention(query, kv.key_cache, kv.value_cache, kv.block_tables,
                                 kv.context_lens, scale, num_splits=num_splits)

    assert out.shape == query.shape
    assert out.dtype == dtype
    assert_close(out, _oracle(query, kv, scale))
    padding = kv.context_lens == 0
    assert bool((out[padding] == 0).all()), "padding rows must be zeros"


@pytest.mark.parametrize(
    ("context_lens", "num_heads", "num_kv_heads", "head_dim", "block_size", "dtype",
     "num_splits"), CASES)
def test_matches_oracle(context_lens, num_heads, num_kv_heads, head_dim, block_size, dtype,
                        num_splits, make_paged_kv, randn, assert_close) -> None:
    _run_case(context_lens, num_heads, num_kv_heads, head_dim, block_size, dtype, num_splits,
              make_paged_kv, randn, assert_close)


def test_split_k_equals_one_pass(make_paged_kv, randn) -> None:
    """Splitting only reorders the sum: the merged result equals the one-pass one closely."""
    kv = make_paged_kv([333, 70], 2, 64, 16, F32)
    query = randn(2, 4, 64) * 2
    args = (query, kv.key_cache, kv.value_cache, kv.block_tables, kv.context_lens, 0.125)
    one_pass = paged_decode_attention(*args, num_splits=1)
    for num_splits in (2, 4, 7):
        torch.testing.assert_close(paged_decode_attention(*args, num_splits=num_splits),
                                   one_pass, atol=1e-5, rtol=1e-5)


def test_empty_splits_are_not_read(make_paged_kv, randn, assert_close,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A split past the end of its context writes no partial output, only lse = -inf: the
    merge must skip its slot. The scratch memory starts as NaN here, so reading it shows up."""
    kv = make_paged_kv([40, 0, 3], 2, 64, 16, F32)
    query = randn(3, 4, 64) * 2
    expected = _oracle(query, kv, 0.125)
    empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, **k: empty(*a, **k).fill_(float("nan")))
    out = paged_decode_attention(query, kv.key_cache, kv.value_cache, kv.block_tables,
                                 kv.context_lens, 0.125, num_splits=8)
    monkeypatch.undo()
    assert_close(out, expected)


def test_strided_query(make_paged_kv, randn, assert_close) -> None:
    """The query as the model hands it over: a view into a fused qkv projection."""
    num_heads, num_kv_heads, head_dim = 6, 2, 64
    kv = make_paged_kv([50, 7], num_kv_heads, head_dim, 16, F16)
    qkv = randn(2, (num_heads + 2 * num_kv_heads) * head_dim, dtype=F16)
    query = qkv[:, :num_heads * head_dim].view(2, num_heads, head_dim)
    assert not query.is_contiguous()
    out = paged_decode_attention(query, kv.key_cache, kv.value_cache, kv.block_tables,
                                 kv.context_lens, 0.125)
    assert_close(out, _oracle(query, kv, 0.125))


@given(num_seqs=st.integers(1, 1024), num_kv_heads=st.integers(1, 16),
       max_context_len=st.integers(1, 2**20), num_sms=st.sampled_from([1, 78, 132]))
def test_choose_num_splits(num_seqs: int, num_kv_heads: int, max_context_len: int,
                           num_sms: int) -> None:
    splits = choose_num_splits(num_seqs, num_kv_heads, max_context_len, num_sms)
    assert splits >= 1
    assert splits & (splits - 1) == 0, "a power of two: few compiled variants"
    programs = num_seqs * num_kv_heads
    if splits > 1:
        assert max_context_len // splits >= 32, "each split keeps a useful share of work"
        assert programs * splits // 2 < 4 * num_sms, "no more splits than it takes to fill"
    if programs >= 4 * num_sms:
        assert splits == 1


def test_choose_num_splits_fills_the_gpu() -> None:
    assert choose_num_splits(1, 8, 32768, 132) * 8 >= 132
    assert choose_num_splits(16, 8, 16384, 132) * 128 >= 132
    assert choose_num_splits(256, 8, 1024, 132) == 1


# Larger shapes, compiled on the GPU only (the interpreter would take minutes).
GPU_CASES = [
    ([4096] * 8, 32, 8, 128, 16, BF16, None),
    ([1] + [8191, 8192, 8193] * 5, 16, 8, 128, 16, BF16, None),
    ([32768], 16, 8, 128, 16, BF16, None),
    ([2000, 0, 5, 3000], 14, 2, 64, 32, F16, None),
    ([1023] * 64, 9, 3, 64, 16, BF16, None),
    ([5000, 17], 8, 2, 256, 16, BF16, 4),
    ([777, 4444], 8, 4, 128, 128, F32, None),
    ([129] * 300, 8, 8, 128, 8, F16, 1),
]


@requires_cuda
@pytest.mark.gpu
@pytest.mark.parametrize(
    ("context_lens", "num_heads", "num_kv_heads", "head_dim", "block_size", "dtype",
     "num_splits"), GPU_CASES)
def test_matches_oracle_large(context_lens, num_heads, num_kv_heads, head_dim, block_size,
                              dtype, num_splits, make_paged_kv, randn, assert_close) -> None:
    _run_case(context_lens, num_heads, num_kv_heads, head_dim, block_size, dtype, num_splits,
              make_paged_kv, randn, assert_close)


@requires_cuda
@pytest.mark.gpu
def test_cuda_graph_replay(make_paged_kv, randn, assert_close) -> None:
    """The launch depends on host shapes only: a captured graph replays correctly after the
    context lengths (device data) change, as in vLLM's CUDA-graph decode."""
    kv = make_paged_kv([3000, 1500, 10, 0], 2, 128, 16, BF16, poison=0.0)
    query = randn(4, 8, 128, dtype=BF16)
    args = (query, kv.key_cache, kv.value_cache, kv.block_tables, kv.context_lens, 0.1)
    paged_decode_attention(*args)  # compile outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = paged_decode_attention(*args)
    kv.context_lens.copy_(torch.tensor([2999, 1, 11, 0], dtype=torch.int32))
    graph.replay()
    assert_close(out, _oracle(query, kv, 0.1))
