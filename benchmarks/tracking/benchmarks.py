"""asv benchmarks: fastoptim's step times tracked across commits (see benchmarks/README.md).

The workloads, optimizer configurations, peers and bandwidth kernel are those of
``python -m fastoptim bench`` (``fastoptim/tools/bench.py``), imported from the installed package, so the
two suites always measure the same thing. asv runs one benchmark at a time; the side-by-side
comparison with NumPy, torch and optax in one process is the job of ``python -m fastoptim bench``.
The 100M workload is left out here (it needs several GB per benchmark process).
"""
import numpy as np

import fastoptim
from fastoptim.tools import bench
from fastoptim.tools.peers import Case, make_peer, unavailable_reason

WORKLOADS = [w for w in bench.WORKLOADS if w != "100M"]
OPTIMIZERS = list(bench.OPTIMIZERS)
DTYPES = list(bench.DTYPES)
THREADS = bench.default_threads()


class _Threads:
    """Sets fastoptim's thread count in setup and restores it in teardown."""

    def _set_threads(self, threads):
        self._saved_threads = fastoptim.get_num_threads()
        fastoptim.set_num_threads(threads)

    def teardown(self, *params):
        fastoptim.set_num_threads(self._saved_threads)


def _case(workload, optimizer, dtype):
    return Case(bench.WORKLOADS[workload].get_shapes(), np.dtype(dtype), bench.OPTIMIZERS[optimizer])


class TimeFunctional(_Threads):
    """One ``fastoptim.functional`` step over the whole workload."""

    params = (WORKLOADS, OPTIMIZERS, DTYPES, THREADS)
    param_names = ["workload", "optimizer", "dtype", "threads"]
    timeout = 300

    def setup(self, workload, optimizer, dtype, threads):
        self.peer = make_peer("fastoptim", _case(workload, optimizer, dtype))
        self.peer.step()            # the first step allocates the state created lazily
        self._set_threads(threads)

    def time_step(self, workload, optimizer, dtype, threads):
        self.peer.step()


class TimeClassStep(_Threads):
    """One ``opt.step()`` of fastoptim's optimizer classes (the functional step plus Python)."""

    params = (WORKLOADS, OPTIMIZERS, ["float32"], THREADS)
    param_names = ["workload", "optimizer", "dtype", "threads"]
    timeout = 300

    def setup(self, workload, optimizer, dtype, threads):
        if unavailable_reason("fastoptim-class") is not None:
            raise NotImplementedError(unavailable_reason("fastoptim-class"))   # asv: skipped
        self.peer = make_peer("fastoptim-class", _case(workload, optimizer, dtype))
        self.peer.step()
        self._set_threads(threads)

    def time_step(self, workload, optimizer, dtype, threads):
        self.peer.step()


class TimeBound:
    """The bandwidth kernel moving the optimizer's bytes: a change here is the machine, not us."""

    params = (WORKLOADS, OPTIMIZERS, DTYPES, THREADS)
    param_names = ["workload", "optimizer", "dtype", "threads"]
    timeout = 300

    def setup(self, workload, optimizer, dtype, threads):
        self.bound = bench.StreamBound(_case(workload, optimizer, dtype))
        self.bound.threads = threads
        self.bound.step()

    def time_step(self, workload, optimizer, dtype, threads):
        self.bound.step()


class TrackPercentOfBound:
    """fastoptim's functional step as a percentage of the bound, measured interleaved in one run."""

    params = (WORKLOADS, list(bench.OVERHEAD_OPTIMIZERS), ["float32"], THREADS)
    param_names = ["workload", "optimizer", "dtype", "threads"]
    unit = "%"
    timeout = 600

    def track_pct_of_bound(self, workload, optimizer, dtype, threads):
        results, _ = bench.run_cell(bench.WORKLOADS[workload], bench.OPTIMIZERS[optimizer],
                                    np.dtype(dtype), [threads], [], repeats=5, min_time=0.05)
        bench._derive(results)
        return next(r["pct_of_bound"] for r in results if r["peer"] == "fastoptim")


class TimeStepOverhead(_Threads):
    """A step on 1 and on 1000 one-element float32 params: the Python and call overhead."""

    params = (["fastoptim", "fastoptim-class"], list(bench.OVERHEAD_OPTIMIZERS), [1, 1000])
    param_names = ["path", "optimizer", "n_arrays"]

    def setup(self, path, optimizer, n_arrays):
        if unavailable_reason(path) is not None:
            raise NotImplementedError(unavailable_reason(path))
        case = Case([(1,)] * n_arrays, np.float32, bench.OPTIMIZERS[optimizer])
        self.peer = make_peer(path, case)
        self.peer.step()
        self._set_threads(1)

    def time_step(self, path, optimizer, n_arrays):
        self.peer.step()
