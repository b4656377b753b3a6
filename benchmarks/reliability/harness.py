"""A real `python -m minivllm.server` on loopback, and what the reliability checks read from it.

The server runs in its own process, as in production: a crash, a hang or an exit is then the
server's own, and `/metrics` is the only window into the engine (running and waiting requests,
KV-cache usage, preemptions), as it would be for an operator. `--port 0` lets the OS pick a free
port; the URL is read from the start-up log. `--host` is left at its default, so every run also
checks that the server listens on loopback unless told otherwise.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

API_KEY = "reliability-key"
MODEL = "random:tiny-llama"
STARTUP_TIMEOUT_S = 120
EXIT_TIMEOUT_S = 30

BASE_ARGS = ["--model", MODEL, "--served-model-name", "tiny", "--device", "cpu", "--seed", "0",
             "--max-model-len", "128", "--max-num-seqs", "8"]
"""The tiny random Llama on the CPU: it starts in seconds and a step takes milliseconds, so the
load the checks put on the server is HTTP, scheduling and bookkeeping, not matrix products."""


@dataclass
class LiveServer:
    proc: subprocess.Popen
    url: str
    log: Path
    api_key: str | None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def http(self, timeout: float = 60) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers(), timeout=timeout)

    def async_http(self, timeout: float = 120, max_connections: int = 100) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=max_connections,
                              max_keepalive_connections=max_connections)
        return httpx.AsyncClient(base_url=self.url, headers=self.headers(), timeout=timeout,
                                 limits=limits)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def health(self) -> int | None:
        """/health's status, or None when nothing answers."""
        try:
            return httpx.get(f"{self.url}/health", timeout=5).status_code
        except httpx.TransportError:
            return None

    def metrics(self) -> dict[str, float]:
        """Every sample of /metrics by name, summed over label sets; `num_gpu_blocks` from
        the `cache_config_info` labels."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        values: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                values[sample.name] = values.get(sample.name, 0.0) + sample.value
                if sample.name == "minivllm:cache_config_info":
                    values["num_gpu_blocks"] = float(sample.labels["num_gpu_blocks"])
        return values

    def wait_idle(self, timeout: float = 30.0) -> dict[str, float]:
        """Poll /metrics until nothing runs or waits and every KV block is free (or time is
        up); return the last sample, with `leaked_blocks`: blocks still in use."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.metrics()
            m["leaked_blocks"] = round(m["minivllm:kv_cache_usage_perc"] * m["num_gpu_blocks"])
            idle = (m["minivllm:num_requests_running"] == 0
                    and m["minivllm:num_requests_waiting"] == 0 and m["leaked_blocks"] == 0)
            if idle or time.monotonic() > deadline:
                return m
            time.sleep(0.1)

    def completion(self, prompt: str | list[int], max_tokens: int, **extra) -> dict:
        """One greedy completion, checked to succeed: the server still serves."""
        with self.http() as http:
            response = http.post("/v1/completions", json={
                "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, **extra})
        response.raise_for_status()
        return response.json()


def start_server(extra_args: list[str], log: Path, api_key: str | None = API_KEY,
                 env: dict[str, str] | None = None) -> LiveServer:
    """Start the server with BASE_ARGS + extra_args; return once /health answers 200."""
    args = [*BASE_ARGS, "--port", "0", *extra_args]
    if api_key:
        args += ["--api-key", api_key]
    out = log.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "minivllm.server", *args], stdout=out, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, start_new_session=True)
    server = LiveServer(proc, "", log, api_key)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{server.log_text()}")
        if not server.url and (m := re.search(r"API server on (http://\S+)", server.log_text())):
            server.url = m.group(1)
        if server.url and server.health() == 200:
            return server
        time.sleep(0.25)
    stop_server(server)
    raise RuntimeError(f"the server did not become healthy:\n{server.log_text()}")


def stop_server(server: LiveServer) -> int:
    """Ctrl-C the server (its normal shutdown), kill it if that takes too long; its exit code."""
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGINT)
    try:
        return server.proc.wait(timeout=EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        return server.proc.wait()


@contextmanager
def live_server(extra_args: list[str], log: Path, api_key: str | None = API_KEY,
                env: dict[str, str] | None = None) -> Iterator[LiveServer]:
    server = start_server(extra_args, log, api_key, env)
    try:
        yield server
    finally:
        stop_server(server)


def sse_events(lines: list[str]) -> list[dict | str]:
    """The `data:` payloads of an SSE stream: parsed JSON, or the string `[DONE]`."""
    events: list[dict | str] = []
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: "):]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events
