"""Lab 2's reference outputs: the Triton kernels' results on seeded inputs, per dtype, on this
device class (compiled on CUDA, under TRITON_INTERPRET=1 on a CPU), plus greedy token ids of
an engine whose attention is the Triton backend.

Inputs are stored beside the outputs, so the checks do not depend on a random generator. KV
cache slots no sequence owns hold NaN: a kernel that reads outside a sequence's context turns
its output into NaN. Every output is also checked against the PyTorch oracle
(`ops/torch_ref.py`) before it is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from minivllm.labs.e2e import device_class
from minivllm.labs.record import Recorded
from minivllm.labs.record.greedy import record_greedy

DTYPES = ["float32", "float16", "bfloat16"]
ORACLE_TOLERANCE = {"float32": 1e-4, "float16": 3e-3, "bfloat16": 2e-2}

# name: (num_heads, num_kv_heads, head_dim, block_size, context_lens, num_splits)
DECODE_CASES = {
    "decode_mha": (2, 2, 32, 8, [1, 8, 23, 0], None),
    "decode_gqa": (8, 2, 32, 16, [37, 70, 5], 1),
    "decode_gqa3_split2": (6, 2, 32, 8, [90, 17], 2),
    "decode_split4_empty_ranges": (4, 1, 32, 8, [130, 3, 64, 0], 4),
    "decode_auto_split_long": (2, 1, 32, 16, [520], None),
    "decode_head_dim_64": (4, 2, 64, 16, [45, 16], 1),
}
# name: (num_heads, num_kv_heads, head_dim, block_size, query_lens, context_lens)
PREFILL_CASES = {
    "prefill_single": (4, 2, 32, 8, [20], [20]),
    "prefill_cached_prefix": (4, 2, 32, 8, [8, 25], [40, 25]),
    "prefill_two_query_tiles": (2, 1, 32, 16, [150], [170]),
    "prefill_gqa_mixed": (8, 2, 32, 16, [1, 33, 7], [20, 33, 45]),
}
# name: (num_heads of the fused projection, num_kv_heads, head_dim, block_size, num_blocks,
#        num_tokens)
CACHE_CASES = {
    "cache_two_heads": (4, 2, 32, 8, 6, 12),
    "cache_three_heads": (3, 3, 16, 16, 4, 20),
}

GREEDY_RUNS = [
    {"name": f"triton_{model}", "model": f"random:{model}", "vocab_size": 512,
     "prompt_lengths": [3, 17, 40, 9], "seed": 2, "max_tokens": 12,
     "engine": {"attention": "triton", "kv_allocator": "reserved", "scheduler": "static",
                "block_size": 16, "max_model_len": 96, "num_gpu_blocks_override": 36}}
    for model in ("tiny-llama", "tiny-mistral")
]


def _paged_kv(context_lens: list[int], num_kv_heads: int, head_dim: int, block_size: int,
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Float32 key and value caches with NaN in every slot no sequence owns, and block tables
    of shuffled physical blocks (rows padded with block 0, as the model runner pads them)."""
    blocks_per_seq = [-(-n // block_size) for n in context_lens]
    num_blocks = sum(blocks_per_seq) + 2  # two blocks nobody owns
    shape = (num_blocks, block_size, num_kv_heads, head_dim)
    key, value = torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)
    owned = torch.zeros(num_blocks * block_size, dtype=torch.bool)
    physical = torch.randperm(num_blocks, generator=generator)
    block_tables = torch.zeros(len(context_lens), max([*blocks_per_seq, 1]), dtype=torch.int32)
    used = 0
    for i, (n, nb) in enumerate(zip(context_lens, blocks_per_seq, strict=True)):
        block_tables[i, :nb] = physical[used:used + nb]
        used += nb
        slots = (block_tables[i, :nb, None].long() * block_size + torch.arange(block_size))
        owned[slots.flatten()[:n]] = True
    owned = owned.view(num_blocks, block_size, 1, 1)
    return key.masked_fill(~owned, float("nan")), value.masked_fill(~owned, float("nan")), \
        block_tables


def _decode_case(spec: tuple, dtype: torch.dtype, g: torch.Generator) -> dict[str, torch.Tensor]:
    num_heads, num_kv_heads, head_dim, block_size, context_lens, _ = spec
    key_cache, value_cache, block_tables = _paged_kv(context_lens, num_kv_heads, head_dim,
                                                     block_size, g)
    query = torch.randn(len(context_lens), num_heads, head_dim, generator=g)
    return {"query": query.to(dtype), "key_cache": key_cache.to(dtype),
            "value_cache": value_cache.to(dtype), "block_tables": block_tables,
            "context_lens": torch.tensor(context_lens, dtype=torch.int32)}


def _prefill_case(spec: tuple, dtype: torch.dtype, g: torch.Generator) -> dict[str, torch.Tensor]:
    num_heads, num_kv_heads, head_dim, block_size, query_lens, context_lens = spec
    key_cache, value_cache, block_tables = _paged_kv(context_lens, num_kv_heads, head_dim,
                                                     block_size, g)
    query = torch.randn(sum(query_lens), num_heads, head_dim, generator=g)
    starts = torch.tensor([0, *query_lens], dtype=torch.int32).cumsum(0).to(torch.int32)
    return {"query": query.to(dtype), "key_cache": key_cache.to(dtype),
            "value_cache": value_cache.to(dtype), "block_tables": block_tables,
            "query_start_loc": starts, "context_lens": torch.tensor(context_lens,
                                                                    dtype=torch.int32)}


def _cache_case(spec: tuple, dtype: torch.dtype, g: torch.Generator) -> dict[str, torch.Tensor]:
    """A fused q|k|v projection output (the kernel gets strided views of it), caches full of
    old values, and a slot mapping with padding entries (-1)."""
    num_heads, num_kv_heads, head_dim, block_size, num_blocks, num_tokens = spec
    qkv = torch.randn(num_tokens, num_heads + 2 * num_kv_heads, head_dim, generator=g)
    slots = torch.randperm(num_blocks * block_size, generator=g)[:num_tokens]
    slots[torch.randperm(num_tokens, generator=g)[:3]] = -1
    shape = (num_blocks, block_size, num_kv_heads, head_dim)
    return {"qkv": qkv.to(dtype), "slot_mapping": slots.to(torch.int64),
            "key_cache": torch.randn(shape, generator=g).to(dtype),
            "value_cache": torch.randn(shape, generator=g).to(dtype)}


def _check_against_oracle(name: str, dtype: str, out: torch.Tensor, oracle: torch.Tensor) -> None:
    tol = ORACLE_TOLERANCE[dtype]
    torch.testing.assert_close(out.double(), oracle.double(), atol=tol, rtol=tol,
                               msg=lambda m: f"reference kernel vs oracle, {name} {dtype}: {m}")


def record_kernels(out_dir: Path) -> Recorded:
    from safetensors.torch import save_file

    from minivllm.attention.ops import torch_ref
    from minivllm.attention.ops import triton_paged as triton_ops

    device = device_class()
    tensors: dict[str, torch.Tensor] = {}
    cases: dict[str, dict[str, Any]] = {}
    g = torch.Generator().manual_seed(2)
    for dtype_name in DTYPES:
        dtype = getattr(torch, dtype_name)
        for name, spec in DECODE_CASES.items():
            inputs = _decode_case(spec, dtype, g)
            args = [inputs[k].to(device) for k in ("query", "key_cache", "value_cache",
                                                   "block_tables", "context_lens")]
            scale = spec[2] ** -0.5
            out = triton_ops.paged_decode_attention(*args, scale, num_splits=spec[5])
            oracle_args = [a.nan_to_num() if a.is_floating_point() else a for a in args]
            _check_against_oracle(name, dtype_name, out,
                                  torch_ref.paged_decode_attention(*oracle_args, scale))
            key = f"{name}/{dtype_name}"
            cases[key] = {"op": "paged_decode_attention", "dtype": dtype_name, "scale": scale,
                          "num_splits": spec[5]}
            tensors.update({f"{key}/{k}": v for k, v in inputs.items()})
            tensors[f"{key}/expected"] = out.cpu()
        for name, spec in PREFILL_CASES.items():
            inputs = _prefill_case(spec, dtype, g)
            args = [inputs[k].to(device) for k in ("query", "key_cache", "value_cache",
                                                   "block_tables", "query_start_loc",
                                                   "context_lens")]
            scale, max_query_len = spec[2] ** -0.5, max(spec[4])
            out = triton_ops.paged_prefill_attention(*args, scale, max_query_len)
            oracle_args = [a.nan_to_num() if a.is_floating_point() else a for a in args]
            _check_against_oracle(name, dtype_name, out, torch_ref.paged_prefill_attention(
                *oracle_args, scale, max_query_len))
            key = f"{name}/{dtype_name}"
            cases[key] = {"op": "paged_prefill_attention", "dtype": dtype_name, "scale": scale,
                          "max_query_len": max_query_len}
            tensors.update({f"{key}/{k}": v for k, v in inputs.items()})
            tensors[f"{key}/expected"] = out.cpu()
        for name, spec in CACHE_CASES.items():
            inputs = _cache_case(spec, dtype, g)
            num_heads, num_kv_heads = spec[0], spec[1]
            qkv = inputs["qkv"].to(device)
            key_view = qkv[:, num_heads:num_heads + num_kv_heads]
            value_view = qkv[:, num_heads + num_kv_heads:]
            # Copies: the kernel writes in place, and the inputs are stored as they were.
            key_cache = inputs["key_cache"].to(device, copy=True)
            value_cache = inputs["value_cache"].to(device, copy=True)
            oracle_key, oracle_value = key_cache.clone(), value_cache.clone()
            slots = inputs["slot_mapping"].to(device)
            triton_ops.reshape_and_cache(key_view, value_view, key_cache, value_cache, slots)
            torch_ref.reshape_and_cache(key_view, value_view, oracle_key, oracle_value, slots)
            assert torch.equal(key_cache, oracle_key) and torch.equal(value_cache,
                                                                      oracle_value), name
            key = f"{name}/{dtype_name}"
            cases[key] = {"op": "reshape_and_cache", "dtype": dtype_name,
                          "num_heads": num_heads, "num_kv_heads": num_kv_heads}
            tensors.update({f"{key}/{k}": v for k, v in inputs.items()})
            tensors[f"{key}/expected_key_cache"] = key_cache.cpu()
            tensors[f"{key}/expected_value_cache"] = value_cache.cpu()
    name = f"lab2_kernels_{device}.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, out_dir / name,
              metadata={"json": json.dumps({"device": device, "cases": cases})})
    return Recorded(name, device=device, dtypes=DTYPES)


def record(out_dir: Path) -> list[Recorded]:
    if device_class() == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("without CUDA, record lab 2 with TRITON_INTERPRET=1 set, so the "
                           "reference kernels run in Triton's interpreter")
    return [record_kernels(out_dir), record_greedy(out_dir, "lab2", GREEDY_RUNS)]
