"""Lab 3's workloads: run a scheduler over requests without a model, and trace every step.

The engine's step loop, minus the model: requests arrive at given steps, the scheduler picks
the batch, and every sequence whose step reaches the end of its known tokens gets one sampled
token; a sequence stops after `max_tokens` tokens. The scheduler's own `StepTrace` records
each step (who ran prompt tokens and how many, who decoded, who was preempted, the queue
length and the KV blocks in use). Sequence ids are renumbered to request indices, so traces
from different runs compare equal.

`record` stores the reference scheduler's traces; the graded checks rerun the same workloads
with the student's scheduler (over the student's lab-1 paged KV cache manager) and compare
step by step. Lab 5 runs them with prefix caching: then the prompts' tokens matter (requests
may give them), and the prefix cache's figures are part of the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from minivllm.sequence import Sequence, SequenceStatus


@dataclass(frozen=True)
class SchedulerSetup:
    num_blocks: int
    block_size: int
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    enable_chunked_prefill: bool = False
    enable_prefix_caching: bool = False
    policy: str = "continuous"


@dataclass(frozen=True)
class Request:
    arrival_step: int
    prompt_len: int
    max_tokens: int
    prompt: tuple[int, ...] | None = None
    """The prompt's token ids; by default 0, 1, ..., prompt_len - 1."""


@dataclass
class SimulationResult:
    trace: list[dict[str, Any]]
    """The scheduler's StepTrace of every step, sequence ids renumbered to request indices."""
    prefix_cache_hits: int
    prefix_cache_queries: int
    num_cached_tokens: list[int]
    """Per request: prompt tokens found in the prefix cache at its first admission."""


class NoProgressError(AssertionError):
    """The workload did not finish within its step limit."""


def simulate(setup: SchedulerSetup, requests: list[Request],
             max_steps: int = 5000) -> SimulationResult:
    """Run the workload to the end."""
    from minivllm.config import EngineConfig
    from minivllm.core.kv_cache_manager import make_kv_cache_manager
    from minivllm.core.scheduler import make_scheduler
    from minivllm.sampling_params import SamplingParams

    config = EngineConfig(device="cpu", scheduler=setup.policy,
                          max_model_len=setup.max_model_len, block_size=setup.block_size,
                          max_num_seqs=setup.max_num_seqs,
                          max_num_batched_tokens=setup.max_num_batched_tokens,
                          enable_chunked_prefill=setup.enable_chunked_prefill)
    config.resolve(model_max_len=setup.max_model_len)
    kv_cache = make_kv_cache_manager("paged", setup.num_blocks, setup.block_size,
                                     setup.max_model_len, setup.enable_prefix_caching)
    scheduler = make_scheduler(config, kv_cache)
    scheduler.record_trace = True

    index_of: dict[int, int] = {}  # seq_id -> request index
    seqs: list[Sequence] = []
    max_tokens: dict[int, int] = {}
    arrivals = sorted(range(len(requests)), key=lambda i: (requests[i].arrival_step, i))
    step = 0
    while arrivals or scheduler.has_unfinished_seqs():
        while arrivals and requests[arrivals[0]].arrival_step <= step:
            i = arrivals.pop(0)
            prompt = requests[i].prompt or range(requests[i].prompt_len)
            seq = Sequence(f"req{i}", list(prompt), SamplingParams())
            seqs.append(seq)
            index_of[seq.seq_id] = i
            max_tokens[seq.seq_id] = requests[i].max_tokens
            scheduler.add_seq(seq)
        out = scheduler.schedule()
        sampled = [s.seq for s in out.scheduled if s.samples]
        scheduler.update_from_output(out)
        for seq in sampled:
            seq.append_token(1)
            if len(seq.output_token_ids) >= max_tokens[seq.seq_id]:
                scheduler.finish_seq(seq, SequenceStatus.FINISHED_LENGTH_CAPPED)
        step += 1
        if step > max_steps:
            raise NoProgressError(f"the workload had not finished after {max_steps} steps")
    seqs.sort(key=lambda seq: index_of[seq.seq_id])
    return SimulationResult(
        trace=[_renumber(t.to_dict(), index_of) for t in scheduler.trace],
        prefix_cache_hits=kv_cache.prefix_cache_hits,
        prefix_cache_queries=kv_cache.prefix_cache_queries,
        num_cached_tokens=[seq.num_cached_tokens for seq in seqs])


def _renumber(step: dict[str, Any], index_of: dict[int, int]) -> dict[str, Any]:
    return {**step,
            "prefill": [[index_of[seq_id], n] for seq_id, n in step["prefill"]],
            "decode": [index_of[seq_id] for seq_id in step["decode"]],
            "preempted": [index_of[seq_id] for seq_id in step["preempted"]]}
