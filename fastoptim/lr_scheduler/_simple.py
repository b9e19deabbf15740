"""The schedulers of one formula each: lambda, multiplicative, step, multi-step, constant, linear,
exponential, polynomial, cosine annealing and cosine annealing with warm restarts."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Mapping

from fastoptim.lr_scheduler._base import (
    LRScheduler, _enable_get_lr_call, _param_groups_val_list, _set_group_values,
    _warn_get_lr_called_within_step,
)
from fastoptim.lr_scheduler._state import (
    _StateError, _callable_state, _copy_state, _is_integer, _is_real, _v_callable_states,
    _v_checked_real, _v_integer, _v_nonzero_real, _v_real, _v_real_where,
)


def _check_nonzero_period(scheduler, name, value):
    """Constructor check of a period that the schedule divides by (torch fails at a later step)."""
    if _is_real(value) and value == 0:
        raise ValueError(
            f"{scheduler}: {name} must be non-zero (the schedule divides by it), but got {value!r}."
        )


def _lr_lambda_list(optimizer, lr_lambda):
    if not isinstance(lr_lambda, (list, tuple)):
        return [lr_lambda] * len(optimizer.param_groups)
    if len(lr_lambda) != len(optimizer.param_groups):
        raise ValueError(f"Expected {len(optimizer.param_groups)} lr_lambdas, but got {len(lr_lambda)}")
    return list(lr_lambda)


class _LambdaStateMixin:
    """state_dict handling of the user's ``lr_lambdas`` (LambdaLR, MultiplicativeLR)."""

    def state_dict(self):
        """Return the scheduler's state as a dict.

        As in torch, ``lr_lambdas`` holds ``None`` for a plain function or lambda (code is not
        saved) and a copy of ``__dict__`` for a callable object, so an object's own state (a
        counter, a decay factor) is restored by :meth:`load_state_dict`.
        """
        state = {
            key: _copy_state(value)
            for key, value in self.__dict__.items()
            if key not in self._transient_attributes and key != "lr_lambdas"
        }
        state["lr_lambdas"] = [_callable_state(fn) for fn in self.lr_lambdas]
        return state

    def _check_state_consistency(self, checked):
        checked["lr_lambdas"] = _v_callable_states(self, "lr_lambdas", checked["lr_lambdas"], self.lr_lambdas)

    def _apply_state(self, checked):
        states = checked.pop("lr_lambdas")
        self.__dict__.update(checked)
        for fn, state in zip(self.lr_lambdas, states):
            if state is not None:
                fn.__dict__.update(state)


class LambdaLR(_LambdaStateMixin, LRScheduler):
    r"""Set each group's lr to its initial lr times a function of the step count.

    .. math::
        \eta_t = \eta_0 \cdot \lambda(t)

    where :math:`\eta_0` is ``initial_lr`` and :math:`t` is :attr:`last_epoch`.

    Parameters
    ----------
    optimizer : fastoptim.Optimizer
    lr_lambda : callable or list of callable
        ``lr_lambda(epoch) -> float`` giving the factor, or one such callable per param group.
    last_epoch : int, default -1

    Raises
    ------
    ValueError
        A list of ``lr_lambda`` whose length differs from the number of param groups
        (``"Expected 2 lr_lambdas, but got 1"``).

    Notes
    -----
    ``state_dict()`` saves ``None`` for plain functions and lambdas (their code is not saved) and
    the ``__dict__`` of callable objects, which :meth:`load_state_dict` restores.

    Examples
    --------
    >>> import numpy as np
    >>> import fastoptim as fo
    >>> p = fo.Parameter(np.zeros(2))
    >>> opt = fo.SGD([p], lr=0.1)
    >>> sched = fo.lr_scheduler.LambdaLR(opt, lr_lambda=lambda epoch: 0.5 ** epoch)
    >>> lrs = [sched.get_last_lr()[0]]
    >>> for _ in range(3):
    ...     p.grad = np.ones(2)
    ...     opt.step()
    ...     sched.step()
    ...     lrs.append(sched.get_last_lr()[0])
    >>> lrs
    [0.1, 0.05, 0.025, 0.0125]
    """

    def __init__(self, optimizer, lr_lambda, last_epoch=-1):
        self.optimizer = optimizer
        self.lr_lambdas = _lr_lambda_list(optimizer, lr_lambda)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        """Return ``base_lr * lr_lambda(last_epoch)`` for each group."""
        _warn_get_lr_called_within_step(self)
        return [base_lr * lmbda(self.last_epoch) for lmbda, base_lr in zip(self.lr_lambdas, self.base_lrs)]


