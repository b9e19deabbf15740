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

SGD must show zeros everywhere. Run: ``python benchmarks/parity_report.py [threads]`` (needs torch).
"""
import sys

import numpy as np
import torch

import fastoptim as fo
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


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    fo.set_num_threads(threads)
    torch.set_num_threads(threads)
    print(f"{STEPS} steps x {SIZE} elements, {threads} thread(s); step = one step from torch's state")
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


if __name__ == "__main__":
    main()
