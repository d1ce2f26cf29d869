"""Benchmarks: `python -m tools.bench w1|rtu [--json]` print figures and ratios.

Targets live here and in docs/benchmarks.md, never in timed tests."""
