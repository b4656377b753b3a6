"""Load with faults: many concurrent streams, a third of the clients hanging up at random points.

What a soak run checks, once the load has drained:

* every request that completed produced exactly the greedy text of the same prompt run alone
  on the idle server: batching, preemption by recompute and other clients' disconnects
  changed nothing;
* no response was a 5xx, and no stream carried an error event;
* `/metrics` shows no request running or waiting and no KV block in use (`leaked_blocks`):
  every disconnect aborted its request and gave its blocks back;
* the pool was small enough that the scheduler had to preempt (`preemptions` > 0).

Clients hang up in two ways: a stream closed after a random number of chunks (0: right after
the headers), and a request (streaming or not) cancelled after a random delay, often before
any answer. Prompts are random token ids and outputs run to `max_tokens` (`ignore_eos`), so
every request holds its blocks for a known number of steps; a quarter of the requests ask for
n=2 (two sequences of one request, both greedy, so both must equal the isolated text).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from benchmarks.reliability.harness import LiveServer, sse_events

SERVER_ARGS = ["--num-gpu-blocks-override", "24", "--disable-fastapi-docs"]
"""24 blocks of 16 tokens: 384 tokens for 8 running sequences of up to ~100 tokens each, so
the scheduler must preempt. `--max-num-seqs 8` comes from the harness's BASE_ARGS."""


@dataclass
class SoakConfig:
    num_requests: int = 2000
    concurrency: int = 400
    """Requests in flight at once; the rest wait for a slot on the client side."""
    disconnect_fraction: float = 1 / 3
    streaming_fraction: float = 0.8
    num_prompts: int = 16
    """Distinct prompts; request i sends prompt i % num_prompts."""
    seed: int = 0

    @classmethod
    def ci(cls) -> SoakConfig:
        """Small enough for CI (about 10 s on two CPU cores)."""
        return cls(num_requests=300, concurrency=100, num_prompts=8)


@dataclass
class SoakReport:
    requests_sent: int = 0
    completed: int = 0
    disconnected: int = 0
    server_errors: int = 0
    """5xx responses and error events in streams."""
    other_failures: list[str] = field(default_factory=list)
    """Anything else unexpected: a 4xx, a transport error, a stream without [DONE]."""
    mismatches: list[str] = field(default_factory=list)
    """Completed requests whose text differs from the isolated run's."""
    preemptions: int = 0
    running_after: float = 0
    waiting_after: float = 0
    leaked_blocks: int = 0
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return (self.server_errors == 0 and not self.other_failures and not self.mismatches
                and self.running_after == 0 and self.waiting_after == 0
                and self.leaked_blocks == 0)

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["other_failures"] = record["other_failures"][:20]
        record["mismatches"] = record["mismatches"][:20]
        return record


@dataclass
class _Prompt:
    token_ids: list[int]
    max_tokens: int
    reference: str = ""


def make_prompts(config: SoakConfig) -> list[_Prompt]:
    rng = random.Random(config.seed)
    return [_Prompt([rng.randrange(256) for _ in range(rng.randint(8, 48))],
                    rng.randint(16, 64)) for _ in range(config.num_prompts)]


def _body(prompt: _Prompt, stream: bool, n: int) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": prompt.token_ids, "max_tokens": prompt.max_tokens,
                            "temperature": 0, "ignore_eos": True, "n": n}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


async def _stream(http: httpx.AsyncClient, prompt: _Prompt, n: int, hang_up_after: int | None,
                  report: SoakReport, index: int) -> None:
    """One streaming request; with `hang_up_after`, close it after that many chunks."""
    texts, chunks = [""] * n, 0
    async with http.stream("POST", "/v1/completions", json=_body(prompt, True, n)) as response:
        if response.status_code >= 500:
            report.server_errors += 1
            return
        if response.status_code != 200:
            report.other_failures.append(f"#{index}: HTTP {response.status_code}")
            return
        lines = []
        async for line in response.aiter_lines():
            if hang_up_after is not None and chunks >= hang_up_after:
                report.disconnected += 1
                return  # leaving the block closes the connection mid-stream
            if line:
                lines.append(line)
                chunks += 1
    events = sse_events(lines)
    for event in events:
        if isinstance(event, dict) and "error" in event:
            if event["error"]["code"] >= 500:
                report.server_errors += 1
            else:
                report.other_failures.append(f"#{index}: error event {event['error']}")
            return
        if isinstance(event, dict):
            for choice in event["choices"]:
                texts[choice["index"]] += choice["text"]
    if not events or events[-1] != "[DONE]":
        report.other_failures.append(f"#{index}: the stream did not end with [DONE]")
        return
    _check_texts(report, index, prompt, texts)


