"""Executor: what runs the model for the engine (vLLM: `vllm/executor/executor_base.py`).

The engine schedules; an executor turns each step's `SchedulerOutput` into sampled tokens, in
however many processes the model lives:

    UniProcExecutor     tensor_parallel_size == 1: one ModelRunner in the engine's process
    MultiprocExecutor   tensor_parallel_size == N: rank 0 in the engine's process (the driver),
                        ranks 1..N-1 in worker processes, each with its shard of the model

Every rank starts the same way (`init_model_runner`, vLLM's `Worker`): load its shard of the
model, size the KV cache, allocate it, capture CUDA graphs.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod

from transformers import PretrainedConfig

from minivllm.config import EngineConfig
from minivllm.core.kv_cache_manager import KVCacheManager
from minivllm.core.scheduler import SchedulerOutput
from minivllm.distributed import all_reduce_min
from minivllm.model_executor.model_loader import get_model
from minivllm.worker.model_runner import AsyncModelRunnerOutput, GiB, ModelRunner

logger = logging.getLogger("minivllm")


def init_model_runner(config: EngineConfig,
                      model_config: PretrainedConfig) -> tuple[ModelRunner, int]:
    """Start this rank: its model shard and KV cache. Returns the runner and the number of KV
    blocks, the same on every rank: the fewest any rank has room for, since the driver's block
    tables index every rank's cache."""
    start = time.perf_counter()
    model = get_model(config)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    logger.info("Model loading took %.4f GiB and %.2f seconds", weight_bytes / GiB,
                time.perf_counter() - start)
    runner = ModelRunner(config, model, model_config)
    num_blocks = all_reduce_min(runner.determine_num_blocks())
    runner.init_kv_cache(num_blocks)
    runner.warm_up_attention()
    runner.capture_cuda_graphs()
    return runner, num_blocks


class ExecutorBase(ABC):
    driver_runner: ModelRunner
    """Rank 0's runner, in the engine's process."""
    num_blocks: int
    """KV cache blocks per rank (each rank holds its share of the KV heads of every block)."""

    @abstractmethod
    def execute_model(self, out: SchedulerOutput,
                      kv_cache_manager: KVCacheManager) -> AsyncModelRunnerOutput:
        """Launch one scheduled step on every rank; its sampled tokens, as they arrive."""

    def shutdown(self) -> None:  # noqa: B027 (one process: nothing to stop)
        """Stop the worker processes, if any."""
