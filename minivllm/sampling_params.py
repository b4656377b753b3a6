"""SamplingParams: how one request wants its tokens chosen and when it wants to stop.

Mirrors vLLM's `vllm/sampling_params.py`: the same field names, defaults and validation
messages, so that `SamplingParams(temperature=0.8, top_p=0.95, max_tokens=64)` means the same
thing here as in vLLM and as in the OpenAI API the server maps onto it.

Three groups of fields:

* how to pick a token: `temperature`, `top_k`, `top_p`, `min_p`, the three penalties, `seed`
  (read by the `Sampler`, one row of `SamplingMetadata` per sequence);
* when to stop: `max_tokens`, `min_tokens`, `stop`, `stop_token_ids`, `ignore_eos`
  (read by the engine, and by the `IncrementalDetokenizer` for stop strings);
* what to return: `n`, `logprobs`, `skip_special_tokens`, `include_stop_str_in_output`, ...
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

_SAMPLING_EPS = 1e-5
"""Temperatures below this mean greedy decoding (vLLM's `_SAMPLING_EPS`): dividing logits by
a temperature that small would only amplify rounding noise."""


class SamplingType(enum.IntEnum):
    """How the sampler picks a sequence's token (vLLM's `SamplingType`)."""
    GREEDY = 0
    """argmax of the (penalised) logits: no randomness at all."""
    RANDOM = 1
    """A draw from the processed distribution using the device's global RNG."""
    RANDOM_SEED = 2
    """A draw using the sequence's own `torch.Generator`, so the result does not depend on the
    other sequences of the batch."""


class RequestOutputKind(enum.IntEnum):
    """Which `RequestOutput`s the engine makes for a request (vLLM's `RequestOutputKind`)."""
    CUMULATIVE = 0
    """One after every step that advances the request, with all its text and tokens so far
    (what a stream needs)."""
    FINAL_ONLY = 2
    """Only the last one. `LLM.generate` asks for this: building an output for each of 256
    running requests on every step costs milliseconds of host time per step, while the GPU
    waits, to produce objects nobody reads."""


