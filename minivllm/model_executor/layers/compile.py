"""Fuse small element-wise layers into one GPU kernel each with `torch.compile`.

A decode step of a small model is dominated not by its matmuls but by dozens of tiny
element-wise kernels per layer (RMSNorm alone is pow, mean, add, rsqrt, mul, cast, mul), each
reading and writing the activations. vLLM writes fused CUDA kernels for these (`rms_norm`,
`fused_add_rms_norm`, `rotary_embedding`, `silu_and_mul`); nano-vllm lets `torch.compile`
generate them from the plain PyTorch code, which is what we do: the code stays readable and
each function becomes one Triton kernel. Only on CUDA: on a CPU the eager code runs (compiling
there needs a C++ toolchain and minutes of CI time for no teaching value).
Set MINIVLLM_NO_COMPILE=1 to run eagerly everywhere (debugging).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable)


def fused_on_cuda(fn: F) -> F:
    """`fn` compiled (once, for any shapes) when its first argument is a CUDA tensor."""
    if os.environ.get("MINIVLLM_NO_COMPILE") == "1":
        return fn

    @functools.cache
    def compiled() -> Callable:
        # Made on the first CUDA call: importing torch's compiler costs seconds on every start.
        return torch.compile(fn, dynamic=True)

    @functools.wraps(fn)
    def dispatch(*args):
        return compiled()(*args) if args[0].is_cuda else fn(*args)

    return dispatch  # type: ignore[return-value]
