"""Lab 3 (scheduler): continuous batching with preemption by recompute.

Each check runs one stored workload through `ContinuousScheduler` without a model
(`minivllm.labs.scheduler_sim`) and compares the trace of every step, who ran prompt tokens and
how many, who decoded, who was preempted, the waiting queue's length and the KV blocks in use,
with the reference's (`tests/fixtures/lab3_scheduler_traces.json`). The scheduler runs over
your lab-1 `PagedKVCacheManager`: finish lab 1 first.
"""

from __future__ import annotations

import pytest

from minivllm.labs.compare import first_mismatch
from minivllm.labs.fixtures import load_json
from minivllm.labs.scheduler_sim import Request, SchedulerSetup, simulate

FILE = "lab3_scheduler_traces.json"
NAMED = ["max_num_seqs", "token_budget_fcfs", "arrivals", "preemption", "chunked_prefill",
         "chunked_preemption"]
RANDOM = ["random_0", "random_1", "random_2", "random_3"]
TRACE_KEYS = ["prefill", "decode", "preempted", "num_waiting", "num_blocks_used"]


def _check(fixtures_dir, name: str) -> None:
    workloads = {w["name"]: w for w in load_json(fixtures_dir, FILE)["workloads"]}
    assert name in workloads, f"{FILE} has no workload {name!r}"
    w = workloads[name]
    setup = SchedulerSetup(**w["setup"])
    requests = [Request(**r) for r in w["requests"]]
    # Twice the reference's steps: a scheduler that stalls fails here instead of spinning.
    trace = simulate(setup, requests, max_steps=2 * len(w["trace"]) + 10).trace
    mismatch = first_mismatch(w["trace"], trace, TRACE_KEYS,
                              lambda i: f"{name}, step {w['trace'][i]['step']}")
    assert mismatch is None, mismatch


@pytest.mark.points(3)
@pytest.mark.parametrize("name", NAMED)
def test_named_workload(fixtures_dir, name):
    _check(fixtures_dir, name)


@pytest.mark.points(2)
@pytest.mark.parametrize("name", RANDOM)
def test_random_workload(fixtures_dir, name):
    _check(fixtures_dir, name)


@pytest.mark.points(3)
@pytest.mark.parametrize("name", ["continuous_whole_prefill", "continuous_chunked_prefill"])
def test_greedy_generation_under_preemption(fixtures_dir, device, name):
    """A whole model with your scheduler and too few KV blocks: sequences are preempted and
    recomputed, yet every one ends with the reference's greedy tokens, after the same number
    of preemptions, and every block is back in the pool."""
    from minivllm.labs.e2e import assert_same_greedy_tokens, device_class, greedy_run

    runs = {r["name"]: r for r in load_json(fixtures_dir,
                                            f"lab3_greedy_{device_class()}.json")["runs"]}
    run = runs[name]
    result = greedy_run(run["model"], run["prompts"], run["max_tokens"],
                        {**run["engine"], "device": str(device)})
    assert_same_greedy_tokens(name, run["token_ids"], result)
    assert result.num_preemptions == run["num_preemptions"], (
        f"{name}: {result.num_preemptions} preemptions, the reference had "
        f"{run['num_preemptions']}")
    assert result.num_free_blocks_after == result.num_blocks, f"{name}: blocks leaked"
