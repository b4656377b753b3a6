"""Token embedding and LM head, split by vocabulary (vLLM: `layers/vocab_parallel_embedding.py`).

The embedding maps token ids to rows of a [vocab_size, hidden_size] matrix; the LM head
multiplies the final hidden states by a matrix of the same shape to score every token. Small
models often *tie* the two (`tie_word_embeddings`): one matrix serves both ways, and the
checkpoint stores it once.

With tensor parallelism rank r holds a contiguous range of the vocabulary's rows
[vocab_start_index, vocab_end_index) (the vocabulary is padded up to a multiple of N so all
ranks hold the same number of rows; padding rows are zero and never scored):

- embedding: each rank looks up the ids in its range and writes zeros for the others; an
  all-reduce adds the N partial lookups, in which each id was found by exactly one rank;
- LM head: each rank scores its range of the vocabulary; the slices are gathered on rank 0,
  which samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from minivllm.distributed import (
    get_tensor_model_parallel_rank,
    get_tensor_model_parallel_world_size,
    tensor_model_parallel_all_reduce,
    tensor_model_parallel_gather,
)


class VocabParallelEmbedding(nn.Module):
    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.tp_size = get_tensor_model_parallel_world_size()
        self.num_embeddings_per_partition = -(-num_embeddings // self.tp_size)  # ceil
        self.vocab_start_index = get_tensor_model_parallel_rank() * (
            self.num_embeddings_per_partition)
        self.vocab_end_index = min(self.vocab_start_index + self.num_embeddings_per_partition,
                                   num_embeddings)
        # Empty, like the Linear layers: the checkpoint fills it.
        self.weight = nn.Parameter(torch.empty(self.num_embeddings_per_partition, embedding_dim))
        self.weight.weight_loader = self.weight_loader

    def weight_loader(self, param: torch.Tensor, loaded_weight: torch.Tensor) -> None:
        """Keep this rank's rows of the whole [vocab_size, hidden] checkpoint matrix."""
        if loaded_weight.shape != (self.num_embeddings, self.embedding_dim):
            raise ValueError(f"checkpoint tensor of shape {tuple(loaded_weight.shape)} does not "
                             f"fit a [{self.num_embeddings}, {self.embedding_dim}] vocabulary")
        num_rows = self.vocab_end_index - self.vocab_start_index
        param.data[:num_rows].copy_(loaded_weight[self.vocab_start_index:self.vocab_end_index])
        param.data[num_rows:].zero_()  # padding rows

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.tp_size == 1:
            return F.embedding(input_ids, self.weight)
        outside = (input_ids < self.vocab_start_index) | (input_ids >= self.vocab_end_index)
        local_ids = (input_ids - self.vocab_start_index).masked_fill(outside, 0)
        embeddings = F.embedding(local_ids, self.weight).masked_fill(outside.unsqueeze(-1), 0)
        return tensor_model_parallel_all_reduce(embeddings)


class ParallelLMHead(VocabParallelEmbedding):
    """The output matrix, split like the embedding. It is not called: `compute_logits` scores
    hidden states against it. With tied weights the model points `weight` at the embedding's
    parameter (same shard, same loader)."""

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("the LM head is used through compute_logits")

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        """[N, hidden] -> [N, vocab] in the model dtype on rank 0; None on the other ranks. The
        sampler casts to float32 where it needs the precision (a greedy batch does not: an
        argmax reads bf16 logits as well, and skips writing a [N, vocab] float32 copy)."""
        logits = tensor_model_parallel_gather(F.linear(hidden_states, self.weight))
        if logits is None:
            return None
        if logits.shape[-1] != self.num_embeddings:
            logits = logits[..., : self.num_embeddings]  # drop the padding rows' scores
        return logits
