"""RoPE on the query and key heads in one Triton kernel, with Qwen3's per-head RMSNorm folded
in (vLLM: `rotary_embedding` in `csrc/pos_encoding_kernels.cu`, and `fused_qk_norm_rope` for
Qwen3).

Each step of each layer rotates every query and key head; Qwen3 first normalizes each of them.
In PyTorch that is a gather of cos/sin, halves, products and a concatenation per tensor (plus
a mean of squares for the norm): `torch.compile` still makes four kernels of it per layer, and
on an H200 at 256 decode rows they took ~0.5 ms of a ~6 ms step. One program per token here
loads all its heads once, normalizes and rotates them in float32 registers and writes them
back in place: one kernel, each value read and written once.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from minivllm.attention.ops.triton_utils import pdl_wait, use_pdl


@triton.jit
def _norm_rope_heads(x_ptr, num_heads, weight_ptr, cos, sin, eps, HAS_NORM: tl.constexpr,
                     HEAD_DIM: tl.constexpr, BLOCK_H: tl.constexpr):
    """Heads [num_heads, HEAD_DIM] at x_ptr (contiguous): optionally RMS-normalize each head
    and scale by weight, then rotate the pairs (x1[i], x2[i]) of its two halves by the
    position's angles."""
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
    dtype = x_ptr.dtype.element_ty
    tl.store(ptr1, (x1 * cos - x2 * sin).to(dtype), mask=mask)
    tl.store(ptr2, (x2 * cos + x1 * sin).to(dtype), mask=mask)


@triton.jit
def _rope_kernel(query_ptr, key_ptr, positions_ptr, cos_sin_ptr, q_weight_ptr, k_weight_ptr,
                 stride_qt, stride_kt, stride_cs, eps,
                 NUM_HEADS: tl.constexpr, NUM_KV_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr,
                 BLOCK_H: tl.constexpr, HAS_NORM: tl.constexpr, USE_PDL: tl.constexpr):
    """Program (token, 0) does the token's query heads, (token, 1) its key heads."""
    pdl_wait(USE_PDL)  # wait for the projection that wrote q and k
    token = tl.program_id(0)
    half: tl.constexpr = HEAD_DIM // 2
    position = tl.load(positions_ptr + token).to(tl.int64)
    dims = tl.arange(0, half)[None, :]
    cos = tl.load(cos_sin_ptr + position * stride_cs + dims).to(tl.float32)
    sin = tl.load(cos_sin_ptr + position * stride_cs + half + dims).to(tl.float32)
    if tl.program_id(1) == 0:
        _norm_rope_heads(query_ptr + token * stride_qt, NUM_HEADS, q_weight_ptr, cos, sin, eps,
                         HAS_NORM, HEAD_DIM, BLOCK_H)
    else:
        _norm_rope_heads(key_ptr + token * stride_kt, NUM_KV_HEADS, k_weight_ptr, cos, sin, eps,
                         HAS_NORM, HEAD_DIM, BLOCK_H)


def rope_(positions: torch.Tensor, query: torch.Tensor, key: torch.Tensor,
          cos_sin_cache: torch.Tensor, head_size: int, q_weight: torch.Tensor | None = None,
          k_weight: torch.Tensor | None = None, eps: float = 0.0) -> None:
    """Rotate query [T, num_heads * head_size] and key [T, num_kv_heads * head_size] in place
    (views of one fused qkv projection are fine: only the rows may be strided). With
    `q_weight` and `k_weight`, RMS-normalize each head first (Qwen3's q_norm and k_norm)."""
    num_tokens = query.shape[0]
    if num_tokens == 0:
        return
    if query.stride(-1) != 1 or key.stride(-1) != 1:
        raise ValueError("rope_ needs the heads of a token to be contiguous")
    num_heads, num_kv_heads = query.shape[1] // head_size, key.shape[1] // head_size
    has_norm = q_weight is not None
    pdl = use_pdl(query.device)
    # Without a norm the weight pointers are never read: any tensor stands in for them.
    _rope_kernel[(num_tokens, 2)](
        query, key, positions, cos_sin_cache, q_weight if has_norm else query,
        k_weight if has_norm else key, query.stride(0), key.stride(0), cos_sin_cache.stride(0),
        eps, NUM_HEADS=num_heads, NUM_KV_HEADS=num_kv_heads, HEAD_DIM=head_size,
        BLOCK_H=triton.next_power_of_2(max(num_heads, num_kv_heads)), HAS_NORM=has_norm,
        USE_PDL=pdl, launch_pdl=pdl)
