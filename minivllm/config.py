"""Engine configuration: one dataclass for every knob, with vLLM's names.

vLLM splits this into ModelConfig, CacheConfig, SchedulerConfig, ParallelConfig, ...
(`vllm/config.py`); one flat dataclass is easier to read and every field below keeps the name
of the vLLM engine argument it mirrors, so `LLM(model=..., max_num_seqs=...)` reads the same.
The three lab switches (`kv_allocator`, `attention`, `scheduler`) choose between the provided
baseline and the layer a lab builds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

KVAllocator = Literal["reserved", "paged"]
AttentionBackendName = Literal["torch", "triton"]
SchedulerPolicy = Literal["static", "continuous"]

_DTYPES = {"float32": torch.float32, "float": torch.float32, "float16": torch.float16,
           "half": torch.float16, "bfloat16": torch.bfloat16}

DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


@dataclass
class EngineConfig:
    # -- model --------------------------------------------------------------------------
    model: str = DEFAULT_MODEL
    """A local Hugging Face folder, `random:<preset>`, or the embedded default's name."""
    tokenizer: str | None = None
    dtype: str = "auto"
    """"auto" is bfloat16 on CUDA and float32 on CPU (CPU matmuls in bf16 are slow)."""
    max_model_len: int | None = None
    """Prompt plus output tokens per sequence; defaults to the model's context length."""
    seed: int = 0
    device: str = "auto"

    # -- KV cache (lab 1) -------------------------------------------------------------
    block_size: int = 16
    gpu_memory_utilization: float = 0.9
    """Fraction of GPU memory the engine may use in all: weights, activations, KV cache."""
    cpu_kv_cache_space: float = 1.0
    """GiB of KV cache on CPU (vLLM's VLLM_CPU_KVCACHE_SPACE); there is nothing to profile."""
    num_gpu_blocks_override: int | None = None
    """Exact number of KV blocks, whatever the memory says (tests use it to force preemption)."""
    kv_allocator: KVAllocator = "paged"
    enable_prefix_caching: bool = False

    # -- attention (lab 2) ------------------------------------------------------------
    attention: AttentionBackendName | Literal["auto"] = "auto"
    """"auto" is triton on CUDA and torch on CPU."""

    # -- scheduler (lab 3) -------------------------------------------------------------
    scheduler: SchedulerPolicy = "continuous"
    max_num_seqs: int = 256
    max_num_batched_tokens: int | None = None
    """Token budget of one step; defaults to max(max_model_len, 2048) unless chunked prefill."""
    enable_chunked_prefill: bool = False

    # -- GPU speed and parallelism (lab 5) ----------------------------------------------
    enforce_eager: bool = False
    tensor_parallel_size: int = 1
    async_scheduling: bool | None = None
    """Schedule and prepare step N+1 while the GPU runs step N (vLLM's `--async-scheduling`,
    on by default since vLLM 0.14). None: on for CUDA with tensor_parallel_size 1, off on CPU,
    where the host computes the model itself and there is nothing to overlap."""

    # -- misc ---------------------------------------------------------------------------
    disable_log_stats: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.device == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.attention == "auto":
            self.attention = "triton" if self.device.startswith("cuda") else "torch"
        if self.async_scheduling is None:
            self.async_scheduling = (self.device.startswith("cuda")
                                     and self.tensor_parallel_size == 1)
        checks = [
            (self.block_size > 0 and self.block_size & (self.block_size - 1) == 0,
             f"block_size must be a power of two, got {self.block_size}"),
            (0.0 < self.gpu_memory_utilization <= 1.0,
             f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}"),
            (self.max_num_seqs >= 1, f"max_num_seqs must be >= 1, got {self.max_num_seqs}"),
            (self.kv_allocator in ("reserved", "paged"),
             f"kv_allocator must be 'reserved' or 'paged', got {self.kv_allocator!r}"),
            (self.attention in ("torch", "triton"),
             f"attention must be 'torch' or 'triton', got {self.attention!r}"),
            (self.scheduler in ("static", "continuous"),
             f"scheduler must be 'static' or 'continuous', got {self.scheduler!r}"),
            (self.tensor_parallel_size >= 1,
             f"tensor_parallel_size must be >= 1, got {self.tensor_parallel_size}"),
            (not (self.async_scheduling and self.tensor_parallel_size > 1),
             "async_scheduling is not supported with tensor_parallel_size > 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def torch_dtype(self) -> torch.dtype:
        if self.dtype == "auto":
            return torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of auto, {', '.join(_DTYPES)}; got {self.dtype!r}")
        return _DTYPES[self.dtype]

    def resolve(self, model_max_len: int) -> None:
        """Fill the defaults that depend on the model (called once the config.json is read)."""
        if self.max_model_len is None:
            self.max_model_len = model_max_len
        elif self.max_model_len > model_max_len:
            raise ValueError(
                f"max_model_len={self.max_model_len} is longer than the model's context length "
                f"({model_max_len})")
        if self.max_num_batched_tokens is None:
            self.max_num_batched_tokens = (
                2048 if self.enable_chunked_prefill else max(self.max_model_len, 2048))
        if not self.enable_chunked_prefill and self.max_num_batched_tokens < self.max_model_len:
            raise ValueError(
                f"max_num_batched_tokens ({self.max_num_batched_tokens}) is smaller than "
                f"max_model_len ({self.max_model_len}): a long prompt could never be scheduled. "
                "Raise it or pass enable_chunked_prefill=True.")
