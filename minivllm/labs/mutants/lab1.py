"""Planted bugs in lab 1: the block allocator, the paged KV cache manager, slot mapping."""

from minivllm.labs.mutants.base import Mutant

ALLOCATOR = "minivllm/core/block_allocator.py"
MANAGER = "minivllm/core/kv_cache_manager.py"
SLOT = "    return [block_table[p // block_size] * block_size + p % block_size\n"

MUTANTS = [
    Mutant("slot_off_by_one", "slot mapping off by one inside the block", MANAGER, SLOT,
           "    return [block_table[p // block_size] * block_size + (p + 1) % block_size\n"),
    Mutant("slot_logical_block", "slot mapping uses the logical block, not the table", MANAGER,
           SLOT, "    return [(p // block_size) * block_size + p % block_size\n"),
    Mutant("double_free_accepted", "a block freed twice is not refused", ALLOCATOR,
           '        if self.ref_counts[block_id] <= 0:\n'
           '            raise ValueError(f"block {block_id} freed twice")\n',
           ""),
    Mutant("free_ignores_ref_count", "a shared block returns to the pool on its first free",
           ALLOCATOR,
           "        if self.ref_counts[block_id] == 0:\n"
           "            self.free_block_ids.append(block_id)",
           "        self.free_block_ids.append(block_id)"),
    Mutant("ref_count_not_incremented", "incr_ref does not count the new user", ALLOCATOR,
           "self.ref_counts[block_id] += 1", "self.ref_counts[block_id] += 0"),
    Mutant("lifo_free_list", "allocate takes the most recently freed block", ALLOCATOR,
           "block_id = self.free_block_ids.popleft()", "block_id = self.free_block_ids.pop()"),
    Mutant("not_all_or_nothing", "allocate_slots keeps the blocks it got before running out",
           MANAGER,
           "        if num_missing > self.allocator.num_free_blocks:\n"
           "            return False\n"
           "        for _ in range(num_missing):\n",
           "        for _ in range(num_missing):\n"
           "            if self.allocator.num_free_blocks == 0:\n"
           "                return False\n"),
    Mutant("blocks_not_freed", "free empties the block table but returns no block", MANAGER,
           "        for block_id in reversed(seq.block_table):\n"
           "            self.allocator.free(block_id)\n",
           ""),
    Mutant("last_block_not_returned", "free returns every block but the last", MANAGER,
           "for block_id in reversed(seq.block_table):",
           "for block_id in reversed(seq.block_table[:-1]):"),
    Mutant("one_block_too_many", "allocate_slots rounds the block count up once too often",
           MANAGER,
           "num_needed = cdiv(seq.num_computed_tokens + num_new_tokens, self.block_size)",
           "num_needed = (seq.num_computed_tokens + num_new_tokens) // self.block_size + 1"),
]