class MultiplicativeLR(_LambdaStateMixin, LRScheduler):
    r"""Multiply each group's lr by a function of the step count at every step.

    .. math::
        \eta_t = \eta_{t-1} \cdot \lambda(t) \quad (t \ge 1), \qquad \eta_0 = \text{initial lr}

    Parameters
    ----------
    optimizer : fastoptim.Optimizer
    lr_lambda : callable or list of callable
        ``lr_lambda(epoch) -> float`` giving the factor, or one such callable per param group.
    last_epoch : int, default -1

    Raises
    ------
    ValueError
        A list of ``lr_lambda`` of the wrong length (``"Expected 2 lr_lambdas, but got 1"``).
    TypeError
        An ``lr_lambda`` that is not callable (``"lr_lambda should be a function, but got float"``).

    Examples
    --------
    >>> import numpy as np
    >>> import fastoptim as fo
    >>> p = fo.Parameter(np.zeros(2))
    >>> opt = fo.SGD([p], lr=0.1)
    >>> sched = fo.lr_scheduler.MultiplicativeLR(opt, lr_lambda=lambda epoch: 0.5)
    >>> for _ in range(2):
    ...     p.grad = np.ones(2)
    ...     opt.step()
    ...     sched.step()
    >>> sched.get_last_lr()
    [0.025]
    """

    def __init__(self, optimizer, lr_lambda, last_epoch=-1):
        self.optimizer = optimizer
        self.lr_lambdas = _lr_lambda_list(optimizer, lr_lambda)
        for fn in self.lr_lambdas:
            if not callable(fn):
                raise TypeError(f"lr_lambda should be a function, but got {type(fn).__name__}")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        """Return ``group["lr"] * lr_lambda(last_epoch)`` (the current lrs in the initial step)."""
        _warn_get_lr_called_within_step(self)
        if not self._is_initial:
            return [
                group["lr"] * lmbda(self.last_epoch)
                for lmbda, group in zip(self.lr_lambdas, self.optimizer.param_groups)
            ]
        return _param_groups_val_list(self.optimizer, "lr")


