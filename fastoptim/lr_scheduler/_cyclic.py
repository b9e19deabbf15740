"""The cyclical schedulers: ``CyclicLR`` and ``OneCycleLR`` (which also cycle the momentum)."""

from __future__ import annotations

import math
import types
from collections.abc import Mapping
from functools import partial

from fastoptim.lr_scheduler._base import (
    LRScheduler, _format_param, _update_param_group_val, _warn_get_lr_called_within_step,
)
from fastoptim.lr_scheduler._state import (
    _StateError, _callable_state, _copy_state, _is_real, _v_bool, _v_choice, _v_group_lrs,
    _v_positive_integer, _v_real, _v_real_where, _v_str,
)
from fastoptim.optimizer import Optimizer


def _check_momentum_support(optimizer):
    if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
        raise ValueError("optimizer must support momentum or beta1 with `cycle_momentum` option enabled")


def _set_group_momentum(group, use_beta1, momentum):
    if use_beta1:
        group["betas"] = (momentum, *group["betas"][1:])
    else:
        group["momentum"] = momentum


def _v_scale_fn_state(scheduler, key, value):
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise _StateError.type_error(scheduler, key, "None or a dict of attribute names to values", value)
    fn = scheduler._scale_fn_custom
    if fn is None or isinstance(fn, types.FunctionType) or not hasattr(fn, "__dict__"):
        raise ValueError(
            f"{_StateError.prefix(scheduler, key)} holds the attributes of a callable scale_fn "
            f"object, but this CyclicLR's scale_fn is {fn!r}. Construct it with the same kind of "
            "scale_fn object that was saved."
        )
    return _copy_state(dict(value))


class _MomentumCyclingState:
    """State loading of the schedulers that may cycle the momentum (CyclicLR, OneCycleLR).

    The momentum keys (``_momentum_state_keys``) are saved only with ``cycle_momentum=True``; a
    scheduler built without it may still load a state that has them.
    """

    _momentum_state_keys = ()

    def _expected_state_keys(self):
        keys = set(self.state_dict())
        if not self.__dict__.get("cycle_momentum", False):
            # A scheduler built without momentum cycling may load a state that has it.
            keys -= self._optional_state_keys
        return keys

    def _check_state_consistency(self, checked):
        if not checked["cycle_momentum"]:
            return
        name = type(self).__name__
        missing = [k for k in self._momentum_state_keys if k not in checked]
        if missing:
            raise ValueError(
                f"{name}.load_state_dict: 'cycle_momentum' is True but the state has no "
                f"{', '.join(repr(k) for k in missing)}; load a complete {name} state_dict."
            )
        key = "betas" if checked["use_beta1"] else "momentum"
        if any(key not in group for group in self.optimizer.param_groups):
            raise ValueError(
                f"{name}.load_state_dict: the state cycles {key!r}, but the optimizer's param "
                f"groups have no {key!r}; load it into an optimizer of the saved type."
            )


