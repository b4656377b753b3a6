"""Lab 0 (tour): the KV cache size arithmetic, `KVCacheSpec.bytes_per_token`.

Compared with the reference's answers for real model shapes (`lab0_kv_cache_sizes.json`).
"""

from __future__ import annotations

import pytest
import torch

from minivllm.labs.fixtures import load_json

FILE = "lab0_kv_cache_sizes.json"


def _spec(case: dict):
    from minivllm.worker.cache_engine import KVCacheSpec

    return KVCacheSpec(case["num_layers"], case["num_kv_heads"], case["head_dim"],
                       case["block_size"], getattr(torch, case["dtype"]))


def _cases(fixtures_dir, dtype: str | None = None) -> list[dict]:
    cases = load_json(fixtures_dir, FILE)["cases"]
    return [c for c in cases if dtype is None or c["dtype"] == dtype]


def _describe(case: dict) -> str:
    return (f"{case['model']} ({case['num_layers']} layers, {case['num_kv_heads']} KV heads, "
            f"head_dim {case['head_dim']}, {case['dtype']})")


@pytest.mark.points(2)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "float8_e4m3fn"])
def test_bytes_per_token(fixtures_dir, dtype):
    cases = _cases(fixtures_dir, dtype)
    assert cases, f"no reference case for {dtype}"
    for case in cases:
        got = _spec(case).bytes_per_token
        assert got == case["bytes_per_token"], (
            f"{_describe(case)}: expected {case['bytes_per_token']:,} bytes per token, "
            f"got {got:,}")


@pytest.mark.points(1)
def test_bytes_per_token_is_an_int(fixtures_dir):
    """Block counts are computed with `//`; a float here would make them floats too."""
    case = _cases(fixtures_dir)[0]
    got = _spec(case).bytes_per_token
    assert type(got) is int, f"bytes_per_token is a {type(got).__name__}, not an int"


@pytest.mark.points(1)
def test_bytes_per_block(fixtures_dir):
    for case in _cases(fixtures_dir):
        got = _spec(case).bytes_per_block
        assert got == case["bytes_per_block"], (
            f"{_describe(case)}, block_size {case['block_size']}: expected "
            f"{case['bytes_per_block']:,} bytes per block, got {got:,}")
