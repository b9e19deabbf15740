"""fo.functional.adam against torch.optim.Adam(fused=True), side by side in one process.

Two workloads (one 10M float32 array; 1000 arrays of 1k float32) at 1 and 2 threads; the peers
alternate step by step (A B A B ...) so machine noise hits both. Prints median ms/step, M elements/s
and the ratio. The full suite is ``python -m fastoptim bench``; this is the quick check quoted in the
foundation issue.
"""
import statistics
import time

import numpy as np
import torch

import fastoptim as fo
from fastoptim import functional as F

WORKLOADS = {"10M": [10_000_000], "1000x1k": [1000] * 1000}


def run(sizes, threads, steps=30):
    fo.set_num_threads(threads)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    grads = [rng.standard_normal(n).astype(np.float32) * 1e-3 for n in sizes]
    m, v, steps_list = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params], [0] * len(params)
    tparams = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in params]
    for t, g in zip(tparams, grads):
        t.grad = torch.from_numpy(g.copy())
    opt = torch.optim.Adam(tparams, lr=1e-4, fused=True)

    def fo_step():
        F.adam(params, grads, m, v, [], steps_list, amsgrad=False, beta1=0.9, beta2=0.999, lr=1e-4,
               weight_decay=0.0, eps=1e-8, maximize=False)

    times = {"fastoptim": [], "torch fused": []}
    for _ in range(3):  # warm-up
        fo_step()
        opt.step()
    for _ in range(steps):
        for name, fn in (("fastoptim", fo_step), ("torch fused", opt.step)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}, sum(sizes)


def main():
    print(f"{'workload':10s} {'thr':>3s} {'fastoptim ms':>13s} {'torch fused ms':>15s} "
          f"{'fo Melem/s':>11s} {'torch Melem/s':>13s} {'ratio':>6s}")
    for name, sizes in WORKLOADS.items():
        for threads in (1, 2):
            med, n = run(sizes, threads)
            a, b = med["fastoptim"], med["torch fused"]
            print(f"{name:10s} {threads:3d} {a * 1e3:13.3f} {b * 1e3:15.3f} {n / a / 1e6:11.0f} "
                  f"{n / b / 1e6:13.0f} {b / a:6.2f}x")


if __name__ == "__main__":
    main()
