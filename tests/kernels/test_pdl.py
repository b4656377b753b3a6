"""Programmatic dependent launch (`triton_utils.use_pdl`): a chain of PDL kernels in a CUDA
graph computes exactly what the same kernels compute launched one after the other.

With PDL a kernel starts while its predecessor still runs and must wait (`gdc_wait`) before it
reads the predecessor's output or overwrites what the predecessor reads. A missing or
misplaced wait is a race: it shows as replays whose bits differ from the serial launch, or
from each other. The chain is the MLP half of a decoder layer, eight times over, at batch 1:
RMSNorm (with the residual add) -> gate_up_proj -> silu_and_mul -> down_proj, the norm and
the matmuls PDL kernels (`triton_rms_norm.py`, `triton_skinny_gemm.py`), the activation a
compiled kernel launched without PDL in between.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

from minivllm.attention.ops import triton_utils
from minivllm.model_executor.layers.activation import silu_and_mul
from minivllm.model_executor.layers.triton_rms_norm import rms_norm
from minivllm.model_executor.layers.triton_skinny_gemm import linear

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="PDL and CUDA graphs need a CUDA device")

HIDDEN, INTERMEDIATE, LAYERS = 1024, 3072, 8


@pytest.fixture
def pdl_switch(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[bool], None]]:
    def switch(on: bool) -> None:
        monkeypatch.setenv("MINIVLLM_NO_PDL", "0" if on else "1")
        triton_utils.use_pdl.cache_clear()

    yield switch
    triton_utils.use_pdl.cache_clear()  # after monkeypatch has restored the environment


def mlp_chain(x: torch.Tensor, weights: list[tuple[torch.Tensor, ...]]) -> torch.Tensor:
    hidden, residual = x, torch.zeros_like(x)
    for norm_weight, gate_up, down in weights:
        normed, residual = rms_norm(hidden, norm_weight, 1e-6, residual)
        hidden = linear(silu_and_mul(linear(normed, gate_up)), down)
    return hidden + residual


def test_pdl_chain_in_graph_matches_serial_launch(
        pdl_switch: Callable[[bool], None], randn: Callable[..., torch.Tensor],
        graph_replays: Callable[..., list[torch.Tensor]]) -> None:
    bf16 = torch.bfloat16
    weights = [(1 + 0.1 * randn(HIDDEN, dtype=bf16),
                randn(2 * INTERMEDIATE, HIDDEN, dtype=bf16) / HIDDEN**0.5,
                randn(HIDDEN, INTERMEDIATE, dtype=bf16) / INTERMEDIATE**0.5)
               for _ in range(LAYERS)]
    x = randn(1, HIDDEN, dtype=bf16)

    def replays(pdl: bool) -> list[torch.Tensor]:
        pdl_switch(pdl)  # in the graph (fused_kernels) `linear` runs the skinny kernel
        return graph_replays(lambda: mlp_chain(x, weights), 20)

    assert triton_utils.use_pdl(x.device) == (torch.cuda.get_device_capability()[0] >= 9)
    serial = replays(pdl=False)
    overlapped = replays(pdl=True)
    assert all(torch.equal(r, serial[0]) for r in serial + overlapped)
    # And the chain is the MLP it claims to be (cuBLAS and PyTorch outside fused_kernels);
    # bf16 roundings differ along eight layers, so compare the whole vector.
    eager = mlp_chain(x, weights).float()
    assert (serial[0].float() - eager).norm() < 0.02 * eager.norm()
