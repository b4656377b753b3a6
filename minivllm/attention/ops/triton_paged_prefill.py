"""Paged prefill attention in Triton (vLLM: the prefix-prefill kernel
`vllm/attention/ops/prefix_prefill.py`, and `triton_unified_attention.py`).

A prefill (or a chunk of one, with chunked prefill or a prefix-cache hit) brings q_len new
tokens to a sequence that may already have cached tokens. By the time attention runs, the new
tokens' K/V are in the cache too, so the whole context, context_lens[i] tokens, is read through
the block table, exactly as in decode. New token j sits at position
`context_len - q_len + j` and sees the keys at positions 0..that position (causal).

This is FlashAttention-2 over a paged cache: a program owns a tile of BLOCK_Q query tokens
times the query heads of one KV head (GQA: BLOCK_M rows that share every K/V tile), streams the
context in tiles of BLOCK_N keys with an online softmax in fp32, and writes its output once.
Prefill does ~BLOCK_M flops per K/V byte, so unlike decode it is compute-bound: both products
are tensor-core `tl.dot`s. Two loops keep masking off the common path: keys every query of the
tile sees need no mask, only the tiles on the diagonal do.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from minivllm.attention.ops.triton_utils import dot_dtype

LOG2E = 1.4426950408889634


@triton.jit
def _attend_tile(
    q, m_i, l_i, acc, tile_start, q_pos, kv_end,
    key_base, value_base, block_table, stride_kb, stride_kt, stride_kd,
    stride_vb, stride_vt, stride_vd, scale_log2,
    HEAD_DIM: tl.constexpr, BLOCK_SIZE: tl.constexpr, BLOCK_N: tl.constexpr,
    DOT_DTYPE: tl.constexpr, CAUSAL: tl.constexpr,
):
    """One online-softmax step: attend the Q tile to keys tile_start..tile_start+BLOCK_N-1,
    read through the block table, and return the updated (m_i, l_i, acc).

    CAUSAL=False: every key of the tile is visible to every query (no masks at all).
    CAUSAL=True: mask keys at positions >= kv_end (not loaded) or > the query's position.
    """
    # BEGIN SOLUTION lab2
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    pos = tile_start + offs_n
    if CAUSAL:
        valid = pos < kv_end
        block = tl.load(block_table + pos // BLOCK_SIZE, mask=valid, other=0).to(tl.int64)
    else:
        block = tl.load(block_table + pos // BLOCK_SIZE).to(tl.int64)
    row = pos % BLOCK_SIZE
    k_ptrs = (key_base + block[None, :] * stride_kb + row[None, :] * stride_kt
              + offs_d[:, None] * stride_kd)
    v_ptrs = (value_base + block[:, None] * stride_vb + row[:, None] * stride_vt
              + offs_d[None, :] * stride_vd)
    if CAUSAL:
        k = tl.load(k_ptrs, mask=valid[None, :], other=0.0)
        v = tl.load(v_ptrs, mask=valid[:, None], other=0.0)
    else:
        k = tl.load(k_ptrs)
        v = tl.load(v_ptrs)

    s = tl.dot(q, k.to(DOT_DTYPE), input_precision="ieee") * scale_log2
    if CAUSAL:
        visible = valid[None, :] & (pos[None, :] <= q_pos[:, None])
        s = tl.where(visible, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, axis=1)
    acc = acc * alpha[:, None] + tl.dot(p.to(DOT_DTYPE), v.to(DOT_DTYPE),
                                        input_precision="ieee")
    return m_new, l_i, acc
    # END SOLUTION


# The block-table width changes from step to step; without do_not_specialize Triton
# compiles a new variant (for about half a second) whenever its row stride flips
# between a multiple of 16 and not, or to 1.
@triton.jit(do_not_specialize=["stride_bts"])
def _paged_prefill_kernel(
    out_ptr, query_ptr, key_cache_ptr, value_cache_ptr, block_tables_ptr,
    query_start_loc_ptr, context_lens_ptr,
    scale_log2,  # softmax scale * log2(e)
    stride_qt, stride_qh, stride_qd,  # query [num_tokens, num_heads, head_dim]
    stride_ot, stride_oh, stride_od,
    stride_kb, stride_kt, stride_kh, stride_kd,  # key_cache [blocks, block_size, heads, dim]
    stride_vb, stride_vt, stride_vh, stride_vd,
    stride_bts,  # block_tables row stride
    QUERIES_PER_KV: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_SIZE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_N: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
):
    """Program (kv_head, seq, q_tile): query tokens q_tile*BLOCK_Q .. +BLOCK_Q-1 of sequence
    seq, for all QUERIES_PER_KV query heads of kv_head at once (GQA, as in decode: each K/V
    tile is loaded once for the whole group). Row r of the [BLOCK_M, HEAD_DIM] Q tile is token
    r // QUERIES_PER_KV, head r % QUERIES_PER_KV (BLOCK_M >= BLOCK_Q * QUERIES_PER_KV; rows
    past that or past q_len are masked).

    The grid's tile axis runs backwards (the last tiles, which see the most keys, start first:
    fewer stragglers). Return at once when the tile is past the sequence's q_len. Token m of
    the chunk sits at position (context_len - q_len) + m. Keys before the tile's first position
    are seen by all its rows: loop over those whole BLOCK_N tiles with CAUSAL=False, then over
    the rest up to the tile's last position (capped at context_len) with CAUSAL=True. Finally
    store acc / l for the rows that exist.
    """
    # BEGIN SOLUTION lab2
    kv_head = tl.program_id(0)
    seq = tl.program_id(1)
    q_tile = tl.num_programs(2) - 1 - tl.program_id(2)

    q_start = tl.load(query_start_loc_ptr + seq)
    q_len = tl.load(query_start_loc_ptr + seq + 1) - q_start
    if q_tile * BLOCK_Q >= q_len:
        return
    context_len = tl.load(context_lens_ptr + seq)
    first_pos = context_len - q_len + q_tile * BLOCK_Q  # position of the tile's first token

    rows = tl.arange(0, BLOCK_M)
    q_index = q_tile * BLOCK_Q + rows // QUERIES_PER_KV  # token within this chunk
    heads = kv_head * QUERIES_PER_KV + rows % QUERIES_PER_KV
    row_mask = (rows < BLOCK_Q * QUERIES_PER_KV) & (q_index < q_len)
    offs_d = tl.arange(0, HEAD_DIM)
    tokens = (q_start + q_index).to(tl.int64)
    q = tl.load(query_ptr + tokens[:, None] * stride_qt + heads[:, None] * stride_qh
                + offs_d[None, :] * stride_qd, mask=row_mask[:, None], other=0.0)
    q = q.to(DOT_DTYPE)
    q_pos = context_len - q_len + q_index

    key_base = key_cache_ptr + kv_head * stride_kh
    value_base = value_cache_ptr + kv_head * stride_vh
    block_table = block_tables_ptr + seq * stride_bts
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)

    # Keys 0..first_pos are visible to every row; the unmasked loop takes whole tiles of them.
    # Both loops start at key 0 or after it, so each row's m_i is finite after the first tile.
    unmasked_end = (first_pos // BLOCK_N) * BLOCK_N
    for tile_start in range(0, unmasked_end, BLOCK_N):
        m_i, l_i, acc = _attend_tile(
            q, m_i, l_i, acc, tile_start, q_pos, context_len, key_base, value_base,
            block_table, stride_kb, stride_kt, stride_kd, stride_vb, stride_vt, stride_vd,
            scale_log2, HEAD_DIM, BLOCK_SIZE, BLOCK_N, DOT_DTYPE, CAUSAL=False)
    kv_end = tl.minimum(first_pos + BLOCK_Q, context_len)
    for tile_start in range(unmasked_end, kv_end, BLOCK_N):
        m_i, l_i, acc = _attend_tile(
            q, m_i, l_i, acc, tile_start, q_pos, kv_end, key_base, value_base,
            block_table, stride_kb, stride_kt, stride_kd, stride_vb, stride_vt, stride_vd,
            scale_log2, HEAD_DIM, BLOCK_SIZE, BLOCK_N, DOT_DTYPE, CAUSAL=True)

    out = acc / l_i[:, None]
    tl.store(out_ptr + tokens[:, None] * stride_ot + heads[:, None] * stride_oh
             + offs_d[None, :] * stride_od, out.to(out_ptr.dtype.element_ty),
             mask=row_mask[:, None])
    # END SOLUTION


def paged_prefill_attention(query: torch.Tensor, key_cache: torch.Tensor,
                            value_cache: torch.Tensor, block_tables: torch.Tensor,
                            query_start_loc: torch.Tensor, context_lens: torch.Tensor,
                            scale: float, max_query_len: int) -> torch.Tensor:
    """query [num_tokens, num_heads, head_dim] -> same shape.

    Sequence i owns query rows query_start_loc[i]:query_start_loc[i+1] (q_len of them); its
    context (cached tokens plus these new ones, already written) has context_lens[i] tokens, so
    query row j sits at position context_lens[i] - q_len + j and sees keys 0..that position.
    Launch a (num_kv_heads, num_seqs, cdiv(max_query_len, BLOCK_Q)) grid: max_query_len is a
    host int, so sizing the grid needs no device sync.
    """
    # BEGIN SOLUTION lab2
    num_tokens, num_heads, head_dim = query.shape
    _, block_size, num_kv_heads, _ = key_cache.shape
    num_seqs = block_tables.shape[0]
    out = torch.empty_like(query)
    if num_tokens == 0 or num_seqs == 0:
        return out
    queries_per_kv = num_heads // num_kv_heads
    # 128 Q rows (tokens x heads of one KV group) by 32 keys, 8 warps (two Hopper warpgroups),
    # 3 stages: the fastest of a sweep on an H100 at head_dim 128 (larger key tiles were
    # slower). Beyond head_dim 128, half the rows keep the fp32 accumulator in registers.
    block_m = max(128 if head_dim <= 128 else 64, triton.next_power_of_2(queries_per_kv))
    block_q = block_m // queries_per_kv
    block_n = 32
    grid = (num_kv_heads, num_seqs, triton.cdiv(max_query_len, block_q))
    _paged_prefill_kernel[grid](
        out, query, key_cache, value_cache, block_tables, query_start_loc, context_lens,
        scale * LOG2E,
        *query.stride(), *out.stride(), *key_cache.stride(), *value_cache.stride(),
        block_tables.stride(0),
        QUERIES_PER_KV=queries_per_kv, HEAD_DIM=head_dim, BLOCK_SIZE=block_size,
        BLOCK_M=block_m, BLOCK_Q=block_q, BLOCK_N=block_n,
        DOT_DTYPE=dot_dtype(key_cache.dtype), num_warps=8, num_stages=3,
    )
    return out
    # END SOLUTION
