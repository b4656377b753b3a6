"""What one request may cost: the `request limits` flags, checked before any work is done.

A server that does whatever a request asks can be taken down by a single request: `n` of 10^9
makes a billion sequences, ten thousand stop strings are searched after every token of every
sequence, a 50 MB body is read into memory and parsed before anything looks at it. Each limit
turns such a request into a 4xx that costs the server nothing, and each is a flag, so an
operator who needs more can allow it:

| flag                       | default | bounds                             | vLLM                 |
| -------------------------- | ------- | ---------------------------------- | -------------------- |
| `--max-request-body-bytes` | 4 MiB   | the HTTP body, before it is parsed | uvicorn/h11 limits   |
| `--max-n-sequences`        | 64      | `n` times the prompts of a request | VLLM_MAX_N_SEQUENCES |
| `--max-stop-sequences`     | 16      | `stop` strings; `stop_token_ids`   | (OpenAI allows 4)    |

The sampling values themselves (`temperature`, `top_p`, `seed`, ...) are range-checked by
`SamplingParams` and the protocol models; `max_tokens` by `max_model_len`.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from minivllm.server.errors import OpenAIError
from minivllm.server.protocol import CompletionRequest, SamplingRequest


class RequestBodyLimitMiddleware:
    """`--max-request-body-bytes`: refuse a larger body with 413, reading no more of it.

    A plain ASGI middleware: a body announced too large by its `Content-Length` is refused
    before a byte of it is read; a chunked body (no length up front) is counted as it arrives,
    and the read that crosses the limit raises `HTTPException(413)`, which FastAPI passes
    through its body parsing to the error handlers (any other exception there becomes a 400).
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.message = (f"Request body too large: the server accepts at most {max_body_bytes} "
                        "bytes (--max-request-body-bytes).")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            response = OpenAIError(self.message, HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            await response.to_json_response()(scope, receive, send)
            return

        received = 0

        async def receive_with_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise HTTPException(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, self.message)
            return message

        await self.app(scope, receive_with_limit, send)


@dataclass
class RequestLimits:
    """`--max-n-sequences` and `--max-stop-sequences`, checked by the route handlers."""
    max_n_sequences: int
    max_stop_sequences: int

    def check(self, request: SamplingRequest) -> None:
        """Raise OpenAIError (400) when `request` asks for more than the server allows."""
        num_prompts = len(request.prompt_batch) if isinstance(request, CompletionRequest) else 1
        num_seqs = request.n * num_prompts
        if num_seqs > self.max_n_sequences:
            asked = (f"got {request.n}" if num_prompts == 1 else
                     f"got {request.n} for each of {num_prompts} prompts")
            raise OpenAIError(f"A request may generate at most {self.max_n_sequences} sequences "
                              f"(n times the number of prompts, --max-n-sequences); {asked}.",
                              param="n")
        stop = [request.stop] if isinstance(request.stop, str) else request.stop or []
        for name, values in (("stop", stop), ("stop_token_ids", request.stop_token_ids or [])):
            if len(values) > self.max_stop_sequences:
                raise OpenAIError(f"`{name}` may hold at most {self.max_stop_sequences} entries "
                                  f"(--max-stop-sequences), got {len(values)}.", param=name)
