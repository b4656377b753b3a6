"""The Llama-family decoder: Llama 2/3, Mistral, Qwen2 and Qwen3 (vLLM: `models/llama.py`,
`models/qwen2.py`, `models/qwen3.py`).

These families share one architecture: token embedding, N identical decoder layers, a final
RMSNorm and an LM head. Each decoder layer is

    x = x + o_proj(Attention(RoPE(q), RoPE(k), v))    with q, k, v = qkv_proj(RMSNorm(x))
    x = x + down_proj(silu(gate) * up)                with gate, up = gate_up_proj(RMSNorm(x))

They differ only in small switches, all read from the config:

| switch                 | Llama / Mistral        | Qwen2     | Qwen3                       |
| ---------------------- | ---------------------- | --------- | --------------------------- |
| q/k/v bias             | `attention_bias`       | always on | `attention_bias`            |
| RMSNorm on q, k heads  | no                     | no        | yes (before RoPE)           |
| head_dim               | hidden / heads unless `head_dim` is set (Qwen3 always sets it) |
| grouped-query attention| `num_key_value_heads` < `num_attention_heads` in all of them   |
| tied LM head           | `tie_word_embeddings` in all of them                           |

Mistral's sliding window is not implemented: attention always sees the whole context, which is
exact for sequences no longer than `config.sliding_window`.

Tensor parallelism (Megatron-LM style, see `layers/linear.py`): each rank runs num_heads / N
query heads with their KV heads (replicated when there are fewer KV heads than ranks) and
intermediate_size / N MLP columns; o_proj and down_proj are row-parallel, so a decoder layer
makes two all-reduces. Norms, RoPE and the residual stream are whole on every rank.

Module names follow Hugging Face's (`model.layers.3.self_attn...`), so `load_weights` maps
checkpoint names onto parameters with a few string replacements.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from transformers import PretrainedConfig

from minivllm.attention import Attention, AttentionMetadata
from minivllm.model_executor.layers.activation import SiluAndMul
from minivllm.model_executor.layers.compile import runs_fused
from minivllm.model_executor.layers.layernorm import RMSNorm
from minivllm.model_executor.layers.linear import (
    MergedColumnParallelLinear,
    QKVParallelLinear,
    RowParallelLinear,
    default_weight_loader,
)
from minivllm.model_executor.layers.rotary_embedding import RotaryEmbedding
from minivllm.model_executor.layers.triton_rope import KVCacheWrite
from minivllm.model_executor.layers.triton_skinny_gemm import (
    PartialSums,
    runs_skinny,
    skinny_gemm,
)
from minivllm.model_executor.layers.vocab_parallel_embedding import (
    ParallelLMHead,
    VocabParallelEmbedding,
)
from minivllm.transformers_utils.config import get_rope_parameters


def get_head_dim(config: PretrainedConfig) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


class LlamaMLP(nn.Module):
    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__()
        if config.hidden_act != "silu":
            raise NotImplementedError(f"hidden_act {config.hidden_act!r}: only 'silu' is "
                                      "supported")
        bias = getattr(config, "mlp_bias", False)
        self.gate_up_proj = MergedColumnParallelLinear(
            config.hidden_size, [config.intermediate_size] * 2, bias=bias)
        # In decode graphs down_proj leaves its split-K sums to the next layer's norm (linear.py).
        self.down_proj = RowParallelLinear(config.intermediate_size, config.hidden_size,
                                           bias=bias, sum_in_next_norm=True)
        self.act_fn = SiluAndMul()

    def forward(self, x: torch.Tensor) -> torch.Tensor | PartialSums:
        gate_up = self.gate_up_proj
        if runs_skinny(x, gate_up.weight):
            # Decode graphs of a few rows: the matmul kernel applies SiLU-and-mul as it writes
            # its output, one kernel fewer per layer (triton_skinny_gemm.py).
            return self.down_proj(skinny_gemm(x, gate_up.weight, gate_up.bias,
                                              silu_and_mul=True))
        return self.down_proj(self.act_fn(gate_up(x)))


class LlamaAttention(nn.Module):
    def __init__(self, config: PretrainedConfig, rotary_emb: RotaryEmbedding,
                 attention_backend: str) -> None:
        super().__init__()
        self.head_dim = get_head_dim(config)
        attention_bias = getattr(config, "attention_bias", False)
        # Qwen2's q/k/v projections always have a bias; its config has no switch for it.
        qkv_bias = attention_bias or config.model_type == "qwen2"
        self.qkv_proj = QKVParallelLinear(config.hidden_size, self.head_dim,
                                          config.num_attention_heads,
                                          config.num_key_value_heads, bias=qkv_bias)
        # This rank's heads (all of them without tensor parallelism).
        self.num_heads = self.qkv_proj.num_heads
        self.num_kv_heads = self.qkv_proj.num_kv_heads
        self.q_size = self.num_heads * self.head_dim
        self.kv_size = self.num_kv_heads * self.head_dim
        self.o_proj = RowParallelLinear(config.num_attention_heads * self.head_dim,
                                        config.hidden_size, bias=attention_bias,
                                        sum_in_next_norm=True)
        # Qwen3 normalizes every query and key head (RMSNorm over head_dim) before RoPE, which
        # bounds the size of the attention logits.
        self.q_norm = self.k_norm = None
        if config.model_type == "qwen3":
            self.q_norm = RMSNorm(self.head_dim, eps=config.rms_norm_eps)
            self.k_norm = RMSNorm(self.head_dim, eps=config.rms_norm_eps)
        self.rotary_emb = rotary_emb  # shared by all layers: its cache depends on the config only
        self.attn = Attention(self.num_heads, self.head_dim, self.head_dim**-0.5,
                              self.num_kv_heads, attention_backend)

    def forward(self, positions: torch.Tensor, hidden_states: torch.Tensor,
                kv_cache: torch.Tensor, attn_metadata: AttentionMetadata
                ) -> torch.Tensor | PartialSums:
        qkv = self.qkv_proj(hidden_states)
        q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        # Decode graphs: the RoPE kernel also writes k and v into the paged cache, one kernel
        # fewer per layer (triton_rope.py); elsewhere the attention layer writes them.
        write = (KVCacheWrite(v, kv_cache[0], kv_cache[1], attn_metadata.slot_mapping)
                 if runs_fused(q) else None)
        q, k = self.rotary_emb(positions, q, k, self.q_norm, self.k_norm, write)
        attn_output = self.attn(q, k, v, kv_cache, attn_metadata,
                                kv_cache_written=write is not None)
        return self.o_proj(attn_output)


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config: PretrainedConfig, rotary_emb: RotaryEmbedding,
                 attention_backend: str) -> None:
        super().__init__()
        self.self_attn = LlamaAttention(config, rotary_emb, attention_backend)
        self.mlp = LlamaMLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, positions: torch.Tensor, hidden_states: torch.Tensor | PartialSums,
                residual: torch.Tensor | None, kv_cache: torch.Tensor,
                attn_metadata: AttentionMetadata
                ) -> tuple[torch.Tensor | PartialSums, torch.Tensor]:
        """Returns (this layer's output, the residual stream before it is added), vLLM's
        convention: the next norm adds them, so each residual add happens inside a norm (and,
        in decode graphs, the split-K sums of o_proj and down_proj: `PartialSums`)."""
        if residual is None:
            residual = hidden_states
            hidden_states = self.input_layernorm(hidden_states)
        else:
            hidden_states, residual = self.input_layernorm(hidden_states, residual)
        hidden_states = self.self_attn(positions, hidden_states, kv_cache, attn_metadata)
        hidden_states, residual = self.post_attention_layernorm(hidden_states, residual)
        return self.mlp(hidden_states), residual


class LlamaModel(nn.Module):
    def __init__(self, config: PretrainedConfig, attention_backend: str) -> None:
        super().__init__()
        self.embed_tokens = VocabParallelEmbedding(config.vocab_size, config.hidden_size)
        rotary_emb = RotaryEmbedding(get_head_dim(config), config.max_position_embeddings,
                                     get_rope_parameters(config))
        self.layers = nn.ModuleList(
            LlamaDecoderLayer(config, rotary_emb, attention_backend)
            for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor,
                kv_caches: list[torch.Tensor], attn_metadata: AttentionMetadata) -> torch.Tensor:
        hidden_states = self.embed_tokens(input_ids)
        residual = None
        for layer, kv_cache in zip(self.layers, kv_caches, strict=True):
            hidden_states, residual = layer(positions, hidden_states, residual, kv_cache,
                                            attn_metadata)
        hidden_states, _ = self.norm(hidden_states, residual)
        return hidden_states


class LlamaForCausalLM(nn.Module):
    # Checkpoint tensors that land in a slice of one of our fused parameters:
    # (our parameter, checkpoint name, shard id).
    stacked_params_mapping = (
        (".qkv_proj", ".q_proj", "q"),
        (".qkv_proj", ".k_proj", "k"),
        (".qkv_proj", ".v_proj", "v"),
        (".gate_up_proj", ".gate_proj", 0),
        (".gate_up_proj", ".up_proj", 1),
    )

    def __init__(self, config: PretrainedConfig, attention_backend: str = "torch") -> None:
        super().__init__()
        self.config = config
        self.model = LlamaModel(config, attention_backend)
        self.lm_head = ParallelLMHead(config.vocab_size, config.hidden_size)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor,
                kv_caches: list[torch.Tensor], attn_metadata: AttentionMetadata) -> torch.Tensor:
        """input_ids, positions [T] (a step's tokens, flattened); kv_caches one
        [2, num_blocks, block_size, num_kv_heads, head_dim] tensor per layer.
        Returns the final hidden states [T, hidden_size]."""
        return self.model(input_ids, positions, kv_caches, attn_metadata)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        """[N, hidden_size] -> [N, vocab_size] float32 (None on tensor-parallel ranks other
        than 0, which do not sample). Separate from `forward` so the runner scores only the rows
        it samples from (the last token of each prefill)."""
        return self.lm_head.compute_logits(hidden_states)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy (Hugging Face name, tensor) pairs into the parameters; every parameter must be
        filled. The stacked ones (q/k/v, gate/up) are filled shard by shard."""
        params = dict(self.named_parameters())  # a tied lm_head appears as embed_tokens only
        loaded: set[str] = set()
        for name, loaded_weight in weights:
            if "rotary_emb.inv_freq" in name:  # older checkpoints store RoPE's (derived) buffer
                continue
            if name == "lm_head.weight" and self.config.tie_word_embeddings:
                continue  # some tied checkpoints store a copy of the embedding
            for param_name, shard_name, shard_id in self.stacked_params_mapping:
                if shard_name in name:
                    name = name.replace(shard_name, param_name)
                    param = self._param(params, name)
                    param.weight_loader(param, loaded_weight, shard_id)
                    break
            else:
                param = self._param(params, name)
                getattr(param, "weight_loader", default_weight_loader)(param, loaded_weight)
            loaded.add(name)
        if missing := sorted(params.keys() - loaded):
            raise ValueError(f"the checkpoint has no tensor for {len(missing)} parameter(s) of "
                             f"{type(self).__name__}, e.g. {', '.join(missing[:3])}")

    def _param(self, params: dict[str, nn.Parameter], name: str) -> nn.Parameter:
        if name not in params:
            raise ValueError(f"checkpoint tensor {name!r} matches no parameter of "
                             f"{type(self).__name__} (model_type {self.config.model_type!r})")
        return params[name]
