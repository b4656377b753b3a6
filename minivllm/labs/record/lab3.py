"""Lab 3's reference outputs: the continuous scheduler's per-step traces on seeded workloads.

Each named workload isolates one rule of `ContinuousScheduler._schedule` (the token budget,
`max_num_seqs`, first come first served, preemption by recompute, no admission in a step that
preempted, chunked prefill); the random ones mix them. The traces come from
`minivllm.labs.scheduler_sim.simulate`, which the graded checks rerun on the student's code.
"""

from __future__ import annotations

import random
from dataclasses import asdict
from pathlib import Path

from minivllm.labs.record import Recorded, write_json
from minivllm.labs.record.greedy import record_greedy
from minivllm.labs.scheduler_sim import Request, SchedulerSetup, simulate

FILE = "lab3_scheduler_traces.json"


def _requests(*specs: tuple[int, int, int]) -> list[Request]:
    return [Request(arrival, prompt, max_tokens) for arrival, prompt, max_tokens in specs]


NAMED_WORKLOADS = {
    # Six requests at once, two seats: a seat frees up, the next in line takes it at once.
    "max_num_seqs": (SchedulerSetup(num_blocks=64, block_size=4, max_model_len=64,
                                    max_num_seqs=2, max_num_batched_tokens=64),
                     _requests((0, 5, 3), (0, 9, 6), (0, 3, 2), (0, 12, 4), (0, 7, 5),
                               (0, 4, 1))),
    # Prompts compete for a 32-token budget; a small late request must not jump the queue.
    "token_budget_fcfs": (SchedulerSetup(num_blocks=64, block_size=4, max_model_len=32,
                                         max_num_seqs=8, max_num_batched_tokens=32),
                          _requests((0, 20, 3), (0, 15, 2), (0, 4, 2), (0, 30, 2),
                                    (0, 2, 3), (1, 6, 2))),
    # Requests arrive while others decode: each is admitted into the running batch.
    "arrivals": (SchedulerSetup(num_blocks=64, block_size=4, max_model_len=48,
                                max_num_seqs=3, max_num_batched_tokens=48),
                 _requests((0, 10, 8), (2, 6, 3), (3, 14, 5), (3, 2, 4), (9, 8, 6),
                           (10, 5, 2), (20, 3, 3))),
    # Too few blocks for everyone's growth: the newest running sequence is preempted, its
    # blocks freed, and nothing is admitted in that step.
    "preemption": (SchedulerSetup(num_blocks=9, block_size=4, max_model_len=32,
                                  max_num_seqs=4, max_num_batched_tokens=32),
                   _requests((0, 4, 12), (0, 5, 12), (0, 6, 10), (1, 2, 4), (4, 3, 6))),
    # Long prompts in chunks of the 8-token budget, beside running decodes.
    "chunked_prefill": (SchedulerSetup(num_blocks=64, block_size=4, max_model_len=64,
                                       max_num_seqs=4, max_num_batched_tokens=8,
                                       enable_chunked_prefill=True),
                        _requests((0, 3, 6), (1, 30, 3), (2, 17, 4), (2, 2, 5))),
    # Chunked prefill and preemption together.
    "chunked_preemption": (SchedulerSetup(num_blocks=10, block_size=4, max_model_len=32,
                                          max_num_seqs=4, max_num_batched_tokens=10,
                                          enable_chunked_prefill=True),
                           _requests((0, 9, 10), (0, 13, 8), (1, 6, 12), (3, 4, 5))),
}


# A real model under memory pressure: 12 blocks of 8 slots for six growing sequences, so the
# continuous scheduler preempts, and each preempted sequence must resume with the same tokens.
GREEDY_RUNS = [
    {"name": f"continuous_{'chunked' if chunked else 'whole'}_prefill",
     "model": "random:tiny-llama", "vocab_size": 512,
     "prompt_lengths": [3, 17, 40, 9, 25, 12], "seed": 3, "max_tokens": 24,
     "engine": {"kv_allocator": "paged", "scheduler": "continuous", "attention": "torch",
                "block_size": 8, "max_model_len": 96, "max_num_seqs": 4,
                "num_gpu_blocks_override": 12, "enable_chunked_prefill": chunked,
                "max_num_batched_tokens": 16 if chunked else 96}}
    for chunked in (False, True)
]


def random_workload(rng: random.Random) -> tuple[SchedulerSetup, list[Request]]:
    block_size = rng.choice([2, 4, 8])
    max_model_len = 32
    chunked = rng.random() < 0.5
    setup = SchedulerSetup(
        num_blocks=rng.randint(max_model_len // block_size, 3 * max_model_len // block_size),
        block_size=block_size, max_model_len=max_model_len, max_num_seqs=rng.randint(2, 5),
        max_num_batched_tokens=rng.randint(6, 16) if chunked else rng.randint(32, 48),
        enable_chunked_prefill=chunked)
    requests = []
    for _ in range(rng.randint(5, 10)):
        prompt = rng.randint(1, 20)
        requests.append(Request(rng.randint(0, 12), prompt,
                                rng.randint(1, max_model_len - prompt)))
    return setup, requests


def record(out_dir: Path) -> list[Recorded]:
    rng = random.Random(3)
    workloads = dict(NAMED_WORKLOADS)
    for i in range(4):
        workloads[f"random_{i}"] = random_workload(rng)
    recorded = []
    for name, (setup, requests) in workloads.items():
        trace = simulate(setup, requests).trace
        recorded.append({"name": name, "setup": asdict(setup),
                         "requests": [asdict(r) for r in requests], "trace": trace})
    preempting = [w["name"] for w in recorded if any(s["preempted"] for s in w["trace"])]
    assert {"preemption", "chunked_preemption"} <= set(preempting), preempting
    write_json(out_dir / FILE, {"workloads": recorded})
    greedy = record_greedy(out_dir, "lab3", GREEDY_RUNS)
    return [Recorded(FILE, device="any"), greedy]
