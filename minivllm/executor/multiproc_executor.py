"""MultiprocExecutor: tensor parallelism over N processes (vLLM v0's
`MultiprocessingGPUExecutor` with its driver worker, `vllm/executor/mp_distributed_executor.py`).

    engine process = rank 0, the driver           worker processes = ranks 1..N-1
    -----------------------------------           -------------------------------
    schedule; prepare_inputs (batch tensors)
    broadcast_tensor_dict(inputs) ─────────────►  inputs = broadcast_tensor_dict()
    model forward  ◄──── all-reduces in every layer ────►  model forward
    compute_logits ◄──── gather of vocabulary slices ───   compute_logits
    sample; append tokens; detokenize             wait for the next step

The engine keeps its single-process shape: only the driver holds the scheduler, the sequences and
the tokenizer, and it samples alone. Workers are started with `spawn` (CUDA cannot be used in a
forked child) and run `worker_main`: join the group, build their shard and KV cache, then
execute every broadcast step until the driver broadcasts None.

Failures do not hang the engine: a worker that raises sends its traceback through a pipe and
exits; a dead worker's sockets close, so the driver's pending collective fails at once; the
driver then raises a RuntimeError naming the rank. It also checks that every worker is alive
before each step. Workers exit when the driver does, for the same reason.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import signal
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, fields
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

import torch
import torch.multiprocessing as mp
from transformers import PretrainedConfig

from minivllm.attention.metadata import AttentionMetadata
from minivllm.config import EngineConfig
from minivllm.core.kv_cache_manager import KVCacheManager
from minivllm.core.scheduler import SchedulerOutput
from minivllm.distributed import (
    broadcast_tensor_dict,
    destroy_distributed_environment,
    get_open_port,
    init_distributed_environment,
)
from minivllm.executor.executor_base import ExecutorBase, init_model_runner
from minivllm.model_executor.model_loader import get_model_config
from minivllm.worker.model_runner import AsyncModelRunnerOutput, ModelInput

WORKER_READY = "ready"
READY_TIMEOUT_S = 600.0
"""How long a worker may take to start (import torch and minivllm) before it counts as failed."""
EXIT_GRACE_S = 10.0
"""How long a worker may take to exit once told to, or once its collective failed."""


# -- the step's inputs, as broadcast ------------------------------------------------------------
_ATTN_PREFIX = "attn_metadata."


def model_input_to_dict(inputs: ModelInput) -> dict[str, Any]:
    """What the workers need of a step: every ModelInput field but the Sequence objects (only
    the driver samples), the attention metadata flattened into the same dict."""
    tensor_dict = {f.name: getattr(inputs, f.name) for f in fields(inputs)
                   if f.name not in ("attn_metadata", "seqs_to_sample")}
    md = inputs.attn_metadata
    tensor_dict.update({_ATTN_PREFIX + f.name: getattr(md, f.name) for f in fields(md)})
    return tensor_dict


def model_input_from_dict(tensor_dict: dict[str, Any]) -> ModelInput:
    md = AttentionMetadata(**{k.removeprefix(_ATTN_PREFIX): v for k, v in tensor_dict.items()
                              if k.startswith(_ATTN_PREFIX)})
    rest = {k: v for k, v in tensor_dict.items() if not k.startswith(_ATTN_PREFIX)}
    return ModelInput(**rest, attn_metadata=md, seqs_to_sample=[])


# -- the worker process -------------------------------------------------------------------------
def worker_main(config: EngineConfig, rank: int, world_size: int, init_method: str,
                backend: str, conn: Connection) -> None:
    """Entry point of the process of tensor-parallel rank `rank` (1..N-1)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the driver to handle
    try:
        if backend == "nccl":
            torch.cuda.set_device(rank)  # one GPU per rank
            config = dataclasses.replace(config, device=f"cuda:{rank}")
        else:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))  # its share
        conn.send(WORKER_READY)
        init_distributed_environment(world_size, rank, init_method, backend)
        runner, _ = init_model_runner(config, get_model_config(config.model))
        while (tensor_dict := broadcast_tensor_dict(src=0, device=runner.device)) is not None:
            runner.execute_model_input(model_input_from_dict(tensor_dict))
    except Exception:
        with contextlib.suppress(OSError):  # the driver may be gone: nobody to tell
            conn.send(traceback.format_exc())
        raise SystemExit(1) from None
    finally:
        destroy_distributed_environment()
        conn.close()