class StepLR(LRScheduler):
    r"""Decay each group's lr by ``gamma`` every ``step_size`` steps.

    .. math::
        \eta_t = \eta_0 \cdot \gamma^{\lfloor t / \texttt{step\_size} \rfloor}

    :meth:`step` applies this recursively (``lr * gamma`` at each multiple of ``step_size``), so
    changes made to the lr from outside the scheduler are kept.

    Parameters
    ----------
    optimizer : fastoptim.Optimizer
    step_size : int
        Period of the decay, in steps; non-zero.
    gamma : float, default 0.1
        Multiplicative factor of the decay.
    last_epoch : int, default -1

    Examples
    --------
    >>> import numpy as np
    >>> import fastoptim as fo
    >>> p = fo.Parameter(np.zeros(2))
    >>> opt = fo.SGD([p], lr=0.1)
    >>> sched = fo.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    >>> lrs = [sched.get_last_lr()[0]]
    >>> for _ in range(5):
    ...     p.grad = np.ones(2)
    ...     opt.step()
    ...     sched.step()
    ...     lrs.append(sched.get_last_lr()[0])
    >>> lrs
    [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]
    """

    _state_validators = {"step_size": _v_nonzero_real, "gamma": _v_real}

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        _check_nonzero_period("StepLR", "step_size", step_size)
        self._init(optimizer, last_epoch, step_size=step_size, gamma=gamma)

    def get_lr(self):
        """Return ``group["lr"] * gamma`` at non-zero multiples of ``step_size``, else ``group["lr"]``."""
        _warn_get_lr_called_within_step(self)
        if (self.last_epoch == 0) or (self.last_epoch % self.step_size != 0):
            return _param_groups_val_list(self.optimizer, "lr")
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self):
        return [base_lr * self.gamma ** (self.last_epoch // self.step_size) for base_lr in self.base_lrs]


def _v_milestones(scheduler, key, value):
    if not isinstance(value, Mapping):
        raise _StateError.type_error(scheduler, key, "a Counter of milestone -> count", value)
    for milestone, count in value.items():
        if not _is_real(milestone) or not _is_integer(count):
            raise TypeError(
                f"{_StateError.prefix(scheduler, key)} must map milestones (numbers) to counts "
                f"(integers), but has {milestone!r}: {count!r}."
            )
    return Counter(dict(value))


class MultiStepLR(LRScheduler):
    r"""Decay each group's lr by ``gamma`` at each milestone.

    .. math::
        \eta_t = \eta_0 \cdot \gamma^{\,|\{m \in \texttt{milestones} \,:\, m \le t\}|}

    A milestone listed ``k`` times decays by ``gamma ** k`` (milestones are kept as a
    :class:`collections.Counter`).

    Parameters
    ----------
    optimizer : fastoptim.Optimizer
    milestones : iterable of int
        Step indices at which to decay.
    gamma : float, default 0.1
    last_epoch : int, default -1

    Examples
    --------
    >>> import numpy as np
    >>> import fastoptim as fo
    >>> p = fo.Parameter(np.zeros(2))
    >>> opt = fo.SGD([p], lr=0.1)
    >>> sched = fo.lr_scheduler.MultiStepLR(opt, milestones=[1, 3], gamma=0.5)
    >>> lrs = [sched.get_last_lr()[0]]
    >>> for _ in range(4):
    ...     p.grad = np.ones(2)
    ...     opt.step()
    ...     sched.step()
    ...     lrs.append(sched.get_last_lr()[0])
    >>> lrs
    [0.1, 0.05, 0.05, 0.025, 0.025]
    """

    _state_validators = {"milestones": _v_milestones, "gamma": _v_real}

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        self._init(optimizer, last_epoch, milestones=Counter(milestones), gamma=gamma)

    def get_lr(self):
        """Return ``group["lr"] * gamma ** count`` at a milestone, else ``group["lr"]``."""
        _warn_get_lr_called_within_step(self)
        if self.last_epoch not in self.milestones:
            return _param_groups_val_list(self.optimizer, "lr")
        return [group["lr"] * self.gamma ** self.milestones[self.last_epoch] for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self):
        milestones = sorted(self.milestones.elements())
        return [base_lr * self.gamma ** bisect_right(milestones, self.last_epoch) for base_lr in self.base_lrs]


def _check_constant_factor(factor):
    if factor > 1.0 or factor < 0:
        raise ValueError("Constant multiplicative factor expected to be between 0 and 1.")


def _check_start_factor(start_factor):
    if start_factor > 1.0 or start_factor <= 0:
        raise ValueError(
            "Starting multiplicative factor expected to be greater than 0 and less or equal to 1."
        )


def _check_end_factor(end_factor):
    if end_factor > 1.0 or end_factor < 0:
        raise ValueError("Ending multiplicative factor expected to be between 0 and 1.")


class ConstantLR(LRScheduler):
    r"""Multiply each group's lr by a constant ``factor`` for the first ``total_iters`` steps.

    .. math::
        \eta_t = \begin{cases}
            \eta_0 \cdot \texttt{factor} & t < \texttt{total\_iters} \\
            \eta_0 & t \ge \texttt{total\_iters}
        \end{cases}

    Parameters
    ----------
    optimizer : fastoptim.Optimizer
    factor : float, default 1/3
        Factor applied until ``total_iters``; must be in ``[0, 1]``.
    total_iters : int, default 5
        Number of steps during which the factor applies.
    last_epoch : int, default -1

    Raises
    ------
    ValueError
        ``factor`` outside ``[0, 1]``
        (``"Constant multiplicative factor expected to be between 0 and 1."``).

    Examples
    --------
    >>> import numpy as np
    >>> import fastoptim as fo
    >>> p = fo.Parameter(np.zeros(2))
    >>> opt = fo.SGD([p], lr=0.1)
    >>> sched = fo.lr_scheduler.ConstantLR(opt, factor=0.5, total_iters=2)
    >>> lrs = [sched.get_last_lr()[0]]
    >>> for _ in range(3):
    ...     p.grad = np.ones(2)
    ...     opt.step()
    ...     sched.step()
    ...     lrs.append(sched.get_last_lr()[0])
    >>> lrs
    [0.05, 0.05, 0.1, 0.1]
    """

    _state_validators = {"factor": _v_checked_real(_check_constant_factor), "total_iters": _v_real}

    def __init__(self, optimizer, factor=1.0 / 3, total_iters=5, last_epoch=-1):
        _check_constant_factor(factor)
        self._init(optimizer, last_epoch, factor=factor, total_iters=total_iters)

    def get_lr(self):
        """Scale by ``factor`` at step 0 and by ``1 / factor`` at ``total_iters``."""
        _warn_get_lr_called_within_step(self)
        if self.last_epoch == 0:
            return [group["lr"] * self.factor for group in self.optimizer.param_groups]
        if self.last_epoch != self.total_iters:
            return _param_groups_val_list(self.optimizer, "lr")
        return [group["lr"] * (1.0 / self.factor) for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self):
        return [
            base_lr * (self.factor + (self.last_epoch >= self.total_iters) * (1 - self.factor))
            for base_lr in self.base_lrs
        ]


class LinearLR(LRScheduler):
    r"""Change each group's lr linearly by a factor going from ``start_factor`` to ``end_factor``.

    .. math::
        \eta_t = \eta_0 \left(s + (e - s)\,\frac{\min(t, T)}{T}\right),
        \qquad s = \texttt{start\_factor},\; e = \texttt{end\_factor},\; T = \texttt{total\_iters}

    :meth:`step` reaches this recursively, multiplying the current lr by
    :math:`1 + (e - s) / (T s + (t - 1)(e - s))`; the usual use is a warmup
    (``start_factor < 1``, ``end_factor = 1``).

    Parameters
    ----------
    optimizer : fastoptim.Optimizer
    start_factor : float, default 1/3
        Factor at step 0; in ``(0, 1]``.
    end_factor : float, default 1.0
        Factor from step ``total_iters`` on; in ``[0, 1]``.
    total_iters : int, default 5
    last_epoch : int, default -1

    Raises
    ------
    ValueError
        ``start_factor`` outside ``(0, 1]`` or ``end_factor`` outside ``[0, 1]`` (torch's messages).

    Examples
    --------
    >>> import numpy as np
    >>> import fastoptim as fo
    >>> p = fo.Parameter(np.zeros(2))
    >>> opt = fo.SGD([p], lr=0.1)
    >>> sched = fo.lr_scheduler.LinearLR(opt, start_factor=0.5, total_iters=2)
    >>> lrs = [sched.get_last_lr()[0]]
    >>> for _ in range(3):
    ...     p.grad = np.ones(2)
    ...     opt.step()
    ...     sched.step()
    ...     lrs.append(sched.get_last_lr()[0])
    >>> lrs
    [0.05, 0.07500000000000001, 0.1, 0.1]
    """

    _state_validators = {
        "start_factor": _v_checked_real(_check_start_factor),
        "end_factor": _v_checked_real(_check_end_factor),
        "total_iters": _v_real,
    }

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5, last_epoch=-1):
        _check_start_factor(start_factor)
        _check_end_factor(end_factor)
        self._init(optimizer, last_epoch, start_factor=start_factor, end_factor=end_factor,
                   total_iters=total_iters)

    def get_lr(self):
        """Return the current lrs times the next linear increment (``start_factor`` at step 0)."""
        _warn_get_lr_called_within_step(self)
        if self.last_epoch == 0:
            return [group["lr"] * self.start_factor for group in self.optimizer.param_groups]
        if self._is_initial or self.last_epoch > self.total_iters:
            return _param_groups_val_list(self.optimizer, "lr")
        return [
            group["lr"]
            * (
                1.0
                + (self.end_factor - self.start_factor)
                / (
                    self.total_iters * self.start_factor
                    + (self.last_epoch - 1) * (self.end_factor - self.start_factor)
                )
            )
            for group in self.optimizer.param_groups
        ]

    def _get_closed_form_lr(self):
        return [
            base_lr
            * (
                self.start_factor
                + (self.end_factor - self.start_factor) * min(self.total_iters, self.last_epoch) / self.total_iters
            )
            for base_lr in self.base_lrs
        ]


class ExponentialLR(LRScheduler):
    r"""Decay each group's lr by ``gamma`` at every step.

    .. math::
        \eta_t = \eta_0 \cdot \gamma^t

    (computed recursively as ``lr * gamma``, exactly as torch does).

    Parameters
    ----------
    optimizer : fastoptim.Optimizer
    gamma : float
        Multiplicative factor per step.
    last_epoch : int, default -1

    Examples
    --------
    >>> import numpy as np
    >>> import fastoptim as fo
    >>> p = fo.Parameter(np.zeros(2))
    >>> opt = fo.SGD([p], lr=0.1)
    >>> sched = fo.lr_scheduler.ExponentialLR(opt, gamma=0.5)
    >>> for _ in range(3):
    ...     p.grad = np.ones(2)
    ...     opt.step()
    ...     sched.step()
    >>> sched.get_last_lr()
    [0.0125]
    """

    _state_validators = {"gamma": _v_real}

    def __init__(self, optimizer, gamma, last_epoch=-1):
        self._init(optimizer, last_epoch, gamma=gamma)

    def get_lr(self):
        """Return ``group["lr"] * gamma`` (the current lrs in the initial step)."""
        _warn_get_lr_called_within_step(self)
        # The constructor's step must not decay: a scheduler resumed with last_epoch >= 0 would
        # otherwise move one step ahead of itself.
        if self._is_initial:
            return _param_groups_val_list(self.optimizer, "lr")
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self):
        return [base_lr * self.gamma**self.last_epoch for base_lr in self.base_lrs]


