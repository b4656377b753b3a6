"""Turn a llama.cpp GGUF file of a Llama-architecture model into a Hugging Face folder.

A GGUF file holds everything: metadata (the config), the tokenizer (vocab, merges, chat
template) and the tensors, usually quantized. We rebuild the pieces a Hugging Face folder has:

- config.json from the `llama.*` metadata keys;
- model.safetensors: each tensor dequantized to float32 with the `gguf` package (Q4_1 and Q8_0
  store blocks of 32 small integers with a float16 scale), renamed from llama.cpp's names
  (`blk.3.attn_q.weight`) to Hugging Face's (`model.layers.3.self_attn.q_proj.weight`), and
  the rows of Q and K permuted back (see `unpermute_qk`);
- tokenizer.json / tokenizer_config.json / chat template, built with the `tokenizers` library;
- generation_config.json with the special token ids.

Only what the embedded SmolLM2 needs is supported (a GPT-2-style BPE tokenizer with the
"smollm" pre-tokenizer); anything else raises.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import LlamaConfig, PreTrainedTokenizerFast

# llama.cpp tensor names -> Hugging Face names ("{}" is the layer index).
_TENSOR_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
    "blk.{}.attn_norm.weight": "model.layers.{}.input_layernorm.weight",
    "blk.{}.attn_q.weight": "model.layers.{}.self_attn.q_proj.weight",
    "blk.{}.attn_k.weight": "model.layers.{}.self_attn.k_proj.weight",
    "blk.{}.attn_v.weight": "model.layers.{}.self_attn.v_proj.weight",
    "blk.{}.attn_output.weight": "model.layers.{}.self_attn.o_proj.weight",
    "blk.{}.ffn_norm.weight": "model.layers.{}.post_attention_layernorm.weight",
    "blk.{}.ffn_gate.weight": "model.layers.{}.mlp.gate_proj.weight",
    "blk.{}.ffn_up.weight": "model.layers.{}.mlp.up_proj.weight",
    "blk.{}.ffn_down.weight": "model.layers.{}.mlp.down_proj.weight",
}

_TOKEN_TYPE_CONTROL = 3  # llama.cpp's tag for special tokens such as <|im_end|>


def _field(reader: gguf.GGUFReader, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def _float32_value(value: float) -> float:
    """GGUF stores floats as float32 (1e-5 becomes 9.99999974e-06); print the float32 back
    at its shortest to recover the value the config was written with."""
    return float(str(np.float32(value)))


def hf_tensor_name(gguf_name: str) -> str:
    """`blk.3.attn_q.weight` -> `model.layers.3.self_attn.q_proj.weight`."""
    parts = gguf_name.split(".")
    if parts[0] == "blk":
        pattern = ".".join(["blk", "{}", *parts[2:]])
        return _TENSOR_NAMES[pattern].format(parts[1])
    return _TENSOR_NAMES[gguf_name]


def unpermute_qk(weight: np.ndarray, num_heads: int) -> np.ndarray:
    """Undo llama.cpp's reordering of the rows of a Q or K projection.

    llama.cpp's RoPE rotates *adjacent* channel pairs (0,1), (2,3), ... while Hugging Face's
    rotates (i, i + head_dim/2). So when converting to GGUF, llama.cpp interleaves each head's
    two halves: row order [a0 a1 .. | b0 b1 ..] becomes [a0 b0 a1 b1 ..]. Here we split every
    head into (head_dim/2, 2) and transpose back to (2, head_dim/2).
    """
    rows = weight.shape[0]
    return (weight.reshape(num_heads, rows // num_heads // 2, 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def gguf_config(reader: gguf.GGUFReader) -> LlamaConfig:
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise NotImplementedError(f"only GGUF files of the llama architecture are supported, "
                                  f"got {arch!r}")
    has_lm_head = any(t.name == "output.weight" for t in reader.tensors)
    num_heads = int(_field(reader, "llama.attention.head_count"))
    hidden_size = int(_field(reader, "llama.embedding_length"))
    return LlamaConfig(
        architectures=["LlamaForCausalLM"],
        vocab_size=len(_field(reader, "tokenizer.ggml.tokens")),
        hidden_size=hidden_size,
        intermediate_size=int(_field(reader, "llama.feed_forward_length")),
        num_hidden_layers=int(_field(reader, "llama.block_count")),
        num_attention_heads=num_heads,
        num_key_value_heads=int(_field(reader, "llama.attention.head_count_kv", num_heads)),
        head_dim=int(_field(reader, "llama.rope.dimension_count", hidden_size // num_heads)),
        max_position_embeddings=int(_field(reader, "llama.context_length")),
        rms_norm_eps=_float32_value(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
        rope_theta=_float32_value(_field(reader, "llama.rope.freq_base", 10000.0)),
        tie_word_embeddings=not has_lm_head,
        bos_token_id=_field(reader, "tokenizer.ggml.bos_token_id"),
        eos_token_id=_field(reader, "tokenizer.ggml.eos_token_id"),
        pad_token_id=_field(reader, "tokenizer.ggml.padding_token_id"),
        hidden_act="silu",
        torch_dtype="float32",
    )


def gguf_tensors(reader: gguf.GGUFReader, config: LlamaConfig) -> dict[str, torch.Tensor]:
    """All tensors, dequantized to float32, with Hugging Face names and row order."""
    tensors = {}
    for tensor in reader.tensors:
        # GGUF lists dimensions fastest-first; dequantize returns the numpy (row-major) shape,
        # which is PyTorch's [out_features, in_features].
        weight = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        name = hf_tensor_name(tensor.name)
        if name.endswith("q_proj.weight"):
            weight = unpermute_qk(weight, config.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            weight = unpermute_qk(weight, config.num_key_value_heads)
        tensors[name] = torch.from_numpy(np.array(weight, dtype=np.float32))  # a copy: the
        # float32 tensors of the file come back as read-only views of its memory map
    return tensors


def gguf_tokenizer(reader: gguf.GGUFReader) -> PreTrainedTokenizerFast:
    """Rebuild the Hugging Face tokenizer of a GPT-2-style BPE vocabulary."""
    kind, pre = _field(reader, "tokenizer.ggml.model"), _field(reader, "tokenizer.ggml.pre")
    if (kind, pre) != ("gpt2", "smollm"):
        raise NotImplementedError(f"unsupported GGUF tokenizer {kind!r} / {pre!r}")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    token_types = _field(reader, "tokenizer.ggml.token_type")
    merges = [tuple(merge.split(" ")) for merge in _field(reader, "tokenizer.ggml.merges")]

    tokenizer = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    # "smollm" (StarCoder's pre-tokenizer): every digit on its own, then GPT-2's byte-level
    # splitting on words, numbers, punctuation and spaces.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.add_special_tokens([
        AddedToken(token, special=True, normalized=False)
        for token, token_type in zip(tokens, token_types, strict=True)
        if token_type == _TOKEN_TYPE_CONTROL])

    def token(key: str) -> str | None:
        token_id = _field(reader, key)
        return None if token_id is None else tokens[token_id]

    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=token("tokenizer.ggml.bos_token_id"),
        eos_token=token("tokenizer.ggml.eos_token_id"),
        unk_token=token("tokenizer.ggml.unknown_token_id"),
        pad_token=token("tokenizer.ggml.padding_token_id"),
        model_max_length=int(_field(reader, "llama.context_length")),
        clean_up_tokenization_spaces=False)
    wrapped.chat_template = _field(reader, "tokenizer.chat_template")
    return wrapped


def convert_gguf_to_hf(gguf_path: str | Path, out_dir: str | Path) -> None:
    """Write a Hugging Face folder for `gguf_path` into `out_dir` (created if needed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reader = gguf.GGUFReader(gguf_path)
    config = gguf_config(reader)
    config.save_pretrained(out_dir)
    save_file(gguf_tensors(reader, config), out_dir / "model.safetensors",
              metadata={"format": "pt"})
    gguf_tokenizer(reader).save_pretrained(out_dir)
    generation_config = {key: getattr(config, key)
                         for key in ("bos_token_id", "eos_token_id", "pad_token_id")}
    (out_dir / "generation_config.json").write_text(json.dumps(generation_config, indent=2))
