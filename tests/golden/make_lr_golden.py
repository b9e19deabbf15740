"""The lr-scheduler configurations of the parity tests, their runner, and the golden-file generator.

One table (:data:`CASES`) drives three things:

* ``tests/test_lr_scheduler.py`` runs every case with fastoptim and with torch and requires the
  same Python floats at every step (lrs, side-effect keys of the param groups, ``last_epoch``,
  ``get_last_lr()``, ``base_lrs``), the same warnings and the same ``state_dict()``;
* the same test file resumes every case from state dicts in the middle of the run;
* this script, run with torch installed, writes the sequences of the cases marked ``golden`` to
  ``lr_sequences.json``, which the tests check **without** torch, so parity is still checked on
  machines where torch is missing.

Regenerate with::

    python tests/golden/make_lr_golden.py      # needs torch; rewrites lr_sequences.json

Each case builds its optimizer and scheduler through a *backend* (``torch`` or ``fastoptim``), so
the very same code constructs both. Nothing here imports torch unless ``torch_backend()`` is called.

The golden values contain results of the C library's ``cos`` and ``pow`` (through ``math.cos``
and ``**``), as torch's own values do. They were generated on Linux/glibc; on a platform whose
libm rounds differently a cosine-based value could differ in the last bit, and there the live
comparison with torch (which uses the same libm as fastoptim) is the authoritative check.
"""
from __future__ import annotations

import copy
import json
import math
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

GOLDEN_PATH = Path(__file__).with_name("lr_sequences.json")

# Param-group keys that schedulers read or write.
SIDE_KEYS = ("lr", "initial_lr", "max_lr", "min_lr", "momentum", "betas", "max_momentum", "base_momentum")


# ---------------------------------------------------------------------------------------------
# Backends: the same case code builds a torch or a fastoptim optimizer
# ---------------------------------------------------------------------------------------------


@dataclass
class Backend:
    name: str
    optim: Any  # module with SGD, Adam, AdamW
    lr_scheduler: Any
    make_param: Callable[[], Any]
    set_grad: Callable[[Any], None]


def fastoptim_backend() -> Backend:
    import numpy as np

    import fastoptim as fo
    from fastoptim import lr_scheduler

    def set_grad(p):
        p.grad = np.ones(p.shape, dtype=p.dtype)

    return Backend("fastoptim", fo, lr_scheduler, lambda: fo.Parameter(np.zeros(2)), set_grad)


def torch_backend() -> Backend:
    import torch

    def make_param():
        return torch.zeros(2, dtype=torch.float64, requires_grad=True)

    def set_grad(p):
        p.grad = torch.ones_like(p)

    return Backend("torch", torch.optim, torch.optim.lr_scheduler, make_param, set_grad)


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------


def _default_drive(sched, opt, i):
    sched.step()


@dataclass(frozen=True)
class Case:
    """One optimizer + scheduler configuration and how to drive it for ``steps`` steps.

    ``build(ls, opt)`` creates the scheduler from the backend's ``lr_scheduler`` module;
    ``drive(sched, opt, i)`` performs the scheduler step ``i`` (after ``opt.step()``), e.g. with a
    metric, an ``epoch`` argument or an external change of the lr.
    """

    name: str
    build: Callable[[Any, Any], Any]
    optimizer: str = "SGD"
    opt_kwargs: dict = field(default_factory=lambda: {"lr": 0.1})
    groups: tuple = ({},)
    steps: int = 120
    drive: Callable[[Any, Any, int], None] = _default_drive
    golden: bool = False

    @property
    def scheduler(self) -> str:
        return self.name.split("/")[0]


class Halving:
    """A stateful lr_lambda: ``scale * rate ** epoch``; ``scale`` is saved in the state dict."""

    def __init__(self, rate):
        self.rate = rate
        self.scale = 1.0

    def __call__(self, epoch):
        return self.scale * self.rate**epoch


class StatefulFactor:
    """A stateful MultiplicativeLR lambda: ``factor`` can be changed during training."""

    def __init__(self, factor):
        self.factor = factor

    def __call__(self, epoch):
        return self.factor