class PolynomialLR(LRScheduler):
    r"""Decay each group's lr polynomially to zero over ``total_iters`` steps.

    .. math::
        \eta_t = \eta_0 \left(1 - \frac{\min(t, T)}{T}\right)^{p},
        \qquad T = \texttt{total\_iters},\; p = \texttt{power}

    :meth:`step` reaches this recursively, multiplying the current lr by
    :math:`\left(\frac{1 - t/T}{1 - (t-1)/T}\right)^p`.

    Parameters
    ----------
    optimizer : fastoptim.Optimizer
    total_iters : int, default 5
    power : float, default 1.0
    last_epoch : int, default -1

    Examples
    --------
    >>> import numpy as np
    >>> import fastoptim as fo
    >>> p = fo.Parameter(np.zeros(2))
    >>> opt = fo.SGD([p], lr=0.1)
    >>> sched = fo.lr_scheduler.PolynomialLR(opt, total_iters=4, power=1.0)
    >>> lrs = [sched.get_last_lr()[0]]
    >>> for _ in range(5):
    ...     p.grad = np.ones(2)
    ...     opt.step()
    ...     sched.step()
    ...     lrs.append(sched.get_last_lr()[0])
    >>> lrs
    [0.1, 0.07500000000000001, 0.05, 0.025, 0.0, 0.0]
    """

    _state_validators = {"total_iters": _v_real, "power": _v_real}

    def __init__(self, optimizer, total_iters=5, power=1.0, last_epoch=-1):
        self._init(optimizer, last_epoch, total_iters=total_iters, power=power)

    def get_lr(self):
        """Return the current lrs times the next polynomial decay factor."""
        _warn_get_lr_called_within_step(self)
        if self._is_initial or self.last_epoch > self.total_iters:
            return _param_groups_val_list(self.optimizer, "lr")
        decay_factor = (
            (1.0 - self.last_epoch / self.total_iters) / (1.0 - (self.last_epoch - 1) / self.total_iters)
        ) ** self.power
        return [group["lr"] * decay_factor for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self):
        return [
            (base_lr * (1.0 - min(self.total_iters, self.last_epoch) / self.total_iters) ** self.power)
            for base_lr in self.base_lrs
        ]


