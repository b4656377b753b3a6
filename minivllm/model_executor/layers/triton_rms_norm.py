"""RMSNorm, with the residual add before it, in one Triton kernel (vLLM: `rms_norm` and
`fused_add_rms_norm` in `csrc/layernorm_kernels.cu`).

Every decoder layer runs two norms. In PyTorch a norm is eight kernels (cast, square, mean,
add, rsqrt, multiply, cast, scale), and a step with prefills runs eagerly, so each one costs
host time to launch: on an H200 the PyTorch norm took 100-120 us of host time per call, this
kernel 40-55 us, and a step makes 57 norms. Inside CUDA graphs the same kernel runs, so prefill
and decode compute the norm the same way (`torch.compile` fused it there before).

One program per row: it loads the row (and adds the residual, rounding the sum to the model
dtype as PyTorch's `x + residual` does), takes the mean of squares in float32, and writes
`weight * (x * rstd)` with the same two roundings as the PyTorch code in layernorm.py, which
is what Hugging Face's `LlamaRMSNorm` computes.

In decode graphs x can also come as the split-K partial sums of o_proj or down_proj
(`triton_skinny_gemm.PartialSums`): the program adds them up in split order and rounds the sum
to the model dtype, which is what the matmul would have written, before it adds the residual.
The program loads its row either way; only the loads are more.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from minivllm.attention.ops.triton_utils import pdl_wait, tl_dtype, use_pdl
from minivllm.model_executor.layers.triton_skinny_gemm import PartialSums


@triton.jit
def _rms_norm_kernel(out_ptr, residual_out_ptr, x_ptr, residual_ptr, weight_ptr,
                     stride_out, stride_res_out, stride_x, stride_part, stride_res, hidden_size,
                     eps, NUM_PARTS: tl.constexpr, DTYPE: tl.constexpr,
                     HAS_RESIDUAL: tl.constexpr, BLOCK: tl.constexpr, USE_PDL: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < hidden_size
    weight = tl.load(weight_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    pdl_wait(USE_PDL)  # the weight is loaded; wait for the kernel that writes x
    x = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    for part in tl.static_range(1, NUM_PARTS):  # x as partial sums: add them in split order
        x += tl.load(x_ptr + part * stride_part + row * stride_x + cols, mask=mask, other=0.0)
    x = x.to(DTYPE)  # x in the model dtype (DTYPE), as the matmul would have written it
    if HAS_RESIDUAL:
        residual = tl.load(residual_ptr + row * stride_res + cols, mask=mask, other=0.0)
        x = (x.to(tl.float32) + residual.to(tl.float32)).to(DTYPE)
        tl.store(residual_out_ptr + row * stride_res_out + cols, x, mask=mask)
    x32 = x.to(tl.float32)
    rstd = tl.rsqrt(tl.sum(x32 * x32, axis=0) / hidden_size + eps)
    normed = (x32 * rstd).to(DTYPE).to(tl.float32)
    tl.store(out_ptr + row * stride_out + cols, (weight * normed).to(out_ptr.dtype.element_ty),
             mask=mask)


def _as_rows(t: torch.Tensor) -> torch.Tensor:
    """[..., hidden] as [rows, hidden] with unit column stride; rows may stay strided (a view of
    a fused projection's output needs no copy)."""
    rows = t.reshape(-1, t.shape[-1])
    return rows if rows.stride(-1) == 1 else rows.contiguous()


def rms_norm(x: torch.Tensor | PartialSums, weight: torch.Tensor, eps: float,
             residual: torch.Tensor | None = None
             ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """RMS-normalize x [..., hidden] over its last dimension and scale by weight [hidden].
    With `residual` (same shape as x), normalize x + residual and also return that sum:
    `(norm(x + residual), x + residual)`, the contract of layernorm.py's PyTorch functions.
    x may be a split-K matmul's `PartialSums` [splits, rows, hidden], which stand for their sum
    [rows, hidden] in `PartialSums.dtype`."""
    if isinstance(x, PartialSums):
        rows, shape, dtype = x.parts[0], x.parts.shape[1:], x.dtype
        num_parts, stride_part = x.parts.shape[0], x.parts.stride(0)
    else:
        rows, shape, dtype = _as_rows(x), x.shape, x.dtype
        num_parts, stride_part = 1, 0
    hidden_size = shape[-1]
    out = torch.empty(rows.shape, dtype=torch.promote_types(dtype, weight.dtype),
                      device=rows.device)
    res_in = res_out = rows  # stand-ins, never read without a residual
    if residual is not None:
        res_in = _as_rows(residual)
        res_out = torch.empty(rows.shape, dtype=dtype, device=rows.device)
    block = triton.next_power_of_2(hidden_size)
    pdl = use_pdl(rows.device)
    if rows.shape[0]:
        _rms_norm_kernel[(rows.shape[0],)](
            out, res_out, rows, res_in, weight, out.stride(0), res_out.stride(0),
            rows.stride(0), stride_part, res_in.stride(0), hidden_size, eps,
            NUM_PARTS=num_parts, DTYPE=tl_dtype(dtype), HAS_RESIDUAL=residual is not None,
            BLOCK=block, USE_PDL=pdl, num_warps=min(16, max(1, block // 256)), launch_pdl=pdl)
    out = out.view(shape)
    return out if residual is None else (out, res_out.view(shape))
