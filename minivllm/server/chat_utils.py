"""From chat messages to one prompt string, through the model's Jinja chat template.

Mirrors vLLM's `vllm/entrypoints/chat_utils.py`. The template comes with the tokenizer
(`tokenizer_config.json`) unless `--chat-template` names a file or is the template itself.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

from jinja2 import TemplateError

from minivllm.server.protocol import ChatMessageParam, walk_json

_RESERVED = {"conversation", "messages", "chat_template", "tokenize", "add_generation_prompt",
             "continue_final_message"}
"""Arguments of `apply_chat_template` (and the template's `messages`) that
`chat_template_kwargs` may not override."""

MAX_TEMPLATE_DATA_DEPTH = 64
"""Deepest nesting of lists and dicts the template's variables may have. transformers copies
them recursively before rendering (two stack frames a level), so a few hundred levels of
`chat_template_kwargs` would end in a RecursionError whose depth depends on the library
version; a fixed bound gives every client the same clear 400 instead."""


def nesting_depth(data: Any) -> int:
    """Levels of lists and dicts in `data` (0 for a scalar)."""
    return max((depth + 1 for item, depth in walk_json(data) if isinstance(item, list | dict)),
               default=0)


def load_chat_template(chat_template: str | None) -> str | None:
    """`--chat-template`: a path to a Jinja file, or the template inline.

    As in vLLM, a string without any Jinja-ish character (`{`, `}`, newline) must be a file; an
    inline template may be written with escapes (`\\n`), which are decoded.
    """
    if chat_template is None:
        return None
    try:
        return Path(chat_template).read_text()
    except OSError as e:
        if not any(c in chat_template for c in "{}\n"):
            raise ValueError(f"The supplied chat template ({chat_template}) looks like a file "
                             f"path, but it failed to be opened. Reason: {e}") from e
    return codecs.decode(chat_template, "unicode_escape")


def message_content(message: ChatMessageParam) -> str:
    """A message's text: OpenAI allows a list of content parts; text parts are joined by a
    newline (vLLM's choice). minivllm serves text-only models, so other parts are refused."""
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    texts = []
    for part in message.content:
        if part.get("type") != "text":
            raise ValueError(f"Unsupported content part type {part.get('type')!r}: "
                             "minivllm serves text-only models.")
        texts.append(str(part.get("text", "")))
    return "\n".join(texts)


def apply_chat_template(tokenizer: Any, messages: list[ChatMessageParam],
                        chat_template: str | None, *, add_generation_prompt: bool,
                        continue_final_message: bool,
                        chat_template_kwargs: dict[str, Any] | None) -> str:
    """Render the conversation as the prompt text the model was trained on.

    transformers raises ValueError when there is no template at all. Anything else rendering
    raises is a ValueError to the client too (a 400): Jinja's TemplateError (e.g. the
    template's own `raise_exception("Conversation roles must alternate")`), but also the
    TypeError or ZeroDivisionError of a template that meets a conversation it did not expect.
    A template is a small program run on the client's data; vLLM likewise answers 400 when it
    raises. `chat_template_kwargs` reach the template as variables (e.g. Qwen3's
    `enable_thinking`).
    """
    kwargs = {k: v for k, v in (chat_template_kwargs or {}).items() if k not in _RESERVED}
    conversation = [{**m.model_dump(exclude_none=True), "content": message_content(m)}
                    for m in messages]
    if max(nesting_depth(conversation), nesting_depth(kwargs)) > MAX_TEMPLATE_DATA_DEPTH:
        raise ValueError("The messages or chat_template_kwargs nest lists and objects more "
                         f"than {MAX_TEMPLATE_DATA_DEPTH} levels deep.")
    try:
        return tokenizer.apply_chat_template(
            conversation, chat_template=chat_template, tokenize=False,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message, **kwargs)
    except ValueError:
        raise
    except TemplateError as e:
        raise ValueError(f"Chat template error: {e}") from e
    except Exception as e:
        raise ValueError(f"Chat template error: {type(e).__name__}: {e}") from e