class CosineAnnealingLR(LRScheduler):
    r"""Anneal each group's lr along a cosine from its initial value to ``eta_min`` over ``T_max`` steps.

    .. math::
        \eta_t = \eta_{\min} + \frac{1}{2}(\eta_0 - \eta_{\min})
        \left(1 + \cos\left(\frac{t\pi}{T_{\max}}\right)\right)

    :meth:`step` uses torch's recursive form

    .. math::
        \eta_{t} = \eta_{\min} + (\eta_{t-1} - \eta_{\min})
        \frac{1 + \cos\left(\frac{t\pi}{T_{\max}}\right)}{1 + \cos\left(\frac{(t-1)\pi}{T_{\max}}\right)},

    so changes made to the lr from outside are kept. There is no restart: after ``T_max`` the lr
    climbs back along the cosine (period ``2 * T_max``); see :class:`CosineAnnealingWarmRestarts`.

    Parameters
    ----------
    optimizer : fastoptim.Optimizer
    T_max : int
        Half period, in steps; non-zero.
    eta_min : float, default 0.0
        Minimum learning rate.
    last_epoch : int, default -1

    Examples
    --------
    >>> import numpy as np
    >>> import fastoptim as fo
    >>> p = fo.Parameter(np.zeros(2))
    >>> opt = fo.SGD([p], lr=0.1)
    >>> sched = fo.lr_scheduler.CosineAnnealingLR(opt, T_max=2, eta_min=0.0)
    >>> lrs = [sched.get_last_lr()[0]]
    >>> for _ in range(2):
    ...     p.grad = np.ones(2)
    ...     opt.step()
    ...     sched.step()
    ...     lrs.append(sched.get_last_lr()[0])
    >>> lrs
    [0.1, 0.05, 0.0]
    """

    _state_validators = {"T_max": _v_nonzero_real, "eta_min": _v_real}

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        _check_nonzero_period("CosineAnnealingLR", "T_max", T_max)
        self._init(optimizer, last_epoch, T_max=T_max, eta_min=eta_min)

    def get_lr(self):
        """Return the next lrs of the recursive cosine form (closed form on a resumed first step)."""
        _warn_get_lr_called_within_step(self)
        if self._is_initial:
            return _param_groups_val_list(self.optimizer, "lr")
        elif self._step_count == 1 and self.last_epoch > 0:
            return [
                self.eta_min + (base_lr - self.eta_min) * (1 + math.cos((self.last_epoch) * math.pi / self.T_max)) / 2
                for base_lr, group in zip(self.base_lrs, self.optimizer.param_groups)
            ]
        elif (self.last_epoch - 1 - self.T_max) % (2 * self.T_max) == 0:
            return [
                group["lr"] + (base_lr - self.eta_min) * (1 - math.cos(math.pi / self.T_max)) / 2
                for base_lr, group in zip(self.base_lrs, self.optimizer.param_groups)
            ]
        return [
            (1 + math.cos(math.pi * self.last_epoch / self.T_max))
            / (1 + math.cos(math.pi * (self.last_epoch - 1) / self.T_max))
            * (group["lr"] - self.eta_min)
            + self.eta_min
            for group in self.optimizer.param_groups
        ]

    def _get_closed_form_lr(self):
        return [
            self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
            for base_lr in self.base_lrs
        ]


