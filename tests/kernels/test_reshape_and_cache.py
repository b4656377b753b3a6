"""`reshape_and_cache` in Triton against the PyTorch oracle: a pure copy, so results must be
bit-identical, padding slots (-1) must leave the cache untouched, and views must work."""

from __future__ import annotations

import pytest
import torch

from minivllm.attention.ops import torch_ref
from minivllm.attention.ops.triton_paged import reshape_and_cache

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _random_slots(num_tokens: int, num_slots: int, num_padding: int,
                  generator: torch.Generator) -> torch.Tensor:
    """Distinct random slots, `num_padding` of them replaced by -1 at random positions."""
    slots = torch.randperm(num_slots, generator=generator)[:num_tokens]
    padding = torch.randperm(num_tokens, generator=generator)[:num_padding]
    slots[padding] = -1
    return slots.to(DEVICE)


@pytest.mark.parametrize(
    ("num_tokens", "num_kv_heads", "head_dim", "block_size", "dtype", "num_padding"),
    [
        (1, 1, 64, 16, torch.float32, 0),
        (7, 3, 64, 8, torch.bfloat16, 2),
        (19, 2, 128, 32, torch.float16, 5),
        (33, 8, 128, 128, torch.bfloat16, 0),
        (12, 5, 64, 16, torch.float32, 12),  # a batch of padding only
    ],
)
def test_matches_oracle(num_tokens: int, num_kv_heads: int, head_dim: int, block_size: int,
                        dtype: torch.dtype, num_padding: int,
                        generator: torch.Generator) -> None:
    num_blocks = -(-num_tokens // block_size) + 2
    shape = (num_blocks, block_size, num_kv_heads, head_dim)
    key_cache = torch.randn(shape, generator=generator).to(dtype).to(DEVICE)
    value_cache = torch.randn(shape, generator=generator).to(dtype).to(DEVICE)
    key = torch.randn(num_tokens, num_kv_heads, head_dim, generator=generator).to(dtype)
    value = torch.randn(num_tokens, num_kv_heads, head_dim, generator=generator).to(dtype)
    key, value = key.to(DEVICE), value.to(DEVICE)
    slots = _random_slots(num_tokens, num_blocks * block_size, num_padding, generator)

    expected_k, expected_v = key_cache.clone(), value_cache.clone()
    torch_ref.reshape_and_cache(key, value, expected_k, expected_v, slots)
    reshape_and_cache(key, value, key_cache, value_cache, slots)

    torch.testing.assert_close(key_cache, expected_k, atol=0, rtol=0)
    torch.testing.assert_close(value_cache, expected_v, atol=0, rtol=0)


def test_views_of_a_fused_projection_and_dtype_conversion(generator: torch.Generator) -> None:
    """k and v sliced out of one qkv tensor (strided views), fp32 values into an fp16 cache."""
    num_tokens, num_heads, num_kv_heads, head_dim, block_size = 9, 6, 2, 64, 16
    qkv = torch.randn(num_tokens, (num_heads + 2 * num_kv_heads) * head_dim,
                      generator=generator).to(DEVICE)
    _, key, value = qkv.split([num_heads * head_dim, num_kv_heads * head_dim,
                               num_kv_heads * head_dim], dim=-1)
    key = key.view(num_tokens, num_kv_heads, head_dim)
    value = value.view(num_tokens, num_kv_heads, head_dim)
    assert not key.is_contiguous()
    kv_cache = torch.zeros(2, 2, block_size, num_kv_heads, head_dim, dtype=torch.float16,
                           device=DEVICE)
    expected = kv_cache.clone()
    slots = _random_slots(num_tokens, 2 * block_size, 1, generator)

    torch_ref.reshape_and_cache(key, value, expected[0], expected[1], slots)
    reshape_and_cache(key, value, kv_cache[0], kv_cache[1], slots)

    torch.testing.assert_close(kv_cache, expected, atol=0, rtol=0)
    assert kv_cache.count_nonzero() > 0


def test_no_tokens_is_a_no_op() -> None:
    cache = torch.ones(1, 8, 1, 64, device=DEVICE)
    empty = torch.empty(0, 1, 64, device=DEVICE)
    reshape_and_cache(empty, empty, cache, cache, torch.empty(0, dtype=torch.int64,
                                                              device=DEVICE))
    assert bool((cache == 1).all())
