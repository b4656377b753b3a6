"""Figures for the lab notebooks (and the slides' figure script), and the runs they are drawn from.

Each `plot_*` function takes real minivllm objects (a KV cache manager and its sequences, a
scheduler's `StepTrace`s, `RequestOutput`s) or plain numbers, draws one matplotlib figure and
returns it. The notebooks stay thin: they build an engine, call `run_workload`, and plot.

    from minivllm import viz
    run = viz.run_workload(llm.llm_engine, [viz.Arrival(prompt, params, step=3), ...])
    viz.plot_gantt({"continuous": run.trace})

The notebooks' small-settings switch lives here too: `MINIVLLM_NOTEBOOK_SMALL=1` (the default
without a CUDA device) makes every notebook pick tiny models (`random:tiny-*`, or the embedded
SmolLM2-135M where real text or real compute matters) and workloads, so that each runs in a
minute or less on a laptop CPU; `MINIVLLM_NOTEBOOK_SMALL=0` (the default on a GPU) uses
`random:qwen3-0.6b` and workloads big enough for the timings to mean something.

This module imports neither Triton nor the model stack, so a notebook can import it before
deciding whether Triton runs compiled or in its interpreter.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap, to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from minivllm.core.kv_cache_manager import KVCacheManager, cdiv
from minivllm.core.scheduler import StepTrace
from minivllm.outputs import RequestOutput
from minivllm.sampling_params import SamplingParams
from minivllm.sequence import Sequence

if TYPE_CHECKING:
    from minivllm.engine.llm_engine import LLMEngine

SMALL_ENV = "MINIVLLM_NOTEBOOK_SMALL"

PREFILL_COLOR = "tab:orange"
DECODE_COLOR = "tab:blue"
PREEMPT_COLOR = "tab:red"
FREE_COLOR = (0.94, 0.94, 0.94)

_run_ids = itertools.count()


def small_settings() -> bool:
    """Whether the notebooks should use tiny models and workloads.

    `MINIVLLM_NOTEBOOK_SMALL=1` or `0` decides; unset, it is on without a CUDA device.
    """
    value = os.environ.get(SMALL_ENV)
    if value is None:
        import torch

        return not torch.cuda.is_available()
    return value.strip().lower() not in ("0", "false", "no", "off", "")


def seq_color(index: int) -> tuple[float, float, float]:
    """The colour of the index-th sequence in every figure of this module."""
    return to_rgb(plt.get_cmap("tab10")(index % 10))


def _lighten(color: tuple[float, float, float], amount: float = 0.7) -> tuple[float, ...]:
    return tuple(c + (1.0 - c) * amount for c in color)


# -- running a workload step by step -----------------------------------------------------------
@dataclass
class Arrival:
    """A request that reaches the engine before step `step` (0: before the first step)."""
    prompt: str | list[int]
    params: SamplingParams
    step: int = 0


@dataclass
class StepRecord:
    """What one `LLMEngine.step()` did, measured right after it."""
    seconds: float
    num_prefill_tokens: int
    num_decode_tokens: int
    num_running: int
    num_waiting: int
    slots_allocated: int
    """KV slots handed out to sequences: blocks in use times block_size."""
    slots_filled: int
    """KV slots that hold a token's K and V (the running sequences' computed tokens)."""


@dataclass
class EngineRun:
    steps: list[StepRecord]
    trace: list[StepTrace]
    """The scheduler's own record of the same steps (for Gantt charts)."""
    outputs: list[RequestOutput]
    """The final output of each arrival, in the order of the arrivals."""
    seconds: float
    num_preemptions: int

    @property
    def num_output_tokens(self) -> int:
        return sum(len(c.token_ids) for out in self.outputs for c in out.outputs)

    @property
    def output_tokens_per_s(self) -> float:
        return self.num_output_tokens / self.seconds

    def ttft(self) -> np.ndarray:
        """Seconds from each request's arrival to its first token."""
        return np.array([o.metrics.first_token_time - o.metrics.arrival_time
                         for o in self.outputs])

    def tpot(self) -> np.ndarray:
        """Mean seconds per output token after the first, per request with two or more."""
        return np.array([(o.metrics.finished_time - o.metrics.first_token_time)
                         / (len(o.outputs[0].token_ids) - 1)
                         for o in self.outputs if len(o.outputs[0].token_ids) > 1])


