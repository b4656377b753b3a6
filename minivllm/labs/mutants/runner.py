"""`python -m minivllm.labs mutants labN|all`: every planted bug must fail a graded check.

For each mutant of the lab: copy the repository into a temporary directory, apply the mutant,
run the lab's graded checks there (stopping at the first failure: one is enough) and call the
mutant *caught* if a check failed. First, unless `--no-baseline`, the unmutated copy must earn
every point, or a "caught" mutant would prove nothing. The exit status is non-zero if a mutant
survived, no longer applies, or a lab has fewer than `MIN_MUTANTS` of them. `all` checks every
lab that has graded checks.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from minivllm.labs.grade import LABS, GradingError, LabResult, run_checks
from minivllm.labs.mutants.base import Mutant, MutantError
from minivllm.labs.release import repository_files

MIN_MUTANTS = 5


@dataclass
class Outcome:
    lab: str
    mutant: str
    caught: bool
    detail: str
    """The check that caught it and its first failure line, or why it counts as a failure."""


def mutants_of(lab: str) -> list[Mutant]:
    try:
        module = importlib.import_module(f"minivllm.labs.mutants.{lab}")
    except ModuleNotFoundError:
        return []
    return list(module.MUTANTS)


def copy_repository(root: Path, files: list[str], dest: Path) -> None:
    for name in files:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, dest / name)


def _checks_in(lab: str, copy: Path, stop_at_first_failure: bool, threads: int) -> LabResult:
    result = run_checks(lab, copy, ("-x",) if stop_at_first_failure else (),
                        env={"OMP_NUM_THREADS": str(threads)})
    imported = Path(result.minivllm_dir)
    if copy.resolve() not in imported.parents:
        raise GradingError(f"the checks imported minivllm from {imported}, not from the copy "
                           f"{copy}: is another minivllm installed over PYTHONPATH?")
    return result


def check_mutant(lab: str, mutant: Mutant, root: Path, files: list[str], workdir: Path,
                 threads: int) -> Outcome:
    copy = workdir / mutant.name
    copy_repository(root, files, copy)
    try:
        mutant.apply(copy)
        result = _checks_in(lab, copy, stop_at_first_failure=True, threads=threads)
    except (MutantError, GradingError) as e:
        return Outcome(lab, mutant.name, False, f"ERROR: {e}")
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    failed = [t for t in result.tests if not t.passed and t.message != "not run"]
    if not failed:
        return Outcome(lab, mutant.name, False, f"SURVIVED: {mutant.description}")
    return Outcome(lab, mutant.name, True, f"{failed[0].name}: {failed[0].message}")


def check_lab(lab: str, root: Path, jobs: int, baseline: bool) -> list[Outcome]:
    mutants = mutants_of(lab)
    if len(mutants) < MIN_MUTANTS:
        return [Outcome(lab, "-", False, f"only {len(mutants)} mutants; every lab needs at "
                                         f"least {MIN_MUTANTS}")]
    files = repository_files(root, untracked=True)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with tempfile.TemporaryDirectory(prefix=f"minivllm-mutants-{lab}-") as tmp:
        workdir = Path(tmp)
        if baseline:
            copy = workdir / "baseline"
            copy_repository(root, files, copy)
            result = _checks_in(lab, copy, stop_at_first_failure=False, threads=threads)
            if result.score != result.max_score:
                lost = next(t for t in result.tests if not t.passed)
                raise GradingError(f"the unmutated reference loses points in {lab}: "
                                   f"{lost.name}: {lost.message}")
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            return list(pool.map(
                lambda m: check_mutant(lab, m, root, files, workdir, threads), mutants))


def main(lab: str, root: Path, jobs: int, baseline: bool = True) -> int:
    outcomes: list[Outcome] = []
    # `all`: every lab that has graded checks (a lab without them has nothing to catch bugs).
    labs = [one for one in LABS if (root / "tests" / "labs" / f"test_{one}.py").is_file()] \
        if lab == "all" else [lab]
    for one in labs:
        try:
            lab_outcomes = check_lab(one, root, jobs, baseline)
        except GradingError as e:
            print(f"{one}: grading broke: {e}", file=sys.stderr)
            return 2
        for o in lab_outcomes:
            print(f"{o.lab}  {o.mutant:<32} {'caught' if o.caught else 'NOT CAUGHT':<10} "
                  f"{o.detail}", flush=True)
        outcomes += lab_outcomes
    missed = [o for o in outcomes if not o.caught]
    print(f"\n{len(outcomes) - len(missed)} of {len(outcomes)} mutants caught")
    return 1 if missed else 0
