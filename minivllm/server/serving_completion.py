"""`POST /v1/completions`: prompts in, continuations out (vLLM's `OpenAIServingCompletion`).

A request may carry a batch of prompts; each becomes one engine request (`{id}-{i}`) with `n`
sequences, and choice `i * n + j` is sequence `j` of prompt `i`. The engine's outputs are
cumulative; a stream sends the part of each choice that is new since the last chunk.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from minivllm.outputs import CompletionOutput, Logprob, RequestOutput
from minivllm.server.errors import OpenAIError
from minivllm.server.protocol import (
    CompletionLogProbs,
    CompletionRequest,
    CompletionResponse,
    CompletionResponseChoice,
    CompletionStreamResponse,
    UsageInfo,
    random_uuid,
)
from minivllm.server.serving_engine import SSE_DONE, OpenAIServing, sse, sse_error, to_openai_error
from minivllm.server.utils import merge_async_iterators


@dataclass
class _Prompt:
    token_ids: list[int]
    text: str
    """What `echo` puts in front of the completion."""


class OpenAIServingCompletion(OpenAIServing):
    async def create_completion(
            self, request: CompletionRequest) -> CompletionResponse | AsyncGenerator[str, None]:
        """A `CompletionResponse`, or for `stream: true` an iterator of SSE events. Invalid
        requests raise `OpenAIError` here, before anything is streamed."""
        # BEGIN SOLUTION lab4
        model_name = self.models.check_model(request.model)
        prompts = self._prompts(request)
        try:
            params = [request.to_sampling_params(
                self.max_tokens(len(p.token_ids), request.max_tokens), request.logprobs)
                for p in prompts]
        except ValueError as e:
            raise OpenAIError(str(e)) from e

        request_id = f"cmpl-{random_uuid()}"
        results = merge_async_iterators(*(
            self.engine.generate(p.token_ids, sp, f"{request_id}-{i}")
            for i, (p, sp) in enumerate(zip(prompts, params, strict=True))))
        if request.stream:
            return self._stream(request, request_id, model_name, prompts, results)

        final: list[RequestOutput] = [None] * len(prompts)  # type: ignore[list-item]
        try:
            async for i, output in results:
                final[i] = output
        except Exception as e:
            raise to_openai_error(e) from e
        choices = [
            CompletionResponseChoice(
                index=i * request.n + c.index,
                text=prompts[i].text + c.text if request.echo else c.text,
                logprobs=self._logprobs(c, 0, 0) if request.logprobs is not None else None,
                finish_reason=c.finish_reason, stop_reason=c.stop_reason)
            for i, output in enumerate(final) for c in output.outputs]
        num_prompt_tokens = sum(len(p.token_ids) for p in prompts)
        num_generated = sum(len(c.token_ids) for output in final for c in output.outputs)
        return CompletionResponse(
            id=request_id, model=model_name, choices=choices,
            usage=UsageInfo(prompt_tokens=num_prompt_tokens, completion_tokens=num_generated,
                            total_tokens=num_prompt_tokens + num_generated))
        # END SOLUTION

    def _prompts(self, request: CompletionRequest) -> list[_Prompt]:
        prompts = []
        for item in request.prompt_batch:
            if isinstance(item, str):
                token_ids, text = self.tokenize(item, request.add_special_tokens), item
            else:
                token_ids, text = item, ""
            self.check_token_ids(token_ids)  # first: decoding an id out of range raises
            if request.echo and not isinstance(item, str):
                text = self.tokenizer.decode(token_ids)
            prompts.append(_Prompt(token_ids, text))
        return prompts

    async def _stream(self, request: CompletionRequest, request_id: str, model_name: str,
                      prompts: list[_Prompt],
                      results: AsyncGenerator[tuple[int, RequestOutput], None],
                      ) -> AsyncGenerator[str, None]:
        """The SSE stream of a completion: as outputs arrive, a chunk per choice that advanced
        with only its new text (index i * n + j for sample j of prompt i), the last with its
        finish_reason; the usage chunk when asked; then `data: [DONE]`; an error after the start
        becomes an error event followed by [DONE]."""
        # BEGIN SOLUTION lab4
        num_choices = len(prompts) * request.n
        sent_text = [0] * num_choices  # characters of each choice already sent
        sent_tokens = [0] * num_choices
        finished = [False] * num_choices
        created = int(time.time())
        try:
            async for i, output in results:
                for c in output.outputs:
                    index = i * request.n + c.index
                    if finished[index]:
                        continue
                    text = c.text[sent_text[index]:]
                    if request.echo and sent_tokens[index] == 0 and c.token_ids:
                        text = prompts[i].text + text
                    if not c.token_ids[sent_tokens[index]:] and c.finish_reason is None:
                        continue
                    logprobs = (self._logprobs(c, sent_tokens[index], sent_text[index])
                                if request.logprobs is not None else None)
                    sent_text[index], sent_tokens[index] = len(c.text), len(c.token_ids)
                    finished[index] = c.finish_reason is not None
                    yield sse(CompletionStreamResponse(
                        id=request_id, created=created, model=model_name,
                        choices=[CompletionResponseChoice(
                            index=index, text=text, logprobs=logprobs,
                            finish_reason=c.finish_reason, stop_reason=c.stop_reason)]))
            if request.include_usage:
                num_prompt_tokens = sum(len(p.token_ids) for p in prompts)
                yield sse(CompletionStreamResponse(
                    id=request_id, created=created, model=model_name, choices=[],
                    usage=UsageInfo(prompt_tokens=num_prompt_tokens,
                                    completion_tokens=sum(sent_tokens),
                                    total_tokens=num_prompt_tokens + sum(sent_tokens))))
        except Exception as e:
            yield sse_error(e)
        yield SSE_DONE
        # END SOLUTION

    def _logprobs(self, output: CompletionOutput, start: int,
                  text_offset: int) -> CompletionLogProbs:
        """OpenAI's legacy logprobs for tokens `start:` of a choice: each token, its logprob,
        the sampled and top alternatives as {token: logprob}, and where it starts in the text.
        -inf is not JSON, so logprobs are clipped at -9999 as in vLLM."""
        result = CompletionLogProbs()
        steps: list[dict[int, Logprob]] = (output.logprobs or [])[start:]
        # The engine's logprobs list may already hold later steps: zip stops at the tokens.
        for token_id, step in zip(output.token_ids[start:], steps, strict=False):
            sampled = step.get(token_id)
            token = self.token_text(token_id, sampled)
            result.tokens.append(token)
            result.token_logprobs.append(max(sampled.logprob, -9999.0) if sampled else None)
            result.top_logprobs.append({self.token_text(t, lp): max(lp.logprob, -9999.0)
                                        for t, lp in step.items()})
            result.text_offset.append(text_offset)
            text_offset += len(token)
        return result