class CyclicLR(_MomentumCyclingState, LRScheduler):
    r"""Cycle each group's lr between ``base_lr`` and ``max_lr`` (cyclical learning rates, CLR).

    .. math::
        c = \left\lfloor 1 + \frac{t}{S} \right\rfloor, \quad
        x = 1 + \frac{t}{S} - c, \quad
        s = \begin{cases} x / r & x \le r \\ (x - 1)/(r - 1) & x > r \end{cases}

    .. math::
        \eta_t = \eta_{\text{base}} + (\eta_{\max} - \eta_{\text{base}}) \cdot s \cdot f(\cdot)

    with :math:`S` = ``step_size_up + step_size_down``, :math:`r` = ``step_size_up / S`` and
    :math:`f` the scale function: 1 (``"triangular"``), :math:`1/2^{c-1}` (``"triangular2"``),
    :math:`\gamma^{t}` (``"exp_range"``) or ``scale_fn`` evaluated on :math:`c` or :math:`t`
    (``scale_mode``). With ``cycle_momentum`` the momentum (SGD ``momentum``, or ``betas[0]`` of
    Adam/AdamW) cycles inversely between ``max_momentum`` and ``base_momentum``.

    Call :meth:`step` after every batch.

    Parameters
    ----------
    optimizer : fastoptim.Optimizer
    base_lr : float or list of float
        Lower lr boundary, per group or for all. Written into ``group["lr"]`` at construction.
    max_lr : float or list of float
        Upper lr boundary.
    step_size_up : int, default 2000
        Steps in the increasing half of a cycle.
    step_size_down : int, optional
        Steps in the decreasing half; defaults to ``step_size_up``.
    mode : {"triangular", "triangular2", "exp_range"}, default "triangular"
        Ignored when ``scale_fn`` is given.
    gamma : float, default 1.0
        Base of ``"exp_range"``.
    scale_fn : callable, optional
        Custom scale function ``f(x)`` with values in ``[0, 1]``.
    scale_mode : {"cycle", "iterations"}, default "cycle"
        Argument of ``scale_fn``: the cycle number or the step count.
    cycle_momentum : bool, default True
        Requires an optimizer with ``momentum`` or ``betas`` in its defaults.
    base_momentum, max_momentum : float or list of float, default 0.8, 0.9
        Momentum boundaries; ``group["momentum"]`` (or ``betas[0]``) starts at ``max_momentum``.
        Written into the groups as ``"base_momentum"`` and ``"max_momentum"`` too.
    last_epoch : int, default -1
        Number of batches already done when resuming.

    Raises
    ------
    TypeError
        ``optimizer`` is not a :class:`fastoptim.Optimizer`.
    ValueError
        torch's messages for list arguments of the wrong length, ``"mode is invalid and scale_fn
        is None"`` and an optimizer without momentum when ``cycle_momentum`` is set. Nothing is
        written into the optimizer when construction fails.

    Notes
    -----
    ``state_dict()`` drops the bound scale function (rebuilt from ``mode`` on load) and saves a
    custom ``scale_fn`` as ``None`` (a function) or its ``__dict__`` (a callable object).

    Examples
    --------
    >>> import numpy as np
    >>> import fastoptim as fo
    >>> p = fo.Parameter(np.zeros(2))
    >>> opt = fo.SGD([p], lr=0.1, momentum=0.9)
    >>> sched = fo.lr_scheduler.CyclicLR(opt, base_lr=0.01, max_lr=0.1, step_size_up=2)
    >>> lrs, momentums = [], []
    >>> for _ in range(4):
    ...     p.grad = np.ones(2)
    ...     opt.step()
    ...     sched.step()
    ...     lrs.append(round(sched.get_last_lr()[0], 4))
    ...     momentums.append(round(opt.param_groups[0]["momentum"], 4))
    >>> lrs
    [0.055, 0.1, 0.055, 0.01]
    >>> momentums
    [0.85, 0.8, 0.85, 0.9]
    """

    _momentum_state_keys = ("use_beta1", "base_momentums", "max_momentums")
    _optional_state_keys = frozenset(_momentum_state_keys)
    _state_validators = {
        "max_lrs": _v_group_lrs,
        "total_size": _v_real_where("a finite number > 0", lambda v: 0 < v < math.inf),
        "step_ratio": _v_real_where("in (0, 1]", lambda v: 0 < v <= 1),
        "mode": _v_str,
        "gamma": _v_real,
        "scale_mode": _v_choice("cycle", "iterations"),
        "cycle_momentum": _v_bool,
        "use_beta1": _v_bool,
        "base_momentums": _v_group_lrs,
        "max_momentums": _v_group_lrs,
        "_scale_fn_custom": _v_scale_fn_state,
    }

    def __init__(
        self,
        optimizer,
        base_lr,
        max_lr,
        step_size_up=2000,
        step_size_down=None,
        mode="triangular",
        gamma=1.0,
        scale_fn=None,
        scale_mode="cycle",
        cycle_momentum=True,
        base_momentum=0.8,
        max_momentum=0.9,
        last_epoch=-1,
    ):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        self.optimizer = optimizer

        base_lrs = _format_param("base_lr", optimizer, base_lr)
        self.max_lrs = _format_param("max_lr", optimizer, max_lr)

        step_size_up = float(step_size_up)
        step_size_down = float(step_size_down) if step_size_down is not None else step_size_up
        self.total_size = step_size_up + step_size_down
        self.step_ratio = step_size_up / self.total_size

        if mode not in ["triangular", "triangular2", "exp_range"] and scale_fn is None:
            raise ValueError("mode is invalid and scale_fn is None")

        self.mode = mode
        self.gamma = gamma

        self._scale_fn_custom = scale_fn
        self.scale_mode = scale_mode
        self._init_scale_fn()

        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            _check_momentum_support(optimizer)
            self.use_beta1 = "betas" in self.optimizer.defaults
            self.base_momentums = _format_param("base_momentum", optimizer, base_momentum)
            self.max_momentums = _format_param("max_momentum", optimizer, max_momentum)

        # Everything is validated: only now write into the optimizer (torch writes the lrs
        # before checking the other arguments, leaving a half-configured optimizer on error).
        if last_epoch == -1:
            for lr, group in zip(base_lrs, optimizer.param_groups):
                _update_param_group_val(group, "lr", lr)
            if cycle_momentum:
                for m_momentum, b_momentum, group in zip(self.max_momentums, self.base_momentums, optimizer.param_groups):
                    _set_group_momentum(group, self.use_beta1, m_momentum)
                    group["max_momentum"] = m_momentum
                    group["base_momentum"] = b_momentum

        super().__init__(optimizer, last_epoch)
        self.base_lrs = base_lrs

    def _init_scale_fn(self):
        if self._scale_fn_custom is not None:
            return
        if self.mode == "triangular":
            self._scale_fn_ref = self._triangular_scale_fn
            self.scale_mode = "cycle"
        elif self.mode == "triangular2":
            self._scale_fn_ref = self._triangular2_scale_fn
            self.scale_mode = "cycle"
        elif self.mode == "exp_range":
            self._scale_fn_ref = partial(self._exp_range_scale_fn, self.gamma)
            self.scale_mode = "iterations"

    def scale_fn(self, x):
        """Evaluate the scale function (the custom one if given, else the mode's)."""
        if self._scale_fn_custom is not None:
            return self._scale_fn_custom(x)
        return self._scale_fn_ref(x)

    @staticmethod
    def _triangular_scale_fn(x):
        return 1.0

    @staticmethod
    def _triangular2_scale_fn(x):
        return 1 / (2.0 ** (x - 1))

    @staticmethod
    def _exp_range_scale_fn(gamma, x):
        return gamma**x

    def get_lr(self):
        """Return the lrs at :attr:`last_epoch`; also writes the cycled momentum into the groups."""
        _warn_get_lr_called_within_step(self)

        cycle = math.floor(1 + self.last_epoch / self.total_size)
        x = 1.0 + self.last_epoch / self.total_size - cycle
        if x <= self.step_ratio:
            scale_factor = x / self.step_ratio
        else:
            scale_factor = (x - 1) / (self.step_ratio - 1)

        lrs = []
        for base_lr, max_lr in zip(self.base_lrs, self.max_lrs):
            base_height = (max_lr - base_lr) * scale_factor
            if self.scale_mode == "cycle":
                lr = base_lr + base_height * self.scale_fn(cycle)
            else:
                lr = base_lr + base_height * self.scale_fn(self.last_epoch)
            lrs.append(lr)

        if self.cycle_momentum:
            momentums = []
            for base_momentum, max_momentum in zip(self.base_momentums, self.max_momentums):
                base_height = (max_momentum - base_momentum) * scale_factor
                if self.scale_mode == "cycle":
                    momentum = max_momentum - base_height * self.scale_fn(cycle)
                else:
                    momentum = max_momentum - base_height * self.scale_fn(self.last_epoch)
                momentums.append(momentum)
            for param_group, momentum in zip(self.optimizer.param_groups, momentums):
                _set_group_momentum(param_group, self.use_beta1, momentum)

        return lrs

    def state_dict(self):
        """Return the state as a dict, without the bound scale function (torch's keys)."""
        state = super().state_dict()
        # The mode's scale function is rebuilt on load; torch drops it because it cannot be pickled.
        state.pop("_scale_fn_ref", None)
        fn = state.pop("_scale_fn_custom")
        state["_scale_fn_custom"] = None if fn is None else _callable_state(fn)
        return state

    def _check_state_consistency(self, checked):
        super()._check_state_consistency(checked)
        if self._scale_fn_custom is None and checked["mode"] not in ("triangular", "triangular2", "exp_range"):
            raise ValueError(
                f"CyclicLR.load_state_dict: 'mode' is {checked['mode']!r} but this CyclicLR has no "
                "scale_fn; mode must be 'triangular', 'triangular2' or 'exp_range'."
            )

    def _apply_state(self, checked):
        fn_state = checked.pop("_scale_fn_custom")
        self.__dict__.update(checked)
        if fn_state is not None:
            self._scale_fn_custom.__dict__.update(fn_state)
        self._init_scale_fn()


