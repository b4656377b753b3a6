"""Both KV allocation policies: slots, growth, all-or-nothing allocation, freeing."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minivllm.core.kv_cache_manager import (
    PagedKVCacheManager,
    ReservedKVCacheManager,
    compute_slot_mapping,
)
from minivllm.sampling_params import SamplingParams
from minivllm.sequence import Sequence


def make_seq(num_prompt_tokens: int) -> Sequence:
    return Sequence("r", list(range(num_prompt_tokens)), SamplingParams())


def test_slot_mapping_follows_the_block_table():
    # Positions 0..3 in block 7, 4..7 in block 2, 8.. in block 5 (block_size 4).
    assert compute_slot_mapping([7, 2, 5], 4, 2, 10) == [30, 31, 8, 9, 10, 11, 20, 21]


def test_paged_grows_one_block_at_a_time():
    kv = PagedKVCacheManager(num_blocks=10, block_size=4, max_model_len=64)
    seq = make_seq(5)
    assert kv.allocate_slots(seq, 5)
    assert len(seq.block_table) == 2  # 5 tokens need 2 blocks of 4
    seq.num_computed_tokens = 5
    for n_tokens in range(6, 9):  # decode tokens 6, 7, 8 fit in block 2
        assert kv.allocate_slots(seq, 1)
        seq.num_computed_tokens = n_tokens
    assert len(seq.block_table) == 2
    assert kv.allocate_slots(seq, 1)  # the 9th token opens a third block
    assert len(seq.block_table) == 3
    assert kv.num_free_blocks == 7
    kv.free(seq)
    assert seq.block_table == [] and kv.num_free_blocks == 10


def test_paged_allocation_is_all_or_nothing():
    kv = PagedKVCacheManager(num_blocks=3, block_size=4, max_model_len=64)
    a, b = make_seq(8), make_seq(8)
    assert kv.allocate_slots(a, 8)
    assert not kv.allocate_slots(b, 8)  # needs 2 blocks, 1 left
    assert b.block_table == [] and kv.num_free_blocks == 1


def test_reserved_takes_a_whole_contiguous_region():
    kv = ReservedKVCacheManager(num_blocks=10, block_size=4, max_model_len=16)  # 2 regions of 4
    a, b, c = make_seq(3), make_seq(3), make_seq(3)
    assert kv.allocate_slots(a, 3) and kv.allocate_slots(b, 3)
    assert not kv.allocate_slots(c, 3)
    assert a.block_table == [0, 1, 2, 3] and b.block_table == [4, 5, 6, 7]
    assert kv.slot_mapping(b, 0, 3) == [16, 17, 18]
    assert kv.num_free_blocks == 2  # the 2 blocks that make no whole region stay unused
    kv.free(a)
    assert kv.allocate_slots(c, 3) and c.block_table == [0, 1, 2, 3]


def test_reserved_rejects_a_pool_smaller_than_one_sequence():
    with pytest.raises(ValueError, match="cannot hold one sequence"):
        ReservedKVCacheManager(num_blocks=3, block_size=4, max_model_len=16)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(1, 9)), max_size=60))
def test_paged_random_workload_never_leaks_or_shares(ops):
    """Sequences grow and finish at random; blocks are never shared and never leak."""
    kv = PagedKVCacheManager(num_blocks=12, block_size=4, max_model_len=64)
    seqs = [make_seq(1) for _ in range(5)]
    for i, n in ops:
        seq = seqs[i]
        if n == 9:
            kv.free(seq)
            seq.num_computed_tokens = 0
        elif kv.allocate_slots(seq, n):
            seq.num_computed_tokens += n
            assert len(seq.block_table) * 4 >= seq.num_computed_tokens
        used = [b for s in seqs for b in s.block_table]
        assert len(used) == len(set(used)), "a block is in two block tables"
        assert kv.num_free_blocks == 12 - len(used)
    for seq in seqs:
        kv.free(seq)
    assert kv.num_free_blocks == 12
