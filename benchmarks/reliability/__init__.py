"""Reliability checks of the server: fuzzed inputs, load with disconnects, engine faults.

`python -m benchmarks.reliability.run` runs all of them at full size against a real server on
loopback and writes `benchmarks/results/reliability.json`; `tests/reliability/` runs the same
code with smaller numbers in CI. See RELIABILITY.md.
"""
