"""A planted bug: one exact snippet of the reference replaced by a wrong one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class MutantError(RuntimeError):
    """A mutant no longer applies: the reference changed under it. Update the mutant."""


@dataclass(frozen=True)
class Mutant:
    name: str
    description: str
    """The bug, as a student would write it."""
    file: str
    """Relative to the repository root."""
    original: str
    """Must occur exactly once in the file."""
    replacement: str

    def apply(self, root: Path) -> None:
        path = root / self.file
        text = path.read_text(encoding="utf-8")
        count = text.count(self.original)
        if count != 1:
            where = "is not in" if count == 0 else f"occurs {count} times in"
            raise MutantError(f"mutant {self.name!r}: its snippet {where} {self.file}:\n"
                              f"{self.original}")
        path.write_text(text.replace(self.original, self.replacement), encoding="utf-8")
