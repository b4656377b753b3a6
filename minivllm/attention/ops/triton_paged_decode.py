"""Paged decode attention in Triton: the kernel of lab 2 (vLLM: `paged_attention_v1/v2` in
`csrc/attention/`, and the Triton `triton_decode_attention.py` it uses on other GPUs).

A decode step has one new query token per sequence; its context (every earlier token's K and V)
lives in blocks scattered over the cache, listed by the sequence's block table. Decoding reads
the whole context once per layer and does two flops per byte: it is bound by memory bandwidth,
so the kernel is built to read each K/V byte exactly once and to keep every SM busy.

- **Paged reads.** The kernel walks the context in tiles of BLOCK_N tokens. For each token it
  looks up its physical block in the block table (`block_tables[seq, pos // block_size]`) and
  reads row `pos % block_size` of that block: no gathered copy of the context is ever made.
- **GQA.** The QUERIES_PER_KV query heads that share a KV head are one program's rows of Q, so
  each K/V tile is loaded once for all of them and both products are tensor-core `tl.dot`s
  (the group is padded to 16 rows, the smallest `tl.dot` M; the extra rows cost no memory
  traffic, and traffic is what decode pays for).
- **Online softmax** (FlashAttention): a running max `m`, running sum `l` and unnormalised
  output `acc` are rescaled tile by tile, in fp32, with `exp2` (the scale is pre-multiplied by
  log2(e)).
- **Split-K** (flash-decoding; vLLM's `paged_attention_v2`): with few sequences there are fewer
  (sequence, KV head) programs than SMs, so the context is also split into NUM_SPLITS ranges,
  each handled by its own program that writes a partial output and its log-sum-exp; a second,
  tiny kernel merges the partials. The number of splits comes from host-side shapes only, so the
  launch never syncs with the GPU and can be captured in a CUDA graph. It is sized for the
  longest context the block table can hold; a shorter context fills only its first splits, and
  the rest cost a launch and one store each.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from minivllm.attention.ops.triton_utils import dot_dtype, get_num_sms, pdl_wait, use_pdl

LOG2E = 1.4426950408889634


# Triton compiles a kernel variant per "kind" of argument: integers that are 1 or multiples of
# 16, pointers aligned to 16 bytes or not. The block-table width changes every step, and in a
# step that mixes prefills and decodes the decode rows' block tables and context lengths are
# slices that start anywhere. Each new kind would stall a step for about half a second while
# it compiles, for no gain (these are read one int32 at a time), so none is specialized.
@triton.jit(do_not_specialize=["stride_bts"],
            do_not_specialize_on_alignment=["block_tables_ptr", "context_lens_ptr"])
def _paged_decode_kernel(
    out_ptr,  # [num_seqs, num_heads, head_dim], or [num_seqs, num_heads, NUM_SPLITS, head_dim]
    lse_ptr,  # [num_seqs, num_heads, NUM_SPLITS] fp32 (unused when NUM_SPLITS == 1)
    query_ptr, key_cache_ptr, value_cache_ptr, block_tables_ptr, context_lens_ptr,
    scale_log2,  # softmax scale * log2(e)
    stride_qs, stride_qh, stride_qd,
    stride_kb, stride_kt, stride_kh, stride_kd,  # key_cache [blocks, block_size, heads, dim]
    stride_vb, stride_vt, stride_vh, stride_vd,
    stride_bts,  # block_tables row stride
    stride_os, stride_oh, stride_osplit, stride_od,
    stride_ls, stride_lh,
    QUERIES_PER_KV: tl.constexpr, BLOCK_G: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_SIZE: tl.constexpr, BLOCK_N: tl.constexpr, NUM_SPLITS: tl.constexpr,
    DOT_DTYPE: tl.constexpr, USE_PDL: tl.constexpr = False,
):
    """Program (seq, kv_head, split) attends the QUERIES_PER_KV query heads of `kv_head` (rows
    of a [BLOCK_G, HEAD_DIM] Q tile) to its share of the sequence's context.

    1. Split the context into NUM_SPLITS ranges of whole BLOCK_N tiles; take range `split`.
    2. For each tile of BLOCK_N positions: look up each position's physical block in the block
       table, load K^T [HEAD_DIM, BLOCK_N] and V [BLOCK_N, HEAD_DIM] (positions past the range
       masked), S = Q K^T * scale_log2 (masked positions -inf), and update m, l, acc with
       the online softmax. Widen block ids to int64 before multiplying by the block stride.
    3. NUM_SPLITS == 1: store acc / l (0 where l == 0: context length 0) to out.
       Otherwise store m + log2(l) to lse for the merge kernel and acc / l to the split's slot
       of out; an empty range (a context shorter than NUM_SPLITS tiles) stores only lse = -inf,
       which tells the merge to skip the slot.

    With USE_PDL (the engine's launch, `triton_utils.use_pdl`) the program starts while the
    kernel that wrote the new K/V into the cache may still run: `pdl_wait` comes first.
    """
    pdl_wait(USE_PDL)
    # BEGIN SOLUTION lab2
    seq = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)

    context_len = tl.load(context_lens_ptr + seq)
    tokens_per_split = tl.cdiv(tl.cdiv(context_len, NUM_SPLITS), BLOCK_N) * BLOCK_N
    start = split * tokens_per_split
    end = tl.minimum(start + tokens_per_split, context_len)

    offs_g = tl.arange(0, BLOCK_G)
    offs_d = tl.arange(0, HEAD_DIM)
    offs_n = tl.arange(0, BLOCK_N)
    heads = kv_head * QUERIES_PER_KV + offs_g
    head_mask = offs_g < QUERIES_PER_KV

    q = tl.load(query_ptr + seq * stride_qs + heads[:, None] * stride_qh
                + offs_d[None, :] * stride_qd, mask=head_mask[:, None], other=0.0)
    q = q.to(DOT_DTYPE)

    m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, HEAD_DIM], tl.float32)
    block_table = block_tables_ptr + seq * stride_bts
    key_base = key_cache_ptr + kv_head * stride_kh
    value_base = value_cache_ptr + kv_head * stride_vh

    # Every tile starts inside [start, end), so it has a valid position and m_i turns finite
    # at the first tile: exp2(m_i - m_new) never sees -inf - (-inf).
    for tile_start in range(start, end, BLOCK_N):
        pos = tile_start + offs_n
        valid = pos < end
        block = tl.load(block_table + pos // BLOCK_SIZE, mask=valid, other=0).to(tl.int64)
        row = pos % BLOCK_SIZE
        k = tl.load(key_base + block[None, :] * stride_kb + row[None, :] * stride_kt
                    + offs_d[:, None] * stride_kd, mask=valid[None, :], other=0.0)
        v = tl.load(value_base + block[:, None] * stride_vb + row[:, None] * stride_vt
                    + offs_d[None, :] * stride_vd, mask=valid[:, None], other=0.0)

        s = tl.dot(q, k.to(DOT_DTYPE), input_precision="ieee") * scale_log2
        s = tl.where(valid[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(DOT_DTYPE), v.to(DOT_DTYPE),
                                            input_precision="ieee")
        m_i = m_new

    out = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]  # empty range: acc is 0, so out is 0
    out_ptrs = (out_ptr + seq * stride_os + heads[:, None] * stride_oh + split * stride_osplit
                + offs_d[None, :] * stride_od)
    store_heads = head_mask
    if NUM_SPLITS > 1:
        # log2 of the split's softmax denominator; -inf for an empty range (m_i is -inf),
        # which tells the merge to skip the split, so its partial output is not stored
        lse = m_i + tl.log2(tl.where(l_i == 0.0, 1.0, l_i))
        tl.store(lse_ptr + seq * stride_ls + heads * stride_lh + split, lse, mask=head_mask)
        store_heads = tl.where(start < end, head_mask, False)
    tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=store_heads[:, None])
    # END SOLUTION


@triton.jit
def _merge_splits_kernel(
    out_ptr,  # [num_seqs, num_heads, head_dim]
    partial_ptr,  # [num_seqs, num_heads, NUM_SPLITS, head_dim] fp32
    lse_ptr,  # [num_seqs, num_heads, NUM_SPLITS] fp32
    stride_os, stride_oh, stride_od,
    stride_ps, stride_ph, stride_psplit, stride_pd,
    stride_ls, stride_lh,
    NUM_SPLITS: tl.constexpr, BLOCK_SPLITS: tl.constexpr, HEAD_DIM: tl.constexpr,
    USE_PDL: tl.constexpr = False,
):
    """Program (seq, head): out = sum_i w_i * partial_i / sum_i w_i with w_i = 2**(lse_i - max
    lse), the log-sum-exp merge of the splits' softmaxes. Empty splits (lse -inf) weigh 0 and
    their slots, never written, are not read; a sequence whose splits are all empty (context
    length 0) gets zeros, not NaN."""
    pdl_wait(USE_PDL)  # the decode kernel has written every split
    # BEGIN SOLUTION lab2
    seq = tl.program_id(0)
    head = tl.program_id(1)
    offs_s = tl.arange(0, BLOCK_SPLITS)
    offs_d = tl.arange(0, HEAD_DIM)
    split_mask = offs_s < NUM_SPLITS

    lse = tl.load(lse_ptr + seq * stride_ls + head * stride_lh + offs_s, mask=split_mask,
                  other=float("-inf"))
    lse_max = tl.max(lse, axis=0)
    lse_max = tl.where(lse_max == float("-inf"), 0.0, lse_max)
    weights = tl.exp2(lse - lse_max)
    partial = tl.load(partial_ptr + seq * stride_ps + head * stride_ph
                      + offs_s[:, None] * stride_psplit + offs_d[None, :] * stride_pd,
                      mask=(split_mask & (lse > float("-inf")))[:, None], other=0.0)
    total = tl.sum(weights, axis=0)
    out = tl.sum(weights[:, None] * partial, axis=0) / tl.where(total == 0.0, 1.0, total)
    tl.store(out_ptr + seq * stride_os + head * stride_oh + offs_d * stride_od,
             out.to(out_ptr.dtype.element_ty))
    # END SOLUTION


def choose_num_splits(num_seqs: int, num_kv_heads: int, max_context_len: int,
                      num_sms: int) -> int:
    """How many programs share one (sequence, KV head)'s context.

    Without splitting the grid has num_seqs * num_kv_heads programs; a small batch leaves most
    SMs idle while a few programs crawl through long contexts. Split until there are about two
    programs per SM (two can run on one SM at once, hiding each other's memory latency), but
    keep at least 32 tokens (one small-grid tile) per split of the bound. The bound is usually
    far longer than the context (a CUDA graph serves every context up to max_model_len); that
    is cheap because the kernel cuts the real context into whole tiles, and splits past its end
    only store an lse of -inf. Powers of two only: NUM_SPLITS is a compile-time constant, so
    each value is a compiled kernel variant. (Measured on an H100, Qwen3-0.6B in CUDA graphs:
    at batch 1 and context 2048, 64 splits made a step 1.098 ms against 1.140 in 16 splits of
    128 tokens; at context 512 with a bound of 8208, 0.974 against 1.031 ms when the empty
    splits still wrote their partial output; at batch 16, 8 splits took 1.459 ms against 1.387
    in 4.)
    """
    # BEGIN SOLUTION lab2
    target_programs = 2 * num_sms
    min_tokens_per_split = 32
    programs = num_seqs * num_kv_heads
    if programs >= target_programs:
        return 1
    wanted = triton.next_power_of_2(triton.cdiv(target_programs, programs))
    affordable = max(1, max_context_len // min_tokens_per_split)
    return max(1, min(wanted, 1 << (affordable.bit_length() - 1)))
    # END SOLUTION


def paged_decode_attention(query: torch.Tensor, key_cache: torch.Tensor,
                           value_cache: torch.Tensor, block_tables: torch.Tensor,
                           context_lens: torch.Tensor, scale: float, *,
                           num_splits: int | None = None) -> torch.Tensor:
    """query [num_seqs, num_heads, head_dim] -> [num_seqs, num_heads, head_dim].

    Sequence i attends to the first context_lens[i] tokens of its block table; context length
    0 (a padding row) gives zeros. key_cache / value_cache are [num_blocks, block_size,
    num_kv_heads, head_dim]; block_tables [num_seqs, max_blocks] int32.

    `num_splits` forces the split-K factor (1: one pass, no merge kernel); by default
    `choose_num_splits` picks it from the batch and `block_tables.shape[1] * block_size`, an
    upper bound on the context length that needs no device sync. Launch the decode kernel on a
    (num_seqs, num_kv_heads, num_splits) grid; with splits, write partials to fp32 scratch
    tensors and merge them on a (num_seqs, num_heads) grid.
    """
    # BEGIN SOLUTION lab2
    num_seqs, num_heads, head_dim = query.shape
    _, block_size, num_kv_heads, _ = key_cache.shape
    out = torch.empty_like(query)
    if num_seqs == 0:
        return out
    queries_per_kv = num_heads // num_kv_heads
    if num_splits is None:
        num_splits = choose_num_splits(num_seqs, num_kv_heads,
                                       block_tables.shape[1] * block_size,
                                       get_num_sms(query.device))

    if num_splits == 1:
        partial, lse = out, out  # the kernel writes the final output; lse is not touched
        partial_strides = (*out.stride()[:2], 0, out.stride(2))
    else:
        partial = torch.empty(num_seqs, num_heads, num_splits, head_dim,
                              dtype=torch.float32, device=query.device)
        lse = torch.empty(num_seqs, num_heads, num_splits, dtype=torch.float32,
                          device=query.device)
        partial_strides = partial.stride()

    # Tiles of 64 tokens: 16 KB of K and of V per tile at head_dim 128 in bf16, and 3 pipeline
    # stages keep the next tiles' loads in flight during the math. Tiles of 32 need half the
    # shared memory, so twice as many programs run on an SM at once: they win while the grid
    # has at most about four programs per SM. Measured on an H100 (Qwen3-0.6B, 16/8 heads, in
    # CUDA graphs), tiles of 32 made steps of 16, 32 and 64 sequences at context 512 (512
    # programs) 5%, 3% and 1% faster, and batch 1 (16 splits) 2% faster at context 512 but 2%
    # slower at 2048; at batch 128 (1024 programs) the attention took 98 us per layer in tiles
    # of 64 and 109 in tiles of 32.
    programs = num_seqs * num_kv_heads * num_splits
    small_grid = programs <= 4 * get_num_sms(query.device)
    block_n = 32 if small_grid or head_dim > 128 else 64
    pdl = use_pdl(query.device)
    _paged_decode_kernel[(num_seqs, num_kv_heads, num_splits)](
        partial, lse, query, key_cache, value_cache, block_tables, context_lens,
        scale * LOG2E,
        *query.stride(), *key_cache.stride(), *value_cache.stride(), block_tables.stride(0),
        *partial_strides, *lse.stride()[:2],
        QUERIES_PER_KV=queries_per_kv,
        BLOCK_G=max(16, triton.next_power_of_2(queries_per_kv)),
        HEAD_DIM=head_dim, BLOCK_SIZE=block_size, BLOCK_N=block_n, NUM_SPLITS=num_splits,
        DOT_DTYPE=dot_dtype(key_cache.dtype), USE_PDL=pdl, num_warps=4, num_stages=3,
        launch_pdl=pdl,
    )
    if num_splits > 1:
        _merge_splits_kernel[(num_seqs, num_heads)](
            out, partial, lse, *out.stride(), *partial.stride(), *lse.stride()[:2],
            NUM_SPLITS=num_splits, BLOCK_SPLITS=triton.next_power_of_2(num_splits),
            HEAD_DIM=head_dim, USE_PDL=pdl, num_warps=4, launch_pdl=pdl,
        )
    return out
    # END SOLUTION
