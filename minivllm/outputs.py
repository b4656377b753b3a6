"""What `LLM.generate` returns and the engine streams: vLLM's `RequestOutput` and friends."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Logprob:
    """Log probability of one token, its rank in the vocabulary (1 = most likely) and its text."""
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


SampleLogprobs = list[dict[int, Logprob]]
"""For each generated token: the sampled token and the top-k alternatives, by token id."""


@dataclass
class CompletionOutput:
    """One of the `n` completions of a request. `text` and `token_ids` are cumulative."""
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None = None
    logprobs: SampleLogprobs | None = None
    finish_reason: str | None = None
    """"stop" (EOS, a stop token or a stop string), "length" (max_tokens or max_model_len) or
    "abort"; None while the sequence is still running."""
    stop_reason: int | str | None = None
    """The stop string or stop token id that ended the sequence; None for EOS or length."""

    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass
class RequestMetrics:
    arrival_time: float
    first_token_time: float | None = None
    finished_time: float | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool
    metrics: RequestMetrics | None = None
    num_cached_tokens: int = 0
    prompt_logprobs: None = field(default=None, repr=False)
