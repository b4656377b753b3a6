"""Small helpers shared by the Triton kernels (PagedAttention of lab 2, the layers).

The host-side ones pick launch parameters from what the host already knows (tensor dtypes and
shapes, the GPU's size), so no launch ever waits for the device. The device-side ones are
`pdl_wait`, the line every PDL kernel runs before it reads an earlier kernel's output, and the
handover of kernels whose last program finishes the work of several (`last_to_arrive`).
"""

from __future__ import annotations

import functools
import os

import numpy as np
import torch
import triton
import triton.language as tl

_TL_DTYPES = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}


def is_interpreting() -> bool:
    """True under `TRITON_INTERPRET=1`, where Triton runs kernels on the CPU with NumPy."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")


def _fix_interpreter_for_numpy_2_4() -> None:
    """Let Triton's interpreter run loops whose bounds are loaded values on NumPy >= 2.4.

    The interpreter holds a scalar as a 1-element array and turns it into a Python int (for
    `range(start, end)`) with `int(array)`, which NumPy 2.4 made a TypeError. Triton fixed it
    after 3.6 (triton-lang/triton#9171) the same way we do here: squeeze the array first.
    """
    from triton.runtime import interpreter

    original = interpreter._patch_lang_tensor
    if getattr(original, "minivllm_fixed", False):
        return

    def patch_lang_tensor(tensor, scope) -> None:
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.squeeze()))

    patch_lang_tensor.minivllm_fixed = True
    interpreter._patch_lang_tensor = patch_lang_tensor


if is_interpreting() and np.lib.NumpyVersion(np.__version__) >= "2.4.0":
    _fix_interpreter_for_numpy_2_4()


def tl_dtype(dtype: torch.dtype) -> tl.dtype:
    """Triton's name for a torch dtype (fp32, fp16 or bf16), for kernels that take a dtype as a
    `tl.constexpr`."""
    if dtype not in _TL_DTYPES:
        raise TypeError(f"unsupported dtype {dtype}; expected fp32, fp16 or bf16")
    return _TL_DTYPES[dtype]


def dot_dtype(dtype: torch.dtype) -> tl.dtype:
    """The dtype the kernels feed to `tl.dot` (accumulation is always fp32).

    fp16/bf16 go to the tensor cores as they are. fp32 stays fp32 (the kernels ask `tl.dot` for
    IEEE precision rather than TF32, so fp32 results match the oracle closely). Under the CPU
    interpreter everything is upcast to fp32: Triton 3.6's interpreter computes bf16 dots and
    bf16 scalar arithmetic wrongly or not at all.
    """
    return tl.float32 if is_interpreting() else tl_dtype(dtype)


@functools.cache
def use_pdl(device: torch.device) -> bool:
    """Whether kernels that support it are launched with programmatic dependent launch (PDL).

    On a GPU each kernel normally starts only once the one before it has finished and its
    writes are flushed: between two dependent kernels the SMs idle for a microsecond or two,
    and a decode step of a small model runs hundreds of kernels. Since Hopper (compute
    capability 9.0) a kernel launched with PDL may start while its predecessor is still
    running; it must call `tl.extra.cuda.gdc_wait()` before it touches anything the predecessor
    writes or reads, and may do independent work (load its weights) before that. A kernel calls
    `gdc_launch_dependents()` to let the next one start early (both in `pdl_wait`). CUDA graphs
    record the early start, so replays keep it. FlashInfer (`enable_pdl`) and TensorRT-LLM use
    it the same way.

    Off under the CPU interpreter and on older GPUs; MINIVLLM_NO_PDL=1 turns it off (A/B
    measurements, debugging)."""
    return (device.type == "cuda" and not is_interpreting()
            and torch.cuda.get_device_capability(device)[0] >= 9
            and os.environ.get("MINIVLLM_NO_PDL") != "1")


@triton.jit
def pdl_wait(USE_PDL: tl.constexpr):
    """In a kernel launched with `launch_pdl=use_pdl(device)`: wait until the previous kernel
    has finished (its output is readable, and what it read may be overwritten), then let the
    next kernel start. The next one waits in turn before it reads this one's output, so
    releasing it this early is safe. Call it before the first load of an earlier kernel's
    output; loads of weights and inputs the host wrote may come before it."""
    if USE_PDL:
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()


@functools.cache
def get_num_sms(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device (132 on an H100 SXM); 1 for the CPU
    interpreter, which runs one program at a time."""
    if device.type != "cuda":
        return 1
    return torch.cuda.get_device_properties(device).multi_processor_count


HANDOVER_COUNTERS = 1 << 16
"""Size of the counter buffer of `handover_counters`: the most groups one launch may have."""


@functools.cache
def handover_counters(device: torch.device) -> torch.Tensor:
    """Zeroed int32 counters for kernels in which the last program of a group of programs
    finishes the group's work (`last_to_arrive`): the split-K matmul, the argmax. Zeroed once;
    every launch leaves its counters at 0 again. One buffer serves every such kernel on a
    device, which is safe because the engine runs its kernels on one stream, one after the
    other."""
    return torch.zeros(HANDOVER_COUNTERS, dtype=torch.int32, device=device)


@triton.jit
def last_to_arrive(counter_ptr, group_size):
    """Count this program in at `counter_ptr` and tell whether it came last of `group_size`.

    The stores each program made before this call (its partial results) are visible to the
    last one: the barrier issues every thread's stores first, and the atomic has release and
    acquire order. The last program reads the others' results with `cache_modifier=".cg"` (from
    L2, where they landed; L1 is per SM), then calls `reset_counter`."""
    tl.debug_barrier()
    return tl.atomic_add(counter_ptr, 1, sem="acq_rel", scope="gpu") == group_size - 1


@triton.jit
def reset_counter(counter_ptr):
    """Leave the counter at 0 for the next launch (in the last program of the group)."""
    tl.atomic_xchg(counter_ptr, 0, sem="relaxed", scope="gpu")
