"""Measure the work size below which a second thread does not pay (``min_elements_per_thread``).

For total sizes from 1k to 1M float32 elements (as one array and as arrays of 1k), time one step of
each benchmark configuration named on the command line (keys of
``fastoptim.tools.bench.OPTIMIZERS``; default: ``OVERHEAD_OPTIMIZERS``, the registry's first two
optimizers) through its functional form,
with 1 thread and with 2 threads forced (threshold 1), interleaved, and print the speedup. The
kernels' threshold is the smallest size per thread from which 2 threads are reliably faster (it is
scaled per kernel by the registry's thread-cost weight). Run:
``python benchmarks/threshold.py [optimizer ...]``.
"""
import statistics
import sys
import time

import numpy as np

import fastoptim as fo
from fastoptim._dispatch import kernels
from fastoptim.tools.bench import OPTIMIZERS, OVERHEAD_OPTIMIZERS
from fastoptim.tools.peers import Case, make_peer

SIZES = [1024, 4096, 16384, 32768, 65536, 131072, 262144, 1048576]


def _time(fn, threads, reps):
    fo.set_num_threads(threads)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main(names=OVERHEAD_OPTIMIZERS, reps=200):
    old = kernels.get_min_elements_per_thread()
    kernels.set_min_elements_per_thread(1)
    try:
        header = f"{'elements':>9s} {'layout':>8s}"
        for name in names:
            header += f" {name + ' 1t us':>14s} {name + ' 2t us':>14s} {'speedup':>8s}"
        print(header)
        for n in SIZES:
            for layout in ("1 array", "1k each"):
                sizes = [n] if layout == "1 array" else [1024] * max(1, n // 1024)
                line = f"{sum(sizes):9d} {layout:>8s}"
                for name in names:
                    peer = make_peer("fastoptim", Case([(k,) for k in sizes], np.float32,
                                                       OPTIMIZERS[name]))
                    peer.step()                 # creates any state the first step creates
                    t1, t2 = [], []
                    for _ in range(5):  # interleave 1- and 2-thread batches
                        t1.append(_time(peer.step, 1, reps // 5))
                        t2.append(_time(peer.step, 2, reps // 5))
                    one, two = statistics.median(t1), statistics.median(t2)
                    line += f" {one * 1e6:14.1f} {two * 1e6:14.1f} {one / two:8.2f}"
                print(line)
    finally:
        kernels.set_min_elements_per_thread(old)


if __name__ == "__main__":
    main(sys.argv[1:] or OVERHEAD_OPTIMIZERS)
