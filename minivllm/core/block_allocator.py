"""The physical block pool: a free list and a reference count per block (lab 1).

vLLM's `BlockPool` (v1) / `BlockAllocator` (v0). The KV cache is cut into `num_blocks` blocks of
`block_size` token slots each; a sequence's K/V lives in whichever blocks it was handed, in any
order, and its `block_table` records them. Reference counts let several sequences share a block
(prefix caching, lab 5): a block returns to the free list only when its last user frees it.
"""

from __future__ import annotations

from collections import deque


class NoFreeBlocksError(RuntimeError):
    """Raised by `allocate` when the pool is empty; the scheduler preempts and retries."""


class BlockAllocator:
    def __init__(self, num_blocks: int) -> None:
        self.num_blocks = num_blocks
        self.free_block_ids: deque[int] = deque(range(num_blocks))
        self.ref_counts: list[int] = [0] * num_blocks

    @property
    def num_free_blocks(self) -> int:
        return len(self.free_block_ids)

    def allocate(self) -> int:
        """Take the block at the front of `free_block_ids`, give it reference count 1 and
        return its id (FIFO: blocks freed longest ago are reused first).

        Raises NoFreeBlocksError when none is free.
        """
        # BEGIN SOLUTION lab1
        if not self.free_block_ids:
            raise NoFreeBlocksError("no free KV cache block")
        block_id = self.free_block_ids.popleft()
        assert self.ref_counts[block_id] == 0, f"block {block_id} on the free list is in use"
        self.ref_counts[block_id] = 1
        return block_id
        # END SOLUTION

    def incr_ref(self, block_id: int) -> None:
        """Another sequence starts using an allocated block (prefix caching shares blocks)."""
        # BEGIN SOLUTION lab1
        if self.ref_counts[block_id] <= 0:
            raise ValueError(f"block {block_id} is free; it cannot be shared")
        self.ref_counts[block_id] += 1
        # END SOLUTION

    def free(self, block_id: int) -> None:
        """Drop one reference; when none is left the block goes to the end of the free list.

        Freeing a block that is already free is a bug in the caller (it would hand the same
        block to two sequences later): raise ValueError.
        """
        # BEGIN SOLUTION lab1
        if self.ref_counts[block_id] <= 0:
            raise ValueError(f"block {block_id} freed twice")
        self.ref_counts[block_id] -= 1
        if self.ref_counts[block_id] == 0:
            self.free_block_ids.append(block_id)
        # END SOLUTION
