"""A real `python -m minivllm.server` on loopback (`minivllm.server.remote`), and clients for it."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai

from minivllm.server.remote import launch_server, scrape_metrics, wait_idle

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
        return scrape_metrics(self.url)

    def wait_idle(self, timeout: float = 30.0) -> dict[str, float]:
        return wait_idle(self.url, timeout)


def start_server(args: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    """Start the server on loopback, wait for /health, return the process and its base URL."""
    return launch_server(["--host", "127.0.0.1", *args], log, STARTUP_TIMEOUT_S)
