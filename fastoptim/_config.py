"""Threads and build configuration (``fo.set_num_threads``, ``fo.get_num_threads``, ``fo.show_config``)."""
import platform
import sys

import numpy as np

from fastoptim import _runtime
from fastoptim._dispatch import VARIANT
from fastoptim._version import __version__

try:
    from fastoptim._build_config import BUILD_CONFIG
except ImportError:  # built by something other than setup.py
    BUILD_CONFIG = {}


def get_num_threads():
    """Number of threads the kernels use for large inputs.

    This is OpenMP's ``omp_get_max_threads()`` for the calling thread, so it honours
    ``OMP_NUM_THREADS``, ``threadpoolctl.threadpool_limits`` and :func:`set_num_threads`, whichever
    was set last. A build without OpenMP always returns 1.

    Returns
    -------
    int
    """
    return _runtime.get_max_threads()


def set_num_threads(n):
    """Set the number of threads the kernels use.

    Inputs smaller than a measured threshold still run on one thread (starting a thread would
    cost more than it brings). Results are bitwise identical for every thread count.

    Parameters
    ----------
    n : int
        Number of threads, >= 1. Like ``omp_set_num_threads`` it applies to the calling thread
        (the one that calls ``step()``); ``threadpoolctl`` limits override it while active.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"set_num_threads expects an int, got {type(n).__name__}")
    n = int(n)
    if n < 1:
        raise ValueError(f"set_num_threads expects a number of threads >= 1, got {n}")
    if not _runtime.openmp_enabled() and n > 1:
        import warnings

        warnings.warn("fastoptim was built without OpenMP: every step runs on one thread "
                      "(rebuild with an OpenMP-capable compiler to use several)", RuntimeWarning,
                      stacklevel=2)
    _runtime.set_max_threads(n)


def config_dict():
    """Everything :func:`show_config` prints, as a dict."""
    from fastoptim._dispatch import kernels

    return {
        "fastoptim": __version__,
        "python": f"{platform.python_version()} ({sys.executable})",
        "numpy": np.__version__,
        "platform": f"{sys.platform}-{platform.machine()}",
        "openmp": _runtime.openmp_enabled(),
        "num_threads": get_num_threads(),
        "num_procs": _runtime.num_procs(),
        "kernel_variant": VARIANT,
        "min_elements_per_thread": kernels.get_min_elements_per_thread(),
        "compiler": BUILD_CONFIG.get("compiler_version", BUILD_CONFIG.get("compiler", "unknown")),
        "cflags": BUILD_CONFIG.get("kernel_variants", {}).get(VARIANT, BUILD_CONFIG.get("cflags", "unknown")),
        "boundscheck": BUILD_CONFIG.get("boundscheck", "unknown"),
    }


def show_config(file=None):
    """Print the version, OpenMP, threads, compiler flags and NumPy version.

    Parameters
    ----------
    file : file-like, optional
        Where to print (default ``sys.stdout``).
    """
    info = config_dict()
    width = max(len(k) for k in info)
    lines = [f"{key.ljust(width)} : {value}" for key, value in info.items()]
    if not info["openmp"]:
        lines.append("WARNING: built without OpenMP; every step runs on one thread")
    print("\n".join(lines), file=file if file is not None else sys.stdout)
