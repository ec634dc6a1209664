"""Benchmarks: scripts that print tables. Run one with ``python -m benchmarks.<name>``, all with ``python -m benchmarks``."""
