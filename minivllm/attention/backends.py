"""Pick the attention implementation behind the lab-2 switch `attention="torch" | "triton"`.

Both modules export the same three functions (see `ops/torch_ref.py`), so the layer does not
care which one it calls. vLLM chooses among many backends the same way
(`vllm/attention/selector.py`).
"""

from __future__ import annotations

import importlib
from types import ModuleType

_BACKENDS = {
    "torch": "minivllm.attention.ops.torch_ref",
    "triton": "minivllm.attention.ops.triton_paged",
}


def get_attention_ops(name: str) -> ModuleType:
    if name not in _BACKENDS:
        raise ValueError(f"attention must be one of {sorted(_BACKENDS)}, got {name!r}")
    return importlib.import_module(_BACKENDS[name])
