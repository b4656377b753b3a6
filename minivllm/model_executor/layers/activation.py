"""SiLU-and-mul, the activation of the SwiGLU MLP (vLLM: `layers/activation.py SiluAndMul`).

Llama's MLP is `down(silu(gate(x)) * up(x))`. vLLM computes `gate(x)` and `up(x)` with one
fused matmul (`gate_up_proj`, output `[..., 2 * d]`), so the activation receives both halves
side by side and splits them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from minivllm.model_executor.layers.compile import fused_on_cuda


@fused_on_cuda
def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    gate, up = x.chunk(2, dim=-1)
    return F.silu(gate) * up


class SiluAndMul(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., 2 * d] holding [gate | up] -> silu(gate) * up, [..., d]."""
        return silu_and_mul(x)
