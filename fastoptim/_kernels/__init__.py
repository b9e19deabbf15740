"""The optimizer kernels' build-time data (``spec``): importable without the compiled extensions."""
