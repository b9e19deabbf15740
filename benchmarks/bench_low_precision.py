"""An optimizer with bfloat16 state, and with bfloat16 params and a float32 master copy, against
torch's fused float32 implementation and the bandwidth bound, side by side in one process
(docs/low_precision.rst; the page's figures: ``--optimizer adam``).

    flock /tmp/bench.lock env PYTHONPATH=$PWD python benchmarks/bench_low_precision.py --threads 2 --optimizer adam

``--optimizer`` is a registry key in lowercase (default: the demo's default optimizer); torch must
have a fused implementation of it.

One array of ``--n`` elements (default 100M). The cases are timed in interleaved rounds (each round
runs ``--steps`` steps of every case; the median of ``--repeats`` rounds is reported), so that a
disturbance of the shared machine hits all of them alike; about 8 GB of memory at 100M. Bytes per element come from the registry
(``OptimizerInfo.bytes_per_element``, which follows the group's ``state_dtype``). The bound is
``fastoptim._stream`` moving the same bytes: float32 arrays read ``k`` and written ``k - 1`` per
element (float32 Adam: 4 arrays, 28 bytes; bfloat16 state: 3 arrays, 20 bytes = param and grad 4
bytes, the two moments 2 each; in general float32 arrays for the bytes read and written). The master-weights path reads as many bytes as it writes, which
that kernel cannot mimic: its bytes per element and its ratio to torch are reported, no bound.
"""
import argparse
import gc
import statistics
import time

import numpy as np

import fastoptim as fo
from fastoptim.optim.registry import OPTIMIZERS
from fastoptim.tools.demo import DEFAULT_OPTIMIZER


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


def case_torch(info, n, rng):
    import torch

    t = torch.nn.Parameter(torch.from_numpy(rng.standard_normal(n, dtype=np.float32)))
    t.grad = torch.from_numpy(_grad(n, np.float32, rng))
    opt = getattr(torch.optim, info.torch_name)([t], lr=1e-3, fused=True)
    return opt.step


def case_fastoptim(info, n, rng, dtype=np.float32, **kwargs):
    p = fo.Parameter(rng.standard_normal(n, dtype=np.float32).astype(dtype))
    p.grad = _grad(n, dtype, rng)
    opt = info.cls([p], lr=1e-3, **kwargs)
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
    parser.add_argument("--optimizer", default=DEFAULT_OPTIMIZER,
                        choices=sorted(info.name.lower() for info in OPTIMIZERS.values()))
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
    info = {i.name.lower(): i for i in OPTIMIZERS.values()}[args.optimizer]
    group = info.cls([fo.Parameter(np.zeros(1, np.float32))]).param_groups[0]   # the defaults
    bpe = {
        "f32": info.bytes_per_element(4, group),
        "bf16-state": info.bytes_per_element(4, {**group, "state_dtype": "bfloat16"}),
        "bf16-params": info.bytes_per_element(2, group),
        "bf16-params-state": info.bytes_per_element(2, {**group, "state_dtype": "bfloat16"}),
    }
    name = info.name
    torch_label = f"torch {info.torch_name}(fused=True) float32"
    rng = np.random.default_rng(0)
    stream = stream_arrays(args.n, rng, 4)     # the bf16-state bound uses 3 of the same 4 arrays
    bf16_state = case_fastoptim(info, args.n, rng, state_dtype="bfloat16")
    cases = [
        ("bound float32 (4 arrays)", "f32", case_bound(stream)),
        (torch_label, "f32", case_torch(info, args.n, rng)),
        (f"fastoptim {name} float32", "f32", case_fastoptim(info, args.n, rng).step),
        ("bound bf16 state (3 arrays)", "bf16-state", case_bound(stream[:3])),
        (f"fastoptim {name} bf16 state", "bf16-state", with_sr(bf16_state, False)),
        (f"fastoptim {name} bf16 state, SR", "bf16-state", with_sr(bf16_state, True)),
        (f"fastoptim {name} bf16 params + f32 master", "bf16-params",
         case_fastoptim(info, args.n, rng, dtype=bf16).step),
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
    opt = case_fastoptim(info, args.n, rng, dtype=bf16, state_dtype="bfloat16")
    results[f"fastoptim {name} bf16 params + master, bf16 state"] = (
        "bf16-params-state", _time(opt.step, args.steps, args.repeats))

    torch_t = results[torch_label][1]
    bounds = {"f32": results["bound float32 (4 arrays)"][1],
              "bf16-state": results["bound bf16 state (3 arrays)"][1]}
    print(f"{name}, 1 x {args.n:,} elements, {args.threads} threads, fastoptim kernels "
          f"{fo._dispatch.VARIANT}; median of {args.repeats} interleaved rounds of {args.steps} steps")
    print(f"{'case':50s} {'B/elem':>6s} {'ms/step':>8s} {'GB/s':>6s} {'% bound':>8s} {'x torch':>8s}")
    for label, (kind, t) in results.items():
        gbs = args.n * bpe[kind] / t / 1e9
        bound = "" if label.startswith("bound") or kind not in bounds else f"{100 * bounds[kind] / t:.0f}%"
        print(f"{label:50s} {bpe[kind]:6d} {1e3 * t:8.1f} {gbs:6.2f} {bound:>8s} {torch_t / t:8.2f}")


if __name__ == "__main__":
    main()
