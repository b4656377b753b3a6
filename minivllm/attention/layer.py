"""The Attention layer every decoder layer calls (vLLM: `vllm.attention.layer.Attention`).

It owns no weights: the model computes q, k, v (and RoPE); this layer writes k, v into the
layer's paged KV cache and runs attention for the prefill and the decode part of the batch
with the selected backend.
"""

from __future__ import annotations

import torch
from torch import nn

from minivllm.attention.backends import get_attention_ops
from minivllm.attention.metadata import AttentionMetadata


class Attention(nn.Module):
    def __init__(self, num_heads: int, head_size: int, scale: float, num_kv_heads: int,
                 backend: str = "torch") -> None:
        super().__init__()
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads ({num_heads}) must be a multiple of num_kv_heads "
                             f"({num_kv_heads})")
        self.num_heads = num_heads
        self.head_size = head_size
        self.scale = scale
        self.num_kv_heads = num_kv_heads
        self.ops = get_attention_ops(backend)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                kv_cache: torch.Tensor, attn_metadata: AttentionMetadata,
                kv_cache_written: bool = False) -> torch.Tensor:
        """query [T, num_heads * head_size], key/value [T, num_kv_heads * head_size];
        kv_cache [2, num_blocks, block_size, num_kv_heads, head_size]. Returns [T, num_heads *
        head_size]; rows of padding tokens are left as zeros. `kv_cache_written`: the new K/V
        are in the cache already (in CUDA graphs the RoPE kernel writes them), so key and value
        are not read."""
        md = attn_metadata
        q = query.view(-1, self.num_heads, self.head_size)
        k = key.view(-1, self.num_kv_heads, self.head_size)
        v = value.view(-1, self.num_kv_heads, self.head_size)
        key_cache, value_cache = kv_cache[0], kv_cache[1]
        if not kv_cache_written:
            self.ops.reshape_and_cache(k, v, key_cache, value_cache, md.slot_mapping)

        num_p = md.num_prefill_tokens
        num_d = md.decode_block_tables.shape[0]
        # Pure-decode and pure-prefill steps (the common cases) return the kernel's output as
        # is; a mixed step fills one buffer (saves a memset and a copy per layer).
        if md.num_prefills == 0 and num_d == q.shape[0]:
            return self.ops.paged_decode_attention(
                q, key_cache, value_cache, md.decode_block_tables, md.decode_context_lens,
                self.scale).view(-1, self.num_heads * self.head_size)
        if md.num_decode_tokens == 0 and num_p == q.shape[0]:
            return self.ops.paged_prefill_attention(
                q, key_cache, value_cache, md.prefill_block_tables, md.query_start_loc,
                md.prefill_context_lens, self.scale,
                md.max_query_len).view(-1, self.num_heads * self.head_size)
        out = torch.zeros_like(q)
        if md.num_prefills > 0:
            out[:num_p] = self.ops.paged_prefill_attention(
                q[:num_p], key_cache, value_cache, md.prefill_block_tables,
                md.query_start_loc, md.prefill_context_lens, self.scale, md.max_query_len)
        if md.num_decode_tokens > 0:
            # With CUDA graphs the decode part is padded: block_tables and context_lens have one
            # row per (padded) decode token, padding rows with context length 0.
            out[num_p:num_p + num_d] = self.ops.paged_decode_attention(
                q[num_p:num_p + num_d], key_cache, value_cache, md.decode_block_tables,
                md.decode_context_lens, self.scale)
        return out.view(-1, self.num_heads * self.head_size)
