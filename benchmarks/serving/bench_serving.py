"""Serving benchmark: minivllm's OpenAI server under load, and the offline engine on the same
workload as its peer, in one run (what `vllm bench serve` and `vllm bench throughput` measure).

1. start `python -m minivllm.server` with the engine flags given here, on a free port;
2. send the random dataset through `/v1/completions` streams (`load_generator`), at
   `--request-rate` (Poisson; `inf` sends all at once) with at most `--max-concurrency` in
   flight; stop the server;
3. run the same prompts and output lengths through `minivllm.LLM(...).generate` in this
   process: the throughput the engine reaches with no HTTP, no streaming and every request
   known up front, which the server's can only approach;
4. print vLLM's result table and write `benchmarks/results/serving_<device>_<model>.json`.

    # CPU, tiny (about a minute): the embedded SmolLM2
    python -m benchmarks.serving.bench_serving --device cpu --max-model-len 256 \\
        --num-prompts 16 --random-input-len 64 --random-output-len 16 --max-concurrency 8
    # CPU, a few seconds (what CI runs): the tiny random model
    python -m benchmarks.serving.bench_serving --smoke
    # GPU
    python -m benchmarks.serving.bench_serving --model random:qwen3-0.6b --num-prompts 256 \\
        --random-input-len 512 --random-output-len 128 --request-rate inf
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import device_slug, write_result
from benchmarks.serving.load_generator import (
    BenchRequest,
    random_requests,
    run_load,
    send_request,
    serving_metrics,
)
from minivllm import LLM, SamplingParams
from minivllm.config import DEFAULT_MODEL
from minivllm.model_executor.model_loader import get_tokenizer

SERVED_NAME = "bench"
ENGINE_FLAGS = ("max_model_len", "max_num_seqs", "max_num_batched_tokens",
                "gpu_memory_utilization", "device", "enforce_eager", "enable_prefix_caching")
"""Engine settings passed alike to the server (as flags) and to the offline `LLM`."""


def engine_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in ENGINE_FLAGS
            if getattr(args, name) not in (None, False)}


def start_server(args: argparse.Namespace, log: Path) -> tuple[subprocess.Popen, str]:
    flags = []
    for name, value in engine_kwargs(args).items():
        flags += [f"--{name.replace('_', '-')}"] + ([] if value is True else [str(value)])
    command = [sys.executable, "-m", "minivllm.server", "--model", args.model, "--port", "0",
               "--served-model-name", SERVED_NAME, "--uvicorn-log-level", "warning", *flags]
    print("Starting:", " ".join(command), flush=True)
    proc = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + args.server_timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if match := re.search(r"API server on (http://\S+)", log.read_text()):
            try:
                if httpx.get(f"{match.group(1)}/health", timeout=2).status_code == 200:
                    return proc, match.group(1)
            except httpx.TransportError:
                pass
        time.sleep(0.5)
    proc.kill()
    sys.exit(f"The server did not start:\n{log.read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def bench_server(args: argparse.Namespace, requests: list[BenchRequest]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(args, Path(tmp) / "server.log")
        try:
            async def warm_up_then_load():
                async with httpx.AsyncClient(base_url=url, timeout=None) as http:
                    first = requests[0]
                    warm = BenchRequest(first.prompt_token_ids, min(4, first.output_len))
                    result = await send_request(http, SERVED_NAME, warm)
                    if not result.success:
                        sys.exit(f"The warm-up request failed: {result.error}")
                return await run_load(url, SERVED_NAME, requests, args.request_rate,
                                      args.max_concurrency, args.seed)

            results, duration = asyncio.run(warm_up_then_load())
        finally:
            stop_server(proc)
    return serving_metrics(results, duration)


def bench_offline(args: argparse.Namespace, requests: list[BenchRequest]) -> dict[str, Any]:
    llm = LLM(args.model, **engine_kwargs(args))
    params = [SamplingParams(temperature=0.0, max_tokens=r.output_len, ignore_eos=True)
              for r in requests]
    prompts = [{"prompt_token_ids": r.prompt_token_ids} for r in requests]
    llm.generate(prompts[:1], SamplingParams(max_tokens=4), use_tqdm=False)  # warm-up
    start = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    duration = time.perf_counter() - start
    output = sum(len(o.outputs[0].token_ids) for o in outputs)
    prompt = sum(len(r.prompt_token_ids) for r in requests)
    return {"duration_s": duration, "total_output_tokens": output,
            "request_throughput": len(requests) / duration,
            "output_throughput": output / duration,
            "total_token_throughput": (prompt + output) / duration}


def print_report(server: dict[str, Any], offline: dict[str, Any]) -> None:
    def line(label: str, value: Any) -> None:
        print(f"{label:<40}{value:<10.2f}" if isinstance(value, float) else f"{label:<40}{value}")

    print("{s:{c}^50}".format(s=" Serving Benchmark Result ", c="="))
    line("Successful requests:", server["completed"])
    line("Failed requests:", server["failed"])
    line("Benchmark duration (s):", server["duration_s"])
    line("Total input tokens:", server["total_input_tokens"])
    line("Total generated tokens:", server["total_output_tokens"])
    line("Request throughput (req/s):", server["request_throughput"])
    line("Output token throughput (tok/s):", server["output_throughput"])
    line("Total Token throughput (tok/s):", server["total_token_throughput"])
    for key, title in [("ttft_ms", "Time to First Token"),
                       ("tpot_ms", "Time per Output Token (excl. 1st token)"),
                       ("itl_ms", "Inter-token Latency"), ("e2el_ms", "End-to-end Latency")]:
        print("{s:{c}^50}".format(s=title, c="-"))
        short = key.split("_")[0].upper()
        for stat in ("mean", "median", "p99"):
            line(f"{stat.capitalize() if stat != 'p99' else 'P99'} {short} (ms):",
                 server[key][stat])
    print("{s:{c}^50}".format(s="Offline engine, same workload (peer)", c="-"))
    line("Request throughput (req/s):", offline["request_throughput"])
    line("Output token throughput (tok/s):", offline["output_throughput"])
    line("Server / offline output throughput:",
         server["output_throughput"] / offline["output_throughput"])
    print("=" * 50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--num-prompts", type=int, default=100)
    parser.add_argument("--random-input-len", type=int, default=256)
    parser.add_argument("--random-output-len", type=int, default=64)
    parser.add_argument("--random-range-ratio", type=float, default=0.0,
                        help="Lengths are drawn uniformly in [len*(1-r), len*(1+r)].")
    parser.add_argument("--request-rate", type=float, default=float("inf"),
                        help="Requests per second (Poisson arrivals); inf sends all at once.")
    parser.add_argument("--max-concurrency", type=int, default=None,
                        help="At most this many requests in flight.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--result-name", default=None,
                        help="Result file name; default serving_<device>_<model>.")
    parser.add_argument("--server-timeout", type=float, default=600)
    # Engine flags, for the server and the offline engine alike.
    parser.add_argument("--max-model-len", type=int, default=None)
    parser.add_argument("--max-num-seqs", type=int, default=None)
    parser.add_argument("--max-num-batched-tokens", type=int, default=None,
                        help="Tokens per step; default: the engine's.")
    parser.add_argument("--gpu-memory-utilization", type=float, default=None)
    parser.add_argument("--device", choices=["cuda", "cpu"], default=None)
    parser.add_argument("--enforce-eager", action="store_true")
    parser.add_argument("--enable-prefix-caching", action="store_true")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny CPU run (CI): 8 requests of 32 tokens in, 8 out")
    args = parser.parse_args()
    if args.smoke:
        args.model, args.device, args.max_model_len, args.result_name = (
            "random:tiny-llama", "cpu", 256, "serving_smoke")
        args.num_prompts, args.random_input_len, args.random_output_len = 8, 32, 8

    vocab_size = len(get_tokenizer(args.model))
    requests = random_requests(args.num_prompts, args.random_input_len, args.random_output_len,
                               args.random_range_ratio, vocab_size, args.seed)
    server = bench_server(args, requests)
    offline = bench_offline(args, requests)
    print_report(server, offline)

    device = "cpu" if args.device == "cpu" else device_slug()
    model = re.sub(r"[^a-z0-9]+", "-", args.model.lower().split("/")[-1]).strip("-")
    path = write_result(args.result_name or f"serving_{device}_{model}", {
        "benchmark": "serving",
        "command": " ".join(sys.argv),
        "config": {k: v for k, v in vars(args).items() if k != "server_timeout"}
        | {"request_rate": str(args.request_rate)},
        "server": server,
        "offline": offline,
        "server_over_offline_output_throughput":
            server["output_throughput"] / offline["output_throughput"],
    })
    print(f"Wrote {path}")


if __name__ == "__main__":
    main()
