"""Prefix caching: time to first token and throughput of requests that share a long prefix.

The workload of a chat service with a long system prompt: 64 requests arrive together, each a
2000-token random prefix (the same for all) plus a 32-token question of its own, and generate
128 tokens (ignore_eos), on `random:qwen3-0.6b` in bf16 with max_model_len 4096 (so a step's
token budget is 4096). With prefix caching off, every request computes all 2032 prompt tokens
and one prompt fits in a step's budget; with it on, the first request computes the prefix
(2000 tokens = 125 whole 16-token blocks) and the others share its blocks and compute 32 tokens
each, so dozens of prompts fit in one step.

One engine runs both settings (same weights, KV memory and CUDA graphs); each run starts with
a new, empty KV cache manager and scheduler (`reset_scheduler`), so the first request always
misses. One warm-up with other prompts first. Figures: TTFT (arrival to first token; all arrive
at once, so it includes queueing), output and total tokens/s, prompt tokens computed (from the
scheduler's trace) and the prefix-cache hit rate.

    python -m benchmarks.prefix_caching.bench_prefix_caching            # GPU run
    python -m benchmarks.prefix_caching.bench_prefix_caching --smoke    # tiny CPU run
    python -m benchmarks.prefix_caching.bench_prefix_caching --plot benchmarks/results/X.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import time
from pathlib import Path

from benchmarks.common import RESULTS_DIR, device_slug, print_table, write_result
from minivllm import LLM, SamplingParams
from minivllm.core.kv_cache_manager import make_kv_cache_manager
from minivllm.core.scheduler import make_scheduler


def reset_scheduler(llm: LLM, **config_changes) -> None:
    """Give the engine a new, empty KV cache manager and scheduler built from its config with
    `config_changes` (e.g. enable_prefix_caching, max_num_batched_tokens): a fair comparison
    of scheduling settings on one loaded model, KV cache memory and set of CUDA graphs."""
    engine = llm.llm_engine
    assert not engine.has_unfinished_requests()
    config = dataclasses.replace(engine.config, **config_changes)
    engine.kv_cache_manager = make_kv_cache_manager(
        config.kv_allocator, engine.kv_cache_manager.num_blocks, config.block_size,
        config.max_model_len, config.enable_prefix_caching)
    engine.scheduler = make_scheduler(config, engine.kv_cache_manager)


def shared_prefix_workload(num_requests: int, prefix_len: int, suffix_len: int,
                           vocab_size: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    prefix = [rng.randrange(vocab_size) for _ in range(prefix_len)]
    return [prefix + [rng.randrange(vocab_size) for _ in range(suffix_len)]
            for _ in range(num_requests)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(llm: LLM, prompts: list[list[int]], output_len: int, prefix_caching: bool) -> dict:
    reset_scheduler(llm, enable_prefix_caching=prefix_caching)
    engine = llm.llm_engine
    engine.scheduler.record_trace = True
    params = SamplingParams(temperature=0, max_tokens=output_len, ignore_eos=True)
    request_ids = [f"prefix-{time.monotonic_ns()}-{i}" for i in range(len(prompts))]
    arrival = time.monotonic()
    for request_id, prompt in zip(request_ids, prompts, strict=True):
        engine.add_request(request_id, prompt, params, arrival_time=arrival)
    finished = {}
    while engine.has_unfinished_requests():
        for out in engine.step():  # ends with the step's device-to-host copy: a sync point
            if out.finished:
                finished[out.request_id] = out
    elapsed = time.monotonic() - arrival
    outs = [finished[request_id] for request_id in request_ids]
    ttft = [o.metrics.first_token_time - arrival for o in outs]
    num_output = sum(len(o.outputs[0].token_ids) for o in outs)
    num_prompt = sum(len(p) for p in prompts)
    trace = engine.scheduler.trace
    return {
        "prefix_caching": prefix_caching, "elapsed_s": elapsed, "num_steps": len(trace),
        "ttft_s": ttft, "ttft_mean_s": statistics.mean(ttft),
        "ttft_median_s": statistics.median(ttft), "ttft_p90_s": percentile(ttft, 0.9),
        "ttft_max_s": max(ttft), "output_tok_s": num_output / elapsed,
        "total_tok_s": (num_prompt + num_output) / elapsed,
        "prompt_tokens": num_prompt,
        "prompt_tokens_computed": sum(n for step in trace for _, n in step.prefill),
        "prefix_cache_hit_rate": engine.kv_cache_manager.prefix_cache_hit_rate,
        "num_cached_tokens": [o.num_cached_tokens for o in outs],
    }


def plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = record["figures"]["runs"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    colors = ["tab:blue" if r["prefix_caching"] else "tab:gray" for r in runs]
    for r, color in zip(runs, colors, strict=True):
        label = f"prefix caching {'on' if r['prefix_caching'] else 'off'}"
        left.plot([t * 1e3 for t in r["ttft_s"]], marker=".", color=color, label=label)
    left.set(xlabel="request (arrival order; all arrive at t=0)",
             ylabel="time to first token (ms)", title="TTFT per request")
    left.legend()
    names = ["off" if not r["prefix_caching"] else "on" for r in runs]
    bars = right.bar(names, [r["output_tok_s"] for r in runs], color=colors)
    right.bar_label(bars, fmt="%.0f")
    right.set(xlabel="prefix caching", ylabel="output tokens/s", title="throughput")
    cfg = record["config"]
    fig.suptitle(f"{cfg['num_requests']} requests sharing a {cfg['prefix_len']}-token prefix, "
                 f"{cfg['model']} on {record['device_name']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Prefix caching benchmark")
    parser.add_argument("--model", default="random:qwen3-0.6b")
    parser.add_argument("--num-requests", type=int, default=64)
    parser.add_argument("--prefix-len", type=int, default=2000)
    parser.add_argument("--suffix-len", type=int, default=32)
    parser.add_argument("--output-len", type=int, default=128)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--max-num-batched-tokens", type=int,
                        help="token budget of a step (default: the engine's, max_model_len)")
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run")
    parser.add_argument("--plot", type=Path, help="only redraw the plot of this JSON record")
    args = parser.parse_args()
    if args.plot:
        plot(json.loads(args.plot.read_text()), args.plot.with_suffix(".png"))
        return
    llm_kwargs: dict = {}
    if args.smoke:
        args.model, args.num_requests, args.prefix_len, args.output_len = (
            "random:tiny-qwen3", 8, 300, 8)
        args.max_model_len = args.max_num_batched_tokens = 512
        llm_kwargs = {"device": "cpu", "dtype": "float32"}

    llm = LLM(args.model, max_model_len=args.max_model_len,
              max_num_batched_tokens=args.max_num_batched_tokens, **llm_kwargs)
    vocab_size = llm.llm_engine.model_config.vocab_size
    warm = shared_prefix_workload(4, args.prefix_len // 2, args.suffix_len, vocab_size, seed=1)
    for on in (False, True):
        run(llm, warm, 8, on)
    prompts = shared_prefix_workload(args.num_requests, args.prefix_len, args.suffix_len,
                                     vocab_size, seed=0)
    runs = [run(llm, prompts, args.output_len, on) for on in (False, True)]
    off, on = runs
    config = {k: v for k, v in vars(args).items() if k != "plot"}
    record = {"benchmark": "prefix_caching", "config": config,
              "figures": {"runs": runs,
                          "ttft_mean_speedup": off["ttft_mean_s"] / on["ttft_mean_s"],
                          "throughput_speedup": on["output_tok_s"] / off["output_tok_s"]}}
    name = f"prefix_caching_{'smoke' if args.smoke else device_slug()}"
    path = write_result(name, record)
    print_table([{k: v for k, v in r.items() if not isinstance(v, list)} for r in runs],
                ["prefix_caching", "ttft_mean_s", "ttft_p90_s", "ttft_max_s", "output_tok_s",
                 "prompt_tokens_computed", "prefix_cache_hit_rate", "elapsed_s"])
    print(f"TTFT {record['figures']['ttft_mean_speedup']:.1f}x lower, throughput "
          f"{record['figures']['throughput_speedup']:.2f}x; wrote {path}")
    try:
        plot(json.loads(path.read_text()), RESULTS_DIR / f"{name}.png")
    except ImportError:
        print(f"matplotlib is missing: plot later with --plot {path}")


if __name__ == "__main__":
    main()
