"""Helpers every benchmark shares: what ran where, timing, and the JSON record it writes.

A benchmark builds one record (config, figures) and calls `write_result(name, record)`, which
adds `device_info()` and writes `benchmarks/results/<name>.json`; so every figure we quote can
be traced to a device, library versions and a git revision.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _git_revision() -> str | None:
    """HEAD, unless `MINIVLLM_GIT_REVISION` names the revision: the device machine gets a copy
    of the tree whose .git may be stale, so its runs pass `$(git rev-parse HEAD)` from here."""
    if os.environ.get("MINIVLLM_GIT_REVISION"):
        return os.environ["MINIVLLM_GIT_REVISION"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def device_info() -> dict[str, Any]:
    """Device name and the versions that shape the numbers (transformers: the peer's)."""
    import transformers
    import triton

    info: dict[str, Any] = {
        "device": "cpu",
        "device_name": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "git_revision": _git_revision(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(device="cuda", device_name=props.name, cuda=torch.version.cuda,
                    num_sms=props.multi_processor_count,
                    memory_gib=round(props.total_memory / 2**30, 1))
    return info


def kernel_benchmark_device(parser: argparse.ArgumentParser, smoke: bool) -> str:
    """"cuda", or "cpu" for a `--smoke` run, whose Triton kernels then run in the interpreter:
    call it before the kernels are imported (TRITON_INTERPRET is read when they are defined)."""
    if torch.cuda.is_available():
        return "cuda"
    if not smoke:
        parser.error("the full benchmark needs a CUDA GPU; use --smoke on a CPU")
    os.environ.setdefault("TRITON_INTERPRET", "1")
    return "cpu"


def device_slug() -> str:
    """A file-name-safe device name: 'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def time_ms(fn: Callable[[], object], reps: int = 5) -> float:
    """Median milliseconds per call of `fn`.

    On CUDA: `triton.testing.do_bench`, which times with CUDA events and flushes the L2 cache
    between calls, so every call reads its inputs from memory as a real step would. On the CPU
    (smoke runs only): the median of `reps` wall-clock calls after one warm-up.
    """
    if torch.cuda.is_available():
        import triton.testing

        return triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median")
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def cuda_graph_ms(fn: Callable[[], object]) -> float | None:
    """Median milliseconds per replay of `fn` captured in a CUDA graph (None without CUDA).

    A graph replay launches all of `fn`'s kernels with one call, so this is the device time
    without Python's launch overhead: what an engine that replays decode steps in CUDA graphs
    (vLLM, and ours) pays. It matters for short kernels: a Triton launch costs tens of
    microseconds of CPU time, as much as a whole decode kernel on a small batch.
    """
    if not torch.cuda.is_available():
        return None
    fn()  # compile and allocate outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return time_ms(graph.replay)


def graph_or_wall_ms(fn: Callable[[], object]) -> float:
    """How the kernel benchmarks time a call: `cuda_graph_ms` on a GPU (the device time a
    decode step's graph pays), the wall clock (`time_ms`) on a CPU, where only smoke runs go."""
    return cuda_graph_ms(fn) if torch.cuda.is_available() else time_ms(fn)


def copy_bandwidth_gbs(num_bytes: int = 2**30) -> float:
    """Device-to-device copy bandwidth in GB/s, counting bytes read plus bytes written: the
    memory roofline that bandwidth-bound kernels are held against."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    src = torch.empty(num_bytes, dtype=torch.uint8, device=device).random_()
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src))
    return 2 * num_bytes / ms / 1e6


def write_result(name: str, record: dict[str, Any]) -> Path:
    """Write `record` plus `device_info()` to benchmarks/results/<name>.json."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({**device_info(), **record}, indent=2) + "\n")
    return path


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Print rows as an aligned text table (floats with 3 significant digits)."""
    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3g}"
        return "-" if value is None else str(value)

    cells = [[fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    for r in cells:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)))
