"""AttentionMetadata: what every attention layer needs to know about the batch of one step.

Built once per step by the ModelRunner and shared by all layers (vLLM: `AttentionMetadata` of
the FlashAttention / Triton backends). A step's tokens are packed into one flat batch, prefills
first, then decodes (as vLLM v0 lays them out), so a layer splits its queries at
`num_prefill_tokens`:

    tokens:  [ p0 p0 p0 p0 | p1 p1 | d0 | d1 | d2 | pad pad ]
             <-- num_prefill_tokens --><- num_decode_tokens ->   (padding: CUDA only)

On CUDA the ModelRunner pads a step with prefills to a multiple of 128 tokens, and CUDA graphs
pad a decode batch to a captured size; padding tokens have slot -1, and attention leaves
their rows zero.

Every layer first writes the new tokens' K/V into the paged cache (by `slot_mapping`), then
attends through the block tables, so prefill and decode both read K/V from the cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AttentionMetadata:
    slot_mapping: torch.Tensor
    """[num_tokens] int64: cache slot (block_id * block_size + offset) of each new token; -1 for
    padding tokens, whose K/V are not written."""
    block_tables: torch.Tensor
    """[num_seqs, max_blocks_per_seq] int32, prefills first; unused entries are 0."""
    context_lens: torch.Tensor
    """[num_seqs] int32: tokens of each sequence in the cache once this step's K/V are written."""
    query_start_loc: torch.Tensor
    """[num_prefills + 1] int32: where each prefill's new tokens start in the flat batch."""
    num_prefills: int
    num_prefill_tokens: int
    num_decode_tokens: int
    max_query_len: int
    """Longest prefill chunk of the step (a host int, so kernels can size their grid)."""
    max_context_len: int
    """Upper bound on context_lens (host int); CUDA graphs pass max_model_len."""

    @property
    def prefill_block_tables(self) -> torch.Tensor:
        return self.block_tables[: self.num_prefills]

    @property
    def prefill_context_lens(self) -> torch.Tensor:
        return self.context_lens[: self.num_prefills]

    @property
    def decode_block_tables(self) -> torch.Tensor:
        return self.block_tables[self.num_prefills:]

    @property
    def decode_context_lens(self) -> torch.Tensor:
        return self.context_lens[self.num_prefills:]