@dataclass
class SamplingParams:
    n: int = 1
    """Completions to generate for the prompt; the engine makes `n` sequences."""
    presence_penalty: float = 0.0
    """Subtracted once from the logit of every token already in the output (OpenAI's
    definition); > 0 pushes the model towards new tokens."""
    frequency_penalty: float = 0.0
    """Subtracted from a token's logit once per occurrence in the output (OpenAI's definition)."""
    repetition_penalty: float = 1.0
    """For tokens in the prompt or the output: positive logits are divided by it, negative ones
    multiplied (the CTRL paper / Hugging Face definition); > 1 discourages repetition."""
    temperature: float = 1.0
    """Logits are divided by it; 0 means greedy."""
    top_p: float = 1.0
    """Keep the smallest set of most likely tokens whose probabilities add up to top_p."""
    top_k: int = 0
    """Keep only the k most likely tokens; 0 (or -1) keeps all."""
    min_p: float = 0.0
    """Drop tokens less likely than min_p times the most likely token's probability."""
    seed: int | None = None
    """Seed of this request's own random stream (sequence i of the request uses seed + i)."""
    stop: str | list[str] | None = None
    """Strings that end generation when they appear in the output text; normalised to a list."""
    stop_token_ids: list[int] | None = None
    """Token ids that end generation (in addition to EOS); normalised to a list."""
    ignore_eos: bool = False
    """Keep generating after EOS (benchmarks use it to get outputs of a fixed length)."""
    max_tokens: int | None = 16
    """Output tokens at most; None means until the context (max_model_len) is full."""
    min_tokens: int = 0
    """Output tokens before EOS, stop token ids or stop strings may end the sequence."""
    logprobs: int | None = None
    """Also return the log probabilities of the sampled token and of this many most likely
    alternatives at each step; 0 returns only the sampled token's; None returns nothing."""
    skip_special_tokens: bool = True
    """Leave special tokens (EOS, chat markers) out of the output text."""
    spaces_between_special_tokens: bool = True
    """Put spaces around special tokens in the text. Only slow (pure Python) tokenizers use it;
    minivllm's fast tokenizers decode special tokens as they are, as in vLLM."""
    include_stop_str_in_output: bool = False
    """Keep the matched stop string at the end of the output text."""
    output_kind: RequestOutputKind = RequestOutputKind.CUMULATIVE
    """Every step's output, or only the final one (see `RequestOutputKind`)."""

    # -- derived, not constructor arguments --------------------------------------------
    output_text_buffer_length: int = field(init=False, default=0)
    """Characters a stream must hold back until the sequence finishes: the end of the text may
    be the start of a stop string that would then be cut off (longest stop string - 1)."""
    _all_stop_token_ids: set[int] = field(init=False, default_factory=set, repr=False)

    def __post_init__(self) -> None:
        if self.seed == -1:  # vLLM and the OpenAI server treat -1 as "no seed"
            self.seed = None
        if self.stop is None:
            self.stop = []
        elif isinstance(self.stop, str):
            self.stop = [self.stop]
        else:
            self.stop = list(self.stop)
        self.stop_token_ids = [] if self.stop_token_ids is None else list(self.stop_token_ids)
        if self.top_k == -1:  # both spellings of "disabled"; keep one so the sampler checks one
            self.top_k = 0

        self._verify_args()

        if self.stop and not self.include_stop_str_in_output:
            self.output_text_buffer_length = max(len(s) for s in self.stop) - 1

        if self.temperature < _SAMPLING_EPS:
            # Greedy: argmax ignores truncation, so reset it and let the sampler see neutral
            # values (a greedy row then needs none of the random path's work).
            self.top_p = 1.0
            self.top_k = 0
            self.min_p = 0.0

        # The engine adds the model's EOS ids in update_from_generation_config.
        self._all_stop_token_ids.update(self.stop_token_ids)

    def _verify_args(self) -> None:
        def is_int(x: object) -> bool:
            return isinstance(x, int) and not isinstance(x, bool)

        checks: list[tuple[bool, str]] = [
            (is_int(self.n), f"n must be an int, but is of type {type(self.n).__name__}"),
            (not is_int(self.n) or self.n >= 1, f"n must be at least 1, got {self.n}."),
            (-2.0 <= self.presence_penalty <= 2.0,
             f"presence_penalty must be in [-2, 2], got {self.presence_penalty}."),
            (-2.0 <= self.frequency_penalty <= 2.0,
             f"frequency_penalty must be in [-2, 2], got {self.frequency_penalty}."),
            (self.repetition_penalty > 0.0,
             f"repetition_penalty must be greater than zero, got {self.repetition_penalty}."),
            (self.temperature >= 0.0,
             f"temperature must be non-negative, got {self.temperature}."),
            (0.0 < self.top_p <= 1.0, f"top_p must be in (0, 1], got {self.top_p}."),
            (is_int(self.top_k),
             f"top_k must be an integer, got {type(self.top_k).__name__}"),
            (not is_int(self.top_k) or self.top_k >= 0,
             f"top_k must be 0 (disable), or at least 1, got {self.top_k}."),
            (0.0 <= self.min_p <= 1.0, f"min_p must be in [0, 1], got {self.min_p}."),
            (self.seed is None or is_int(self.seed),
             f"seed must be an integer or None, got {self.seed!r}."),
            (self.max_tokens is None or (is_int(self.max_tokens) and self.max_tokens >= 1),
             f"max_tokens must be at least 1, got {self.max_tokens}."),
            (is_int(self.min_tokens) and self.min_tokens >= 0,
             f"min_tokens must be greater than or equal to 0, got {self.min_tokens}."),
            (self.max_tokens is None or not is_int(self.min_tokens)
             or self.min_tokens <= self.max_tokens,
             f"min_tokens must be less than or equal to max_tokens={self.max_tokens}, "
             f"got {self.min_tokens}."),
            (self.logprobs is None or (is_int(self.logprobs) and self.logprobs >= 0),
             f"logprobs must be non-negative, got {self.logprobs}."),
            (all(isinstance(s, str) and s for s in self.stop),
             "stop cannot contain an empty string."),
            (all(is_int(t) and t >= 0 for t in self.stop_token_ids),
             f"stop_token_ids must be non-negative integers, got {self.stop_token_ids}."),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def verify_max_logprobs(self, max_logprobs: int) -> None:
        """Reject a request asking for more alternatives than the engine returns (vLLM's
        `max_logprobs` engine argument, 20 by default)."""
        if self.logprobs is not None and self.logprobs > max_logprobs:
            raise ValueError(
                f"Requested sample logprobs of {self.logprobs}, "
                f"which is greater than max allowed: {max_logprobs}")

    @property
    def sampling_type(self) -> SamplingType:
        if self.temperature < _SAMPLING_EPS:
            return SamplingType.GREEDY
        if self.seed is not None:
            return SamplingType.RANDOM_SEED
        return SamplingType.RANDOM

    @property
    def has_penalties(self) -> bool:
        return (self.presence_penalty != 0.0 or self.frequency_penalty != 0.0
                or self.repetition_penalty != 1.0)

    @property
    def all_stop_token_ids(self) -> set[int]:
        """Token ids that end this request: `stop_token_ids`, plus the model's EOS ids unless
        `ignore_eos`. The sampler masks them while `min_tokens` are not reached."""
        return self._all_stop_token_ids

    def update_from_generation_config(self, generation_config: dict[str, Any],
                                      model_eos_token_id: int | None = None) -> None:
        """Add the model's end-of-sequence ids; the engine calls this at `add_request`.

        A model may end turns with several ids: `generation_config.json`'s `eos_token_id` can be
        a list (e.g. Llama 3 Instruct stops at both `<|end_of_text|>` and `<|eot_id|>`), while
        the tokenizer knows one. Like vLLM, the extra ids also join `stop_token_ids`, so the
        engine reports them as the `stop_reason` (the primary EOS gives `stop_reason=None`).
        """
        if self.ignore_eos:
            return
        eos_ids = generation_config.get("eos_token_id")
        eos_ids = set() if eos_ids is None else (
            {eos_ids} if isinstance(eos_ids, int) else set(eos_ids))
        if model_eos_token_id is not None:
            self._all_stop_token_ids.add(model_eos_token_id)
            eos_ids.discard(model_eos_token_id)
        self._all_stop_token_ids.update(eos_ids)
        self.stop_token_ids += sorted(eos_ids - set(self.stop_token_ids))
