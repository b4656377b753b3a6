"""Benchmark the lab-2 Triton kernels against PyTorch SDPA and the memory roofline.

Decode (memory-bound): Hq/Hkv/D = 16/8/128, bf16, block size 16, shuffled block tables, at
(batch, context) = (1, 32768), (16, 16384), (64, 4096), (256, 1024). In the same run:
  - `sdpa`: PyTorch SDPA on contiguous K/V (`enable_gqa=True`): what a non-paged engine does;
  - `torch_ref`: our PyTorch baseline (gather the blocks, then SDPA);
  - `flex`: FlexAttention's paged attention, when it compiles here (else a note);
  - the roofline: KV bytes / device-to-device copy bandwidth measured now.
Prefill (compute-bound): 8 sequences x 1024 new tokens, paged, vs SDPA causal on contiguous
tensors.

    python -m benchmarks.kernels.bench_decode           # GPU: table + results/kernels_<gpu>.json
    python -m benchmarks.kernels.bench_decode --smoke   # CPU interpreter, tiny shapes (CI)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `minivllm` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.common import (
    copy_bandwidth_gbs,
    cuda_graph_ms,
    device_slug,
    kernel_benchmark_device,
    print_table,
    time_ms,
    write_result,
)

NUM_HEADS, NUM_KV_HEADS, HEAD_DIM, BLOCK_SIZE = 16, 8, 128, 16
DECODE_SHAPES = [(1, 32768), (16, 16384), (64, 4096), (256, 1024)]
PREFILL_SHAPE = (8, 1024)
SMOKE = {"heads": (4, 2, 64), "decode": [(1, 64), (3, 40)], "prefill": (2, 32)}


def make_decode_inputs(batch: int, context: int, num_heads: int, num_kv_heads: int,
                       head_dim: int, dtype: torch.dtype, device: str) -> dict[str, Any]:
    """A paged cache holding `batch` sequences of `context` tokens in shuffled blocks, plus the
    same K/V laid out contiguously ([batch, kv_heads, context, head_dim]) for SDPA."""
    blocks_per_seq = -(-context // BLOCK_SIZE)
    num_blocks = batch * blocks_per_seq
    shape = (num_blocks, BLOCK_SIZE, num_kv_heads, head_dim)
    key_cache = torch.randn(shape, dtype=dtype, device=device)
    value_cache = torch.randn(shape, dtype=dtype, device=device)
    block_tables = torch.randperm(num_blocks, device=device).view(batch, blocks_per_seq)
    block_tables = block_tables.to(torch.int32)

    def contiguous(cache: torch.Tensor) -> torch.Tensor:
        gathered = cache[block_tables.long()].view(batch, -1, num_kv_heads, head_dim)
        return gathered[:, :context].transpose(1, 2).contiguous()

    return {
        "query": torch.randn(batch, num_heads, head_dim, dtype=dtype, device=device),
        "key_cache": key_cache, "value_cache": value_cache, "block_tables": block_tables,
        "context_lens": torch.full((batch,), context, dtype=torch.int32, device=device),
        "key": contiguous(key_cache), "value": contiguous(value_cache),
    }


def flex_paged_decode(inputs: dict[str, Any], scale: float):
    """FlexAttention over a paged cache (torch's `PagedAttention` helper), head-major layout
    [1, kv_heads, num_blocks * block_size, head_dim] as it expects. Returns a callable."""
    from torch.nn.attention.experimental._paged_attention import PagedAttention
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    key_cache, block_tables = inputs["key_cache"], inputs["block_tables"]
    num_blocks, block_size, num_kv_heads, head_dim = key_cache.shape
    batch, blocks_per_seq = block_tables.shape
    context = int(inputs["context_lens"][0])
    device = key_cache.device
    paged = PagedAttention(num_blocks, block_size, batch, device=device)
    paged.page_table[:, :blocks_per_seq] = block_tables.long()
    logical = torch.arange(blocks_per_seq, device=device).expand(batch, -1)
    paged.physical_to_logical.scatter_(1, block_tables.long(), logical)
    paged.capacity[:] = blocks_per_seq * block_size

    def head_major(cache: torch.Tensor) -> torch.Tensor:
        return cache.view(1, -1, num_kv_heads, head_dim).transpose(1, 2).contiguous()

    key, value = head_major(key_cache), head_major(inputs["value_cache"])
    logical_mask = create_block_mask(lambda b, h, q, kv: kv < context, batch, None, 1,
                                     blocks_per_seq * block_size,
                                     BLOCK_SIZE=(128, block_size), device=device)
    block_mask = paged.convert_logical_block_mask(logical_mask)
    compiled = torch.compile(flex_attention, dynamic=False)
    query = inputs["query"].unsqueeze(2)
    return lambda: compiled(query, key, value, block_mask=block_mask, scale=scale,
                            enable_gqa=True)


def bench_decode(shapes: list[tuple[int, int]], heads: tuple[int, int, int],
                 dtype: torch.dtype, device: str, bandwidth_gbs: float,
                 try_flex: bool) -> list[dict[str, Any]]:
    from minivllm.attention.ops import torch_ref, triton_paged

    num_heads, num_kv_heads, head_dim = heads
    scale = head_dim ** -0.5
    rows = []
    for batch, context in shapes:
        inputs = make_decode_inputs(batch, context, num_heads, num_kv_heads, head_dim, dtype,
                                    device)
        paged_args = (inputs["query"], inputs["key_cache"], inputs["value_cache"],
                      inputs["block_tables"], inputs["context_lens"], scale)
        query4 = inputs["query"].unsqueeze(2)

        def sdpa(query4=query4, inputs=inputs):
            return F.scaled_dot_product_attention(query4, inputs["key"], inputs["value"],
                                                  scale=scale, enable_gqa=True)

        expected = sdpa().squeeze(2).float()
        out = triton_paged.paged_decode_attention(*paged_args)
        kv_bytes = 2 * batch * context * num_kv_heads * head_dim * inputs["key"].element_size()
        row: dict[str, Any] = {
            "batch": batch, "context": context, "kv_MB": kv_bytes / 1e6,
            "max_abs_err": (out.float() - expected).abs().max().item(),
            "triton_ms": time_ms(lambda a=paged_args: triton_paged.paged_decode_attention(*a)),
            "triton_graph_ms": cuda_graph_ms(
                lambda a=paged_args: triton_paged.paged_decode_attention(*a)),
            "sdpa_ms": time_ms(sdpa),
            "torch_ref_ms": time_ms(lambda a=paged_args: torch_ref.paged_decode_attention(*a)),
            "roofline_ms": kv_bytes / bandwidth_gbs / 1e6,
        }
        if try_flex:
            try:
                flex = flex_paged_decode(inputs, scale)
                row["flex_err"] = (flex().squeeze(2).float() - expected).abs().max().item()
                row["flex_ms"] = time_ms(flex)
            except Exception as exc:  # optional peer: record why it did not run
                row["flex_note"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        for name in ("sdpa", "flex"):
            if f"{name}_ms" in row:
                row[f"{name}_GBs"] = kv_bytes / row[f"{name}_ms"] / 1e6
        # Ratios use the kernel's device time: CUDA-graph replay where there is a GPU (the
        # engine replays decode steps in graphs), the eager call otherwise.
        triton_ms = row["triton_graph_ms"] or row["triton_ms"]
        row["triton_GBs"] = kv_bytes / triton_ms / 1e6
        row["vs_sdpa"] = row["sdpa_ms"] / triton_ms
        row["vs_sdpa_eager"] = row["sdpa_ms"] / row["triton_ms"]
        row["vs_roofline"] = row["roofline_ms"] / triton_ms
        rows.append(row)
        del inputs, paged_args, query4
    return rows


def bench_prefill(shape: tuple[int, int], heads: tuple[int, int, int], dtype: torch.dtype,
                  device: str) -> dict[str, Any]:
    """All tokens new (context == query length), as in a first prefill."""
    from minivllm.attention.ops import triton_paged

    batch, seq_len = shape
    num_heads, num_kv_heads, head_dim = heads
    scale = head_dim ** -0.5
    inputs = make_decode_inputs(batch, seq_len, num_heads, num_kv_heads, head_dim, dtype,
                                device)
    query = torch.randn(batch * seq_len, num_heads, head_dim, dtype=dtype, device=device)
    query_start_loc = torch.arange(0, (batch + 1) * seq_len, seq_len, dtype=torch.int32,
                                   device=device)
    args = (query, inputs["key_cache"], inputs["value_cache"], inputs["block_tables"],
            query_start_loc, inputs["context_lens"], scale, seq_len)
    query4 = query.view(batch, seq_len, num_heads, head_dim).transpose(1, 2)

    def sdpa():
        return F.scaled_dot_product_attention(query4, inputs["key"], inputs["value"],
                                              is_causal=True, scale=scale, enable_gqa=True)

    out = triton_paged.paged_prefill_attention(*args).view(batch, seq_len, num_heads, head_dim)
    err = (out.transpose(1, 2).float() - sdpa().float()).abs().max().item()
    flops = 4 * batch * num_heads * head_dim * seq_len * (seq_len + 1) / 2  # causal QK^T + PV
    row: dict[str, Any] = {
        "batch": batch, "seq_len": seq_len, "max_abs_err": err,
        "triton_ms": time_ms(lambda: triton_paged.paged_prefill_attention(*args)),
        "sdpa_ms": time_ms(sdpa),
    }
    row["triton_TFLOPs"] = flops / row["triton_ms"] / 1e9
    row["sdpa_TFLOPs"] = flops / row["sdpa_ms"] / 1e9
    row["vs_sdpa"] = row["sdpa_ms"] / row["triton_ms"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny shapes; on a CPU the kernels run in Triton's interpreter")
    parser.add_argument("--no-flex", action="store_true", help="skip FlexAttention")
    args = parser.parse_args()

    device = kernel_benchmark_device(parser, args.smoke)
    cuda = device == "cuda"
    torch.manual_seed(0)
    if args.smoke:
        heads, dtype = SMOKE["heads"], torch.float32
        decode_shapes, prefill_shape = SMOKE["decode"], SMOKE["prefill"]
    else:
        heads, dtype = (NUM_HEADS, NUM_KV_HEADS, HEAD_DIM), torch.bfloat16
        decode_shapes, prefill_shape = DECODE_SHAPES, PREFILL_SHAPE

    bandwidth = copy_bandwidth_gbs(2**30 if cuda else 2**24)
    decode = bench_decode(decode_shapes, heads, dtype, device, bandwidth,
                          try_flex=cuda and not args.no_flex)
    prefill = bench_prefill(prefill_shape, heads, dtype, device)

    name = f"kernels_{device_slug()}" + ("_smoke" if args.smoke else "")
    record = {
        "benchmark": "kernels",
        "config": {"num_heads": heads[0], "num_kv_heads": heads[1], "head_dim": heads[2],
                   "block_size": BLOCK_SIZE, "dtype": str(dtype).removeprefix("torch."),
                   "smoke": args.smoke, "timer": "do_bench median" if cuda else "wall clock"},
        "copy_bandwidth_GBs": bandwidth,
        "decode": decode,
        "prefill": prefill,
    }
    path = write_result(name, record)

    print(f"\ndecode attention, {heads[0]}/{heads[1]}/{heads[2]} heads/kv heads/dim, "
          f"{record['config']['dtype']}, block size {BLOCK_SIZE}; "
          f"copy bandwidth {bandwidth:.0f} GB/s")
    print_table(decode, ["batch", "context", "triton_graph_ms", "triton_ms", "sdpa_ms",
                         "torch_ref_ms", "flex_ms", "roofline_ms", "triton_GBs", "sdpa_GBs",
                         "vs_sdpa", "vs_sdpa_eager", "vs_roofline", "max_abs_err"])
    print("  triton_GBs, vs_sdpa, vs_roofline: from triton_graph_ms (CUDA-graph replay, as the "
          "engine runs decode) where measured")
    notes = {f"{r['batch']}x{r['context']}": r["flex_note"] for r in decode if "flex_note" in r}
    for shape, note in notes.items():
        print(f"  flex {shape}: not run ({note})")
    print(f"\nprefill attention, {prefill_shape[0]} x {prefill_shape[1]} tokens, causal")
    print_table([prefill], ["batch", "seq_len", "triton_ms", "sdpa_ms", "triton_TFLOPs",
                            "sdpa_TFLOPs", "vs_sdpa", "max_abs_err"])
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
