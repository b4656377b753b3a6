"""Token embedding and LM head (vLLM: `layers/vocab_parallel_embedding.py`).

The embedding maps token ids to rows of a [vocab_size, hidden_size] matrix; the LM head
multiplies the final hidden states by a matrix of the same shape to score every token. Small
models often *tie* the two (`tie_word_embeddings`): one matrix serves both ways, and the
checkpoint stores it once. vLLM shards the vocabulary across GPUs; here one device holds all.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class VocabParallelEmbedding(nn.Module):
    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        # Empty, like the Linear layers: the checkpoint fills it.
        self.weight = nn.Parameter(torch.empty(num_embeddings, embedding_dim))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(input_ids, self.weight)


class ParallelLMHead(nn.Module):
    """The output matrix. It has no `forward`: `compute_logits` scores hidden states against
    it. With tied weights the model points `weight` at the embedding's parameter."""

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_embeddings, embedding_dim))

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """[N, hidden] -> [N, vocab] float32 (sampling needs the precision, not the matmul)."""
        return F.linear(hidden_states, self.weight).float()