def run_workload(engine: LLMEngine, arrivals: Seq[Arrival]) -> EngineRun:
    """Step `engine` until every arrival has finished, adding each at its step.

    Turns on the scheduler's trace, times every step, and records after each step how much
    KV cache is handed out and how much of it holds tokens. A step with nothing to run (all
    requests done, the next one not arrived yet) is recorded as an empty step.
    """
    scheduler, kv = engine.scheduler, engine.kv_cache_manager
    scheduler.record_trace = True
    first_trace, first_preemptions = len(scheduler.trace), scheduler.num_preemptions
    pending = sorted(range(len(arrivals)), key=lambda i: arrivals[i].step)
    run_id = next(_run_ids)
    request_ids = [f"run{run_id}-{i}" for i in range(len(arrivals))]
    finished: dict[str, RequestOutput] = {}
    steps: list[StepRecord] = []
    start = time.perf_counter()
    while pending or engine.has_unfinished_requests():
        while pending and arrivals[pending[0]].step <= len(steps):
            i = pending.pop(0)
            engine.add_request(request_ids[i], arrivals[i].prompt, arrivals[i].params)
        step_start = time.perf_counter()
        for output in engine.step():
            if output.finished:
                finished[output.request_id] = output
        seconds = time.perf_counter() - step_start
        scheduled = scheduler.last_output.scheduled
        steps.append(StepRecord(
            seconds=seconds,
            num_prefill_tokens=sum(s.num_new_tokens for s in scheduled if s.is_prefill),
            num_decode_tokens=sum(s.num_new_tokens for s in scheduled if not s.is_prefill),
            num_running=len(scheduler.running), num_waiting=len(scheduler.waiting),
            slots_allocated=(kv.num_blocks - kv.num_free_blocks) * kv.block_size,
            slots_filled=sum(seq.num_computed_tokens for seq in scheduler.running)))
    return EngineRun(steps=steps, trace=scheduler.trace[first_trace:],
                     outputs=[finished[rid] for rid in request_ids],
                     seconds=time.perf_counter() - start,
                     num_preemptions=scheduler.num_preemptions - first_preemptions)


# -- lab 0: what the KV cache costs --------------------------------------------------------------
def plot_kv_cache_size(bytes_per_token: dict[str, int], context_lens: Seq[int],
                       budget_gib: float) -> Figure:
    """Left: one sequence's KV cache (GiB) against its context length, per model. Right: how
    many sequences of each length fit in a `budget_gib` GiB cache."""
    fig, (ax_size, ax_fit) = plt.subplots(1, 2, figsize=(12, 3.8))
    lengths = np.asarray(context_lens, dtype=np.float64)
    for name, per_token in bytes_per_token.items():
        ax_size.plot(lengths, lengths * per_token / 2**30, "o-", label=name)
        ax_fit.plot(lengths, np.floor(budget_gib * 2**30 / (lengths * per_token)), "o-",
                    label=name)
    for ax in (ax_size, ax_fit):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("context length (tokens)")
        ax.legend(fontsize=8)
    ax_size.set(ylabel="GiB", title="KV cache of one sequence")
    ax_fit.set(ylabel="sequences", title=f"sequences that fit in {budget_gib:g} GiB of KV cache")
    fig.tight_layout()
    return fig


# -- lab 1: block tables and the pool ------------------------------------------------------------
def _filled_slots(seq: Sequence, logical_block: int, block_size: int) -> int:
    return min(block_size, max(0, seq.num_computed_tokens - logical_block * block_size))


