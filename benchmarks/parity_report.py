"""Parity of fastoptim's kernels with torch.optim 2.13, configuration by configuration.

For every kernel configuration of every optimizer of the optimizer table
(``fastoptim/optim/registry.py``: the entries with ``kernel_configs`` whose class torch has), in
float32 and float64, runs ``STEPS`` steps of torch and of the optimizer's form in
``fastoptim.functional`` side by side on ``SIZE`` elements and prints, per configuration:

* ``step mism`` / ``step ulp``: one step from torch's own state each time (so errors cannot
  accumulate): the number of parameter elements whose bits differ from torch, summed over all
  steps, and the largest difference in ulps of the larger of the new value and the update;
* ``traj mism`` / ``traj rel``: the free-running trajectories after ``STEPS`` steps: elements
  that differ, and the largest difference relative to the parameter's scale (max |p|).

SGD must show zeros everywhere.

The second table (``--classes``) is the round-2 elementwise optimizers at class level, the way a
training script runs them: every test configuration of the registry, float32 and float64,
``CLASS_STEPS`` steps over ``CLASS_ARRAYS`` small arrays in three param groups, some parameters
(and once in a while a whole group) without a gradient. Four runs get the same gradients: fastoptim's
class, torch's class on its single-tensor path (``foreach=False``, torch's default on CPU), torch's
``foreach=True`` path, its ``fused=True`` path where torch has one on CPU (SGD, Adam, AdamW,
Adagrad), and the single-tensor path with the IEEE square root (torch's own is a vector-library
routine that is not correctly rounded). Per optimizer and dtype it prints, over all
configurations, for fastoptim against torch's single-tensor path and for torch's foreach and fused
paths against the same single-tensor path: the share of parameter elements whose bits differ at the end,
the largest elementwise ulp distance, and the largest distance in ulps of the array's largest
magnitude so far, at any step (``norm ulp``, as the parity tests bound it); then fastoptim with the
IEEE square root (``fastoptim._dispatch.ieee_sqrt``) against the IEEE-sqrt run (``ieee mism``: 0
means the square root is the only difference). Where fastoptim takes torch's square root (an Intel
CPU with AVX-512, ``fastoptim._dispatch.TORCH_SQRT``, printed first) the fastoptim columns are its
default run; elsewhere they are the IEEE root's. Lion is not in torch: its reference formula in
torch ops stands in for the single-tensor path.

Run: ``python benchmarks/parity_report.py [threads] [--classes | --kernels] [--only=NAME,...]``
(needs torch; both tables by default; ``--only`` limits the class table to those optimizers).
"""
import contextlib
import inspect
import sys

import numpy as np
import torch

import fastoptim as fo
from fastoptim import _dispatch
from fastoptim._kernels.spec import KERNELS
from fastoptim.optim.registry import OPTIMIZERS
from fastoptim.tools.bench import OptimizerConfig
from fastoptim.tools.peers import _state_lists

STEPS = 100
SIZE = 100_003


def bits(a):
    """The bit patterns of a float array, to compare it exactly."""
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def _ulps(ours, theirs, before):
    """Largest |ours - theirs| in ulps of the larger of the new value and the update: an error
    of one ulp in a step that moves a parameter across zero is not a million ulps of the result."""
    scale = np.maximum(np.abs(theirs), np.abs(theirs.astype(np.float64) - before)).astype(theirs.dtype)
    return int(np.max(np.abs(ours.astype(np.float64) - theirs) / np.spacing(scale)))


def _class_kwargs(info, cfg):
    """The class (and torch) keyword arguments of the functional keyword arguments ``cfg``: a
    tuple-valued hyperparameter (``betas``) is put back together from its entries."""
    kwargs, tuples = {}, {}
    for name, key, index in info.scalar_access:
        if index is None:
            kwargs[key] = cfg[name]
        else:
            tuples.setdefault(key, {})[index] = cfg[name]
    for key, entries in tuples.items():
        kwargs[key] = tuple(entries[i] for i in sorted(entries))
    kwargs.update({flag: cfg[flag] for flag in info.flags if flag in cfg})
    return kwargs


