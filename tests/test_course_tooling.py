"""The course machinery (`python -m minivllm.labs ...`), end to end.

- The reference earns every point of every lab's graded checks.
- The student release has no answers and no instructor files, imports, fails every graded
  check with NotImplementedError, and still runs its provided baselines.
- The planted bugs of one lab are caught (a different lab each day of the year, to keep CI
  short; `python -m minivllm.labs mutants all` runs them all).
- The reference outputs match their manifest.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from minivllm.labs import guard
from minivllm.labs.e2e import TIE_TOLERANCE, GreedyRun, assert_same_greedy_tokens
from minivllm.labs.fixtures import check_manifest
from minivllm.labs.grade import LABS, run_checks
from minivllm.labs.mutants.runner import main as run_mutants
from minivllm.labs.mutants.runner import mutants_of
from minivllm.labs.release import (
    INSTRUCTOR_ONLY,
    ReleaseSummary,
    make_release,
    strip_notebook,
)
from minivllm.labs.solution_regions import MarkerError, strip_solutions

ROOT = Path(__file__).resolve().parents[1]
GRADED_LABS = [lab for lab in LABS if (ROOT / "tests" / "labs" / f"test_{lab}.py").is_file()]
MUTANT_LABS = [lab for lab in GRADED_LABS if mutants_of(lab)]


# -- stripping answers ------------------------------------------------------------------------
SOURCE = '''\
class Pool:
    def take(self) -> int:
        """Docstring stays."""
        # BEGIN SOLUTION lab1
        block = self.free.pop()
        return block
        # END SOLUTION

    def nested(self):
        def helper():
            # BEGIN SOLUTION lab3
            return 1
            # END SOLUTION
        return helper


def top():
    x = 1
    # BEGIN SOLUTION lab0
    return x
    # END SOLUTION
'''


def test_solution_regions_become_named_stubs():
    stripped, regions = strip_solutions(SOURCE)
    assert [(r.lab, r.function) for r in regions] == [
        ("lab1", "Pool.take"), ("lab3", "Pool.nested.helper"), ("lab0", "top")]
    assert '        """Docstring stays."""\n' \
           '        raise NotImplementedError("lab1: Pool.take")\n' in stripped
    assert '            raise NotImplementedError("lab3: Pool.nested.helper")\n' in stripped
    assert '    x = 1\n    raise NotImplementedError("lab0: top")\n' in stripped
    assert "SOLUTION" not in stripped and "self.free.pop" not in stripped
    compile(stripped, "<stripped>", "exec")


@pytest.mark.parametrize("source", [
    "def f():\n    # BEGIN SOLUTION lab1\n    return 1\n",  # never closed
    "def f():\n    return 1\n    # END SOLUTION\n",  # no BEGIN
    "def f():\n    # BEGIN SOLUTION lab1\n    # BEGIN SOLUTION lab1\n    return 1\n"
    "    # END SOLUTION\n",  # nested
    "# BEGIN SOLUTION lab1\nX = 1\n# END SOLUTION\n",  # outside a function
    "def f():\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION\n",  # no lab
])
def test_malformed_markers_are_errors(source):
    with pytest.raises(MarkerError):
        strip_solutions(source)


def test_notebook_solution_cells_are_emptied():
    notebook = {"cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# Lab 1"]},
        {"cell_type": "code", "metadata": {"tags": ["solution"]}, "execution_count": 3,
         "source": ["answer = 42\n"], "outputs": [{"output_type": "stream", "text": ["42"]}]},
        {"cell_type": "code", "metadata": {"tags": ["other"]}, "execution_count": 4,
         "source": ["print(answer)\n"], "outputs": []},
    ], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    text, emptied = strip_notebook(json.dumps(notebook))
    cells = json.loads(text)["cells"]
    assert emptied == 1
    assert cells[1]["source"] == [] and cells[1]["outputs"] == []
    assert cells[1]["execution_count"] is None
    assert cells[0] == notebook["cells"][0] and cells[2] == notebook["cells"][2]


def test_guard_names_the_lab_the_function_and_the_baseline():
    with pytest.raises(guard.LabNotImplementedError) as direct, guard.lab_guard():
        raise NotImplementedError("lab1: PagedKVCacheManager.allocate_slots")
    message = str(direct.value)
    assert "lab 1" in message and "allocate_slots" in message
    assert "kv_allocator='reserved'" in message
    # Triton's interpreter wraps a kernel's exception and keeps only its repr.
    with pytest.raises(guard.LabNotImplementedError) as wrapped, guard.lab_guard():
        raise RuntimeError("InterpreterError(\"NotImplementedError('lab2: _attend_tile')\")")
    assert wrapped.value.lab == "lab2" and "attention='torch'" in str(wrapped.value)
    with pytest.raises(NotImplementedError) as other, guard.lab_guard():
        raise NotImplementedError("something else")
    assert not isinstance(other.value, guard.LabNotImplementedError)


# -- reference outputs and the reference ------------------------------------------------------
def test_fixture_manifest_lists_every_file_with_its_hash():
    assert check_manifest(ROOT / "tests" / "fixtures") == []


@pytest.mark.parametrize("lab", GRADED_LABS)
def test_reference_earns_every_point(lab):
    result = run_checks(lab, ROOT)
    lost = [f"{t.name}: {t.message}" for t in result.tests if not t.passed]
    assert not lost, f"the reference loses points in {lab}: {lost}"
    assert result.max_score > 0


# -- the student release ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def release_and_summary(tmp_path_factory) -> tuple[Path, ReleaseSummary]:
    dest = tmp_path_factory.mktemp("release") / "minivllm-course"
    # Untracked files too, so this works on a working copy before commit; CI has none.
    return dest, make_release(ROOT, dest, untracked=True)


@pytest.fixture(scope="module")
def release(release_and_summary) -> Path:
    return release_and_summary[0]


@pytest.mark.parametrize("lab", GRADED_LABS)
def test_every_graded_lab_has_solution_regions(release_and_summary, lab):
    """Graded checks without solution regions would ship the answers to students."""
    assert release_and_summary[1].regions[lab] > 0, (
        f"{lab} has graded checks but no '# BEGIN SOLUTION {lab}' region in the code")


def _python(cwd: Path, code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(cwd), **env})


def test_release_has_no_answers_and_no_instructor_files(release):
    import fnmatch

    files = [p.relative_to(release).as_posix() for p in release.rglob("*") if p.is_file()]
    leaked = [f for f in files if any(fnmatch.fnmatch(f, p) for p in INSTRUCTOR_ONLY)]
    assert not leaked
    assert (release / "tests" / "fixtures" / "manifest.json").is_file()
    allocator = (release / "minivllm" / "core" / "block_allocator.py").read_text()
    assert 'raise NotImplementedError("lab1: BlockAllocator.allocate")' in allocator
    assert "popleft" not in allocator
    assert check_manifest(release / "tests" / "fixtures") == []


def test_release_imports_every_module(release):
    proc = _python(release, """
        import importlib, pkgutil, minivllm
        for m in pkgutil.walk_packages(minivllm.__path__, "minivllm."):
            if not m.name.endswith("__main__"):
                importlib.import_module(m.name)
        print("ok")
        """, TRITON_INTERPRET="1")
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]


@pytest.mark.parametrize("lab", GRADED_LABS)
def test_release_fails_every_graded_check_with_not_implemented(release, lab):
    result = run_checks(lab, release)
    assert Path(result.minivllm_dir).is_relative_to(release)
    assert result.score == 0, [t.name for t in result.tests if t.passed]
    unexplained = [f"{t.name}: {t.message}" for t in result.tests
                   if "NotImplementedError" not in t.output + t.message]
    assert not unexplained


def test_release_grade_command_scores_zero_and_exits_zero(release, tmp_path):
    results = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, "-m", "minivllm.labs", "grade", "lab1", "--json",
                           str(results)], cwd=release, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(release)}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(results.read_text())
    assert data["score"] == 0 and data["max_score"] > 0
    assert all(t["score"] == 0 and "NotImplementedError" in t["output"] for t in data["tests"])
    assert "FAIL" in proc.stdout


def test_release_instructor_commands_are_absent(release):
    proc = subprocess.run([sys.executable, "-m", "minivllm.labs", "record"], cwd=release,
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(release)}, timeout=120)
    assert proc.returncode != 0 and "instructor command" in proc.stderr


def test_release_baselines_generate(release):
    """The provided baselines (reserved blocks, PyTorch attention, static batching) run end to
    end in the release. Sizing the KV cache is lab 0's exercise, so the script fills it in."""
    proc = _python(release, """
        import torch
        from minivllm import LLM, SamplingParams
        from minivllm.worker.cache_engine import KVCacheSpec

        KVCacheSpec.bytes_per_token = property(lambda s: 2 * s.num_layers * s.num_kv_heads
                                               * s.head_dim * s.dtype.itemsize)
        llm = LLM("random:tiny-llama", device="cpu", kv_allocator="reserved",
                  attention="torch", scheduler="static", max_model_len=64, block_size=8,
                  num_gpu_blocks_override=32)
        out = llm.generate([[1, 2, 3], [4, 5, 6, 7, 8]],
                           SamplingParams(temperature=0, max_tokens=5, ignore_eos=True),
                           use_tqdm=False)
        assert [len(o.outputs[0].token_ids) for o in out] == [5, 5]
        try:
            LLM("random:tiny-llama", device="cpu", kv_allocator="paged", scheduler="static",
                max_model_len=64, block_size=8, num_gpu_blocks_override=32
                ).generate([[1, 2]], use_tqdm=False)
        except NotImplementedError as e:
            assert "lab1" in str(e) or "lab 1" in str(e), e
        else:
            raise AssertionError("kv_allocator='paged' ran without lab 1")
        print("ok")
        """)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]


