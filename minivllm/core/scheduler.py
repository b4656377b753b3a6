"""Which sequences run in the next step, and how many tokens each: the `scheduler` switch of
lab 3.

Every step the scheduler picks a batch within two budgets, `max_num_seqs` sequences and
`max_num_batched_tokens` tokens, and only with KV cache room for every token it schedules. A
sequence in the batch runs either its prompt (prefill: many tokens, possibly in chunks) or one
decode token. Both policies below produce the same `SchedulerOutput`:

- `StaticScheduler` (provided baseline): a batch is formed when the previous one has fully
  finished, and runs until its last sequence finishes. Short answers wait for the longest one,
  and new requests wait for the whole batch: the GPU idles on finished rows.
- `ContinuousScheduler` (vLLM's `Scheduler`, lab 3): iteration-level scheduling (Orca). Every
  step, the running sequences go first, then waiting ones are admitted into whatever budget and
  blocks remain. When a running sequence needs a block and none is free, the most recently
  admitted sequence is preempted: its blocks are freed and it goes back to the front of the
  waiting queue, to be recomputed (re-prefilled) later (vLLM's `PreemptionMode.RECOMPUTE`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from minivllm.config import EngineConfig
from minivllm.core.kv_cache_manager import KVCacheManager
from minivllm.sequence import Sequence, SequenceStatus


@dataclass
class ScheduledSequence:
    seq: Sequence
    num_new_tokens: int
    """Tokens this sequence runs through the model in this step (1 for a decode)."""
    is_prefill: bool = field(init=False)
    samples: bool = field(init=False)
    """A token is sampled only when the step reaches the end of the known tokens (the last
    chunk of a chunked prefill, or a decode)."""

    def __post_init__(self) -> None:
        # Fixed when scheduled: after the step the sequence's counters move on.
        self.is_prefill = self.seq.num_uncomputed_tokens > 1
        self.samples = self.seq.num_computed_tokens + self.num_new_tokens == self.seq.num_tokens


@dataclass
class SchedulerOutput:
    scheduled: list[ScheduledSequence] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)

    @property
    def num_batched_tokens(self) -> int:
        return sum(s.num_new_tokens for s in self.scheduled)

    @property
    def is_empty(self) -> bool:
        return not self.scheduled


@dataclass
class StepTrace:
    """One step as the course's golden traces and Gantt charts see it."""
    step: int
    prefill: list[tuple[int, int]]
    """(seq_id, tokens) of the sequences that ran prompt tokens."""
    decode: list[int]
    """seq_ids of the sequences that ran one decode token."""
    preempted: list[int]
    num_waiting: int
    num_blocks_used: int

    def to_dict(self) -> dict:
        return {"step": self.step, "prefill": [list(p) for p in self.prefill],
                "decode": self.decode, "preempted": self.preempted,
                "num_waiting": self.num_waiting, "num_blocks_used": self.num_blocks_used}


class Scheduler:
    """The queues and the bookkeeping both policies share."""

    def __init__(self, config: EngineConfig, kv_cache_manager: KVCacheManager) -> None:
        self.max_num_seqs = config.max_num_seqs
        assert config.max_num_batched_tokens is not None, "call EngineConfig.resolve first"
        self.max_num_batched_tokens = config.max_num_batched_tokens
        self.enable_chunked_prefill = config.enable_chunked_prefill
        self.kv_cache_manager = kv_cache_manager
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preemptions = 0
        self.num_steps = 0
        self.record_trace = False
        self.trace: list[StepTrace] = []
        self.last_output = SchedulerOutput()

    # -- queue changes from the engine -----------------------------------------------------
    def add_seq(self, seq: Sequence) -> None:
        seq.status = SequenceStatus.WAITING
        self.waiting.append(seq)

    def finish_seq(self, seq: Sequence, status: SequenceStatus) -> None:
        """A sequence stopped or was aborted: leave the queues and free its blocks at once."""
        seq.status = status
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        self.kv_cache_manager.free(seq)

    def stop_scheduling(self, seq: Sequence) -> None:
        """Async scheduling: the token seq is waiting for is certain to be its last (max_tokens
        or max_model_len). Schedule nothing more for it (vLLM's scheduler skips such requests
        too) and free its blocks now, as the synchronous engine would have by the next step, so
        both schedule the same batches. The step in flight may still write them: any later
        owner's writes and reads come in later steps, behind it on the GPU's stream."""
        self.running.remove(seq)
        self.kv_cache_manager.free(seq)

    def has_unfinished_seqs(self) -> bool:
        return bool(self.waiting or self.running)

    # -- the step ---------------------------------------------------------------------------
    def schedule(self) -> SchedulerOutput:
        out = self._schedule()
        # The model runner wants prefills first, then decodes (see AttentionMetadata).
        out.scheduled.sort(key=lambda s: not s.is_prefill)
        self.num_steps += 1
        self.last_output = out
        if self.record_trace:
            self.trace.append(self._trace_step(out))
        return out

    def _schedule(self) -> SchedulerOutput:
        raise NotImplementedError

    def update_from_output(self, out: SchedulerOutput) -> None:
        """The model ran: the scheduled tokens' K/V are now in the cache, and the blocks they
        filled can be shared with later prompts (prefix caching, lab 5). A sequence that
        finished meanwhile (async scheduling: it stopped on the previous step's token) has given
        its blocks back and is skipped."""
        for s in out.scheduled:
            if s.seq.is_finished:
                continue
            s.seq.num_computed_tokens += s.num_new_tokens
            self.kv_cache_manager.cache_blocks(s.seq)

    def _preempt(self, seq: Sequence, out: SchedulerOutput) -> None:
        """Preemption by recompute: drop the sequence's KV cache, keep its tokens (prompt and
        output so far) and put it first in line; its next prefill recomputes all of them."""
        self.kv_cache_manager.free(seq)
        seq.num_computed_tokens = 0
        seq.status = SequenceStatus.PREEMPTED
        seq.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(seq)
        out.preempted.append(seq)

    def _num_tokens_to_run(self, seq: Sequence, budget: int) -> int:
        """How many of seq's uncomputed tokens fit in the remaining token budget (0: none).

        Without chunked prefill a sequence runs all its uncomputed tokens or waits; with it, a
        prompt takes what is left of the budget and goes on in the next step (lab 5). Running
        sequences are served before waiting ones, and a chunk takes all the budget left, so
        the only sequence that can be part-way through its prompt is the newest running one:
        the decodes of the others come first in every step, beside its next chunk.

        A sequence not admitted yet (new, or preempted) skips the prefix that the prefix cache
        holds (lab 5); `allocate_slots` hands it those blocks.
        """
        n = seq.num_uncomputed_tokens
        if not seq.block_table:
            n -= self.kv_cache_manager.get_computed_blocks(seq)[1]
        if n <= budget:
            return n
        return budget if self.enable_chunked_prefill else 0

    def _trace_step(self, out: SchedulerOutput) -> StepTrace:
        return StepTrace(
            step=self.num_steps,
            prefill=[(s.seq.seq_id, s.num_new_tokens) for s in out.scheduled if s.is_prefill],
            decode=[s.seq.seq_id for s in out.scheduled if not s.is_prefill],
            preempted=[seq.seq_id for seq in out.preempted],
            num_waiting=len(self.waiting),
            num_blocks_used=self.kv_cache_manager.num_blocks
            - self.kv_cache_manager.num_free_blocks)


