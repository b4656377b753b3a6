"""Make every figure of the lecture slides, and the terminal output the decks quote.

    python scripts/make_figures.py                 # all figures and captures (~2 min, CPU)
    python scripts/make_figures.py --only l3_gantt l1_kv_waste
    python scripts/make_figures.py --no-captures   # figures only: starts no server
    python scripts/make_figures.py --list

Figures (`slides/figures/<name>.png`) are drawn from two kinds of data, and every figure says
which in its bottom line:

- the benchmark records in `benchmarks/results/*.json` (kernels and decode steps measured on
  an NVIDIA H100, the KV-memory simulation, CPU runs). Where a benchmark has several records,
  a GPU record wins over a CPU one and a full run over a smoke run;
- small runs of minivllm itself on the CPU, made here (tiny random models, the scheduler's own
  trace), drawn with the notebooks' helpers in `minivllm/viz/`.

Captures: a deck may put `<!-- capture: NAME -->` right before a fenced block; the block is
then replaced with what the closest `bash server` or `bash client` block above it prints,
run here for real: a `server` block is started (its start-up log is captured, and it serves
the `client` blocks that follow), a `client` block is sent to that server. So the start-up
log and the SSE lines on the slides are our server's own. A copy of each goes to
`slides/captures/NAME.txt`. `<!-- capture: NAME head=5 tail=4 -->` keeps the first 5 and the
last 4 lines and says how many it left out.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "slides"))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
FIGURES_DIR = ROOT / "slides" / "figures"
CAPTURES_DIR = ROOT / "slides" / "captures"

FIGURES: dict[str, Callable[[], Figure]] = {}
"""name -> a function drawing the figure `slides/figures/<name>.png`."""

plt.rcParams.update({"font.size": 11, "axes.titlesize": 12, "axes.spines.top": False,
                     "axes.spines.right": False, "figure.dpi": 110})


def figure(name: str) -> Callable[[Callable[[], Figure]], Callable[[], Figure]]:
    def register(fn: Callable[[], Figure]) -> Callable[[], Figure]:
        FIGURES[name] = fn
        return fn
    return register


# -- the benchmark records ------------------------------------------------------------------------
def load_result(benchmark: str) -> tuple[dict, Path]:
    """The best record of `benchmark` in `benchmarks/results/<benchmark>*.json` (the prefix
    alone would also match `decode_step_ab_*`): GPU over CPU, a full run over a smoke run,
    then the newest."""
    records = {path: json.loads(path.read_text())
               for path in sorted(RESULTS.glob(f"{benchmark}*.json"))}
    records = {path: r for path, r in records.items() if r.get("benchmark") == benchmark}
    if not records:
        raise FileNotFoundError(f"no {benchmark} record in benchmarks/results/")

    def rank(path: Path) -> tuple:
        record = records[path]
        smoke = bool(record.get("config", {}).get("smoke")) or "smoke" in path.stem
        return (record.get("device") == "cuda", not smoke, record.get("date", ""))

    best = max(records, key=rank)
    return records[best], best


def describe(record: dict, path: Path | None = None) -> str:
    """'kernels_nvidia-h100-80gb-hbm3.json: NVIDIA H100 80GB HBM3, torch 2.11.0+cu130, ...'"""
    where = record.get("device_name", "?")
    if record.get("device") == "cpu":
        where = f"CPU ({where})"
    parts = [where, f"torch {record.get('torch', '?')}", str(record.get("date", ""))[:10]]
    if record.get("config", {}).get("smoke") or (path and "smoke" in path.stem):
        parts.append("smoke run")
    name = f"benchmarks/results/{path.name}: " if path else ""
    return name + ", ".join(parts)


def source(fig: Figure, text: str) -> Figure:
    """Write where the numbers come from under the figure."""
    fig.text(0.995, -0.01, f"source: {text}", ha="right", va="top", fontsize=8, color="gray")
    return fig


def _label_bars(ax, bars, fmt: str = "{:.3g}", **kw) -> None:
    ax.bar_label(bars, labels=[fmt.format(b.get_height()) for b in bars], fontsize=9, **kw)


# -- small runs of minivllm on the CPU ------------------------------------------------------------
def tiny_llm(**kwargs):
    from minivllm import LLM

    kwargs.setdefault("device", "cpu")
    kwargs.setdefault("max_model_len", 256)
    return LLM("random:tiny-llama", **kwargs)


def arrivals(num: int, seed: int, prompt_range: tuple[int, int], output_range: tuple[int, int],
             every: int = 0) -> list:
    """`num` requests of random token ids (lengths uniform in the ranges), one every `every`
    steps (0: all at once); greedy, ignoring EOS so the lengths are what we asked for."""
    from minivllm import viz
    from minivllm.sampling_params import SamplingParams

    rng = random.Random(seed)
    out = []
    for i in range(num):
        prompt = [rng.randrange(3, 250) for _ in range(rng.randint(*prompt_range))]
        params = SamplingParams(temperature=0, max_tokens=rng.randint(*output_range),
                                ignore_eos=True)
        out.append(viz.Arrival(prompt, params, step=i * every))
    return out


CPU_RUN = "minivllm on this machine's CPU, random:tiny-llama (made by scripts/make_figures.py)"


# -- L0: why serving is a systems problem ---------------------------------------------------------
@figure("l0_decode_batching")
def l0_decode_batching() -> Figure:
    record, path = load_result("decode_step")
    rows = record["figures"]["rows"]
    fig, (ax_tput, ax_time) = plt.subplots(1, 2, figsize=(12, 4.2))
    for context, color in zip(sorted({r["context"] for r in rows}), ("tab:blue", "tab:orange"),
                              strict=False):
        sel = [r for r in rows if r["context"] == context]
        batch = [r["batch"] for r in sel]
        ax_tput.plot(batch, [r["tok_s"] for r in sel], "o-", color=color,
                     label=f"context {context} tokens")
        ax_time.plot(batch, [r["step_ms"] for r in sel], "o-", color=color,
                     label=f"measured, context {context}")
        ax_time.plot(batch, [r["roofline_ms"] for r in sel], "--", color=color,
                     label=f"roofline (weights + KV read once), context {context}")
        below = context != min(r["context"] for r in rows)
        for r in sel:
            ax_tput.annotate(f"{r['tok_s']:,.0f}", (r["batch"], r["tok_s"]), fontsize=8,
                             textcoords="offset points", xytext=(0, -14 if below else 6),
                             ha="center")
    for ax in (ax_tput, ax_time):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequences decoded together (batch)")
        ax.legend(fontsize=8)
    ax_tput.set(ylabel="output tokens / s", title="throughput grows with the batch ...")
    ax_time.set(ylabel="ms per decode step", ylim=(0, None),
                title="... while each step (= time between tokens) grows slowly")
    fig.suptitle(f"One decode step of {record['config']['model']}, bf16, CUDA graphs, "
                 f"{record['device_name']}")
    fig.tight_layout()
    return source(fig, describe(record, path))


@figure("l0_kv_per_token")
def l0_kv_per_token() -> Figure:
    import torch

    from minivllm import viz
    from minivllm.worker.cache_engine import KVCacheSpec

    shapes = json.loads((ROOT / "tests" / "fixtures" / "lab0_kv_cache_sizes.json").read_text())
    models = {}
    for case in shapes["cases"]:
        models[case["model"]] = (case["num_layers"], case["num_kv_heads"], case["head_dim"])
    chosen = ["SmolLM2-135M", "Qwen3-0.6B", "Llama-3.1-8B", "Qwen2.5-7B", "Llama-2-7B"]
    per_token = {}
    for name in chosen:
        layers, kv_heads, head_dim = models[name]
        spec = KVCacheSpec(layers, kv_heads, head_dim, 16, torch.bfloat16)
        label = f"{name} ({kv_heads} KV heads): {spec.bytes_per_token / 1024:.0f} KiB/token"
        per_token[label] = spec.bytes_per_token
    fig = viz.plot_kv_cache_size(per_token, [2**k for k in range(10, 18)], budget_gib=40)
    fig.suptitle("KV cache in bf16: 2 (K and V) x layers x KV heads x head_dim x 2 bytes "
                 "per token", y=1.02)
    return source(fig, "KVCacheSpec.bytes_per_token (minivllm/worker/cache_engine.py) on the "
                       "model shapes of tests/fixtures/lab0_kv_cache_sizes.json")


@figure("l0_serving_load")
def l0_serving_load() -> Figure:
    runs = []
    for path in sorted(RESULTS.glob("serving_*.json")):
        record = json.loads(path.read_text())
        if record.get("device") != "cuda":
            continue
        cfg = record["config"]
        rate = cfg["request_rate"]
        label = ("all at once" if rate == "inf" else f"{float(rate):g} requests/s") + (
            f", at most {cfg['max_concurrency']} in flight" if cfg.get("max_concurrency")
            else "")
        runs.append((label, record, path))
    if not runs:
        raise FileNotFoundError("no GPU serving results")
    devices = {record["device_name"] for _, record, _ in runs}
    if len(devices) > 1:  # records from several GPUs: name each run's
        runs = [(f"{label}, {record['device_name'].split()[1]}", record, path)
                for label, record, path in runs]
    runs.sort(key=lambda r: r[1]["server"]["ttft_ms"]["median"], reverse=True)
    names = [r[0] for r in runs]
    colors = ["tab:red", "tab:green", "tab:purple", "tab:gray"][: len(runs)]
    fig, axes = plt.subplots(1, 3, figsize=(12.5, 4))
    panels = [("output_throughput", "output tokens / s", "throughput", None),
              ("ttft_ms", "ms (log)", "time to first token: median, p99", "log"),
              ("tpot_ms", "ms", "time per output token: median, p99", None)]
    for ax, (key, ylabel, title, scale) in zip(axes, panels, strict=True):
        for i, (_, record, _) in enumerate(runs):
            value = record["server"][key]
            if isinstance(value, dict):
                bars = ax.bar([i - 0.2, i + 0.2], [value["median"], value["p99"]], width=0.38,
                              color=colors[i], alpha=0.9)
                bars[1].set_alpha(0.5)
            else:
                bars = ax.bar([i], [value], width=0.6, color=colors[i])
            _label_bars(ax, bars, "{:,.0f}")
        ax.set_xticks(range(len(runs)), [n.replace(", ", ",\n") for n in names], fontsize=9)
        ax.set(ylabel=ylabel, title=title)
        if scale:
            ax.set_yscale(scale)
    first = runs[0][1]
    cfg = first["config"]
    fig.suptitle(f"python -m minivllm.server, {cfg['model']}, {cfg['num_prompts']} requests of "
                 f"{cfg['random_input_len']} prompt + {cfg['random_output_len']} output tokens"
                 + ("" if len(devices) > 1 else f", {first['device_name']}"))
    fig.tight_layout()
    return source(fig, "; ".join(describe(r, p).split(":")[0] for _, r, p in runs)
                  + f" ({describe(first).split(', ', 1)[1]})")


# -- L1: the KV cache and block tables ------------------------------------------------------------
@figure("l1_kv_waste")
def l1_kv_waste() -> Figure:
    record, path = load_result("kv_memory")
    rows = {r["kv_allocator"]: r for r in record["figures"]["rows"]}
    cfg = record["config"]
    names = ["reserved", "paged"]
    colors = ["tab:red", "tab:blue"]
    fig, axes = plt.subplots(1, 3, figsize=(12.5, 3.9))
    bars = axes[0].bar(names, [100 * rows[n]["mean_waste"] for n in names], color=colors)
    _label_bars(axes[0], bars, "{:.1f}%")
    axes[0].set(ylabel="% of allocated KV slots", ylim=(0, 100),
                title="KV memory allocated but empty")
    x = np.arange(2)
    mean = axes[1].bar(x - 0.2, [rows[n]["mean_running_seqs"] for n in names], 0.38,
                       color=colors, label="mean")
    peak = axes[1].bar(x + 0.2, [rows[n]["max_running_seqs"] for n in names], 0.38,
                       color=colors, alpha=0.45, label="max")
    _label_bars(axes[1], mean, "{:.0f}")
    _label_bars(axes[1], peak, "{:.0f}")
    axes[1].set_xticks(x, [f"{n}\n(mean | max)" for n in names])
    axes[1].set(ylabel="sequences", title="sequences running at once")
    bars = axes[2].bar(names, [rows[n]["steps"] for n in names], color=colors)
    axes[2].bar_label(bars, labels=[f"{rows[n]['steps']:,} steps\n{rows[n]['preemptions']} "
                                    "preemptions" for n in names], fontsize=9)
    axes[2].set(ylabel="engine steps", title="steps to finish the workload",
                ylim=(0, 1.25 * max(r["steps"] for r in rows.values())))
    fig.suptitle(f"{cfg['num_prompts']} requests (prompts and outputs of 100-1024 tokens), "
                 f"max_model_len {cfg['max_model_len']}, a KV cache of "
                 f"{cfg['kv_budget_tokens']:,} tokens, block_size {cfg['block_size']}")
    fig.tight_layout()
    return source(fig, describe(record, path) + " (the real scheduler and KV managers, "
                  "simulated tokens)")


@figure("l1_block_tables")
def l1_block_tables() -> Figure:
    from minivllm import viz
    from minivllm.sampling_params import SamplingParams

    llm = tiny_llm(block_size=8, num_gpu_blocks_override=14, max_model_len=128)
    engine = llm.llm_engine
    rng = random.Random(3)

    def add(name: str, prompt_len: int, max_tokens: int) -> None:
        engine.add_request(name, [rng.randrange(3, 250) for _ in range(prompt_len)],
                           SamplingParams(temperature=0, max_tokens=max_tokens,
                                          ignore_eos=True))

    add("A", 21, 4)
    add("B", 30, 40)
    add("C", 12, 40)
    for _ in range(6):  # A finishes after 4 tokens and gives its 4 blocks back
        engine.step()
    add("D", 35, 40)  # D takes what is free: the unused blocks, then A's
    for _ in range(3):
        engine.step()
    seqs = sorted(engine.scheduler.running, key=lambda s: s.seq_id)
    fig = viz.plot_kv_blocks(engine.kv_cache_manager, seqs, blocks_per_row=8,
                             title="After 9 steps: seq 0 has finished and freed blocks 0-2; "
                                   "seq 3 arrived and took free blocks, wherever they were")
    fig.set_size_inches(12, 3.4)
    fig.tight_layout()
    return source(fig, CPU_RUN + ", block_size 8, 14 blocks")


@figure("l1_kv_usage")
def l1_kv_usage() -> Figure:
    from minivllm import viz

    runs = {}
    for policy in ("reserved", "paged"):
        llm = tiny_llm(kv_allocator=policy, num_gpu_blocks_override=64)
        runs[policy] = viz.run_workload(llm.llm_engine, arrivals(24, 1, (10, 60), (10, 80)))
    fig = viz.plot_kv_usage(runs)
    fig.suptitle("Same 24 requests, same 64 blocks x 16 slots, max_model_len 256", y=1.03)
    return source(fig, CPU_RUN)


# -- L2: PagedAttention in Triton -----------------------------------------------------------------
@figure("l2_decode_grid")
def l2_decode_grid() -> Figure:
    from minivllm import viz

    fig = viz.plot_decode_grid([300, 120], num_kv_heads=2, num_splits=2, block_size=16,
                               block_n=64)
    return source(fig, "minivllm.viz.plot_decode_grid: the ranges _paged_decode_kernel computes "
                       "(minivllm/attention/ops/triton_paged_decode.py)")


@figure("l2_online_softmax")
def l2_online_softmax() -> Figure:
    from minivllm import viz

    rng = np.random.default_rng(0)
    scores = rng.normal(0.0, 1.0, 128) + np.linspace(0.0, 4.0, 128)
    fig = viz.plot_online_softmax(scores, block_n=32)
    return source(fig, "minivllm.viz.plot_online_softmax on 128 seeded random scores")


@figure("l2_kernel_bandwidth")
def l2_kernel_bandwidth() -> Figure:
    record, path = load_result("kernels")
    cases = record["decode"]
    cfg = record["config"]
    series = [("triton_GBs", "minivllm Triton (paged)", "tab:blue"),
              ("sdpa_GBs", "PyTorch SDPA, contiguous KV (peer)", "tab:green"),
              ("flex_GBs", "FlexAttention (peer)", "tab:purple"),
              ("torch_ref_GBs", "gather + SDPA (lab baseline)", "tab:red")]
    for c in cases:
        c["torch_ref_GBs"] = c["kv_MB"] * 1e6 / (c["torch_ref_ms"] * 1e-3) / 1e9
    series = [s for s in series if all(s[0] in c for c in cases)]  # FlexAttention may be off
    fig, ax = plt.subplots(figsize=(12, 4.6))
    x = np.arange(len(cases))
    width = 0.8 / len(series)
    for i, (key, label, color) in enumerate(series):
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, [c[key] for c in cases], width,
                      color=color, label=label)
        _label_bars(ax, bars, "{:,.0f}")
    ax.axhline(record["copy_bandwidth_GBs"], color="black", linestyle="--",
               label=f"roofline: copy bandwidth {record['copy_bandwidth_GBs']:,.0f} GB/s")
    ax.set_xticks(x, [f"batch {c['batch']}, context {c['context']:,}\n"
                      f"({c['kv_MB']:,.0f} MB of K/V)" for c in cases])
    ax.set(ylabel="K/V bytes read per second (GB/s)",
           ylim=(0, 1.15 * record["copy_bandwidth_GBs"]),
           title=f"Paged decode attention, {cfg['num_heads']} query / {cfg['num_kv_heads']} KV "
                 f"heads, head_dim {cfg['head_dim']}, {cfg['dtype']}, block_size "
                 f"{cfg['block_size']}: {record['device_name']}")
    ax.legend(fontsize=8.5, loc="upper center", ncol=3, bbox_to_anchor=(0.5, -0.16))
    fig.tight_layout()
    return source(fig, describe(record, path) + " (gather + SDPA: KV bytes / its time)")


# -- L3: scheduling -------------------------------------------------------------------------------
def _scheduler_runs() -> dict:
    from minivllm import viz

    runs = {}
    for policy in ("static", "continuous"):
        llm = tiny_llm(scheduler=policy, max_num_seqs=4, num_gpu_blocks_override=64)
        runs[f"{policy}, max_num_seqs=4"] = viz.run_workload(
            llm.llm_engine, arrivals(10, 2, (8, 40), (4, 48), every=2))
    return runs


@figure("l3_gantt")
def l3_gantt() -> Figure:
    from minivllm import viz

    runs = _scheduler_runs()
    fig = viz.plot_gantt({name: run.trace for name, run in runs.items()})
    fig.set_size_inches(13, 5.4)
    fig.suptitle("The same 10 requests, one arriving every 2 steps (scheduler traces)")
    fig.tight_layout()
    return source(fig, CPU_RUN + ", scheduler.record_trace = True")


@figure("l3_preemption")
def l3_preemption() -> Figure:
    from minivllm import viz

    llm = tiny_llm(max_num_seqs=8, num_gpu_blocks_override=14)
    run = viz.run_workload(llm.llm_engine, arrivals(8, 2, (16, 40), (30, 60)))
    fig = viz.plot_gantt({"continuous, 14 KV blocks of 16 slots": run.trace})
    fig.suptitle("Too little KV cache: the newest running sequence is preempted, re-queued "
                 "first, and recomputed later", y=1.02)
    return source(fig, CPU_RUN + ", num_gpu_blocks_override=14")


# -- L4: the server -------------------------------------------------------------------------------
@figure("l4_batch_tradeoff")
def l4_batch_tradeoff() -> Figure:
    record, path = load_result("decode_step")
    rows = record["figures"]["rows"]
    fig, ax = plt.subplots(figsize=(10, 4.4))
    for context, color in zip(sorted({r["context"] for r in rows}), ("tab:blue", "tab:orange"),
                              strict=False):
        sel = [r for r in rows if r["context"] == context]
        ax.plot([r["step_ms"] for r in sel], [r["tok_s"] for r in sel], "o-", color=color,
                label=f"context {context} tokens")
        above = context == min(r["context"] for r in rows)
        for r in sel:
            ax.annotate(f"{r['batch']} seq{'s' if r['batch'] > 1 else ''}",
                        (r["step_ms"], r["tok_s"]), fontsize=9, textcoords="offset points",
                        xytext=(-58, 4) if above else (6, -14))
    ax.set(xlabel="ms between two tokens of one stream (one decode step)",
           ylabel="output tokens / s (all streams)", xlim=(0, None), ylim=(0, None),
           title=f"More sequences per step: more throughput, slower streams "
                 f"({record['config']['model']}, {record['device_name']})")
    ax.legend()
    fig.tight_layout()
    return source(fig, describe(record, path))


# -- L5: extensions and peers ---------------------------------------------------------------------
@figure("l5_prefix_caching")
def l5_prefix_caching() -> Figure:
    record, path = load_result("prefix_caching")
    runs = record["figures"]["runs"]
    cfg = record["config"]
    fig, (ax_tokens, ax_ttft) = plt.subplots(1, 2, figsize=(12, 3.9),
                                             gridspec_kw={"width_ratios": [2, 3]})
    names, computed, cached = [], [], []
    for run in runs:
        name = "prefix caching on" if run["prefix_caching"] else "off"
        color = "tab:blue" if run["prefix_caching"] else "tab:gray"
        names.append(name)
        computed.append(run["prompt_tokens_computed"])
        cached.append(run["prompt_tokens"] - run["prompt_tokens_computed"])
        ax_ttft.plot(np.array(run["ttft_s"]) * 1e3, "o-", color=color, markersize=4,
                     label=f"{name}: mean {run['ttft_mean_s'] * 1e3:,.0f} ms")
    colors = ["tab:blue" if r["prefix_caching"] else "tab:gray" for r in runs]
    ax_tokens.bar(names, computed, color=colors, label="computed")
    bars = ax_tokens.bar(names, cached, bottom=computed, color=colors, alpha=0.3, hatch="//",
                         label="found in the cache")
    ax_tokens.bar_label(bars, labels=[f"{c:,} computed\n({r['prefix_cache_hit_rate']:.0%} hit)"
                                      for c, r in zip(computed, runs, strict=True)], fontsize=9)
    ax_tokens.set(ylabel="prompt tokens, all requests", ylim=(0, 1.6 * max(
                      c + k for c, k in zip(computed, cached, strict=True))),
                  title=f"{cfg['num_requests']} requests: a shared {cfg['prefix_len']}-token "
                        f"prefix + {cfg['suffix_len']} own tokens")
    ax_tokens.legend(fontsize=8, loc="upper center", ncol=2)
    ax_ttft.set(xlabel="request (in arrival order)", ylabel="ms", ylim=(0, None),
                title="time to first token")
    ax_ttft.legend(fontsize=8)
    fig.suptitle(f"--enable-prefix-caching, {cfg['model']}: TTFT "
                 f"{record['figures']['ttft_mean_speedup']:.1f}x lower, throughput "
                 f"{record['figures']['throughput_speedup']:.2f}x")
    fig.tight_layout()
    return source(fig, describe(record, path))


@figure("l5_chunked_prefill")
def l5_chunked_prefill() -> Figure:
    record, path = load_result("chunked_prefill")
    runs = record["figures"]["runs"]
    cfg = record["config"]
    fig, axes = plt.subplots(1, len(runs), figsize=(12.5, 3.8), sharey=True, squeeze=False)
    for ax, run in zip(axes[0], runs, strict=True):
        steps = run["steps"]
        prefill = np.array([s["prefill_tokens"] for s in steps])
        ms = np.array([s["duration_s"] * 1e3 for s in steps])
        colors = ["tab:orange" if p else "tab:blue" for p in prefill]
        ax.bar(np.arange(len(steps)), ms, color=colors)
        name = (f"chunks of {run['max_num_batched_tokens']} tokens" if run["chunked_prefill"]
                else "no chunking")
        ax.set(title=f"{name}: longest gap {run['itl_during_max_ms']:,.0f} ms",
               xlabel="engine step")
    axes[0, 0].set_ylabel("step time = gap between tokens (ms)")
    axes[0, 0].legend(handles=[plt.Rectangle((0, 0), 1, 1, color="tab:orange"),
                               plt.Rectangle((0, 0), 1, 1, color="tab:blue")],
                      labels=["step with prompt tokens", "decode-only step"], fontsize=8)
    fig.suptitle(f"{cfg['num_streams']} streams decoding when a {cfg['long_prompt_len']}-token "
                 f"prompt arrives ({cfg['model']})")
    fig.tight_layout()
    return source(fig, describe(record, path))


@figure("l5_tensor_parallel")
def l5_tensor_parallel() -> Figure:
    record, path = load_result("tensor_parallel")
    figs = record["figures"]
    sizes = sorted((k for k in figs if k.startswith("tp")), key=lambda k: int(k[2:]))
    fig, (ax_tput, ax_blocks) = plt.subplots(1, 2, figsize=(11, 3.6))
    bars = ax_tput.bar(sizes, [figs[k]["output_tok_s"] for k in sizes], color="tab:blue")
    ax_tput.bar_label(bars, labels=[f"{figs[k]['output_tok_s']:,.0f} tok/s\n"
                                    f"x{figs[k]['scaling']:.2f}" for k in sizes], fontsize=9)
    ax_tput.set(ylabel="output tokens / s", title="throughput (scaling vs tp1)",
                ylim=(0, 1.3 * max(figs[k]["output_tok_s"] for k in sizes)))
    bars = ax_blocks.bar(sizes, [figs[k]["num_kv_blocks"] for k in sizes], color="tab:green")
    _label_bars(ax_blocks, bars, "{:,.0f}")
    ax_blocks.set(ylabel="KV blocks per rank", title="each rank holds 1/tp of the KV heads")
    profile = next((figs[k]["profile"] for k in sizes if "profile" in figs[k]), None)
    title = f"--tensor-parallel-size, {record['config']['model']}"
    if profile:
        title += (f": all-reduce takes {profile['all_reduce_share']:.0%} of the time "
                  f"({profile['all_reduce_calls']} calls)")
    fig.suptitle(title)
    fig.tight_layout()
    return source(fig, describe(record, path))


@figure("l5_peers")
def l5_peers() -> Figure:
    kernels, kernels_path = load_result("kernels")
    step, step_path = load_result("decode_step")
    cpu, cpu_path = load_result("cpu_decode")
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    ax = axes[0]
    cases = kernels["decode"]
    labels = [f"b{c['batch']}\nctx {c['context'] // 1024}k" for c in cases]
    x = np.arange(len(cases))
    b1 = ax.bar(x - 0.2, [100 * c["vs_sdpa"] for c in cases], 0.38, color="tab:green",
                label="vs SDPA on contiguous KV")
    b2 = ax.bar(x + 0.2, [100 * c["vs_roofline"] for c in cases], 0.38, color="gray",
                label="vs copy-bandwidth roofline")
    _label_bars(ax, b1, "{:.0f}")
    _label_bars(ax, b2, "{:.0f}")
    ax.set_xticks(x, labels, fontsize=9)
    prefill = kernels["prefill"]
    ax.set(ylabel="% (100 = as fast)", ylim=(0, 125),
           title=f"decode kernel ({kernels['device_name'].split()[1]}); prefill kernel "
                 f"{100 * prefill['vs_sdpa']:.0f}% of SDPA")
    ax.legend(fontsize=8, loc="lower right")

    ax = axes[1]
    for context, color in zip(sorted({r["context"] for r in step["figures"]["rows"]}),
                              ("tab:blue", "tab:orange"), strict=False):
        sel = [r for r in step["figures"]["rows"] if r["context"] == context]
        batches = [r["batch"] for r in sel]
        # Overlapped: steps back to back, as async scheduling runs them; synced: one at a time.
        if "overlapped_fraction_of_roofline" in sel[0]:
            ax.plot(batches, [100 * r["overlapped_fraction_of_roofline"] for r in sel], "o-",
                    color=color, label=f"context {context}, overlapped")
        ax.plot(batches, [100 * r["fraction_of_roofline"] for r in sel], "o--", color=color,
                alpha=0.5, label=f"context {context}, synced")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="batch", ylabel="% of roofline", ylim=(0, 100),
           title=f"whole decode step ({step['device_name'].split()[1]}), "
                 f"{step['config']['model']}")
    ax.legend(fontsize=8)

    ax = axes[2]
    f = cpu["figures"]
    names = ["1 stream", "8 streams"]
    ours = [f["minivllm_1_stream_tok_s"], f["minivllm_8_streams_tok_s"]]
    theirs = [f["hf_1_stream_tok_s"], f["hf_8_padded_batch_tok_s"]]
    x = np.arange(2)
    b1 = ax.bar(x - 0.2, ours, 0.38, color="tab:blue", label="minivllm")
    b2 = ax.bar(x + 0.2, theirs, 0.38, color="tab:gray", label="HF transformers generate")
    _label_bars(ax, b1, "{:.1f}")
    _label_bars(ax, b2, "{:.1f}")
    ax.set_xticks(x, names)
    ax.set(ylabel="output tokens / s", title=f"CPU, {cpu['config']['model'].split('/')[-1]}, "
                                             f"{cpu['config']['torch_threads']} threads")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return source(fig, "; ".join(f"benchmarks/results/{p.name}"
                                 for p in (kernels_path, step_path, cpu_path))
                  + f" ({kernels['device_name']} / {step['device_name']} / CPU)")


@figure("l5_throughput")
def l5_throughput() -> Figure:
    """Offline throughput against the roofline (and HF transformers where measured)."""
    record, path = load_result("throughput")
    if record.get("device") != "cuda":
        raise FileNotFoundError("no GPU throughput results")
    figs, cfg = record["figures"], record["config"]
    values = {"minivllm": figs["minivllm"]["output_tok_s"]}
    if "hf" in figs:
        values["HF transformers"] = figs["hf"]["output_tok_s"]
    roofline = figs["roofline"]["output_tok_s"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    bars = ax.bar(list(values), list(values.values()), width=0.5,
                  color=["tab:blue", "tab:gray"][:len(values)])
    ax.bar_label(bars, labels=[f"{v:,.0f} tok/s\n{v / roofline:.0%} of roofline"
                               for v in values.values()], fontsize=9)
    ax.axhline(roofline, color="black", linestyle="--",
               label=f"roofline: {roofline:,.0f} tok/s (weights + KV read once per step)")
    ax.set(ylabel="output tokens / s", ylim=(0, 1.15 * roofline),
           title=f"{cfg['num_prompts']} requests, {cfg['input_range'][0]}-{cfg['input_range'][1]}"
                 f" prompt / {cfg['output_range'][0]}-{cfg['output_range'][1]} output tokens\n"
                 f"{cfg['model']}, {record['device_name']}")
    ax.legend(fontsize=8, loc="upper right", bbox_to_anchor=(1, 0.93))
    fig.tight_layout()
    return source(fig, describe(record, path))


# -- captures -------------------------------------------------------------------------------------
_CAPTURE = re.compile(r"^<!-- capture: (\w+)((?: \w+=\d+)*) -->\n(`{3,})[^\n]*\n(.*?)^\3[ \t]*$",
                      re.M | re.S)
CAPTURE_PORT = 8199


def _command_text(block: str) -> str:
    return re.sub(r"\\\n\s*", "", block).strip()


def _wait_for_startup(proc: subprocess.Popen, log: list[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("the server exited during start-up:\n" + "".join(log))
        log.append(line)
        if "Application startup complete" in line:
            return
    raise RuntimeError("the server did not start in time:\n" + "".join(log))


class CaptureSession:
    """Servers started from `bash server` blocks, and the requests of `bash client` blocks."""

    def __init__(self) -> None:
        self.servers: dict[str, tuple[subprocess.Popen, str]] = {}
        self.current: tuple[subprocess.Popen, str] | None = None

    def start(self, command: str) -> str:
        if command not in self.servers:
            argv = shlex.split(command)
            if argv[:3] != ["python", "-m", "minivllm.server"]:
                raise ValueError(f"not a minivllm server command: {command}")
            self.close_all()
            env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
            proc = subprocess.Popen([sys.executable, *argv[1:]], cwd=ROOT, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            log: list[str] = []
            _wait_for_startup(proc, log)
            port = int(argv[argv.index("--port") + 1]) if "--port" in argv else 8000
            self.servers[command] = (proc, f"$ {command}\n" + "".join(log))
            self.port = port
        self.current = self.servers[command]
        return self.current[1]

    def run_client(self, command: str) -> str:
        if self.current is None:
            raise RuntimeError("a client block before any server block")
        text = re.sub(r"(localhost|127\.0\.0\.1):8000\b", f"127.0.0.1:{self.port}", command)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        out = subprocess.run(["bash", "-c", text], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=300, check=True)
        return out.stdout

    def close_all(self) -> None:
        for proc, _ in self.servers.values():
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.servers.clear()
        self.current = None


def _trim(text: str, options: str) -> str:
    opts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", options)}
    lines = text.rstrip("\n").split("\n")
    head, tail = opts.get("head"), opts.get("tail")
    if head is not None and tail is not None and head + tail < len(lines):
        left_out = len(lines) - head - tail
        lines = [*lines[:head], f"[... {left_out} lines left out ...]",
                 *(lines[-tail:] if tail else [])]
    return "\n".join(lines) + "\n"


def update_captures(decks: list[Path]) -> list[str]:
    """Run the commands above every capture marker and put their output into the decks."""
    from render import code_blocks, parse_deck

    session = CaptureSession()
    written = []
    CAPTURES_DIR.mkdir(parents=True, exist_ok=True)
    try:
        for deck_path in decks:
            text = deck_path.read_text(encoding="utf-8")
            if "<!-- capture:" not in text:
                continue
            blocks = [b for b in code_blocks(parse_deck(deck_path))
                      if b.lang == "bash" and b.tag in ("server", "client")]
            # Match each marker with the last server/client block before it in the file.
            positions = []
            cursor = 0
            for block in blocks:
                cursor = text.index(block.text, cursor)
                positions.append((cursor, block))
            pieces, last = [], 0
            for match in _CAPTURE.finditer(text):
                before = [b for pos, b in positions if pos < match.start()]
                if not before:
                    raise ValueError(f"{deck_path}: capture {match.group(1)} has no command above")
                command = _command_text(before[-1].text)
                if before[-1].tag == "server":
                    output = session.start(command)
                else:
                    # the server the deck started last serves it
                    servers = [b for b in before if b.tag == "server"]
                    session.start(_command_text(servers[-1].text))
                    output = session.run_client(command)
                output = _trim(output, match.group(2))
                name = match.group(1)
                suffix = "" if deck_path.parent.name == "slides" else f"_{deck_path.parent.name}"
                (CAPTURES_DIR / f"{name}{suffix}.txt").write_text(output, encoding="utf-8")
                fence = match.group(3)
                info = text[match.start(3):text.index("\n", match.start(3))]
                pieces.append(text[last:match.start()])
                pieces.append(f"<!-- capture: {name}{match.group(2)} -->\n{info}\n{output}"
                              f"{fence}")
                last = match.end()
                written.append(f"{deck_path.relative_to(ROOT)}: {name}")
            pieces.append(text[last:])
            deck_path.write_text("".join(pieces), encoding="utf-8")
    finally:
        session.close_all()
    return written


# -- command line ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only these figures")
    parser.add_argument("--no-captures", action="store_true", help="do not start servers")
    parser.add_argument("--captures-only", action="store_true", help="no figures")
    parser.add_argument("--list", action="store_true", help="list the figures")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(FIGURES))
        return 0
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    failed = []
    names = [] if args.captures_only else (args.only or list(FIGURES))
    for name in names:
        start = time.perf_counter()
        try:
            fig = FIGURES[name]()
        except FileNotFoundError as e:  # a benchmark not run yet: say so, keep going
            print(f"skipped {name}: {e}")
            continue
        except Exception as e:
            failed.append(name)
            print(f"FAILED {name}: {type(e).__name__}: {e}")
            continue
        out = FIGURES_DIR / f"{name}.png"
        fig.savefig(out, dpi=110, bbox_inches="tight", facecolor="white")
        plt.close(fig)
        print(f"{out.relative_to(ROOT)} ({time.perf_counter() - start:.1f} s)")
    if not args.no_captures and not args.only:
        from render import find_decks

        for line in update_captures(find_decks()):
            print(f"captured {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