def _torch_state(info, opt, tp, fresh):
    """fastoptim's state lists for one parameter holding torch's current state (``fresh`` where
    torch has none yet, before its first step)."""
    state = opt.state[tp]
    keys = info.buffers + info.kernel_spec.extra_keys
    lists = []
    for key, values in zip(keys, fresh):
        if not values or key not in state:     # a buffer switched off, or no state yet
            lists.append([v if v is None else v.copy() for v in values])
        else:
            lists.append([np.asarray(state[key].numpy(), dtype=values[0].dtype
                                     if values[0] is not None else None).copy()])
    if info.kernel_spec.steps:
        lists.append([int(state["step"]) if "step" in state else 0])
    return lists


def _run(info, cfg, dtype, rng):
    kwargs = _class_kwargs(info, cfg)
    p0 = rng.standard_normal(SIZE).astype(dtype)
    tp = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    opt = getattr(torch.optim, info.torch_name)([tp], **kwargs)
    config = OptimizerConfig(info.name, info.name, info.name,
                             {k: v for k, v in kwargs.items() if k != "lr"}, lr=kwargs["lr"])
    p = p0.copy()
    trajectory, _ = _state_lists(config, [p])
    step_mism = step_ulp = 0
    for _ in range(STEPS):
        g = rng.standard_normal(SIZE).astype(dtype)
        fresh, _ = _state_lists(config, [p0])
        before = tp.detach().numpy().copy()
        lists = _torch_state(info, opt, tp, fresh)
        tp.grad = torch.from_numpy(g.copy())
        opt.step()
        one = before.copy()
        info.functional([one], [g], *lists, **cfg)
        want = tp.detach().numpy()
        step_mism += int((bits(one) != bits(want)).sum())
        step_ulp = max(step_ulp, _ulps(one, want, before))
        info.functional([p], [g], *trajectory, **cfg)
    want = tp.detach().numpy()
    rel = float(np.abs(p.astype(np.float64) - want).max() / np.abs(want).max())
    return step_mism, step_ulp, int((bits(p) != bits(want)).sum()), rel


def kernel_table():
    print(f"{STEPS} steps x {SIZE} elements, {fo.get_num_threads()} thread(s); step = one step from torch's state")
    print(f"{'config':70s} {'dtype':7s} {'step mism':>10s} {'step ulp':>8s} {'traj mism':>10s} {'traj rel':>9s}")
    rng = np.random.default_rng(0)
    for info in OPTIMIZERS.values():
        if not info.kernel_configs or not hasattr(torch.optim, info.torch_name):
            continue
        for cfg in info.kernel_configs:
            for dtype in (np.float32, np.float64):
                sm, su, tm, rel = _run(info, cfg, dtype, rng)
                desc = info.kernel + " " + ", ".join(f"{k}={v}" for k, v in cfg.items()
                                              if v not in (False, 0.0) or k == "lr")
                print(f"{desc[:70]:70s} {np.dtype(dtype).name:7s} {sm:10d} {su:8d} {tm:10d} {rel:9.1e}")


# ------------------------------------------------------------------------------------------------
# class level: fastoptim's deviation from torch next to torch's own foreach-vs-single deviation
# ------------------------------------------------------------------------------------------------

# every optimizer of the registry with a compiled elementwise kernel (the nine of round 2 and the
# three of round 1, whose kernel-level table is above)
CLASS_NAMES = tuple(name for name, info in OPTIMIZERS.items() if info.kernel in KERNELS)
CLASS_STEPS = 160
CLASS_ARRAYS = 48


