"""Turn "this lab is not written yet" into an error that says which switch to flip.

In the student release every unwritten function raises
`NotImplementedError("labN: <function>")`. When a lab's switch selects its layer (say
`kv_allocator="paged"`) before the lab is done, the raw error surfaces deep inside a step.
`lab_guard()` catches it, whichever way it arrives (directly, or wrapped by Triton's
interpreter as `InterpreterError("NotImplementedError('lab2: ...')")`), and raises
`LabNotImplementedError` naming the lab, the function, the switch that needs it and the
provided baseline to use meanwhile:

    with lab_guard():
        engine.step()
    # LabNotImplementedError: lab 1 is not done yet: PagedKVCacheManager.allocate_slots raises
    # NotImplementedError. kv_allocator='paged' needs it; pass kv_allocator='reserved' (the
    # provided baseline) until lab 1 is done.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

_STUB = re.compile(r"NotImplementedError\(\s*['\"](lab\d+): ([\w.<>]+)['\"]")
_MESSAGE = re.compile(r"^(lab\d+): ([\w.<>]+)$")


@dataclass(frozen=True)
class LabSwitch:
    needs_it: str
    """What selects the lab's code."""
    meanwhile: str
    """What to do until the lab is done."""


LAB_SWITCHES = {
    "lab0": LabSwitch("sizing the KV cache from the memory budget",
                      "pass num_gpu_blocks_override=<blocks> to give the cache a fixed size"),
    "lab1": LabSwitch("kv_allocator='paged'",
                      "pass kv_allocator='reserved' (the provided baseline)"),
    "lab2": LabSwitch("attention='triton'", "pass attention='torch' (the provided baseline)"),
    "lab3": LabSwitch("scheduler='continuous'",
                      "pass scheduler='static' (the provided baseline)"),
    "lab4": LabSwitch("the OpenAI server (python -m minivllm.server)",
                      "use LLM.generate / LLM.chat offline"),
    "lab5": LabSwitch("enable_prefix_caching=True or enable_chunked_prefill=True",
                      "leave the extension switched off"),
}


class LabNotImplementedError(NotImplementedError):
    """A lab switch selected code the student has not written yet."""

    def __init__(self, lab: str, function: str) -> None:
        self.lab = lab
        self.function = function
        number = lab.removeprefix("lab")
        switch = LAB_SWITCHES.get(lab)
        advice = (f" {switch.needs_it} needs it; {switch.meanwhile} until lab {number} is done."
                  if switch else "")
        super().__init__(f"lab {number} is not done yet: {function} raises "
                         f"NotImplementedError.{advice}")


def unwritten_function(exc: BaseException) -> tuple[str, str] | None:
    """(lab, function) if exc is, or wraps, a release stub's NotImplementedError."""
    if isinstance(exc, NotImplementedError):
        match = _MESSAGE.match(str(exc))
        if match:
            return match[1], match[2]
    match = _STUB.search(str(exc))  # wrapped: Triton's interpreter keeps only the repr
    return (match[1], match[2]) if match else None


@contextmanager
def lab_guard() -> Iterator[None]:
    """Re-raise a release stub's NotImplementedError as a LabNotImplementedError."""
    try:
        yield
    except LabNotImplementedError:
        raise
    except Exception as e:
        found = unwritten_function(e)
        if found is None:
            raise
        raise LabNotImplementedError(*found) from e
