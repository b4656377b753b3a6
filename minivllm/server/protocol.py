"""The OpenAI wire format: pydantic models of every request and response the server speaks.

Mirrors vLLM's `vllm/entrypoints/openai/protocol.py`. The request models accept the official
OpenAI fields plus vLLM's sampling extras (`top_k`, `min_p`, `repetition_penalty`, `min_tokens`,
`ignore_eos`, ...). Fields a client sends that we do not know are ignored (and logged), as vLLM
does, so clients written for newer OpenAI APIs keep working. Values are not range-checked here:
`SamplingParams` owns those checks, so the engine and the server give the same message. Two
exceptions guard the engine from what JSON can carry and Python cannot use: `seed` must fit
64 bits, and strings must be valid Unicode (no lone surrogates).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from minivllm.sampling_params import SamplingParams

logger = logging.getLogger(__name__)

MAX_LOGPROBS = 20
"""Most alternatives per token a request may ask for (vLLM's default `--max-logprobs`)."""

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
"""The range of a 64-bit seed, as vLLM's protocol bounds `seed` (`torch.iinfo(torch.long)`):
JSON integers are unbounded, and `torch.Generator.manual_seed` raises on anything wider, which
would happen inside an engine step and take the whole engine down with it."""


def random_uuid() -> str:
    return uuid.uuid4().hex


class OpenAIBaseModel(BaseModel):
    """Base of every response object."""


def walk_json(data: Any) -> Iterator[tuple[Any, int]]:
    """Every value in `data` with its depth (0 at the top), through nested lists and dicts,
    dict keys included. Iterative, so that deeply nested input cannot exhaust the stack."""
    stack = [(data, 0)]
    while stack:
        item, depth = stack.pop()
        yield item, depth
        if isinstance(item, dict):
            stack += [(child, depth + 1) for child in (*item.keys(), *item.values())]
        elif isinstance(item, list):
            stack += [(child, depth + 1) for child in item]


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _has_lone_surrogate(data: Any) -> bool:
    """Whether any string in `data` (nested lists and dicts, keys included) holds a lone UTF-16
    surrogate. JSON may spell one (`"\\ud800"`) and `json.loads` accepts it, but it is not
    text: the tokenizer raises TypeError on it, and so does encoding any response that quotes
    it."""
    return any(isinstance(item, str) and not _is_text(item) for item, _ in walk_json(data))


class RequestModel(OpenAIBaseModel):
    """Base of every request: unknown fields are dropped, and logged at debug level; strings
    must be valid Unicode."""
    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _reject_lone_surrogates(cls, data: Any) -> Any:
        if _has_lone_surrogate(data):
            raise ValueError("The request holds a string that is not valid Unicode (a lone "
                             "UTF-16 surrogate escape such as \\ud800).")
        return data

    @model_validator(mode="before")
    @classmethod
    def _log_ignored_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            names = set(cls.model_fields) | {f.alias for f in cls.model_fields.values() if f.alias}
            if ignored := data.keys() - names:
                logger.debug("%s: ignoring unknown fields %s", cls.__name__, sorted(ignored))
        return data


# -- errors ----------------------------------------------------------------------------------
class ErrorInfo(OpenAIBaseModel):
    message: str
    type: str
    param: str | None = None
    code: int
    """The HTTP status, as vLLM sends it (OpenAI sends a string code here)."""


class ErrorResponse(OpenAIBaseModel):
    error: ErrorInfo


# -- models ----------------------------------------------------------------------------------
class ModelCard(OpenAIBaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "minivllm"
    root: str | None = None
    parent: str | None = None
    max_model_len: int | None = None


class ModelList(OpenAIBaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard] = Field(default_factory=list)


# -- shared pieces ---------------------------------------------------------------------------
class UsageInfo(OpenAIBaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class StreamOptions(RequestModel):
    include_usage: bool | None = True
    """Send a last chunk with `usage` and empty `choices` before `[DONE]`."""


class SamplingRequest(RequestModel):
    """The fields completions and chat completions share: the model and how to sample.

    vLLM repeats them in both request classes; one base class keeps the mapping onto
    `SamplingParams` in one place.
    """
    model: str | None = None
    """Optional, as in vLLM: the first served model name when left out."""
    n: int = 1
    seed: int | None = Field(default=None, ge=_LONG_MIN, le=_LONG_MAX)
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    # vLLM's extra sampling parameters.
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    stop_token_ids: list[int] | None = None
    include_stop_str_in_output: bool = False
    ignore_eos: bool = False
    min_tokens: int = 0
    skip_special_tokens: bool = True

    @model_validator(mode="after")
    def _stream_options_need_stream(self) -> SamplingRequest:
        if self.stream_options is not None and not self.stream:
            raise ValueError("Stream options can only be defined when `stream=True`.")
        return self

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def to_sampling_params(self, max_tokens: int, logprobs: int | None) -> SamplingParams:
        """Fields the client left out keep `SamplingParams`' defaults (temperature 1.0, ...)."""
        optional = {name: getattr(self, name) for name in (
            "seed", "temperature", "top_p", "top_k", "min_p", "frequency_penalty",
            "presence_penalty", "repetition_penalty", "stop_token_ids")}
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        return SamplingParams(
            n=self.n, max_tokens=max_tokens, min_tokens=self.min_tokens, logprobs=logprobs,
            stop=stop or [], ignore_eos=self.ignore_eos,
            include_stop_str_in_output=self.include_stop_str_in_output,
            skip_special_tokens=self.skip_special_tokens,
            **{name: value for name, value in optional.items() if value is not None})


# -- /v1/completions -------------------------------------------------------------------------
class CompletionRequest(SamplingRequest):
    # A string, a batch of strings, token ids, or a batch of token ids.
    prompt: list[int] | list[list[int]] | str | list[str]
    echo: bool = False
    """Return the prompt in front of the completion."""
    logprobs: int | None = None
    """Log probabilities of the sampled token and of this many most likely ones."""
    max_tokens: int | None = 16
    """OpenAI's and vLLM's default for completions; None fills up to `max_model_len`."""
    add_special_tokens: bool = True

    @property
    def prompt_batch(self) -> list[str] | list[list[int]]:
        """The prompts: a string or a list of token ids is one prompt; a list of strings or of
        token-id lists is a batch, one engine request each."""
        prompt = self.prompt
        if isinstance(prompt, str) or not prompt or isinstance(prompt[0], int):
            return [prompt]  # type: ignore[list-item]
        return prompt  # type: ignore[return-value]

    @model_validator(mode="after")
    def _check_logprobs(self) -> CompletionRequest:
        if self.logprobs is not None and not 0 <= self.logprobs <= MAX_LOGPROBS:
            raise ValueError(f"`logprobs` must be between 0 and {MAX_LOGPROBS}, "
                             f"got {self.logprobs}.")
        if self.echo and self.logprobs is not None:
            raise ValueError("`echo` with `logprobs` needs prompt logprobs, "
                             "which minivllm does not compute.")
        return self


class CompletionLogProbs(OpenAIBaseModel):
    text_offset: list[int] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    tokens: list[str] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = Field(default_factory=list)


class CompletionResponseChoice(OpenAIBaseModel):
    index: int
    text: str
    logprobs: CompletionLogProbs | None = None
    finish_reason: str | None = None
    stop_reason: int | str | None = None
    """vLLM's extra: the stop string or token id that ended the choice."""


class CompletionResponse(OpenAIBaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionResponseChoice]
    usage: UsageInfo


class CompletionStreamResponse(OpenAIBaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionResponseChoice]
    usage: UsageInfo | None = None


# -- /v1/chat/completions --------------------------------------------------------------------
class ChatMessageParam(BaseModel):
    """One message of the conversation. Extra keys (`name`, `tool_calls`, ...) are kept and
    handed to the chat template, which may use them."""
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(SamplingRequest):
    messages: list[ChatMessageParam] = Field(min_length=1)
    logprobs: bool = False
    top_logprobs: int | None = None
    max_tokens: int | None = None
    """Deprecated by OpenAI in favour of `max_completion_tokens`; both are accepted."""
    max_completion_tokens: int | None = None
    echo: bool = False
    """vLLM's extra: start the reply with the last message when it has the reply's role."""
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    add_special_tokens: bool = False
    """The chat template writes the special tokens itself (BOS, ...)."""
    chat_template_kwargs: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None:
            if not 0 <= self.top_logprobs <= MAX_LOGPROBS:
                raise ValueError(f"`top_logprobs` must be between 0 and {MAX_LOGPROBS}, "
                                 f"got {self.top_logprobs}.")
            if not self.logprobs:
                raise ValueError("when using `top_logprobs`, `logprobs` must be set to true.")
        if self.continue_final_message and self.add_generation_prompt:
            raise ValueError("Cannot set both `continue_final_message` and "
                             "`add_generation_prompt` to True.")
        return self

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None \
            else self.max_tokens


class ChatCompletionLogProb(OpenAIBaseModel):
    token: str
    logprob: float = -9999.0
    bytes: list[int] | None = None


class ChatCompletionLogProbsContent(ChatCompletionLogProb):
    top_logprobs: list[ChatCompletionLogProb] = Field(default_factory=list)


class ChatCompletionLogProbs(OpenAIBaseModel):
    content: list[ChatCompletionLogProbsContent] | None = None


class ChatMessage(OpenAIBaseModel):
    role: str
    content: str


class ChatCompletionResponseChoice(OpenAIBaseModel):
    index: int
    message: ChatMessage
    logprobs: ChatCompletionLogProbs | None = None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


class ChatCompletionResponse(OpenAIBaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatCompletionResponseChoice]
    usage: UsageInfo


class DeltaMessage(OpenAIBaseModel):
    """What a stream chunk adds to a choice: `role` in the first chunk, then `content`."""
    role: str | None = None
    content: str | None = None

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class ChatCompletionResponseStreamChoice(OpenAIBaseModel):
    index: int
    delta: DeltaMessage
    logprobs: ChatCompletionLogProbs | None = None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


class ChatCompletionStreamResponse(OpenAIBaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatCompletionResponseStreamChoice]
    usage: UsageInfo | None = None


# -- /tokenize and /detokenize (vLLM's own endpoints) --------------------------------------
class TokenizeCompletionRequest(RequestModel):
    model: str | None = None
    prompt: str
    add_special_tokens: bool = True
    return_token_strs: bool = False


class TokenizeChatRequest(RequestModel):
    model: str | None = None
    messages: list[ChatMessageParam]
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    add_special_tokens: bool = False
    chat_template_kwargs: dict[str, Any] | None = None
    return_token_strs: bool = False


TokenizeRequest = TokenizeCompletionRequest | TokenizeChatRequest


class TokenizeResponse(OpenAIBaseModel):
    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str] | None = None


class DetokenizeRequest(RequestModel):
    model: str | None = None
    tokens: list[int]


class DetokenizeResponse(OpenAIBaseModel):
    prompt: str
