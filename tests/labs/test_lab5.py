"""Lab 5 (extensions): prefix caching, alone and with chunked prefill.

- `hash_block_tokens` against stored hashes (`lab5_block_hashes.json`).
- Workloads with shared prefixes run through the continuous scheduler over the prefix-caching
  KV cache manager, without a model (`minivllm.labs.scheduler_sim`): every step's trace, the
  prompt tokens each request found cached and the cache's hit counts must equal the
  reference's (`lab5_prefix_cache_traces.json`). They run over your labs 1 and 3.
- A whole model with prefix caching (and chunked prefill) on prompts with a common prefix:
  the reference's greedy tokens and cache hits.
"""

from __future__ import annotations

import pytest

from minivllm.labs.compare import first_mismatch
from minivllm.labs.fixtures import load_json
from minivllm.labs.scheduler_sim import Request, SchedulerSetup, simulate

TRACE_FILE = "lab5_prefix_cache_traces.json"
NAMED = ["shared_system_prompt", "identical_prompts", "eviction", "preemption", "chunked"]
RANDOM = ["random_0", "random_1", "random_2"]
TRACE_KEYS = ["prefill", "decode", "preempted", "num_waiting", "num_blocks_used"]


@pytest.mark.points(3)
def test_hash_block_tokens(fixtures_dir):
    from minivllm.core.prefix_cache import hash_block_tokens

    for i, case in enumerate(load_json(fixtures_dir, "lab5_block_hashes.json")["cases"]):
        got = hash_block_tokens(case["parent"], case["tokens"])
        assert list(got.token_ids) == case["token_ids"], f"case {i}: token_ids {got.token_ids}"
        assert got.hash_value == case["hash_value"], (
            f"case {i} (parent {case['parent']}, {len(case['tokens'])} tokens): hash_value "
            f"{got.hash_value}, expected {case['hash_value']}")


def _check(fixtures_dir, name: str) -> None:
    workloads = {w["name"]: w for w in load_json(fixtures_dir, TRACE_FILE)["workloads"]}
    assert name in workloads, f"{TRACE_FILE} has no workload {name!r}"
    w = workloads[name]
    requests = [Request(**{**r, "prompt": tuple(r["prompt"]) if r["prompt"] else None})
                for r in w["requests"]]
    result = simulate(SchedulerSetup(**w["setup"]), requests,
                      max_steps=2 * len(w["trace"]) + 10)
    assert result.num_cached_tokens == w["num_cached_tokens"], (
        f"{name}: prompt tokens found cached per request {result.num_cached_tokens}, expected "
        f"{w['num_cached_tokens']}")
    mismatch = first_mismatch(w["trace"], result.trace, TRACE_KEYS,
                              lambda i: f"{name}, step {w['trace'][i]['step']}")
    assert mismatch is None, mismatch
    assert (result.prefix_cache_hits, result.prefix_cache_queries) == (
        w["prefix_cache_hits"], w["prefix_cache_queries"]), f"{name}: prefix cache hits/queries"


@pytest.mark.points(3)
@pytest.mark.parametrize("name", NAMED)
def test_named_workload(fixtures_dir, name):
    _check(fixtures_dir, name)


@pytest.mark.points(2)
@pytest.mark.parametrize("name", RANDOM)
def test_random_workload(fixtures_dir, name):
    _check(fixtures_dir, name)


@pytest.mark.points(3)
@pytest.mark.parametrize("name", ["prefix_caching_whole", "prefix_caching_chunked"])
def test_greedy_generation_with_prefix_caching(fixtures_dir, name):
    """Shared blocks must hold exactly the K/V the prompt would have computed: the greedy
    tokens equal the reference's, and each prompt found as many tokens cached. On the CPU
    everywhere: what this lab adds runs on the host."""
    from minivllm.labs.e2e import assert_same_greedy_tokens, greedy_run

    runs = {r["name"]: r for r in load_json(fixtures_dir, "lab5_greedy_cpu.json")["runs"]}
    run = runs[name]
    result = greedy_run(run["model"], run["prompts"], run["max_tokens"],
                        {**run["engine"], "device": "cpu"})
    assert result.num_cached_tokens == run["num_cached_tokens"], (
        f"{name}: cached prompt tokens {result.num_cached_tokens}, expected "
        f"{run['num_cached_tokens']}")
    assert_same_greedy_tokens(name, run["token_ids"], result)
    assert result.num_free_blocks_after == result.num_blocks, f"{name}: blocks leaked"
