"""Prefix caching's building blocks (lab 5): block hashes, and a block pool that remembers them.

Two prompts that start with the same tokens have the same K/V for those tokens, so a block of
K/V can be named by the tokens it holds *and everything before them*. vLLM does this with a
chain of hashes (`vllm/v1/core/kv_cache_utils.py`, `hash_block_tokens`, `BlockHashType`):

    hash(block 0) = hash((NONE_HASH,      tokens 0..B-1))
    hash(block i) = hash((hash(block i-1), tokens iB..iB+B-1))

so equal hashes mean equal prefixes, and a lookup table hash -> physical block finds a prompt's
cached blocks one after the other. Only *full* blocks get a hash: a block still being filled
has no final contents yet.

`PrefixCachingBlockAllocator` is lab 1's allocator plus that table (vLLM's `BlockPool`,
`vllm/v1/core/block_pool.py`). A block whose last user frees it goes back to the free list but
keeps its hash and its K/V: it is still a cache entry, and a later prompt that needs it takes
it back (`touch`). It stops being one only when the free list hands it out for new tokens; the
free list is FIFO, so the block freed longest ago goes first: LRU eviction for free.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

from minivllm.core.block_allocator import BlockAllocator

NONE_HASH = 0
"""The parent hash of a prompt's first block (a fixed value, so hashes repeat across runs)."""


class BlockHashType(NamedTuple):
    """The key of a full block in the prefix cache.

    `hash_value` chains the block's tokens to its prefix's. The tokens are kept beside it so
    that two different blocks whose hash values collide still compare unequal as keys: a false
    hit would then need a collision of the whole parent chain *and* identical tokens.
    """
    hash_value: int
    token_ids: tuple[int, ...]


def hash_block_tokens(parent_block_hash: int | None,
                      block_token_ids: Sequence[int]) -> BlockHashType:
    """The key of a full block: its tokens chained with its parent's hash value.

    parent_block_hash is the previous block's `hash_value`, or None for a prompt's first
    block (use NONE_HASH then). Hash the pair (parent, tokens as a tuple) with Python's
    `hash` (deterministic for ints and tuples of ints) and keep the token tuple in the key.
    """
    # BEGIN SOLUTION lab5
    token_ids = tuple(block_token_ids)
    parent = NONE_HASH if parent_block_hash is None else parent_block_hash
    return BlockHashType(hash((parent, token_ids)), token_ids)
    # END SOLUTION


class FreeBlockQueue:
    """The free list: oldest-freed first, with removal from the middle in O(1).

    Lab 1's allocator takes blocks from the head (`popleft`) and returns them to the tail
    (`append`); a prefix-cache hit on a free block also takes that block out of the middle
    (`remove`), which costs O(n) in a deque. vLLM uses a doubly linked list
    (`FreeKVCacheBlockQueue`); an OrderedDict is one, keyed by block id.
    """

    def __init__(self, block_ids: Iterable[int]) -> None:
        self._blocks: OrderedDict[int, None] = OrderedDict.fromkeys(block_ids)

    def __len__(self) -> int:
        return len(self._blocks)

    def __iter__(self) -> Iterator[int]:
        return iter(self._blocks)

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._blocks

    def popleft(self) -> int:
        return self._blocks.popitem(last=False)[0]

    def append(self, block_id: int) -> None:
        self._blocks[block_id] = None

    def remove(self, block_id: int) -> None:
        del self._blocks[block_id]


class PrefixCachingBlockAllocator(BlockAllocator):
    """Lab 1's block pool, where full blocks stay findable by hash until they are reused."""

    def __init__(self, num_blocks: int) -> None:
        super().__init__(num_blocks)
        self.free_block_ids = FreeBlockQueue(range(num_blocks))
        self.cached_block_hash_to_block: dict[BlockHashType, int] = {}
        self.block_hashes: list[BlockHashType | None] = [None] * num_blocks
        """The hash of each full block (None: not full, or reused since)."""

    def allocate(self) -> int:
        """A block for new tokens: lab 1's allocate (the least recently freed block), evicted
        from the prefix cache if it was an entry, since its slots are about to be rewritten."""
        block_id = super().allocate()
        block_hash = self.block_hashes[block_id]
        if block_hash is not None:
            self.block_hashes[block_id] = None
            if self.cached_block_hash_to_block.get(block_hash) == block_id:
                del self.cached_block_hash_to_block[block_hash]
        return block_id

    def get_cached_block(self, block_hash: BlockHashType) -> int | None:
        return self.cached_block_hash_to_block.get(block_hash)

    def touch(self, block_id: int) -> None:
        """A prefix-cache hit: one more sequence uses this cached block. A block in use gets
        one more reference (lab 1's incr_ref); a free one leaves the free list, so it can no
        longer be evicted, with one reference."""
        if self.ref_counts[block_id] > 0:
            self.incr_ref(block_id)
        else:
            self.free_block_ids.remove(block_id)
            self.ref_counts[block_id] = 1

    def cache_block(self, block_id: int, block_hash: BlockHashType) -> None:
        """block_id is full and its K/V are computed: record its hash. If another block
        already holds the same tokens (two sequences computed the same prefix in one step),
        the table keeps that one; this block keeps its hash so that the next block's hash
        can chain to it, and is an ordinary block otherwise."""
        self.block_hashes[block_id] = block_hash
        self.cached_block_hash_to_block.setdefault(block_hash, block_id)
