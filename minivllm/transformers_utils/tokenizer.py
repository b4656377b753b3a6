"""get_tokenizer (vLLM: `vllm/transformers_utils/tokenizer.py`)."""

from __future__ import annotations

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from minivllm.transformers_utils.byte_tokenizer import build_byte_tokenizer
from minivllm.transformers_utils.config import (
    RANDOM_PREFIX,
    get_model_config,
    resolve_model_path,
)


def get_tokenizer(model: str, tokenizer: str | None = None) -> PreTrainedTokenizerBase:
    """The Hugging Face fast tokenizer of `tokenizer` if given, else of `model`: a local folder,
    the embedded default, or, for `random:<preset>`, a byte-level tokenizer built in code that
    covers the preset's vocabulary."""
    source = tokenizer or model
    if source.startswith(RANDOM_PREFIX):
        return build_byte_tokenizer(get_model_config(source).vocab_size)
    return AutoTokenizer.from_pretrained(resolve_model_path(source))
