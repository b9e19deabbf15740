"""Measure the work size below which a second thread does not pay (``min_elements_per_thread``).

For total sizes from 1k to 1M float32 elements (as one array and as arrays of 1k), time one Adam
and one SGD-momentum step with 1 thread and with 2 threads forced (threshold 1), interleaved, and
print the speedup. The kernels' threshold is the smallest size per thread from which 2 threads are
reliably faster. Run: ``python benchmarks/threshold.py``.
"""
import statistics
import time

import numpy as np

import fastoptim as fo
from fastoptim import functional as F
from fastoptim._dispatch import kernels

SIZES = [1024, 4096, 16384, 32768, 65536, 131072, 262144, 1048576]


def _time(fn, threads, reps):
    fo.set_num_threads(threads)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main(reps=200):
    old = kernels.get_min_elements_per_thread()
    kernels.set_min_elements_per_thread(1)
    try:
        print(f"{'elements':>9s} {'layout':>8s} {'adam 1t us':>11s} {'adam 2t us':>11s} {'speedup':>8s}"
              f" {'sgd 1t us':>10s} {'sgd 2t us':>10s} {'speedup':>8s}")
        for n in SIZES:
            for layout in ("1 array", "1k each"):
                sizes = [n] if layout == "1 array" else [1024] * max(1, n // 1024)
                ps = [np.zeros(k, np.float32) for k in sizes]
                gs = [np.full(k, 1e-3, np.float32) for k in sizes]
                m, v, b = ([np.zeros(k, np.float32) for k in sizes] for _ in range(3))
                steps = [0] * len(sizes)

                def adam():
                    F.adam(ps, gs, m, v, [], steps, amsgrad=False, beta1=0.9, beta2=0.999, lr=1e-6,
                           weight_decay=0.0, eps=1e-8, maximize=False)

                def sgd():
                    F.sgd(ps, gs, b, lr=1e-6, weight_decay=0.0, momentum=0.9, dampening=0.0,
                          nesterov=False, maximize=False)

                res = {}
                for name, fn in (("adam", adam), ("sgd", sgd)):
                    fn()
                    t1, t2 = [], []
                    for _ in range(5):  # interleave 1- and 2-thread batches
                        t1.append(_time(fn, 1, reps // 5))
                        t2.append(_time(fn, 2, reps // 5))
                    res[name] = (statistics.median(t1), statistics.median(t2))
                a, s = res["adam"], res["sgd"]
                print(f"{sum(sizes):9d} {layout:>8s} {a[0] * 1e6:11.1f} {a[1] * 1e6:11.1f} {a[0] / a[1]:8.2f}"
                      f" {s[0] * 1e6:10.1f} {s[1] * 1e6:10.1f} {s[0] / s[1]:8.2f}")
    finally:
        kernels.set_min_elements_per_thread(old)


if __name__ == "__main__":
    main()
