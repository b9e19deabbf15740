"""Threads and build configuration (``fo.set_num_threads``, ``fo.get_num_threads``, ``fo.show_config``).

Also the fork guard. GNU libgomp keeps the pool of OpenMP threads of each thread that started a
parallel region in that thread's thread-local storage. ``fork()`` copies the calling thread only,
so in the child that thread's pool names threads that no longer exist, and its next parallel region
waits for them forever. A thread the child starts later gets a fresh pool and is unaffected
(measured: docs/threads.rst). ``_after_fork_in_child`` therefore sets the forking thread's OpenMP
thread count to 1 in every fork child: the kernels run a call on one thread without entering a
parallel region (they do so whenever they plan one thread), which gives bitwise the same result.
"""
import os
import platform
import sys
import threading
import warnings

import numpy as np

from fastoptim import _runtime
from fastoptim._dispatch import VARIANT
from fastoptim._version import __version__

try:
    from fastoptim._build_config import BUILD_CONFIG
except ImportError:  # built by something other than setup.py
    BUILD_CONFIG = {}


FORK_WARNING = (
    "fastoptim: this process was created by fork(), and GNU libgomp's OpenMP threads do not "
    "survive a fork (a multi-threaded step here would hang), so fastoptim runs its kernels on one "
    "thread in this process's main thread; results are bitwise the same, only slower. To use "
    "several threads in worker processes, start them with the 'spawn' or 'forkserver' method: "
    "multiprocessing.get_context('spawn').Pool(...), "
    "ProcessPoolExecutor(mp_context=multiprocessing.get_context('forkserver')), or "
    "multiprocessing.set_start_method('spawn') at the start of the program."
)

# In a fork child: the ident of the thread that called fork() (the child's only thread at first,
# its ``threading.main_thread()``). None in a process that was not forked since fastoptim loaded.
_fork_thread = None


def _in_forked_thread():
    """True when the calling thread is the one a fork child started with (see module docstring)."""
    return _fork_thread is not None and threading.get_ident() == _fork_thread


def _after_fork_in_child():
    """``os.register_at_fork(after_in_child=...)``: one thread in the forking thread, one warning."""
    global _fork_thread
    _fork_thread = threading.get_ident()
    if not _runtime.openmp_enabled() or _runtime.get_max_threads() <= 1:
        return  # nothing changes: no parallel region can start, nothing to say
    # omp_set_num_threads only writes the calling thread's ICV: no lock, no thread pool involved
    # (tests/test_robustness_fork.py checks that it returns in a child).
    _runtime.set_max_threads(1)
    try:
        warnings.warn(FORK_WARNING, RuntimeWarning, stacklevel=2)
    except Exception:  # warnings turned into errors: the guard above already holds
        pass


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


def get_num_threads():
    """Number of threads the kernels use for large inputs.

    This is OpenMP's ``omp_get_max_threads()`` for the calling thread, so it honours
    ``OMP_NUM_THREADS``, ``threadpoolctl.threadpool_limits`` and :func:`set_num_threads`, whichever
    was set last. A build without OpenMP always returns 1, and so does the main thread of a process
    created by ``fork()`` (see :func:`set_num_threads`).

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

    Warns
    -----
    RuntimeWarning
        If ``n > 1`` in the main thread of a process created by ``fork()`` (a ``multiprocessing``
        or ``concurrent.futures`` worker on Linux by default): OpenMP threads cannot be started
        there (the step would hang), so the count stays 1. Use the ``spawn`` or ``forkserver``
        start method for workers that should run on several threads; see :doc:`/threads`.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"set_num_threads expects an int, got {type(n).__name__}")
    n = int(n)
    if n < 1:
        raise ValueError(f"set_num_threads expects a number of threads >= 1, got {n}")
    if not _runtime.openmp_enabled() and n > 1:
        warnings.warn("fastoptim was built without OpenMP: every step runs on one thread "
                      "(rebuild with an OpenMP-capable compiler to use several)", RuntimeWarning,
                      stacklevel=2)
    if n > 1 and _in_forked_thread():
        warnings.warn(f"set_num_threads({n}) ignored: " + FORK_WARNING, RuntimeWarning, stacklevel=2)
        n = 1
    _runtime.set_max_threads(n)


def config_dict():
    """Everything :func:`show_config` prints, as a dict."""
    from fastoptim import _dispatch
    from fastoptim._dispatch import TORCH_SQRT, kernels

    return {
        "fastoptim": __version__,
        "python": f"{platform.python_version()} ({sys.executable})",
        "numpy": np.__version__,
        "platform": f"{sys.platform}-{platform.machine()}",
        "openmp": _runtime.openmp_enabled(),
        "num_threads": get_num_threads(),
        "num_procs": _runtime.num_procs(),
        "kernel_variant": VARIANT,
        "sqrt": "torch's (MKL's AVX-512 vsSqrt/vdSqrt)" if TORCH_SQRT
        else "IEEE (correctly rounded)",
        "prefetch": "on (software prefetch in the element loops)" if _dispatch.PREFETCH
        else "off (FASTOPTIM_PREFETCH=off)",
        "min_elements_per_thread": kernels.get_min_elements_per_thread(),
        "compiler": BUILD_CONFIG.get("compiler_version", BUILD_CONFIG.get("compiler", "unknown")),
        "cflags": BUILD_CONFIG.get("kernel_variants", {}).get(VARIANT, BUILD_CONFIG.get("cflags", "unknown")),
        "boundscheck": BUILD_CONFIG.get("boundscheck", "unknown"),
    }


def show_config(file=None):
    """Print the version, OpenMP, threads, compiler flags, NumPy version, square root and prefetch.

    The ``sqrt`` line says which square root the kernels take: torch's (MKL's) on an Intel CPU
    with AVX-512, else (or with ``FASTOPTIM_SQRT=ieee``) the IEEE one; see :doc:`/numerics`. The
    ``prefetch`` line says whether the element loops prefetch ahead (``FASTOPTIM_PREFETCH``; see
    :doc:`/performance`).

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