class StaticScheduler(Scheduler):
    """Provided baseline: static batching. A new batch is admitted only when the running batch
    is empty; then the batch runs (prompts, then one token per step) until all have finished."""

    def _schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        budget = self.max_num_batched_tokens
        if not self.running:
            while self.waiting and len(self.running) < self.max_num_seqs:
                seq = self.waiting[0]
                n = self._num_tokens_to_run(seq, budget)
                if n == 0 or not self.kv_cache_manager.allocate_slots(seq, n):
                    break
                self.waiting.popleft()
                seq.status = SequenceStatus.RUNNING
                self.running.append(seq)
                out.scheduled.append(ScheduledSequence(seq, n))
                budget -= n
            return out
        for seq in list(self.running):
            if seq.status != SequenceStatus.RUNNING:  # preempted below, to make room
                continue
            n = self._num_tokens_to_run(seq, budget)
            if n == 0:
                continue
            while not self.kv_cache_manager.allocate_slots(seq, n):
                victim = self.running.pop()
                self._preempt(victim, out)
                if victim is seq:
                    break
            else:
                out.scheduled.append(ScheduledSequence(seq, n))
                budget -= n
        return out


class ContinuousScheduler(Scheduler):
    """Continuous batching with preemption by recompute (lab 3)."""

    def _schedule(self) -> SchedulerOutput:
        """Fill one step.

        1. Running sequences first, oldest first: each gets its uncomputed tokens (one for a
           decode; a prompt chunk with chunked prefill) within the token budget. If the KV cache
           has no room, preempt the newest running sequence (possibly this one) and retry.
        2. Then, unless something was preempted in this step, admit waiting sequences in FCFS
           order while the budget, `max_num_seqs` and free blocks allow. Stop at the first one
           that does not fit, so that no later request jumps ahead of it.
        """
        # BEGIN SOLUTION lab3
        out = SchedulerOutput()
        budget = self.max_num_batched_tokens
        for seq in list(self.running):
            if seq.status != SequenceStatus.RUNNING:  # preempted below, to make room
                continue
            n = self._num_tokens_to_run(seq, budget)
            if n == 0:
                continue
            while not self.kv_cache_manager.allocate_slots(seq, n):
                victim = self.running.pop()
                self._preempt(victim, out)
                if victim is seq:
                    break
            else:
                out.scheduled.append(ScheduledSequence(seq, n))
                budget -= n

        if out.preempted:
            return out
        while self.waiting and len(self.running) < self.max_num_seqs and budget > 0:
            seq = self.waiting[0]
            n = self._num_tokens_to_run(seq, budget)
            if n == 0 or not self.kv_cache_manager.allocate_slots(seq, n):
                break
            self.waiting.popleft()
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            out.scheduled.append(ScheduledSequence(seq, n))
            budget -= n
        return out
        # END SOLUTION


def make_scheduler(config: EngineConfig, kv_cache_manager: KVCacheManager) -> Scheduler:
    schedulers = {"static": StaticScheduler, "continuous": ContinuousScheduler}
    return schedulers[config.scheduler](config, kv_cache_manager)