def _v_schedule_phases(scheduler, key, value):
    names = {"initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum"}
    phase_keys = ("end_step", "start_lr", "end_lr", "start_momentum", "end_momentum")
    if not isinstance(value, (list, tuple)) or not value:
        raise _StateError.type_error(scheduler, key, "a non-empty list of phase dicts", value)
    phases = []
    for index, phase in enumerate(value):
        if (
            not isinstance(phase, Mapping)
            or set(phase) != set(phase_keys)
            or not _is_real(phase["end_step"])
            or not all(phase[k] in names for k in phase_keys[1:])
        ):
            raise ValueError(
                f"{_StateError.prefix(scheduler, key)}[{index}] must be a dict with a numeric "
                f"'end_step' and 'start_lr', 'end_lr', 'start_momentum', 'end_momentum' naming "
                f"param-group keys ({', '.join(sorted(names))}), but got {phase!r}."
            )
        phases.append({k: phase[k] for k in phase_keys})
    return phases


def _phase(end_step, start_lr, end_lr, start_momentum, end_momentum):
    """One phase of :class:`OneCycleLR`: its last step and the group keys it goes from and to."""
    return {"end_step": end_step, "start_lr": start_lr, "end_lr": end_lr,
            "start_momentum": start_momentum, "end_momentum": end_momentum}

