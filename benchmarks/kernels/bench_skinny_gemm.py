"""Decode-sized matmuls: the split-K Triton kernel against cuBLAS and the copy roofline.

For Qwen3-0.6B's four projections at 1 to 64 rows (the kernel's limit), and gate_up_proj with
the activation (`skinny_gemm(..., silu_and_mul=True)` against cuBLAS followed by the compiled
`silu_and_mul`), time `F.linear` (cuBLAS) and `skinny_gemm` as a decode step runs them:
inside a CUDA graph (where the kernel is launched with PDL on Hopper, so each call's weight
load overlaps the previous call), each call on its own copy of the weight, with enough copies
to overflow the L2 cache (and `do_bench` flushing it between replays), so every call streams
its weight from memory. Report microseconds per call, the weight's bytes over that time, the
fraction of the measured copy bandwidth, and which of the two `linear()` runs for the shape
in a decode graph.

    python -m benchmarks.kernels.bench_skinny_gemm           # GPU
    python -m benchmarks.kernels.bench_skinny_gemm --smoke   # CPU interpreter, tiny shapes (CI)
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from benchmarks.common import (
    copy_bandwidth_gbs,
    device_slug,
    graph_or_wall_ms,
    kernel_benchmark_device,
    print_table,
    write_result,
)

# (rows of W, input columns K, with silu_and_mul) of Qwen3-0.6B's projections.
SHAPES = {"qkv_proj": (4096, 1024, False), "o_proj": (1024, 2048, False),
          "gate_up_proj": (6144, 1024, False), "gate_up_proj+silu_and_mul": (6144, 1024, True),
          "down_proj": (1024, 3072, False)}
ROWS = [1, 4, 16, 32, 64]
SMOKE = {"shapes": {"narrow": (64, 512, False), "wide": (256, 256, False),
                    "gated": (128, 256, True)}, "rows": [1, 4]}


def us_per_call(calls: list[Callable[[], object]]) -> float:
    """Microseconds per call: all calls captured in one CUDA graph and its replays timed; on a
    CPU (smoke runs) the wall clock of a pass (`graph_or_wall_ms`)."""
    def all_calls() -> None:
        for call in calls:
            call()

    return graph_or_wall_ms(all_calls) * 1e3 / len(calls)


def bench_shape(name: str, n: int, k: int, silu: bool, rows: int, dtype: torch.dtype,
                device: str, bandwidth_gbs: float) -> dict:
    # Imported here: TRITON_INTERPRET must be set (main) before the kernel is defined.
    from minivllm.attention.ops.triton_utils import get_num_sms
    from minivllm.model_executor.layers.activation import silu_and_mul
    from minivllm.model_executor.layers.compile import fused_kernels
    from minivllm.model_executor.layers.triton_skinny_gemm import (
        choose_tiling,
        runs_skinny,
        skinny_gemm,
    )

    weight_bytes = n * k * dtype.itemsize
    l2_bytes = torch.cuda.get_device_properties(0).L2_cache_size if device == "cuda" else 0
    copies = max(2, math.ceil(3 * l2_bytes / weight_bytes))
    weights = [torch.randn(n, k, device=device).div_(k**0.5).to(dtype) for _ in range(copies)]
    x = torch.randn(rows, k, device=device).to(dtype)

    def activation(y: torch.Tensor) -> torch.Tensor:
        return silu_and_mul(y) if silu else y

    with fused_kernels():  # as in graph capture: the compiled activation, and what `linear` runs
        cublas_us = us_per_call([lambda w=w: activation(F.linear(x, w)) for w in weights])
        skinny_us = us_per_call([lambda w=w: skinny_gemm(x, w, silu_and_mul=silu)
                                 for w in weights])
        picks_skinny = runs_skinny(x, weights[0])
    err = (skinny_gemm(x, weights[0], silu_and_mul=silu).double()
           - activation(F.linear(x.double(), weights[0].double())))
    return {
        "proj": name, "rows": rows, "n": n, "k": k,
        **choose_tiling(n // (2 if silu else 1), k, rows, get_num_sms(x.device), silu)._asdict(),
        "cublas_us": cublas_us, "skinny_us": skinny_us,
        "cublas_GBs": weight_bytes / cublas_us / 1e3, "skinny_GBs": weight_bytes / skinny_us / 1e3,
        "skinny_vs_cublas": cublas_us / skinny_us,
        "skinny_vs_roofline": weight_bytes / skinny_us / 1e3 / bandwidth_gbs,
        "linear_runs": "skinny" if picks_skinny else "cublas",
        "max_abs_err": err.abs().max().item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny shapes; on a CPU the kernel runs in Triton's interpreter")
    args = parser.parse_args()
    device = kernel_benchmark_device(parser, args.smoke)
    cuda = device == "cuda"
    torch.manual_seed(0)
    shapes, rows_list = (SMOKE["shapes"], SMOKE["rows"]) if args.smoke else (SHAPES, ROWS)
    dtype = torch.bfloat16 if cuda else torch.float32
    bandwidth = copy_bandwidth_gbs(2**30 if cuda else 2**24)
    rows = [bench_shape(name, n, k, silu, r, dtype, device, bandwidth)
            for name, (n, k, silu) in shapes.items() for r in rows_list]
    record = {"benchmark": "skinny_gemm",
              "config": {"shapes": shapes, "rows": rows_list, "dtype": str(dtype),
                         "smoke": args.smoke,
                         "timer": "do_bench median of a CUDA graph of one call per weight "
                         "copy" if cuda else "wall clock"},
              "copy_bandwidth_GBs": bandwidth, "rows": rows}
    path = write_result(f"skinny_gemm_{device_slug()}" + ("_smoke" if args.smoke else ""),
                        record)
    print(f"copy bandwidth {bandwidth:.0f} GB/s")
    print_table(rows, ["proj", "rows", "block_n", "split_k", "cublas_us", "skinny_us", "cublas_GBs",
                       "skinny_GBs", "skinny_vs_cublas", "skinny_vs_roofline", "linear_runs",
                       "max_abs_err"])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
