"""RoPE on the query and key heads in one Triton kernel, with Qwen3's per-head RMSNorm folded
in (vLLM: `rotary_embedding` in `csrc/pos_encoding_kernels.cu`, and `fused_qk_norm_rope` for
Qwen3).

Each step of each layer rotates every query and key head; Qwen3 first normalizes each of them.
In PyTorch that is a gather of cos/sin, halves, products and a concatenation per tensor (plus
a mean of squares for the norm): `torch.compile` still makes four kernels of it per layer, and
on an H200 at 256 decode rows they took ~0.5 ms of a ~6 ms step. One program per token here
loads all its heads once, normalizes and rotates them in float32 registers and writes them
back in place: one kernel, each value read and written once.

In CUDA graphs (`fused_kernels()`) the same kernel also writes the token's K and V into the
paged KV cache at its `slot_mapping` slot, the job of lab 2's `reshape_and_cache`: the rotated
keys go straight to the cache instead of back into `key`, so the cache write costs no kernel
of its own (vLLM on ROCm: `fused_qk_rope_reshape_and_cache`; TensorRT-LLM fuses it the same
way). Eager steps, prefills included, keep the two kernels, so lab 2's kernel still runs.
On an H100 (Qwen3-0.6B, context 512) the decode step went from 1.045 to 1.028 ms at batch 1 and
from 2.386 to 2.354 ms at batch 64.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from minivllm.attention.ops.triton_utils import pdl_wait, use_pdl


class KVCacheWrite(NamedTuple):
    """Where `rope_` writes the token's K and V: value [T, num_kv_heads * head_dim] (a view of
    the fused qkv projection is fine), the layer's key and value caches [num_blocks,
    block_size, num_kv_heads, head_dim] (contiguous), and slot_mapping [T] (-1: padding, not
    written)."""
    value: torch.Tensor
    key_cache: torch.Tensor
    value_cache: torch.Tensor
    slot_mapping: torch.Tensor


@triton.jit
def _norm_rope_heads(x_ptr, out_ptr, num_heads, weight_ptr, cos, sin, eps,
                     HAS_NORM: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_H: tl.constexpr):
    """Heads [num_heads, HEAD_DIM] at x_ptr (contiguous): optionally RMS-normalize each head
    and scale by weight, then rotate the pairs (x1[i], x2[i]) of its two halves by the
    position's angles; store them at out_ptr (x_ptr itself, or a cache slot)."""
    half: tl.constexpr = HEAD_DIM // 2
    heads = tl.arange(0, BLOCK_H)[:, None]
    dims = tl.arange(0, half)[None, :]
    mask = heads < num_heads
    ptr1 = x_ptr + heads * HEAD_DIM + dims
    ptr2 = ptr1 + half
    x1 = tl.load(ptr1, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(ptr2, mask=mask, other=0.0).to(tl.float32)
    if HAS_NORM:
        mean_square = (tl.sum(x1 * x1, axis=1) + tl.sum(x2 * x2, axis=1)) / HEAD_DIM
        rstd = tl.rsqrt(mean_square + eps)[:, None]
        x1 = x1 * rstd * tl.load(weight_ptr + dims).to(tl.float32)
        x2 = x2 * rstd * tl.load(weight_ptr + half + dims).to(tl.float32)
    out1 = out_ptr + heads * HEAD_DIM + dims
    dtype = out_ptr.dtype.element_ty
    tl.store(out1, (x1 * cos - x2 * sin).to(dtype), mask=mask)
    tl.store(out1 + half, (x2 * cos + x1 * sin).to(dtype), mask=mask)


@triton.jit
def _rope_kernel(query_ptr, key_ptr, positions_ptr, cos_sin_ptr, q_weight_ptr, k_weight_ptr,
                 value_ptr, key_cache_ptr, value_cache_ptr, slot_mapping_ptr,
                 stride_qt, stride_kt, stride_vt, stride_cs, eps,
                 NUM_HEADS: tl.constexpr, NUM_KV_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr,
                 BLOCK_H: tl.constexpr, HAS_NORM: tl.constexpr, WRITE_CACHE: tl.constexpr,
                 USE_PDL: tl.constexpr):
    """Program (token, 0) does the token's query heads, (token, 1) its key heads; with
    WRITE_CACHE the latter stores them, and copies the value heads, into cache slot
    `slot_mapping[token]` (a contiguous slot holds [NUM_KV_HEADS, HEAD_DIM]); slot -1 writes
    nothing."""
    pdl_wait(USE_PDL)  # wait for the projection that wrote q and k
    token = tl.program_id(0)
    half: tl.constexpr = HEAD_DIM // 2
    position = tl.load(positions_ptr + token).to(tl.int64)
    dims = tl.arange(0, half)[None, :]
    cos = tl.load(cos_sin_ptr + position * stride_cs + dims).to(tl.float32)
    sin = tl.load(cos_sin_ptr + position * stride_cs + half + dims).to(tl.float32)
    if tl.program_id(1) == 0:
        q_row = query_ptr + token * stride_qt
        _norm_rope_heads(q_row, q_row, NUM_HEADS, q_weight_ptr, cos, sin, eps, HAS_NORM,
                         HEAD_DIM, BLOCK_H)
    elif WRITE_CACHE:
        slot = tl.load(slot_mapping_ptr + token).to(tl.int64)
        if slot >= 0:
            slot_offset = slot * NUM_KV_HEADS * HEAD_DIM
            _norm_rope_heads(key_ptr + token * stride_kt, key_cache_ptr + slot_offset,
                             NUM_KV_HEADS, k_weight_ptr, cos, sin, eps, HAS_NORM, HEAD_DIM,
                             BLOCK_H)
            offsets = tl.arange(0, BLOCK_H)[:, None] * HEAD_DIM + tl.arange(0, HEAD_DIM)[None, :]
            mask = offsets < NUM_KV_HEADS * HEAD_DIM
            value = tl.load(value_ptr + token * stride_vt + offsets, mask=mask)
            tl.store(value_cache_ptr + slot_offset + offsets,
                     value.to(value_cache_ptr.dtype.element_ty), mask=mask)
    else:
        k_row = key_ptr + token * stride_kt
        _norm_rope_heads(k_row, k_row, NUM_KV_HEADS, k_weight_ptr, cos, sin, eps, HAS_NORM,
                         HEAD_DIM, BLOCK_H)


def rope_(positions: torch.Tensor, query: torch.Tensor, key: torch.Tensor,
          cos_sin_cache: torch.Tensor, head_size: int, q_weight: torch.Tensor | None = None,
          k_weight: torch.Tensor | None = None, eps: float = 0.0,
          cache_write: KVCacheWrite | None = None) -> None:
    """Rotate query [T, num_heads * head_size] and key [T, num_kv_heads * head_size] in place
    (views of one fused qkv projection are fine: only the rows may be strided). With
    `q_weight` and `k_weight`, RMS-normalize each head first (Qwen3's q_norm and k_norm).
    With `cache_write`, the rotated keys and the values go to the KV cache instead, and `key`
    is left as it was."""
    num_tokens = query.shape[0]
    if num_tokens == 0:
        return
    if query.stride(-1) != 1 or key.stride(-1) != 1:
        raise ValueError("rope_ needs the heads of a token to be contiguous")
    num_heads, num_kv_heads = query.shape[1] // head_size, key.shape[1] // head_size
    has_norm = q_weight is not None
    if cache_write is not None:
        value, key_cache, value_cache, slot_mapping = cache_write
        if not (key_cache.is_contiguous() and value_cache.is_contiguous()
                and value.stride(-1) == 1):
            raise ValueError("rope_ writes contiguous KV caches from values with contiguous "
                             "heads")
    else:  # the cache pointers are never read: any tensor stands in for them
        value = key_cache = value_cache = slot_mapping = key
    pdl = use_pdl(query.device)
    # Without a norm the weight pointers are never read either.
    _rope_kernel[(num_tokens, 2)](
        query, key, positions, cos_sin_cache, q_weight if has_norm else query,
        k_weight if has_norm else key, value, key_cache, value_cache, slot_mapping,
        query.stride(0), key.stride(0), value.stride(0), cos_sin_cache.stride(0), eps,
        NUM_HEADS=num_heads, NUM_KV_HEADS=num_kv_heads, HEAD_DIM=head_size,
        BLOCK_H=triton.next_power_of_2(max(num_heads, num_kv_heads)), HAS_NORM=has_norm,
        WRITE_CACHE=cache_write is not None, USE_PDL=pdl, launch_pdl=pdl)
