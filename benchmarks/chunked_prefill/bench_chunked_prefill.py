"""Chunked prefill: what a long prompt's arrival does to the inter-token latency of running
streams.

16 streams (128-token prompts) are decoding steadily when a 16,384-token prompt arrives, on
`random:qwen3-0.6b` in bf16 with max_model_len 17408. Without chunked prefill the whole prompt
runs in one step (the token budget must hold max_model_len tokens), and every stream waits for
it: one inter-token gap as long as the whole prefill. With chunked prefill the prompt runs in
chunks of what is left of the `max_num_batched_tokens` budget beside the 16 decode tokens, so
the streams keep a token per step, each step a chunk long; the long prompt's own time to first
token grows a little (its chunks re-read the cached part of the prompt).

One engine runs every setting (same weights, KV memory and CUDA graphs), each with a new
scheduler (`reset_scheduler`); one warm-up per setting first. For each: the streams' median
gap before the arrival, the largest and mean gap from the arrival until the long prompt's first
token, the streams' tokens/s in that window, and the long prompt's TTFT.

    python -m benchmarks.chunked_prefill.bench_chunked_prefill            # GPU run
    python -m benchmarks.chunked_prefill.bench_chunked_prefill --smoke    # tiny CPU run
    python -m benchmarks.chunked_prefill.bench_chunked_prefill --plot benchmarks/results/X.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from itertools import pairwise
from pathlib import Path

from benchmarks.common import RESULTS_DIR, device_slug, print_table, write_result
from benchmarks.prefix_caching.bench_prefix_caching import reset_scheduler
from minivllm import LLM, SamplingParams


def run(llm: LLM, args: argparse.Namespace, chunk_budget: int | None, seed: int,
        long_prompt_len: int) -> dict:
    """chunk_budget None: chunked prefill off (the engine's own budget, >= max_model_len)."""
    if chunk_budget is None:
        reset_scheduler(llm, enable_chunked_prefill=False)
    else:
        reset_scheduler(llm, enable_chunked_prefill=True, max_num_batched_tokens=chunk_budget)
    engine = llm.llm_engine
    rng = random.Random(seed)
    vocab_size = engine.model_config.vocab_size

    def prompt(n: int) -> list[int]:
        return [rng.randrange(vocab_size) for _ in range(n)]

    streams = [f"stream-{time.monotonic_ns()}-{i}" for i in range(args.num_streams)]
    stream_params = SamplingParams(temperature=0, max_tokens=llm.llm_engine.config.max_model_len
                                   - args.stream_prompt_len, ignore_eos=True)
    for request_id in streams:
        engine.add_request(request_id, prompt(args.stream_prompt_len), stream_params)
    token_times: dict[str, list[float]] = {r: [] for r in streams}
    steps: list[dict] = []

    def step() -> list:
        start = time.perf_counter()
        outputs = engine.step()  # ends with the step's device-to-host copy: a sync point
        now = time.perf_counter()
        for out in outputs:
            if out.request_id in token_times:
                token_times[out.request_id].append(now)
        scheduled = engine.scheduler.last_output.scheduled
        steps.append({"end": now, "duration_s": now - start,
                      "prefill_tokens": sum(s.num_new_tokens for s in scheduled if s.is_prefill),
                      "decode_tokens": sum(1 for s in scheduled if not s.is_prefill)})
        return outputs

    while min(len(t) for t in token_times.values()) < args.warm_steps:
        step()
    long_id = f"long-{time.monotonic_ns()}"
    arrival = time.perf_counter()
    engine.add_request(long_id, prompt(long_prompt_len),
                       SamplingParams(temperature=0, max_tokens=args.tail_steps,
                                      ignore_eos=True))
    first_token_time = None
    while first_token_time is None:
        if any(out.request_id == long_id for out in step()):
            first_token_time = time.perf_counter()
    for _ in range(args.tail_steps):
        step()
    engine.abort_request([*streams, long_id])

    def gaps(lo: float, hi: float) -> list[float]:
        """Stream inter-token gaps of the tokens that came out in (lo, hi]."""
        return [b - a for times in token_times.values() for a, b in pairwise(times)
                if lo < b <= hi]

    before = gaps(0.0, arrival)
    during = gaps(arrival, first_token_time)
    window = first_token_time - arrival
    return {
        "chunked_prefill": chunk_budget is not None,
        "max_num_batched_tokens": chunk_budget or engine.scheduler.max_num_batched_tokens,
        "itl_before_median_ms": 1e3 * statistics.median(before),
        "itl_during_max_ms": 1e3 * max(during),
        "itl_during_mean_ms": 1e3 * statistics.mean(during),
        "stream_tok_s_during": len(during) / window,
        "long_ttft_s": window,
        "prefill_steps": sum(1 for s in steps if s["end"] > arrival and s["prefill_tokens"]),
        "steps": [{**s, "t_s": s["end"] - arrival} for s in steps],
    }


def plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for r in record["figures"]["runs"]:
        label = (f"chunked, budget {r['max_num_batched_tokens']}" if r["chunked_prefill"]
                 else "not chunked")
        points = [(s["t_s"] * 1e3, s["duration_s"] * 1e3) for s in r["steps"]
                  if s["decode_tokens"]]
        line, = ax.step(*zip(*points, strict=True), where="pre", marker=".", label=label)
        ax.axvline(r["long_ttft_s"] * 1e3, color=line.get_color(), linestyle="--", linewidth=1)
    ax.set_yscale("log")
    ax.set(xlabel="time since the long prompt arrived (ms); dashed: its first token",
           ylabel="streams' inter-token latency (ms)")
    cfg = record["config"]
    ax.set_title(f"{cfg['num_streams']} decoding streams while a {cfg['long_prompt_len']}-token "
                 f"prompt arrives, {cfg['model']} on {record['device_name']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Chunked prefill benchmark")
    parser.add_argument("--model", default="random:qwen3-0.6b")
    parser.add_argument("--num-streams", type=int, default=16)
    parser.add_argument("--stream-prompt-len", type=int, default=128)
    parser.add_argument("--long-prompt-len", type=int, default=16384)
    parser.add_argument("--max-model-len", type=int, default=17408)
    parser.add_argument("--chunk-budgets", type=int, nargs="+", default=[512, 2048],
                        help="max_num_batched_tokens of the chunked runs")
    parser.add_argument("--warm-steps", type=int, default=16,
                        help="stream tokens before the long prompt arrives")
    parser.add_argument("--tail-steps", type=int, default=16,
                        help="steps after the long prompt's first token")
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run")
    parser.add_argument("--plot", type=Path, help="only redraw the plot of this JSON record")
    args = parser.parse_args()
    if args.plot:
        plot(json.loads(args.plot.read_text()), args.plot.with_suffix(".png"))
        return
    llm_kwargs: dict = {}
    if args.smoke:
        args.model, args.num_streams, args.stream_prompt_len = "random:tiny-qwen3", 4, 16
        args.long_prompt_len, args.max_model_len, args.chunk_budgets = 768, 1024, [64, 256]
        args.warm_steps = args.tail_steps = 4
        llm_kwargs = {"device": "cpu", "dtype": "float32"}

    llm = LLM(args.model, max_model_len=args.max_model_len, **llm_kwargs)
    settings = [None, *args.chunk_budgets]
    for budget in settings:  # warm-up: kernels for every chunk shape, CUDA graphs, caches
        run(llm, argparse.Namespace(**{**vars(args), "warm_steps": 2, "tail_steps": 2}),
            budget, seed=1, long_prompt_len=args.long_prompt_len // 4)
    runs = [run(llm, args, budget, seed=0, long_prompt_len=args.long_prompt_len)
            for budget in settings]
    config = {k: v for k, v in vars(args).items() if k != "plot"}
    record = {"benchmark": "chunked_prefill", "config": config, "figures": {"runs": runs}}
    name = f"chunked_prefill_{'smoke' if args.smoke else device_slug()}"
    path = write_result(name, record)
    print_table(runs, ["chunked_prefill", "max_num_batched_tokens", "itl_before_median_ms",
                       "itl_during_max_ms", "itl_during_mean_ms", "stream_tok_s_during",
                       "long_ttft_s", "prefill_steps"])
    print(f"wrote {path}")
    try:
        plot(json.loads(path.read_text()), RESULTS_DIR / f"{name}.png")
    except ImportError:
        print(f"matplotlib is missing: plot later with --plot {path}")


if __name__ == "__main__":
    main()
