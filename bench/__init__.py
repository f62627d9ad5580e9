"""Benchmarks: synthetic data at scale, every figure a ratio against a baseline measured in the
same run (plus the absolute number). Run with `python -m bench` (see bench/README.md); never
imported by the test suite."""
