"""UniProcExecutor: the whole model in the engine's process (vLLM:
`vllm/executor/uniproc_executor.py`), for tensor_parallel_size == 1."""

from __future__ import annotations

from transformers import PretrainedConfig

from minivllm.config import EngineConfig
from minivllm.core.kv_cache_manager import KVCacheManager
from minivllm.core.scheduler import SchedulerOutput
from minivllm.executor.executor_base import ExecutorBase, init_model_runner
from minivllm.worker.model_runner import AsyncModelRunnerOutput


class UniProcExecutor(ExecutorBase):
    def __init__(self, config: EngineConfig, model_config: PretrainedConfig) -> None:
        self.driver_runner, self.num_blocks = init_model_runner(config, model_config)

    def execute_model(self, out: SchedulerOutput,
                      kv_cache_manager: KVCacheManager) -> AsyncModelRunnerOutput:
        return self.driver_runner.execute_model(out, kv_cache_manager)
