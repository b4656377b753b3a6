"""The colours every notebook figure shares, so a sequence or a phase looks the same everywhere.

Prefill is orange, decode blue, a preemption red, a free KV block light grey; sequence i gets
the i-th `tab10` colour, dark where its KV slots hold tokens and lightened where they are
handed out but empty.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.colors import to_rgb

PREFILL_COLOR = "tab:orange"
DECODE_COLOR = "tab:blue"
PREEMPT_COLOR = "tab:red"
FREE_COLOR = (0.94, 0.94, 0.94)


def seq_color(index: int) -> tuple[float, float, float]:
    """The colour of the index-th sequence in every figure of this package."""
    return to_rgb(plt.get_cmap("tab10")(index % 10))


def lighten(color: tuple[float, float, float], amount: float = 0.7) -> tuple[float, ...]:
    """`color` moved `amount` of the way to white (empty slots, cached prefix tokens)."""
    return tuple(c + (1.0 - c) * amount for c in color)