# -- planted bugs -------------------------------------------------------------------------------
def test_planted_bugs_of_todays_lab_are_caught(capsys):
    day = datetime.date.today().timetuple().tm_yday
    lab = MUTANT_LABS[day % len(MUTANT_LABS)]
    status = run_mutants(lab, ROOT, jobs=2, baseline=False)  # the reference is checked above
    assert status == 0, f"a planted bug of {lab} survived:\n{capsys.readouterr().out}"


def _greedy(token_ids: list[list[int]], steps: list[list[dict[int, float]]],
            dtype: torch.dtype) -> GreedyRun:
    return GreedyRun(token_ids=token_ids, num_cached_tokens=[0] * len(token_ids),
                     num_preemptions=0, num_free_blocks_after=1, num_blocks=1, logprobs=steps,
                     dtype=dtype)


def test_greedy_tokens_may_part_at_a_tie_and_nowhere_else():
    """What the graded end-to-end checks accept: the reference's tokens, or the same tokens up
    to a position where the reference's token ties with the one taken (within the dtype's
    tolerance); after that the two runs follow different paths and are not compared."""
    first = {5: -1.0, 9: -1.0 - TIE_TOLERANCE[torch.bfloat16] / 2, 3: -2.0}
    run = _greedy([[1, 5, 7, 7]], [[{1: -0.1}, first, {7: -0.5}, {7: -0.5}]], torch.bfloat16)
    assert_same_greedy_tokens("same", [[1, 5, 7, 7]], run)
    assert_same_greedy_tokens("tie at token 1", [[1, 9, 2, 2]], run)
    with pytest.raises(AssertionError, match="at token 1 the expected 3 is 1 below"):
        assert_same_greedy_tokens("a clear second", [[1, 3, 7, 7]], run)
    with pytest.raises(AssertionError, match="expected 4 is inf below"):
        assert_same_greedy_tokens("not among the alternatives", [[1, 4, 7, 7]], run)
    with pytest.raises(AssertionError, match="at token 0"):
        assert_same_greedy_tokens("differs before the tie", [[2, 9, 2, 2]], run)
    with pytest.raises(AssertionError, match="more than a tie"):  # a bf16 tie is not an fp32 one
        assert_same_greedy_tokens("fp32", [[1, 9, 2, 2]], _greedy(
            run.token_ids, run.logprobs, torch.float32))
    with pytest.raises(AssertionError, match="expected tokens"):
        assert_same_greedy_tokens("shorter", [[1, 5, 7]], run)
