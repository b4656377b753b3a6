"""Engine faults: a step that raises, and requests that could never fit the KV cache.

`MINIVLLM_TEST_FAIL_AT_STEP=k` makes the engine's k-th model step raise (after the scheduler
allocated its blocks, as a failing kernel would). What must follow:

* every request in flight fails: a 500 in OpenAI's envelope, or, for a stream whose 200 is
  already sent, an error event with code 500 and then `data: [DONE]`; none hangs;
* `/health` answers 503 while the process is still up;
* the process exits by itself with status 1 and a log that says why (the traceback once, then
  one line), so that a supervisor restarts it; with MINIVLLM_KEEP_ALIVE_ON_ENGINE_DEATH=1 it
  stays up instead, answering 503 on /health and 500 on generation requests.

Before the fault, on a pool smaller than `max_model_len`, a request whose prompt plus
`max_tokens` could never fit is refused with a 400 at once, streaming or not, instead of
waiting forever for blocks that will never be free.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.reliability.harness import (
    EXIT_TIMEOUT_S,
    LiveServer,
    sse_events,
    start_server,
    stop_server,
)

FAIL_AT_STEP = 80
"""Late enough for every request to have arrived, too early for any to finish (90 tokens)."""
NUM_BLOCKS = 6
"""6 blocks of 16 tokens: 96 tokens, below `max_model_len` (128)."""
SERVER_ARGS = ["--num-gpu-blocks-override", str(NUM_BLOCKS)]


@dataclass
class FaultReport:
    keep_alive: bool
    admission_refusals: list[int] = field(default_factory=list)
    """Statuses of the requests that could never fit (each must be 400)."""
    stream_endings: list[str] = field(default_factory=list)
    """How each stream in flight ended: `500 event` is right."""
    plain_statuses: list[int] = field(default_factory=list)
    """Statuses of the non-streaming requests in flight (each must be 500)."""
    health_after: list[int | None] = field(default_factory=list)
    """/health after the fault: 503, or None once the process is gone (which, without
    keep-alive, may come before the first look)."""
    after_death: list[int] = field(default_factory=list)
    """With keep-alive: statuses of new requests after the fault (each must be 500)."""
    exit_code: int | None = None
    exit_after_s: float | None = None
    log_explains: bool = False
    """The log has the injected error's traceback and the final one-line reason."""

    @property
    def ok(self) -> bool:
        exited = (self.exit_code == 1 and self.exit_after_s is not None
                  and self.exit_after_s < EXIT_TIMEOUT_S)
        return (bool(self.admission_refusals) and set(self.admission_refusals) == {400}
                and bool(self.stream_endings) and set(self.stream_endings) == {"500 event"}
                and bool(self.plain_statuses) and set(self.plain_statuses) == {500}
                and set(self.health_after) <= {503, None}
                and (503 in self.health_after or not self.keep_alive)
                and exited and self.log_explains
                and (not self.keep_alive or (bool(self.after_death)
                                             and set(self.after_death) == {500})))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok}


async def _stream_ending(http: httpx.AsyncClient, body: dict[str, Any]) -> str:
    async with http.stream("POST", "/v1/completions", json=body | {"stream": True}) as r:
        if r.status_code != 200:
            return f"HTTP {r.status_code}"
        events = sse_events([line async for line in r.aiter_lines()])
    errors = [e["error"]["code"] for e in events if isinstance(e, dict) and "error" in e]
    if not events or events[-1] != "[DONE]":
        return "no [DONE]"
    return f"{errors[0]} event" if errors else "finished"


async def _in_flight(server: LiveServer, report: FaultReport, num_streams: int,
                     num_plain: int) -> None:
    """Requests that fit (4 + 90 tokens of the 96) but need at least 90 steps each: the fault
    at step 80 meets them all, running, preempted or waiting."""
    body = {"prompt": [1, 2, 3, 4], "max_tokens": 90, "temperature": 0, "ignore_eos": True}
    async with server.async_http(timeout=EXIT_TIMEOUT_S) as http:
        streams = [_stream_ending(http, body) for _ in range(num_streams)]
        plain = [http.post("/v1/completions", json=body) for _ in range(num_plain)]
        results = await asyncio.gather(*streams, *plain)
    report.stream_endings = list(results[:num_streams])
    report.plain_statuses = [r.status_code for r in results[num_streams:]]


def _check_admission(server: LiveServer, report: FaultReport) -> None:
    """Prompt + max_tokens = 4 + 100 > 96 tokens of cache: refused before anything runs."""
    with server.http(timeout=10) as http:
        for route, core in (("/v1/completions", {"prompt": [1, 2, 3, 4]}),
                            ("/v1/chat/completions",
                             {"messages": [{"role": "user", "content": "x"}]})):
            for stream in (False, True):
                response = http.post(route, json=core | {"max_tokens": 100, "stream": stream})
                report.admission_refusals.append(response.status_code)


def run_engine_fault(folder: Path, keep_alive: bool, num_streams: int = 4,
                     num_plain: int = 4) -> FaultReport:
    report = FaultReport(keep_alive)
    env = {"MINIVLLM_TEST_FAIL_AT_STEP": str(FAIL_AT_STEP)}
    if keep_alive:
        env["MINIVLLM_KEEP_ALIVE_ON_ENGINE_DEATH"] = "1"
    name = "keep_alive" if keep_alive else "exit"
    server = start_server(SERVER_ARGS, folder / f"fault_{name}.log", env=env)
    try:
        _check_admission(server, report)
        asyncio.run(_in_flight(server, report, num_streams, num_plain))
        died = time.monotonic()
        report.health_after.append(server.health())
        if keep_alive:
            for _ in range(3):
                report.health_after.append(server.health())
                with server.http(timeout=10) as http:
                    report.after_death.append(http.post("/v1/completions", json={
                        "prompt": "x", "max_tokens": 2, "stream": True}).status_code)
                time.sleep(0.2)
            died = time.monotonic()
            report.exit_code = stop_server(server)  # Ctrl-C: still exits 1, the engine died
        else:
            with contextlib.suppress(subprocess.TimeoutExpired):
                report.exit_code = server.proc.wait(timeout=EXIT_TIMEOUT_S)
        report.exit_after_s = round(time.monotonic() - died, 2)
    finally:
        stop_server(server)
    log = server.log_text()
    report.log_explains = ("Traceback" in log and "Injected fault at engine step" in log
                           and "error: the engine loop died" in log)
    return report
