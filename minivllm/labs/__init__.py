"""The course machinery: grading, the student release, reference outputs and planted bugs.

`python -m minivllm.labs --help` lists the commands. Students use `grade`; `release`, `record`
and `mutants` are instructor tools that the student release leaves out (see
`release.INSTRUCTOR_ONLY`). The engine needs none of this; `guard.lab_guard` is there for it
to turn an unwritten lab's NotImplementedError into advice.
"""
