"""Who gets which KV cache slots: the `kv_allocator` switch of lab 1.

Both managers answer the same three questions for the scheduler and the model runner:

- `allocate_slots(seq, n)`: can `seq` store `n` more tokens' K/V? If so, make room (grow its
  block table) and return True; if not, change nothing and return False.
- `free(seq)`: the sequence finished, was aborted or was preempted: give its blocks back.
- `slot_mapping(seq, start, end)`: the cache slot of each token at positions start..end-1,
  where the attention layer writes that token's K and V.

With `enable_prefix_caching=True` (lab 5), `PrefixCachingKVCacheManager` also lets sequences
share the full blocks of a common prompt prefix. Two more hooks serve it and do nothing in the
other managers: `get_computed_blocks(seq)`, before a sequence's first allocation, finds the
blocks of its longest prefix already in the cache, which it need not compute; and
`cache_blocks(seq)`, after each step, makes the sequence's newly filled blocks findable.

`ReservedKVCacheManager` is the provided baseline, the way serving systems worked before vLLM:
each admitted sequence reserves one contiguous region of `max_model_len` slots, whether it will
use them or not. `PagedKVCacheManager` is PagedAttention's idea (vLLM's `KVCacheManager`): hand
out fixed-size blocks on demand, from anywhere in the pool, so waste is under one block per
sequence.
"""

from __future__ import annotations

from minivllm.core.block_allocator import BlockAllocator
from minivllm.core.prefix_cache import PrefixCachingBlockAllocator, hash_block_tokens
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
        self.prefix_cache_queries = 0
        """Tokens of the sequences admitted so far (vLLM's `prefix_cache_queries`)."""
        self.prefix_cache_hits = 0
        """Of those, tokens found in the prefix cache (vLLM's `prefix_cache_hits`)."""

    @property
    def num_free_blocks(self) -> int:
        raise NotImplementedError

    @property
    def usage(self) -> float:
        """Fraction of blocks handed out (vLLM's `kv_cache_usage_perc`)."""
        return 1.0 - self.num_free_blocks / self.num_blocks

    @property
    def prefix_cache_hit_rate(self) -> float:
        """Fraction of admitted tokens found in the prefix cache (0 before any query)."""
        if self.prefix_cache_queries == 0:
            return 0.0
        return self.prefix_cache_hits / self.prefix_cache_queries

    def get_computed_blocks(self, seq: Sequence) -> tuple[list[int], int]:
        """(cached blocks, their tokens) of seq's longest cached prefix; none without caching."""
        return [], 0

    def cache_blocks(self, seq: Sequence) -> None:
        """Make seq's full blocks findable by later prompts; nothing without prefix caching."""

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
        """Return every block of seq to the pool, last block first, and empty its block table.

        (Last first: with prefix caching the tail of a sequence is the least likely to be
        shared again, so it should be the first to be reused.)"""
        # BEGIN SOLUTION lab1
        for block_id in reversed(seq.block_table):
            self.allocator.free(block_id)
        seq.block_table = []
        # END SOLUTION

    def slot_mapping(self, seq: Sequence, start: int, end: int) -> list[int]:
        return compute_slot_mapping(seq.block_table, self.block_size, start, end)


