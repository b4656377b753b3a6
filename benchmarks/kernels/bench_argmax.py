"""The sampler's argmax: the Triton kernel against `torch.argmax` and the copy roofline.

Over Qwen3's vocabulary (151,936 logits per row) at the batch sizes of decode steps, in bf16
(greedy rows read the LM head's output as it is) and in fp32 (the exponential race of random
sampling), time `torch.argmax` and `triton_argmax` each captured in a CUDA graph, as a decode
step runs them outside its model graph, and check that both pick the same tokens. Report
microseconds per call, the logits' bytes over that time, and the fraction of the measured copy
bandwidth.

    python -m benchmarks.kernels.bench_argmax           # GPU
    python -m benchmarks.kernels.bench_argmax --smoke   # CPU interpreter, short rows (CI)
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import (
    copy_bandwidth_gbs,
    device_slug,
    graph_or_wall_ms,
    kernel_benchmark_device,
    print_table,
    write_result,
)

VOCAB = 151936
CASES = [(1, "bfloat16"), (64, "bfloat16"), (256, "bfloat16"), (64, "float32")]
SMOKE = {"vocab": 9000, "cases": [(1, "float32"), (4, "float32")]}


def bench_case(rows: int, dtype_name: str, vocab: int, device: str,
               bandwidth_gbs: float) -> dict:
    # Imported here: TRITON_INTERPRET must be set (main) before the kernel is defined.
    from minivllm.model_executor.triton_argmax import triton_argmax

    x = torch.randn(rows, vocab, device=device).to(getattr(torch, dtype_name))
    torch_us = graph_or_wall_ms(lambda: x.argmax(dim=-1)) * 1e3
    triton_us = graph_or_wall_ms(lambda: triton_argmax(x)) * 1e3
    num_bytes = x.numel() * x.element_size()
    return {"rows": rows, "vocab": vocab, "dtype": dtype_name,
            "torch_us": torch_us, "triton_us": triton_us,
            "triton_vs_torch": torch_us / triton_us,
            "triton_vs_roofline": num_bytes / triton_us / 1e3 / bandwidth_gbs,
            "same_tokens": bool(torch.equal(triton_argmax(x), x.argmax(dim=-1)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true",
                        help="short rows; on a CPU the kernel runs in Triton's interpreter")
    args = parser.parse_args()
    device = kernel_benchmark_device(parser, args.smoke)
    torch.manual_seed(0)
    vocab, cases = (SMOKE["vocab"], SMOKE["cases"]) if args.smoke else (VOCAB, CASES)
    bandwidth = copy_bandwidth_gbs(2**30 if device == "cuda" else 2**24)
    rows = [bench_case(r, dtype, vocab, device, bandwidth) for r, dtype in cases]
    record = {"benchmark": "argmax",
              "config": {"vocab": vocab, "cases": cases, "smoke": args.smoke,
                         "timer": "do_bench median of a CUDA graph of one call"
                         if device == "cuda" else "wall clock"},
              "copy_bandwidth_GBs": bandwidth, "rows": rows}
    path = write_result(f"argmax_{device_slug()}" + ("_smoke" if args.smoke else ""), record)
    print(f"copy bandwidth {bandwidth:.0f} GB/s")
    print_table(rows, ["rows", "dtype", "torch_us", "triton_us", "triton_vs_torch",
                       "triton_vs_roofline", "same_tokens"])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
