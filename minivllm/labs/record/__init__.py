"""`python -m minivllm.labs record [--only labN ...]`: re-record the reference outputs.

Each lab's recorder (`labN.py` here) runs seeded inputs through the reference solutions and
writes its files into `tests/fixtures/`; this module then updates `manifest.json` with each
written file's provenance (the command, the git revision, the torch/triton/transformers
versions, the device and dtypes) and sha256. Files a run does not write keep their entries, so
the CUDA kernel outputs can be recorded on a GPU machine and the rest on a laptop.

Instructor-only: it needs the reference solutions, which the student release does not have.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from minivllm.labs.fixtures import MANIFEST, sha256


@dataclass
class Recorded:
    """One written fixture file and how it was made."""

    name: str
    device: str
    dtypes: list[str] = field(default_factory=list)


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n")


def git_revision(root: Path) -> str:
    """HEAD's commit, with `+dirty` when the working tree has changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              check=True).stdout.strip()

    try:
        revision = git("rev-parse", "HEAD")
        return revision + ("+dirty" if git("status", "--porcelain") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def versions() -> dict[str, str]:
    import torch
    import transformers
    import triton

    return {"python": platform.python_version(), "torch": torch.__version__,
            "triton": triton.__version__, "transformers": transformers.__version__}


def update_manifest(out_dir: Path, recorded: list[Recorded], command: str) -> None:
    path = out_dir / MANIFEST
    manifest = json.loads(path.read_text()) if path.is_file() else {"files": {}}
    provenance = {"command": command, "git_revision": git_revision(out_dir),
                  **versions(), "recorded_at": datetime.now(timezone.utc).isoformat(
                      timespec="seconds")}
    for item in recorded:
        manifest["files"][item.name] = {"sha256": sha256(out_dir / item.name),
                                        "device": item.device, "dtypes": item.dtypes,
                                        **provenance}
    manifest["files"] = dict(sorted(manifest["files"].items()))
    write_json(path, manifest)


def main(out_dir: Path, labs: list[str]) -> int:
    import torch

    if not torch.cuda.is_available():  # before any kernel module is imported (see lab2.py)
        os.environ.setdefault("TRITON_INTERPRET", "1")
    out_dir.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["python", "-m", "minivllm.labs", *sys.argv[1:]])
    recorded: list[Recorded] = []
    for lab in labs:
        if importlib.util.find_spec(f"minivllm.labs.record.{lab}") is None:
            print(f"{lab}: no reference outputs to record")
            continue
        recorder = importlib.import_module(f"minivllm.labs.record.{lab}")
        for item in recorder.record(out_dir):
            (out_dir / item.name).chmod(0o644)  # safetensors writes 0600
            print(f"{lab}: wrote {item.name} ({(out_dir / item.name).stat().st_size:,} bytes)")
            recorded.append(item)
    update_manifest(out_dir, recorded, command)
    print(f"updated {out_dir / MANIFEST}")
    return 0
