"""`POST /v1/chat/completions`: messages in, an assistant message out (vLLM's
`OpenAIServingChat`).

The messages go through the chat template into one prompt, and from there the request is a
completion with `n` choices. The stream follows OpenAI's shape: for each choice a first chunk
with `delta.role`, then `delta.content` pieces, the last carrying `finish_reason`; with
`stream_options.include_usage` a usage chunk with empty `choices`; then `data: [DONE]`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator

from minivllm.engine.async_llm_engine import AsyncLLMEngine
from minivllm.outputs import CompletionOutput, Logprob, RequestOutput
from minivllm.server.chat_utils import message_content
from minivllm.server.errors import OpenAIError
from minivllm.server.protocol import (
    ChatCompletionLogProb,
    ChatCompletionLogProbs,
    ChatCompletionLogProbsContent,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatCompletionResponseChoice,
    ChatCompletionResponseStreamChoice,
    ChatCompletionStreamResponse,
    ChatMessage,
    DeltaMessage,
    UsageInfo,
    random_uuid,
)
from minivllm.server.serving_engine import SSE_DONE, OpenAIServing, sse, sse_error, to_openai_error
from minivllm.server.serving_models import OpenAIServingModels


class OpenAIServingChat(OpenAIServing):
    def __init__(self, engine: AsyncLLMEngine, models: OpenAIServingModels,
                 chat_template: str | None = None, response_role: str = "assistant") -> None:
        super().__init__(engine, models, chat_template)
        self.response_role = response_role

    async def create_chat_completion(
            self, request: ChatCompletionRequest,
    ) -> ChatCompletionResponse | AsyncGenerator[str, None]:
        """Serve POST /v1/chat/completions (vLLM: `OpenAIServingChat.create_chat_completion`).

        Render the messages with the chat template, tokenize, check the length and turn the
        request into SamplingParams (a ValueError is the client's fault: OpenAIError, 400).
        Then start generating; with `stream` return the SSE generator, else wait for the final
        output and build one ChatCompletionResponse: a choice per sample (message with the
        assistant role, finish_reason, stop_reason, logprobs if asked) and the usage.
        """
        # BEGIN SOLUTION lab4
        model_name = self.models.check_model(request.model)
        try:
            prompt = self.render_chat(
                request.messages, add_generation_prompt=request.add_generation_prompt,
                continue_final_message=request.continue_final_message,
                chat_template_kwargs=request.chat_template_kwargs)
            token_ids = self.tokenize(prompt, request.add_special_tokens)
            self.check_token_ids(token_ids)
            max_tokens = self.max_tokens(len(token_ids), request.requested_max_tokens)
            # logprobs=0 still returns the sampled token's logprob.
            params = request.to_sampling_params(
                max_tokens, (request.top_logprobs or 0) if request.logprobs else None)
        except ValueError as e:
            raise OpenAIError(str(e)) from e

        request_id = f"chatcmpl-{random_uuid()}"
        # Without a generation prompt the model continues the last message, in its role.
        role = self.response_role if request.add_generation_prompt else request.messages[-1].role
        last = request.messages[-1]
        echo = message_content(last) if request.echo and last.role == role else ""
        results = self.engine.generate(token_ids, params, request_id)
        if request.stream:
            return self._stream(request, request_id, model_name, role, echo, len(token_ids),
                                results)

        try:
            async for output in results:
                final: RequestOutput = output
        except Exception as e:
            raise to_openai_error(e) from e
        choices = [
            ChatCompletionResponseChoice(
                index=c.index, message=ChatMessage(role=role, content=echo + c.text),
                logprobs=self._logprobs(c, 0, request.top_logprobs) if request.logprobs
                else None,
                finish_reason=c.finish_reason, stop_reason=c.stop_reason)
            for c in final.outputs]
        num_generated = sum(len(c.token_ids) for c in final.outputs)
        return ChatCompletionResponse(
            id=request_id, model=model_name, choices=choices,
            usage=UsageInfo(prompt_tokens=len(token_ids), completion_tokens=num_generated,
                            total_tokens=len(token_ids) + num_generated))
        # END SOLUTION

    async def _stream(self, request: ChatCompletionRequest, request_id: str, model_name: str,
                      role: str, echo: str, num_prompt_tokens: int,
                      results: AsyncGenerator[RequestOutput, None]) -> AsyncGenerator[str, None]:
        """The SSE stream of a chat completion, in OpenAI's order: per choice a first chunk
        whose delta carries the role; then, as outputs arrive, a chunk per choice that advanced
        with only the new text (outputs are cumulative: remember what was sent), the last one
        with its finish_reason; with stream_options.include_usage a chunk with no choices and
        the usage; then `data: [DONE]`. An error after the stream started (status 200 already
        sent) becomes an error event, still followed by [DONE]."""
        # BEGIN SOLUTION lab4
        created = int(time.time())

        def chunk(*choices: ChatCompletionResponseStreamChoice,
                  usage: UsageInfo | None = None) -> str:
            return sse(ChatCompletionStreamResponse(
                id=request_id, created=created, model=model_name, choices=list(choices),
                usage=usage))

        sent_text = [0] * request.n
        sent_tokens = [0] * request.n
        finished = [False] * request.n
        try:
            for index in range(request.n):
                yield chunk(ChatCompletionResponseStreamChoice(
                    index=index, delta=DeltaMessage(role=role, content="")))
                if echo:
                    yield chunk(ChatCompletionResponseStreamChoice(
                        index=index, delta=DeltaMessage(content=echo)))
            async for output in results:
                for c in output.outputs:
                    if finished[c.index] or (not c.token_ids[sent_tokens[c.index]:]
                                             and c.finish_reason is None):
                        continue
                    delta = c.text[sent_text[c.index]:]
                    logprobs = (self._logprobs(c, sent_tokens[c.index], request.top_logprobs)
                                if request.logprobs else None)
                    sent_text[c.index], sent_tokens[c.index] = len(c.text), len(c.token_ids)
                    finished[c.index] = c.finish_reason is not None
                    yield chunk(ChatCompletionResponseStreamChoice(
                        index=c.index, delta=DeltaMessage(content=delta), logprobs=logprobs,
                        finish_reason=c.finish_reason, stop_reason=c.stop_reason))
            if request.include_usage:
                yield chunk(usage=UsageInfo(
                    prompt_tokens=num_prompt_tokens, completion_tokens=sum(sent_tokens),
                    total_tokens=num_prompt_tokens + sum(sent_tokens)))
        except Exception as e:
            yield sse_error(e)
        yield SSE_DONE
        # END SOLUTION

    def _logprobs(self, output: CompletionOutput, start: int,
                  top_logprobs: int | None) -> ChatCompletionLogProbs:
        """Logprobs of tokens `start:` of a choice, each with its `top_logprobs` most likely
        alternatives (the sampled token is in the engine's dict too; sorting by logprob and
        keeping the first k gives the true top k either way)."""
        def entry(token_id: int, logprob: Logprob | None) -> ChatCompletionLogProb:
            token = self.token_text(token_id, logprob)
            return ChatCompletionLogProb(
                token=token, logprob=max(logprob.logprob, -9999.0) if logprob else -9999.0,
                bytes=list(token.encode("utf-8")))

        content = []
        steps: list[dict[int, Logprob]] = (output.logprobs or [])[start:]
        # The engine's logprobs list may already hold later steps: zip stops at the tokens.
        for token_id, step in zip(output.token_ids[start:], steps, strict=False):
            top = sorted(step.items(), key=lambda item: item[1].logprob, reverse=True)
            sampled = entry(token_id, step.get(token_id))
            content.append(ChatCompletionLogProbsContent(
                **sampled.model_dump(),
                top_logprobs=[entry(t, lp) for t, lp in top[:top_logprobs or 0]]))
        return ChatCompletionLogProbs(content=content)
