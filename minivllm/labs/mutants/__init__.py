"""Planted bugs, one module per lab (`labN.py`: a `MUTANTS` list), and the command that checks
each is caught (`runner.py`). Instructor-only: the snippets quote the reference solutions."""

from minivllm.labs.mutants.runner import main

__all__ = ["main"]
