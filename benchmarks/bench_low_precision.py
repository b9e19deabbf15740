"""Adam with bfloat16 state, and bfloat16 params with a float32 master copy, against torch fused
float32 Adam and the bandwidth bound, side by side in one process (docs/low_precision.rst).

    flock /tmp/bench.lock env PYTHONPATH=$PWD python benchmarks/bench_low_precision.py --threads 2

One array of ``--n`` elements (default 100M). Each case is built, timed (``--repeats`` rounds of
``--steps`` steps after one warm-up step; the median round is reported) and freed before the next,
so the peak memory is one case. Bytes per element come from the registry
(``OptimizerInfo.bytes_per_element``, which follows the group's ``state_dtype``). The bound is
``fastoptim._stream`` moving the same bytes: float32 arrays read ``k`` and written ``k - 1`` per
element (float32 Adam: 4 arrays, 28 bytes; bfloat16 state: 3 arrays, 20 bytes = param and grad 4
bytes, the two moments 2 each). The master-weights path reads as many bytes as it writes, which
that kernel cannot mimic: its bytes per element and its ratio to torch are reported, no bound.
"""
import argparse
import gc
import statistics
import time

import numpy as np

import fastoptim as fo
from fastoptim.optim.registry import OPTIMIZERS


def _time(step, steps, repeats):
    step()                                   # warm-up: state created, pages touched
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rounds.append((time.perf_counter() - start) / steps)
    return statistics.median(rounds)


def _grad(n, dtype, rng):
    return (rng.standard_normal(n, dtype=np.float32) * 1e-3).astype(dtype)


def case_torch(n, rng):
    import torch

    t = torch.nn.Parameter(torch.from_numpy(rng.standard_normal(n, dtype=np.float32)))
    t.grad = torch.from_numpy(_grad(n, np.float32, rng))
    opt = torch.optim.Adam([t], lr=1e-3, fused=True)
    return opt.step


def case_fastoptim(n, rng, dtype=np.float32, **kwargs):
    p = fo.Parameter(rng.standard_normal(n, dtype=np.float32).astype(dtype))
    p.grad = _grad(n, dtype, rng)
    opt = fo.Adam([p], lr=1e-3, **kwargs)
    return opt.step


def case_bound(n, rng, k):
    from fastoptim._stream import StreamPlan

    arrays = []
    for _ in range(k):
        a = rng.random(n, dtype=np.float32)
        a += 1.0
        arrays.append(a)
    plan = StreamPlan([tuple(arrays)])
    threads = fo.get_num_threads()
    return lambda: plan.run(threads)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    import ml_dtypes
    import torch

    fo.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    bf16 = np.dtype(ml_dtypes.bfloat16)
    info = OPTIMIZERS["Adam"]
    group = {"amsgrad": False}
    bpe = {
        "f32": info.bytes_per_element(4, group),
        "bf16-state": info.bytes_per_element(4, {**group, "state_dtype": "bfloat16"}),
        "bf16-params": info.bytes_per_element(2, group),
        "bf16-params-state": info.bytes_per_element(2, {**group, "state_dtype": "bfloat16"}),
    }
    cases = [
        ("bound float32 (4 arrays)", "f32", lambda rng: case_bound(args.n, rng, 4)),
        ("torch Adam(fused=True) float32", "f32", lambda rng: case_torch(args.n, rng)),
        ("fastoptim Adam float32", "f32", lambda rng: case_fastoptim(args.n, rng)),
        ("bound bf16 state (3 arrays)", "bf16-state", lambda rng: case_bound(args.n, rng, 3)),
        ("fastoptim Adam bf16 state", "bf16-state",
         lambda rng: case_fastoptim(args.n, rng, state_dtype="bfloat16")),
        ("fastoptim Adam bf16 state, SR", "bf16-state",
         lambda rng: case_fastoptim(args.n, rng, state_dtype="bfloat16", stochastic_rounding=True)),
        ("fastoptim Adam bf16 params + f32 master", "bf16-params",
         lambda rng: case_fastoptim(args.n, rng, dtype=bf16)),
        ("fastoptim Adam bf16 params + master, bf16 state", "bf16-params-state",
         lambda rng: case_fastoptim(args.n, rng, dtype=bf16, state_dtype="bfloat16")),
    ]
    results = {}
    for label, kind, make in cases:
        step = make(np.random.default_rng(0))
        results[label] = (kind, _time(step, args.steps, args.repeats))
        del step
        gc.collect()

    torch_t = results["torch Adam(fused=True) float32"][1]
    bounds = {"f32": results["bound float32 (4 arrays)"][1],
              "bf16-state": results["bound bf16 state (3 arrays)"][1]}
    print(f"Adam, 1 x {args.n:,} elements, {args.threads} threads, fastoptim kernels "
          f"{fo._dispatch.VARIANT}; median of {args.repeats} rounds of {args.steps} steps")
    print(f"{'case':50s} {'B/elem':>6s} {'ms/step':>8s} {'GB/s':>6s} {'% bound':>8s} {'x torch':>8s}")
    for label, (kind, t) in results.items():
        gbs = args.n * bpe[kind] / t / 1e9
        bound = "" if label.startswith("bound") or kind not in bounds else f"{100 * bounds[kind] / t:.0f}%"
        print(f"{label:50s} {bpe[kind]:6d} {1e3 * t:8.1f} {gbs:6.2f} {bound:>8s} {torch_t / t:8.2f}")


if __name__ == "__main__":
    main()
