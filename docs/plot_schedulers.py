"""Draw the learning rate of every fastoptim scheduler over 100 steps, one PNG per scheduler.

The docs build runs this script; the images land in ``docs/_static/schedulers/`` (build outputs,
kept out of git) and ``docs/schedulers.rst`` shows them::

    python docs/plot_schedulers.py                 # writes docs/_static/schedulers/*.png
    python docs/plot_schedulers.py --out /tmp/x    # somewhere else
    python docs/plot_schedulers.py StepLR CyclicLR # only these

Every curve is a real run: a fastoptim optimizer is stepped, then the scheduler, exactly as in
training, and the lr of ``param_groups[0]`` is recorded after construction and after each step.
The code shown under each plot in the docs is the ``code`` string of its entry below.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

import fastoptim as fo
from fastoptim import lr_scheduler as ls

OUT_DIR = Path(__file__).resolve().parent / "_static" / "schedulers"
STEPS = 100


def noisy_loss(step):
    """A validation loss that improves, stalls, then improves a little again."""
    return 1.0 / (1.0 + 0.2 * min(step, 30)) + 0.03 * math.sin(1.3 * step) + (0.0 if step < 60 else -0.05)


@dataclass(frozen=True)
class Schedule:
    name: str  # the class drawn; also the PNG's file name
    code: str  # what the docs show: ``sched = ...`` given ``opt``
    make: Callable  # opt -> scheduler
    optimizer: str = "SGD"
    metric: Optional[Callable[[int], float]] = None  # ReduceLROnPlateau's step argument
    momentum: bool = False  # also draw the cycled momentum


SCHEDULES = [
    Schedule("LambdaLR", "LambdaLR(opt, lr_lambda=lambda epoch: 1 / (1 + 0.05 * epoch))",
             lambda opt: ls.LambdaLR(opt, lr_lambda=lambda epoch: 1 / (1 + 0.05 * epoch))),
    Schedule("MultiplicativeLR", "MultiplicativeLR(opt, lr_lambda=lambda epoch: 0.97)",
             lambda opt: ls.MultiplicativeLR(opt, lr_lambda=lambda epoch: 0.97)),
    Schedule("StepLR", "StepLR(opt, step_size=30, gamma=0.5)",
             lambda opt: ls.StepLR(opt, step_size=30, gamma=0.5)),
    Schedule("MultiStepLR", "MultiStepLR(opt, milestones=[20, 50, 80], gamma=0.3)",
             lambda opt: ls.MultiStepLR(opt, milestones=[20, 50, 80], gamma=0.3)),
    Schedule("ConstantLR", "ConstantLR(opt, factor=0.25, total_iters=20)",
             lambda opt: ls.ConstantLR(opt, factor=0.25, total_iters=20)),
    Schedule("LinearLR", "LinearLR(opt, start_factor=0.05, end_factor=1.0, total_iters=25)",
             lambda opt: ls.LinearLR(opt, start_factor=0.05, end_factor=1.0, total_iters=25)),
    Schedule("ExponentialLR", "ExponentialLR(opt, gamma=0.96)",
             lambda opt: ls.ExponentialLR(opt, gamma=0.96)),
    Schedule("PolynomialLR", "PolynomialLR(opt, total_iters=80, power=2.0)",
             lambda opt: ls.PolynomialLR(opt, total_iters=80, power=2.0)),
    Schedule("CosineAnnealingLR", "CosineAnnealingLR(opt, T_max=100, eta_min=0.001)",
             lambda opt: ls.CosineAnnealingLR(opt, T_max=100, eta_min=0.001)),
    Schedule("CosineAnnealingWarmRestarts", "CosineAnnealingWarmRestarts(opt, T_0=10, T_mult=2, eta_min=0.001)",
             lambda opt: ls.CosineAnnealingWarmRestarts(opt, T_0=10, T_mult=2, eta_min=0.001)),
    Schedule("CyclicLR", "CyclicLR(opt, base_lr=0.01, max_lr=0.1, step_size_up=10, mode=\"triangular2\")",
             lambda opt: ls.CyclicLR(opt, base_lr=0.01, max_lr=0.1, step_size_up=10, mode="triangular2"),
             momentum=True),
    Schedule("OneCycleLR", "OneCycleLR(opt, max_lr=0.1, total_steps=101)",
             lambda opt: ls.OneCycleLR(opt, max_lr=0.1, total_steps=101), optimizer="Adam", momentum=True),
    Schedule("SequentialLR",
             "SequentialLR(opt, [LinearLR(opt, 0.05, total_iters=10), CosineAnnealingLR(opt, T_max=90)], milestones=[10])",
             lambda opt: ls.SequentialLR(opt, [ls.LinearLR(opt, 0.05, total_iters=10),
                                               ls.CosineAnnealingLR(opt, T_max=90)], milestones=[10])),
    Schedule("ChainedScheduler",
             "ChainedScheduler([ConstantLR(opt, factor=0.3, total_iters=10), ExponentialLR(opt, gamma=0.97)])",
             lambda opt: ls.ChainedScheduler([ls.ConstantLR(opt, factor=0.3, total_iters=10),
                                              ls.ExponentialLR(opt, gamma=0.97)])),
    Schedule("ReduceLROnPlateau", "ReduceLROnPlateau(opt, factor=0.5, patience=5)",
             lambda opt: ls.ReduceLROnPlateau(opt, factor=0.5, patience=5), metric=noisy_loss),
]


def trace(schedule: Schedule, steps: int = STEPS):
    """Run the schedule; return the lrs and momentums (SGD ``momentum`` or Adam ``betas[0]``)."""
    param = fo.Parameter(np.zeros(4))
    if schedule.optimizer == "Adam":
        opt = fo.Adam([param], lr=0.1)
    else:
        opt = fo.SGD([param], lr=0.1, momentum=0.9)
    sched = schedule.make(opt)

    def momentum():
        group = opt.param_groups[0]
        return group["betas"][0] if "betas" in group else group["momentum"]

    lrs, momentums = [opt.param_groups[0]["lr"]], [momentum()]
    for step in range(steps):
        param.grad = np.zeros(4)
        opt.step()
        if schedule.metric is None:
            sched.step()
        else:
            sched.step(schedule.metric(step))
        lrs.append(opt.param_groups[0]["lr"])
        momentums.append(momentum())
    return lrs, momentums


def draw(schedule: Schedule, out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    lrs, momentums = trace(schedule)
    steps = np.arange(len(lrs))
    fig, ax = plt.subplots(figsize=(6.4, 2.6), dpi=100, layout="constrained")
    ax.step(steps, lrs, where="post", color="tab:blue", linewidth=1.8, label="lr")
    ax.set_xlim(0, len(lrs) - 1)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("scheduler.step() calls")
    ax.set_ylabel("lr", color="tab:blue")
    ax.grid(True, alpha=0.3)
    ax.set_title(schedule.name, fontsize=11, loc="left", fontweight="bold")
    if schedule.momentum:
        twin = ax.twinx()
        label = "betas[0]" if schedule.optimizer == "Adam" else "momentum"
        twin.step(steps, momentums, where="post", color="tab:orange", linewidth=1.2, linestyle="--")
        twin.set_ylabel(label, color="tab:orange")
    if schedule.metric is not None:
        twin = ax.twinx()
        twin.plot(steps[1:], [schedule.metric(i) for i in range(len(lrs) - 1)], color="tab:gray",
                  linewidth=0.9, alpha=0.8)
        twin.set_ylabel("val loss", color="tab:gray")
    path = out_dir / f"{schedule.name}.png"
    # No timestamps or version strings: the same curves give the same file.
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="schedulers to draw (default: all)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"output directory (default: {OUT_DIR})")
    args = parser.parse_args(argv)
    known = [schedule.name for schedule in SCHEDULES]
    unknown = sorted(set(args.names) - set(known))
    if unknown:
        parser.error(f"unknown scheduler(s) {', '.join(unknown)}; choose from {', '.join(known)}")

    import matplotlib

    matplotlib.use("Agg")
    args.out.mkdir(parents=True, exist_ok=True)
    for schedule in SCHEDULES:
        if args.names and schedule.name not in args.names:
            continue
        path = draw(schedule, args.out)
        print(f"{path} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
