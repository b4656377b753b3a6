"""`random:<preset>` configs: real model shapes without real weights.

The two real-shape presets copy the architecture of published checkpoints, so benchmarks move
exactly the bytes those models move (weights, KV cache per token); the tiny presets cover every
code path of the Llama-family decoder in a few kilobytes, for tests:

| preset       | family  | what it exercises                                          |
| ------------ | ------- | ---------------------------------------------------------- |
| tiny-llama   | llama   | Llama-3 `rope_scaling` (rope_type "llama3"), untied head    |
| tiny-qwen2   | qwen2   | q/k/v bias, tied embeddings                                 |
| tiny-qwen3   | qwen3   | q/k RMSNorm per head, head_dim != hidden / heads, tied      |
| tiny-mistral | mistral | 4 query heads sharing 1 KV head, untied head                |

All use the byte-level tokenizer of `byte_tokenizer.py`, so their token ids (BOS/EOS/pad) are
that tokenizer's, not the original models'.
"""

from __future__ import annotations

from typing import Any

from transformers import LlamaConfig, MistralConfig, PretrainedConfig, Qwen2Config, Qwen3Config

from minivllm.transformers_utils.byte_tokenizer import ENDOFTEXT_ID, IM_END_ID

_TOKENS = {"bos_token_id": None, "eos_token_id": IM_END_ID, "pad_token_id": ENDOFTEXT_ID}

_TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512,
         "max_position_embeddings": 1024}

_PRESETS: dict[str, tuple[type[PretrainedConfig], dict[str, Any]]] = {
    # Qwen/Qwen3-0.6B's config.json.
    "qwen3-0.6b": (Qwen3Config, {
        "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
        "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
        "vocab_size": 151936, "max_position_embeddings": 40960, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "tie_word_embeddings": True}),
    # meta-llama/Llama-3.2-1B's config.json.
    "llama-3.2-1b": (LlamaConfig, {
        "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
        "vocab_size": 128256, "max_position_embeddings": 131072, "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0, "tie_word_embeddings": True,
        "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}),
    "tiny-llama": (LlamaConfig, {
        **_TINY, "head_dim": 16, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "tie_word_embeddings": False,
        # original_max_position_embeddings is chosen so that, with head_dim 16, some channel
        # pairs keep their speed, some are slowed by `factor` and some are blended.
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 256}}),
    "tiny-qwen2": (Qwen2Config, {
        **_TINY, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": True}),
    "tiny-qwen3": (Qwen3Config, {
        **_TINY, "head_dim": 32, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "tie_word_embeddings": True}),
    "tiny-mistral": (MistralConfig, {
        **_TINY, "num_key_value_heads": 1, "head_dim": 16, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "sliding_window": None, "tie_word_embeddings": False}),
}

PRESET_NAMES = tuple(_PRESETS)
TINY_PRESETS = tuple(name for name in _PRESETS if name.startswith("tiny-"))


def get_preset_config(name: str) -> PretrainedConfig:
    """The config of preset `name` (without the `random:` prefix)."""
    if name not in _PRESETS:
        raise ValueError(f"unknown random preset {name!r}; choose one of {', '.join(_PRESETS)}")
    config_class, values = _PRESETS[name]
    architecture = config_class.__name__.replace("Config", "ForCausalLM")
    return config_class(**values, **_TOKENS, architectures=[architecture],
                        hidden_act="silu", torch_dtype="float32")
