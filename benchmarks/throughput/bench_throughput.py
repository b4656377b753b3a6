"""Offline throughput: minivllm vs Hugging Face continuous batching vs the memory roofline.

The workload of nano-vllm's and vLLM's offline benchmark: 256 random-token prompts, input and
output lengths uniform in [100, 1024] (seed 0), ignore_eos, max_model_len 4096, on
`random:qwen3-0.6b` in bf16. One warm-up, then one timed run. In the same process:

- minivllm, stepped by hand so that prefill and decode time can be told apart;
- Hugging Face transformers' continuous batching (`init_continuous_batching`, paged attention,
  CUDA graphs) on the same weights, in a subprocess (hf_peer.py), on the first
  `--hf-num-prompts` requests (it is slow); its tok/s is compared with ours on the whole workload
  and with ours on that same subset;
- the roofline: every decode step must read the weights once and each running sequence's KV
  cache; with all sequences decoding together that is max(output_len) weight reads plus every
  request's KV reads, over the copy bandwidth measured here.

Steps carry up to 16384 tokens (`--max-num-batched-tokens`), as in nano-vllm's benchmark and
vLLM's `LLM` on an H100, not the engine's default (max_model_len, here 4096). Prefill steps run
eagerly, outside CUDA graphs, so each pays the host time of launching every layer's kernels
whatever its size; fewer, larger steps pay it fewer times (the A/B: benchmarks/README.md).

    python -m benchmarks.throughput.bench_throughput            # H100 run
    python -m benchmarks.throughput.bench_throughput --smoke    # tiny CPU run, both engines
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.common import copy_bandwidth_gbs, device_slug, write_result
from benchmarks.workload import Request, decode_kv_token_reads, random_workload
from minivllm import LLM, SamplingParams
from minivllm.sampling_params import RequestOutputKind


def run_minivllm(llm: LLM, requests: list[Request]) -> dict:
    """What `llm.generate` does (final outputs only), stepped by hand to time each step."""
    engine = llm.llm_engine
    for i, r in enumerate(requests):
        engine.add_request(f"bench-{i}-{time.monotonic_ns()}", r.prompt_token_ids,
                           SamplingParams(temperature=0, max_tokens=r.output_len, ignore_eos=True,
                                          output_kind=RequestOutputKind.FINAL_ONLY))
    scheduler = engine.scheduler
    prefill_steps: list[float] = []
    decode_s = 0.0
    num_steps = num_output = 0
    start = time.perf_counter()
    while engine.has_unfinished_requests():
        t0 = time.perf_counter()
        # Ends by waiting for a step's tokens (with async scheduling, the previous step's, so
        # the time is charged to the step after the one that did the work).
        outputs = engine.step()
        dt = time.perf_counter() - t0
        has_prefill = any(s.is_prefill for s in scheduler.last_output.scheduled)
        if has_prefill:  # prefills, with the decodes of the running sequences beside them
            prefill_steps.append(dt)
        else:
            decode_s += dt
        num_steps += 1
        num_output += sum(len(o.token_ids) for out in outputs if out.finished
                          for o in out.outputs)
    total = time.perf_counter() - start
    return {"elapsed_s": total, "output_tokens": num_output, "output_tok_s": num_output / total,
            "prefill_step_s": sum(prefill_steps), "decode_step_s": decode_s,
            "num_steps": num_steps, "num_prefill_steps": len(prefill_steps),
            "prefill_step_ms_median": 1e3 * statistics.median(prefill_steps),
            "prefill_step_ms_max": 1e3 * max(prefill_steps)}


def run_hf(folder: str, requests: list[Request], timeout_s: float) -> dict:
    """transformers' continuous batching on the same weights, in a subprocess (hf_peer.py)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump([[r.prompt_token_ids, r.output_len] for r in requests], f)
        f.flush()
        try:
            proc = subprocess.run([sys.executable, "-m", "benchmarks.throughput.hf_peer",
                                   folder, f.name], capture_output=True, text=True,
                                  timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"error": f"did not finish within {timeout_s:.0f} s"}
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description="Offline throughput benchmark")
    parser.add_argument("--model", default="random:qwen3-0.6b")
    parser.add_argument("--num-prompts", type=int, default=256)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--hf-num-prompts", type=int, default=64,
                        help="requests given to the transformers peer (0: skip it)")
    parser.add_argument("--hf-timeout", type=float, default=900,
                        help="seconds the transformers peer may take")
    parser.add_argument("--max-num-batched-tokens", type=int, default=16384,
                        help="tokens per step (with --smoke: the engine's default)")
    parser.add_argument("--enforce-eager", action="store_true")
    parser.add_argument("--async-scheduling", action=argparse.BooleanOptionalAction,
                        default=None, help="default: the engine's (on for CUDA)")
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run")
    args = parser.parse_args()

    if args.smoke:
        args.model, args.num_prompts, args.max_model_len, args.hf_num_prompts = (
            "random:tiny-qwen3", 8, 256, 8)
        args.max_num_batched_tokens = None
        in_range, out_range = (10, 60), (10, 60)
    else:
        in_range, out_range = (100, 1024), (100, 1024)
    llm_kwargs = dict(max_model_len=args.max_model_len, enforce_eager=args.enforce_eager,
                      async_scheduling=args.async_scheduling,
                      max_num_batched_tokens=args.max_num_batched_tokens)
    record: dict = {"benchmark": "throughput", "config": {**vars(args),
                                                          "input_range": in_range,
                                                          "output_range": out_range}}
    figures: dict = {}

    from minivllm.model_executor.model_loader import get_model_config, save_random_model
    cfg = get_model_config(args.model)
    requests = random_workload(args.num_prompts, cfg.vocab_size, in_range, out_range, seed=0)

    if args.hf_num_prompts:
        with tempfile.TemporaryDirectory() as folder:
            save_random_model(args.model.removeprefix("random:"), folder)
            figures["hf"] = run_hf(folder, requests[: args.hf_num_prompts], args.hf_timeout)

    llm = LLM(args.model, **llm_kwargs)
    record["config"]["async_scheduling"] = llm.llm_engine.config.async_scheduling
    record["config"]["max_num_batched_tokens"] = llm.llm_engine.config.max_num_batched_tokens
    warm = random_workload(8, cfg.vocab_size, (16, 64), (16, 64), seed=1)
    run_minivllm(llm, warm)
    ours = run_minivllm(llm, requests)
    figures["minivllm"] = ours

    spec = llm.llm_engine.model_runner.kv_cache_spec
    weight_bytes = sum(p.numel() * p.element_size()
                       for p in llm.llm_engine.model_runner.model.parameters())
    bandwidth = copy_bandwidth_gbs() * 1e9
    roofline_bytes = (weight_bytes * max(r.output_len for r in requests)
                      + spec.bytes_per_token * decode_kv_token_reads(requests))
    total_output = sum(r.output_len for r in requests)
    roofline_tok_s = total_output / (roofline_bytes / bandwidth)
    figures["roofline"] = {"bandwidth_gbs": bandwidth / 1e9, "bytes": roofline_bytes,
                           "output_tok_s": roofline_tok_s}
    figures["ratio_to_roofline"] = ours["output_tok_s"] / roofline_tok_s
    hf_tok_s = figures.get("hf", {}).get("output_tok_s")
    if hf_tok_s:
        # The peer ran a subset; fewer requests batch less, so compare on that subset too.
        subset = run_minivllm(llm, requests[: args.hf_num_prompts])
        figures["minivllm_on_hf_subset"] = subset
        figures["ratio_to_hf"] = ours["output_tok_s"] / hf_tok_s
        figures["ratio_to_hf_same_subset"] = subset["output_tok_s"] / hf_tok_s
    record["figures"] = figures
    path = write_result(f"throughput_{'smoke' if args.smoke else device_slug()}", record)
    print(f"minivllm: {ours['output_tok_s']:.0f} output tok/s ({ours['output_tokens']} tokens in "
          f"{ours['elapsed_s']:.1f} s; prefill steps {ours['prefill_step_s']:.1f} s, decode "
          f"steps {ours['decode_step_s']:.1f} s)")
    if "hf" in figures:
        print(f"transformers CB: {figures['hf']}")
    print(f"roofline: {roofline_tok_s:.0f} tok/s at {bandwidth / 1e9:.0f} GB/s; "
          f"minivllm reaches {figures['ratio_to_roofline']:.1%}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
