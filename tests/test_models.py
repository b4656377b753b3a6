"""Our Llama-family decoder against Hugging Face transformers, on every tiny random preset.

Each preset is saved as a Hugging Face folder; transformers loads it (fp32, eager attention)
and runs every sequence on its own, while our model runs the same sequences the engine's way:
one flat batch per step through the paged KV cache, prefills first, then decodes, with
`AttentionMetadata` built by hand here and the PyTorch attention backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
from transformers import AutoModelForCausalLM

from minivllm.attention import AttentionMetadata
from minivllm.config import EngineConfig
from minivllm.model_executor.layers.rotary_embedding import (
    RotaryEmbedding,
    default_inv_freq,
    llama3_inv_freq,
)
from minivllm.model_executor.model_loader import get_model, save_random_model
from minivllm.model_executor.models import LlamaForCausalLM, ModelRegistry
from minivllm.transformers_utils.presets import TINY_PRESETS, get_preset_config

RTOL = {torch.float32: 1e-4}
BLOCK_SIZE = 8
NUM_BLOCKS = 64


@dataclass
class Seq:
    token_ids: list[int]
    block_table: list[int]
    num_computed: int = 0
    logits: list[torch.Tensor] = field(default_factory=list)


def run_step(model: LlamaForCausalLM, kv_caches: list[torch.Tensor], prefills: list[Seq],
             decodes: list[Seq]) -> None:
    """One engine step: feed every sequence's uncomputed tokens, keep their logits."""
    seqs = prefills + decodes
    input_ids, positions, slots, prefill_lens = [], [], [], []
    for seq in seqs:
        new_positions = range(seq.num_computed, len(seq.token_ids))
        input_ids += seq.token_ids[seq.num_computed:]
        positions += new_positions
        slots += [seq.block_table[p // BLOCK_SIZE] * BLOCK_SIZE + p % BLOCK_SIZE
                  for p in new_positions]
        if seq in prefills:
            prefill_lens.append(len(new_positions))
    width = max(len(seq.block_table) for seq in seqs)
    block_tables = [seq.block_table + [0] * (width - len(seq.block_table)) for seq in seqs]
    context_lens = [len(seq.token_ids) for seq in seqs]
    num_prefill_tokens = sum(prefill_lens)
    query_start_loc = torch.tensor([0, *prefill_lens]).cumsum(0).to(torch.int32)
    md = AttentionMetadata(
        slot_mapping=torch.tensor(slots),
        block_tables=torch.tensor(block_tables, dtype=torch.int32),
        context_lens=torch.tensor(context_lens, dtype=torch.int32),
        query_start_loc=query_start_loc,
        num_prefills=len(prefills), num_prefill_tokens=num_prefill_tokens,
        num_decode_tokens=len(input_ids) - num_prefill_tokens,
        max_query_len=max(prefill_lens, default=0),
        max_context_len=max(context_lens))
    with torch.inference_mode():
        hidden = model(torch.tensor(input_ids), torch.tensor(positions), kv_caches, md)
        logits = model.compute_logits(hidden)
    start = 0
    for seq in seqs:
        count = len(seq.token_ids) - seq.num_computed
        seq.logits.append(logits[start:start + count])
        seq.num_computed = len(seq.token_ids)
        start += count


def run_engine_style(model: LlamaForCausalLM, prompt_lens: list[int], num_decode_steps: int,
                     seed: int) -> list[Seq]:
    """Prefill all prompts but the last in one step, then decode; the last prompt joins at
    the second decode step (a mixed prefill + decode batch). Blocks are shuffled so that no
    sequence's blocks are contiguous in the cache."""
    gen = torch.Generator().manual_seed(seed)
    config = model.config
    vocab = config.vocab_size
    blocks = torch.randperm(NUM_BLOCKS, generator=gen).tolist()
    blocks_per_seq = NUM_BLOCKS // len(prompt_lens)
    seqs = [Seq(token_ids=torch.randint(vocab, (n,), generator=gen).tolist(),
                block_table=blocks[i * blocks_per_seq:(i + 1) * blocks_per_seq])
            for i, n in enumerate(prompt_lens)]
    head_dim = model.model.layers[0].self_attn.head_dim
    kv_caches = [torch.randn(2, NUM_BLOCKS, BLOCK_SIZE, config.num_key_value_heads, head_dim,
                             generator=gen)  # stale garbage must never be read
                 for _ in range(config.num_hidden_layers)]
    late, early = seqs[-1], seqs[:-1]
    run_step(model, kv_caches, early, [])
    for step in range(num_decode_steps):
        running = [s for s in seqs if s.num_computed > 0]
        for seq in running:
            seq.token_ids.append(int(torch.randint(vocab, (1,), generator=gen)))
        run_step(model, kv_caches, [late] if step == 1 else [], running)
    return seqs


def hf_logits(hf_model: torch.nn.Module, token_ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return hf_model(torch.tensor([token_ids])).logits[0].float()


@pytest.fixture(scope="module", params=TINY_PRESETS)
def preset_pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                ) -> tuple[LlamaForCausalLM, torch.nn.Module]:
    folder = save_random_model(request.param, tmp_path_factory.mktemp(request.param))
    ours = get_model(EngineConfig(model=f"random:{request.param}", device="cpu",
                                  dtype="float32", attention="torch"))
    theirs, info = AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    # Our random checkpoint must be exactly the one transformers expects: a parameter that we
    # forgot (a Qwen2 bias) would otherwise be initialised by transformers and go unnoticed.
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    return ours, theirs.eval()


def assert_logits_close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    tol = RTOL[torch.float32]
    torch.testing.assert_close(ours, theirs, rtol=tol, atol=tol * theirs.abs().max().item())


def test_prefill_and_decode_match_transformers(preset_pair) -> None:
    ours, theirs = preset_pair
    seqs = run_engine_style(ours, prompt_lens=[5, 17, 30, 9], num_decode_steps=4, seed=0)
    for seq in seqs:
        logits = torch.cat(seq.logits)
        assert logits.dtype == torch.float32
        assert logits.shape == (len(seq.token_ids), ours.config.vocab_size)
        assert_logits_close(logits, hf_logits(theirs, seq.token_ids))


def test_tied_embeddings_share_one_tensor() -> None:
    for preset in TINY_PRESETS:
        model = get_model(EngineConfig(model=f"random:{preset}", device="cpu"))
        tied = model.lm_head.weight is model.model.embed_tokens.weight
        assert tied == model.config.tie_word_embeddings, preset


def test_rope_scaling_is_visible_in_the_comparison(preset_pair) -> None:
    """The transformers comparison can fail: with Llama 3's frequency scaling dropped, the
    tiny-llama logits no longer match."""
    ours, theirs = preset_pair
    if ours.config.model_type != "llama":
        return
    rope = ours.model.layers[0].self_attn.rotary_emb
    plain = RotaryEmbedding(rope.head_size, ours.config.max_position_embeddings,
                            {"rope_type": "default", "rope_theta": 500000.0})
    try:
        for layer in ours.model.layers:
            layer.self_attn.rotary_emb = plain
        seq = run_engine_style(ours, prompt_lens=[200, 3], num_decode_steps=0, seed=2)[0]
    finally:
        for layer in ours.model.layers:
            layer.self_attn.rotary_emb = rope
    with pytest.raises(AssertionError):
        assert_logits_close(seq.logits[0], hf_logits(theirs, seq.token_ids))


def test_llama3_inv_freq_bands() -> None:
    """Short wavelengths keep their speed, long ones slow down by `factor`, the middle band
    lies between the two."""
    plain = default_inv_freq(16, 500000.0)
    scaled = llama3_inv_freq(16, 500000.0, factor=8.0, low_freq_factor=1.0,
                             high_freq_factor=4.0, original_max_position_embeddings=256)
    wavelen = 2 * torch.pi / plain
    high, low = wavelen < 64, wavelen > 256
    middle = ~high & ~low
    assert high.any() and low.any() and middle.any()
    torch.testing.assert_close(scaled[high], plain[high])
    torch.testing.assert_close(scaled[low], plain[low] / 8)
    assert ((scaled[middle] < plain[middle]) & (scaled[middle] > plain[middle] / 8)).all()


def test_registry_covers_the_four_families() -> None:
    for preset in TINY_PRESETS:
        config = get_preset_config(preset)
        assert ModelRegistry.resolve_model_cls(config) is LlamaForCausalLM
    config = get_preset_config("tiny-llama")
    config.model_type = "gpt2"
    with pytest.raises(ValueError, match="gpt2"):
        ModelRegistry.resolve_model_cls(config)
