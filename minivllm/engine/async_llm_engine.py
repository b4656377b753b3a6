"""AsyncLLMEngine: the engine's step loop on its own thread, and one output stream per request.

`LLMEngine.step()` is synchronous and keeps the CPU or GPU busy for milliseconds; an asyncio
server that called it directly would stop answering while it runs. So, as in vLLM, the engine
runs apart from the event loop and the two talk through queues:

    event loop (FastAPI handlers)                  engine thread (the busy loop)
    generate() ── add / abort ──> input queue ──>  add_request / abort_request
                                                   step() -> [RequestOutput]
    per-request collector <── call_soon_threadsafe ──┘

* The engine thread is the only one that touches `LLMEngine`, which is not thread-safe: adds
  and aborts wait in the input queue and are applied between two steps. It blocks on the queue
  while there is no work and steps as long as any request is waiting or running (vLLM v1's
  `EngineCore.run_busy_loop`; v0 ran the same loop as an asyncio task around `step_async`).
* Each request's outputs go to its own collector on the event loop (vLLM v1's
  `RequestOutputCollector`). Outputs are cumulative, so a slow consumer only ever needs the
  newest one: the collector keeps that, and memory stays bounded.
* `generate()` is an async generator. When its consumer goes away (the client disconnected,
  the handler was cancelled) it aborts the request, and the engine frees its KV blocks before
  the next step.
* The price of a thread: the event loop's per-token work (SSE chunks, HTTP writes) and the
  engine's Python share one GIL, so steps get slower while many streams are open (on an H100,
  200 streams of Qwen3-0.6B: about 40 ms a step in the server against 31 ms offline). vLLM v1
  runs its EngineCore in a separate process for this reason.
* After every step the engine thread measures what vLLM's Prometheus logger records (TTFT,
  inter-token latency, end-to-end latency, token counts, queue sizes) and hands it to the stat
  loggers (`minivllm.server.metrics`).
* If a step raises, the engine's state is no longer trustworthy (the scheduler may have
  allocated blocks for a batch that never ran), so the loop does not carry on: it records the
  error as `dead_error`, fails every waiting request with `EngineDeadError` and calls
  `on_engine_dead`, which the server uses to exit (vLLM's `EngineDeadError`; vLLM too shuts the
  API server down unless VLLM_KEEP_ALIVE_ON_ENGINE_DEATH is set). A request the engine refuses
  in `add_request` (a ValueError) fails alone and the loop goes on.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from minivllm.config import EngineConfig
from minivllm.engine.llm_engine import LLMEngine
from minivllm.outputs import RequestOutput
from minivllm.sampling_params import SamplingParams

logger = logging.getLogger(__name__)


class EngineDeadError(RuntimeError):
    """The engine loop crashed; no request can be served any more (vLLM's EngineDeadError)."""


# -- statistics handed to the stat loggers (vLLM: vllm/v1/metrics/stats.py) -----------------
@dataclass
class SchedulerStats:
    num_running_reqs: int
    num_waiting_reqs: int
    kv_cache_usage: float


@dataclass
class FinishedRequestStats:
    finish_reason: str
    e2e_latency: float
    num_prompt_tokens: int
    num_generation_tokens: int


@dataclass
class IterationStats:
    """What one engine step did, for counters and histograms."""
    num_prompt_tokens: int = 0
    num_generation_tokens: int = 0
    num_preempted_reqs: int = 0
    prefix_cache_queries: int = 0
    """Prompt tokens looked up in the prefix cache by this step's admissions."""
    prefix_cache_hits: int = 0
    """Of those, tokens found there (their KV was reused, not computed)."""
    time_to_first_tokens: list[float] = field(default_factory=list)
    inter_token_latencies: list[float] = field(default_factory=list)
    finished_requests: list[FinishedRequestStats] = field(default_factory=list)


class StatLogger(Protocol):
    def record(self, scheduler_stats: SchedulerStats,
               iteration_stats: IterationStats | None) -> None: ...


class RequestLogger(Protocol):
    """Logs requests as they come and go (`minivllm.server.request_logger`); called on the
    event loop. Prompts and outputs are users' data: the server passes one only when asked."""

    def log_inputs(self, request_id: str, prompt: str | list[int],
                   params: SamplingParams) -> None: ...

    def log_outputs(self, output: RequestOutput) -> None: ...

    def log_abort(self, request_id: str) -> None: ...


@dataclass
class _RequestTimes:
    """Per request, on the engine thread: when it arrived and when its last token came out."""
    arrival_time: float
    first_token_time: float | None = None
    last_token_time: float = 0.0
    num_generation_tokens: int = 0


# -- messages from the event loop to the engine thread --------------------------------------
@dataclass
class _AddRequest:
    request_id: str
    prompt: str | list[int]
    params: SamplingParams
    arrival_time: float


@dataclass
class _AbortRequest:
    request_ids: list[str]


_SHUTDOWN = object()


class RequestOutputCollector:
    """The newest output of one request, waiting for its consumer on the event loop."""

    def __init__(self) -> None:
        self._output: RequestOutput | BaseException | None = None
        self._ready = asyncio.Event()

    def put(self, output: RequestOutput | BaseException) -> None:
        if not isinstance(self._output, BaseException):  # an error is never overwritten
            self._output = output
            self._ready.set()

    async def get(self) -> RequestOutput:
        await self._ready.wait()
        output, self._output = self._output, None
        self._ready.clear()
        if isinstance(output, BaseException):
            raise output
        assert output is not None
        return output


class AsyncLLMEngine:
    def __init__(self, engine: LLMEngine, stat_loggers: Sequence[StatLogger] = (),
                 request_logger: RequestLogger | None = None) -> None:
        self.engine = engine
        self.stat_loggers = list(stat_loggers)
        self.request_logger = request_logger
        self._inputs: queue.SimpleQueue = queue.SimpleQueue()
        self._collectors: dict[str, RequestOutputCollector] = {}  # event loop side only
        self._times: dict[str, _RequestTimes] = {}  # engine thread side only
        self._totals = {"preemptions": 0, "queries": 0, "hits": 0}
        """The engine's running totals at the last step, to report each step's increase."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.dead_error: BaseException | None = None
        self.on_engine_dead: Callable[[BaseException], None] | None = None
        """Called on the event loop once the engine loop has died and its requests failed."""

    @property
    def config(self) -> EngineConfig:
        return self.engine.config

    @property
    def tokenizer(self):
        return self.engine.tokenizer

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- lifecycle (called on the event loop) -------------------------------------------------
    def start(self) -> None:
        """Start the engine thread; outputs will be delivered to the running event loop."""
        if self.is_running:
            return
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run_busy_loop, name="minivllm-engine",
                                        daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        if self._thread is not None:
            self._inputs.put(_SHUTDOWN)
            self._thread.join()
            self._thread = None

    # -- the API the server uses (event loop side) -------------------------------------------
    def check_health(self) -> None:
        """Raise EngineDeadError once the engine loop has died (vLLM's `check_health`)."""
        if self.dead_error is not None:
            raise EngineDeadError(f"The engine loop has died ({self.dead_error!r}); restart the "
                                  "server.") from self.dead_error

    def check_fits_kv_cache(self, num_tokens: int) -> None:
        """ValueError if a sequence of `num_tokens` tokens could never fit the KV cache. Safe
        off the engine thread: it reads only the pool's fixed size."""
        self.engine.check_fits_kv_cache(num_tokens)

    async def generate(self, prompt: str | list[int], sampling_params: SamplingParams,
                       request_id: str) -> AsyncGenerator[RequestOutput, None]:
        """Add a request and yield its `RequestOutput` each time it advances (cumulative text
        and token ids), the last one with `finished=True`. Closing or cancelling the generator
        before then aborts the request."""
        self.check_health()
        if not self.is_running:
            self.start()
        if request_id in self._collectors:
            raise ValueError(f"Request id {request_id} already running.")
        collector = self._collectors[request_id] = RequestOutputCollector()
        self._inputs.put(_AddRequest(request_id, prompt, sampling_params, time.monotonic()))
        if self.request_logger is not None:
            self.request_logger.log_inputs(request_id, prompt, sampling_params)
        finished = False
        try:
            while not finished:
                output = await collector.get()
                finished = output.finished
                if finished and self.request_logger is not None:
                    self.request_logger.log_outputs(output)
                yield output
        finally:
            if not finished:  # cancelled, closed early or failed: free the engine's resources
                self.abort(request_id)

    def abort(self, request_id: str | Iterable[str]) -> None:
        ids = [request_id] if isinstance(request_id, str) else list(request_id)
        for rid in ids:
            self._collectors.pop(rid, None)
            if self.request_logger is not None:
                self.request_logger.log_abort(rid)
        self._inputs.put(_AbortRequest(ids))

    # -- engine thread ----------------------------------------------------------------------
    def _run_busy_loop(self) -> None:
        try:
            while True:
                # Sleep until there is input while idle; otherwise take whatever has arrived.
                if (not self.engine.has_unfinished_requests()
                        and not self._handle_input(self._inputs.get())):
                    return
                while not self._inputs.empty():
                    if not self._handle_input(self._inputs.get_nowait()):
                        return
                if self.engine.has_unfinished_requests():
                    outputs = self.engine.step()
                    iteration_stats = self._iteration_stats(outputs)
                    self._call_in_loop(self._deliver, outputs)
                else:  # only aborts came in: report the freed slots and blocks
                    iteration_stats = None
                self._record(iteration_stats)
        except BaseException as e:  # the thread must tell the waiting requests why it stopped
            logger.exception("Engine loop died")
            self.dead_error = e
            self._call_in_loop(self._fail_all, e)

    def _handle_input(self, item: object) -> bool:
        """Apply one add or abort; False means shut down."""
        if item is _SHUTDOWN:
            return False
        if isinstance(item, _AddRequest):
            try:
                self.engine.add_request(item.request_id, item.prompt, item.params,
                                        arrival_time=item.arrival_time)
            except Exception as e:  # a bad request fails alone; the engine carries on
                self._call_in_loop(self._fail, item.request_id, e)
            else:
                self._times[item.request_id] = _RequestTimes(item.arrival_time)
        elif isinstance(item, _AbortRequest):
            known = [rid for rid in item.request_ids if self._times.pop(rid, None)]
            if known:
                self.engine.abort_request(known)
        return True

    def _call_in_loop(self, fn, *args) -> None:
        assert self._loop is not None
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _iteration_stats(self, outputs: list[RequestOutput]) -> IterationStats:
        now = time.monotonic()
        kv = self.engine.kv_cache_manager
        totals = {"preemptions": self.engine.scheduler.num_preemptions,
                  "queries": kv.prefix_cache_queries, "hits": kv.prefix_cache_hits}
        delta = {k: v - self._totals[k] for k, v in totals.items()}
        self._totals = totals
        stats = IterationStats(num_preempted_reqs=delta["preemptions"],
                               prefix_cache_queries=delta["queries"],
                               prefix_cache_hits=delta["hits"])
        for output in outputs:
            times = self._times.get(output.request_id)
            if times is None:
                continue
            num_tokens = sum(len(c.token_ids) for c in output.outputs)
            if num_tokens > times.num_generation_tokens:
                stats.num_generation_tokens += num_tokens - times.num_generation_tokens
                if times.first_token_time is None:
                    times.first_token_time = now
                    stats.num_prompt_tokens += len(output.prompt_token_ids)
                    stats.time_to_first_tokens.append(now - times.arrival_time)
                else:
                    stats.inter_token_latencies.append(now - times.last_token_time)
                times.last_token_time = now
                times.num_generation_tokens = num_tokens
            if output.finished:
                del self._times[output.request_id]
                reasons = {c.finish_reason for c in output.outputs}
                stats.finished_requests.append(FinishedRequestStats(
                    finish_reason="abort" if "abort" in reasons else
                    "length" if reasons == {"length"} else "stop",
                    e2e_latency=now - times.arrival_time,
                    num_prompt_tokens=len(output.prompt_token_ids),
                    num_generation_tokens=num_tokens))
        return stats

    def _record(self, iteration_stats: IterationStats | None) -> None:
        if not self.stat_loggers:
            return
        scheduler = self.engine.scheduler
        scheduler_stats = SchedulerStats(
            num_running_reqs=len(scheduler.running), num_waiting_reqs=len(scheduler.waiting),
            kv_cache_usage=self.engine.kv_cache_manager.usage)
        for stat_logger in self.stat_loggers:
            stat_logger.record(scheduler_stats, iteration_stats)

    # -- back on the event loop -----------------------------------------------------------
    def _deliver(self, outputs: list[RequestOutput]) -> None:
        for output in outputs:
            collector = self._collectors.get(output.request_id)
            if collector is not None:
                collector.put(output)
                if output.finished:
                    del self._collectors[output.request_id]

    def _fail(self, request_id: str, error: BaseException) -> None:
        collector = self._collectors.pop(request_id, None)
        if collector is not None:
            collector.put(error)

    def _fail_all(self, error: BaseException) -> None:
        for request_id in list(self._collectors):
            self._fail(request_id, EngineDeadError(f"The engine loop has died: {error!r}"))
        if self.on_engine_dead is not None:
            self.on_engine_dead(error)
