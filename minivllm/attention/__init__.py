"""Attention: the paged KV cache's readers and writers (lab 2)."""

from minivllm.attention.layer import Attention
from minivllm.attention.metadata import AttentionMetadata

__all__ = ["Attention", "AttentionMetadata"]
