"""Checks that a model can be split over `tensor_parallel_size` ranks (vLLM:
`vllm/distributed/utils.py` `divide`, `ModelConfig.verify_with_parallel_config`)."""

from __future__ import annotations

import socket

import torch
from transformers import PretrainedConfig


def divide(numerator: int, denominator: int, what: str = "size") -> int:
    """numerator / denominator, which must divide exactly."""
    if numerator % denominator:
        raise ValueError(f"{what} ({numerator}) must be divisible by tensor_parallel_size "
                         f"({denominator})")
    return numerator // denominator


def verify_tensor_parallel_size(hf_config: PretrainedConfig, tensor_parallel_size: int,
                                device: str) -> None:
    """Raise ValueError, before any process starts, when the model cannot be split this way.

    Query heads and MLP columns are split evenly. KV heads are split too when there are at least
    as many as ranks; with fewer, each KV head is replicated on `tp / num_kv_heads` ranks, so
    the ranks must divide into equal groups."""
    tp = tensor_parallel_size
    divide(hf_config.num_attention_heads, tp, "Total number of attention heads")
    divide(hf_config.intermediate_size, tp, "intermediate_size")
    num_kv_heads = getattr(hf_config, "num_key_value_heads", None) or (
        hf_config.num_attention_heads)
    if num_kv_heads >= tp:
        divide(num_kv_heads, tp, "Total number of KV heads")
    elif tp % num_kv_heads:
        raise ValueError(f"tensor_parallel_size ({tp}) must be a multiple of the number of KV "
                         f"heads ({num_kv_heads}) when it exceeds it")
    if device.startswith("cuda") and tp > torch.cuda.device_count():
        raise ValueError(f"tensor_parallel_size ({tp}) is larger than the number of GPUs "
                         f"({torch.cuda.device_count()})")


def get_open_port() -> int:
    """A TCP port nobody listens on now, for rank 0's rendezvous (vLLM's `get_open_port`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
