"""Measure the numbers of docs/threads.rst, "Processes and threads".

The optimizer is a benchmark configuration (``--optimizer``, a key of
``fastoptim.tools.bench.OPTIMIZERS``; default: the second, Adam with its defaults, with which the
docs' figures were measured).

1. Two optimizers stepped from two Python threads at once, against the same steps one after
   the other in one thread: the kernels release the GIL, so the two threads overlap. Measured for
   large arrays (where the OpenMP threads of each step already use every core) and for many small
   arrays (where each step runs on one thread and the Python overhead matters), with the OpenMP
   thread count of each Python thread at the default and at 1.
2. A fork child's step (one thread: the fork guard) against the parent's step (all threads).

Each figure is the median of ``--rounds`` interleaved rounds. Run:
``python benchmarks/processes_threads.py``.
"""
import argparse
import os
import statistics
import threading
import time

import numpy as np

import fastoptim as fo
from fastoptim.tools.bench import OPTIMIZERS

STEPS = 20
CONFIG = OPTIMIZERS[list(OPTIMIZERS)[1]]   # replaced by --optimizer


def _optimizer(sizes):
    params = [fo.Parameter(np.linspace(-1.0, 1.0, n, dtype=np.float32)) for n in sizes]
    for p in params:
        p.grad = np.full(p.shape, 1e-3, np.float32)
    return CONFIG.info.cls(params, **{**CONFIG.kwargs, "lr": 1e-3})


def _steps(opt, omp_threads):
    fo.set_num_threads(omp_threads)  # per calling thread, like omp_set_num_threads
    for _ in range(STEPS):
        opt.step()


def sequential(opts, omp_threads):
    t0 = time.perf_counter()
    for opt in opts:
        _steps(opt, omp_threads)
    return time.perf_counter() - t0


def two_threads(opts, omp_threads):
    threads = [threading.Thread(target=_steps, args=(opt, omp_threads)) for opt in opts]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def threads_vs_sequential(rounds):
    default = fo.get_num_threads()
    workloads = {"2 x 4M elements (1 array)": [4_000_000],
                 "2 x 1000 arrays of 1k": [1000] * 1000}
    print(f"-- two optimizers ({CONFIG.description}), {STEPS} steps each; "
          f"OpenMP default {default} threads, "
          f"{os.cpu_count()} cores")
    for name, sizes in workloads.items():
        opts = [_optimizer(sizes), _optimizer(sizes)]
        for omp in sorted({default, 1}, reverse=True):
            seq, par = [], []
            for _ in range(rounds):
                seq.append(sequential(opts, omp))
                par.append(two_threads(opts, omp))
            s, p = statistics.median(seq), statistics.median(par)
            print(f"{name:28s} OpenMP {omp} thr/step: sequential {s * 1e3:8.1f} ms, "
                  f"two Python threads {p * 1e3:8.1f} ms, speedup x{s / p:.2f}")
    fo.set_num_threads(default)


def fork_child_vs_parent(rounds):
    opt = _optimizer([4_000_000])

    def median_step():
        ts = []
        for _ in range(rounds * STEPS):
            t0 = time.perf_counter()
            opt.step()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    parent = median_step()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        child = median_step()
        os.write(write, f"{child!r} {fo.get_num_threads()}".encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child, child_threads = os.read(read, 100).decode().split()
    child = float(child)
    print(f"-- {CONFIG.description} step on 4M float32 elements: "
          f"parent ({fo.get_num_threads()} threads) "
          f"{parent * 1e3:.2f} ms, fork child ({child_threads} thread) {child * 1e3:.2f} ms, "
          f"child/parent x{child / parent:.2f}")


def main():
    global CONFIG
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--optimizer", choices=list(OPTIMIZERS), default=CONFIG.name)
    args = parser.parse_args()
    CONFIG = OPTIMIZERS[args.optimizer]
    threads_vs_sequential(args.rounds)
    if hasattr(os, "fork"):
        fork_child_vs_parent(args.rounds)


if __name__ == "__main__":
    main()
