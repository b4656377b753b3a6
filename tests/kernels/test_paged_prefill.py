"""Paged prefill attention in Triton against the PyTorch oracle (run in float64).

Each case is a batch of prefills: (q_len, context_len) per sequence, where context_len - q_len
tokens were cached before (a chunked prefill or a prefix-cache hit). The cases cover one token,
block boundaries, query chunks crossing the kernel's 128-token query tile, long cached prefixes
(so the unmasked loop runs), GQA groups of 1, 2, 3, 4 and 8, head_dim 64 and 128, block sizes
8 to 128 and every dtype. Block tables are shuffled and unowned cache slots hold NaN.
"""

from __future__ import annotations

import pytest
import torch

from minivllm.attention.ops import torch_ref
from minivllm.attention.ops.triton_paged import paged_prefill_attention

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16

# (q_lens, context_lens, num_heads, num_kv_heads, head_dim, block_size, dtype)
CASES = [
    ([1], [1], 4, 4, 64, 16, F32),
    ([17], [17], 4, 2, 64, 16, F16),
    ([5, 33], [20, 33], 4, 2, 128, 16, BF16),
    ([130], [150], 9, 3, 64, 32, F32),
    ([1, 64, 3], [70, 64, 200], 8, 2, 64, 8, F16),
    ([40], [40], 8, 1, 128, 128, F16),
    ([15, 16, 17], [15, 16, 17], 3, 1, 64, 16, BF16),
    ([129, 2], [129, 300], 2, 2, 64, 128, F32),
    ([64], [191], 4, 1, 128, 64, BF16),
]


def _run_case(q_lens, context_lens, num_heads, num_kv_heads, head_dim, block_size, dtype,
              make_paged_kv, randn, assert_close) -> None:
    kv = make_paged_kv(context_lens, num_kv_heads, head_dim, block_size, dtype)
    query = randn(sum(q_lens), num_heads, head_dim, dtype=dtype) * 2
    starts = torch.tensor([0, *q_lens], device=DEVICE).cumsum(0).to(torch.int32)
    scale = head_dim ** -0.5
    args = (kv.block_tables, starts, kv.context_lens, scale, max(q_lens))

    out = paged_prefill_attention(query, kv.key_cache, kv.value_cache, *args)
    expected = torch_ref.paged_prefill_attention(
        query.double(), kv.clean_key_cache.double(), kv.clean_value_cache.double(), *args)

    assert out.shape == query.shape
    assert out.dtype == dtype
    assert_close(out, expected)


@pytest.mark.parametrize(
    ("q_lens", "context_lens", "num_heads", "num_kv_heads", "head_dim", "block_size", "dtype"),
    CASES)
def test_matches_oracle(q_lens, context_lens, num_heads, num_kv_heads, head_dim, block_size,
                        dtype, make_paged_kv, randn, assert_close) -> None:
    _run_case(q_lens, context_lens, num_heads, num_kv_heads, head_dim, block_size, dtype,
              make_paged_kv, randn, assert_close)


def test_strided_query(make_paged_kv, randn, assert_close) -> None:
    """The query as a view into a fused qkv projection, as the model hands it over."""
    num_heads, num_kv_heads, head_dim, q_len = 4, 2, 64, 21
    kv = make_paged_kv([q_len], num_kv_heads, head_dim, 16, F32)
    qkv = randn(q_len, (num_heads + 2 * num_kv_heads) * head_dim)
    query = qkv[:, :num_heads * head_dim].view(q_len, num_heads, head_dim)
    starts = torch.tensor([0, q_len], dtype=torch.int32, device=DEVICE)
    args = (kv.block_tables, starts, kv.context_lens, 0.125, q_len)
    out = paged_prefill_attention(query, kv.key_cache, kv.value_cache, *args)
    expected = torch_ref.paged_prefill_attention(
        query.double(), kv.clean_key_cache.double(), kv.clean_value_cache.double(), *args)
    assert_close(out, expected)


GPU_CASES = [
    ([1024] * 8, [1024] * 8, 16, 8, 128, 16, BF16),
    ([512, 1, 2048, 77], [4096, 1, 2048, 1000], 32, 8, 128, 16, BF16),
    ([300, 301], [900, 301], 14, 2, 64, 32, F16),
    ([1000], [3000], 9, 3, 64, 128, BF16),
    ([256, 100], [256, 5000], 8, 2, 256, 16, BF16),
    ([200], [333], 8, 4, 128, 8, F32),
]


@requires_cuda
@pytest.mark.gpu
@pytest.mark.parametrize(
    ("q_lens", "context_lens", "num_heads", "num_kv_heads", "head_dim", "block_size", "dtype"),
    GPU_CASES)
def test_matches_oracle_large(q_lens, context_lens, num_heads, num_kv_heads, head_dim,
                              block_size, dtype, make_paged_kv, randn, assert_close) -> None:
    _run_case(q_lens, context_lens, num_heads, num_kv_heads, head_dim, block_size, dtype,
              make_paged_kv, randn, assert_close)