def _check_cawr_arguments(T_0, T_mult, eta_min):
    if T_0 <= 0 or not isinstance(T_0, int):
        raise ValueError(f"Expected positive integer T_0, but got {T_0}")
    if T_mult < 1 or not isinstance(T_mult, int):
        raise ValueError(f"Expected integer T_mult >= 1, but got {T_mult}")
    if not isinstance(eta_min, (float, int)):
        raise ValueError(f"Expected float or int eta_min, but got {eta_min} of type {type(eta_min)}")


def _v_cawr_T_0(scheduler, key, value):
    value = _v_integer(scheduler, key, value)
    if value <= 0:
        raise ValueError(f"{_StateError.prefix(scheduler, key)}: Expected positive integer T_0, but got {value}")
    return value


def _v_cawr_T_mult(scheduler, key, value):
    value = _v_integer(scheduler, key, value)
    if value < 1:
        raise ValueError(f"{_StateError.prefix(scheduler, key)}: Expected integer T_mult >= 1, but got {value}")
    return value


class CosineAnnealingWarmRestarts(LRScheduler):
    r"""Cosine annealing with warm restarts (SGDR).

    .. math::
        \eta_t = \eta_{\min} + \frac{1}{2}(\eta_0 - \eta_{\min})
        \left(1 + \cos\left(\frac{T_{cur}}{T_i}\pi\right)\right)

    :math:`T_{cur}` counts the steps (possibly fractional) since the last restart and
    :math:`T_i` is the length of the current period: ``T_0`` at first, multiplied by ``T_mult``
    after each restart.

    Parameters
    ----------
    optimizer : fastoptim.Optimizer
    T_0 : int
        Length of the first period, > 0.
    T_mult : int, default 1
        Factor by which the period grows after each restart, >= 1.
    eta_min : float, default 0.0
    last_epoch : int, default -1

    Raises
    ------
    ValueError
        torch's messages for a ``T_0`` that is not a positive int, a ``T_mult`` that is not an
        int >= 1, an ``eta_min`` that is not a float or int, and a negative ``epoch`` in :meth:`step`.

    Notes
    -----
    :meth:`step` may be called with a fractional ``epoch`` (e.g. ``epoch + batch / n_batches``)
    without any warning; ``last_epoch`` is then its floor. This scheduler never gives the
    step-order warning, and its ``_step_count`` stays 0 (as in torch).

    Examples
    --------
    >>> import numpy as np
    >>> import fastoptim as fo
    >>> p = fo.Parameter(np.zeros(2))
    >>> opt = fo.SGD([p], lr=0.1)
    >>> sched = fo.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=2)
    >>> lrs = [sched.get_last_lr()[0]]
    >>> for _ in range(3):
    ...     p.grad = np.ones(2)
    ...     opt.step()
    ...     sched.step()
    ...     lrs.append(sched.get_last_lr()[0])
    >>> lrs
    [0.1, 0.05, 0.1, 0.05]
    """

    _state_validators = {
        "T_0": _v_cawr_T_0,
        "T_i": _v_real_where("> 0", lambda v: v > 0),
        "T_mult": _v_cawr_T_mult,
        "eta_min": _v_real,
        "T_cur": _v_real,
    }

    def __init__(self, optimizer, T_0, T_mult=1, eta_min=0.0, last_epoch=-1):
        _check_cawr_arguments(T_0, T_mult, eta_min)
        self._init(optimizer, last_epoch, T_0=T_0, T_i=T_0, T_mult=T_mult, eta_min=eta_min,
                   T_cur=last_epoch)

    def get_lr(self):
        """Return ``eta_min + (base_lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2`` per group."""
        _warn_get_lr_called_within_step(self)
        return [
            self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * self.T_cur / self.T_i)) / 2
            for base_lr in self.base_lrs
        ]

    def step(self, epoch=None):
        """Advance by one step, or jump to ``epoch`` (fractional epochs allowed, no warning).

        Parameters
        ----------
        epoch : float, optional
            The (possibly fractional) epoch to set, e.g. ``epoch + i / iters`` inside an epoch.

        Raises
        ------
        ValueError
            ``epoch`` is negative (``"Expected non-negative epoch, but got -1"``).
        TypeError
            ``epoch`` is not a real number.
        """
        if epoch is not None and not _is_real(epoch):
            raise TypeError(
                f"epoch must be a real number, but got {epoch!r} of type {type(epoch).__name__}."
            )
        if epoch is None and self.last_epoch < 0:
            epoch = 0

        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur = self.T_cur + 1
            if self.T_cur >= self.T_i:
                self.T_cur = self.T_cur % self.T_i
                self.T_i = self.T_i * self.T_mult
        else:
            if epoch < 0:
                raise ValueError(f"Expected non-negative epoch, but got {epoch}")
            if epoch >= self.T_0:
                if self.T_mult == 1:
                    self.T_cur = epoch % self.T_0
                else:
                    n = int(math.log((epoch / self.T_0 * (self.T_mult - 1) + 1), self.T_mult))
                    self.T_cur = epoch - self.T_0 * (self.T_mult**n - 1) / (self.T_mult - 1)
                    self.T_i = self.T_0 * self.T_mult ** (n)
            else:
                self.T_i = self.T_0
                self.T_cur = epoch
        self.last_epoch = math.floor(epoch)

        with _enable_get_lr_call(self):
            values = self.get_lr()
        _set_group_values(self, values)
        self._last_lr = _param_groups_val_list(self.optimizer, "lr")
