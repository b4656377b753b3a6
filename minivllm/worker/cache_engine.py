"""The KV cache's memory: how many blocks fit, and the tensors themselves.

vLLM sizes the cache after a profiling forward pass (`Worker.determine_num_available_blocks`):
whatever GPU memory `gpu_memory_utilization` allows, minus the weights and the peak activation
memory of the largest batch, becomes KV blocks. On a CPU there is nothing to profile, so the
size is a setting (`cpu_kv_cache_space` GiB, vLLM's `VLLM_CPU_KVCACHE_SPACE`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PretrainedConfig


@dataclass
class KVCacheSpec:
    num_layers: int
    num_kv_heads: int
    head_dim: int
    block_size: int
    dtype: torch.dtype

    @classmethod
    def from_model_config(cls, cfg: PretrainedConfig, block_size: int, dtype: torch.dtype,
                          tensor_parallel_size: int = 1) -> KVCacheSpec:
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        num_kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        # With tensor parallelism each rank holds its share of the KV heads (at least one).
        num_kv_heads = max(1, num_kv_heads // tensor_parallel_size)
        return cls(cfg.num_hidden_layers, num_kv_heads, head_dim, block_size, dtype)

    @property
    def bytes_per_token(self) -> int:
        """Bytes of KV cache one token needs: a K and a V vector per KV head, in every layer.

        This is why long contexts are expensive: SmolLM2-135M in float32 needs
        2 * 30 layers * 3 KV heads * 64 dims * 4 bytes = 46,080 bytes (45 KiB) per token.
        """
        # BEGIN SOLUTION lab0
        element = torch.tensor([], dtype=self.dtype).element_size()
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * element
        # END SOLUTION

    @property
    def bytes_per_block(self) -> int:
        return self.bytes_per_token * self.block_size


def allocate_kv_caches(spec: KVCacheSpec, num_blocks: int,
                       device: torch.device | str) -> list[torch.Tensor]:
    """One tensor per layer, [2, num_blocks, block_size, num_kv_heads, head_dim]: index 0 holds
    K, index 1 holds V. All layers are views into one allocation."""
    cache = torch.zeros(spec.num_layers, 2, num_blocks, spec.block_size, spec.num_kv_heads,
                        spec.head_dim, dtype=spec.dtype, device=device)
    return list(cache.unbind(0))
