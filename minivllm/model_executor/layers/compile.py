"""Fuse small element-wise layers into one GPU kernel each with `torch.compile`.

A decode step of a small model is dominated not by its matmuls but by dozens of tiny
element-wise kernels per layer (SiLU-and-mul is a split, a SiLU and a product), each reading
and writing the activations. vLLM writes fused CUDA kernels for these (`rms_norm`,
`fused_add_rms_norm`, `rotary_embedding`, `silu_and_mul`); nano-vllm lets `torch.compile`
generate them from the plain PyTorch code, which is what we do for `silu_and_mul`: the code
stays readable and becomes one Triton kernel (in decode graphs of up to 64 rows not even that:
gate_up_proj's matmul applies it, `triton_skinny_gemm.py`). RoPE and RMSNorm have small Triton
kernels of their own (`triton_rope.py`, `triton_rms_norm.py`): compiled, RoPE still took four
kernels per layer, and the norms also run in eager prefill steps, where a compiled call is too
slow (below).

Only while CUDA graphs are captured (`fused_kernels()`; the split-K matmul of
`triton_skinny_gemm.py` runs there only, for the same reason). A compiled function costs a
fixed amount of host time per call (guards on the shapes, the runtime wrappers): more than the
kernels it saves when the call is launched from Python, as prefills are, but nothing inside a
graph, which replays only the kernels. Measured on an H100 with Qwen3-0.6B: a ~3,700-token
prefill step took ~70 ms compiled (~14 ms of it on the GPU) and ~35 ms eager. On a CPU the eager
code always runs (compiling there needs a C++ toolchain and minutes of CI time for no teaching
value). Set MINIVLLM_NO_COMPILE=1 to run eagerly everywhere (debugging).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable)

_use_fused = False


@contextmanager
def fused_kernels() -> Iterator[None]:
    """Within this block, `fused_on_cuda` functions run compiled (CUDA graph capture)."""
    global _use_fused
    previous, _use_fused = _use_fused, os.environ.get("MINIVLLM_NO_COMPILE") != "1"
    try:
        yield
    finally:
        _use_fused = previous


def runs_fused(x: torch.Tensor) -> bool:
    """True for a CUDA tensor within `fused_kernels()`, where the forward pass is recorded into
    CUDA graphs: there the fused kernels run (compiled functions, the split-K matmul, RoPE
    writing the KV cache)."""
    return _use_fused and x.is_cuda


def fused_on_cuda(fn: F) -> F:
    """`fn` compiled (once, for any shapes) when called on CUDA tensors within
    `fused_kernels()`; `fn` itself otherwise."""

    @functools.cache
    def compiled() -> Callable:
        # Made on the first use: importing torch's compiler costs seconds on every start.
        return torch.compile(fn, dynamic=True)

    @functools.wraps(fn)
    def dispatch(*args):
        return compiled()(*args) if runs_fused(args[0]) else fn(*args)

    return dispatch  # type: ignore[return-value]