def plot_kv_blocks(manager: KVCacheManager, seqs: Seq[Sequence], title: str = "",
                   blocks_per_row: int = 8) -> Figure:
    """Left: each sequence's block table (logical block -> physical block id). Right: the
    physical pool, one strip of `block_size` slots per block, coloured by the sequence that
    owns it: dark where a slot holds a token's K/V (`num_computed_tokens`), light where it is
    handed out but still empty, grey where the block is free. A block in several tables
    (shared, e.g. by prefix caching) is outlined in black."""
    block_size, num_blocks = manager.block_size, manager.num_blocks
    num_rows = cdiv(num_blocks, blocks_per_row)
    pool = np.ones((num_rows, blocks_per_row * block_size, 3))
    pool[:, :] = FREE_COLOR
    owners: dict[int, list[int]] = {}
    widest = max([len(s.block_table) for s in seqs] + [1])
    tables = np.ones((max(len(seqs), 1), widest * block_size, 3))
    for index, seq in enumerate(seqs):
        color = seq_color(index)
        for logical, physical in enumerate(seq.block_table):
            owners.setdefault(physical, []).append(index)
            filled = _filled_slots(seq, logical, block_size)
            row, col = divmod(physical, blocks_per_row)
            strip = pool[row, col * block_size:(col + 1) * block_size]
            strip[:] = _lighten(color)
            strip[:filled] = color
            table_strip = tables[index, logical * block_size:(logical + 1) * block_size]
            table_strip[:] = _lighten(color)
            table_strip[:filled] = color

    fig, (ax_tables, ax_pool) = plt.subplots(
        1, 2, figsize=(12, 0.5 + 0.45 * max(num_rows, len(seqs), 4)),
        gridspec_kw={"width_ratios": [max(widest, 2), blocks_per_row]})
    ax_tables.imshow(tables, aspect="auto", interpolation="nearest")
    for index, seq in enumerate(seqs):
        for logical, physical in enumerate(seq.block_table):
            ax_tables.text((logical + 0.5) * block_size - 0.5, index, str(physical),
                           ha="center", va="center", fontsize=8,
                           bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
    ax_tables.set_xticks([(i + 0.5) * block_size - 0.5 for i in range(widest)],
                         [str(i) for i in range(widest)])
    ax_tables.set_yticks(range(len(seqs)), [f"seq {s.seq_id}" for s in seqs])
    ax_tables.set_xlabel("logical block (text: physical block id)")
    ax_tables.set_title("block tables")

    ax_pool.imshow(pool, aspect="auto", interpolation="nearest")
    for block in range(num_blocks):
        row, col = divmod(block, blocks_per_row)
        shared = len(owners.get(block, [])) > 1
        ax_pool.add_patch(plt.Rectangle(
            (col * block_size - 0.5, row - 0.5), block_size, 1, fill=False,
            edgecolor="black" if shared else "white", linewidth=2.5 if shared else 1.5))
        ax_pool.text(col * block_size + 0.5, row, str(block), ha="left", va="center",
                     fontsize=7, bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
    ax_pool.set_xticks([])
    ax_pool.set_yticks([])
    used = num_blocks - manager.num_free_blocks
    ax_pool.set_title(f"physical pool: {used}/{num_blocks} blocks in use, "
                      f"{block_size} slots each")
    fig.suptitle(title or f"{type(manager).__name__}")
    fig.tight_layout()
    return fig


def plot_kv_usage(runs: dict[str, EngineRun]) -> Figure:
    """KV slots handed out vs slots holding tokens, and sequences running, step by step, for
    each run (e.g. `kv_allocator="reserved"` and `"paged"` on the same workload)."""
    fig, (ax_slots, ax_running) = plt.subplots(1, 2, figsize=(12, 4))
    for index, (name, run) in enumerate(runs.items()):
        color = plt.get_cmap("tab10")(index)
        steps = np.arange(len(run.steps))
        allocated = [s.slots_allocated for s in run.steps]
        filled = [s.slots_filled for s in run.steps]
        ax_slots.plot(steps, allocated, color=color, label=f"{name}: handed out")
        ax_slots.plot(steps, filled, color=color, linestyle="--", label=f"{name}: holding K/V")
        ax_slots.fill_between(steps, filled, allocated, color=color, alpha=0.15)
        ax_running.step(steps, [s.num_running for s in run.steps], where="post", color=color,
                        label=f"{name} ({len(run.steps)} steps)")
    ax_slots.set(xlabel="engine step", ylabel="KV cache slots (tokens)",
                 title="KV cache: handed out vs used (shaded: waste)")
    ax_running.set(xlabel="engine step", ylabel="sequences running",
                   title="sequences in the batch")
    ax_slots.legend(fontsize=8)
    ax_running.legend(fontsize=8)
    fig.tight_layout()
    return fig


# -- lab 2: PagedAttention -----------------------------------------------------------------------
def split_ranges(context_len: int, num_splits: int, block_n: int) -> list[tuple[int, int]]:
    """The [start, end) context range of each split, as `_paged_decode_kernel` computes it:
    whole tiles of block_n tokens per split, the last splits possibly empty (start >= end)."""
    tokens_per_split = cdiv(cdiv(context_len, num_splits), block_n) * block_n
    return [(k * tokens_per_split, min((k + 1) * tokens_per_split, context_len))
            for k in range(num_splits)]


def plot_decode_grid(context_lens: Seq[int], num_kv_heads: int, num_splits: int,
                     block_size: int, block_n: int) -> Figure:
    """The decode kernel's launch grid (num_seqs, num_kv_heads, num_splits): one row per
    (sequence, KV head) pair, one bar per split program over the context positions it reads.
    Thin lines mark KV blocks (each looked up in the block table), dashed lines BLOCK_N tiles."""
    rows = [(s, h) for s in range(len(context_lens)) for h in range(num_kv_heads)]
    fig, ax = plt.subplots(figsize=(12, 0.6 + 0.45 * len(rows)))
    split_colors = plt.get_cmap("Set2")
    longest = max(context_lens)
    for y, (s, h) in enumerate(rows):
        for k, (start, end) in enumerate(split_ranges(context_lens[s], num_splits, block_n)):
            if end <= start:
                ax.text(longest * 1.01, y, f"({s},{h},{k}) empty", va="center", fontsize=7,
                        color="gray")
                continue
            ax.barh(y, end - start, left=start, color=split_colors(k % 8), edgecolor="black")
            ax.text((start + end) / 2, y, f"({s},{h},{k})", ha="center", va="center",
                    fontsize=7)
    for x in range(0, longest + 1, block_size):
        ax.axvline(x, color="gray", linewidth=0.3)
    for x in range(0, longest + 1, block_n):
        ax.axvline(x, color="black", linewidth=0.8, linestyle="--")
    ax.set_yticks(range(len(rows)), [f"seq {s}, kv head {h}" for s, h in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, longest * 1.15)
    ax.set_xlabel("context position (thin: KV block, dashed: BLOCK_N tile)")
    num_programs = len(rows) * num_splits
    ax.set_title(f"grid = (num_seqs={len(context_lens)}, num_kv_heads={num_kv_heads}, "
                 f"num_splits={num_splits}): {num_programs} programs, labelled (seq, head, "
                 "split)")
    fig.tight_layout()
    return fig


def plot_online_softmax(scores: Seq[float], block_n: int) -> Figure:
    """One query row's scores read tile by tile, as the kernel reads them. Left: the scores and
    the running max m. Right: the running denominator l, rescaled to the final max, with and
    without the `alpha = exp(m_old - m_new)` correction: only the corrected one ends at the
    true softmax denominator."""
    s = np.asarray(scores, dtype=np.float64)
    tiles = range(0, len(s), block_n)
    m, l_fixed, l_wrong = -np.inf, 0.0, 0.0
    running_m, running_l, running_wrong = [], [], []
    for start in tiles:
        tile = s[start:start + block_n]
        m_new = max(m, tile.max())
        l_fixed = l_fixed * np.exp(m - m_new) + np.exp(tile - m_new).sum()
        l_wrong = l_wrong + np.exp(tile - m_new).sum()  # the classic bug: no rescale
        m = m_new
        running_m.append(m)
        running_l.append(l_fixed)
        running_wrong.append(l_wrong)
    true_l = np.exp(s - s.max()).sum()
    ends = [min(start + block_n, len(s)) for start in tiles]

    fig, (ax_s, ax_l) = plt.subplots(1, 2, figsize=(12, 3.5))
    ax_s.plot(s, ".", color="gray", label="scores")
    ax_s.step([0, *ends], [running_m[0], *running_m], where="pre", color=DECODE_COLOR,
              label="running max m")
    for end in ends[:-1]:
        ax_s.axvline(end, color="black", linestyle="--", linewidth=0.6)
    ax_s.set(xlabel="context position", title=f"tiles of {block_n} positions")
    ax_s.legend(fontsize=8)
    final = np.array(running_m)  # rescale each running l to the final max, to compare
    ax_l.plot(ends, np.array(running_l) * np.exp(final - s.max()), "o-", color=DECODE_COLOR,
              label="l with alpha rescale")
    ax_l.plot(ends, np.array(running_wrong) * np.exp(final - s.max()), "x--",
              color=PREEMPT_COLOR, label="l without rescale (bug)")
    ax_l.axhline(true_l, color="black", linewidth=0.8, label="true denominator")
    ax_l.set(xlabel="positions read", ylabel="sum of exp(s - max)",
             title="running softmax denominator")
    ax_l.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_bars(values: dict[str, float], ylabel: str, title: str, log: bool = False,
              reference: tuple[str, float] | None = None) -> Figure:
    """One bar per entry, its value printed on top; `reference` draws a labelled line (a
    tolerance, a roofline). On a log scale a zero is drawn as a stub at the bottom."""
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(values)), 3.5))
    names = list(values)
    heights = np.array([values[n] for n in names], dtype=np.float64)
    if log:
        positive = heights[heights > 0]
        heights = np.maximum(heights, positive.min() / 10 if positive.size else 1.0)
    bars = ax.bar(names, heights,
                  color=[plt.get_cmap("tab10")(i) for i in range(len(names))])
    ax.bar_label(bars, labels=[f"{values[n]:,.0f}" if abs(values[n]) >= 100
                               else f"{values[n]:.3g}" for n in names], fontsize=8)
    if reference is not None:
        ax.axhline(reference[1], color="black", linestyle="--", label=reference[0])
        ax.legend(fontsize=8)
    if log:
        ax.set_yscale("log")
    ax.set(ylabel=ylabel, title=title)
    ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    return fig


