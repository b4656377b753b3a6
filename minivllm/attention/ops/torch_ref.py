"""PagedAttention in plain PyTorch: the provided baseline (lab 2) and the correctness oracle.

Three operations, with the signatures the Triton kernels (`triton_*.py` beside this file) share:

- `reshape_and_cache`: write the new tokens' K/V into the paged cache (vLLM's
  `reshape_and_cache`).
- `paged_decode_attention`: one query token per sequence attends to its whole context, which
  lives in blocks scattered over the cache; we *gather* those blocks into a contiguous tensor
  and call SDPA. Correct and simple, but it copies every K/V byte once more per layer and step:
  that copy is what the Triton kernel removes.
- `paged_prefill_attention`: each sequence's new tokens attend causally to the cached context
  plus themselves.

Shapes: key_cache / value_cache are [num_blocks, block_size, num_kv_heads, head_dim]; queries
are [tokens, num_heads, head_dim]; num_heads is a multiple of num_kv_heads (GQA).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reshape_and_cache(key: torch.Tensor, value: torch.Tensor, key_cache: torch.Tensor,
                      value_cache: torch.Tensor, slot_mapping: torch.Tensor) -> None:
    """Store key/value [num_tokens, num_kv_heads, head_dim] at their slots; skip slots < 0."""
    num_kv_heads, head_dim = key_cache.shape[2], key_cache.shape[3]
    valid = slot_mapping >= 0
    slots = slot_mapping[valid]
    key_cache.view(-1, num_kv_heads, head_dim)[slots] = key[valid].to(key_cache.dtype)
    value_cache.view(-1, num_kv_heads, head_dim)[slots] = value[valid].to(value_cache.dtype)


def gather_kv(cache: torch.Tensor, block_tables: torch.Tensor) -> torch.Tensor:
    """[num_seqs, max_blocks * block_size, num_kv_heads, head_dim]: each sequence's blocks laid
    end to end (positions past a sequence's length hold stale data and must be masked)."""
    num_seqs, max_blocks = block_tables.shape
    _, block_size, num_kv_heads, head_dim = cache.shape
    return cache[block_tables.long()].view(num_seqs, max_blocks * block_size, num_kv_heads,
                                           head_dim)


def paged_decode_attention(query: torch.Tensor, key_cache: torch.Tensor,
                           value_cache: torch.Tensor, block_tables: torch.Tensor,
                           context_lens: torch.Tensor, scale: float) -> torch.Tensor:
    """query [num_seqs, num_heads, head_dim] -> [num_seqs, num_heads, head_dim].

    Sequence i attends to the first context_lens[i] tokens of its block table. A sequence with
    context length 0 (a padding row) gets zeros.
    """
    keys = gather_kv(key_cache, block_tables).transpose(1, 2)  # [B, Hkv, L, D]
    values = gather_kv(value_cache, block_tables).transpose(1, 2)
    positions = torch.arange(keys.shape[2], device=query.device)
    mask = positions[None, :] < context_lens[:, None].to(positions.dtype)  # [B, L]
    empty = ~mask[:, 0]
    mask[:, 0] |= empty  # keep padding rows finite; they are zeroed below
    out = F.scaled_dot_product_attention(
        query.unsqueeze(2).to(keys.dtype), keys, values, attn_mask=mask[:, None, None, :],
        scale=scale, enable_gqa=True)
    out = out.squeeze(2).to(query.dtype)
    return out.masked_fill(empty[:, None, None], 0.0)


def paged_prefill_attention(query: torch.Tensor, key_cache: torch.Tensor,
                            value_cache: torch.Tensor, block_tables: torch.Tensor,
                            query_start_loc: torch.Tensor, context_lens: torch.Tensor,
                            scale: float, max_query_len: int) -> torch.Tensor:
    """query [num_tokens, num_heads, head_dim] -> same shape.

    Sequence i owns query rows query_start_loc[i]:query_start_loc[i+1] (q_len of them); its
    context (cached tokens plus these new ones, already written) has context_lens[i] tokens, so
    query row j sits at position context_lens[i] - q_len + j and sees keys 0..that position.
    """
    del max_query_len  # the loop below needs no bound; the kernels size their grid with it
    out = torch.empty_like(query)
    block_size = key_cache.shape[1]
    starts = query_start_loc.tolist()
    lengths = context_lens.tolist()
    for i, context_len in enumerate(lengths):
        q_start, q_end = starts[i], starts[i + 1]
        q_len = q_end - q_start
        num_blocks = -(-context_len // block_size)
        table = block_tables[i : i + 1, :num_blocks]
        keys = gather_kv(key_cache, table)[0, :context_len].transpose(0, 1)  # [Hkv, L, D]
        values = gather_kv(value_cache, table)[0, :context_len].transpose(0, 1)
        q_pos = torch.arange(context_len - q_len, context_len, device=query.device)
        k_pos = torch.arange(context_len, device=query.device)
        mask = k_pos[None, :] <= q_pos[:, None]  # causal, shifted by the cached context
        q = query[q_start:q_end].transpose(0, 1).to(keys.dtype)  # [H, q_len, D]
        o = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=scale,
                                           enable_gqa=True)
        out[q_start:q_end] = o.transpose(0, 1).to(query.dtype)
    return out
