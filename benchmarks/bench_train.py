"""Training utilities against torch, side by side in one process: gradient clipping, the EMA
update and Adafactor; and the fused training step (clip + step + EMA in one pass, for the
two-moment optimizer of the benchmark suite's configurations by default).

    python benchmarks/bench_train.py                 # mix and 1000x1k, float32, default threads
    python benchmarks/bench_train.py --repeats 5 --threads 1
    python benchmarks/bench_train.py --stat min      # best round instead of the median
    python benchmarks/bench_train.py --only fused --fused-workloads 100M mix --threads 2

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
    from fastoptim.tools.bench import OPTIMIZERS, WORKLOADS
except ImportError:
    from fastoptim.bench import OPTIMIZERS, WORKLOADS

FUSED_DEFAULT = list(OPTIMIZERS)[1]


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


def _fused_trio(torch, shapes, config, decay=0.999):
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

    # Every call must really clip: the fused path leaves its gradients alone, so a max_norm of
    # half their norm always scales them; the separate path clips its gradients in memory, so
    # from the second call on its max_norm follows 0.999 x its previous norm (a fixed one would
    # leave a coefficient of exactly 1, whose scaling pass clip_grad_norm_ skips). The bitwise
    # check runs before the timing with the same max_norm on both paths (limits["track"] False).
    limits = {"fused": 0.5 * float(fo.get_total_norm([p.grad for p in fps_b])), "track": False}
    limits["separate"] = limits["fused"]

    def separate():
        norm = fo.clip_grad_norm_(fps_a, limits["separate"])
        if limits["track"]:
            limits["separate"] = 0.999 * float(norm)
        opt_a.step()
        ema_a.update_parameters(fps_a)

    def fused():
        fo.clip_grad_norm_(fps_b, limits["fused"], fused_with=opt_b)
        opt_b.step()

    def theirs():
        torch.nn.utils.clip_grad_norm_(tps, limits["fused"], foreach=True)
        topt.step()
        tema.update_parameters(model)

    return fused, separate, theirs, (fps_a, ema_a, fps_b, ema_b, opt_b, limits)


def bench_fused(torch, shapes, repeats, number, config, stat=statistics.median):
    """Times (fused, separate, torch, bound of the fused step, the norm pass alone) and whether fused == separate bit
    for bit (params and EMA after two steps from the same start, checked before the timing).

    The bound: the bandwidth kernel moving the fused pass's arrays (the optimizer's k arrays and
    the EMA: read k + 1, write k) over the same shapes, plus the read-only norm pass (scaled by
    its share of the bytes)."""
    from fastoptim._stream import StreamPlan

    fused, separate, theirs, (fps_a, ema_a, fps_b, ema_b, opt, limits) = _fused_trio(torch, shapes, config)
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
    limits["track"] = True
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
    return (stat(a), stat(b), stat(c),
            stat(d) * (2 * k + 2) / (2 * k + 1), stat(e), same)


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
    stat = statistics.median if args.stat == "median" else min
    threads = fo.get_num_threads()
    print(f"fastoptim threads {threads}, torch threads {torch.get_num_threads()}, float32, "
          f"{args.stat} of {args.repeats} rounds x {args.number} calls")
    if args.only != "fused":
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
                                                     args.number, config, stat)
            print(f"{w:9s} {f * 1e3:8.2f}ms {s * 1e3:8.2f}ms {t * 1e3:8.2f}ms {bound * 1e3:8.2f}ms "
                  f"{norm * 1e3:8.2f}ms "
                  f"{s / f:8.2f}x {t / f:10.2f}x {100 * bound / f:6.0f}% {'yes' if same else 'NO'}",
                  flush=True)


if __name__ == "__main__":
    main()
