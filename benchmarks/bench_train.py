"""Training utilities against torch, side by side in one process: gradient clipping, the EMA
update and Adafactor; and the fused training step (clip + step + EMA in one pass, for the
two-moment optimizer of the benchmark suite's configurations by default).

    python benchmarks/bench_train.py                 # mix and 1000x1k, float32, default threads
    python benchmarks/bench_train.py --repeats 5 --threads 1
    python benchmarks/bench_train.py --only fused --fused-workloads 100M mix --threads 2

Each row times fastoptim and torch alternately on the same shapes (median of ``--repeats`` rounds
of ``--number`` calls each) and prints the ratio torch / fastoptim (> 1: fastoptim is faster).
torch must be installed (``pip install torch``).
"""
import argparse
import statistics
import time

import numpy as np

import fastoptim as fo

try:  # the workload shapes and optimizer configurations live with the benchmark suite
    from fastoptim.tools.bench import OPTIMIZERS, WORKLOADS
except ImportError:
    from fastoptim.bench import OPTIMIZERS, WORKLOADS

# The fused table's default optimizer: the suite's second configuration (the two-moment optimizer
# of the original three, with its defaults), as the distributed benchmark steps.
FUSED_DEFAULT = list(OPTIMIZERS)[1]


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


def _fused_trio(torch, shapes, config, max_norm=1.0, decay=0.999):
    """(fused, separate, torch) callables of one training step's clip + step + EMA on copies of
    the same params and gradients (``config``: a benchmark configuration; torch's side is its
    ``fused=True`` class), and the fastoptim params/EMAs for the bitwise check."""
    cls, kwargs = config.info.cls, {**config.hyperparameters, "lr": config.lr}
    fps_a, tps = _params(torch, shapes)
    fps_b = [fo.Parameter(p.copy()) for p in fps_a]
    for p, q in zip(fps_b, fps_a):
        p.grad = q.grad.copy()
    ema_fn = fo.swa_utils.get_ema_multi_avg_fn
    # separate: clip in memory, step, EMA (three passes after the norm)
    opt_a = cls(fps_a, **kwargs)
    ema_a = fo.swa_utils.AveragedModel(fps_a, multi_avg_fn=ema_fn(decay))
    # fused: the norm, then one pass (grads not modified)
    opt_b = cls(fps_b, **kwargs)
    ema_b = fo.swa_utils.AveragedModel(fps_b, multi_avg_fn=ema_fn(decay), fused_with=opt_b)
    model = torch.nn.ParameterList(tps)
    topt = getattr(torch.optim, config.info.torch_name)(tps, **kwargs, fused=True)
    tema = torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay))

    def separate():
        fo.clip_grad_norm_(fps_a, max_norm)
        opt_a.step()
        ema_a.update_parameters(fps_a)

    def fused():
        fo.clip_grad_norm_(fps_b, max_norm, fused_with=opt_b)
        opt_b.step()

    def theirs():
        torch.nn.utils.clip_grad_norm_(tps, max_norm, foreach=True)
        topt.step()
        tema.update_parameters(model)

    return fused, separate, theirs, (fps_a, ema_a, fps_b, ema_b, opt_b)


