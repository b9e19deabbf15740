"""Adam with bfloat16 state, and bfloat16 params with a float32 master copy, against torch fused
float32 Adam and the bandwidth bound, side by side in one process (docs/low_precision.rst).

    flock /tmp/bench.lock env PYTHONPATH=$PWD python benchmarks/bench_low_precision.py --threads 2

One array of ``--n`` elements (default 100M). The cases are timed in interleaved rounds (each round
runs ``--steps`` steps of every case; the median of ``--repeats`` rounds is reported), so that a
disturbance of the shared machine hits all of them alike; about 8 GB of memory at 100M. Bytes per element come from the registry
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
    return opt


def stream_arrays(n, rng, k):
    arrays = []
    for _ in range(k):
        a = rng.random(n, dtype=np.float32)
        a += 1.0                                 # no subnormals (see _stream_impl.pxi)
        arrays.append(a)
    return arrays


def case_bound(arrays):
    from fastoptim._stream import StreamPlan

    plan = StreamPlan([tuple(arrays)])
    threads = fo.get_num_threads()
    return lambda: plan.run(threads)


def with_sr(opt, on):
    """The optimizer's step with stochastic rounding switched on or off (a group key)."""
    def step():
        opt.param_groups[0]["stochastic_rounding"] = on
        opt.step()
    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7)
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
    rng = np.random.default_rng(0)
    stream = stream_arrays(args.n, rng, 4)     # the bf16-state bound uses 3 of the same 4 arrays
    bf16_state = case_fastoptim(args.n, rng, state_dtype="bfloat16")
    cases = [
        ("bound float32 (4 arrays)", "f32", case_bound(stream)),
        ("torch Adam(fused=True) float32", "f32", case_torch(args.n, rng)),
        ("fastoptim Adam float32", "f32", case_fastoptim(args.n, rng).step),
        ("bound bf16 state (3 arrays)", "bf16-state", case_bound(stream[:3])),
        ("fastoptim Adam bf16 state", "bf16-state", with_sr(bf16_state, False)),
        ("fastoptim Adam bf16 state, SR", "bf16-state", with_sr(bf16_state, True)),
        ("fastoptim Adam bf16 params + f32 master", "bf16-params",
         case_fastoptim(args.n, rng, dtype=bf16).step),
    ]
    # interleaved rounds (every case once per round), so that a disturbance hits all alike
    times = {label: [] for label, _, _ in cases}
    for _, _, step in cases:
        step()                                   # warm-up: state created, pages touched
    for _ in range(args.repeats):
        for label, _, step in cases:
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            times[label].append((time.perf_counter() - start) / args.steps)
    results = {label: (kind, statistics.median(times[label])) for label, kind, _ in cases}
    del cases, bf16_state, stream
    gc.collect()
    # afterwards, alone (memory): bf16 params with bf16 state
    opt = case_fastoptim(args.n, rng, dtype=bf16, state_dtype="bfloat16")
    results["fastoptim Adam bf16 params + master, bf16 state"] = (
        "bf16-params-state", _time(opt.step, args.steps, args.repeats))

    torch_t = results["torch Adam(fused=True) float32"][1]
    bounds = {"f32": results["bound float32 (4 arrays)"][1],
              "bf16-state": results["bound bf16 state (3 arrays)"][1]}
    print(f"Adam, 1 x {args.n:,} elements, {args.threads} threads, fastoptim kernels "
          f"{fo._dispatch.VARIANT}; median of {args.repeats} interleaved rounds of {args.steps} steps")
    print(f"{'case':50s} {'B/elem':>6s} {'ms/step':>8s} {'GB/s':>6s} {'% bound':>8s} {'x torch':>8s}")
    for label, (kind, t) in results.items():
        gbs = args.n * bpe[kind] / t / 1e9
        bound = "" if label.startswith("bound") or kind not in bounds else f"{100 * bounds[kind] / t:.0f}%"
        print(f"{label:50s} {bpe[kind]:6d} {1e3 * t:8.1f} {gbs:6.2f} {bound:>8s} {torch_t / t:8.2f}")


if __name__ == "__main__":
    main()
