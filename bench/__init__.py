"""Benchmarks, run by hand as ``python -m bench.NAME``: each prints our time, a baseline's measured in the same
run, and their ratio (the machines are shared and noisy; only ratios within one run mean much)."""
