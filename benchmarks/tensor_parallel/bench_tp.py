"""Tensor parallelism: offline throughput at tensor_parallel_size 1 and 2, and the time the
all-reduces take.

The workload of `benchmarks/throughput` (random-token prompts, input and output lengths uniform
in [100, 1024], seed 0, ignore_eos, max_model_len 4096, `random:qwen3-0.6b` in bf16), run in one
process at each tensor-parallel size: one warm-up, one timed run. Scaling is tok/s at N over
tok/s at 1. Splitting a model this small over two GPUs halves each GPU's weight and KV reads but
adds 2 all-reduces per layer per step; with the KV cache split too, each GPU has room for about
twice as many blocks (`num_kv_blocks`), which can raise the batch.

All-reduce time: the driver (rank 0) times each all-reduce of a second, eager pass over the
first `--profile-num-prompts` requests (`record_all_reduce_time` synchronises the GPU around
each one, and a CUDA graph replay runs no Python to time, hence eager). Rank 0's wait includes
any time it waits for the other rank to reach the all-reduce.

    python -m benchmarks.tensor_parallel.bench_tp            # a machine with 2 GPUs
    python -m benchmarks.tensor_parallel.bench_tp --smoke    # tiny CPU run over gloo (CI)
"""

from __future__ import annotations

import argparse
import gc

import torch

from benchmarks.common import device_slug, print_table, write_result
from benchmarks.throughput.bench_throughput import run_minivllm
from benchmarks.workload import Request, random_workload
from minivllm import LLM
from minivllm.distributed import record_all_reduce_time


def make_llm(args: argparse.Namespace, tp: int, enforce_eager: bool) -> LLM:
    kwargs = {"max_model_len": args.max_model_len, "enforce_eager": enforce_eager,
              "tensor_parallel_size": tp}
    if args.smoke:
        kwargs["device"] = "cpu"
    return LLM(args.model, **kwargs)


def close(llm: LLM) -> None:
    """Stop the workers and free this rank's memory before the next engine starts."""
    llm.llm_engine.shutdown()
    del llm
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def profile_all_reduce(llm: LLM, requests: list[Request]) -> dict:
    with record_all_reduce_time() as stats:
        run = run_minivllm(llm, requests)
    return {"num_prompts": len(requests), "elapsed_s": run["elapsed_s"],
            "all_reduce_s": stats.seconds, "all_reduce_calls": stats.num_calls,
            "all_reduce_gb": stats.num_bytes / 1e9,
            "all_reduce_share": stats.seconds / run["elapsed_s"],
            "all_reduce_gb_s": stats.num_bytes / 1e9 / max(stats.seconds, 1e-12)}


def run_tp(args: argparse.Namespace, tp: int, requests: list[Request],
           warm: list[Request]) -> dict:
    llm = make_llm(args, tp, args.enforce_eager)
    run_minivllm(llm, warm)
    figures = run_minivllm(llm, requests)
    figures["num_kv_blocks"] = llm.llm_engine.model_executor.num_blocks
    if tp > 1:
        eager = args.enforce_eager or not llm.llm_engine.config.device.startswith("cuda")
        if not eager:
            close(llm)
            llm = make_llm(args, tp, enforce_eager=True)
            run_minivllm(llm, warm)
        figures["profile"] = profile_all_reduce(llm, requests[: args.profile_num_prompts])
    close(llm)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description="Tensor-parallel throughput benchmark")
    parser.add_argument("--model", default="random:qwen3-0.6b")
    parser.add_argument("--num-prompts", type=int, default=256)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--tp-sizes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--profile-num-prompts", type=int, default=32,
                        help="requests in the eager pass that times the all-reduces")
    parser.add_argument("--enforce-eager", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run over gloo")
    args = parser.parse_args()

    if args.smoke:
        args.model, args.num_prompts, args.max_model_len, args.profile_num_prompts = (
            "random:tiny-qwen3", 8, 256, 4)
        in_range, out_range = (10, 60), (10, 60)
    else:
        in_range, out_range = (100, 1024), (100, 1024)
        if max(args.tp_sizes) > torch.cuda.device_count():
            parser.error(f"--tp-sizes {args.tp_sizes} needs {max(args.tp_sizes)} GPUs; "
                         f"{torch.cuda.device_count()} found (use --smoke on a CPU)")

    from minivllm.model_executor.model_loader import get_model_config
    vocab_size = get_model_config(args.model).vocab_size
    requests = random_workload(args.num_prompts, vocab_size, in_range, out_range, seed=0)
    warm = random_workload(4, vocab_size, (16, 64), (16, 64), seed=1)

    figures = {f"tp{tp}": run_tp(args, tp, requests, warm) for tp in args.tp_sizes}
    base = figures.get("tp1", {}).get("output_tok_s")
    rows = []
    for tp in args.tp_sizes:
        f = figures[f"tp{tp}"]
        if base:
            f["scaling"] = f["output_tok_s"] / base
        profile = f.get("profile", {})
        rows.append({"tp": tp, "output_tok_s": f["output_tok_s"], "scaling": f.get("scaling"),
                     "elapsed_s": f["elapsed_s"], "num_kv_blocks": f["num_kv_blocks"],
                     "all_reduce_share": profile.get("all_reduce_share"),
                     "all_reduce_calls": profile.get("all_reduce_calls"),
                     "all_reduce_gb_s": profile.get("all_reduce_gb_s")})
    record = {"benchmark": "tensor_parallel",
              "config": {**vars(args), "input_range": in_range, "output_range": out_range},
              "figures": figures}
    path = write_result(f"tensor_parallel_{'smoke' if args.smoke else device_slug()}", record)
    print_table(rows, list(rows[0]))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
