"""Lab 5's reference outputs: prefix caching's block hashes, scheduler traces of workloads with
shared prefixes (with the cache's hit counts), and greedy token ids of a model with prefix
caching and chunked prefill on."""

from __future__ import annotations

import random
from dataclasses import asdict
from pathlib import Path

from minivllm.labs.record import Recorded, write_json
from minivllm.labs.record.greedy import record_greedy
from minivllm.labs.scheduler_sim import Request, SchedulerSetup, simulate

HASH_FILE = "lab5_block_hashes.json"
TRACE_FILE = "lab5_prefix_cache_traces.json"

SYSTEM = tuple(range(100, 112))  # a 12-token "system prompt" shared by many requests


def _with_prefix(prefix: tuple[int, ...], suffix: list[int], arrival: int,
                 max_tokens: int) -> Request:
    prompt = (*prefix, *suffix)
    return Request(arrival, len(prompt), max_tokens, prompt)


NAMED_WORKLOADS = {
    # One request computes the system prompt; the later ones find its three full blocks.
    "shared_system_prompt": (
        SchedulerSetup(num_blocks=40, block_size=4, max_model_len=48, max_num_seqs=4,
                       max_num_batched_tokens=48, enable_prefix_caching=True),
        [_with_prefix(SYSTEM, [1, 2, 3], 0, 4), _with_prefix(SYSTEM, [4, 5], 2, 3),
         _with_prefix(SYSTEM, [6, 7, 8, 9, 10], 3, 5), _with_prefix(SYSTEM[:7], [11], 6, 2),
         _with_prefix(SYSTEM, [1, 2, 3, 12, 13], 9, 3)]),
    # The same prompt again and again: every block but the last token's is shared.
    "identical_prompts": (
        SchedulerSetup(num_blocks=30, block_size=4, max_model_len=32, max_num_seqs=4,
                       max_num_batched_tokens=32, enable_prefix_caching=True),
        [_with_prefix((), list(range(50, 60)), arrival, 3) for arrival in (0, 0, 2, 5, 6)]),
    # A small pool: freed blocks stay cached until the free list hands them out, least
    # recently freed first, so an early prompt comes back to a partly evicted cache.
    "eviction": (
        SchedulerSetup(num_blocks=12, block_size=4, max_model_len=32, max_num_seqs=2,
                       max_num_batched_tokens=32, enable_prefix_caching=True),
        [_with_prefix((), list(range(10 * i, 10 * i + 9)), i, 2) for i in range(4)]
        + [_with_prefix((), list(range(9)), 12, 2), _with_prefix((), list(range(30, 39)), 13, 2)]),
    # Preempted sequences come back to their own cached blocks.
    "preemption": (
        SchedulerSetup(num_blocks=10, block_size=4, max_model_len=32, max_num_seqs=4,
                       max_num_batched_tokens=32, enable_prefix_caching=True),
        [_with_prefix(SYSTEM[:8], [1], 0, 12), _with_prefix(SYSTEM[:8], [2, 3], 0, 12),
         _with_prefix(SYSTEM[:8], [4], 1, 10)]),
    # Chunked prefill: chunks start after the cached prefix.
    "chunked": (
        SchedulerSetup(num_blocks=40, block_size=4, max_model_len=48, max_num_seqs=4,
                       max_num_batched_tokens=8, enable_chunked_prefill=True,
                       enable_prefix_caching=True),
        [_with_prefix(SYSTEM, [1, 2, 3, 4, 5, 6, 7], 0, 3),
         _with_prefix(SYSTEM, [8, 9, 10, 11, 12, 13, 14, 15, 16], 5, 3),
         _with_prefix(SYSTEM[:6], [20], 6, 4)]),
}


def random_workload(rng: random.Random) -> tuple[SchedulerSetup, list[Request]]:
    """Prompts built from a few shared prefixes and random suffixes."""
    block_size = rng.choice([2, 4])
    chunked = rng.random() < 0.5
    setup = SchedulerSetup(
        num_blocks=rng.randint(14, 40), block_size=block_size, max_model_len=32,
        max_num_seqs=rng.randint(2, 4),
        max_num_batched_tokens=rng.randint(6, 12) if chunked else 32,
        enable_chunked_prefill=chunked, enable_prefix_caching=True)
    prefixes = [tuple(rng.randrange(500) for _ in range(rng.randint(3, 12))) for _ in range(3)]
    requests = []
    for _ in range(rng.randint(6, 10)):
        prefix = rng.choice(prefixes)
        suffix = [rng.randrange(500) for _ in range(rng.randint(0, 6))]
        if not prefix + tuple(suffix):
            suffix = [1]
        prompt_len = len(prefix) + len(suffix)
        requests.append(_with_prefix(prefix, suffix, rng.randint(0, 15),
                                     rng.randint(1, 32 - prompt_len)))
    return setup, requests


# On the CPU on every machine: what lab 5 adds is host-side bookkeeping, so the device adds
# nothing to the check, and one set of reference tokens serves everyone.
GREEDY_RUNS = [
    {"name": f"prefix_caching_{'chunked' if chunked else 'whole'}", "model": "random:tiny-llama",
     "vocab_size": 512, "prompt_lengths": [9, 3, 17, 5], "seed": 5, "max_tokens": 10,
     "shared_prefix_length": 40,
     "engine": {"kv_allocator": "paged", "scheduler": "continuous", "attention": "torch",
                "block_size": 8, "max_model_len": 96, "max_num_seqs": 2,
                "num_gpu_blocks_override": 40, "enable_prefix_caching": True,
                "enable_chunked_prefill": chunked,
                "max_num_batched_tokens": 16 if chunked else 96}}
    for chunked in (False, True)
]


def hash_cases(rng: random.Random) -> list[dict]:
    from minivllm.core.prefix_cache import hash_block_tokens

    cases = []
    parent = None
    for _ in range(8):
        tokens = [rng.randrange(50_000) for _ in range(rng.choice([1, 4, 16]))]
        block_hash = hash_block_tokens(parent, tokens)
        cases.append({"parent": parent, "tokens": tokens, "hash_value": block_hash.hash_value,
                      "token_ids": list(block_hash.token_ids)})
        parent = block_hash.hash_value if rng.random() < 0.7 else None
    return cases


def record(out_dir: Path) -> list[Recorded]:
    rng = random.Random(5)
    write_json(out_dir / HASH_FILE, {"cases": hash_cases(rng)})

    workloads = dict(NAMED_WORKLOADS)
    for i in range(3):
        workloads[f"random_{i}"] = random_workload(rng)
    recorded = []
    for name, (setup, requests) in workloads.items():
        result = simulate(setup, requests)
        recorded.append({"name": name, "setup": asdict(setup),
                         "requests": [asdict(r) for r in requests], "trace": result.trace,
                         "prefix_cache_hits": result.prefix_cache_hits,
                         "prefix_cache_queries": result.prefix_cache_queries,
                         "num_cached_tokens": result.num_cached_tokens})
    assert all(w["prefix_cache_hits"] > 0 for w in recorded), "a workload never hits the cache"
    write_json(out_dir / TRACE_FILE, {"workloads": recorded})
    return [Recorded(HASH_FILE, device="any"), Recorded(TRACE_FILE, device="any"),
            record_greedy(out_dir, "lab5", GREEDY_RUNS, device="cpu")]
