"""Charts of plain numbers: labelled bars (labs 0, 1, 2, 5) and latency histograms (lab 4).

They take dicts and lists the notebooks computed (tokens per second, errors, a server
benchmark's TTFTs and inter-token gaps), not minivllm objects, so any lab can use them.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from minivllm.viz.style import DECODE_COLOR, PREFILL_COLOR


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