class PrefixCachingKVCacheManager(PagedKVCacheManager):
    """Paged blocks that sequences with a common prompt prefix share (lab 5).

    vLLM's `KVCacheManager` with `enable_caching` (`vllm/v1/core/kv_cache_manager.py`). A
    sequence's life, as far as the prefix cache is concerned:

    1. Admission: the scheduler asks `get_computed_blocks` and schedules only the tokens after
       that prefix; `allocate_slots` then starts the empty block table with those blocks
       (shared: one more reference each) and sets `num_computed_tokens` past them.
    2. Every step: `cache_blocks` hashes the blocks that have just become full, so prompts
       admitted later can share them (prompts that share a prefix *with a running sequence*
       hit too, not only with finished ones).
    3. Finish or preemption: lab 1's `free`, last block first. Freed blocks keep their hash
       and K/V until the free list hands them out for new tokens; the tail of a sequence is
       freed first, so it is evicted before the prefix that more prompts share.

    A shared block is never written: only full blocks are shared, and the last token of a
    prompt is always computed (its logits give the first output token), so the block that
    holds it is a new, private one.
    """

    def __init__(self, num_blocks: int, block_size: int, max_model_len: int) -> None:
        super().__init__(num_blocks, block_size, max_model_len)
        self.allocator: PrefixCachingBlockAllocator = PrefixCachingBlockAllocator(num_blocks)

    def get_computed_blocks(self, seq: Sequence) -> tuple[list[int], int]:
        """The cached blocks of seq's longest cached prefix, and the tokens they hold.

        Walk seq's full blocks from the first: hash each one's tokens, chained to the previous
        block's hash (`hash_block_tokens`), and look the hash up in
        `self.allocator.get_cached_block`. Stop at the first miss: every later hash chains
        through the missing one, so none of them can be cached either. Only blocks entirely
        before seq's last token count (blocks of tokens 0..num_tokens-2): that token is always
        computed, so that a token is sampled. Changes nothing: the scheduler asks first, and
        `allocate_slots` asks again when it takes the blocks.
        """
        # BEGIN SOLUTION lab5
        block_size = self.block_size
        num_full_blocks = (seq.num_tokens - 1) // block_size
        if num_full_blocks == 0:
            return [], 0
        token_ids = seq.all_token_ids
        blocks: list[int] = []
        parent_hash: int | None = None
        for i in range(num_full_blocks):
            block_hash = hash_block_tokens(
                parent_hash, token_ids[i * block_size:(i + 1) * block_size])
            block_id = self.allocator.get_cached_block(block_hash)
            if block_id is None:
                break
            blocks.append(block_id)
            parent_hash = block_hash.hash_value
        return blocks, len(blocks) * block_size
        # END SOLUTION

    def allocate_slots(self, seq: Sequence, num_new_tokens: int) -> bool:
        """Lab 1's allocate_slots, but a sequence's first allocation starts from its cached
        prefix: num_new_tokens counts only the tokens after it (the scheduler asked
        `get_computed_blocks` too). All or nothing, as before: a cache hit on a free block
        takes that block off the free list, so it counts against the free blocks."""
        if seq.block_table:
            return super().allocate_slots(seq, num_new_tokens)
        blocks, num_computed = self.get_computed_blocks(seq)
        num_new_blocks = cdiv(num_computed + num_new_tokens, self.block_size) - len(blocks)
        num_revived = sum(1 for b in blocks if self.allocator.ref_counts[b] == 0)
        if num_new_blocks + num_revived > self.allocator.num_free_blocks:
            return False
        for block_id in blocks:
            self.allocator.touch(block_id)
        seq.block_table = blocks
        seq.num_computed_tokens = num_computed
        if seq.num_preemptions == 0:  # RequestOutput reports the first admission's hit
            seq.num_cached_tokens = num_computed
        self.prefix_cache_queries += seq.num_tokens
        self.prefix_cache_hits += num_computed
        return super().allocate_slots(seq, num_new_tokens)  # succeeds: counted above

    def cache_blocks(self, seq: Sequence) -> None:
        """After a step: give each block of seq that is now full (all block_size tokens' K/V
        computed) its hash, with `self.allocator.cache_block`.

        Blocks become full in order, so the blocks already hashed are a prefix of the block
        table: look back from the last full block to the last one that has a hash
        (`self.allocator.block_hashes`), then hash forward from there, each block chained to
        the previous one's hash. A decode step usually finds its last full block hashed and
        does nothing.
        """
        # BEGIN SOLUTION lab5
        block_size = self.block_size
        hashes = self.allocator.block_hashes
        num_full_blocks = seq.num_computed_tokens // block_size
        first = num_full_blocks
        while first > 0 and hashes[seq.block_table[first - 1]] is None:
            first -= 1
        if first == num_full_blocks:
            return
        parent = hashes[seq.block_table[first - 1]] if first > 0 else None
        parent_hash = None if parent is None else parent.hash_value
        token_ids = seq.all_token_ids
        for i in range(first, num_full_blocks):
            block_hash = hash_block_tokens(
                parent_hash, token_ids[i * block_size:(i + 1) * block_size])
            self.allocator.cache_block(seq.block_table[i], block_hash)
            parent_hash = block_hash.hash_value
        # END SOLUTION


def make_kv_cache_manager(kv_allocator: str, num_blocks: int, block_size: int,
                          max_model_len: int,
                          enable_prefix_caching: bool = False) -> KVCacheManager:
    if enable_prefix_caching:
        if kv_allocator != "paged":
            raise ValueError("enable_prefix_caching needs kv_allocator='paged': shared prefixes "
                             "are shared blocks, and a reserved region is one sequence's own")
        return PrefixCachingKVCacheManager(num_blocks, block_size, max_model_len)
    managers = {"reserved": ReservedKVCacheManager, "paged": PagedKVCacheManager}
    return managers[kv_allocator](num_blocks, block_size, max_model_len)
