"""Performance benchmarks of pixel-gym (run as modules, e.g. `python -m benchmarks.perf_env`)."""
