"""A sequence: one prompt and the tokens generated for it so far.

Mirrors vLLM's `Request` (v1) / `Sequence` (v0). A request with `n > 1` becomes `n` sequences that
share a `request_id` and differ by `index`. The scheduler moves sequences between the waiting and
running queues; the KV cache manager fills `block_table`; the engine appends sampled tokens.
"""

from __future__ import annotations

import enum
import itertools
import time
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from minivllm.outputs import Logprob
    from minivllm.sampling_params import SamplingParams

_seq_ids = itertools.count()

PLACEHOLDER_TOKEN_ID = -1
"""Async scheduling: the token a launched step will sample, before the host knows it (vLLM's
output placeholders). It counts as a token, so the scheduler sizes the next step right; the
model runner takes its value from the GPU, and the engine writes it in once it arrives."""


class SequenceStatus(enum.Enum):
    WAITING = enum.auto()
    RUNNING = enum.auto()
    PREEMPTED = enum.auto()
    FINISHED_STOPPED = enum.auto()
    FINISHED_LENGTH_CAPPED = enum.auto()
    FINISHED_ABORTED = enum.auto()

    @property
    def is_finished(self) -> bool:
        return self in _FINISHED  # asked for every sequence on every step: a set lookup

    @property
    def finish_reason(self) -> str | None:
        """The OpenAI `finish_reason` of a finished status."""
        return {SequenceStatus.FINISHED_STOPPED: "stop",
                SequenceStatus.FINISHED_LENGTH_CAPPED: "length",
                SequenceStatus.FINISHED_ABORTED: "abort"}.get(self)


_FINISHED = frozenset(s for s in SequenceStatus if s.name.startswith("FINISHED"))


class Sequence:
    def __init__(self, request_id: str, prompt_token_ids: list[int],
                 sampling_params: SamplingParams, index: int = 0,
                 arrival_time: float | None = None) -> None:
        self.seq_id = next(_seq_ids)
        self.request_id = request_id
        self.index = index
        self.prompt_token_ids = list(prompt_token_ids)
        self.output_token_ids: list[int] = []
        self.sampling_params = sampling_params
        self.status = SequenceStatus.WAITING
        self.arrival_time = time.monotonic() if arrival_time is None else arrival_time

        # KV cache state, owned by the KVCacheManager (lab 1).
        self.block_table: list[int] = []
        """Physical block ids in order: position p lives in block_table[p // block_size]."""
        self.num_computed_tokens = 0
        """Tokens whose K/V are in the cache. Prefill moves it to the prompt length (in chunks
        with chunked prefill); every decode step moves it by one; preemption resets it to 0."""
        self.num_cached_tokens = 0
        """Prompt tokens found in the prefix cache at admission (lab 5)."""
        self.num_preemptions = 0

        # Sampling state.
        self.generator: torch.Generator | None = None
        """Seeded sampling: made on the model's device by the sampler on first use (seeded with
        `seed + index`, so the n samples of one request differ)."""
        self.output_logprobs: list[dict[int, Logprob]] = []
        self.cumulative_logprob = 0.0
        self.stop_reason: int | str | None = None
        self.first_token_time: float | None = None

    # -- sizes -------------------------------------------------------------------------
    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_token_ids) + len(self.output_token_ids)

    @property
    def all_token_ids(self) -> list[int]:
        return self.prompt_token_ids + self.output_token_ids

    @property
    def last_token_id(self) -> int:
        return self.output_token_ids[-1] if self.output_token_ids else self.prompt_token_ids[-1]

    @property
    def num_uncomputed_tokens(self) -> int:
        """Tokens still to run through the model before the next sample (1 while decoding)."""
        return self.num_tokens - self.num_computed_tokens

    @property
    def is_prefill(self) -> bool:
        """True until the K/V of every known token but the newest are in the cache."""
        return self.num_uncomputed_tokens > 1

    @property
    def is_finished(self) -> bool:
        return self.status.is_finished

    def append_placeholder(self) -> None:
        """Async scheduling: hold the place of the token the launched step samples."""
        self.output_token_ids.append(PLACEHOLDER_TOKEN_ID)

    def append_token(self, token_id: int) -> None:
        """Add a sampled token, in place of the placeholder left for it, if there is one."""
        if self.output_token_ids and self.output_token_ids[-1] == PLACEHOLDER_TOKEN_ID:
            self.output_token_ids[-1] = token_id
        else:
            self.output_token_ids.append(token_id)

    def __repr__(self) -> str:
        return (f"Sequence(id={self.seq_id}, request={self.request_id!r}, "
                f"status={self.status.name}, tokens={self.num_tokens}, "
                f"computed={self.num_computed_tokens}, "
                f"blocks={self.block_table})")
