"""Compare a replayed trace with its stored reference and say where they first differ.

A graded check fails with one line that a student can act on, e.g.
`op 8 {'op': 'free', 'block': 0}: error: expected 'ValueError', got None`, rather than a diff
of two 60-entry lists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def first_mismatch(expected: Sequence[dict[str, Any]], observed: Sequence[dict[str, Any]],
                   keys: Sequence[str], describe: Callable[[int], str]) -> str | None:
    """None if observed[i][key] == expected[i][key] for every entry i and key; else a
    one-line description of the first difference. `describe(i)` names entry i."""
    for i, (want, got) in enumerate(zip(expected, observed, strict=False)):
        for key in keys:
            if want[key] != got[key]:
                return f"{describe(i)}: {key}: expected {want[key]!r}, got {got[key]!r}"
    if len(expected) != len(observed):
        return (f"expected {len(expected)} entries, got {len(observed)} (the first "
                f"{min(len(expected), len(observed))} agree)")
    return None
