"""Benchmarks of mt-core against plain smolagents: ``make bench`` or ``python -m bench [CASE...]``."""