def plot_bandwidth(batch_sizes: Seq[int], series: dict[str, Seq[float]],
                   roofline_gbs: float, context_len: int) -> Figure:
    """Decode attention's achieved memory bandwidth (GB/s of K/V read) per batch size, for
    each implementation, under the roofline (the device's copy bandwidth)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, gbs in series.items():
        ax.plot(batch_sizes, gbs, "o-", label=name)
    ax.axhline(roofline_gbs, color="black", linestyle="--",
               label=f"roofline: copy bandwidth {roofline_gbs:.0f} GB/s")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="sequences in the batch", ylabel="K/V bytes read per second (GB/s)",
           title=f"paged decode attention, context {context_len} tokens", ylim=(0, None))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# -- lab 3: schedulers ---------------------------------------------------------------------------
def plot_gantt(traces: dict[str, Seq[StepTrace]]) -> Figure:
    """One chart per trace: a row per sequence (in arrival order), a column per step, orange
    where the sequence ran prompt tokens, blue where it decoded, a red cross where it was
    preempted. All charts share the step axis, so the faster schedule is visibly shorter."""
    longest = max(len(t) for t in traces.values())
    fig, axes = plt.subplots(len(traces), 1, squeeze=False, sharex=True,
                             figsize=(12, 0.8 + sum(2.0 + 0.12 * _num_seqs(t)
                                                    for t in traces.values())))
    cmap = ListedColormap(["white", PREFILL_COLOR, DECODE_COLOR])
    for ax, (name, trace) in zip(axes[:, 0], traces.items(), strict=True):
        rows = {seq_id: r for r, seq_id in enumerate(sorted(_seq_ids(trace)))}
        grid = np.zeros((max(len(rows), 1), longest))
        crosses = []
        for x, step in enumerate(trace):
            for seq_id, _ in step.prefill:
                grid[rows[seq_id], x] = 1
            for seq_id in step.decode:
                grid[rows[seq_id], x] = 2
            crosses += [(x, rows[seq_id]) for seq_id in step.preempted]
        ax.imshow(grid, cmap=cmap, vmin=0, vmax=2, aspect="auto", interpolation="nearest")
        if crosses:
            xs, ys = zip(*crosses, strict=True)
            ax.scatter(xs, ys, marker="x", color=PREEMPT_COLOR, s=40, zorder=3)
        ax.set_ylabel("sequence")
        num_preempted = sum(len(s.preempted) for s in trace)
        ax.set_title(f"{name}: {len(trace)} steps, {num_preempted} preemptions")
    axes[-1, 0].set_xlabel("engine step")
    axes[0, 0].legend(handles=[Patch(color=PREFILL_COLOR, label="prefill"),
                               Patch(color=DECODE_COLOR, label="decode"),
                               plt.Line2D([], [], marker="x", color=PREEMPT_COLOR,
                                          linestyle="", label="preempted")],
                      loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def _seq_ids(trace: Seq[StepTrace]) -> set[int]:
    return {seq_id for step in trace for seq_id in
            [*(p[0] for p in step.prefill), *step.decode, *step.preempted]}


def _num_seqs(trace: Seq[StepTrace]) -> int:
    return len(_seq_ids(trace))


def plot_latency(runs: dict[str, EngineRun]) -> Figure:
    """Throughput and latency side by side: output tokens per second, then the distributions
    of time to first token (TTFT) and time per output token (TPOT) over the requests."""
    names = list(runs)
    colors = [plt.get_cmap("tab10")(i) for i in range(len(names))]
    fig, (ax_tput, ax_ttft, ax_tpot) = plt.subplots(1, 3, figsize=(13, 3.8))
    bars = ax_tput.bar(names, [runs[n].output_tokens_per_s for n in names], color=colors)
    ax_tput.bar_label(bars, labels=[f"{len(runs[n].steps)} steps" for n in names], fontsize=8)
    ax_tput.set(ylabel="output tokens / s", title="throughput")
    for ax, metric, title in ((ax_ttft, "ttft", "time to first token"),
                              (ax_tpot, "tpot", "time per output token")):
        data = [getattr(runs[n], metric)() * 1e3 for n in names]
        box = ax.boxplot(data, patch_artist=True)
        ax.set_xticks(range(1, len(names) + 1), names)
        for patch, color in zip(box["boxes"], colors, strict=True):
            patch.set_facecolor(_lighten(to_rgb(color), 0.4))
        ax.set(ylabel="ms", title=title)
    fig.tight_layout()
    return fig


# -- lab 4: the server ---------------------------------------------------------------------------
def plot_latency_histograms(ttft_s: Seq[float], itl_s: Seq[float], title: str = "") -> Figure:
    """Histograms of time to first token and inter-token latency (the gaps between a stream's
    chunks), in milliseconds, with the median and p99 marked, as `vllm bench serve` reports."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for ax, values, name, color in ((axes[0], ttft_s, "time to first token", PREFILL_COLOR),
                                    (axes[1], itl_s, "inter-token latency", DECODE_COLOR)):
        ms = np.asarray(values, dtype=np.float64) * 1e3
        ax.hist(ms, bins=30, color=color, alpha=0.8)
        for q, style in ((50, "-"), (99, "--")):
            value = np.percentile(ms, q)
            ax.axvline(value, color="black", linestyle=style, label=f"p{q}: {value:.1f} ms")
        ax.set(xlabel="ms", ylabel="count", title=f"{name} ({len(ms)} samples)")
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# -- lab 5: extensions ---------------------------------------------------------------------------
def plot_step_timeline(runs: dict[str, EngineRun]) -> Figure:
    """For each run, tokens per step (prompt tokens stacked on decode tokens) above, and each
    step's duration below: every running stream waits one step between two tokens, so the
    step time is the inter-token latency they all see."""
    fig, axes = plt.subplots(2, len(runs), squeeze=False, sharey="row",
                             figsize=(6 * len(runs), 5.5))
    for col, (name, run) in enumerate(runs.items()):
        steps = np.arange(len(run.steps))
        decode = np.array([s.num_decode_tokens for s in run.steps])
        prefill = np.array([s.num_prefill_tokens for s in run.steps])
        ax_tokens, ax_time = axes[0, col], axes[1, col]
        ax_tokens.bar(steps, decode, color=DECODE_COLOR, label="decode tokens")
        ax_tokens.bar(steps, prefill, bottom=decode, color=PREFILL_COLOR, label="prompt tokens")
        ax_tokens.set(title=name, ylabel="tokens in the step")
        ax_tokens.legend(fontsize=8)
        ax_time.bar(steps, [s.seconds * 1e3 for s in run.steps], color="gray")
        ax_time.set(xlabel="engine step", ylabel="step time (ms)")
    fig.tight_layout()
    return fig