def bench_fused(torch, shapes, repeats, number, config):
    """Times (fused, separate, torch, bound of the fused step, the norm pass alone) and whether fused == separate bit
    for bit (params and EMA after two steps from the same start, checked before the timing).

    The bound: the bandwidth kernel moving the fused pass's arrays (the optimizer's k arrays and
    the EMA: read k + 1, write k) over the same shapes, plus the read-only norm pass (scaled by
    its share of the bytes)."""
    from fastoptim._stream import StreamPlan

    fused, separate, theirs, (fps_a, ema_a, fps_b, ema_b, opt) = _fused_trio(torch, shapes, config)
    rng = np.random.default_rng(1)
    k = config.info.bytes_per_element(1, opt.param_groups[0]) // 2 + 1   # arrays the step reads
    plan = StreamPlan([tuple(rng.random(s, dtype=np.float32) + 1 for _ in range(k + 1)) for s in shapes])
    threads = fo.get_num_threads()
    # warm up, and the bitwise check: two steps from the same params and gradients (the separate
    # path's clip scales its gradients in memory, so they are restored from the fused path's,
    # which it leaves alone; the EMAs' first update copies, the second averages)
    for _ in range(2):
        for p, q in zip(fps_a, fps_b):
            np.copyto(p.grad, q.grad)
        fused()
        separate()
    same = (all(np.array_equal(x, y) for x, y in zip(fps_a, fps_b))
            and all(np.array_equal(x, y) for x, y in zip(ema_a.averaged, ema_b.averaged)))
    theirs()
    plan.run(threads)
    grads = [p.grad for p in fps_b]
    a, b, c, d, e = [], [], [], [], []
    for _ in range(repeats):
        a.append(_time(fused, number))
        b.append(_time(separate, number))
        c.append(_time(theirs, number))
        d.append(_time(lambda: plan.run(threads), number))
        e.append(_time(lambda: fo.get_total_norm(grads), number))
    del plan
    return (statistics.median(a), statistics.median(b), statistics.median(c),
            statistics.median(d) * (2 * k + 2) / (2 * k + 1), statistics.median(e), same)


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
    parser.add_argument("--only", choices=("rows", "fused"), default=None,
                        help="only the utility rows, or only the fused-step table")
    parser.add_argument("--fused-workloads", nargs="+", default=["mix"],
                        help="workloads of the fused clip+step+EMA table (100M: ~6 GB)")
    parser.add_argument("--fused-optimizer", default=FUSED_DEFAULT,
                        choices=list(OPTIMIZERS),
                        help="benchmark configuration of the fused table: one that torch has "
                             f"fused=True for and that reads at most 4 arrays (default {FUSED_DEFAULT})")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        fo.set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
    print(f"fastoptim threads {fo.get_num_threads()}, torch threads {torch.get_num_threads()}, float32")
    if args.only != "fused":
        print(f"{'row':36s} {'workload':9s} {'fastoptim':>11s} {'torch':>11s} {'ratio':>7s}")
        for name, fn, workloads in ROWS:
            for w in workloads:
                ours, theirs = fn(torch, WORKLOADS[w].get_shapes(), args.repeats, args.number)
                print(f"{name:36s} {w:9s} {ours * 1e3:9.3f}ms {theirs * 1e3:9.3f}ms {theirs / ours:6.2f}x",
                      flush=True)
    if args.only != "rows":
        config = OPTIMIZERS[args.fused_optimizer]
        name = config.info.name
        print(f"fused clip+{name}+EMA (clip_grad_norm_(fused_with=opt) + opt.step() with "
              f"AveragedModel(fused_with=opt)) vs the three separate fastoptim calls vs torch "
              f"(clip_grad_norm_(foreach=True) + {config.info.torch_name}(fused=True) + AveragedModel "
              f"EMA); bound: the fused step's bytes at the stream kernel's bandwidth; norm: "
              f"get_total_norm alone, part of all three")
        print(f"{'workload':9s} {'fused':>10s} {'separate':>10s} {'torch':>10s} {'bound':>10s} "
              f"{'norm':>10s} {'sep/fused':>9s} {'torch/fused':>11s} {'%bound':>7s} bitwise")
        for w in args.fused_workloads:
            f, s, t, bound, norm, same = bench_fused(torch, WORKLOADS[w].get_shapes(), args.repeats,
                                                     args.number, config)
            print(f"{w:9s} {f * 1e3:8.2f}ms {s * 1e3:8.2f}ms {t * 1e3:8.2f}ms {bound * 1e3:8.2f}ms "
                  f"{norm * 1e3:8.2f}ms "
                  f"{s / f:8.2f}x {t / f:10.2f}x {100 * bound / f:6.0f}% {'yes' if same else 'NO'}",
                  flush=True)


if __name__ == "__main__":
    main()