async def _plain(http: httpx.AsyncClient, prompt: _Prompt, n: int, report: SoakReport,
                 index: int) -> None:
    response = await http.post("/v1/completions", json=_body(prompt, False, n))
    if response.status_code >= 500:
        report.server_errors += 1
    elif response.status_code != 200:
        report.other_failures.append(f"#{index}: HTTP {response.status_code}")
    else:
        _check_texts(report, index, prompt, [c["text"] for c in response.json()["choices"]])


def _check_texts(report: SoakReport, index: int, prompt: _Prompt, texts: list[str]) -> None:
    report.completed += 1
    for text in texts:
        if text != prompt.reference:
            report.mismatches.append(f"#{index}: {text!r} != isolated {prompt.reference!r}")


async def _one(http: httpx.AsyncClient, prompt: _Prompt, rng: random.Random,
               config: SoakConfig, report: SoakReport, index: int) -> None:
    stream = rng.random() < config.streaming_fraction
    hang_up = rng.random() < config.disconnect_fraction
    n = 2 if rng.random() < 0.25 else 1
    try:
        if stream and hang_up and rng.random() < 0.8:  # mid-stream, after 0..n chunks
            await _stream(http, prompt, n, rng.randint(0, n * prompt.max_tokens), report, index)
        elif hang_up:  # a cancelled request closes its connection, often before any answer
            request = _stream(http, prompt, n, None, report, index) if stream \
                else _plain(http, prompt, n, report, index)
            try:
                await asyncio.wait_for(request, timeout=rng.uniform(0.01, 2.0))
            except asyncio.TimeoutError:
                report.disconnected += 1
        elif stream:
            await _stream(http, prompt, n, None, report, index)
        else:
            await _plain(http, prompt, n, report, index)
    except httpx.HTTPError as e:
        kind = f"{'stream' if stream else 'plain'}, n={n}{', hanging up' if hang_up else ''}"
        report.other_failures.append(f"#{index} ({kind}): {type(e).__name__}: {e!r}")


async def run_soak(server: LiveServer, config: SoakConfig) -> SoakReport:
    """Reference texts first (each prompt alone on the idle server), then the load."""
    prompts = make_prompts(config)
    for prompt in prompts:
        prompt.reference = server.completion(
            prompt.token_ids, prompt.max_tokens, ignore_eos=True)["choices"][0]["text"]
    before = server.wait_idle()
    report = SoakReport(requests_sent=config.num_requests)
    rng = random.Random(config.seed + 1)
    slots = asyncio.Semaphore(config.concurrency)
    start = time.monotonic()

    async def limited(http: httpx.AsyncClient, i: int, client_rng: random.Random) -> None:
        async with slots:
            await _one(http, prompts[i % len(prompts)], client_rng, config, report, i)

    async with server.async_http(timeout=600, max_connections=config.concurrency) as http:
        await asyncio.gather(*(limited(http, i, random.Random(rng.random()))
                               for i in range(config.num_requests)))
    report.duration_s = round(time.monotonic() - start, 2)
    after = server.wait_idle()
    report.preemptions = int(after["minivllm:num_preemptions_total"]
                             - before["minivllm:num_preemptions_total"])
    report.running_after = after["minivllm:num_requests_running"]
    report.waiting_after = after["minivllm:num_requests_waiting"]
    report.leaked_blocks = int(after["leaked_blocks"])
    return report
