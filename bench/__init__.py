"""Benchmarks for qa: ``python -m bench.run`` (see bench/README.md). Never imported by the app."""