@dataclass
class WorkerHandle:
    rank: int
    process: BaseProcess
    conn: Connection
    """Read end of the worker's pipe: WORKER_READY, then a traceback if it fails."""
    error: str | None = None

    def failure(self) -> str | None:
        """Why this worker is gone, or None while it runs."""
        if self.process.is_alive():
            return None
        with contextlib.suppress(EOFError, OSError):
            while self.conn.poll():
                message = self.conn.recv()
                if message != WORKER_READY:
                    self.error = message
        reason = (f"Tensor-parallel worker rank {self.rank} (pid {self.process.pid}) died "
                  f"with exit code {self.process.exitcode}")
        return f"{reason}; its error:\n{self.error}" if self.error else reason


class MultiprocExecutor(ExecutorBase):
    def __init__(self, config: EngineConfig, model_config: PretrainedConfig) -> None:
        world_size = config.tensor_parallel_size
        backend = "nccl" if config.device.startswith("cuda") else "gloo"
        init_method = f"tcp://127.0.0.1:{get_open_port()}"
        context = mp.get_context("spawn")
        self.workers: list[WorkerHandle] = []
        self._workers_idle = False
        """True while every worker waits for the next step's broadcast."""
        self._is_shut_down = False
        atexit.register(self.shutdown)
        try:
            for rank in range(1, world_size):
                reader, writer = context.Pipe(duplex=False)
                process = context.Process(
                    target=worker_main, name=f"minivllm-tp-rank-{rank}", daemon=True,
                    args=(config, rank, world_size, init_method, backend, writer))
                process.start()
                writer.close()  # the worker holds the write end now
                self.workers.append(WorkerHandle(rank, process, reader))
            self._wait_for_ready()
            with self._fail_on_worker_death():
                init_distributed_environment(world_size, 0, init_method, backend)
                self.driver_runner, self.num_blocks = init_model_runner(config, model_config)
        except BaseException:
            self.shutdown()
            raise
        self._workers_idle = True

    def execute_model(self, out: SchedulerOutput,
                      kv_cache_manager: KVCacheManager) -> AsyncModelRunnerOutput:
        self._raise_if_worker_died()
        if not self._workers_idle:
            raise RuntimeError("A previous step failed part-way, so the tensor-parallel ranks "
                               "are out of step: restart the engine")
        inputs = self.driver_runner.prepare_inputs(out.scheduled, kv_cache_manager)
        self._workers_idle = False
        with self._fail_on_worker_death():
            broadcast_tensor_dict(model_input_to_dict(inputs))
            results = self.driver_runner.execute_model_input(inputs)
            results.get_output()  # a rank that died mid-step shows here, inside the guard
        self._workers_idle = True
        return results

    def shutdown(self) -> None:
        """Tell idle workers to stop, stop the others, leave the process group. Runs at exit
        too; calling it again does nothing."""
        if self._is_shut_down:
            return
        self._is_shut_down = True
        atexit.unregister(self.shutdown)
        stop = self._workers_idle and all(w.process.is_alive() for w in self.workers)
        if stop:
            with contextlib.suppress(RuntimeError):
                broadcast_tensor_dict(None)
        for worker in self.workers:
            worker.process.join(timeout=EXIT_GRACE_S if stop else 0)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        destroy_distributed_environment()

    # -- failures ---------------------------------------------------------------------------
    def _wait_for_ready(self) -> None:
        """Wait until every worker runs `worker_main`, before rank 0 blocks in the rendezvous,
        so that a worker that cannot even start is reported instead of awaited."""
        for worker in self.workers:
            if not wait([worker.conn, worker.process.sentinel], timeout=READY_TIMEOUT_S):
                raise RuntimeError(f"Tensor-parallel worker rank {worker.rank} did not start "
                                   f"within {READY_TIMEOUT_S:.0f} s")
            message = None
            with contextlib.suppress(EOFError):  # EOF: it died without a word
                message = worker.conn.recv()
            if message != WORKER_READY:
                worker.error = message
                worker.process.join(EXIT_GRACE_S)
                self._raise_if_worker_died()
                raise RuntimeError(f"Tensor-parallel worker rank {worker.rank} failed to start:"
                                   f"\n{message}")

    @contextlib.contextmanager
    def _fail_on_worker_death(self) -> Iterator[None]:
        """Turn a collective that failed because a worker died into an error naming it."""
        try:
            yield
        except Exception as exc:
            # A dead peer fails our collective at once; give its exit a moment to be seen.
            wait([w.process.sentinel for w in self.workers], timeout=EXIT_GRACE_S)
            self._raise_if_worker_died(exc)
            raise

    def _raise_if_worker_died(self, cause: BaseException | None = None) -> None:
        failures = [f for w in self.workers if (f := w.failure()) is not None]
        if failures:
            raise RuntimeError("\n".join(failures) + "\nThe engine cannot continue: every "
                               "rank holds a part of every layer.") from cause
