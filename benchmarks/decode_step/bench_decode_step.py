"""Decode-step time against its roofline, for batch sizes 1..256 at contexts 512 and 2048.

A decode step must read every weight once plus each sequence's KV cache; over the measured
copy bandwidth that is the step's floor. We time the engine's whole step path (batch tensors,
CUDA graph replay, LM head, sampling, the one device-to-host copy) on synthetic sequences that
sit at a fixed context length, and report ms per step (the median of several runs) and the
fraction of the roofline, twice:

- `step_ms`: one step at a time, the host's work and then the GPU's (synchronous engine);
- `overlapped_step_ms`: each step launched before the previous one's tokens are read, as async
  scheduling runs them, so the host's work hides behind the GPU's.

    python -m benchmarks.decode_step.bench_decode_step            # H100 run
    python -m benchmarks.decode_step.bench_decode_step --smoke    # tiny CPU run (CI)

`ab_decode_step` runs the same measurement for two trees in turn, to judge a change.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

from benchmarks.common import copy_bandwidth_gbs, device_slug, print_table, write_result
from minivllm import LLM, SamplingParams
from minivllm.core.scheduler import ScheduledSequence, SchedulerOutput
from minivllm.sequence import Sequence


def synthetic_decode_batch(llm: LLM, batch: int, context: int) -> SchedulerOutput:
    """`batch` sequences whose first context-1 tokens are in the cache: each step decodes the
    context-th token (the same one every time, so the context stays fixed)."""
    engine = llm.llm_engine
    rng = random.Random(0)
    vocab = engine.model_config.vocab_size
    out = SchedulerOutput()
    for i in range(batch):
        seq = Sequence(f"s{i}", [rng.randrange(vocab) for _ in range(context)],
                       SamplingParams(temperature=0))
        assert engine.kv_cache_manager.allocate_slots(seq, context)
        seq.num_computed_tokens = context - 1
        out.scheduled.append(ScheduledSequence(seq, 1))
    return out


def time_steps(llm: LLM, out: SchedulerOutput, iters: int,
               repeats: int) -> tuple[list[float], list[float]]:
    """ms per step one at a time, and overlapped with the next step's launch, for each of
    `repeats` runs of `iters` steps (the record keeps every run and reports their median)."""
    runner, kv = llm.llm_engine.model_runner, llm.llm_engine.kv_cache_manager
    for _ in range(3):
        runner.execute_model(out, kv).get_output()
    one_at_a_time, overlapped = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iters):
            runner.execute_model(out, kv).get_output()  # waits for the step's tokens
        one_at_a_time.append((time.perf_counter() - start) / iters * 1e3)
        start = time.perf_counter()
        previous = runner.execute_model(out, kv)
        for _ in range(iters - 1):
            launched = runner.execute_model(out, kv)
            previous.get_output()
            previous = launched
        previous.get_output()
        overlapped.append((time.perf_counter() - start) / iters * 1e3)
    return one_at_a_time, overlapped


def bytes_read(llm: LLM) -> tuple[int, int]:
    """What a decode step must read: every weight once, plus KV bytes per token of context."""
    runner = llm.llm_engine.model_runner
    weight_bytes = sum(p.numel() * p.element_size() for p in runner.model.parameters())
    return weight_bytes, runner.kv_cache_spec.bytes_per_token


def measure(llm: LLM, args: argparse.Namespace, bandwidth_gbs: float) -> list[dict]:
    """One row per (context, batch) of `args`: the median step times, every run, and the
    roofline."""
    weight_bytes, kv_per_token = bytes_read(llm)
    rows = []
    for context in args.contexts:
        for batch in args.batch_sizes:
            out = synthetic_decode_batch(llm, batch, context)
            runs, overlapped_runs = time_steps(llm, out, args.iters, args.repeats)
            ms, overlapped_ms = statistics.median(runs), statistics.median(overlapped_runs)
            floor_ms = (weight_bytes + batch * context * kv_per_token) / bandwidth_gbs * 1e-6
            rows.append({"batch": batch, "context": context, "step_ms": ms,
                         "roofline_ms": floor_ms, "fraction_of_roofline": floor_ms / ms,
                         "tok_s": batch / ms * 1e3, "overlapped_step_ms": overlapped_ms,
                         "overlapped_fraction_of_roofline": floor_ms / overlapped_ms,
                         "step_ms_runs": runs, "overlapped_step_ms_runs": overlapped_runs})
            for s in out.scheduled:
                llm.llm_engine.kv_cache_manager.free(s.seq)
    return rows


def parse_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The model, batch sizes, contexts and run counts (also `ab_decode_step`'s)."""
    parser.add_argument("--model", default="random:qwen3-0.6b")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 64, 128, 256])
    parser.add_argument("--contexts", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run")
    args = parser.parse_args()
    if args.smoke:
        args.model, args.batch_sizes, args.contexts, args.iters, args.repeats = (
            "random:tiny-llama", [1, 4], [32], 2, 1)
    return args


def build_llm(args: argparse.Namespace) -> LLM:
    return LLM(args.model, max_model_len=max(args.contexts) + 16,
               max_num_seqs=max(args.batch_sizes))


def main() -> None:
    args = parse_args(argparse.ArgumentParser(description="Decode-step time vs roofline"))
    llm = build_llm(args)
    weight_bytes, kv_per_token = bytes_read(llm)
    bandwidth_gbs = copy_bandwidth_gbs()
    rows = measure(llm, args, bandwidth_gbs)
    record = {"benchmark": "decode_step",
              "config": {**vars(args), "weight_bytes": weight_bytes,
                         "kv_bytes_per_token": kv_per_token,
                         "cuda_graphs": llm.llm_engine.model_runner.cuda_graphs is not None},
              "figures": {"bandwidth_gbs": bandwidth_gbs, "rows": rows}}
    path = write_result(f"decode_step_{'smoke' if args.smoke else device_slug()}", record)
    print_table(rows, ["batch", "context", "step_ms", "overlapped_step_ms", "roofline_ms",
                       "fraction_of_roofline", "overlapped_fraction_of_roofline"])
    print(f"wrote {path}")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
