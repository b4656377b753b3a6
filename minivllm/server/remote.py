"""`python -m minivllm.server` as a child process, driven from outside as a client would.

The lab-4 grader, the server tests and the reliability benchmarks all need the same four
things: start the real server on loopback, know when it is ready, talk to it as a client would
(`ServerClient`: httpx or the `openai` package, with the API key), and read its `/metrics`.
This module is that shared piece, as `RemoteOpenAIServer` in vLLM's `tests/utils.py` is for vLLM's
tests. `--port 0` lets the OS pick a free port; the server logs the URL it listens on, and the
launcher reads it from the log.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    import openai

LISTENING = re.compile(r"API server on (http://\S+)")
"""The start-up log line that carries the URL (`api_server.run_server` writes it)."""


def launch_server(args: list[str], log: Path, timeout: float,
                  env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """Start the server with `args` and `--port 0`, its output going to `log`; return the
    process and its URL once GET /health answers 200. Fail at once if it exits, or if it
    answers anything else: a server whose middleware raises answers 500 for ever, and the log's
    traceback says why sooner than a timeout would."""
    with log.open("w") as out:  # the child keeps its own copy of the file descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "minivllm.server", "--port", "0", *args],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    try:
        return proc, _wait_until_healthy(proc, log, timeout)
    except BaseException:
        stop_server(proc)
        raise


def _wait_until_healthy(proc: subprocess.Popen, log: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    url = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}:\n"
                               f"{_tail(log)}")
        if url is None and (found := LISTENING.search(log.read_text(errors="replace"))):
            url = found[1]
        if url is not None:
            status = health_status(url)
            if status == 200:
                return url
            if status is not None:  # up, but broken: waiting will not mend it
                time.sleep(1)  # let the server log the traceback behind the answer
                raise RuntimeError(f"the server answered GET /health with {status}:\n"
                                   f"{_tail(log)}")
        time.sleep(0.2)
    raise RuntimeError(f"the server did not become healthy in {timeout:g} s:\n{_tail(log)}")


def health_status(url: str) -> int | None:
    """GET /health's status, or None when nothing answers (not listening yet, or gone)."""
    try:
        return httpx.get(f"{url}/health", timeout=5).status_code
    except httpx.TransportError:
        return None


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


def stop_server(proc: subprocess.Popen, timeout: float = 30) -> int:
    """Ctrl-C the server (its normal shutdown: requests aborted, engine stopped); kill it if
    that takes longer than `timeout` seconds. Returns its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def scrape_metrics(url: str) -> dict[str, float]:
    """Every sample of the server's /metrics by name, summed over label sets, plus
    `num_gpu_blocks` from the labels of `cache_config_info`."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
            if sample.name == "minivllm:cache_config_info":
                values["num_gpu_blocks"] = float(sample.labels["num_gpu_blocks"])
    return values


def wait_idle(url: str, timeout: float = 30.0) -> dict[str, float]:
    """Poll /metrics until no request runs or waits and every KV block is free, or until
    `timeout`; return the last sample, with `leaked_blocks`: the blocks still in use (more than
    zero once idle means a finished request kept its blocks)."""
    deadline = time.monotonic() + timeout
    while True:
        m = scrape_metrics(url)
        m["leaked_blocks"] = round(m["minivllm:kv_cache_usage_perc"] * m["num_gpu_blocks"])
        idle = (m["minivllm:num_requests_running"] == 0
                and m["minivllm:num_requests_waiting"] == 0 and m["leaked_blocks"] == 0)
        if idle or time.monotonic() > deadline:
            return m
        time.sleep(0.1)


@dataclass
class ServerClient:
    """A started server, as its clients see it: the URL, the API key they send (None: none)
    and the log the server writes. `dataclasses.replace(client, api_key=None)` is the same
    server seen by a client without a key."""

    url: str
    api_key: str | None
    log: Path

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def http(self, timeout: float = 60) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers(), timeout=timeout)

    def async_http(self, timeout: float = 120, max_connections: int = 100) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=max_connections,
                              max_keepalive_connections=max_connections)
        return httpx.AsyncClient(base_url=self.url, headers=self.headers(), timeout=timeout,
                                 limits=limits)

    def openai(self, timeout: float = 60) -> openai.OpenAI:
        """The official `openai` client (imported here: only tests and graders need it)."""
        import openai

        return openai.OpenAI(**self._openai_options(timeout))

    def async_openai(self, timeout: float = 120) -> openai.AsyncOpenAI:
        import openai

        return openai.AsyncOpenAI(**self._openai_options(timeout))

    def _openai_options(self, timeout: float) -> dict[str, Any]:
        """What both openai clients are built with: this server's /v1 and key, and retries
        off so that every error reaches the caller."""
        return {"base_url": f"{self.url}/v1", "api_key": self.api_key or "none",
                "max_retries": 0, "timeout": timeout}

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def health(self) -> int | None:
        return health_status(self.url)

    def metrics(self) -> dict[str, float]:
        return scrape_metrics(self.url)

    def wait_idle(self, timeout: float = 30.0) -> dict[str, float]:
        return wait_idle(self.url, timeout)
