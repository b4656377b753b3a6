"""`python -m minivllm.labs grade labN [--json results.json]`: score one lab.

Runs the lab's graded checks, `tests/labs/test_labN.py`, with pytest in a subprocess (so a
crash in the code under test cannot take the grader down) and the `points` plugin, then prints
a score table and, with `--json`, writes Gradescope's `results.json`:

    {"score": 17, "max_score": 20,
     "tests": [{"name": ..., "score": 3, "max_score": 3, "output": ...}, ...]}

The exit status is 0 whenever grading worked, however many points were lost; it is non-zero
only when grading itself broke (pytest could not collect the tests, say).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

LABS = ("lab0", "lab1", "lab2", "lab3", "lab4", "lab5")
PER_TEST_TIMEOUT_S = 300.0


class GradingError(RuntimeError):
    """Grading could not run (as opposed to: it ran and points were lost)."""


@dataclass
class CheckResult:
    name: str
    points: float
    passed: bool
    message: str
    output: str

    @property
    def score(self) -> float:
        return self.points if self.passed else 0.0


@dataclass
class LabResult:
    lab: str
    tests: list[CheckResult]
    minivllm_dir: str
    """The minivllm package the checks imported (the mutant runner checks it is its copy)."""

    @property
    def score(self) -> float:
        return sum(t.score for t in self.tests)

    @property
    def max_score(self) -> float:
        return sum(t.points for t in self.tests)

    def to_gradescope(self) -> dict:
        return {
            "score": self.score,
            "max_score": self.max_score,
            "tests": [{"name": t.name, "score": t.score, "max_score": t.points,
                       "output": "passed" if t.passed else t.output or t.message}
                      for t in self.tests],
        }


def run_checks(lab: str, root: Path, extra_args: tuple[str, ...] = (),
               env: dict[str, str] | None = None) -> LabResult:
    """Run `tests/labs/test_<lab>.py` of the checkout at root and collect the points."""
    if lab not in LABS:
        raise GradingError(f"unknown lab {lab!r}; choose one of {', '.join(LABS)}")
    test_file = root / "tests" / "labs" / f"test_{lab}.py"
    if not test_file.is_file():
        raise GradingError(f"{test_file} does not exist")
    with tempfile.TemporaryDirectory(prefix="minivllm-grade-") as tmp:
        points_json = Path(tmp) / "points.json"
        cmd = [sys.executable, "-m", "pytest", str(test_file.relative_to(root)),
               "-p", "minivllm.labs.points", "--points-json", str(points_json),
               "--per-test-timeout", str(PER_TEST_TIMEOUT_S), "-q", "-p", "no:cacheprovider",
               "--tb=short", *extra_args]
        child_env = {**os.environ, **(env or {})}
        # Import minivllm from this checkout, whatever else is installed.
        child_env["PYTHONPATH"] = os.pathsep.join(
            [str(root), *filter(None, [child_env.get("PYTHONPATH")])])
        proc = subprocess.run(cmd, cwd=root, env=child_env, capture_output=True, text=True)
        # pytest exits 0 (all passed) or 1 (some failed) when it ran the tests.
        if proc.returncode not in (0, 1) or not points_json.is_file():
            raise GradingError(f"pytest exited with status {proc.returncode} while grading "
                               f"{lab}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
        data = json.loads(points_json.read_text())
    tests = [CheckResult(t["name"], t["points"], t["passed"], t["message"], t["output"])
             for t in data["tests"]]
    if not tests:
        raise GradingError(f"no graded test was collected from {test_file}")
    return LabResult(lab, tests, data["minivllm"])


def format_table(result: LabResult, max_message: int = 200) -> str:
    name_width = max(len(t.name) for t in result.tests)
    lines = [f"{'test':<{name_width}}  points  result  message"]
    for t in result.tests:
        points = f"{t.score:g}/{t.points:g}"
        status = "pass" if t.passed else "FAIL"
        message = t.message if len(t.message) <= max_message else t.message[:max_message] + "…"
        lines.append(f"{t.name:<{name_width}}  {points:>6}  {status:<6}  {message}")
    lines.append(f"{'total':<{name_width}}  {result.score:g}/{result.max_score:g}")
    return "\n".join(lines)


def main(lab: str, root: Path, json_path: Path | None) -> int:
    try:
        result = run_checks(lab, root)
    except GradingError as e:
        print(f"grading broke: {e}", file=sys.stderr)
        return 2
    print(f"{lab}: {result.score:g} / {result.max_score:g} points\n")
    print(format_table(result))
    if json_path is not None:
        json_path.write_text(json.dumps(result.to_gradescope(), indent=1))
        print(f"\nwrote {json_path}")
    return 0
