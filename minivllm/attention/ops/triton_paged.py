"""PagedAttention in Triton: the lab-2 backend behind `attention="triton"`.

The same three operations, with the same signatures and results, as the PyTorch oracle
`torch_ref.py`; each lives in its own file beside this one:

- `reshape_and_cache` (`triton_reshape_and_cache.py`): write new K/V into the paged cache.
- `paged_decode_attention` (`triton_paged_decode.py`): one query per sequence over its paged
  context; GQA-grouped, split-K for small batches.
- `paged_prefill_attention` (`triton_paged_prefill.py`): causal FlashAttention of new chunks
  over the paged context.
"""

from minivllm.attention.ops.triton_paged_decode import paged_decode_attention
from minivllm.attention.ops.triton_paged_prefill import paged_prefill_attention
from minivllm.attention.ops.triton_reshape_and_cache import reshape_and_cache

__all__ = ["paged_decode_attention", "paged_prefill_attention", "reshape_and_cache"]
