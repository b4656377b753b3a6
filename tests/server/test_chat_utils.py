"""Chat template input checks that do not need a server: the nesting bound on the data a
template sees (`chat_utils.MAX_TEMPLATE_DATA_DEPTH`)."""

import json

import pytest

from minivllm.server.chat_utils import MAX_TEMPLATE_DATA_DEPTH, apply_chat_template, nesting_depth
from minivllm.server.protocol import ChatMessageParam


def test_nesting_depth_counts_lists_and_objects_without_recursion():
    assert nesting_depth("text") == 0
    assert nesting_depth([]) == 1
    assert nesting_depth({"a": [1, {"b": []}], "c": 2}) == 4
    deep: list = []
    for _ in range(100_000 - 1):  # past any recursion limit
        deep = [deep]
    assert nesting_depth(deep) == 100_000


def test_template_data_nested_past_the_bound_is_a_clear_value_error():
    from minivllm.transformers_utils.tokenizer import get_tokenizer
    tokenizer = get_tokenizer("random:tiny-llama")
    messages = [ChatMessageParam(role="user", content="Hi")]

    def render(depth: int) -> str:
        return apply_chat_template(
            tokenizer, messages, "{{ messages[0]['content'] }}", add_generation_prompt=False,
            continue_final_message=False,
            chat_template_kwargs={"x": json.loads("[" * depth + "]" * depth)})

    assert render(MAX_TEMPLATE_DATA_DEPTH - 1) == "Hi"  # the kwargs dict is one level
    with pytest.raises(ValueError, match=f"more than {MAX_TEMPLATE_DATA_DEPTH} levels"):
        render(MAX_TEMPLATE_DATA_DEPTH)
