"""Prefix caching in the KV cache manager, without a model: hashes, sharing, eviction (lab 5)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minivllm.core.kv_cache_manager import PrefixCachingKVCacheManager, make_kv_cache_manager
from minivllm.core.prefix_cache import FreeBlockQueue, hash_block_tokens
from minivllm.sampling_params import SamplingParams
from minivllm.sequence import Sequence

BLOCK = 4


def make_seq(tokens: list[int]) -> Sequence:
    return Sequence("r", tokens, SamplingParams())


def admit(kv: PrefixCachingKVCacheManager, seq: Sequence) -> bool:
    """What the scheduler does: skip the cached prefix, allocate the rest, run it."""
    num_new = seq.num_uncomputed_tokens - kv.get_computed_blocks(seq)[1]
    if not kv.allocate_slots(seq, num_new):
        return False
    seq.num_computed_tokens += num_new
    kv.cache_blocks(seq)
    return True


def test_block_hash_chains_the_prefix():
    a = hash_block_tokens(None, [1, 2, 3, 4])
    assert a == hash_block_tokens(None, (1, 2, 3, 4))
    assert a.token_ids == (1, 2, 3, 4)
    b = hash_block_tokens(a.hash_value, [5, 6, 7, 8])
    # The same tokens after another prefix are another block.
    assert b != hash_block_tokens(hash_block_tokens(None, [0, 2, 3, 4]).hash_value, [5, 6, 7, 8])
    assert b != hash_block_tokens(None, [5, 6, 7, 8])
    assert hash_block_tokens(None, [1, 2, 3, 5]) != a


def test_free_block_queue_keeps_fifo_order_and_removes_from_the_middle():
    q = FreeBlockQueue(range(4))
    q.remove(2)
    q.append(2)
    q.remove(0)
    assert list(q) == [1, 3, 2] and len(q) == 3 and 3 in q and 0 not in q
    assert q.popleft() == 1


def test_second_prompt_shares_the_full_blocks_of_the_first():
    kv = PrefixCachingKVCacheManager(num_blocks=10, block_size=BLOCK, max_model_len=64)
    a = make_seq(list(range(10)))  # blocks [0..3] [4..7] and a partial one
    assert admit(kv, a)
    b = make_seq([*range(8), 99, 98, 97])
    assert kv.get_computed_blocks(b) == (a.block_table[:2], 8)
    assert admit(kv, b)
    assert b.block_table[:2] == a.block_table[:2]
    assert b.block_table[2] != a.block_table[2]  # a's partial block is never shared
    assert b.num_cached_tokens == 8 and b.num_computed_tokens == 11
    assert [kv.allocator.ref_counts[i] for i in a.block_table] == [2, 2, 1]
    assert kv.num_free_blocks == 10 - 4
    assert (kv.prefix_cache_queries, kv.prefix_cache_hits) == (21, 8)
    assert kv.prefix_cache_hit_rate == pytest.approx(8 / 21)


@pytest.mark.parametrize(("num_tokens", "num_hit"), [(8, 4), (9, 8), (3, 0), (4, 0), (5, 4)])
def test_the_last_token_is_always_computed(num_tokens, num_hit):
    """A fully cached, block-aligned prompt still computes its last block: the last token's
    logits give the first output token, and its block would be written while shared."""
    kv = PrefixCachingKVCacheManager(num_blocks=10, block_size=BLOCK, max_model_len=64)
    assert admit(kv, make_seq(list(range(12))))
    seq = make_seq(list(range(num_tokens)))
    assert kv.get_computed_blocks(seq)[1] == num_hit
    assert admit(kv, seq)
    assert seq.num_cached_tokens == num_hit


def test_freed_blocks_stay_cached_until_reused_least_recently_freed_first():
    kv = PrefixCachingKVCacheManager(num_blocks=7, block_size=BLOCK, max_model_len=64)
    a = make_seq(list(range(16)))  # 4 full blocks, all hashed once computed
    assert admit(kv, a)
    blocks = list(a.block_table)
    kv.free(a)
    assert kv.num_free_blocks == 7
    # Freed last block first: the tail of the prompt is the first to be evicted.
    assert list(kv.allocator.free_block_ids) == [4, 5, 6, *blocks[::-1]]
    # 4 blocks for other tokens: the 3 never used, then a's last block, which is evicted.
    c = make_seq([50 + i for i in range(13)])
    assert admit(kv, c)
    assert c.block_table == [4, 5, 6, blocks[3]]
    kv.free(c)
    # a's first three blocks are still cached; blocks taken back leave the free list.
    b = make_seq(list(range(17)))
    assert kv.get_computed_blocks(b) == (blocks[:3], 12)
    assert admit(kv, b)
    assert b.block_table[:3] == blocks[:3] and len(b.block_table) == 5
    assert all(block not in kv.allocator.free_block_ids for block in b.block_table)
    assert kv.num_free_blocks == 2


def test_allocating_a_cached_free_block_evicts_it():
    kv = PrefixCachingKVCacheManager(num_blocks=2, block_size=BLOCK, max_model_len=64)
    a = make_seq(list(range(5)))
    assert admit(kv, a)
    kv.free(a)
    b = make_seq([9] * 8)  # needs both blocks: a's cached block is reused for other tokens
    assert admit(kv, b)
    kv.free(b)
    assert kv.get_computed_blocks(make_seq(list(range(5)))) == ([], 0)
    assert kv.get_computed_blocks(make_seq([9] * 8 + [1]))[1] == 8


def test_a_revived_free_block_counts_against_the_free_blocks():
    """A hit on a free cached block takes it off the free list: all or nothing still holds."""
    kv = PrefixCachingKVCacheManager(num_blocks=3, block_size=BLOCK, max_model_len=64)
    a = make_seq(list(range(5)))
    assert admit(kv, a)
    kv.free(a)
    b = make_seq([*range(4), 7, 7, 7, 7, 7, 7, 7, 7, 7])  # 1 cached block + 3 new: 4 > 3
    assert not kv.allocate_slots(b, 9)
    assert b.block_table == [] and kv.num_free_blocks == 3 and b.num_computed_tokens == 0


def test_a_preempted_sequence_finds_its_own_blocks_again():
    kv = PrefixCachingKVCacheManager(num_blocks=8, block_size=BLOCK, max_model_len=64)
    seq = make_seq(list(range(6)))
    assert admit(kv, seq)
    for token in (100, 101, 102):  # decode: the K/V of the sampled token is computed next
        seq.append_token(token)
        assert kv.allocate_slots(seq, 1)
        seq.num_computed_tokens += 1
        kv.cache_blocks(seq)
    # Tokens 0..7 are full blocks now (the second one holds output tokens 100, 101).
    kv.free(seq)
    seq.num_computed_tokens = 0
    seq.num_preemptions += 1
    assert admit(kv, seq)
    assert seq.num_computed_tokens == seq.num_tokens == 9
    assert kv.prefix_cache_hits == 8
    assert seq.num_cached_tokens == 0  # what the first admission found


def test_two_sequences_that_compute_the_same_block_keep_the_first():
    kv = PrefixCachingKVCacheManager(num_blocks=8, block_size=BLOCK, max_model_len=64)
    a, b = make_seq(list(range(9))), make_seq(list(range(9)))
    for seq in (a, b):  # both admitted in one step: neither finds the other's blocks
        assert kv.allocate_slots(seq, 9)
    for seq in (a, b):
        seq.num_computed_tokens = 9
        kv.cache_blocks(seq)
    assert kv.get_computed_blocks(make_seq(list(range(9))))[0] == a.block_table[:2]
    kv.free(a)
    kv.free(b)
    assert kv.num_free_blocks == 8


def test_prefix_caching_needs_paged_blocks():
    with pytest.raises(ValueError, match="kv_allocator='paged'"):
        make_kv_cache_manager("reserved", 16, BLOCK, 16, enable_prefix_caching=True)
    assert make_kv_cache_manager("paged", 16, BLOCK, 16).get_computed_blocks(
        make_seq(list(range(9)))) == ([], 0)


# -- a random workload under memory pressure -------------------------------------------------
PREFIXES = [[], [1, 2, 3, 4], [1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 9, 9], [5] * 9]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "step", "free", "preempt"]),
                          st.integers(0, 4), st.integers(0, 6)), max_size=80))
def test_eviction_never_frees_or_overwrites_a_block_in_use(ops):
    """Sequences with shared prefixes are admitted, run in chunks, decode, are preempted and
    finish at random in a pool too small for all. Every slot remembers the tokens whose K/V it
    holds (a token's K/V depend on all tokens up to it): every computed position of every live
    sequence must still hold its own prefix's K/V, however blocks were shared and evicted, and
    no block a live sequence uses may be on the free list."""
    kv = PrefixCachingKVCacheManager(num_blocks=7, block_size=BLOCK, max_model_len=64)
    slots: dict[int, tuple[int, ...]] = {}  # slot -> the prefix whose K/V it holds
    live: list[Sequence] = []
    for op, i, n in ops:
        if op == "add":
            seq = make_seq(PREFIXES[i] + [20 + n] * (n + 1))
            if kv.allocate_slots(seq, seq.num_tokens - kv.get_computed_blocks(seq)[1]):
                live.append(seq)
            else:
                assert seq.block_table == [] and seq.num_computed_tokens == 0
        elif live and op == "step":  # run up to n + 1 uncomputed tokens, sample at the end
            seq = live[i % len(live)]
            start = seq.num_computed_tokens
            end = min(seq.num_tokens, start + n + 1)
            tokens = seq.all_token_ids
            for p in range(start, end):
                block = seq.block_table[p // BLOCK]
                assert kv.allocator.ref_counts[block] == 1, "wrote into a shared block"
                slots[block * BLOCK + p % BLOCK] = tuple(tokens[: p + 1])
            seq.num_computed_tokens = end
            kv.cache_blocks(seq)
            if end == seq.num_tokens and seq.num_tokens < 40:
                seq.append_token(30 + n)
                if not kv.allocate_slots(seq, 1):
                    kv.free(seq)
                    live.remove(seq)
        elif live and op in ("free", "preempt"):
            seq = live.pop(i % len(live))
            kv.free(seq)
            if op == "preempt":  # recompute later: admit again at once if it fits
                seq.num_computed_tokens = 0
                seq.num_preemptions += 1
                if kv.allocate_slots(seq, seq.num_tokens - kv.get_computed_blocks(seq)[1]):
                    live.append(seq)

        refs = [0] * kv.num_blocks
        for seq in live:
            for block in seq.block_table:
                refs[block] += 1
            tokens = seq.all_token_ids
            for p in range(seq.num_computed_tokens):
                slot = seq.block_table[p // BLOCK] * BLOCK + p % BLOCK
                assert slots.get(slot) == tuple(tokens[: p + 1]), "a block in use was reused"
        assert refs == kv.allocator.ref_counts
        assert set(kv.allocator.free_block_ids) == {b for b in range(kv.num_blocks)
                                                    if refs[b] == 0}
        for block_hash, block in kv.allocator.cached_block_hash_to_block.items():
            assert kv.allocator.block_hashes[block] == block_hash
    for seq in live:
        kv.free(seq)
    assert kv.num_free_blocks == kv.num_blocks
