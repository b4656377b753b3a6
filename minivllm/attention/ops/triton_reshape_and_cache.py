"""Write the new tokens' K/V into the paged KV cache, in Triton (vLLM: `reshape_and_cache` in
`csrc/cache_kernels.cu`; `triton_reshape_and_cache_flash.py` is its Triton twin).

Every layer calls this once per step before attention, so that prefill and decode both read all
K/V through the block tables (in the decode steps' CUDA graphs of lab 5, the RoPE kernel makes
the same write itself, one kernel fewer per layer: `layers/triton_rope.py`). Token t goes to
`slot_mapping[t]`, a flat slot number `block_id * block_size + offset` (lab 1 computed it); -1
marks a padding token, whose K/V are not written. One program copies one token: all its KV
heads, [num_kv_heads, head_dim] values.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from minivllm.attention.ops.triton_utils import pdl_wait, use_pdl


@triton.jit
def _reshape_and_cache_kernel(
    key_ptr, value_ptr, key_cache_ptr, value_cache_ptr, slot_mapping_ptr,
    stride_kt, stride_kh, stride_kd,  # key [num_tokens, num_kv_heads, head_dim]
    stride_vt, stride_vh, stride_vd,  # value, same shape
    stride_kcb, stride_kcs, stride_kch, stride_kcd,  # key_cache [blocks, block_size, heads, dim]
    stride_vcb, stride_vcs, stride_vch, stride_vcd,  # value_cache, same shape
    NUM_KV_HEADS: tl.constexpr, BLOCK_H: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_SIZE: tl.constexpr, USE_PDL: tl.constexpr = False,
):
    """Program t: load key[t] and value[t] as [BLOCK_H, HEAD_DIM] tiles (BLOCK_H is num_kv_heads
    rounded up to a power of two, the extra rows masked off) and store them at slot
    `slot_mapping[t]` of the caches, i.e. block `slot // BLOCK_SIZE`, row `slot % BLOCK_SIZE`.
    Return at once for slot -1. Compute cache offsets in int64: a large cache has more than
    2**31 elements. (`pdl_wait`: with USE_PDL the program may start before the kernel that
    wrote key and value has finished, `triton_utils.use_pdl`.)"""
    pdl_wait(USE_PDL)
    # BEGIN SOLUTION lab2
    token = tl.program_id(0)
    slot = tl.load(slot_mapping_ptr + token).to(tl.int64)
    if slot < 0:  # padding token (CUDA graphs pad the batch): nothing to write
        return
    block = slot // BLOCK_SIZE
    offset = slot % BLOCK_SIZE

    heads = tl.arange(0, BLOCK_H)[:, None]
    dims = tl.arange(0, HEAD_DIM)[None, :]
    mask = heads < NUM_KV_HEADS

    key = tl.load(key_ptr + token * stride_kt + heads * stride_kh + dims * stride_kd, mask=mask)
    value = tl.load(value_ptr + token * stride_vt + heads * stride_vh + dims * stride_vd,
                    mask=mask)
    key_dst = key_cache_ptr + block * stride_kcb + offset * stride_kcs
    value_dst = value_cache_ptr + block * stride_vcb + offset * stride_vcs
    tl.store(key_dst + heads * stride_kch + dims * stride_kcd,
             key.to(key_cache_ptr.dtype.element_ty), mask=mask)
    tl.store(value_dst + heads * stride_vch + dims * stride_vcd,
             value.to(value_cache_ptr.dtype.element_ty), mask=mask)
    # END SOLUTION


def reshape_and_cache(key: torch.Tensor, value: torch.Tensor, key_cache: torch.Tensor,
                      value_cache: torch.Tensor, slot_mapping: torch.Tensor) -> None:
    """Store key/value [num_tokens, num_kv_heads, head_dim] at their slots; skip slots < 0.

    key_cache / value_cache are [num_blocks, block_size, num_kv_heads, head_dim] and are
    written in place. Launch one program per token; pass every stride, so views (q, k, v split
    from one fused projection) work without a copy.
    """
    # BEGIN SOLUTION lab2
    num_tokens, num_kv_heads, head_dim = key.shape
    if num_tokens == 0:
        return
    pdl = use_pdl(key.device)
    _reshape_and_cache_kernel[(num_tokens,)](
        key, value, key_cache, value_cache, slot_mapping,
        *key.stride(), *value.stride(), *key_cache.stride(), *value_cache.stride(),
        NUM_KV_HEADS=num_kv_heads, BLOCK_H=triton.next_power_of_2(num_kv_heads),
        HEAD_DIM=head_dim, BLOCK_SIZE=key_cache.shape[1], USE_PDL=pdl, launch_pdl=pdl,
    )
    # END SOLUTION
