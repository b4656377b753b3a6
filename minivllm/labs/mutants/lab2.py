"""Planted bugs in lab 2's Triton kernels."""

from minivllm.labs.mutants.base import Mutant

CACHE = "minivllm/attention/ops/triton_reshape_and_cache.py"
DECODE = "minivllm/attention/ops/triton_paged_decode.py"
PREFILL = "minivllm/attention/ops/triton_paged_prefill.py"
RESCALE = "acc = acc * alpha[:, None] + tl.dot(p.to(DOT_DTYPE), v.to(DOT_DTYPE),"
NO_RESCALE = "acc = acc + tl.dot(p.to(DOT_DTYPE), v.to(DOT_DTYPE),"

MUTANTS = [
    Mutant("decode_no_softmax_rescale",
           "decode: the running output is not rescaled when the running max grows", DECODE,
           RESCALE, NO_RESCALE),
    Mutant("prefill_no_softmax_rescale",
           "prefill: the running output is not rescaled when the running max grows", PREFILL,
           RESCALE, NO_RESCALE),
    Mutant("decode_gqa_interleaved", "decode: query head h reads KV head h % num_kv_heads",
           DECODE, "heads = kv_head * QUERIES_PER_KV + offs_g",
           "heads = kv_head + offs_g * tl.num_programs(1)"),
    Mutant("prefill_gqa_interleaved", "prefill: query head h reads KV head h % num_kv_heads",
           PREFILL, "heads = kv_head * QUERIES_PER_KV + rows % QUERIES_PER_KV",
           "heads = kv_head + (rows % QUERIES_PER_KV) * tl.num_programs(0)"),
    Mutant("padding_slot_written", "reshape_and_cache writes padding tokens (slot -1)", CACHE,
           "    if slot < 0:  # padding token (CUDA graphs pad the batch): nothing to write\n"
           "        return\n", ""),
    Mutant("cache_wrong_block_offset", "reshape_and_cache writes one row too far", CACHE,
           "offset = slot % BLOCK_SIZE", "offset = (slot + 1) % BLOCK_SIZE"),
    Mutant("decode_ignores_block_table", "decode reads logical blocks, not the block table",
           DECODE,
           "        block = tl.load(block_table + pos // BLOCK_SIZE, mask=valid, other=0)"
           ".to(tl.int64)",
           "        block = (pos // BLOCK_SIZE).to(tl.int64)"),
    Mutant("decode_missing_scale", "decode forgets the softmax scale", DECODE,
           "        scale * LOG2E,\n", "        LOG2E,\n"),
    Mutant("prefill_missing_scale", "prefill forgets the softmax scale", PREFILL,
           "        scale * LOG2E,\n", "        LOG2E,\n"),
    Mutant("prefill_causal_off_by_one", "prefill: a query does not see its own key", PREFILL,
           "(pos[None, :] <= q_pos[:, None])", "(pos[None, :] < q_pos[:, None])"),
    Mutant("merge_unweighted", "split-K merge averages the splits instead of weighting them",
           DECODE, "weights = tl.exp2(lse - lse_max)",
           "weights = tl.where(lse == float(\"-inf\"), 0.0, 1.0)"),
    Mutant("decode_context_off_by_one", "decode drops the newest token of the context", DECODE,
           "end = tl.minimum(start + tokens_per_split, context_len)",
           "end = tl.minimum(start + tokens_per_split, context_len - 1)"),
]
