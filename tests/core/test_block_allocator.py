"""The block pool: allocation, sharing and freeing keep the free list and ref counts exact."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minivllm.core.block_allocator import BlockAllocator, NoFreeBlocksError


def test_allocate_until_empty_then_error():
    alloc = BlockAllocator(3)
    blocks = [alloc.allocate() for _ in range(3)]
    assert sorted(blocks) == [0, 1, 2]
    assert alloc.num_free_blocks == 0
    with pytest.raises(NoFreeBlocksError):
        alloc.allocate()


def test_shared_block_is_freed_by_its_last_user():
    alloc = BlockAllocator(2)
    b = alloc.allocate()
    alloc.incr_ref(b)
    alloc.free(b)
    assert alloc.num_free_blocks == 1 and alloc.ref_counts[b] == 1
    alloc.free(b)
    assert alloc.num_free_blocks == 2 and alloc.ref_counts[b] == 0


def test_double_free_and_sharing_a_free_block_raise():
    alloc = BlockAllocator(2)
    b = alloc.allocate()
    alloc.free(b)
    with pytest.raises(ValueError, match="freed twice"):
        alloc.free(b)
    with pytest.raises(ValueError):
        alloc.incr_ref(b)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["alloc", "share", "free"]), st.integers(0, 10**6)),
                max_size=200))
def test_random_operations_keep_counts_consistent(ops):
    """Model-based check: a shadow dict of owners per block must agree with the allocator."""
    num_blocks = 8
    alloc = BlockAllocator(num_blocks)
    refs: dict[int, int] = {}
    for op, pick in ops:
        if op == "alloc":
            if len(refs) == num_blocks:
                with pytest.raises(NoFreeBlocksError):
                    alloc.allocate()
                continue
            b = alloc.allocate()
            assert b not in refs, "a block in use was handed out again"
            refs[b] = 1
        elif refs:
            b = sorted(refs)[pick % len(refs)]
            if op == "share":
                alloc.incr_ref(b)
                refs[b] += 1
            else:
                alloc.free(b)
                refs[b] -= 1
                if refs[b] == 0:
                    del refs[b]
        assert all(c >= 0 for c in alloc.ref_counts)
        assert alloc.num_free_blocks == num_blocks - len(refs)
        assert {b: alloc.ref_counts[b] for b in refs} == refs
        assert set(alloc.free_block_ids).isdisjoint(refs)