class DampedScale:
    """A callable-object ``scale_fn`` for CyclicLR (its ``damping`` is saved in the state dict)."""

    def __init__(self, damping):
        self.damping = damping

    def __call__(self, x):
        return 1.0 / (1.0 + self.damping * (x - 1))


def _metric(i):
    """A noisy, plateauing validation loss (deterministic)."""
    return 1.0 / (1.0 + i) ** 0.3 + 0.05 * math.sin(1.7 * i) + (0.2 if 40 <= i < 60 else 0.0)


def _plateau_drive(sched, opt, i):
    sched.step(_metric(i))


def _accuracy_drive(sched, opt, i):
    # "max" mode: an accuracy that improves in bursts
    sched.step(min(0.99, 0.5 + 0.01 * (i // 7) + 0.001 * math.cos(i)))


def _constant_metric_drive(sched, opt, i):
    sched.step(1.0)


def _reference_metric_drive(sched, opt, i):
    metrics = [1, 1, 1, 0.5, 0.6, 0.7, 0.8, 0.1, 0.2, 0.3]
    sched.step(metrics[i] if i < len(metrics) else 0.3 + 0.001 * (i % 5))


def _epoch_drive(sched, opt, i):
    sched.step(epoch=i + 1)


def _jumping_epoch_drive(sched, opt, i):
    # non-monotonic epochs exercise the closed forms
    sched.step(epoch=(7 * i) % 23 + (i // 23) * 5)


def _external_change_drive(sched, opt, i):
    if i == 40:
        for group in opt.param_groups:
            group["lr"] = group["lr"] * 3.0
    sched.step()


def _halving_drive(sched, opt, i):
    if i == 50:
        for fn in sched.lr_lambdas:
            fn.scale = 0.5
    sched.step()


def _factor_drive(sched, opt, i):
    if i == 30:
        for fn in sched.lr_lambdas:
            fn.factor = 1.01
    sched.step()


def _fractional_epoch_drive(sched, opt, i):
    # epoch + batch / batches_per_epoch, as the CAWR documentation suggests
    sched.step(i // 4 + (i % 4) / 4)


def _irregular_epoch_drive(sched, opt, i):
    sched.step(i * 0.37)


def _cawr_mixed_drive(sched, opt, i):
    if i % 3 == 0:
        sched.step(i * 0.5)
    else:
        sched.step()


def _with_initial_lr(build):
    """Build with ``last_epoch >= 0``, which needs ``initial_lr`` in every group (resume path)."""

    def wrapped(ls, opt):
        for group in opt.param_groups:
            group["initial_lr"] = group["lr"]
        return build(ls, opt)

    return wrapped


def _custom_scheduler(ls, opt):
    class InverseSqrtLR(ls.LRScheduler):
        def get_lr(self):
            return [base_lr / math.sqrt(self.last_epoch + 1) for base_lr in self.base_lrs]

    return InverseSqrtLR(opt)


TWO_GROUPS = ({"lr": 0.1}, {"lr": 0.01})
TWO_GROUPS_MOMENTUM = ({"lr": 0.1, "momentum": 0.9}, {"lr": 0.03, "momentum": 0.5})
SGD_MOMENTUM = {"lr": 0.1, "momentum": 0.9}
ADAM = {"lr": 0.01}

CASES = [
    # LambdaLR
    Case("LambdaLR/exp095", lambda ls, o: ls.LambdaLR(o, lambda e: 0.95**e), golden=True),
    Case("LambdaLR/two-groups-two-lambdas",
         lambda ls, o: ls.LambdaLR(o, [lambda e: 1.0 / (1 + e), lambda e: 0.99**e]), groups=TWO_GROUPS),
    Case("LambdaLR/callable-object-state", lambda ls, o: ls.LambdaLR(o, Halving(0.97)),
         optimizer="Adam", opt_kwargs=ADAM, drive=_halving_drive),
    Case("LambdaLR/epoch-arg", lambda ls, o: ls.LambdaLR(o, lambda e: 1.0 / (1 + 0.1 * e)), drive=_epoch_drive),
    Case("LambdaLR/last_epoch-resume", _with_initial_lr(lambda ls, o: ls.LambdaLR(o, lambda e: 0.9**e, last_epoch=9))),
    # MultiplicativeLR
    Case("MultiplicativeLR/const095", lambda ls, o: ls.MultiplicativeLR(o, lambda e: 0.95), golden=True),
    Case("MultiplicativeLR/two-groups",
         lambda ls, o: ls.MultiplicativeLR(o, [lambda e: 0.99, lambda e: 1.0 if e % 10 else 0.5]), groups=TWO_GROUPS),
    Case("MultiplicativeLR/adam-cosine-factor",
         lambda ls, o: ls.MultiplicativeLR(o, lambda e: 0.97 + 0.03 * math.cos(e)), optimizer="Adam", opt_kwargs=ADAM),
    Case("MultiplicativeLR/callable-object-state", lambda ls, o: ls.MultiplicativeLR(o, StatefulFactor(0.98)),
         drive=_factor_drive),
    Case("MultiplicativeLR/epoch-arg", lambda ls, o: ls.MultiplicativeLR(o, lambda e: 0.98), drive=_epoch_drive),
    # StepLR
    Case("StepLR/step3-gamma05", lambda ls, o: ls.StepLR(o, 3, 0.5)),
    Case("StepLR/two-groups", lambda ls, o: ls.StepLR(o, step_size=7, gamma=0.9), groups=TWO_GROUPS, golden=True),
    Case("StepLR/adam-every-step", lambda ls, o: ls.StepLR(o, step_size=1, gamma=0.97),
         optimizer="Adam", opt_kwargs=ADAM, steps=150),
    Case("StepLR/epoch-jumps", lambda ls, o: ls.StepLR(o, 4, 0.7), drive=_jumping_epoch_drive),
    Case("StepLR/external-change", lambda ls, o: ls.StepLR(o, 10, 0.5), drive=_external_change_drive),
    Case("StepLR/last_epoch-resume", _with_initial_lr(lambda ls, o: ls.StepLR(o, 2, 0.5, last_epoch=3))),
    # MultiStepLR
    Case("MultiStepLR/repeated-milestone", lambda ls, o: ls.MultiStepLR(o, [2, 5, 5, 60], 0.5), golden=True),
    Case("MultiStepLR/two-groups", lambda ls, o: ls.MultiStepLR(o, [30, 60, 90], 0.1), groups=TWO_GROUPS),
    Case("MultiStepLR/unsorted-epoch-jumps", lambda ls, o: ls.MultiStepLR(o, [18, 3, 9, 9], 0.3),
         drive=_jumping_epoch_drive),
    Case("MultiStepLR/adam", lambda ls, o: ls.MultiStepLR(o, milestones=range(10, 100, 10), gamma=0.8),
         optimizer="Adam", opt_kwargs=ADAM),
    # ConstantLR
    Case("ConstantLR/half-4", lambda ls, o: ls.ConstantLR(o, factor=0.5, total_iters=4), golden=True),
    Case("ConstantLR/defaults-two-groups", lambda ls, o: ls.ConstantLR(o), groups=TWO_GROUPS),
    Case("ConstantLR/adam-quarter-50", lambda ls, o: ls.ConstantLR(o, 0.25, 50), optimizer="Adam", opt_kwargs=ADAM),
    Case("ConstantLR/epoch-jumps", lambda ls, o: ls.ConstantLR(o, 0.3, 10), drive=_jumping_epoch_drive),
    # LinearLR
    Case("LinearLR/warmup-4", lambda ls, o: ls.LinearLR(o, start_factor=0.25, total_iters=4), golden=True),
    Case("LinearLR/decay-two-groups", lambda ls, o: ls.LinearLR(o, 1.0, 0.1, 80), groups=TWO_GROUPS),
    Case("LinearLR/defaults-adam", lambda ls, o: ls.LinearLR(o), optimizer="Adam", opt_kwargs=ADAM),
    Case("LinearLR/long-warmup", lambda ls, o: ls.LinearLR(o, 0.1, 1.0, 97)),
    Case("LinearLR/epoch-jumps", lambda ls, o: ls.LinearLR(o, 0.1, 0.9, 30), drive=_jumping_epoch_drive),
    # ExponentialLR
    Case("ExponentialLR/gamma09", lambda ls, o: ls.ExponentialLR(o, 0.9), golden=True),
    Case("ExponentialLR/two-groups", lambda ls, o: ls.ExponentialLR(o, gamma=0.99), groups=TWO_GROUPS, steps=200),
    Case("ExponentialLR/adam-growth", lambda ls, o: ls.ExponentialLR(o, 1.01), optimizer="Adam", opt_kwargs=ADAM),
    Case("ExponentialLR/epoch-jumps", lambda ls, o: ls.ExponentialLR(o, 0.93), drive=_jumping_epoch_drive),
    Case("ExponentialLR/last_epoch-resume",
         _with_initial_lr(lambda ls, o: ls.ExponentialLR(o, 0.9, last_epoch=4))),
    # PolynomialLR
    Case("PolynomialLR/power2-4", lambda ls, o: ls.PolynomialLR(o, total_iters=4, power=2.0), golden=True),
    Case("PolynomialLR/linear-two-groups", lambda ls, o: ls.PolynomialLR(o, 100, 1.0), groups=TWO_GROUPS),
    Case("PolynomialLR/sqrt-adam", lambda ls, o: ls.PolynomialLR(o, 50, 0.5), optimizer="Adam", opt_kwargs=ADAM),
    Case("PolynomialLR/epoch-jumps", lambda ls, o: ls.PolynomialLR(o, 60, 3.0), drive=_jumping_epoch_drive),
    # CosineAnnealingLR
    Case("CosineAnnealingLR/T4-eta001", lambda ls, o: ls.CosineAnnealingLR(o, T_max=4, eta_min=0.01)),
    Case("CosineAnnealingLR/T50-two-groups", lambda ls, o: ls.CosineAnnealingLR(o, 50), groups=TWO_GROUPS,
         golden=True),
    Case("CosineAnnealingLR/T7-adam", lambda ls, o: ls.CosineAnnealingLR(o, 7, 1e-4), optimizer="Adam",
         opt_kwargs=ADAM),
    Case("CosineAnnealingLR/epoch-jumps", lambda ls, o: ls.CosineAnnealingLR(o, 10, 0.001),
         drive=_jumping_epoch_drive),
    Case("CosineAnnealingLR/external-change", lambda ls, o: ls.CosineAnnealingLR(o, 30),
         drive=_external_change_drive),
    Case("CosineAnnealingLR/last_epoch-resume",
         _with_initial_lr(lambda ls, o: ls.CosineAnnealingLR(o, 10, 0.001, last_epoch=5))),
    # CosineAnnealingWarmRestarts
    Case("CosineAnnealingWarmRestarts/T3-mult2",
         lambda ls, o: ls.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2), golden=True),
    Case("CosineAnnealingWarmRestarts/T10-two-groups",
         lambda ls, o: ls.CosineAnnealingWarmRestarts(o, 10, 1, 0.001), groups=TWO_GROUPS),
    Case("CosineAnnealingWarmRestarts/fractional-mult3",
         lambda ls, o: ls.CosineAnnealingWarmRestarts(o, 5, 3), drive=_irregular_epoch_drive, golden=True),
    Case("CosineAnnealingWarmRestarts/fractional-batches",
         lambda ls, o: ls.CosineAnnealingWarmRestarts(o, 2, 1, 1e-3), drive=_fractional_epoch_drive),
    Case("CosineAnnealingWarmRestarts/mixed-adam",
         lambda ls, o: ls.CosineAnnealingWarmRestarts(o, 4, 2), optimizer="Adam", opt_kwargs=ADAM,
         drive=_cawr_mixed_drive),
    # CyclicLR
    Case("CyclicLR/triangular-no-momentum",
         lambda ls, o: ls.CyclicLR(o, 0.01, 0.1, step_size_up=2, cycle_momentum=False)),
    Case("CyclicLR/triangular2-sgd-momentum",
         lambda ls, o: ls.CyclicLR(o, [0.01, 0.001], [0.1, 0.02], step_size_up=5, step_size_down=3,
                                   mode="triangular2"),
         groups=TWO_GROUPS_MOMENTUM, opt_kwargs=SGD_MOMENTUM, golden=True),
    Case("CyclicLR/exp_range-adam-betas",
         lambda ls, o: ls.CyclicLR(o, 0.001, 0.01, step_size_up=7, mode="exp_range", gamma=0.97),
         optimizer="Adam", opt_kwargs=ADAM, golden=True),
    Case("CyclicLR/scale_fn-iterations",
         lambda ls, o: ls.CyclicLR(o, 0.01, 0.1, 4, scale_fn=lambda x: 1 / (1 + 0.01 * x),
                                   scale_mode="iterations", base_momentum=[0.7], max_momentum=[0.95]),
         opt_kwargs=SGD_MOMENTUM),
    Case("CyclicLR/scale_fn-object-adamw",
         lambda ls, o: ls.CyclicLR(o, 0.001, 0.01, 6, 2, scale_fn=DampedScale(0.3)),
         optimizer="AdamW", opt_kwargs=ADAM),
    Case("CyclicLR/epoch-arg", lambda ls, o: ls.CyclicLR(o, 0.01, 0.1, 3, cycle_momentum=False),
         drive=_epoch_drive),
    # OneCycleLR
    Case("OneCycleLR/cos-no-momentum",
         lambda ls, o: ls.OneCycleLR(o, max_lr=0.1, total_steps=120, cycle_momentum=False)),
    Case("OneCycleLR/three-phase-linear-sgd",
         lambda ls, o: ls.OneCycleLR(o, [0.1, 0.05], total_steps=120, anneal_strategy="linear", three_phase=True),
         groups=TWO_GROUPS_MOMENTUM, opt_kwargs=SGD_MOMENTUM, golden=True),
    Case("OneCycleLR/epochs-adam-betas",
         lambda ls, o: ls.OneCycleLR(o, 0.01, epochs=10, steps_per_epoch=12, pct_start=0.25),
         optimizer="Adam", opt_kwargs=ADAM, golden=True),
    Case("OneCycleLR/three-phase-cos-adamw",
         lambda ls, o: ls.OneCycleLR(o, 0.02, total_steps=110, three_phase=True, base_momentum=0.8,
                                     max_momentum=0.9, div_factor=10.0, final_div_factor=100.0),
         optimizer="AdamW", opt_kwargs=ADAM, steps=110),
    Case("OneCycleLR/last_epoch-resume",
         lambda ls, o: _one_cycle_resumed(ls, o), opt_kwargs=SGD_MOMENTUM, steps=100),
    # SequentialLR
    Case("SequentialLR/linear-then-exp",
         lambda ls, o: ls.SequentialLR(o, [ls.LinearLR(o, start_factor=0.5, total_iters=2),
                                           ls.ExponentialLR(o, 0.9)], milestones=[3])),
    Case("SequentialLR/three-children-two-groups",
         lambda ls, o: ls.SequentialLR(o, [ls.ConstantLR(o, 0.1, 5), ls.CosineAnnealingLR(o, 40),
                                           ls.StepLR(o, 10, 0.5)], [5, 45]), groups=TWO_GROUPS),
    Case("SequentialLR/nested-sequential",
         lambda ls, o: ls.SequentialLR(
             o, [ls.SequentialLR(o, [ls.LinearLR(o, 0.2, total_iters=5), ls.ConstantLR(o, 0.5, 10)], [5]),
                 ls.ExponentialLR(o, 0.95)], [20]), golden=True),
    Case("SequentialLR/chained-child",
         lambda ls, o: ls.SequentialLR(
             o, [ls.ChainedScheduler([ls.ConstantLR(o, 0.5, 8), ls.ExponentialLR(o, 0.97)]),
                 ls.StepLR(o, 10, 0.5)], [30])),
    Case("SequentialLR/warmup-cosine-adam",
         lambda ls, o: ls.SequentialLR(o, [ls.LinearLR(o, 0.01, total_iters=10),
                                           ls.CosineAnnealingLR(o, T_max=90)], [10]),
         optimizer="Adam", opt_kwargs=ADAM),
    # ChainedScheduler
    Case("ChainedScheduler/constant-exp",
         lambda ls, o: ls.ChainedScheduler([ls.ConstantLR(o, factor=0.5, total_iters=2), ls.ExponentialLR(o, 0.9)]),
         golden=True),
    Case("ChainedScheduler/three-two-groups",
         lambda ls, o: ls.ChainedScheduler([ls.LinearLR(o, 0.5, total_iters=10), ls.StepLR(o, 15, 0.5),
                                            ls.MultiplicativeLR(o, lambda e: 0.995)]), groups=TWO_GROUPS),
    Case("ChainedScheduler/nested",
         lambda ls, o: ls.ChainedScheduler(
             [ls.ChainedScheduler([ls.ExponentialLR(o, 0.99), ls.ConstantLR(o, 0.5, 4)]),
              ls.SequentialLR(o, [ls.ConstantLR(o, 0.2, 6), ls.StepLR(o, 9, 0.7)], [12])], optimizer=o)),
    Case("ChainedScheduler/cosine-plus-step-adam",
         lambda ls, o: ls.ChainedScheduler([ls.CosineAnnealingLR(o, 25), ls.StepLR(o, 20, 0.5)]),
         optimizer="Adam", opt_kwargs=ADAM),
    # ReduceLROnPlateau
    Case("ReduceLROnPlateau/reference", lambda ls, o: ls.ReduceLROnPlateau(o, patience=1, factor=0.5),
         drive=_reference_metric_drive),
    Case("ReduceLROnPlateau/noisy-loss", lambda ls, o: ls.ReduceLROnPlateau(o, factor=0.7, patience=3),
         drive=_plateau_drive),
    Case("ReduceLROnPlateau/max-abs-cooldown-two-groups",
         lambda ls, o: ls.ReduceLROnPlateau(o, "max", 0.5, 2, 0.005, "abs", cooldown=3, min_lr=[1e-3, 1e-4]),
         groups=TWO_GROUPS, drive=_accuracy_drive, golden=True),
    Case("ReduceLROnPlateau/min_lr-cooldown",
         lambda ls, o: ls.ReduceLROnPlateau(o, patience=0, cooldown=2, factor=0.5, min_lr=0.02),
         drive=_constant_metric_drive),
    Case("ReduceLROnPlateau/abs-adam",
         lambda ls, o: ls.ReduceLROnPlateau(o, threshold=0.05, threshold_mode="abs", patience=2, eps=1e-3),
         optimizer="Adam", opt_kwargs=ADAM, drive=_plateau_drive),
    # LRScheduler subclass
    Case("LRScheduler/user-subclass", _custom_scheduler, golden=True),
]


def _one_cycle_resumed(ls, opt):
    """OneCycleLR constructed with last_epoch >= 0: the groups must already hold its keys."""
    for group in opt.param_groups:
        group["initial_lr"] = 0.004
        group["max_lr"] = 0.1
        group["min_lr"] = 4e-7
        group["max_momentum"] = 0.95
        group["base_momentum"] = 0.85
    return ls.OneCycleLR(opt, max_lr=0.1, total_steps=150, last_epoch=49)


CASES_BY_NAME = {case.name: case for case in CASES}
assert len(CASES_BY_NAME) == len(CASES), "case names must be unique"


# ---------------------------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------------------------


def make(case: Case, backend: Backend):
    """Build the case's optimizer (one 2-element parameter per group) and scheduler."""
    groups = [dict(group, params=[backend.make_param()]) for group in case.groups]
    optimizer = getattr(backend.optim, case.optimizer)(groups, **case.opt_kwargs)
    return optimizer, case.build(backend.lr_scheduler, optimizer)


def step_optimizer(backend: Backend, optimizer) -> None:
    for group in optimizer.param_groups:
        for p in group["params"]:
            backend.set_grad(p)
    optimizer.step()


def snapshot(optimizer, scheduler) -> dict:
    """Everything a scheduler decides: group keys, last_epoch, get_last_lr(), base_lrs."""
    return {
        "groups": [{key: group[key] for key in SIDE_KEYS if key in group} for group in optimizer.param_groups],
        "last_epoch": getattr(scheduler, "last_epoch", None),
        "last_lr": list(scheduler.get_last_lr()),
        "base_lrs": list(getattr(scheduler, "base_lrs", [])),
    }


@dataclass
class Run:
    records: list  # records[0]: after construction; records[i + 1]: after step i
    warnings: list
    state_dicts: dict  # step index i -> scheduler.state_dict() after step i
    optimizer_states: dict  # step index i -> deep copy of optimizer.state_dict() after step i
    scheduler: Any = None
    optimizer: Any = None


def checkpoint_steps(steps: int) -> tuple:
    """The step indices after which ``run`` keeps the state dicts."""
    return (0, steps // 2, steps - 1)


def run(case: Case, backend: Backend, resume_at: Optional[int] = None, steps: Optional[int] = None) -> Run:
    """Drive the case for ``steps`` steps, recording a snapshot after construction and each step.

    With ``resume_at=k`` the optimizer and scheduler are rebuilt from deep copies of their state
    dicts before step ``k`` (a fresh optimizer and scheduler built exactly like the first ones,
    then ``load_state_dict`` on both), as a training script resuming from a checkpoint would.
    """
    steps = case.steps if steps is None else steps
    state_dicts, optimizer_states = {}, {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        optimizer, scheduler = make(case, backend)
        records = [snapshot(optimizer, scheduler)]
        for i in range(steps):
            if i == resume_at:
                optimizer_state = copy.deepcopy(optimizer.state_dict())
                scheduler_state = copy.deepcopy(scheduler.state_dict())
                optimizer, scheduler = make(case, backend)
                optimizer.load_state_dict(optimizer_state)
                scheduler.load_state_dict(scheduler_state)
            step_optimizer(backend, optimizer)
            case.drive(scheduler, optimizer, i)
            records.append(snapshot(optimizer, scheduler))
            if i in checkpoint_steps(steps):
                state_dicts[i] = scheduler.state_dict()
                optimizer_states[i] = copy.deepcopy(optimizer.state_dict())
    messages = [f"{w.category.__name__}: {w.message}" for w in caught]
    return Run(records, messages, state_dicts, optimizer_states, scheduler, optimizer)


def golden_entry(records: list) -> dict:
    """The part of a run stored in the golden file: lrs, cycled momentum/beta1, last_epoch."""
    entry = {
        "lr": [[group["lr"] for group in record["groups"]] for record in records],
        "last_epoch": [record["last_epoch"] for record in records],
    }
    first = records[0]["groups"][0]
    if "max_momentum" in first:
        key = "betas" if "betas" in first else "momentum"
        entry["momentum"] = [
            [group[key][0] if key == "betas" else group[key] for group in record["groups"]] for record in records
        ]
    return entry


def main(argv=None) -> int:
    import torch

    backend = torch_backend()
    cases = {}
    for case in CASES:
        if case.golden:
            cases[case.name] = golden_entry(run(case, backend).records)
    lines = ["{", f'  "generator": "tests/golden/make_lr_golden.py with torch {torch.__version__}",', '  "cases": {']
    items = [f"    {json.dumps(name)}: {json.dumps(entry, separators=(',', ':'))}" for name, entry in cases.items()]
    lines.append(",\n".join(items))
    lines += ["  }", "}"]
    GOLDEN_PATH.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(cases)} cases to {GOLDEN_PATH} ({GOLDEN_PATH.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
