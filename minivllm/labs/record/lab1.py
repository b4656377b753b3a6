"""Lab 1's reference outputs: allocator and paged KV cache manager traces, and slot mappings.

Workloads are seeded random scripts (plus a few written by hand for the cases that matter
most: a double free, a shared block, a pool too small for a chunk). The reference's answers are
recorded with the same replay functions the graded checks use (`minivllm.labs.kv_traces`).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from minivllm.labs.kv_traces import replay_allocator, replay_paged_manager, slot_mapping
from minivllm.labs.record import Recorded, write_json
from minivllm.labs.record.greedy import record_greedy

ALLOCATOR_FILE = "lab1_allocator.json"
MANAGER_FILE = "lab1_paged_manager.json"
SLOT_MAPPING_FILE = "lab1_slot_mapping.json"

HAND_WRITTEN_ALLOCATOR_OPS = [
    {"op": "allocate"}, {"op": "allocate"}, {"op": "allocate"},  # blocks 0, 1, 2
    {"op": "free", "block": 1},  # back to the end of the free list
    {"op": "allocate"},  # block 3: the free list is first in, first out
    {"op": "incr_ref", "block": 0},  # shared by two sequences
    {"op": "free", "block": 0},  # one user left: still allocated
    {"op": "free", "block": 0},  # now free
    {"op": "free", "block": 0},  # double free: ValueError
    {"op": "incr_ref", "block": 0},  # sharing a free block: ValueError
    {"op": "allocate"}, {"op": "allocate"}, {"op": "allocate"},  # 1, 0, then empty: error
]

HAND_WRITTEN_MANAGER_OPS = [  # 5 blocks of 4 slots
    {"op": "add", "seq": 0, "prompt_len": 6},
    {"op": "run", "seq": 0, "n": 6},  # 2 blocks
    {"op": "run", "seq": 0, "n": 1},  # position 6 fits in block 2 of 2: no new block
    {"op": "run", "seq": 0, "n": 1},  # position 7 still fits
    {"op": "run", "seq": 0, "n": 1},  # position 8 needs a third block
    {"op": "add", "seq": 1, "prompt_len": 9},
    {"op": "run", "seq": 1, "n": 9},  # needs 3 blocks, 2 free: refused, nothing allocated
    {"op": "run", "seq": 1, "n": 8},  # a chunk of 8: 2 blocks, fits
    {"op": "free", "seq": 0},  # its 3 blocks go back, the last one first
    {"op": "run", "seq": 1, "n": 1},  # the prompt's last token: a third block, a reused one
    {"op": "run", "seq": 1, "n": 1},
    {"op": "run", "seq": 1, "n": 1},
    {"op": "run", "seq": 1, "n": 1},  # position 11 ends the third block
    {"op": "run", "seq": 1, "n": 1},  # position 12: a fourth block
    {"op": "free", "seq": 1},
]


# The paged allocator under a real model, beside the provided static scheduler and PyTorch
# attention; two sequences at a time, so later ones reuse the blocks earlier ones freed.
GREEDY_RUNS = [
    {"name": "paged_static_torch", "model": "random:tiny-llama", "vocab_size": 512,
     "prompt_lengths": [3, 17, 40, 9, 25, 12], "seed": 1, "max_tokens": 16,
     "engine": {"kv_allocator": "paged", "scheduler": "static", "attention": "torch",
                "block_size": 8, "max_model_len": 96, "max_num_seqs": 2,
                "num_gpu_blocks_override": 24}},
]


def random_allocator_ops(rng: random.Random, num_blocks: int, length: int) -> list[dict]:
    ops: list[dict[str, Any]] = []
    for _ in range(length):
        state = replay_allocator(num_blocks, ops)[-1] if ops else None
        held = [b for b, c in enumerate(state["ref_counts"]) if c > 0] if state else []
        roll = rng.random()
        if roll < 0.45 or not held:
            ops.append({"op": "allocate"})
        elif roll < 0.85:
            # Mostly a held block; now and then any block, so double frees happen.
            block = rng.choice(held) if rng.random() < 0.85 else rng.randrange(num_blocks)
            ops.append({"op": "free", "block": block})
        else:
            block = rng.choice(held) if rng.random() < 0.85 else rng.randrange(num_blocks)
            ops.append({"op": "incr_ref", "block": block})
    return ops


def random_manager_ops(rng: random.Random, num_blocks: int, block_size: int,
                       max_model_len: int, length: int) -> list[dict]:
    """A scheduler-like script: sequences arrive, run prompt chunks, then decode one token at
    a time, and are freed when they finish or (now and then) to simulate a preemption."""
    ops: list[dict[str, Any]] = []
    computed: dict[int, int] = {}
    num_tokens: dict[int, int] = {}
    while len(ops) < length:
        if len(computed) < 2 or rng.random() < 0.12:
            seq = len(num_tokens)
            num_tokens[seq] = rng.randint(1, 3 * block_size + 3)
            computed[seq] = 0
            ops.append({"op": "add", "seq": seq, "prompt_len": num_tokens[seq]})
            continue
        seq = rng.choice(sorted(computed))
        if rng.random() < 0.08 or num_tokens[seq] >= max_model_len:
            ops.append({"op": "free", "seq": seq})
            computed[seq] = 0
            if rng.random() < 0.5 or num_tokens[seq] >= max_model_len:  # finished
                del computed[seq]
            continue
        remaining = num_tokens[seq] - computed[seq]
        n = remaining if remaining <= 1 or rng.random() < 0.5 else rng.randint(1, remaining)
        ops.append({"op": "run", "seq": seq, "n": n})
        if replay_paged_manager(num_blocks, block_size, max_model_len, ops)[-1]["ok"]:
            computed[seq] += n
            if computed[seq] >= num_tokens[seq]:
                num_tokens[seq] += 1
    return ops


def slot_mapping_cases(rng: random.Random) -> list[dict]:
    cases = []
    for block_size in (1, 2, 4, 16):
        for _ in range(3):
            num_blocks = rng.randint(1, 6)
            table = rng.sample(range(64), num_blocks)
            start = rng.randint(0, num_blocks * block_size - 1)
            end = rng.randint(start, num_blocks * block_size)
            cases.append({"block_table": table, "block_size": block_size, "start": start,
                          "end": end})
    cases.append({"block_table": [7, 3], "block_size": 4, "start": 2, "end": 2})  # no tokens
    for case in cases:
        case["slots"] = slot_mapping(case["block_table"], case["block_size"], case["start"],
                                     case["end"])
    return cases


def _check_coverage(workloads: list[dict]) -> None:
    """The recorded manager traces must exercise the cases the checks are for."""
    refused_with_room = reused = False
    for w in workloads:
        seen: set[int] = set()
        previous_free = w["num_blocks"]
        for obs in w["expected"]:
            if obs["ok"] is False and previous_free > 0:
                refused_with_room = True  # all or nothing: some blocks free, not enough
            reused |= bool(seen & set(obs["block_table"]) and obs["ok"])
            seen |= set(obs["block_table"])
            previous_free = obs["num_free"]
    assert refused_with_room and reused, "the lab-1 workloads miss a case; change the seeds"


def record(out_dir: Path) -> list[Recorded]:
    rng = random.Random(1)
    allocator_workloads = [{"name": "hand_written", "num_blocks": 4,
                            "ops": HAND_WRITTEN_ALLOCATOR_OPS}]
    for i, num_blocks in enumerate((5, 8, 12)):
        allocator_workloads.append({"name": f"random_{i}", "num_blocks": num_blocks,
                                    "ops": random_allocator_ops(rng, num_blocks, 60)})
    for w in allocator_workloads:
        w["expected"] = replay_allocator(w["num_blocks"], w["ops"])

    manager_workloads = [{"name": "hand_written", "num_blocks": 5, "block_size": 4,
                          "max_model_len": 32, "ops": HAND_WRITTEN_MANAGER_OPS}]
    for i, (num_blocks, block_size) in enumerate(((8, 4), (12, 2), (10, 8))):
        manager_workloads.append({
            "name": f"random_{i}", "num_blocks": num_blocks, "block_size": block_size,
            "max_model_len": 6 * block_size,
            "ops": random_manager_ops(rng, num_blocks, block_size, 6 * block_size, 80)})
    for w in manager_workloads:
        w["expected"] = replay_paged_manager(w["num_blocks"], w["block_size"],
                                             w["max_model_len"], w["ops"])
    _check_coverage(manager_workloads)

    write_json(out_dir / ALLOCATOR_FILE, {"workloads": allocator_workloads})
    write_json(out_dir / MANAGER_FILE, {"workloads": manager_workloads})
    write_json(out_dir / SLOT_MAPPING_FILE, {"cases": slot_mapping_cases(rng)})
    return [*(Recorded(name, device="any") for name in
              (ALLOCATOR_FILE, MANAGER_FILE, SLOT_MAPPING_FILE)),
            record_greedy(out_dir, "lab1", GREEDY_RUNS)]
