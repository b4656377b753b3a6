"""Scheduling figures: who ran at each step (lab 3), latency, and the extensions' effects (lab 5).

They read the scheduler's `StepTrace`s and `run_workload`'s `EngineRun`s: a Gantt chart of
prefill, decode and preemption per sequence, throughput with TTFT/TPOT distributions, tokens
and time per step (chunked prefill), and prefix-cache hits per request.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap, to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from minivllm.core.scheduler import StepTrace
from minivllm.viz.style import DECODE_COLOR, PREEMPT_COLOR, PREFILL_COLOR, lighten
from minivllm.viz.workload import EngineRun


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
            patch.set_facecolor(lighten(to_rgb(color), 0.4))
        ax.set(ylabel="ms", title=title)
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
        ax_tokens.bar(x, cached, width, bottom=total - cached, color=lighten(to_rgb(color)),
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
