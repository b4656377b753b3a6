"""Run every reliability check and record the figures.

    python -m benchmarks.reliability.run          # full sizes: a few minutes on 2 CPU cores
    python -m benchmarks.reliability.run --ci     # the sizes tests/reliability runs in CI

Starts real servers on loopback (the tiny random model on the CPU), runs the three fuzzers, the
soak with disconnects and both engine-fault scenarios, prints a summary and writes
`benchmarks/results/reliability.json` (RELIABILITY.md quotes it). Exits with status 1 if any
check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.common import write_result
from benchmarks.reliability import faults, fuzz, soak
from benchmarks.reliability.harness import live_server


def run_all(folder: Path, fuzz_sizes: fuzz.FuzzSizes, soak_config: soak.SoakConfig
            ) -> dict[str, Any]:
    record: dict[str, Any] = {"fuzz_sizes": asdict(fuzz_sizes), "soak_config": asdict(soak_config)}
    start = time.monotonic()
    with live_server(fuzz.server_args(folder), folder / "fuzz.log") as server:
        reports = {"hostile": fuzz.run_hostile(server),
                   "openapi": fuzz.fuzz_openapi(server, fuzz_sizes.openapi_examples),
                   "sampling": fuzz.fuzz_sampling(server, fuzz_sizes.sampling_examples)}
    record["fuzz"] = {name: r.to_dict() for name, r in reports.items()}
    with live_server(soak.SERVER_ARGS, folder / "soak.log", api_key=None) as server:
        soak_report = asyncio.run(soak.run_soak(server, soak_config))
    record["soak"] = soak_report.to_dict()
    fault_reports = [faults.run_engine_fault(folder, keep_alive) for keep_alive in (False, True)]
    record["engine_faults"] = [r.to_dict() for r in fault_reports]

    fuzz_failures = sum(len(r.failures) for r in reports.values())
    record["summary"] = {
        "requests_sent": sum(r.cases for r in reports.values()) + soak_report.requests_sent,
        "fuzz_cases": sum(r.cases for r in reports.values()),
        "fuzz_failures": fuzz_failures,
        "soak_requests": soak_report.requests_sent,
        "soak_completed": soak_report.completed,
        "disconnects": soak_report.disconnected,
        "preemptions": soak_report.preemptions,
        "greedy_mismatches": len(soak_report.mismatches),
        "server_errors_5xx": sum(r.server_errors for r in reports.values())
        + soak_report.server_errors,
        "hangs": sum(r.hangs for r in reports.values()),
        "leaked_blocks": soak_report.leaked_blocks,
        "engine_fault_scenarios_ok": all(r.ok for r in fault_reports),
        "ok": fuzz_failures == 0 and soak_report.ok and all(r.ok for r in fault_reports),
        "duration_s": round(time.monotonic() - start, 1),
    }
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ci", action="store_true", help="Run the small CI sizes.")
    parser.add_argument("--output", default="reliability",
                        help="Name of the JSON record in benchmarks/results/.")
    args = parser.parse_args()
    sizes, config = ((fuzz.FuzzSizes.ci(), soak.SoakConfig.ci()) if args.ci
                     else (fuzz.FuzzSizes(), soak.SoakConfig()))
    with tempfile.TemporaryDirectory(prefix="minivllm-reliability-") as tmp:
        record = run_all(Path(tmp), sizes, config)
    path = write_result(args.output, record)
    for key, value in record["summary"].items():
        print(f"{key:28s} {value}")
    print(f"wrote {path}")
    sys.exit(0 if record["summary"]["ok"] else 1)


if __name__ == "__main__":
    main()
