"""The Triton RoPE kernel (with and without Qwen3's per-head RMSNorm) against the PyTorch
layers computed in float64, in place on views of one fused qkv projection; and its variant
for CUDA graphs that writes K and V into the paged cache, against `reshape_and_cache`."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from minivllm.attention.ops import torch_ref
from minivllm.model_executor.layers.layernorm import rms_norm
from minivllm.model_executor.layers.rotary_embedding import RotaryEmbedding, apply_rope
from minivllm.model_executor.layers.triton_rope import KVCacheWrite, rope_

ROPE = {"rope_type": "default", "rope_theta": 1_000_000.0}
EPS = 1e-6


def oracle(positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor, cache: torch.Tensor,
           head_dim: int, weights: tuple[torch.Tensor, torch.Tensor] | None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """The PyTorch code path, in float64."""
    q, k, cache = q.double(), k.double(), cache.double()
    if weights is not None:
        q = rms_norm(q.unflatten(-1, (-1, head_dim)), weights[0].double(), EPS).flatten(-2)
        k = rms_norm(k.unflatten(-1, (-1, head_dim)), weights[1].double(), EPS).flatten(-2)
    return apply_rope(positions, q, k, cache, head_dim)


@pytest.mark.parametrize(
    ("num_tokens", "num_heads", "num_kv_heads", "head_dim", "dtype", "norm"),
    [
        (1, 16, 8, 128, torch.bfloat16, True),  # Qwen3-0.6B, one decode row
        (9, 4, 1, 64, torch.float32, False),  # Llama-style: RoPE only
        (5, 6, 2, 64, torch.float16, True),  # head counts that are not powers of two
        (3, 2, 4, 32, torch.float32, True),  # more KV heads than query heads
    ],
)
def test_matches_pytorch_in_place(num_tokens: int, num_heads: int, num_kv_heads: int,
                                  head_dim: int, dtype: torch.dtype, norm: bool,
                                  generator: torch.Generator,
                                  randn: Callable[..., torch.Tensor],
                                  assert_close: Callable[[torch.Tensor, torch.Tensor], None]
                                  ) -> None:
    rope = RotaryEmbedding(head_dim, 4096, ROPE)
    cache = rope.cos_sin_cache.to(dtype).to(randn(1).device)
    q_size, kv_size = num_heads * head_dim, num_kv_heads * head_dim
    qkv = randn(num_tokens, q_size + 2 * kv_size, dtype=dtype) * 3
    positions = torch.randint(0, 4096, (num_tokens,), generator=generator).to(qkv.device)
    weights = (randn(head_dim, dtype=dtype), randn(head_dim, dtype=dtype)) if norm else None
    q, k, v = qkv.split([q_size, kv_size, kv_size], dim=-1)
    expected_q, expected_k = oracle(positions, q, k, cache, head_dim, weights)
    v_before = v.clone()

    rope_(positions, q, k, cache, head_dim, *((*weights, EPS) if norm else ()))

    assert_close(q, expected_q)
    assert_close(k, expected_k)
    assert torch.equal(v, v_before), "the kernel wrote outside q and k"


def test_rejects_heads_that_are_not_contiguous(randn: Callable[..., torch.Tensor]) -> None:
    rope = RotaryEmbedding(32, 64, ROPE)
    q = randn(32, 4).t()  # [4, 32] with column stride 4
    with pytest.raises(ValueError, match="contiguous"):
        rope_(torch.zeros(4, dtype=torch.long, device=q.device), q, q.clone(),
              rope.cos_sin_cache.to(q.device), 32)


@pytest.mark.parametrize(("num_heads", "num_kv_heads", "head_dim", "dtype", "norm"),
                         [(16, 8, 128, torch.bfloat16, True), (6, 3, 64, torch.float32, False)])
def test_cache_write_matches_rope_then_reshape_and_cache(
        num_heads: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype, norm: bool,
        generator: torch.Generator, randn: Callable[..., torch.Tensor],
        assert_close: Callable[[torch.Tensor, torch.Tensor], None]) -> None:
    """The rotated keys and the values land in the caches at their slots, exactly where
    `reshape_and_cache` puts them; the padding token (slot -1) writes nothing, q is rotated in
    place as before, and key, no longer needed, is left as it was."""
    num_tokens, num_blocks, block_size = 5, 4, 8
    rope = RotaryEmbedding(head_dim, 4096, ROPE)
    cos_sin = rope.cos_sin_cache.to(dtype).to(randn(1).device)
    q_size, kv_size = num_heads * head_dim, num_kv_heads * head_dim
    qkv = randn(num_tokens, q_size + 2 * kv_size, dtype=dtype) * 3
    q, k, v = qkv.split([q_size, kv_size, kv_size], dim=-1)
    positions = torch.randint(0, 4096, (num_tokens,), generator=generator).to(qkv.device)
    weights = (randn(head_dim, dtype=dtype), randn(head_dim, dtype=dtype)) if norm else None
    slots = torch.tensor([9, 0, -1, 31, 17], device=qkv.device)
    shape = (num_blocks, block_size, num_kv_heads, head_dim)
    key_cache, value_cache = randn(*shape, dtype=dtype), randn(*shape, dtype=dtype)
    expected_q, expected_k = oracle(positions, q, k, cos_sin, head_dim, weights)
    expected_key_cache, expected_value_cache = key_cache.double(), value_cache.double()
    torch_ref.reshape_and_cache(expected_k.unflatten(-1, (-1, head_dim)),
                                v.double().unflatten(-1, (-1, head_dim)), expected_key_cache,
                                expected_value_cache, slots)
    k_before = k.clone()

    rope_(positions, q, k, cos_sin, head_dim, *((*weights, EPS) if norm else ()),
          cache_write=KVCacheWrite(v, key_cache, value_cache, slots))

    assert_close(q, expected_q)
    assert_close(key_cache, expected_key_cache)
    assert torch.equal(value_cache.double(), expected_value_cache), "values are a plain copy"
    assert torch.equal(k, k_before)
