"""Lab 4: read an OpenAI-style response the way a strict client would, and reduce it to what
the graded checks compare with the reference (texts, finish reasons, usage, status codes).

Ids and timestamps differ from run to run and are left out. A stream is read from raw bytes,
event by event, and its protocol rules are checked on the way (the official `openai` client
forgives some breaches, e.g. a missing `data: [DONE]`):

- every event is a `data: <json>` line followed by a blank line; the last is `data: [DONE]`;
- all chunks share one `id` and have the right `object`;
- in a chat stream, each choice's first chunk carries `delta.role`;
- each choice gets exactly one non-null `finish_reason`, in its last chunk;
- with `stream_options.include_usage`, one final chunk has empty `choices` and the `usage`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

import httpx

from minivllm.server.remote import ServerClient


class ProtocolError(AssertionError):
    """The response breaks the OpenAI protocol."""


@dataclass
class EventStream:
    status: int
    content_type: str
    events: list[Any]
    """Each `data:` payload parsed as JSON; `[DONE]` kept as the string."""


def post_stream(client: httpx.Client, path: str, body: dict[str, Any]) -> EventStream:
    with client.stream("POST", path, json=body) as response:
        raw = "".join(response.iter_text())
    events: list[Any] = []
    for block in raw.replace("\r\n", "\n").split("\n\n"):
        lines = [line for line in block.split("\n") if line.startswith("data:")]
        if not lines:
            continue
        data = "\n".join(line[len("data:"):].strip() for line in lines)
        try:
            events.append(data if data == "[DONE]" else json.loads(data))
        except json.JSONDecodeError as e:
            raise ProtocolError(f"an SSE event is not JSON: {data[:200]!r}") from e
    return EventStream(response.status_code, response.headers.get("content-type", ""), events)


def summarize_response(data: dict[str, Any]) -> dict[str, Any]:
    """The parts of a (chat) completion response the checks compare."""
    choices = []
    for c in data["choices"]:
        choice = {"index": c["index"], "finish_reason": c["finish_reason"]}
        if "message" in c:
            choice.update(role=c["message"]["role"], content=c["message"]["content"])
        else:
            choice["text"] = c["text"]
        choices.append(choice)
    return {"object": data["object"], "model": data["model"], "choices": choices,
            "usage": data.get("usage")}


def summarize_error(response: httpx.Response) -> dict[str, Any]:
    """Status and OpenAI error envelope of a failed request."""
    if response.status_code < 400:
        raise ProtocolError(f"expected an error, got status {response.status_code}")
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError) as e:
        raise ProtocolError(f"status {response.status_code} without OpenAI's error envelope "
                            f"{{'error': {{...}}}}: {response.text[:200]!r}") from e
    if not error.get("message"):
        raise ProtocolError("the error envelope has no message")
    return {"status": response.status_code, "type": error.get("type"),
            "code": error.get("code")}


def summarize_stream(stream: EventStream, chat: bool) -> dict[str, Any]:
    """Check a stream's protocol rules (ProtocolError on the first breach) and return each
    choice's full text and finish reason, the role and the usage chunk."""
    if stream.status != 200:
        raise ProtocolError(f"a stream answered with status {stream.status}")
    if not stream.content_type.startswith("text/event-stream"):
        raise ProtocolError(f"content-type {stream.content_type!r}, not text/event-stream")
    if not stream.events or stream.events[-1] != "[DONE]":
        raise ProtocolError("the stream does not end with `data: [DONE]`")
    chunks = stream.events[:-1]
    if "[DONE]" in chunks:
        raise ProtocolError("`data: [DONE]` is sent before the end of the stream")
    expected_object = "chat.completion.chunk" if chat else "text_completion"
    ids = {chunk.get("id") for chunk in chunks}
    if len(ids) != 1:
        raise ProtocolError(f"the chunks of one stream carry {len(ids)} different ids")
    texts: dict[int, str] = {}
    finish: dict[int, str] = {}
    roles: dict[int, str | None] = {}
    usage = None
    for i, chunk in enumerate(chunks):
        if chunk.get("object") != expected_object:
            raise ProtocolError(f"chunk {i}: object {chunk.get('object')!r}, expected "
                                f"{expected_object!r}")
        if usage is not None:
            raise ProtocolError(f"chunk {i} comes after the usage chunk")
        if not chunk["choices"]:
            if not chunk.get("usage"):
                raise ProtocolError(f"chunk {i} has neither choices nor usage")
            usage = chunk["usage"]
            continue
        for c in chunk["choices"]:
            index = c["index"]
            if index in finish:
                raise ProtocolError(f"chunk {i}: choice {index} continues after its "
                                    "finish_reason")
            if chat:
                if index not in roles:
                    roles[index] = c["delta"].get("role")
                    if not roles[index]:
                        raise ProtocolError(f"choice {index}'s first chunk has no delta.role")
                piece = c["delta"].get("content") or ""
            else:
                piece = c.get("text") or ""
            texts[index] = texts.get(index, "") + piece
            if c.get("finish_reason") is not None:
                finish[index] = c["finish_reason"]
    unfinished = sorted(set(texts) - set(finish))
    if unfinished:
        raise ProtocolError(f"choices {unfinished} never got a finish_reason")
    return {"choices": [{"index": i, "text": texts[i], "finish_reason": finish[i],
                         **({"role": roles[i]} if chat else {})} for i in sorted(texts)],
            "usage": usage}


def send(server: ServerClient, request: dict[str, Any]) -> dict[str, Any]:
    """Send a stored request and summarize the answer. `kind` says what to expect: `json` a
    200 response, `stream` an event stream, `error` an error envelope. `raw` sends a body
    as it is (malformed JSON); `auth: false` leaves the API key out."""
    client = replace(server, api_key=None) if request.get("auth") is False else server
    with client.http() as http:
        if request["kind"] == "stream":
            stream = post_stream(http, request["path"], request["body"])
            return summarize_stream(stream, chat=request["path"].endswith("chat/completions"))
        if "raw" in request:
            response = http.post(request["path"], content=request["raw"],
                                 headers={"Content-Type": "application/json"})
        else:
            response = http.post(request["path"], json=request["body"])
    if request["kind"] == "error":
        return summarize_error(response)
    if response.status_code != 200:
        raise ProtocolError(f"status {response.status_code}: {response.text[:300]}")
    return summarize_response(response.json())
