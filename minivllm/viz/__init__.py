"""Figures for the lab notebooks (and the slides' figure script), and the runs they are drawn from.

Each `plot_*` function takes real minivllm objects (a KV cache manager and its sequences, a
scheduler's `StepTrace`s, `RequestOutput`s) or plain numbers, draws one matplotlib figure and
returns it. The notebooks stay thin: they build an engine, call `run_workload`, and plot.

    from minivllm import viz
    run = viz.run_workload(llm.llm_engine, [viz.Arrival(prompt, params, step=3), ...])
    viz.plot_gantt({"continuous": run.trace})

One file per thing shown, every name re-exported here:

- `workload`: `run_workload` and its records (`Arrival`, `StepRecord`, `EngineRun`), and the
  small-settings switch (`small_settings`, `SMALL_ENV`);
- `style`: the shared colours (`seq_color`, `PREFILL_COLOR`, `DECODE_COLOR`, ...);
- `charts`: charts of plain numbers (`plot_bars`, `plot_latency_histograms`);
- `kv_cache`: labs 0 and 1, the KV cache's size, block tables and pool, and use over a run;
- `attention`: lab 2, the decode kernel's grid and splits, online softmax, bandwidth;
- `scheduling`: labs 3 and 5, Gantt charts, latency, step timelines, prefix-cache hits.

The notebooks' small-settings switch: `MINIVLLM_NOTEBOOK_SMALL=1` (the default without a CUDA
device) makes every notebook pick tiny models (`random:tiny-*`, or the embedded SmolLM2-135M
where real text or real compute matters) and workloads, so that each runs in a minute or less
on a laptop CPU; `MINIVLLM_NOTEBOOK_SMALL=0` (the default on a GPU) uses `random:qwen3-0.6b`
and workloads big enough for the timings to mean something.

This package imports neither Triton nor the model stack, so a notebook can import it before
deciding whether Triton runs compiled or in its interpreter.
"""

from minivllm.viz.attention import (
    plot_bandwidth,
    plot_decode_grid,
    plot_online_softmax,
    split_ranges,
)
from minivllm.viz.charts import plot_bars, plot_latency_histograms
from minivllm.viz.kv_cache import plot_kv_blocks, plot_kv_cache_size, plot_kv_usage
from minivllm.viz.scheduling import (
    plot_gantt,
    plot_latency,
    plot_prefix_caching,
    plot_step_timeline,
)
from minivllm.viz.style import DECODE_COLOR, FREE_COLOR, PREEMPT_COLOR, PREFILL_COLOR, seq_color
from minivllm.viz.workload import (
    SMALL_ENV,
    Arrival,
    EngineRun,
    StepRecord,
    run_workload,
    small_settings,
)

__all__ = [
    "DECODE_COLOR",
    "FREE_COLOR",
    "PREEMPT_COLOR",
    "PREFILL_COLOR",
    "SMALL_ENV",
    "Arrival",
    "EngineRun",
    "StepRecord",
    "plot_bandwidth",
    "plot_bars",
    "plot_decode_grid",
    "plot_gantt",
    "plot_kv_blocks",
    "plot_kv_cache_size",
    "plot_kv_usage",
    "plot_latency",
    "plot_latency_histograms",
    "plot_online_softmax",
    "plot_prefix_caching",
    "plot_step_timeline",
    "run_workload",
    "seq_color",
    "small_settings",
    "split_ranges",
]
