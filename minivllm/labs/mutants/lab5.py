"""Planted bugs in lab 5's prefix caching."""

from minivllm.labs.mutants.base import Mutant

HASH = "minivllm/core/prefix_cache.py"
MANAGER = "minivllm/core/kv_cache_manager.py"

MUTANTS = [
    Mutant("hash_ignores_parent", "a block's hash ignores its prefix", HASH,
           "parent = NONE_HASH if parent_block_hash is None else parent_block_hash",
           "parent = NONE_HASH"),
    Mutant("hash_of_list", "hashes the token list's identity instead of its tokens", HASH,
           "hash((parent, token_ids))", "hash((parent, id(block_token_ids)))"),
    Mutant("lookup_one_block_short", "get_computed_blocks leaves out a block it could share",
           MANAGER, "num_full_blocks = (seq.num_tokens - 1) // block_size",
           "num_full_blocks = (seq.num_tokens - 2) // block_size"),
    Mutant("cache_hashes_prompt_only", "cache_blocks hashes generated tokens as missing",
           MANAGER,
           "        token_ids = seq.all_token_ids\n        for i in range(first, num_full_blocks):",
           "        token_ids = seq.prompt_token_ids\n"
           "        for i in range(first, num_full_blocks):"),
    Mutant("lookup_includes_last_token", "the block holding the prompt's last token is reused",
           MANAGER, "num_full_blocks = (seq.num_tokens - 1) // block_size",
           "num_full_blocks = seq.num_tokens // block_size"),
    Mutant("lookup_does_not_chain", "get_computed_blocks hashes every block as a first block",
           MANAGER,
           "            blocks.append(block_id)\n            parent_hash = block_hash.hash_value\n",
           "            blocks.append(block_id)\n"),
    Mutant("caches_partial_block", "cache_blocks also hashes the block being filled", MANAGER,
           "num_full_blocks = seq.num_computed_tokens // block_size",
           "num_full_blocks = cdiv(seq.num_computed_tokens, block_size)"),
    Mutant("cache_does_not_chain", "cache_blocks restarts the hash chain at every call",
           MANAGER, "parent_hash = None if parent is None else parent.hash_value",
           "parent_hash = None"),
    Mutant("nothing_cached", "cache_blocks never records a hash", MANAGER,
           "            self.allocator.cache_block(seq.block_table[i], block_hash)\n", ""),
]
