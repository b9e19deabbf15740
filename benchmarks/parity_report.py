"""Parity of fastoptim's kernels with torch.optim 2.13, configuration by configuration.

For every SGD and Adam/AdamW kernel configuration of the optimizer table
(``fastoptim/optim/registry.py``), in float32 and float64,
runs ``STEPS`` steps of torch and of ``fastoptim.functional`` side by side on ``SIZE`` elements and
prints, per configuration:

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
from fastoptim import functional as F
from fastoptim.optim.registry import OPTIMIZERS

SGD_CONFIGS = OPTIMIZERS["SGD"].kernel_configs
ADAM_CONFIGS = OPTIMIZERS["Adam"].kernel_configs

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


def _sgd(cfg, dtype, rng):
    p0 = rng.standard_normal(SIZE).astype(dtype)
    tp = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    opt = torch.optim.SGD([tp], **cfg)
    p, bufs = p0.copy(), [None]
    step_mism = step_ulp = 0
    for _ in range(STEPS):
        g = rng.standard_normal(SIZE).astype(dtype)
        buf = opt.state[tp].get("momentum_buffer")
        before = (tp.detach().numpy().copy(), None if buf is None else buf.clone())
        tp.grad = torch.from_numpy(g.copy())
        opt.step()
        one, b = before[0].copy(), [None if before[1] is None else before[1].numpy()]
        F.sgd([one], [g], b, **cfg)
        want = tp.detach().numpy()
        step_mism += int((bits(one) != bits(want)).sum())
        step_ulp = max(step_ulp, _ulps(one, want, before[0]))
        F.sgd([p], [g], bufs, **cfg)
    want = tp.detach().numpy()
    rel = float(np.abs(p.astype(np.float64) - want).max() / np.abs(want).max())
    return step_mism, step_ulp, int((bits(p) != bits(want)).sum()), rel


def _adam(cfg, dtype, rng):
    p0 = rng.standard_normal(SIZE).astype(dtype)
    tp = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    opt = torch.optim.Adam([tp], lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["eps"],
                           weight_decay=cfg["weight_decay"], amsgrad=cfg["amsgrad"],
                           maximize=cfg["maximize"], decoupled_weight_decay=cfg["decoupled_weight_decay"])
    p = p0.copy()
    state = [[np.zeros_like(p)] for _ in range(3)]
    steps = [0]
    step_mism = step_ulp = 0
    for s in range(STEPS):
        g = rng.standard_normal(SIZE).astype(dtype)
        st = opt.state[tp]
        before = [tp.detach().numpy().copy()] + [
            st[k].numpy().copy() if k in st else np.zeros_like(p) for k in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")]
        tp.grad = torch.from_numpy(g.copy())
        opt.step()
        one, m, v, x = (a.copy() for a in before)
        F.adam([one], [g], [m], [v], [x], [s], **cfg)
        want = tp.detach().numpy()
        step_mism += int((bits(one) != bits(want)).sum())
        step_ulp = max(step_ulp, _ulps(one, want, before[0]))
        F.adam([p], [g], state[0], state[1], state[2], steps, **cfg)
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
    for kind, configs, run in (("sgd", SGD_CONFIGS, _sgd), ("adam", ADAM_CONFIGS, _adam)):
        for cfg in configs:
            for dtype in (np.float32, np.float64):
                sm, su, tm, rel = run(cfg, dtype, rng)
                desc = kind + " " + ", ".join(f"{k}={v}" for k, v in cfg.items()
                                              if v not in (False, 0.0) or k == "lr")
                print(f"{desc[:70]:70s} {np.dtype(dtype).name:7s} {sm:10d} {su:8d} {tm:10d} {rel:9.1e}")


if __name__ == "__main__":
    main()
