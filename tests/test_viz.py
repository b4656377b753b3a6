"""`minivllm.viz`: the notebooks' figures, drawn from real minivllm objects (fast, CPU)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from minivllm import LLM, SamplingParams, viz
from minivllm.core.kv_cache_manager import PagedKVCacheManager, ReservedKVCacheManager
from minivllm.sequence import Sequence


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def runs() -> dict[str, viz.EngineRun]:
    """Both schedulers on one small workload whose cache is tight enough to preempt."""
    rng = np.random.default_rng(0)
    arrivals = [viz.Arrival(rng.integers(0, 500, int(rng.integers(8, 30))).tolist(),
                            SamplingParams(temperature=0, ignore_eos=True,
                                           max_tokens=int(rng.integers(2, 24))), step=2 * i)
                for i in range(8)]
    result = {}
    for policy in ("static", "continuous"):
        llm = LLM("random:tiny-llama", scheduler=policy, max_model_len=64, max_num_seqs=4,
                  num_gpu_blocks_override=8, device="cpu")
        result[policy] = viz.run_workload(llm.llm_engine, arrivals)
    return result


@pytest.mark.parametrize(("value", "small"), [("1", True), ("0", False), ("off", False),
                                              ("yes", True)])
def test_small_settings_switch(monkeypatch, value, small):
    monkeypatch.setenv(viz.SMALL_ENV, value)
    assert viz.small_settings() is small


def test_run_workload_records_every_step(runs):
    for run in runs.values():
        assert len(run.steps) == len(run.trace) > 0
        assert len(run.outputs) == 8 and all(o.finished for o in run.outputs)
        assert all(0 <= s.slots_filled <= s.slots_allocated for s in run.steps)
        assert run.steps[-1].num_running == run.steps[-1].num_waiting == 0
        assert sum(s.num_decode_tokens + s.num_prefill_tokens for s in run.steps) == sum(
            sum(n for _, n in t.prefill) + len(t.decode) for t in run.trace)
        assert (run.ttft() >= 0).all() and (run.tpot() >= 0).all()
        assert run.num_output_tokens == sum(len(o.outputs[0].token_ids) for o in run.outputs)
    assert runs["continuous"].num_preemptions > 0, "the workload was meant to preempt"
    # Same requests, same greedy tokens, whatever the schedule.
    tokens = [[o.outputs[0].token_ids for o in r.outputs] for r in runs.values()]
    assert tokens[0] == tokens[1]


def test_scheduler_figures(runs):
    fig = viz.plot_gantt({name: r.trace for name, r in runs.items()})
    gantt = fig.axes[0].images[0].get_array()
    assert gantt.shape == (8, max(len(r.trace) for r in runs.values()))
    assert set(np.unique(gantt)) == {0, 1, 2}  # idle, prefill, decode
    assert len(fig.axes[1].collections) == 1  # the preemption crosses
    assert len(viz.plot_latency(runs).axes) == 3
    assert len(viz.plot_kv_usage(runs).axes) == 2
    assert len(viz.plot_step_timeline(runs).axes) == 4
    assert len(viz.plot_prefix_caching(runs).axes) == 2


def test_kv_blocks_picture_colours_owned_filled_and_free_slots():
    manager = PagedKVCacheManager(num_blocks=8, block_size=4, max_model_len=32)
    seqs = [Sequence(f"r{i}", list(range(n)), SamplingParams()) for i, n in enumerate([6, 3])]
    for seq in seqs:
        assert manager.allocate_slots(seq, seq.num_prompt_tokens)
        seq.num_computed_tokens = seq.num_prompt_tokens
    fig = viz.plot_kv_blocks(manager, seqs, blocks_per_row=4)
    pool = fig.axes[1].images[0].get_array()
    assert pool.shape == (2, 16, 3)
    first = np.array(viz.seq_color(0))
    np.testing.assert_allclose(pool[0, :6], np.tile(first, (6, 1)))  # blocks 0-1: 6 tokens
    assert not np.allclose(pool[0, 6], first)  # handed out, still empty: lighter
    np.testing.assert_allclose(pool[1, 0], viz.FREE_COLOR)  # block 4 is free
    reserved = ReservedKVCacheManager(num_blocks=8, block_size=4, max_model_len=16)
    seq = Sequence("r", [1, 2, 3], SamplingParams())
    assert reserved.allocate_slots(seq, 3)
    assert viz.plot_kv_blocks(reserved, [seq]).axes[0].images


@pytest.mark.parametrize(("context_len", "num_splits", "block_n"),
                         [(300, 4, 64), (130, 4, 64), (7, 2, 16), (1024, 1, 64)])
def test_split_ranges_tile_the_context(context_len, num_splits, block_n):
    ranges = viz.split_ranges(context_len, num_splits, block_n)
    assert len(ranges) == num_splits
    covered = [p for start, end in ranges for p in range(start, end)]
    assert covered == list(range(context_len))
    assert all(start % block_n == 0 for start, _ in ranges)


def test_decode_grid_draws_one_bar_per_nonempty_program():
    fig = viz.plot_decode_grid([300, 130], num_kv_heads=2, num_splits=4, block_size=16,
                               block_n=64)
    nonempty = sum(end > start for n in (300, 130) for start, end in viz.split_ranges(n, 4, 64))
    assert len(fig.axes[0].patches) == 2 * nonempty


def test_online_softmax_with_rescale_ends_at_the_true_denominator():
    scores = np.random.default_rng(0).normal(size=100)
    scores[90] += 4
    fig = viz.plot_online_softmax(scores, block_n=16)
    with_rescale, without, _ = fig.axes[1].lines
    true = np.exp(scores - scores.max()).sum()
    assert with_rescale.get_ydata()[-1] == pytest.approx(true)
    assert without.get_ydata()[-1] > true * 1.5  # the bug overcounts the early tiles


def test_number_figures():
    fig = viz.plot_bars({"a": 0.0, "b": 1e-3}, "err", "errors", log=True,
                        reference=("tolerance", 1e-2))
    assert [b.get_height() > 0 for b in fig.axes[0].patches] == [True, True]
    fig = viz.plot_bandwidth([1, 4], {"triton": [100.0, 400.0]}, 3000.0, 4096)
    assert len(fig.axes[0].lines) == 2
    fig = viz.plot_latency_histograms([0.1, 0.2, 0.3], [0.01, 0.02, 0.015, 0.03])
    assert len(fig.axes) == 2
    fig = viz.plot_kv_cache_size({"m": 46080}, [512, 1024], budget_gib=1)
    assert fig.axes[1].lines[0].get_ydata()[0] == 2**30 // (512 * 46080)
