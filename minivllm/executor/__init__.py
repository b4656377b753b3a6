"""Executors: run the model in one process or over tensor-parallel worker processes (vLLM:
`vllm/executor/`)."""

from __future__ import annotations

from transformers import PretrainedConfig

from minivllm.config import EngineConfig
from minivllm.distributed import model_parallel_is_initialized, verify_tensor_parallel_size
from minivllm.executor.executor_base import ExecutorBase
from minivllm.executor.multiproc_executor import MultiprocExecutor
from minivllm.executor.uniproc_executor import UniProcExecutor


def make_executor(config: EngineConfig, model_config: PretrainedConfig) -> ExecutorBase:
    """The executor for `config.tensor_parallel_size`: ValueError when the model cannot be split
    that way (checked before any process starts)."""
    verify_tensor_parallel_size(model_config, config.tensor_parallel_size, config.device)
    if model_parallel_is_initialized():
        # Layers read the process's tensor-parallel rank when they are built.
        raise RuntimeError("A tensor-parallel engine is running in this process: shut it down "
                           "(LLMEngine.shutdown()) before starting another engine")
    if config.tensor_parallel_size == 1:
        return UniProcExecutor(config, model_config)
    return MultiprocExecutor(config, model_config)


__all__ = ["ExecutorBase", "MultiprocExecutor", "UniProcExecutor", "make_executor"]
