"""Lab 1's workloads, replayed: the block allocator and the paged KV cache manager.

A workload is a list of operations stored as JSON in `tests/fixtures/`. `record` replays it on
the reference and stores what each operation returned and left behind; the graded checks
replay it on the student's code and compare, operation by operation. Both sides call the same
functions below, so a difference can only come from the code under test.
"""

from __future__ import annotations

from typing import Any

Observation = dict[str, Any]


ALLOCATOR_OPS = ("allocate", "free", "incr_ref")


def replay_allocator(num_blocks: int, ops: list[dict[str, Any]]) -> list[Observation]:
    """Apply `allocate` / `free` / `incr_ref` ops to a fresh BlockAllocator; after each op
    observe its result (the block id allocate returned), the exception it raised (by class
    name), the number of free blocks and every reference count."""
    from minivllm.core.block_allocator import BlockAllocator

    allocator = BlockAllocator(num_blocks)
    observed = []
    for op in ops:
        if op["op"] not in ALLOCATOR_OPS:
            raise ValueError(f"unknown allocator op {op['op']!r}")
        result, error = None, None
        try:
            if op["op"] == "allocate":
                result = allocator.allocate()
            elif op["op"] == "free":
                allocator.free(op["block"])
            else:
                allocator.incr_ref(op["block"])
        except NotImplementedError:
            raise  # a release stub: the lab is not written, which is not a wrong answer
        except Exception as e:
            error = type(e).__name__
        observed.append({"result": result, "error": error,
                         "num_free": allocator.num_free_blocks,
                         "ref_counts": list(allocator.ref_counts)})
    return observed


def replay_paged_manager(num_blocks: int, block_size: int, max_model_len: int,
                         ops: list[dict[str, Any]]) -> list[Observation]:
    """Drive a PagedKVCacheManager the way the scheduler does.

    - `{"op": "add", "seq": i, "prompt_len": n}`: a new sequence of n prompt tokens.
    - `{"op": "run", "seq": i, "n": k}`: `allocate_slots(seq, k)`; if it succeeds, observe the
      slots of those k tokens and count them as computed (as `Scheduler.update_from_output`
      does); a sequence past its prompt gets a sampled token, as after a decode.
    - `{"op": "free", "seq": i}`: `free(seq)` (finished, or preempted: computed tokens back to
      0, as preemption by recompute does).

    After each op: its result (`ok`), the sequence's block table, its slots and the pool's
    number of free blocks.
    """
    from minivllm.core.kv_cache_manager import PagedKVCacheManager
    from minivllm.sampling_params import SamplingParams
    from minivllm.sequence import Sequence

    manager = PagedKVCacheManager(num_blocks, block_size, max_model_len)
    seqs: dict[int, Sequence] = {}
    observed = []
    for op in ops:
        ok, slots = None, None
        if op["op"] == "add":
            seqs[op["seq"]] = Sequence(f"seq{op['seq']}", [0] * op["prompt_len"],
                                       SamplingParams())
        seq = seqs[op["seq"]]
        if op["op"] == "run":
            start = seq.num_computed_tokens
            ok = manager.allocate_slots(seq, op["n"])
            if ok:
                slots = manager.slot_mapping(seq, start, start + op["n"])
                seq.num_computed_tokens += op["n"]
                if seq.num_computed_tokens >= seq.num_tokens:
                    seq.append_token(0)
        elif op["op"] == "free":
            manager.free(seq)
            seq.num_computed_tokens = 0
        elif op["op"] != "add":
            raise ValueError(f"unknown manager op {op['op']!r}")
        observed.append({"ok": ok, "block_table": list(seq.block_table), "slots": slots,
                         "num_free": manager.num_free_blocks})
    return observed


def slot_mapping(block_table: list[int], block_size: int, start: int, end: int) -> list[int]:
    """The student's `compute_slot_mapping`, as a list of ints."""
    from minivllm.core.kv_cache_manager import compute_slot_mapping

    return [int(s) for s in compute_slot_mapping(block_table, block_size, start, end)]
