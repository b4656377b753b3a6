"""Both schedulers, driven without a model: every sequence gets one token per sampling step."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minivllm.config import EngineConfig
from minivllm.core.kv_cache_manager import PagedKVCacheManager, make_kv_cache_manager
from minivllm.core.scheduler import make_scheduler
from minivllm.sampling_params import SamplingParams
from minivllm.sequence import Sequence, SequenceStatus


def make_config(**kw) -> EngineConfig:
    cfg = EngineConfig(device="cpu", **{"max_model_len": 64, "block_size": 4, **kw})
    cfg.resolve(model_max_len=cfg.max_model_len)
    return cfg


def run(scheduler, seqs, max_tokens, max_steps=10_000):
    """Simulate the engine: sampled sequences get a token; they finish after max_tokens."""
    for seq in seqs:
        scheduler.add_seq(seq)
    steps = []
    while scheduler.has_unfinished_seqs():
        out = scheduler.schedule()
        assert out.num_batched_tokens <= scheduler.max_num_batched_tokens
        assert len(scheduler.running) <= scheduler.max_num_seqs
        sampled = [s.seq for s in out.scheduled if s.samples]
        scheduler.update_from_output(out)
        for seq in sampled:
            seq.append_token(1000 + len(seq.output_token_ids))
            if len(seq.output_token_ids) >= max_tokens[seq.seq_id]:
                scheduler.finish_seq(seq, SequenceStatus.FINISHED_LENGTH_CAPPED)
        steps.append(out)
        assert len(steps) < max_steps, "scheduler made no progress"
    return steps


def make_seqs(prompt_lens):
    return [Sequence(f"r{i}", list(range(n)), SamplingParams()) for i, n in enumerate(prompt_lens)]


@pytest.mark.parametrize("policy", ["static", "continuous"])
def test_all_finish_and_free_every_block(policy):
    cfg = make_config(scheduler=policy, max_num_seqs=3)
    kv = make_kv_cache_manager("paged", 40, 4, 64)
    sched = make_scheduler(cfg, kv)
    seqs = make_seqs([5, 9, 3, 12, 7])
    run(sched, seqs, {s.seq_id: 4 + i for i, s in enumerate(seqs)})
    assert all(len(s.output_token_ids) == 4 + i for i, s in enumerate(seqs))
    assert kv.num_free_blocks == 40


def test_continuous_admits_while_others_decode_static_waits():
    seqs_by_policy = {}
    for policy in ("static", "continuous"):
        sched = make_scheduler(make_config(scheduler=policy, max_num_seqs=2),
                               make_kv_cache_manager("paged", 40, 4, 64))
        seqs = make_seqs([4, 4, 4])
        steps = run(sched, seqs, {seqs[0].seq_id: 2, seqs[1].seq_id: 10, seqs[2].seq_id: 2})
        # Step at which the third sequence first ran.
        seqs_by_policy[policy] = next(i for i, out in enumerate(steps)
                                      if any(s.seq is seqs[2] for s in out.scheduled))
    # seq 0 finishes after 2 tokens: continuous batching takes seq 2 in right away; static
    # waits for seq 1's 10 tokens.
    assert seqs_by_policy["continuous"] == 2
    assert seqs_by_policy["static"] == 10


def test_preemption_by_recompute_when_blocks_run_out():
    cfg = make_config(scheduler="continuous", max_num_seqs=4)
    kv = PagedKVCacheManager(num_blocks=6, block_size=4, max_model_len=64)
    sched = make_scheduler(cfg, kv)
    sched.record_trace = True
    seqs = make_seqs([4, 4, 4])
    run(sched, seqs, {s.seq_id: 10 for s in seqs})
    assert sched.num_preemptions > 0
    assert any(step.preempted for step in sched.trace)
    # A preempted sequence is re-prefilled with its prompt and the tokens it had generated.
    preempted = next(s for s in seqs if s.num_preemptions)
    assert len(preempted.output_token_ids) == 10
    assert kv.num_free_blocks == 6


def test_token_budget_splits_prefills_across_steps():
    cfg = make_config(scheduler="continuous", max_model_len=64, max_num_batched_tokens=64)
    sched = make_scheduler(cfg, make_kv_cache_manager("paged", 100, 4, 64))
    seqs = make_seqs([40, 40])
    sched.add_seq(seqs[0])
    sched.add_seq(seqs[1])
    out = sched.schedule()
    assert [s.seq for s in out.scheduled] == [seqs[0]]  # 80 tokens > 64: second one waits


def test_chunked_prefill_runs_decodes_beside_a_long_prompt():
    cfg = make_config(scheduler="continuous", max_model_len=64, max_num_batched_tokens=16,
                      enable_chunked_prefill=True)
    sched = make_scheduler(cfg, make_kv_cache_manager("paged", 100, 4, 64))
    short, long = make_seqs([4, 60])
    sched.add_seq(short)
    out = sched.schedule()
    sched.update_from_output(out)
    short.append_token(7)
    sched.add_seq(long)
    chunks = []
    for _ in range(4):
        out = sched.schedule()
        kinds = {s.seq.request_id: (s.num_new_tokens, s.is_prefill) for s in out.scheduled}
        assert kinds["r0"] == (1, False), "the running stream keeps decoding"
        chunks.append(kinds["r1"][0])
        sched.update_from_output(out)
        short.append_token(7)
    assert chunks == [15, 15, 15, 15]


@settings(max_examples=40, deadline=None)
@given(prompt_lens=st.lists(st.integers(1, 20), min_size=1, max_size=8),
       num_blocks=st.integers(12, 30), policy=st.sampled_from(["static", "continuous"]),
       chunked=st.booleans())
def test_random_workloads_finish_without_leaks(prompt_lens, num_blocks, policy, chunked):
    cfg = make_config(scheduler=policy, max_num_seqs=4, max_model_len=32,
                      enable_chunked_prefill=chunked,
                      max_num_batched_tokens=8 if chunked else 32)
    kv = PagedKVCacheManager(num_blocks=num_blocks, block_size=4, max_model_len=32)
    sched = make_scheduler(cfg, kv)
    seqs = make_seqs(prompt_lens)
    run(sched, seqs, {s.seq_id: 32 - s.num_prompt_tokens for s in seqs})
    assert all(s.num_tokens == 32 for s in seqs)
    assert kv.num_free_blocks == num_blocks
    assert all(c == 0 for c in kv.allocator.ref_counts)
