"""KV cache figures: what it costs (lab 0), block tables and the pool (lab 1), its use over a run.

`plot_kv_blocks` draws a real `KVCacheManager` and its sequences, so the picture is exactly
what the allocator did; `plot_kv_usage` compares runs step by step (reserved vs paged in lab 1,
a roomy vs a tight cache in lab 3).
"""

from __future__ import annotations

from collections.abc import Sequence as Seq

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from minivllm.core.kv_cache_manager import KVCacheManager, cdiv
from minivllm.sequence import Sequence
from minivllm.viz.style import FREE_COLOR, lighten, seq_color
from minivllm.viz.workload import EngineRun


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
            strip[:] = lighten(color)
            strip[:filled] = color
            table_strip = tables[index, logical * block_size:(logical + 1) * block_size]
            table_strip[:] = lighten(color)
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
