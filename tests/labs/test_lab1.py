"""Lab 1 (block tables): the block allocator, the paged KV cache manager and slot mapping.

The workloads and the reference's answers are in `tests/fixtures/lab1_*.json`; each check
replays a workload on your code (`minivllm.labs.kv_traces`) and compares it operation by
operation. A few checks also test a rule from a docstring directly.
"""

from __future__ import annotations

import pytest

from minivllm.labs.compare import first_mismatch
from minivllm.labs.fixtures import load_json
from minivllm.labs.kv_traces import replay_allocator, replay_paged_manager, slot_mapping

ALLOCATOR_WORKLOADS = ["hand_written", "random_0", "random_1", "random_2"]
MANAGER_WORKLOADS = ["hand_written", "random_0", "random_1", "random_2"]


def _workload(fixtures_dir, file: str, name: str) -> dict:
    workloads = {w["name"]: w for w in load_json(fixtures_dir, file)["workloads"]}
    assert name in workloads, f"{file} has no workload {name!r}"
    return workloads[name]


def _check_allocator_trace(fixtures_dir, name: str) -> None:
    w = _workload(fixtures_dir, "lab1_allocator.json", name)
    observed = replay_allocator(w["num_blocks"], w["ops"])
    mismatch = first_mismatch(w["expected"], observed,
                              ["error", "result", "num_free", "ref_counts"],
                              lambda i: f"{name}, op {i} {w['ops'][i]}")
    assert mismatch is None, mismatch


@pytest.mark.points(4)
def test_allocator_hand_written_trace(fixtures_dir):
    """Allocate, free, share, double free, empty pool: ids come off the free list in order
    (the front first) and freed blocks join its end."""
    _check_allocator_trace(fixtures_dir, "hand_written")


@pytest.mark.points(2)
@pytest.mark.parametrize("name", ALLOCATOR_WORKLOADS[1:])
def test_allocator_random_trace(fixtures_dir, name):
    _check_allocator_trace(fixtures_dir, name)


@pytest.mark.points(1)
def test_allocator_double_free_raises():
    from minivllm.core.block_allocator import BlockAllocator

    allocator = BlockAllocator(2)
    block = allocator.allocate()
    allocator.free(block)
    with pytest.raises(ValueError):
        allocator.free(block)
    assert allocator.num_free_blocks == 2, "a rejected double free changed the free list"


@pytest.mark.points(1)
def test_allocator_empty_pool_raises():
    from minivllm.core.block_allocator import BlockAllocator, NoFreeBlocksError

    allocator = BlockAllocator(1)
    allocator.allocate()
    with pytest.raises(NoFreeBlocksError):
        allocator.allocate()


@pytest.mark.points(1)
def test_allocator_shared_block_outlives_one_free():
    from minivllm.core.block_allocator import BlockAllocator

    allocator = BlockAllocator(3)
    block = allocator.allocate()
    allocator.incr_ref(block)
    allocator.free(block)
    assert block not in allocator.free_block_ids, "a block still in use went back to the pool"
    assert allocator.num_free_blocks == 2
    allocator.free(block)
    assert allocator.num_free_blocks == 3, "the last free did not return the block"
    with pytest.raises(ValueError):
        allocator.incr_ref(block)  # a free block cannot be shared


@pytest.mark.points(4)
def test_compute_slot_mapping(fixtures_dir):
    cases = load_json(fixtures_dir, "lab1_slot_mapping.json")["cases"]
    for case in cases:
        args = (case["block_table"], case["block_size"], case["start"], case["end"])
        got = slot_mapping(*args)
        assert got == case["slots"], (f"compute_slot_mapping{args}: expected {case['slots']}, "
                                      f"got {got}")


@pytest.mark.points(2)
@pytest.mark.parametrize("name", MANAGER_WORKLOADS)
def test_paged_manager_growth(fixtures_dir, name):
    """allocate_slots answers as the reference, grows each block table to the same length
    and leaves the same number of blocks free, after every operation."""
    w = _workload(fixtures_dir, "lab1_paged_manager.json", name)
    observed = replay_paged_manager(w["num_blocks"], w["block_size"], w["max_model_len"],
                                    w["ops"])
    for obs in [*observed, *w["expected"]]:
        obs["num_blocks"] = len(obs["block_table"])
    mismatch = first_mismatch(w["expected"], observed, ["ok", "num_blocks", "num_free"],
                              lambda i: f"{name}, op {i} {w['ops'][i]}")
    assert mismatch is None, mismatch


@pytest.mark.points(1)
@pytest.mark.parametrize("name", MANAGER_WORKLOADS)
def test_paged_manager_block_ids_and_slots(fixtures_dir, name):
    """The same physical blocks and slots as the reference: blocks come off the front of the
    free list, and `free` returns a sequence's blocks last one first."""
    w = _workload(fixtures_dir, "lab1_paged_manager.json", name)
    observed = replay_paged_manager(w["num_blocks"], w["block_size"], w["max_model_len"],
                                    w["ops"])
    mismatch = first_mismatch(w["expected"], observed, ["block_table", "slots"],
                              lambda i: f"{name}, op {i} {w['ops'][i]}")
    assert mismatch is None, mismatch


@pytest.mark.points(2)
def test_allocate_slots_is_all_or_nothing():
    from minivllm.core.kv_cache_manager import PagedKVCacheManager
    from minivllm.sampling_params import SamplingParams
    from minivllm.sequence import Sequence

    manager = PagedKVCacheManager(num_blocks=4, block_size=4, max_model_len=64)
    first, second = (Sequence(f"s{i}", [0] * 10, SamplingParams()) for i in range(2))
    assert manager.allocate_slots(first, 10)  # 3 blocks, 1 left
    assert not manager.allocate_slots(second, 10), "3 blocks were needed and 1 was free"
    assert second.block_table == [], "a refused allocation kept some blocks"
    assert manager.num_free_blocks == 1, "a refused allocation took blocks from the pool"


@pytest.mark.points(1)
def test_free_returns_every_block():
    from minivllm.core.kv_cache_manager import PagedKVCacheManager
    from minivllm.sampling_params import SamplingParams
    from minivllm.sequence import Sequence

    manager = PagedKVCacheManager(num_blocks=6, block_size=2, max_model_len=64)
    seq = Sequence("s", [0] * 9, SamplingParams())
    assert manager.allocate_slots(seq, 9)
    manager.free(seq)
    assert seq.block_table == [], "free must empty the block table"
    assert manager.num_free_blocks == 6, "free must return every block to the pool"
    assert all(c == 0 for c in manager.allocator.ref_counts)


@pytest.mark.points(3)
def test_greedy_generation_with_paged_blocks(fixtures_dir, device):
    """A whole model on your paged allocator (provided static scheduler and PyTorch
    attention), two sequences at a time so later ones reuse freed blocks: the same greedy
    tokens as the reference, and every block back in the pool at the end."""
    from minivllm.labs.e2e import assert_same_greedy_tokens, device_class, greedy_run

    runs = load_json(fixtures_dir, f"lab1_greedy_{device_class()}.json")["runs"]
    for run in runs:
        result = greedy_run(run["model"], run["prompts"], run["max_tokens"],
                            {**run["engine"], "device": str(device)})
        assert_same_greedy_tokens(run["name"], run["token_ids"], result)
        assert result.num_free_blocks_after == result.num_blocks, (
            f"{run['name']}: {result.num_blocks - result.num_free_blocks_after} blocks still "
            "allocated after every request finished")
