"""Find and strip the reference solutions that the student release leaves out.

A solution region is the body (or part of the body) of a function a student writes:

    def allocate(self) -> int:
        \"\"\"Take a free block ... (the docstring stays: it teaches what to do)\"\"\"
        # BEGIN SOLUTION lab1
        ...reference code...
        # END SOLUTION

In the release the region becomes one line at the region's indentation,
`raise NotImplementedError("lab1: BlockAllocator.allocate")`, so calling an unwritten function
names the lab and the function. Mistakes in the markers (a region left open, nested regions, an
END without a BEGIN, a region outside any function) are errors: a silent one would ship a
solution to students.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

BEGIN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN SOLUTION (?P<lab>lab\d+)[ \t]*$")
END = re.compile(r"^[ \t]*# END SOLUTION[ \t]*$")
ANY_MARKER = re.compile(r"^[ \t]*# (BEGIN SOLUTION|END SOLUTION)\b", re.MULTILINE)


class MarkerError(ValueError):
    """The solution markers of a file are malformed."""


@dataclass(frozen=True)
class Region:
    lab: str
    function: str
    """Qualified name of the enclosing function, e.g. `BlockAllocator.allocate`."""
    begin: int
    """1-based line numbers of the BEGIN and END marker lines."""
    end: int
    indent: str


def _function_spans(source: str) -> list[tuple[int, int, str]]:
    """(first line, last line, qualified name) of every function in the source."""
    spans: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                spans.append((child.lineno, child.end_lineno or child.lineno, name))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return spans


def find_regions(source: str, filename: str = "<source>") -> list[Region]:
    """Every solution region of a Python source, in order; MarkerError if markers are wrong."""
    regions: list[Region] = []
    spans = _function_spans(source)
    open_begin: tuple[int, str, str] | None = None  # (line, lab, indent)
    for lineno, line in enumerate(source.splitlines(), start=1):
        begin = BEGIN.match(line)
        if begin:
            if open_begin is not None:
                raise MarkerError(f"{filename}:{lineno}: BEGIN SOLUTION inside the region "
                                  f"opened at line {open_begin[0]}")
            open_begin = (lineno, begin["lab"], begin["indent"])
        elif END.match(line):
            if open_begin is None:
                raise MarkerError(f"{filename}:{lineno}: END SOLUTION without a BEGIN")
            start, lab, indent = open_begin
            # A function's last line is its last statement, so a region that ends the
            # function ends after it: match on the BEGIN line, which precedes the region's code.
            enclosing = [s for s in spans if s[0] < start < s[1]]
            if not enclosing:
                raise MarkerError(f"{filename}:{start}: a solution region must lie inside a "
                                  "function")
            function = max(enclosing, key=lambda s: s[0])[2]  # the innermost one
            regions.append(Region(lab, function, start, lineno, indent))
            open_begin = None
        elif ANY_MARKER.match(line):
            raise MarkerError(f"{filename}:{lineno}: malformed marker {line.strip()!r}; write "
                              "'# BEGIN SOLUTION labN' or '# END SOLUTION' on a line of its own")
    if open_begin is not None:
        raise MarkerError(f"{filename}:{open_begin[0]}: BEGIN SOLUTION is never closed")
    return regions


def strip_solutions(source: str, filename: str = "<source>") -> tuple[str, list[Region]]:
    """The source with every region replaced by its `raise NotImplementedError(...)` line."""
    regions = find_regions(source, filename)
    lines = source.splitlines(keepends=True)
    for region in reversed(regions):  # from the end, so earlier line numbers stay valid
        stub = f'{region.indent}raise NotImplementedError("{region.lab}: {region.function}")\n'
        lines[region.begin - 1:region.end] = [stub]
    return "".join(lines), regions
