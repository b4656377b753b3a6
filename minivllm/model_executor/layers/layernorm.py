"""RMSNorm (vLLM: `layers/layernorm.py RMSNorm`).

    y = x / sqrt(mean(x²) + eps) * weight

Statistics are taken in float32 whatever the model dtype (a bf16 sum of squares over thousands
of channels loses too much), then the result is cast back and scaled, exactly as Hugging Face's
`LlamaRMSNorm` does, so our outputs match theirs.

Like vLLM, the norm can also do the residual add that precedes it: `norm(x, residual)` returns
`(norm(x + residual), x + residual)`. On a GPU vLLM fuses the two into one kernel
(`fused_add_rms_norm`); so do we, in Triton (triton_rms_norm.py). The PyTorch functions below
are the CPU path and the kernel's oracle. In decode graphs x may come as the partial sums of a
split-K matmul (`PartialSums`), which the kernel adds up as it loads x.
"""

from __future__ import annotations

import torch
from torch import nn

from minivllm.model_executor.layers import triton_rms_norm
from minivllm.model_executor.layers.triton_skinny_gemm import PartialSums


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + eps)
    return weight * x32.to(x.dtype)


def fused_add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                       eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    x = x + residual
    return rms_norm(x, weight, eps), x


class RMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor | PartialSums, residual: torch.Tensor | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Normalize over the last dimension; with `residual`, add it first and also return the
        sum (the next residual)."""
        if isinstance(x, PartialSums) or x.is_cuda:
            return triton_rms_norm.rms_norm(x, self.weight, self.variance_epsilon, residual)
        if residual is None:
            return rms_norm(x, self.weight, self.variance_epsilon)
        return fused_add_rms_norm(x, residual, self.weight, self.variance_epsilon)
