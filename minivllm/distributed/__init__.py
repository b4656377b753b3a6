"""Tensor parallelism's process groups and collectives (vLLM: `vllm/distributed/`)."""

from minivllm.distributed.communication_op import (
    all_reduce_min,
    broadcast_tensor_dict,
    record_all_reduce_time,
    tensor_model_parallel_all_reduce,
    tensor_model_parallel_gather,
)
from minivllm.distributed.parallel_state import (
    as_tensor_parallel_rank,
    destroy_distributed_environment,
    get_tensor_model_parallel_rank,
    get_tensor_model_parallel_world_size,
    init_distributed_environment,
    model_parallel_is_initialized,
)
from minivllm.distributed.utils import divide, get_open_port, verify_tensor_parallel_size

__all__ = ["all_reduce_min", "as_tensor_parallel_rank", "broadcast_tensor_dict",
           "destroy_distributed_environment", "divide", "get_open_port",
           "get_tensor_model_parallel_rank", "get_tensor_model_parallel_world_size",
           "init_distributed_environment", "model_parallel_is_initialized",
           "record_all_reduce_time", "tensor_model_parallel_all_reduce",
           "tensor_model_parallel_gather", "verify_tensor_parallel_size"]
