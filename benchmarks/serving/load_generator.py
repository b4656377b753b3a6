"""The client half of the serving benchmark, in the manner of `vllm bench serve`.

* `random_requests`: vLLM's random dataset: prompts of random token ids with input and output
  lengths drawn around the requested ones (`range_ratio`), sent as token ids so the server
  sees exactly the intended input length.
* `run_load`: sends them to `/v1/completions` as streams (`ignore_eos`, so every request
  generates exactly its output length; `stream_options.include_usage` to count tokens), with
  Poisson arrivals at `request_rate` requests/s (`inf`: all at once) and at most
  `max_concurrency` in flight.
* `serving_metrics`: vLLM's figures: request and token throughput, and TTFT, TPOT, ITL and
  end-to-end latency (mean, median, p99) in milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np


@dataclass
class BenchRequest:
    prompt_token_ids: list[int]
    output_len: int


@dataclass
class RequestResult:
    success: bool = False
    error: str = ""
    ttft: float = 0.0
    """Seconds from sending to the first generated text."""
    itl: list[float] = field(default_factory=list)
    """Seconds between successive streamed chunks after the first."""
    latency: float = 0.0
    prompt_len: int = 0
    output_tokens: int = 0


def random_requests(num_prompts: int, input_len: int, output_len: int, range_ratio: float,
                    vocab_size: int, seed: int) -> list[BenchRequest]:
    rng = np.random.default_rng(seed)

    def lengths(mean: int) -> np.ndarray:
        low = max(1, math.floor(mean * (1 - range_ratio)))
        return rng.integers(low, math.ceil(mean * (1 + range_ratio)) + 1, size=num_prompts)

    return [BenchRequest(rng.integers(0, vocab_size, size=int(n)).tolist(), int(m))
            for n, m in zip(lengths(input_len), lengths(output_len), strict=True)]


async def send_request(http: httpx.AsyncClient, model: str, request: BenchRequest) -> RequestResult:
    result = RequestResult(prompt_len=len(request.prompt_token_ids))
    payload = {"model": model, "prompt": request.prompt_token_ids, "max_tokens": request.output_len,
               "temperature": 0.0, "ignore_eos": True, "stream": True,
               "stream_options": {"include_usage": True}}
    start = last = time.perf_counter()
    try:
        async with http.stream("POST", "/v1/completions", json=payload) as response:
            if response.status_code != 200:
                result.error = (await response.aread()).decode()
                return result
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk: dict[str, Any] = json.loads(line[len("data: "):])
                if "error" in chunk:
                    result.error = chunk["error"]["message"]
                    return result
                now = time.perf_counter()
                if chunk["choices"] and chunk["choices"][0]["text"]:
                    if result.ttft == 0.0:
                        result.ttft = now - start
                    else:
                        result.itl.append(now - last)
                    last = now
                if chunk.get("usage"):
                    result.output_tokens = chunk["usage"]["completion_tokens"]
        result.latency = time.perf_counter() - start
        result.success = result.output_tokens > 0
    except httpx.HTTPError as e:
        result.error = repr(e)
    return result


async def run_load(base_url: str, model: str, requests: list[BenchRequest],
                   request_rate: float, max_concurrency: int | None,
                   seed: int) -> tuple[list[RequestResult], float]:
    """Send every request; returns the results (in request order) and the wall time."""
    rng = np.random.default_rng(seed)
    limit = asyncio.Semaphore(max_concurrency or len(requests))
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=base_url, timeout=None, limits=limits) as http:
        async def limited(request: BenchRequest) -> RequestResult:
            async with limit:
                return await send_request(http, model, request)

        tasks = []
        start = time.perf_counter()
        for request in requests:
            tasks.append(asyncio.create_task(limited(request)))
            if request_rate != float("inf"):  # Poisson process: exponential gaps
                await asyncio.sleep(rng.exponential(1.0 / request_rate))
        results = await asyncio.gather(*tasks)
        return list(results), time.perf_counter() - start


def _summary(values_s: list[float]) -> dict[str, float]:
    ms = np.array(values_s or [0.0]) * 1000
    return {"mean": float(ms.mean()), "median": float(np.median(ms)),
            "p99": float(np.percentile(ms, 99))}


def serving_metrics(results: list[RequestResult], duration: float) -> dict[str, Any]:
    ok = [r for r in results if r.success]
    output = sum(r.output_tokens for r in ok)
    prompt = sum(r.prompt_len for r in ok)
    tpot = [(r.latency - r.ttft) / (r.output_tokens - 1) for r in ok if r.output_tokens > 1]
    return {
        "completed": len(ok),
        "failed": len(results) - len(ok),
        "errors": sorted({r.error for r in results if r.error})[:5],
        "duration_s": duration,
        "total_input_tokens": prompt,
        "total_output_tokens": output,
        "request_throughput": len(ok) / duration,
        "output_throughput": output / duration,
        "total_token_throughput": (prompt + output) / duration,
        "ttft_ms": _summary([r.ttft for r in ok]),
        "tpot_ms": _summary(tpot),
        "itl_ms": _summary([t for r in ok for t in r.itl]),
        "e2el_ms": _summary([r.latency for r in ok]),
    }
