"""The reference outputs in `tests/fixtures/` and their manifest.

`python -m minivllm.labs record` writes the files from the reference solutions; the graded
checks read them. `manifest.json` says, for every file, how it was made (command, git revision,
torch/triton/transformers versions, device, dtypes) and its sha256. Loading a fixture checks
its hash, so a fixture edited by hand, or re-recorded without its manifest, fails loudly
instead of grading against the wrong answer. A missing fixture fails too; it never skips.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

MANIFEST = "manifest.json"


class FixtureError(RuntimeError):
    """A reference output is missing, unlisted, or does not match its recorded hash."""


def default_dir() -> Path:
    """`tests/fixtures` of the checkout this package lives in."""
    return Path(__file__).resolve().parents[2] / "tests" / "fixtures"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.is_file():
        raise FixtureError(f"{path} is missing: run `python -m minivllm.labs record`")
    return json.loads(path.read_text())


def verified_path(directory: Path, name: str) -> Path:
    """Path of fixture `name`, after checking that it exists and matches the manifest."""
    path = directory / name
    if not path.is_file():
        raise FixtureError(f"reference output {path} is missing: run "
                           "`python -m minivllm.labs record` (instructors) or restore it")
    entry = read_manifest(directory)["files"].get(name)
    if entry is None:
        raise FixtureError(f"{name} is not listed in {directory / MANIFEST}")
    if sha256(path) != entry["sha256"]:
        raise FixtureError(f"{path} does not match the sha256 in {MANIFEST}: the reference "
                           "output was changed; restore it or re-record every fixture")
    return path


def load_json(directory: Path, name: str) -> Any:
    return json.loads(verified_path(directory, name).read_text())


def load_tensors(directory: Path, name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A safetensors fixture: its tensors (on the CPU) and its JSON metadata
    (stored under the metadata key `json`)."""
    from safetensors import safe_open

    with safe_open(verified_path(directory, name), framework="pt") as f:
        tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (not a dict)
        metadata = json.loads((f.metadata() or {}).get("json", "{}"))
    return tensors, metadata


def check_manifest(directory: Path) -> list[str]:
    """Every problem with the fixture directory: files missing, unlisted or changed."""
    files = read_manifest(directory)["files"]
    on_disk = {p.name for p in directory.iterdir() if p.is_file() and p.name != MANIFEST}
    problems = [f"{name}: not in the manifest" for name in sorted(on_disk - files.keys())]
    for name, entry in sorted(files.items()):
        if name not in on_disk:
            problems.append(f"{name}: listed in the manifest but missing")
        elif sha256(directory / name) != entry["sha256"]:
            problems.append(f"{name}: sha256 differs from the manifest")
    return problems
