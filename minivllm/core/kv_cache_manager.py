"""Who gets which KV cache slots: the `kv_allocator` switch of lab 1.

Both managers answer the same three questions for the scheduler and the model runner:

- `allocate_slots(seq, n)`: can `seq` store `n` more tokens' K/V? If so, make room (grow its
  block table) and return True; if not, change nothing and return False.
- `free(seq)`: the sequence finished, was aborted or was preempted: give its blocks back.
- `slot_mapping(seq, start, end)`: the cache slot of each token at positions start..end-1,
  where the attention layer writes that token's K and V.

`ReservedKVCacheManager` is the provided baseline, the way serving systems worked before vLLM:
each admitted sequence reserves one contiguous region of `max_model_len` slots, whether it will
use them or not. `PagedKVCacheManager` is PagedAttention's idea (vLLM's `KVCacheManager`): hand
out fixed-size blocks on demand, from anywhere in the pool, so waste is under one block per
sequence.
"""

from __future__ import annotations

from minivllm.core.block_allocator import BlockAllocator
from minivllm.sequence import Sequence


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def compute_slot_mapping(block_table: list[int], block_size: int, start: int,
                         end: int) -> list[int]:
    """Slots of the tokens at positions start..end-1 of a sequence with this block table.

    Position p lives in logical block p // block_size, at offset p % block_size inside it; the
    block table turns the logical block into a physical one, so the slot is
    block_table[p // block_size] * block_size + p % block_size.
    """
    # BEGIN SOLUTION lab1
    return [block_table[p // block_size] * block_size + p % block_size
            for p in range(start, end)]
    # END SOLUTION


class KVCacheManager:
    """What both policies share: the pool's size and the usage figures vLLM reports."""

    def __init__(self, num_blocks: int, block_size: int, max_model_len: int) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.max_model_len = max_model_len

    @property
    def num_free_blocks(self) -> int:
        raise NotImplementedError

    @property
    def usage(self) -> float:
        """Fraction of blocks handed out (vLLM's `kv_cache_usage_perc`)."""
        return 1.0 - self.num_free_blocks / self.num_blocks

    def allocate_slots(self, seq: Sequence, num_new_tokens: int) -> bool:
        raise NotImplementedError

    def free(self, seq: Sequence) -> None:
        raise NotImplementedError

    def slot_mapping(self, seq: Sequence, start: int, end: int) -> list[int]:
        raise NotImplementedError

    def can_ever_fit(self, num_tokens: int) -> bool:
        """Whether a sequence of this many tokens fits in the whole pool (else refuse it)."""
        return cdiv(num_tokens, self.block_size) <= self.num_blocks


class ReservedKVCacheManager(KVCacheManager):
    """Provided baseline: one contiguous region of max_model_len slots per sequence.

    The pool is cut into `num_blocks // blocks_per_seq` regions. A sequence takes a whole region
    when first admitted and keeps it until it is freed, so it never runs out mid-generation
    (and is never preempted), but a 20-token answer holds max_model_len slots. Because a
    region is contiguous, a token's slot is simply the region's first slot plus its position.
    """

    def __init__(self, num_blocks: int, block_size: int, max_model_len: int) -> None:
        super().__init__(num_blocks, block_size, max_model_len)
        self.blocks_per_seq = cdiv(max_model_len, block_size)
        self.num_regions = num_blocks // self.blocks_per_seq
        if self.num_regions == 0:
            raise ValueError(
                f"the KV cache ({num_blocks} blocks of {block_size} tokens) cannot hold one "
                f"sequence of max_model_len={max_model_len} tokens; lower max_model_len or "
                "give the cache more memory")
        # A stack: pop() hands out region 0 first.
        self.free_regions = list(range(self.num_regions - 1, -1, -1))

    @property
    def num_free_blocks(self) -> int:
        num_used_regions = self.num_regions - len(self.free_regions)
        return self.num_blocks - num_used_regions * self.blocks_per_seq

    def allocate_slots(self, seq: Sequence, num_new_tokens: int) -> bool:
        if seq.block_table:
            return seq.num_computed_tokens + num_new_tokens <= self.max_model_len
        if not self.free_regions:
            return False
        first = self.free_regions.pop() * self.blocks_per_seq
        seq.block_table = list(range(first, first + self.blocks_per_seq))
        return True

    def free(self, seq: Sequence) -> None:
        if seq.block_table:
            self.free_regions.append(seq.block_table[0] // self.blocks_per_seq)
            seq.block_table = []

    def slot_mapping(self, seq: Sequence, start: int, end: int) -> list[int]:
        first_slot = seq.block_table[0] * self.block_size
        return list(range(first_slot + start, first_slot + end))


class PagedKVCacheManager(KVCacheManager):
    """PagedAttention's block tables: blocks on demand, one at a time (lab 1)."""

    def __init__(self, num_blocks: int, block_size: int, max_model_len: int) -> None:
        super().__init__(num_blocks, block_size, max_model_len)
        self.allocator = BlockAllocator(num_blocks)

    @property
    def num_free_blocks(self) -> int:
        return self.allocator.num_free_blocks

    def allocate_slots(self, seq: Sequence, num_new_tokens: int) -> bool:
        """Grow seq.block_table so that tokens up to num_computed_tokens + num_new_tokens have
        a slot. All or nothing: if the pool lacks the blocks, allocate none and return False."""
        # BEGIN SOLUTION lab1
        num_needed = cdiv(seq.num_computed_tokens + num_new_tokens, self.block_size)
        num_missing = num_needed - len(seq.block_table)
        if num_missing > self.allocator.num_free_blocks:
            return False
        for _ in range(num_missing):
            seq.block_table.append(self.allocator.allocate())
        return True
        # END SOLUTION

    def free(self, seq: Sequence) -> None:
        """Return every block of seq to the pool and empty its block table."""
        # BEGIN SOLUTION lab1
        for block_id in reversed(seq.block_table):
            self.allocator.free(block_id)
        seq.block_table = []
        # END SOLUTION

    def slot_mapping(self, seq: Sequence, start: int, end: int) -> list[int]:
        return compute_slot_mapping(seq.block_table, self.block_size, start, end)


def make_kv_cache_manager(kv_allocator: str, num_blocks: int, block_size: int,
                          max_model_len: int) -> KVCacheManager:
    managers = {"reserved": ReservedKVCacheManager, "paged": PagedKVCacheManager}
    return managers[kv_allocator](num_blocks, block_size, max_model_len)
