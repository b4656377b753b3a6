"""`python -m minivllm.labs {grade,release,record,mutants}`: the course's commands.

    grade labN [--json results.json]   score a lab (students and instructors)
    release DIR                        write the student repository (instructors)
    record [--only labN ...]           re-record tests/fixtures from the reference (instructors)
    mutants labN|all                   check that every planted bug is caught (instructors)

The instructor commands are not part of the student release; there they say so and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from minivllm.labs.grade import LABS


def _instructor_module(name: str):
    try:
        return importlib.import_module(f"minivllm.labs.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"minivllm.labs.{name}":
            raise
        sys.exit(f"`{name}` is an instructor command; the student release does not include it")


def _default_root() -> Path:
    """The checkout this package lives in (an editable install, as the course uses), else the
    current directory."""
    checkout = Path(__file__).resolve().parents[2]
    return checkout if (checkout / "tests" / "labs").is_dir() else Path.cwd()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minivllm.labs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=_default_root(),
                        help="the repository (default: the one this package lives in)")
    commands = parser.add_subparsers(dest="command", required=True)

    grade = commands.add_parser("grade", help="run a lab's graded checks and print the score")
    grade.add_argument("lab", choices=LABS)
    grade.add_argument("--json", type=Path, help="write a Gradescope results.json here")

    release = commands.add_parser("release", help="write the student release into DIR")
    release.add_argument("dest", type=Path, metavar="DIR")
    release.add_argument("--untracked", action="store_true",
                         help="also ship files git does not track yet (but does not ignore)")

    record = commands.add_parser("record", help="re-record tests/fixtures from the reference")
    record.add_argument("--only", nargs="+", choices=LABS, help="record these labs only")
    record.add_argument("--out", type=Path, help="fixture directory (default: tests/fixtures)")

    mutants = commands.add_parser("mutants", help="check that each planted bug is caught")
    mutants.add_argument("lab", choices=[*LABS, "all"])
    mutants.add_argument("--jobs", type=int, default=2, help="mutants checked in parallel")
    mutants.add_argument("--no-baseline", action="store_true",
                         help="skip checking that the unmutated copy passes first")

    args = parser.parse_args(argv)
    root = args.root.resolve()
    if args.command == "grade":
        from minivllm.labs import grade as grade_module

        return grade_module.main(args.lab, root, args.json)
    if args.command == "release":
        return _instructor_module("release").main(root, args.dest, args.untracked)
    if args.command == "record":
        return _instructor_module("record").main(args.out or root / "tests" / "fixtures",
                                                 args.only or list(LABS))
    return _instructor_module("mutants").main(args.lab, root, args.jobs,
                                              baseline=not args.no_baseline)


if __name__ == "__main__":
    sys.exit(main())
