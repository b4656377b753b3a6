"""Start a real `python -m minivllm.server` on loopback and talk to it.

`--port 0` lets the OS pick a free port; `start_server` reads it from the start-up log and
waits for `/health`.
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

import httpx
import openai
from prometheus_client.parser import text_string_to_metric_families

API_KEY = "test-key-123"
MODEL = "smollm2"
ALIAS = "smol-alias"
MAX_MODEL_LEN = 512
MAX_NUM_SEQS = 4
STARTUP_TIMEOUT_S = 240


@dataclass
class Server:
    url: str
    api_key: str | None
    log: Path
    model: str = MODEL
    alias: str = ALIAS
    max_model_len: int = MAX_MODEL_LEN
    max_num_seqs: int = MAX_NUM_SEQS

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def http(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers(), timeout=60, **kwargs)

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=self.api_key or "none",
                             max_retries=0, timeout=60)

    def async_openai(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key=self.api_key or "none",
                                  max_retries=0, timeout=120)

    def metrics(self) -> dict[str, float]:
        """Every sample of /metrics by name, summed over label sets."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        values: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                values[sample.name] = values.get(sample.name, 0.0) + sample.value
        return values

    def wait_idle(self, timeout: float = 30.0) -> dict[str, float]:
        """Poll /metrics until no sequence runs or waits and no KV block is in use."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.metrics()
            idle = (m["minivllm:num_requests_running"] == 0
                    and m["minivllm:num_requests_waiting"] == 0
                    and m["minivllm:kv_cache_usage_perc"] == 0)
            if idle or time.monotonic() > deadline:
                return m
            time.sleep(0.1)


def start_server(args: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    """Start the server, wait for /health, return the process and its base URL."""
    out = log.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "minivllm.server", "--host", "127.0.0.1", "--port", "0", *args],
        stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    url = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()}")
        if url is None and (m := re.search(r"API server on (http://\S+)", log.read_text())):
            url = m.group(1)
        if url is not None:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    return proc, url
            except httpx.TransportError:
                pass
        time.sleep(0.25)
    stop_server(proc)
    raise RuntimeError(f"server did not become healthy:\n{log.read_text()}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


