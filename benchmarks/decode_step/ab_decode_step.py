"""Decode-step time of two minivllm trees on one machine: does a change make steps faster?

Step times differ by a few percent between two machines of the same kind, so a record made
yesterday cannot judge today's change. This runs `bench_decode_step`'s measurement with a base
tree and with this checkout in turn (base, change, base, change, ...), each in its own process
(its own CUDA graphs and Triton compiles) on the same machine, and records for each batch and
context the median overlapped step of each, their ratio and the roofline.

    mkdir -p .ab-base && git archive main minivllm | tar -x -C .ab-base   # here (git-ignored)
    python -m benchmarks.decode_step.ab_decode_step --base .ab-base --base-revision main
    python -m benchmarks.decode_step.ab_decode_step --base DIR --smoke    # tiny CPU run (CI)

`--base` is the folder that holds the base's `minivllm/` package. The measuring code is this
checkout's, so the base must have the engine API it calls (`execute_model`, `Sequence`...).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from benchmarks.common import copy_bandwidth_gbs, device_slug, print_table, write_result
from benchmarks.decode_step.bench_decode_step import build_llm, measure, parse_args

ROOT = Path(__file__).resolve().parents[2]
ROWS_PREFIX = "AB_ROWS "


def run_worker(args: argparse.Namespace) -> None:
    """In the child: measure with whichever minivllm PYTHONPATH put first; print the rows."""
    import minivllm

    torch.manual_seed(0)  # the same random weights in both trees
    rows = measure(build_llm(args), args, args.bandwidth_gbs)
    print(ROWS_PREFIX + json.dumps({"package": minivllm.__file__, "rows": rows}), flush=True)


def time_tree(tree: Path, bandwidth_gbs: float) -> dict:
    """One process with `tree`'s minivllm first on the path (this checkout's benchmarks).

    It runs in `tree`: `python -m` puts the working folder first on sys.path, ahead of
    PYTHONPATH, so from this checkout's folder the change would be timed twice."""
    path = [str(tree), str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.decode_step.ab_decode_step", *sys.argv[1:],
         "--worker", "--bandwidth-gbs", str(bandwidth_gbs)],
        cwd=tree, env={**os.environ, "PYTHONPATH": os.pathsep.join(path)},
        stdout=subprocess.PIPE, text=True, check=True)
    line = next(ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith(ROWS_PREFIX))
    result = json.loads(line.removeprefix(ROWS_PREFIX))
    package = Path(result["package"]).resolve()
    if not package.is_relative_to(tree):  # the wrong tree would make the A/B moot
        raise RuntimeError(f"timed {package}, not the minivllm of {tree}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="Decode-step A/B of two minivllm trees")
    parser.add_argument("--base", type=Path, required=True,
                        help="folder holding the base's minivllm/ package")
    parser.add_argument("--base-revision", default=None, help="recorded with the result")
    parser.add_argument("--rounds", type=int, default=2, help="base, change pairs")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bandwidth-gbs", type=float, default=None, help=argparse.SUPPRESS)
    args = parse_args(parser)
    if args.worker:
        run_worker(args)
        return
    args.base = args.base.resolve()
    if not (args.base / "minivllm" / "__init__.py").is_file():
        parser.error(f"{args.base} holds no minivllm/ package")

    bandwidth_gbs = copy_bandwidth_gbs()
    runs: dict[str, list[list[dict]]] = {"base": [], "change": []}
    packages = {}
    for _ in range(args.rounds):
        for label, tree in (("base", args.base), ("change", ROOT)):
            result = time_tree(tree, bandwidth_gbs)
            runs[label].append(result["rows"])
            packages[label] = result["package"]

    rows = []
    for i, row in enumerate(runs["base"][0]):
        base = [r[i]["overlapped_step_ms"] for r in runs["base"]]
        change = [r[i]["overlapped_step_ms"] for r in runs["change"]]
        base_ms, change_ms = statistics.median(base), statistics.median(change)
        rows.append({"batch": row["batch"], "context": row["context"],
                     "roofline_ms": row["roofline_ms"],
                     "base_overlapped_ms": base_ms, "change_overlapped_ms": change_ms,
                     "change_over_base": change_ms / base_ms,
                     "base_fraction_of_roofline": row["roofline_ms"] / base_ms,
                     "change_fraction_of_roofline": row["roofline_ms"] / change_ms,
                     "base_rounds_ms": base, "change_rounds_ms": change})
    record = {"benchmark": "decode_step_ab",
              "config": {k: v for k, v in vars(args).items()
                         if k not in ("worker", "bandwidth_gbs")}
              | {"base": str(args.base), "packages": packages},
              "figures": {"bandwidth_gbs": bandwidth_gbs, "rows": rows}}
    path = write_result(f"decode_step_ab_{'smoke' if args.smoke else device_slug()}", record)
    print_table(rows, ["batch", "context", "base_overlapped_ms", "change_overlapped_ms",
                       "change_over_base", "roofline_ms"])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
