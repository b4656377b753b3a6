"""What the completion, chat and tokenize endpoints share (vLLM's `OpenAIServing`).

Prompts are tokenized here, in the server, not in the engine: the server needs the token
count anyway (to check the prompt against `max_model_len` and answer 400 *before* a stream
starts, and for `usage`), and the engine then receives token ids.
"""

from __future__ import annotations

from http import HTTPStatus

from pydantic import BaseModel

from minivllm.engine.async_llm_engine import AsyncLLMEngine
from minivllm.outputs import Logprob
from minivllm.server.chat_utils import apply_chat_template
from minivllm.server.errors import OpenAIError
from minivllm.server.protocol import ChatMessageParam
from minivllm.server.serving_models import OpenAIServingModels

SSE_DONE = "data: [DONE]\n\n"


def sse(payload: BaseModel) -> str:
    """One Server-Sent Event: a `data:` line with the JSON chunk, then a blank line."""
    # BEGIN SOLUTION lab4
    return f"data: {payload.model_dump_json()}\n\n"
    # END SOLUTION


def to_openai_error(error: Exception) -> OpenAIError:
    """Invalid input (ValueError, as SamplingParams and the engine raise it) is the client's
    fault: 400. Anything else is ours: 500."""
    # BEGIN SOLUTION lab4
    if isinstance(error, OpenAIError):
        return error
    if isinstance(error, ValueError):
        return OpenAIError(str(error))
    return OpenAIError(f"{type(error).__name__}: {error}", HTTPStatus.INTERNAL_SERVER_ERROR)
    # END SOLUTION


def sse_error(error: Exception) -> str:
    """Once a stream has started, the status is already 200: an error becomes an event."""
    # BEGIN SOLUTION lab4
    return sse(to_openai_error(error).to_response())
    # END SOLUTION


class OpenAIServing:
    def __init__(self, engine: AsyncLLMEngine, models: OpenAIServingModels,
                 chat_template: str | None = None) -> None:
        self.engine = engine
        self.models = models
        self.chat_template = chat_template
        self.tokenizer = engine.tokenizer
        self.max_model_len: int = engine.config.max_model_len

    # -- prompts ---------------------------------------------------------------------------
    def tokenize(self, text: str, add_special_tokens: bool) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens)

    def render_chat(self, messages: list[ChatMessageParam], *, add_generation_prompt: bool,
                    continue_final_message: bool, chat_template_kwargs: dict | None) -> str:
        return apply_chat_template(
            self.tokenizer, messages, self.chat_template,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message,
            chat_template_kwargs=chat_template_kwargs)

    def check_token_ids(self, token_ids: list[int]) -> None:
        if not token_ids:
            raise OpenAIError("The decoder prompt cannot be empty", param="prompt")
        vocab_size = len(self.tokenizer)
        for token_id in token_ids:
            if not 0 <= token_id < vocab_size:
                raise OpenAIError(f"Token id {token_id} is out of vocabulary", param="prompt")

    def max_tokens(self, num_prompt_tokens: int, requested: int | None) -> int:
        """How many tokens to generate; None means as many as fit (vLLM's `_validate_input`).

        Also refuses (400) a request whose prompt and output could never fit the KV cache,
        even alone, so that it fails here, before a stream starts, rather than in the engine.
        """
        max_tokens = self._max_tokens(num_prompt_tokens, requested)
        try:
            self.engine.check_fits_kv_cache(num_prompt_tokens + max_tokens)
        except ValueError as e:
            raise OpenAIError(str(e), param="max_tokens") from e
        return max_tokens

    def _max_tokens(self, num_prompt_tokens: int, requested: int | None) -> int:
        if num_prompt_tokens >= self.max_model_len:
            raise OpenAIError(
                f"This model's maximum context length is {self.max_model_len} tokens. However, "
                f"your request has {num_prompt_tokens} input tokens. Please reduce the length "
                "of the input messages.")
        if requested is None:
            return self.max_model_len - num_prompt_tokens
        if num_prompt_tokens + requested > self.max_model_len:
            raise OpenAIError(
                f"This model's maximum context length is {self.max_model_len} tokens. However, "
                f"you requested {num_prompt_tokens + requested} tokens ({num_prompt_tokens} in "
                f"the messages, {requested} in the completion). Please reduce the length of "
                "the messages or completion.", param="max_tokens")
        return requested

    # -- outputs ---------------------------------------------------------------------------
    def token_text(self, token_id: int, logprob: Logprob | None) -> str:
        """The text of one generated token, as the detokenizer saw it when it has it."""
        if logprob is not None and logprob.decoded_token is not None:
            return logprob.decoded_token
        return self.tokenizer.decode([token_id])
