"""The lab notebooks: committed clean, and each runs top to bottom in a real Jupyter kernel.

Every `notebooks/labN_*.ipynb` is executed with nbclient in the `python3` kernel (ipykernel,
from the `labs` extra), in the notebooks folder, with this checkout first on PYTHONPATH. A cell
that raises fails the test, and every notebook must draw at least one figure. On a CPU the
notebooks pick tiny workloads by themselves (`MINIVLLM_NOTEBOOK_SMALL` defaults to 1 without a
GPU, see `minivllm/viz/workload.py`); all six take a few minutes on a 2-core machine.

On a GPU the same tests run the notebooks with their GPU settings (`random:qwen3-0.6b`, bigger
workloads, compiled Triton kernels, the bandwidth roofline):

    MINIVLLM_NOTEBOOK_SMALL=0 python -m pytest tests/test_notebooks.py -k "lab2 or lab3 or lab4"
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("lab*.ipynb"))
LABS = [f"lab{n}" for n in range(6)]
CELL_TIMEOUT_S = 600


def _lab(path: Path) -> str:
    return path.stem.split("_")[0]


def test_one_notebook_per_lab() -> None:
    assert sorted(_lab(p) for p in NOTEBOOKS) == LABS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_is_clean(path: Path) -> None:
    """Valid nbformat, no outputs or execution counts (outputs are made by the run, not stored),
    the `python3` kernel, a first cell that says what the lab builds and how it is graded, and
    at least one answer cell, a code cell tagged `solution` (the student release empties
    those, so this check holds there too)."""
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    for i, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert not cell.outputs, f"cell {i} has stored outputs: clear them before committing"
            assert cell.execution_count is None, f"cell {i} has an execution count"
    first = notebook.cells[0]
    assert first.cell_type == "markdown"
    assert f"python -m minivllm.labs grade {_lab(path)}" in first.source
    assert "MINIVLLM_NOTEBOOK_SMALL" in first.source
    solutions = [c for c in notebook.cells if "solution" in c.metadata.get("tags", [])]
    assert solutions, "no answer cell tagged `solution`"
    assert all(c.cell_type == "code" for c in solutions)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel (and the server lab 4 starts from it) inherit this environment.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on an error
    figures = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
               if "image/png" in o.get("data", {})]
    assert figures, f"{path.name} drew no figure"
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "stream" and o.name == "stderr"
              and re.search(r"Traceback \(most recent call last\)", o.text)]
    assert not errors, f"a traceback was printed: {errors[0].text[-2000:]}"
