"""PagedAttention figures (lab 2): the decode kernel's grid, online softmax, bandwidth.

`split_ranges` repeats the split-K arithmetic of `_paged_decode_kernel`
(`minivllm/attention/ops/triton_paged_decode.py`, after vLLM's `paged_attention_v2`) in plain
Python, so the grid can be drawn without importing Triton or running the kernel.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from minivllm.core.kv_cache_manager import cdiv
from minivllm.viz.style import DECODE_COLOR, PREEMPT_COLOR


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
