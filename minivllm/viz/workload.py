"""The runs the figures are drawn from, and the notebooks' small-settings switch.

`run_workload` steps an `LLMEngine` by hand (the loop `LLM.generate` hides), adding each
request at the step it arrives and recording what every step did; `EngineRun` keeps those
records with the scheduler's trace and the final outputs, and derives throughput, TTFT and TPOT
(the numbers `vllm bench` reports).

`small_settings()` reads `MINIVLLM_NOTEBOOK_SMALL`: tiny models and workloads on a laptop CPU,
real ones on a GPU. It imports torch only when it must ask whether CUDA is there.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from minivllm.core.scheduler import StepTrace
from minivllm.outputs import RequestOutput
from minivllm.sampling_params import SamplingParams

if TYPE_CHECKING:
    from minivllm.engine.llm_engine import LLMEngine

SMALL_ENV = "MINIVLLM_NOTEBOOK_SMALL"

_run_ids = itertools.count()


def small_settings() -> bool:
    """Whether the notebooks should use tiny models and workloads.

    `MINIVLLM_NOTEBOOK_SMALL=1` or `0` decides; unset, it is on without a CUDA device.
    """
    value = os.environ.get(SMALL_ENV)
    if value is None:
        import torch

        return not torch.cuda.is_available()
    return value.strip().lower() not in ("0", "false", "no", "off", "")



@dataclass
class Arrival:
    """A request that reaches the engine before step `step` (0: before the first step)."""
    prompt: str | list[int]
    params: SamplingParams
    step: int = 0


@dataclass
class StepRecord:
    """What one `LLMEngine.step()` did, measured right after it."""
    seconds: float
    num_prefill_tokens: int
    num_decode_tokens: int
    num_running: int
    num_waiting: int
    slots_allocated: int
    """KV slots handed out to sequences: blocks in use times block_size."""
    slots_filled: int
    """KV slots that hold a token's K and V (the running sequences' computed tokens)."""


@dataclass
class EngineRun:
    steps: list[StepRecord]
    trace: list[StepTrace]
    """The scheduler's own record of the same steps (for Gantt charts)."""
    outputs: list[RequestOutput]
    """The final output of each arrival, in the order of the arrivals."""
    seconds: float
    num_preemptions: int

    @property
    def num_output_tokens(self) -> int:
        return sum(len(c.token_ids) for out in self.outputs for c in out.outputs)

    @property
    def output_tokens_per_s(self) -> float:
        return self.num_output_tokens / self.seconds

    def ttft(self) -> np.ndarray:
        """Seconds from each request's arrival to its first token."""
        return np.array([o.metrics.first_token_time - o.metrics.arrival_time
                         for o in self.outputs])

    def tpot(self) -> np.ndarray:
        """Mean seconds per output token after the first, per request with two or more."""
        return np.array([(o.metrics.finished_time - o.metrics.first_token_time)
                         / (len(o.outputs[0].token_ids) - 1)
                         for o in self.outputs if len(o.outputs[0].token_ids) > 1])


def run_workload(engine: LLMEngine, arrivals: Seq[Arrival]) -> EngineRun:
    """Step `engine` until every arrival has finished, adding each at its step.

    Turns on the scheduler's trace, times every step, and records after each step how much
    KV cache is handed out and how much of it holds tokens. A step with nothing to run (all
    requests done, the next one not arrived yet) is recorded as an empty step.
    """
    scheduler, kv = engine.scheduler, engine.kv_cache_manager
    scheduler.record_trace = True
    first_trace, first_preemptions = len(scheduler.trace), scheduler.num_preemptions
    pending = sorted(range(len(arrivals)), key=lambda i: arrivals[i].step)
    run_id = next(_run_ids)
    request_ids = [f"run{run_id}-{i}" for i in range(len(arrivals))]
    finished: dict[str, RequestOutput] = {}
    steps: list[StepRecord] = []
    start = time.perf_counter()
    while pending or engine.has_unfinished_requests():
        while pending and arrivals[pending[0]].step <= len(steps):
            i = pending.pop(0)
            engine.add_request(request_ids[i], arrivals[i].prompt, arrivals[i].params)
        step_start = time.perf_counter()
        for output in engine.step():
            if output.finished:
                finished[output.request_id] = output
        seconds = time.perf_counter() - step_start
        scheduled = scheduler.last_output.scheduled
        steps.append(StepRecord(
            seconds=seconds,
            num_prefill_tokens=sum(s.num_new_tokens for s in scheduled if s.is_prefill),
            num_decode_tokens=sum(s.num_new_tokens for s in scheduled if not s.is_prefill),
            num_running=len(scheduler.running), num_waiting=len(scheduler.waiting),
            slots_allocated=(kv.num_blocks - kv.num_free_blocks) * kv.block_size,
            slots_filled=sum(seq.num_computed_tokens for seq in scheduler.running)))
    return EngineRun(steps=steps, trace=scheduler.trace[first_trace:],
                     outputs=[finished[rid] for rid in request_ids],
                     seconds=time.perf_counter() - start,
                     num_preemptions=scheduler.num_preemptions - first_preemptions)
