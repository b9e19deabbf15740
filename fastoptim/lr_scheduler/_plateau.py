"""``ReduceLROnPlateau``: lower the lr when a metric stops improving."""

from __future__ import annotations

import math
import warnings

from fastoptim.lr_scheduler._base import (
    EPOCH_DEPRECATION_WARNING, LRScheduler, _check_integer_argument, _param_groups_val_list,
    _update_param_group_val,
)
from fastoptim.lr_scheduler._state import (
    _StateError, _v_choice, _v_group_lrs, _v_integer, _v_non_negative_integer, _v_optional_real,
    _v_real, _v_real_list,
)
from fastoptim.optimizer import Optimizer


def _v_plateau_factor(scheduler, key, value):
    value = _v_real(scheduler, key, value)
    if value >= 1.0:
        raise ValueError(f"{_StateError.prefix(scheduler, key)}: Factor should be < 1.0.")
    return value


class ReduceLROnPlateau(LRScheduler):
    r"""Reduce each group's lr by ``factor`` when a metric has stopped improving.

    .. math::
        \eta \leftarrow \max(\eta \cdot \texttt{factor}, \texttt{min\_lr})
        \quad \text{after more than } \texttt{patience} \text{ steps without improvement}

    (an update smaller than ``eps`` is skipped). In ``"min"`` mode with ``"rel"`` threshold a
    metric :math:`a` improves on the best :math:`b` when :math:`a < b (1 - \texttt{threshold})`;
    ``"abs"`` uses :math:`a < b - \texttt{threshold}`, and ``"max"`` mode the mirror images.
    After a reduction, ``cooldown`` steps pass before bad steps are counted again.

    Parameters
    ----------
    optimizer : fastoptim.Optimizer
    mode : {"min", "max"}, default "min"
    factor : float, default 0.1
        Must be ``< 1.0``.
    patience : int, default 10
        Steps without improvement tolerated before reducing.
    threshold : float, default 1e-4
    threshold_mode : {"rel", "abs"}, default "rel"
    cooldown : int, default 0
    min_lr : float or list of float, default 0
        Lower bound, for all groups or per group.
    eps : float, default 1e-8
        Minimal decay; smaller changes are ignored.

    Raises
    ------
    ValueError
        torch's messages: ``"Factor should be < 1.0."`` (checked before the optimizer),
        ``"expected 2 min_lrs, got 1"``, ``"mode foo is unknown!"``,
        ``"threshold mode foo is unknown!"``.
    TypeError
        ``optimizer`` is not a :class:`fastoptim.Optimizer`.

    Notes
    -----
    Unlike the other schedulers, it does not set ``initial_lr``, does not step at construction,
    and ``step`` takes the metric: ``sched.step(val_loss)``. It never gives the step-order warning.

    Examples
    --------
    >>> import numpy as np
    >>> import fastoptim as fo
    >>> p = fo.Parameter(np.zeros(2))
    >>> opt = fo.SGD([p], lr=0.1)
    >>> sched = fo.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1)
    >>> for val_loss in [1.0, 1.0, 1.0, 0.5]:
    ...     p.grad = np.ones(2)
    ...     opt.step()
    ...     sched.step(val_loss)
    >>> sched.get_last_lr()
    [0.05]
    """

    _state_validators = {
        "factor": _v_plateau_factor,
        "default_min_lr": _v_optional_real,
        "min_lrs": _v_real_list,
        "patience": _v_real,
        "cooldown": _v_real,
        "eps": _v_real,
        "last_epoch": _v_integer,
        "_last_lr": _v_group_lrs,
        "mode_worse": _v_real,
        "mode": _v_choice("min", "max"),
        "threshold": _v_real,
        "threshold_mode": _v_choice("rel", "abs"),
        "best": _v_real,
        "cooldown_counter": _v_real,
        "num_bad_epochs": _v_non_negative_integer,
    }

    def __init__(
        self,
        optimizer,
        mode="min",
        factor=0.1,
        patience=10,
        threshold=1e-4,
        threshold_mode="rel",
        cooldown=0,
        min_lr=0,
        eps=1e-8,
    ):
        if factor >= 1.0:
            raise ValueError("Factor should be < 1.0.")
        self.factor = factor

        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        self.optimizer = optimizer

        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != len(optimizer.param_groups):
                raise ValueError(f"expected {len(optimizer.param_groups)} min_lrs, got {len(min_lr)}")
            self.default_min_lr = None
            self.min_lrs = list(min_lr)
        else:
            self.default_min_lr = min_lr
            self.min_lrs = [min_lr] * len(optimizer.param_groups)

        self.patience = patience
        self.cooldown = cooldown
        self.eps = eps
        self.last_epoch = 0
        self._last_lr = _param_groups_val_list(self.optimizer, "lr")
        self._init_is_better(mode=mode, threshold=threshold, threshold_mode=threshold_mode)
        self._reset()

    def _reset(self):
        """Reset the bad-step and cooldown counters."""
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    def step(self, metrics, epoch=None):
        """Record ``metrics`` (anything ``float()`` accepts) and reduce the lrs if it plateaued.

        Parameters
        ----------
        metrics : float
            The monitored quantity, e.g. the validation loss.
        epoch : int, optional
            Deprecated (warns): sets :attr:`last_epoch`.
        """
        current = float(metrics)
        if epoch is None:
            epoch = self.last_epoch + 1
        else:
            epoch = _check_integer_argument("epoch", epoch)
            warnings.warn(EPOCH_DEPRECATION_WARNING, UserWarning, stacklevel=2)
        self.last_epoch = epoch

        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1

        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad steps during the cooldown do not count

        if self.num_bad_epochs > self.patience:
            self._reduce_lr(epoch)
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

        self._last_lr = _param_groups_val_list(self.optimizer, "lr")

    def _reduce_lr(self, epoch):
        if len(self.optimizer.param_groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(
                    "The number of param groups in the `optimizer` "
                    f"({len(self.optimizer.param_groups)}) differs "
                    f"from when `ReduceLROnPlateau` was initialized "
                    f"({len(self.min_lrs)}), usually due to a new "
                    "param group being added to the optimizer. Please "
                    "modify the `min_lrs` field to match the length "
                    "of the `optimizer` param groups."
                )
            self.min_lrs = [self.default_min_lr] * len(self.optimizer.param_groups)

        for i, param_group in enumerate(self.optimizer.param_groups):
            old_lr = float(param_group["lr"])
            new_lr = max(old_lr * self.factor, self.min_lrs[i])
            if old_lr - new_lr > self.eps:
                _update_param_group_val(param_group, "lr", new_lr)

    @property
    def in_cooldown(self):
        """Whether the scheduler is in the cooldown that follows a reduction."""
        return self.cooldown_counter > 0

    def _is_better(self, a, best):
        if self.mode == "min" and self.threshold_mode == "rel":
            rel_epsilon = 1.0 - self.threshold
            return a < best * rel_epsilon
        elif self.mode == "min" and self.threshold_mode == "abs":
            return a < best - self.threshold
        elif self.mode == "max" and self.threshold_mode == "rel":
            rel_epsilon = self.threshold + 1.0
            return a > best * rel_epsilon
        else:  # mode == "max" and threshold_mode == "abs"
            return a > best + self.threshold

    def _init_is_better(self, mode, threshold, threshold_mode):
        if mode not in {"min", "max"}:
            raise ValueError("mode " + mode + " is unknown!")
        if threshold_mode not in {"rel", "abs"}:
            raise ValueError("threshold mode " + threshold_mode + " is unknown!")
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.mode = mode
        self.threshold = threshold
        self.threshold_mode = threshold_mode

    def _check_state_consistency(self, checked):
        if checked["default_min_lr"] is None and len(checked["min_lrs"]) != len(self.optimizer.param_groups):
            raise ValueError(
                f"{_StateError.prefix(self, 'min_lrs')} has {len(checked['min_lrs'])} values for "
                f"{len(self.optimizer.param_groups)} param groups (a per-group min_lr list must "
                "have one value per group)."
            )

    def _apply_state(self, checked):
        self.__dict__.update(checked)
        self._init_is_better(mode=self.mode, threshold=self.threshold, threshold_mode=self.threshold_mode)
