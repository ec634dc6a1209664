# Entry points named in the README. Each target sets up what it needs first.
.PHONY: setup demo test bench

setup:
	@bash scripts/setup.sh

demo: setup
	@.venv/bin/edge-convert demo

test: setup
	@.venv/bin/python -m pytest

bench: setup
	@.venv/bin/python -m benchmarks