class OneCycleLR(_MomentumCyclingState, LRScheduler):
    r"""The 1cycle policy: warm up to ``max_lr``, then anneal far below the initial lr.

    With ``two phases`` (default): from ``initial_lr = max_lr / div_factor`` up to ``max_lr``
    over the first ``pct_start`` of ``total_steps``, then down to
    ``min_lr = initial_lr / final_div_factor``. ``three_phase=True`` goes back down to
    ``initial_lr`` symmetrically before annealing to ``min_lr``. Each phase interpolates with

    .. math::
        \text{cos:}\quad \eta = \eta_{end} + \frac{\eta_{start} - \eta_{end}}{2}
        \left(\cos(\pi p) + 1\right)
        \qquad
        \text{linear:}\quad \eta = (\eta_{end} - \eta_{start})\,p + \eta_{start}

    where :math:`p \in [0, 1]` is the progress within the phase. Momentum (or ``betas[0]``)
    moves inversely between ``max_momentum`` and ``base_momentum`` when ``cycle_momentum``.

    Call :meth:`step` after every batch; stepping past ``total_steps`` raises.

    Parameters
    ----------
    optimizer : fastoptim.Optimizer
    max_lr : float or list of float
    total_steps : int, optional
        Length of the cycle; else ``epochs * steps_per_epoch``.
    epochs, steps_per_epoch : int, optional
    pct_start : float, default 0.3
        Fraction of the cycle spent increasing the lr (a float in ``[0, 1]``).
    anneal_strategy : {"cos", "linear"}, default "cos"
    cycle_momentum : bool, default True
    base_momentum, max_momentum : float or list of float, default 0.85, 0.95
    div_factor : float, default 25.0
    final_div_factor : float, default 1e4
    three_phase : bool, default False
    last_epoch : int, default -1
        Number of batches already done when resuming.

    Raises
    ------
    TypeError
        ``optimizer`` is not a :class:`fastoptim.Optimizer`.
    ValueError
        torch's messages for invalid ``total_steps``, ``epochs``, ``steps_per_epoch``,
        ``pct_start``, ``anneal_strategy``, list arguments of the wrong length, an optimizer
        without momentum when ``cycle_momentum`` is set, and a step beyond ``total_steps``
        (``"Tried to step 11 times. The specified number of total steps is 10"``). Nothing is
        written into the optimizer when construction fails.

    Notes
    -----
    Construction overwrites the groups' ``initial_lr`` and adds ``max_lr``, ``min_lr`` (and
    ``max_momentum``, ``base_momentum`` with momentum cycling), as torch does.

    The schedule reaches ``min_lr`` at step ``total_steps - 1``. As in torch, one more step
    (``last_epoch == total_steps``) is allowed and extrapolates the last phase (the lr can
    become negative); only the step after that raises.

    Examples
    --------
    >>> import numpy as np
    >>> import fastoptim as fo
    >>> p = fo.Parameter(np.zeros(2))
    >>> opt = fo.Adam([p], lr=1e-3)
    >>> sched = fo.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=4, pct_start=0.5,
    ...                                    anneal_strategy="linear")
    >>> lrs, beta1s = [sched.get_last_lr()[0]], [opt.param_groups[0]["betas"][0]]
    >>> for _ in range(3):
    ...     p.grad = np.ones(2)
    ...     opt.step()
    ...     sched.step()
    ...     lrs.append(sched.get_last_lr()[0])
    ...     beta1s.append(opt.param_groups[0]["betas"][0])
    >>> lrs
    [0.004, 0.1, 0.0500002, 3.999999999976245e-07]
    >>> beta1s
    [0.95, 0.85, 0.8999999999999999, 0.95]
    """

    _momentum_state_keys = ("use_beta1",)
    _optional_state_keys = frozenset(_momentum_state_keys)
    _state_validators = {
        "total_steps": _v_positive_integer,
        "_schedule_phases": _v_schedule_phases,
        "_anneal_func_type": _v_choice("cos", "linear"),
        "cycle_momentum": _v_bool,
        "use_beta1": _v_bool,
    }

    def __init__(
        self,
        optimizer,
        max_lr,
        total_steps=None,
        epochs=None,
        steps_per_epoch=None,
        pct_start=0.3,
        anneal_strategy="cos",
        cycle_momentum=True,
        base_momentum=0.85,
        max_momentum=0.95,
        div_factor=25.0,
        final_div_factor=1e4,
        three_phase=False,
        last_epoch=-1,
    ):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        self.optimizer = optimizer

        if total_steps is not None:
            if total_steps <= 0 or not isinstance(total_steps, int):
                raise ValueError(f"Expected positive integer total_steps, but got {total_steps}")
            self.total_steps = total_steps
        elif epochs is not None and steps_per_epoch is not None:
            if not isinstance(epochs, int) or epochs <= 0:
                raise ValueError(f"Expected positive integer epochs, but got {epochs}")
            if not isinstance(steps_per_epoch, int) or steps_per_epoch <= 0:
                raise ValueError(f"Expected positive integer steps_per_epoch, but got {steps_per_epoch}")
            self.total_steps = epochs * steps_per_epoch
        else:
            raise ValueError("You must define either total_steps OR (epochs AND steps_per_epoch)")

        # torch's phases: up from initial_lr to max_lr, (three_phase: back to initial_lr,) down to
        # min_lr; the momentum moves the other way.
        warmup = _phase(float(pct_start * self.total_steps) - 1, "initial_lr", "max_lr",
                        "max_momentum", "base_momentum")
        if three_phase:
            self._schedule_phases = [
                warmup,
                _phase(float(2 * pct_start * self.total_steps) - 2, "max_lr", "initial_lr",
                       "base_momentum", "max_momentum"),
                _phase(self.total_steps - 1, "initial_lr", "min_lr", "max_momentum",
                       "max_momentum"),
            ]
        else:
            self._schedule_phases = [
                warmup,
                _phase(self.total_steps - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"),
            ]

        if pct_start < 0 or pct_start > 1 or not isinstance(pct_start, float):
            raise ValueError(f"Expected float between 0 and 1 pct_start, but got {pct_start}")

        if anneal_strategy not in ["cos", "linear"]:
            raise ValueError(f"anneal_strategy must be one of 'cos' or 'linear', instead got {anneal_strategy}")
        self._anneal_func_type = anneal_strategy

        max_lrs = _format_param("max_lr", self.optimizer, max_lr)

        self.cycle_momentum = cycle_momentum
        if self.cycle_momentum:
            _check_momentum_support(optimizer)
            self.use_beta1 = "betas" in self.optimizer.defaults
            max_momentums = _format_param("max_momentum", optimizer, max_momentum)
            base_momentums = _format_param("base_momentum", optimizer, base_momentum)

        # Everything is validated: only now write into the optimizer (torch writes the lrs
        # before checking momentum support).
        if last_epoch == -1:
            for idx, group in enumerate(self.optimizer.param_groups):
                group["initial_lr"] = max_lrs[idx] / div_factor
                group["max_lr"] = max_lrs[idx]
                group["min_lr"] = group["initial_lr"] / final_div_factor
            if self.cycle_momentum:
                for m_momentum, b_momentum, group in zip(max_momentums, base_momentums, optimizer.param_groups):
                    _set_group_momentum(group, self.use_beta1, m_momentum)
                    group["max_momentum"] = m_momentum
                    group["base_momentum"] = b_momentum

        super().__init__(optimizer, last_epoch)

    def _anneal_func(self, start, end, pct):
        if self._anneal_func_type == "cos":
            return self._annealing_cos(start, end, pct)
        elif self._anneal_func_type == "linear":
            return self._annealing_linear(start, end, pct)
        raise ValueError(f"Unknown _anneal_func_type: {self._anneal_func_type}")

    @staticmethod
    def _annealing_cos(start, end, pct):
        """Cosine anneal from ``start`` to ``end`` as ``pct`` goes from 0.0 to 1.0."""
        cos_out = math.cos(math.pi * pct) + 1
        return end + (start - end) / 2.0 * cos_out

    @staticmethod
    def _annealing_linear(start, end, pct):
        """Linearly anneal from ``start`` to ``end`` as ``pct`` goes from 0.0 to 1.0."""
        return (end - start) * pct + start

    def get_lr(self):
        """Return the lrs at :attr:`last_epoch`; also writes the cycled momentum into the groups."""
        _warn_get_lr_called_within_step(self)

        lrs = []
        step_num = self.last_epoch

        if step_num > self.total_steps:
            raise ValueError(
                f"Tried to step {step_num} times. The specified number of total steps is {self.total_steps}"
            )

        for group in self.optimizer.param_groups:
            start_step = 0.0
            for i, phase in enumerate(self._schedule_phases):
                end_step = phase["end_step"]
                if step_num <= end_step or i == len(self._schedule_phases) - 1:
                    pct = (step_num - start_step) / (end_step - start_step)
                    computed_lr = self._anneal_func(group[phase["start_lr"]], group[phase["end_lr"]], pct)
                    if self.cycle_momentum:
                        computed_momentum = self._anneal_func(
                            group[phase["start_momentum"]], group[phase["end_momentum"]], pct
                        )
                    break
                start_step = phase["end_step"]

            lrs.append(computed_lr)
            if self.cycle_momentum:
                _set_group_momentum(group, self.use_beta1, computed_momentum)

        return lrs

