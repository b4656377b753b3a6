"""LLMEngine: the step loop that ties the layers together (vLLM's `LLMEngine`).

    add_request ─► Scheduler.waiting
    step():  Scheduler.schedule()          which sequences, how many tokens (lab 3)
             executor.execute_model()      ModelRunner: batch tensors, model, attention
                                           (lab 2), sampler; on every rank with TP
             Scheduler.update_from_output()
             append tokens, detokenize, check stop conditions, free finished sequences' blocks
    ◄─ RequestOutputs of the requests that advanced

Async scheduling (vLLM's default on GPUs): the host work of a step (scheduling, batch tensors,
detokenization, stop checks) is as long as a decode step's GPU work at large batches, and in
the order above the GPU idles through it. So `step()` launches step N, then, while the GPU runs
it, processes step N-1's tokens. Step N was scheduled before N-1's tokens were known: each
sequence N-1 sampled holds a placeholder token, whose value the model runner takes on the
GPU. A sequence that stopped on N-1's token has run one step too many; that token is dropped.

`LLM` (offline) and `AsyncLLMEngine` (the server) both drive this class.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from minivllm.config import EngineConfig
from minivllm.core.kv_cache_manager import make_kv_cache_manager
from minivllm.core.scheduler import SchedulerOutput, make_scheduler
from minivllm.engine.detokenizer import IncrementalDetokenizer
from minivllm.executor import make_executor
from minivllm.labs.guard import lab_guard
from minivllm.model_executor.model_loader import (
    get_generation_config,
    get_model_config,
    get_tokenizer,
)
from minivllm.outputs import CompletionOutput, Logprob, RequestMetrics, RequestOutput
from minivllm.sampling_params import RequestOutputKind, SamplingParams
from minivllm.sequence import Sequence, SequenceStatus
from minivllm.worker.model_runner import AsyncModelRunnerOutput, SampleResult

logger = logging.getLogger("minivllm")

FAIL_AT_STEP_ENV = "MINIVLLM_TEST_FAIL_AT_STEP"
"""Fault injection for the reliability tests: `MINIVLLM_TEST_FAIL_AT_STEP=k` makes the k-th
step that runs the model raise, as a failing kernel or a lost device would, after the scheduler
has allocated that step's blocks."""


@dataclass
class RequestState:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    params: SamplingParams
    seqs: list[Sequence]
    detokenizers: list[IncrementalDetokenizer]
    metrics: RequestMetrics

    @property
    def finished(self) -> bool:
        return all(seq.is_finished for seq in self.seqs)


