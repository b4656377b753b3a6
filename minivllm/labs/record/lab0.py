"""Lab 0's reference outputs: KV cache bytes per token and per block for real model shapes."""

from __future__ import annotations

from pathlib import Path

import torch

from minivllm.labs.record import Recorded, write_json

FILE = "lab0_kv_cache_sizes.json"

# (model, layers, KV heads, head_dim) from each model's config.json.
MODEL_SHAPES = [
    ("SmolLM2-135M", 30, 3, 64),
    ("SmolLM2-360M", 32, 5, 64),
    ("Qwen3-0.6B", 28, 8, 128),
    ("Llama-3.2-1B", 16, 8, 64),
    ("Qwen2.5-7B", 28, 4, 128),
    ("Llama-3.1-8B", 32, 8, 128),
    ("Mistral-7B-v0.1", 32, 8, 128),
    ("Llama-2-7B", 32, 32, 128),  # no GQA: every query head has its own KV head
]
DTYPES = ["float32", "bfloat16", "float16", "float8_e4m3fn"]
BLOCK_SIZES = [16, 1, 32]


def record(out_dir: Path) -> list[Recorded]:
    from minivllm.worker.cache_engine import KVCacheSpec

    cases = []
    for i, (model, layers, kv_heads, head_dim) in enumerate(MODEL_SHAPES):
        for j, dtype in enumerate(DTYPES):
            block_size = BLOCK_SIZES[(i + j) % len(BLOCK_SIZES)]
            spec = KVCacheSpec(layers, kv_heads, head_dim, block_size, getattr(torch, dtype))
            cases.append({"model": model, "num_layers": layers, "num_kv_heads": kv_heads,
                          "head_dim": head_dim, "block_size": block_size, "dtype": dtype,
                          "bytes_per_token": spec.bytes_per_token,
                          "bytes_per_block": spec.bytes_per_block})
    write_json(out_dir / FILE, {"cases": cases})
    return [Recorded(FILE, device="any", dtypes=DTYPES)]