@contextlib.contextmanager
def ieee_sqrt():
    """torch's single-tensor path with the correctly rounded square root (NumPy's)."""
    saved = torch.Tensor.sqrt, torch.Tensor.sqrt_, torch.sqrt

    def sqrt(t):
        return torch.from_numpy(np.sqrt(t.numpy()))

    torch.Tensor.sqrt, torch.Tensor.sqrt_, torch.sqrt = sqrt, lambda t: t.copy_(sqrt(t)), sqrt
    try:
        yield
    finally:
        torch.Tensor.sqrt, torch.Tensor.sqrt_, torch.sqrt = saved


def _groups(config, params):
    thirds = np.array_split(np.arange(len(params)), 3)
    extra = [{}, dict(config.group_overrides), {"lr": 0.002}]
    return [{"params": [params[i] for i in idx], **kw} for idx, kw in zip(thirds, extra)]


def _torch_optimizer(config, params, run):
    info = OPTIMIZERS[config.optimizer]
    if not info.in_torch:  # its reference formula in torch ops, from its class file
        return info.peer_rule("reference")(torch, _groups(config, params), **config.kwargs)
    groups = [{**g, **config.torch_kwargs({k: v for k, v in g.items() if k != "params"})}
              for g in _groups(config, params)]
    flags = {"fused": {"fused": True}, "foreach": {"foreach": True}}.get(run, {"foreach": False})
    return config.make_torch(groups, **flags)


def _has_fused(name):
    """Whether torch's class of this optimizer has a fused CPU path (``fused=True``)."""
    info = OPTIMIZERS[name]
    return info.in_torch and "fused" in inspect.signature(getattr(torch.optim, info.torch_name)).parameters


def _ulp_distance(a, b):
    itype = np.int32 if a.dtype == np.float32 else np.int64
    ia, ib = a.view(itype).astype(np.int64), b.view(itype).astype(np.int64)
    top = np.int64(-(2**31)) if a.dtype == np.float32 else np.int64(-(2**63))
    return np.abs(np.where(ia < 0, top - ia, ia) - np.where(ib < 0, top - ib, ib))


class _Deviation:
    """Running deviation of one run from a reference run."""

    def __init__(self):
        self.mism = self.total = self.ulp = 0
        self.norm_ulp = 0.0

    def step(self, ours, theirs, scales):
        for a, b, scale in zip(ours, theirs, scales):
            if scale > 0:
                diff = float(np.abs(a.astype(np.float64) - b).max())
                self.norm_ulp = max(self.norm_ulp, diff / float(np.spacing(a.dtype.type(scale))))

    def end(self, ours, theirs):
        for a, b in zip(ours, theirs):
            d = _ulp_distance(a, b)
            self.mism += int(np.count_nonzero(d))
            self.total += a.size
            self.ulp = max(self.ulp, int(d.max()))

    failure = None

    def cells(self):
        if self.failure:
            return [f"{'torch':>8s}", f"{'raised':>8s}", f"{self.failure[:8]:>8s}"]
        return [f"{self.mism / max(self.total, 1):8.2%}", f"{self.ulp:8d}", f"{self.norm_ulp:8.1f}"]


