"""Lab 2 (PagedAttention): the Triton kernels, against the reference kernels' stored outputs.

`tests/fixtures/lab2_kernels_<cpu|cuda>.safetensors` holds seeded inputs and the reference's
outputs for every case and dtype. On a machine without CUDA your kernels run in Triton's
interpreter (`TRITON_INTERPRET=1`, set by conftest.py). Every call runs inside
`triton_only()`: it must launch a Triton kernel and may not compute attention with PyTorch
(SDPA, softmax, matmul, ...). The last checks run a whole model with `attention="triton"`.
"""

from __future__ import annotations

import functools

import pytest
import torch

from minivllm.labs.e2e import assert_same_greedy_tokens, device_class, greedy_run
from minivllm.labs.fixtures import load_json, load_tensors
from minivllm.labs.integrity import triton_only

DTYPES = ["float32", "float16", "bfloat16"]
DECODE = ["decode_mha", "decode_gqa", "decode_gqa3_split2", "decode_split4_empty_ranges",
          "decode_auto_split_long", "decode_head_dim_64"]
PREFILL = ["prefill_single", "prefill_cached_prefix", "prefill_two_query_tiles",
           "prefill_gqa_mixed"]
CACHE = ["cache_two_heads", "cache_three_heads"]
GREEDY = ["triton_tiny-llama", "triton_tiny-mistral"]

# Your kernel vs the reference kernel, both accumulating in fp32: they differ by summation
# order and by the rounding of fp16/bf16 results.
TOLERANCES = {"float32": 1e-4, "float16": 3e-3, "bfloat16": 2e-2}


@functools.cache
def _fixture(fixtures_dir) -> tuple[dict[str, torch.Tensor], dict]:
    return load_tensors(fixtures_dir, f"lab2_kernels_{device_class()}.safetensors")


def _case(fixtures_dir, name: str, dtype: str, device) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, meta = _fixture(fixtures_dir)
    key = f"{name}/{dtype}"
    assert key in meta["cases"], f"the reference outputs have no case {key}"
    inputs = {k.removeprefix(key + "/"): v.to(device, copy=True) for k, v in tensors.items()
              if k.startswith(key + "/")}
    return inputs, meta["cases"][key]


def _launch(fn, *args, **kwargs):
    """Call a lab-2 op under the integrity guard; it must launch at least one kernel."""
    with triton_only() as launches:
        out = fn(*args, **kwargs)
    assert launches.count > 0, f"{fn.__name__} launched no Triton kernel"
    return out


def _assert_close(got: torch.Tensor, expected: torch.Tensor, dtype: str, what: str) -> None:
    assert got.shape == expected.shape, f"{what}: shape {tuple(got.shape)}, expected " \
                                        f"{tuple(expected.shape)}"
    assert got.dtype == expected.dtype, f"{what}: dtype {got.dtype}, expected {expected.dtype}"
    assert not got.isnan().any(), f"{what}: NaN in the output (a read outside the context, " \
                                    "or a query row that sees no key?)"
    tol = TOLERANCES[dtype]
    torch.testing.assert_close(got.double(), expected.double(), atol=tol, rtol=tol,
                               msg=lambda m: f"{what}: {' '.join(m.split())}")


@pytest.mark.points(2)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CACHE)
def test_reshape_and_cache(fixtures_dir, device, name, dtype):
    from minivllm.attention.ops.triton_paged import reshape_and_cache

    x, case = _case(fixtures_dir, name, dtype, device)
    h, hkv = case["num_heads"], case["num_kv_heads"]
    key, value = x["qkv"][:, h:h + hkv], x["qkv"][:, h + hkv:]  # strided views, as the model's
    # A guard block on each side of the caches: a write outside them (a -1 slot taken for a
    # real one, say) lands there and shows.
    guarded = {}
    for which in ("key_cache", "value_cache"):
        cache = x[which]
        buf = torch.full((cache.shape[0] + 2, *cache.shape[1:]), 7.0, dtype=cache.dtype,
                         device=device)
        buf[1:-1] = cache
        guarded[which] = buf
    _launch(reshape_and_cache, key, value, guarded["key_cache"][1:-1],
            guarded["value_cache"][1:-1], x["slot_mapping"])
    for which in ("key_cache", "value_cache"):
        buf = guarded[which]
        assert (buf[0] == 7.0).all() and (buf[-1] == 7.0).all(), \
            f"{name} {dtype}: wrote outside the {which} (padding slot -1 not skipped?)"
        got, expected = buf[1:-1], x[f"expected_{which}"]
        wrong = (got != expected).flatten(0, 1).flatten(1).any(1).nonzero().flatten().tolist()
        assert not wrong, f"{name} {dtype}: {which} differs from the reference at slots " \
                          f"{wrong[:8]}{' ...' if len(wrong) > 8 else ''}"


@pytest.mark.points(2)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", DECODE)
def test_paged_decode_attention(fixtures_dir, device, name, dtype):
    from minivllm.attention.ops.triton_paged import paged_decode_attention

    x, case = _case(fixtures_dir, name, dtype, device)
    out = _launch(paged_decode_attention, x["query"], x["key_cache"], x["value_cache"],
                  x["block_tables"], x["context_lens"], case["scale"],
                  num_splits=case["num_splits"])
    _assert_close(out, x["expected"], dtype, f"{name} {dtype}")


@pytest.mark.points(2)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", PREFILL)
def test_paged_prefill_attention(fixtures_dir, device, name, dtype):
    from minivllm.attention.ops.triton_paged import paged_prefill_attention

    x, case = _case(fixtures_dir, name, dtype, device)
    out = _launch(paged_prefill_attention, x["query"], x["key_cache"], x["value_cache"],
                  x["block_tables"], x["query_start_loc"], x["context_lens"], case["scale"],
                  case["max_query_len"])
    _assert_close(out, x["expected"], dtype, f"{name} {dtype}")


@pytest.mark.points(1)
def test_choose_num_splits_rules():
    """The split-K heuristic is yours to tune, within its docstring's rules."""
    from minivllm.attention.ops.triton_paged_decode import choose_num_splits

    def power_of_two(n: int) -> bool:
        return n >= 1 and n & (n - 1) == 0

    cases = [(1, 1, 32768, 132), (4, 8, 4096, 132), (256, 8, 4096, 132), (1, 1, 64, 132),
             (2, 2, 1024, 1)]
    for args in cases:
        assert power_of_two(choose_num_splits(*args)), f"choose_num_splits{args} is not a " \
                                                       "power of two"
    assert choose_num_splits(256, 8, 4096, 132) == 1, "2048 programs already fill 132 SMs"
    assert choose_num_splits(1, 1, 32768, 132) > 1, "one long sequence should be split"
    assert choose_num_splits(1, 1, 32, 132) == 1, "32 tokens are too few to split"


@pytest.mark.points(3)
@pytest.mark.parametrize("name", GREEDY)
def test_greedy_generation_with_triton_attention(fixtures_dir, device, name):
    """A whole model (provided allocator and scheduler) with your kernels: the same greedy
    tokens as the reference."""
    runs = {r["name"]: r for r in load_json(fixtures_dir,
                                            f"lab2_greedy_{device_class()}.json")["runs"]}
    run = runs[name]
    result = greedy_run(run["model"], run["prompts"], run["max_tokens"],
                        {**run["engine"], "device": str(device)})
    assert_same_greedy_tokens(name, run["token_ids"], result)