def plot_prefix_caching(runs: dict[str, EngineRun]) -> Figure:
    """Per request: prompt tokens found in the prefix cache vs computed (left, one group of
    bars per run), and time to first token (right)."""
    fig, (ax_tokens, ax_ttft) = plt.subplots(1, 2, figsize=(12, 3.8))
    width = 0.8 / len(runs)
    for i, (name, run) in enumerate(runs.items()):
        x = np.arange(len(run.outputs)) + i * width
        cached = np.array([o.num_cached_tokens for o in run.outputs])
        total = np.array([len(o.prompt_token_ids) for o in run.outputs])
        color = plt.get_cmap("tab10")(i)
        ax_tokens.bar(x, total - cached, width, color=color, label=f"{name}: computed")
        ax_tokens.bar(x, cached, width, bottom=total - cached, color=_lighten(to_rgb(color)),
                      edgecolor=color, hatch="//", label=f"{name}: from the cache")
        hit_rate = cached.sum() / total.sum()
        ax_ttft.plot(np.arange(len(run.outputs)), run.ttft() * 1e3, "o-", color=color,
                     label=f"{name} (hit rate {hit_rate:.0%})")
    ax_tokens.set(xlabel="request", ylabel="prompt tokens", title="prompt tokens per request")
    ax_tokens.set_ylim(0, ax_tokens.get_ylim()[1] * 1.4)  # room for the legend
    ax_tokens.legend(fontsize=8, ncols=2, loc="upper center")
    ax_ttft.set(xlabel="request", ylabel="ms", title="time to first token", ylim=(0, None))
    ax_ttft.legend(fontsize=8)
    fig.tight_layout()
    return fig
