"""Make sure a lab-2 answer is a Triton kernel, not PyTorch in disguise.

The graded kernel checks call the student's `reshape_and_cache`, `paged_decode_attention` and
`paged_prefill_attention` inside `triton_only()`, which

- counts Triton kernel launches (compiled `JITFunction.run` and the CPU interpreter's
  `InterpretedFunction.run`), so a check can require at least one, and
- refuses, through a `TorchFunctionMode`, the PyTorch calls that would compute attention
  outside Triton: SDPA, softmax, matrix products, `exp`, or a hop to NumPy.

Shape and stride queries, `torch.empty` and friends stay allowed: a wrapper needs them to
allocate its output and pass strides, and Triton's interpreter uses them too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

FORBIDDEN: dict[Callable[..., Any], str] = {
    F.scaled_dot_product_attention: "torch.nn.functional.scaled_dot_product_attention",
    F.softmax: "torch.nn.functional.softmax",
    F.linear: "torch.nn.functional.linear",
    torch.softmax: "torch.softmax",
    torch.Tensor.softmax: "Tensor.softmax",
    torch.matmul: "torch.matmul",
    torch.Tensor.matmul: "Tensor.matmul",
    torch.Tensor.__matmul__: "the @ operator",
    torch.bmm: "torch.bmm",
    torch.Tensor.bmm: "Tensor.bmm",
    torch.mm: "torch.mm",
    torch.Tensor.mm: "Tensor.mm",
    torch.baddbmm: "torch.baddbmm",
    torch.einsum: "torch.einsum",
    torch.exp: "torch.exp",
    torch.Tensor.exp: "Tensor.exp",
    torch.Tensor.numpy: "Tensor.numpy",
}


class NotATritonKernelError(AssertionError):
    """The code under test computed attention in PyTorch, or launched no Triton kernel."""


class _RefuseTorchAttention(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = FORBIDDEN.get(func)
        if name is not None:
            raise NotATritonKernelError(
                f"lab 2 computes attention in Triton kernels, but {name} was called")
        return func(*args, **(kwargs or {}))


@dataclass
class Launches:
    count: int = 0


def _launcher_classes() -> list[type]:
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    return [JITFunction, InterpretedFunction]


@contextmanager
def triton_only() -> Iterator[Launches]:
    """Count Triton launches and refuse PyTorch attention math inside the block."""
    launches = Launches()
    originals = {cls: cls.run for cls in _launcher_classes()}

    def counting(original: Callable[..., Any]) -> Callable[..., Any]:
        def run(self, *args: Any, **kwargs: Any) -> Any:
            launches.count += 1
            return original(self, *args, **kwargs)
        return run

    for cls, original in originals.items():
        cls.run = counting(original)
    try:
        with _RefuseTorchAttention():
            yield launches
    finally:
        for cls, original in originals.items():
            cls.run = original