def _class_run(config, dtype, seed, devs):
    rng = np.random.default_rng(seed)
    sizes = [int(rng.integers(1, 300)) for _ in range(CLASS_ARRAYS - 2)] + [1031, 4097]
    start = [rng.standard_normal(s).astype(dtype) for s in sizes]
    ours = [fo.Parameter(x.copy()) for x in start]
    opt = config.make(_groups(config, ours))
    ours_ieee = [fo.Parameter(x.copy()) for x in start]        # fastoptim with the IEEE root
    opt_ieee = config.make(_groups(config, ours_ieee))
    runs = {}
    has_torch = OPTIMIZERS[config.optimizer].in_torch
    names = (("single", "foreach", "ieee") + (("fused",) if _has_fused(config.optimizer) else ())
             if has_torch else ("single",))
    for run in names:
        tps = [torch.nn.Parameter(torch.from_numpy(x.copy())) for x in start]
        runs[run] = (tps, _torch_optimizer(config, tps, run))
    scales = [float(np.abs(x).max()) for x in start]
    second = set(np.array_split(np.arange(len(sizes)), 3)[1].tolist())     # the second group
    for t in range(CLASS_STEPS):
        for j, p in enumerate(ours):
            none = (t + j) % 7 == 3 or (t % 50 == 25 and j in second)
            g = None if none else rng.standard_normal(p.shape).astype(dtype)
            p.grad = g
            ours_ieee[j].grad = g
            for tps, _ in runs.values():
                tps[j].grad = None if g is None else torch.from_numpy(g.copy())
        opt.step()
        with _dispatch.ieee_sqrt():
            opt_ieee.step()
        for run, (_, topt) in list(runs.items()):
            try:
                with ieee_sqrt() if run == "ieee" else contextlib.nullcontext():
                    topt.step()
            except (RuntimeError, TypeError) as exc:
                if run != "fused":
                    raise
                # torch 2.13's fused CPU SGD fails on a momentum buffer it never created (a
                # parameter without a gradient at its first step): that column says so
                devs["fused"].failure = f"{type(exc).__name__}"
                del runs[run]
        single = [tp.detach().numpy() for tp in runs["single"][0]]
        scales = [max(s, float(np.abs(x).max())) for s, x in zip(scales, single)]
        devs["fo"].step([np.asarray(p) for p in ours], single, scales)
        for run in ("foreach", "fused"):
            if run in runs:
                devs[run].step([tp.detach().numpy() for tp in runs[run][0]], single, scales)
    single = [tp.detach().numpy() for tp in runs["single"][0]]
    devs["fo"].end([np.asarray(p) for p in ours], single)
    for run in ("foreach", "fused"):
        if run in runs:
            devs[run].end([tp.detach().numpy() for tp in runs[run][0]], single)
    if has_torch:
        devs["ieee"].end([np.asarray(p) for p in ours_ieee], [tp.detach().numpy() for tp in runs["ieee"][0]])


def class_table():
    print(f"\nClasses: every registry configuration, {CLASS_STEPS} steps, {CLASS_ARRAYS} arrays "
          "(1-4097 elements) in 3 groups, some grads None; deviation from torch's single-tensor path")
    head = ["mism", "max ulp", "norm ulp"]
    print(f"{'optimizer':9s} {'dtype':7s} {'configs':>7s} | fastoptim: " + " ".join(f"{h:>8s}" for h in head)
          + " | torch foreach: " + " ".join(f"{h:>8s}" for h in head)
          + " | torch fused:   " + " ".join(f"{h:>8s}" for h in head) + " | ieee mism")
    only = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--only=")]
    names = [n for n in CLASS_NAMES if not only or n in only[0].split(",")]
    for name in names:
        for dtype in (np.float32, np.float64):
            devs = {"fo": _Deviation(), "foreach": _Deviation(), "fused": _Deviation(), "ieee": _Deviation()}
            configs = OPTIMIZERS[name].configs
            for k, config in enumerate(configs):
                _class_run(config, dtype, k, devs)
            in_torch = OPTIMIZERS[name].in_torch
            foreach = devs["foreach"].cells() if in_torch else ["-".rjust(8)] * 3
            fused = devs["fused"].cells() if _has_fused(name) else ["-".rjust(8)] * 3
            ieee = f"{devs['ieee'].mism:9d}" if in_torch else "-".rjust(9)
            print(f"{name:9s} {np.dtype(dtype).name:7s} {len(configs):7d} |            "
                  + " ".join(devs["fo"].cells()) + " |                "
                  + " ".join(foreach) + " |                " + " ".join(fused) + " | " + ieee, flush=True)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    threads = int(args[0]) if args else 1
    fo.set_num_threads(threads)
    torch.set_num_threads(threads)
    print(f"fastoptim {_dispatch.VARIANT} kernels, square root: "
          + ("torch's (MKL's AVX-512 routine)" if _dispatch.TORCH_SQRT else "IEEE"))
    if "--classes" not in sys.argv:
        kernel_table()
    if "--kernels" not in sys.argv:
        class_table()


if __name__ == "__main__":
    main()
