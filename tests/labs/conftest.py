"""Shared set-up of the graded checks (`python -m minivllm.labs grade labN` runs them).

- Every test carries `@pytest.mark.points(n)`; a test without one is an authoring error and
  stops the run.
- Without CUDA, Triton kernels run under its interpreter: TRITON_INTERPRET must be set before
  any kernel module is imported, so it is set here, before the test modules are collected.
- The checks compare what the code computes with the reference outputs in `tests/fixtures/`;
  the `fixtures_dir` fixture points there (hashes are checked on load).
- Test modules import minivllm inside the tests, so that a syntax error in a student's file
  costs that file's tests their points instead of stopping the collection of the whole lab.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

FIXTURES_DIR = Path(__file__).resolve().parents[1] / "fixtures"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "points(n): the points a graded test is worth")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(item.path).resolve().parents and not item.get_closest_marker("points"):
            raise pytest.UsageError(f"{item.nodeid}: a graded check needs "
                                    "@pytest.mark.points(n)")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES_DIR


@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
