"""`python -m minivllm.labs release DIR`: write the student repository.

The release is this repository's git files with the answers taken out:

- every solution region of a `.py` file becomes `raise NotImplementedError("labN: <function>")`
  (see `solution_regions.py`);
- every notebook cell tagged `solution` is emptied, its outputs cleared;
- instructor-only files (`INSTRUCTOR_ONLY`) are left out;
- everything else, the reference outputs in `tests/fixtures/` included, is copied as it is.

The last step checks that no solution marker is left in any file, so a marker in a file type
this module does not know (a Markdown file, a shell script) stops the release instead of
shipping an answer.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from minivllm.labs.solution_regions import ANY_MARKER, strip_solutions

INSTRUCTOR_ONLY = (
    "instructor/*",  # anything an instructor keeps for themselves
    "minivllm/labs/mutants/*",  # planted bugs: their snippets quote the reference solutions
    "minivllm/labs/record/*",  # re-records tests/fixtures from the reference solutions
    "minivllm/labs/release.py",  # this file and its helper: students get the release, not
    "minivllm/labs/solution_regions.py",  # the tool that makes it
    "tests/test_course_tooling.py",  # checks the reference, the release and the mutants
    "tests/test_slides.py",  # the lecture decks and their figures run reference code
    "tests/test_notebooks.py",  # runs every notebook end to end: needs every lab done
    "scripts/make_figures.py",
)
"""Glob patterns (fnmatch, so `*` also crosses `/`) of files the release leaves out."""

SOLUTION_TAG = "solution"


@dataclass
class ReleaseSummary:
    files: int = 0
    left_out: list[str] = field(default_factory=list)
    regions: Counter[str] = field(default_factory=Counter)
    """Solution regions stripped, per lab."""
    solution_cells: int = 0


def repository_files(root: Path, untracked: bool = False) -> list[str]:
    """The files git tracks under root (plus untracked, not ignored ones if asked), sorted."""
    cmd = ["git", "-C", str(root), "ls-files", "-z", "--cached"]
    if untracked:
        cmd += ["--others", "--exclude-standard"]
    try:
        listing = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise RuntimeError(f"cannot list the files of {root} with git: {e}") from e
    names = {name for name in listing.split("\0") if name}
    return sorted(name for name in names if (root / name).is_file())  # skip deleted files


def is_instructor_only(path: str) -> bool:
    return any(fnmatch.fnmatch(path, pattern) for pattern in INSTRUCTOR_ONLY)


def strip_notebook(text: str) -> tuple[str, int]:
    """Empty the cells tagged `solution` (source, outputs, execution count); return the
    notebook's JSON and how many cells were emptied."""
    notebook = json.loads(text)
    emptied = 0
    for cell in notebook.get("cells", []):
        if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            cell["source"] = []
            if cell.get("cell_type") == "code":
                cell["outputs"] = []
                cell["execution_count"] = None
            emptied += 1
    # nbformat's own layout (indent 1, trailing newline), so diffs against the source stay small.
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", emptied


def make_release(root: Path, dest: Path, untracked: bool = False) -> ReleaseSummary:
    """Write the student release of the repository at root into dest (new or empty)."""
    root, dest = root.resolve(), dest.resolve()
    if dest == root or root in dest.parents:
        raise ValueError(f"the release must be written outside the repository, not to {dest}")
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} is not empty")
    summary = ReleaseSummary()
    for name in repository_files(root, untracked):
        if is_instructor_only(name):
            summary.left_out.append(name)
            continue
        src, out = root / name, dest / name
        out.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".py"):
            text, regions = strip_solutions(src.read_text(encoding="utf-8"), name)
            summary.regions.update(r.lab for r in regions)
            out.write_text(text, encoding="utf-8")
        elif name.endswith(".ipynb"):
            text, emptied = strip_notebook(src.read_text(encoding="utf-8"))
            summary.solution_cells += emptied
            out.write_text(text, encoding="utf-8")
        else:
            shutil.copyfile(src, out)
        shutil.copymode(src, out)
        summary.files += 1
    check_no_solutions_left(dest)
    return summary


def check_no_solutions_left(dest: Path) -> None:
    """Raise if any file of the release still holds a solution marker."""
    leaks = []
    for path in sorted(dest.rglob("*")):
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # binary (a fixture tensor file): no markers in there
            continue
        if ANY_MARKER.search(text) or (path.suffix == ".ipynb" and "BEGIN SOLUTION" in text):
            leaks.append(str(path.relative_to(dest)))
    if leaks:
        raise RuntimeError("solution markers left in the release: " + ", ".join(leaks))


def main(root: Path, dest: Path, untracked: bool) -> int:
    summary = make_release(root, dest, untracked)
    regions = ", ".join(f"{lab}: {n}" for lab, n in sorted(summary.regions.items()))
    print(f"Wrote the student release to {dest}: {summary.files} files")
    print(f"  solution regions stripped: {regions or 'none'}")
    print(f"  notebook solution cells emptied: {summary.solution_cells}")
    print(f"  instructor-only files left out: {len(summary.left_out)}")
    for name in summary.left_out:
        print(f"    {name}")
    return 0
