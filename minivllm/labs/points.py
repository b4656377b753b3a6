"""A pytest plugin that records, for every graded test, its points and its outcome.

The grader runs `pytest -p minivllm.labs.points --points-json FILE tests/labs/test_labN.py`
in a subprocess and reads FILE back: one entry per test with its points (the
`@pytest.mark.points(n)` marker; each parametrized case earns n), whether it passed, the first
line of its failure and the failure's text. `--per-test-timeout S` fails a test that runs
longer than S seconds (a scheduler that never finishes, a kernel stuck in a loop) instead of
hanging the grading; it uses SIGALRM, so it only works where that exists (Linux, macOS).
"""

from __future__ import annotations

import json
import signal
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

MAX_OUTPUT_CHARS = 4000


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("minivllm-labs")
    group.addoption("--points-json", default=None, help="write each test's points and outcome "
                    "to this JSON file")
    group.addoption("--per-test-timeout", type=float, default=0.0,
                    help="fail a test after this many seconds (0: no limit)")


class PointsRecorder:
    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self.tests: dict[str, dict[str, Any]] = {}

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            marker = item.get_closest_marker("points")
            self.tests[item.nodeid] = {
                "name": item.nodeid.split("::", 1)[-1],
                "nodeid": item.nodeid,
                "points": marker.args[0] if marker else 0,
                "passed": False,
                "message": "not run",
                "output": "",
            }

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        if self.timeout <= 0 or not hasattr(signal, "SIGALRM"):
            return (yield)

        def on_alarm(signum: int, frame: Any) -> None:
            raise TimeoutError(f"the test ran longer than {self.timeout:g} s")

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, self.timeout)
        try:
            return (yield)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item,
                                  call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        report = yield
        entry = self.tests.get(item.nodeid)
        if entry is None:
            return report
        if report.when == "call" and report.passed:
            entry.update(passed=True, message="")
        elif report.failed and (entry["passed"] or entry["message"] == "not run"):
            # The first failing phase (setup, call or teardown) explains the test's result.
            exc = call.excinfo.exconly() if call.excinfo else report.longreprtext
            entry.update(passed=False, message=(exc.strip().splitlines() or ["failed"])[0],
                         output=report.longreprtext[-MAX_OUTPUT_CHARS:])
        elif report.skipped and entry["message"] == "not run":
            entry.update(passed=False, message="skipped (a graded test earns nothing skipped)")
        return report

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        import minivllm

        self.path.write_text(json.dumps({
            "minivllm": str(Path(minivllm.__file__).resolve().parent),
            "tests": list(self.tests.values()),
        }, indent=1))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "points(n): the points a graded test is worth")
    path = config.getoption("--points-json")
    if path:
        recorder = PointsRecorder(Path(path), config.getoption("--per-test-timeout"))
        config.pluginmanager.register(recorder, "minivllm-points-recorder")
