"""Training utilities against torch, side by side in one process: gradient clipping, the EMA
update and Adafactor.

    python benchmarks/bench_train.py                 # mix and 1000x1k, float32, default threads
    python benchmarks/bench_train.py --repeats 5 --threads 1
    python benchmarks/bench_train.py --stat min      # best round instead of the median

Each row times the bandwidth bound, fastoptim and torch in turn on the same shapes (``--repeats``
rounds of ``--number`` calls each; the median round, or the fastest with ``--stat min``, which is
the better estimate on a machine shared with other jobs) and prints the ratio torch / fastoptim
(> 1: fastoptim is faster) and how close each side comes to the bandwidth bound.

The bound is the time the row's compulsory memory traffic takes at the streaming bandwidth that
``fastoptim._stream`` (the kernel behind ``python -m fastoptim bench``'s "bound" peer) reaches on
the same shapes and thread count, measured in the same rounds: per element, clipping reads the
gradient twice (the norm pass, then the scaling) and writes it once, 12 bytes in float32 (4 when
the norm is below ``max_norm``: the coefficient is 1 and the scaling can be skipped); the EMA
update reads the average and the parameter and writes the average, 12 bytes; an Adafactor step on
matrices reads the gradient and the parameter and writes the parameter, 12 bytes (the factored
row/column statistics are negligible). "% bound" = bound time / measured time.
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


def _side_by_side(bound, ours, theirs, repeats, number, stat):
    """Interleaved rounds of the bound, ours and theirs; ``stat`` (median or min) of each."""
    bound(), ours(), theirs()             # warm up
    rounds = ([], [], [])
    for _ in range(repeats):
        for fn, out in zip((bound, ours, theirs), rounds):
            out.append(_time(fn, number))
    return [stat(r) for r in rounds]


def _stream_plan(shapes):
    """The bandwidth kernel over ``shapes``: 3 float32 arrays per shape, reads 3, writes 2."""
    from fastoptim._stream import StreamPlan

    rng = np.random.default_rng(1)
    return StreamPlan([tuple(rng.random(s, dtype=np.float32) + 1.0 for _ in range(3))
                       for s in shapes])


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


def bench_clip(torch, shapes):
    """Clipping that scales at every call: ``max_norm`` is 0.999 of the norm the previous call
    returned (a fixed ``max_norm`` would settle after two calls at a norm just below it, where
    the coefficient is exactly 1 and fastoptim skips the multiply, see bench_clip_inactive)."""
    fps, tps = _params(torch, shapes)
    mine, theirs = [1.0], [1.0]

    def ours():
        mine[0] = 0.999 * float(fo.clip_grad_norm_(fps, mine[0]))

    def torchs():
        theirs[0] = 0.999 * float(torch.nn.utils.clip_grad_norm_(tps, theirs[0], foreach=True))
    return ours, torchs


def bench_clip_inactive(torch, shapes):
    """The norm is below ``max_norm`` (coefficient exactly 1): torch still multiplies by 1,
    fastoptim only computes the norm (x * 1.0 == x: the same bits)."""
    fps, tps = _params(torch, shapes)
    return (lambda: fo.clip_grad_norm_(fps, 1e30),
            lambda: torch.nn.utils.clip_grad_norm_(tps, 1e30, foreach=True))


def bench_ema(torch, shapes):
    fps, tps = _params(torch, shapes)
    ours = fo.swa_utils.AveragedModel(fps, multi_avg_fn=fo.swa_utils.get_ema_multi_avg_fn(0.999))
    model = torch.nn.ParameterList(tps)
    theirs = torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.999))
    ours.update_parameters(fps)
    theirs.update_parameters(model)
    return lambda: ours.update_parameters(fps), lambda: theirs.update_parameters(model)


def bench_adafactor(torch, shapes):
    fps, tps = _params(torch, shapes)
    ours = fo.Adafactor(fps, lr=1e-3)
    theirs = torch.optim.Adafactor(tps, lr=1e-3)
    return ours.step, theirs.step


# (name, setup, workloads, compulsory bytes per float32 element)
ROWS = [
    ("clip_grad_norm_ vs torch foreach", bench_clip, ("mix", "1000x1k"), 12),
    ("  same, norm below max_norm", bench_clip_inactive, ("mix",), 4),
    ("EMA update vs torch AveragedModel", bench_ema, ("mix", "1000x1k"), 12),
    ("Adafactor step vs torch Adafactor", bench_adafactor, ("mix",), 12),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--number", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both fastoptim and torch (default: their defaults)")
    parser.add_argument("--stat", choices=("median", "min"), default="median",
                        help="summary of the rounds (default: median)")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        fo.set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
    stat = statistics.median if args.stat == "median" else min
    threads = fo.get_num_threads()
    print(f"fastoptim threads {threads}, torch threads {torch.get_num_threads()}, float32, "
          f"{args.stat} of {args.repeats} rounds x {args.number} calls")
    print(f"{'row':36s} {'workload':9s} {'fastoptim':>11s} {'torch':>11s} {'ratio':>7s} "
          f"{'stream':>9s} {'bound':>9s} {'fo %bnd':>8s} {'th %bnd':>8s}")
    for name, setup, workloads, bytes_per_element in ROWS:
        for w in workloads:
            shapes = WORKLOADS[w].get_shapes()
            plan = _stream_plan(shapes)
            ours_fn, theirs_fn = setup(torch, shapes)
            t_stream, ours, theirs = _side_by_side(lambda: plan.run(threads), ours_fn, theirs_fn,
                                                   args.repeats, args.number, stat)
            bandwidth = plan.bytes_per_step / t_stream
            bound = plan.n_elements * bytes_per_element / bandwidth
            print(f"{name:36s} {w:9s} {ours * 1e3:9.3f}ms {theirs * 1e3:9.3f}ms {theirs / ours:6.2f}x "
                  f"{bandwidth / 1e9:5.1f}GB/s {bound * 1e3:7.3f}ms {100 * bound / ours:7.0f}% "
                  f"{100 * bound / theirs:7.0f}%", flush=True)


if __name__ == "__main__":
    main()
