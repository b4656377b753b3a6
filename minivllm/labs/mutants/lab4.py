"""Planted bugs in lab 4's OpenAI-compatible server."""

from minivllm.labs.mutants.base import Mutant

CHAT = "minivllm/server/serving_chat.py"
COMPLETION = "minivllm/server/serving_completion.py"
ERRORS = "minivllm/server/errors.py"
SERVER = "minivllm/server/api_server.py"

MUTANTS = [
    Mutant("chat_stream_without_done", "the chat stream never sends `data: [DONE]`", CHAT,
           "            yield sse_error(e)\n        yield SSE_DONE\n",
           "            yield sse_error(e)\n"),
    Mutant("completion_stream_without_done", "the completion stream never sends [DONE]",
           COMPLETION, "            yield sse_error(e)\n        yield SSE_DONE\n",
           "            yield sse_error(e)\n"),
    Mutant("finish_reason_always_stop", "non-streamed chat answers always say \"stop\"", CHAT,
           "                finish_reason=c.finish_reason, stop_reason=c.stop_reason)\n"
           "            for c in final.outputs]",
           "                finish_reason=\"stop\", stop_reason=c.stop_reason)\n"
           "            for c in final.outputs]"),
    Mutant("missing_role_chunk", "the chat stream's first chunk has no delta.role", CHAT,
           'delta=DeltaMessage(role=role, content="")', 'delta=DeltaMessage(content="")'),
    Mutant("usage_total_wrong", "completion usage leaves the prompt out of total_tokens",
           COMPLETION, "total_tokens=num_prompt_tokens + num_generated))",
           "total_tokens=num_generated))"),
    Mutant("stream_usage_chunk_missing", "include_usage is ignored in chat streams", CHAT,
           "            if request.include_usage:\n                yield chunk(usage=",
           "            if False:\n                yield chunk(usage="),
    Mutant("validation_422", "invalid requests get FastAPI's 422 instead of 400", ERRORS,
           "return _validation_error(exc).to_json_response()",
           "return OpenAIError(_validation_error(exc).message, "
           "HTTPStatus.UNPROCESSABLE_ENTITY).to_json_response()"),
    Mutant("choice_index_ignores_prompt", "batched completion choices are numbered per prompt",
           COMPLETION, "index=i * request.n + c.index,\n", "index=c.index,\n"),
    Mutant("api_key_not_checked", "the server ignores --api-key", SERVER,
           "    if args.api_key:\n", "    if False:\n"),
    Mutant("stream_text_repeated", "the completion stream resends the whole text each chunk",
           COMPLETION, "text = c.text[sent_text[index]:]", "text = c.text"),
]
