"""Benchmarks of pixel-gym, each run as a module (e.g. `python -m benchmarks.perf_env`)."""