class LLMEngine:
    def __init__(self, config: EngineConfig) -> None:
        # In the student release, a lab switch turned on before its lab is written fails here
        # or in step(); lab_guard says which lab, and which baseline to use meanwhile.
        with lab_guard():
            self._init(config)

    def _init(self, config: EngineConfig) -> None:
        self.config = config
        torch.manual_seed(config.seed)
        self.model_config = get_model_config(config.model)
        config.resolve(self.model_config.max_position_embeddings)
        logger.info("Initializing a minivllm engine with config: model=%r, dtype=%s, device=%s, "
                    "max_model_len=%d, block_size=%d, kv_allocator=%s, attention=%s, "
                    "scheduler=%s, max_num_seqs=%d, max_num_batched_tokens=%d, seed=%d",
                    config.model, config.torch_dtype, config.device, config.max_model_len,
                    config.block_size, config.kv_allocator, config.attention, config.scheduler,
                    config.max_num_seqs, config.max_num_batched_tokens, config.seed)
        self.tokenizer = get_tokenizer(config.model, config.tokenizer)
        self.generation_config = get_generation_config(config.model)
        self.eos_token_ids = set(self.generation_config.get("eos_token_id") or [])
        if self.tokenizer.eos_token_id is not None:
            self.eos_token_ids.add(self.tokenizer.eos_token_id)

        # Loads the model and allocates the KV cache: in this process, or, with
        # tensor_parallel_size > 1, one shard per process (minivllm/executor/).
        self.model_executor = make_executor(config, self.model_config)
        self.model_runner = self.model_executor.driver_runner
        num_blocks = self.model_executor.num_blocks
        num_tokens = num_blocks * config.block_size
        logger.info("KV cache: %d blocks, %s tokens", num_blocks, f"{num_tokens:,}")
        logger.info("Maximum concurrency for %s tokens per request: %.2fx",
                    f"{config.max_model_len:,}", num_tokens / config.max_model_len)
        self.kv_cache_manager = make_kv_cache_manager(
            config.kv_allocator, num_blocks, config.block_size, config.max_model_len,
            config.enable_prefix_caching)
        self.scheduler = make_scheduler(config, self.kv_cache_manager)
        self.requests: dict[str, RequestState] = {}
        self.last_stats_log_time = time.monotonic()
        self.num_steps = 0
        """Steps that ran the model."""
        self.fail_at_step = int(os.environ.get(FAIL_AT_STEP_ENV) or 0)
        """Test hook: the step with this number raises (0: never)."""
        self.in_flight: AsyncModelRunnerOutput | None = None
        """Async scheduling: the launched step whose tokens are not processed yet."""
        self.requests_with_penalties: set[str] = set()
        """Penalties count the output's token values, which a placeholder does not have: while
        any of these requests is unfinished, steps run one at a time."""

    # -- requests ---------------------------------------------------------------------------
    def get_tokenizer(self):
        return self.tokenizer

    def add_request(self, request_id: str, prompt: str | list[int],
                    params: SamplingParams | None = None,
                    arrival_time: float | None = None) -> None:
        """Queue a request. Raises ValueError, and changes nothing, if it cannot be served."""
        if request_id in self.requests:
            raise ValueError(f"Request id {request_id!r} is already in use")
        params = SamplingParams() if params is None else params
        if isinstance(prompt, str):
            prompt_text, prompt_ids = prompt, self.tokenizer.encode(prompt)
        else:
            prompt_text, prompt_ids = None, list(prompt)
        self._validate_prompt(prompt_ids, params)
        params.update_from_generation_config(self.generation_config,
                                             self.tokenizer.eos_token_id)
        arrival = time.monotonic() if arrival_time is None else arrival_time
        seqs = [Sequence(request_id, prompt_ids, params, index=i, arrival_time=arrival)
                for i in range(params.n)]
        state = RequestState(
            request_id, prompt_text, prompt_ids, params, seqs,
            [IncrementalDetokenizer(self.tokenizer, prompt_ids, params) for _ in seqs],
            RequestMetrics(arrival_time=arrival))
        self.requests[request_id] = state
        if params.has_penalties:
            self.requests_with_penalties.add(request_id)
        for seq in seqs:
            self.scheduler.add_seq(seq)

    def _validate_prompt(self, prompt_ids: list[int], params: SamplingParams) -> None:
        max_len = self.config.max_model_len
        if not prompt_ids:
            raise ValueError("The decoder prompt cannot be empty")
        vocab = self.model_config.vocab_size
        bad = next((t for t in prompt_ids if not 0 <= t < vocab), None)
        if bad is not None:
            raise ValueError(f"Token id {bad} is out of vocabulary (vocab size {vocab})")
        if len(prompt_ids) > max_len:
            raise ValueError(
                f"The decoder prompt (length {len(prompt_ids)}) is longer than the maximum "
                f"model length of {max_len}. Make sure that `max_model_len` is no smaller than "
                "the number of text tokens.")
        self.check_fits_kv_cache(min(len(prompt_ids) + (params.max_tokens or max_len), max_len))

    def check_fits_kv_cache(self, num_tokens: int) -> None:
        """Raise ValueError if a sequence of `num_tokens` tokens could not fit the KV cache even
        alone: it would wait forever. Reads only the pool's fixed size, so the server calls it
        from its own thread too, to refuse such a request with a 400 before a stream starts."""
        if not self.kv_cache_manager.can_ever_fit(num_tokens):
            raise ValueError(
                f"This request needs up to {num_tokens} tokens of KV cache, but the whole cache "
                f"holds {self.kv_cache_manager.num_blocks * self.config.block_size} tokens; it "
                "could never run. Lower max_tokens or give the cache more memory.")

    def abort_request(self, request_id: str | Iterable[str]) -> None:
        """Stop requests now and free their KV blocks; unknown ids are ignored (as in vLLM)."""
        ids = [request_id] if isinstance(request_id, str) else list(request_id)
        for rid in ids:
            state = self.requests.pop(rid, None)
            if state is None:
                continue
            self.requests_with_penalties.discard(rid)
            for seq in state.seqs:
                if not seq.is_finished:
                    self.scheduler.finish_seq(seq, SequenceStatus.FINISHED_ABORTED)

    def shutdown(self) -> None:
        """Stop the tensor-parallel worker processes, if any (also done at exit)."""
        self.model_executor.shutdown()

    def has_unfinished_requests(self) -> bool:
        return bool(self.requests)

    def get_num_unfinished_requests(self) -> int:
        return len(self.requests)

    # -- the step ---------------------------------------------------------------------------
    def step(self) -> list[RequestOutput]:
        """Schedule, run the model once, sample; return an output for each request the step
        advanced (for `FINAL_ONLY` requests, only once they finish)."""
        with lab_guard():
            return self._step()

    def _step(self) -> list[RequestOutput]:
        overlap = self.config.async_scheduling and not self.requests_with_penalties
        outputs = [] if overlap else self._process_in_flight()
        # (Nothing to schedule while the last tokens are in flight: only process them.)
        sched_out = (self.scheduler.schedule() if self.scheduler.has_unfinished_seqs()
                     else SchedulerOutput())
        launched = None
        if not sched_out.is_empty:
            self.num_steps += 1
            if self.num_steps == self.fail_at_step:  # blocks are allocated: a mid-step failure
                raise RuntimeError(f"Injected fault at engine step {self.num_steps} "
                                   f"({FAIL_AT_STEP_ENV})")
            launched = self.model_executor.execute_model(sched_out, self.kv_cache_manager)
        outputs += self._process_in_flight()  # with overlap: the GPU is running `launched`
        if launched is None:
            return outputs
        self.scheduler.update_from_output(sched_out)
        self.in_flight = launched
        if overlap:
            self._add_placeholders(launched.seqs)
            return outputs
        return outputs + self._process_in_flight()

    def _add_placeholders(self, seqs: list[Sequence]) -> None:
        """Give each sequence the launched step samples for its (unknown) next token, so the
        next step is scheduled as if it were known."""
        for seq in seqs:
            if seq.is_finished:  # stopped on the previous step's token
                continue
            seq.append_placeholder()
            if self._length_capped(seq):
                self.scheduler.stop_scheduling(seq)

    def _process_in_flight(self) -> list[RequestOutput]:
        """Wait for the launched step's tokens (if any), append them, detokenize, check stop
        conditions; return an output for each request they advanced."""
        if self.in_flight is None:
            return []
        results, self.in_flight = self.in_flight.get_output(), None
        now = time.monotonic()
        if not self.config.disable_log_stats and now - self.last_stats_log_time >= 5.0:
            self._log_stats(now)
        advanced: dict[str, RequestState] = {}
        for result in results:
            if result.seq.is_finished:  # async scheduling: stopped or aborted meanwhile
                continue
            state = self.requests[result.seq.request_id]
            self._process_sample(state, result, now)
            advanced[state.request_id] = state
        outputs = []
        for state in advanced.values():
            finished = state.finished
            if finished or state.params.output_kind != RequestOutputKind.FINAL_ONLY:
                outputs.append(self._make_output(state))
            if finished:
                state.metrics.finished_time = now
                del self.requests[state.request_id]
                self.requests_with_penalties.discard(state.request_id)
        return outputs

    def _log_stats(self, now: float) -> None:
        """vLLM's periodic LoggingStatLogger line (every 5 s unless disable_log_stats)."""
        self.last_stats_log_time = now
        kv = self.kv_cache_manager
        logger.info("Running: %d reqs, Waiting: %d reqs, GPU KV cache usage: %.1f%%, "
                    "Prefix cache hit rate: %.1f%%", len(self.scheduler.running),
                    len(self.scheduler.waiting), 100 * kv.usage, 100 * kv.prefix_cache_hit_rate)

    def _process_sample(self, state: RequestState, result: SampleResult, now: float) -> None:
        seq = result.seq
        seq.append_token(result.token_id)
        if state.metrics.first_token_time is None:
            state.metrics.first_token_time = now
        if result.logprobs is not None:
            self._append_logprobs(seq, result)
        # A stop token's own text is left out of the output (unless include_stop_str_in_output).
        stop_terminated = result.token_id in seq.sampling_params.all_stop_token_ids
        stop_str = state.detokenizers[seq.index].update([result.token_id], stop_terminated)
        status = self._check_stop(seq, stop_str)
        if status is not None:
            self.scheduler.finish_seq(seq, status)

    def _append_logprobs(self, seq: Sequence, result: SampleResult) -> None:
        entry: dict[int, Logprob] = {}
        for j, (tid, lp) in enumerate(zip(result.logprob_token_ids, result.logprobs,
                                          strict=True)):
            if tid not in entry:
                entry[tid] = Logprob(lp, result.rank if j == 0 else j,
                                     self.tokenizer.decode([tid]))
        seq.output_logprobs.append(entry)
        seq.cumulative_logprob += result.logprobs[0]

    def _check_stop(self, seq: Sequence, stop_str: str | None) -> SequenceStatus | None:
        """vLLM's StopChecker: stop strings and stop tokens (after min_tokens), then length."""
        p = seq.sampling_params
        token = seq.last_token_id
        if len(seq.output_token_ids) >= p.min_tokens:
            if stop_str is not None:
                seq.stop_reason = stop_str
                return SequenceStatus.FINISHED_STOPPED
            if not p.ignore_eos and token in self.eos_token_ids:
                return SequenceStatus.FINISHED_STOPPED
            if p.stop_token_ids and token in p.stop_token_ids:
                seq.stop_reason = token
                return SequenceStatus.FINISHED_STOPPED
        if self._length_capped(seq):
            return SequenceStatus.FINISHED_LENGTH_CAPPED
        return None

    def _length_capped(self, seq: Sequence) -> bool:
        """max_tokens or max_model_len reached: known from the counts alone, before the last
        token's value is (async scheduling relies on that)."""
        max_tokens = seq.sampling_params.max_tokens
        return ((max_tokens is not None and len(seq.output_token_ids) >= max_tokens)
                or seq.num_tokens >= self.config.max_model_len)

    def _make_output(self, state: RequestState) -> RequestOutput:
        finished = state.finished
        completions = []
        for seq, detok in zip(state.seqs, state.detokenizers, strict=True):
            want_logprobs = state.params.logprobs is not None
            completions.append(CompletionOutput(
                index=seq.index,
                text=detok.get_next_output_text(seq.is_finished, delta=False),
                token_ids=list(seq.output_token_ids),
                cumulative_logprob=seq.cumulative_logprob if want_logprobs else None,
                logprobs=seq.output_logprobs if want_logprobs else None,
                finish_reason=seq.status.finish_reason,
                stop_reason=seq.stop_reason))
        return RequestOutput(state.request_id, state.prompt, state.prompt_token_ids,
                             completions, finished, state.metrics,
                             num_cached_tokens=state.seqs[0].num_cached_tokens)
