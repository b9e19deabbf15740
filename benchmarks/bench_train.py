"""Training utilities against torch, side by side in one process: gradient clipping, the EMA
update and Adafactor.

    python benchmarks/bench_train.py                 # mix and 1000x1k, float32, default threads
    python benchmarks/bench_train.py --repeats 5 --threads 1

Each row times fastoptim and torch alternately on the same shapes (median of ``--repeats`` rounds
of ``--number`` calls each) and prints the ratio torch / fastoptim (> 1: fastoptim is faster).
torch must be installed (``pip install torch``).
"""
import argparse
import statistics
import time

import numpy as np

import fastoptim as fo

try:  # the workload shapes live with the benchmark suite
    from fastoptim.tools.bench import WORKLOADS
except ImportError:
    from fastoptim.bench import WORKLOADS


def _time(fn, number):
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def _side_by_side(ours, theirs, repeats, number):
    ours(), theirs()                      # warm up
    a, b = [], []
    for _ in range(repeats):
        a.append(_time(ours, number))
        b.append(_time(theirs, number))
    return statistics.median(a), statistics.median(b)


def _params(torch, shapes, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    fps = []
    for a, g in zip(arrays, grads):
        p = fo.Parameter(a.copy())
        p.grad = g.copy()
        fps.append(p)
    tps = []
    for a, g in zip(arrays, grads):
        t = torch.nn.Parameter(torch.from_numpy(a.copy()))
        t.grad = torch.from_numpy(g.copy())
        tps.append(t)
    return fps, tps


def bench_clip(torch, shapes, repeats, number):
    fps, tps = _params(torch, shapes)
    return _side_by_side(lambda: fo.clip_grad_norm_(fps, 1.0),
                         lambda: torch.nn.utils.clip_grad_norm_(tps, 1.0, foreach=True),
                         repeats, number)


def bench_ema(torch, shapes, repeats, number):
    fps, tps = _params(torch, shapes)
    ours = fo.swa_utils.AveragedModel(fps, multi_avg_fn=fo.swa_utils.get_ema_multi_avg_fn(0.999))
    model = torch.nn.ParameterList(tps)
    theirs = torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.999))
    ours.update_parameters(fps)
    theirs.update_parameters(model)
    return _side_by_side(lambda: ours.update_parameters(fps),
                         lambda: theirs.update_parameters(model), repeats, number)


def bench_adafactor(torch, shapes, repeats, number):
    fps, tps = _params(torch, shapes)
    ours = fo.Adafactor(fps, lr=1e-3)
    theirs = torch.optim.Adafactor(tps, lr=1e-3)
    return _side_by_side(ours.step, theirs.step, repeats, number)


ROWS = [
    ("clip_grad_norm_ vs torch foreach", bench_clip, ("mix", "1000x1k")),
    ("EMA update vs torch AveragedModel", bench_ema, ("mix", "1000x1k")),
    ("Adafactor step vs torch Adafactor", bench_adafactor, ("mix",)),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--number", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both fastoptim and torch (default: their defaults)")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        fo.set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
    print(f"fastoptim threads {fo.get_num_threads()}, torch threads {torch.get_num_threads()}, float32")
    print(f"{'row':36s} {'workload':9s} {'fastoptim':>11s} {'torch':>11s} {'ratio':>7s}")
    for name, fn, workloads in ROWS:
        for w in workloads:
            ours, theirs = fn(torch, WORKLOADS[w].get_shapes(), args.repeats, args.number)
            print(f"{name:36s} {w:9s} {ours * 1e3:9.3f}ms {theirs * 1e3:9.3f}ms {theirs / ours:6.2f}x",
                  flush=True)


if __name__ == "__main__":
    main()
