"""``LRScheduler``, the base of every scheduler, and the helpers the schedulers share."""

from __future__ import annotations

import inspect
import operator
import warnings
from collections.abc import Mapping

import numpy as np

from fastoptim.lr_scheduler._state import (
    _copy_state, _copy_value, _is_integer, _v_bool, _v_group_lrs, _v_integer,
    _v_non_negative_integer,
)
from fastoptim.optimizer import Optimizer


EPOCH_DEPRECATION_WARNING = (
    "The epoch parameter in `scheduler.step()` was not necessary and is being "
    "deprecated where possible. Please use `scheduler.step()` to step the "
    "scheduler. During the deprecation, if epoch is different from None, the "
    "closed form is used instead of the new chainable form, where available. "
    "Please open an issue if you are unable to replicate your use case: "
    "https://github.com/pytorch/pytorch/issues/new/choose."
)


# torch's texts, word for word (including the two spaces before "Failure"), so that filters and
# tests written for torch keep working.
STEP_OVERRIDDEN_WARNING = (
    "Seems like `optimizer.step()` has been overridden after learning rate scheduler "
    "initialization. Please, make sure to call `optimizer.step()` before "
    "`lr_scheduler.step()`. See more details at "
    "https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate"
)


STEP_ORDER_WARNING = (
    "Detected call of `lr_scheduler.step()` before `optimizer.step()`. "
    "In PyTorch 1.1.0 and later, you should call them in the opposite order: "
    "`optimizer.step()` before `lr_scheduler.step()`.  Failure to do this "
    "will result in PyTorch skipping the first value of the learning rate schedule. "
    "See more details at "
    "https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate"
)


GET_LR_OUTSIDE_STEP_WARNING = (
    "To get the last learning rate computed by the scheduler, please use `get_last_lr()`."
)


def _format_param(name, optimizer, param):
    """Return one value per param group: a list/tuple is checked for length, a scalar repeated."""
    if isinstance(param, (list, tuple)):
        if len(param) != len(optimizer.param_groups):
            raise ValueError(
                f"{name} must have the same length as optimizer.param_groups. "
                f"{name} has {len(param)} values, param_groups has {len(optimizer.param_groups)}."
            )
    else:
        param = [param] * len(optimizer.param_groups)
    return [_copy_value(value) for value in param]


def _param_groups_val_list(optimizer, key):
    """``[group[key] for group in optimizer.param_groups]``, copying 0-d arrays."""
    return [_copy_value(group[key]) for group in optimizer.param_groups]


def _update_param_group_val(param_group, key, value):
    """Set ``param_group[key]``; a 0-d array already there is filled in place, never replaced.

    Filling in place keeps any reference a user holds to the array valid, as torch does for
    tensor-valued hyper-parameters.
    """
    current = param_group[key]
    if isinstance(current, np.ndarray):
        current[()] = value
    else:
        param_group[key] = value


def _set_group_values(scheduler, values):
    """Write one lr per param group; the counts must match (torch uses ``zip(strict=True)``)."""
    groups = scheduler.optimizer.param_groups
    values = list(values)
    if len(values) != len(groups):
        raise ValueError(
            f"{type(scheduler).__name__} computed {len(values)} learning rates for "
            f"{len(groups)} param groups; the optimizer's param groups changed after the "
            "scheduler was created. Create the scheduler after the last add_param_group() call."
        )
    for group, lr in zip(groups, values):
        _update_param_group_val(group, "lr", lr)


def _resolve_optimizer_step(optimizer):
    """Return the object that ``optimizer.step`` resolves to, without calling or binding it.

    That is the instance attribute if one was set, else the class attribute found on the MRO
    (``inspect.getattr_static`` returns the raw function, the same object every time, where
    ``getattr`` would build a new bound method on each access). Comparing this object with the one
    recorded at construction tells whether ``optimizer.step`` was replaced in between.
    """
    instance_attributes = getattr(optimizer, "__dict__", None) or {}
    if "step" in instance_attributes:
        return instance_attributes["step"]
    return inspect.getattr_static(type(optimizer), "step", None)


def _check_integer_argument(name, value):
    """Return ``value`` as an int; ``bool``, floats and other types are refused."""
    if not _is_integer(value):
        raise TypeError(
            f"{name} must be an integer, but got {value!r} of type {type(value).__name__}. "
            "Pass a whole number of steps (only CosineAnnealingWarmRestarts.step() accepts "
            "fractional epochs)."
        )
    return operator.index(value)


def _warn_get_lr_called_within_step(lr_scheduler):
    # stacklevel=3 points at the code that called get_lr(), not at get_lr() itself.
    if not lr_scheduler._get_lr_called_within_step:
        warnings.warn(GET_LR_OUTSIDE_STEP_WARNING, UserWarning, stacklevel=3)


class _enable_get_lr_call:
    """Context in which ``get_lr()`` is being called by ``step()`` (so it does not warn)."""

    def __init__(self, o):
        self.o = o

    def __enter__(self):
        self.o._get_lr_called_within_step = True
        return self

    def __exit__(self, type, value, traceback):
        self.o._get_lr_called_within_step = False


class _initial_mode:
    """Context of the step the constructor performs (chainable forms keep the lr unchanged)."""

    def __init__(self, o):
        self.o = o

    def __enter__(self):
        self.o._is_initial = True

    def __exit__(self, type, value, traceback):
        self.o._is_initial = False


class LRScheduler:
    r"""Base class of the learning-rate schedulers.

    A scheduler owns one optimizer and rewrites ``group["lr"]`` of each of its param groups on
    every :meth:`step`. Subclasses implement :meth:`get_lr` (the *chainable* form, which usually
    multiplies the current ``group["lr"]``) and, where one exists, ``_get_closed_form_lr`` (used
    when the deprecated ``epoch`` argument is passed to :meth:`step`).

    Construction records ``group["initial_lr"]`` (with ``setdefault``, so the first scheduler on an
    optimizer wins), sets :attr:`base_lrs` from it and performs one initial step, which moves
    :attr:`last_epoch` from ``-1`` to ``0`` and writes the schedule's first learning rates.

    .. math::
        \eta_{g,t} = \texttt{get\_lr}()_g, \qquad t = \texttt{last\_epoch}

    Parameters
    ----------
    optimizer : fastoptim.Optimizer
        The optimizer whose learning rates are scheduled.
    last_epoch : int, default -1
        Index of the last step taken. ``-1`` starts a new schedule. Any other value resumes one
        and requires ``"initial_lr"`` in every param group (load the optimizer's state dict first);
        prefer :meth:`load_state_dict` for resuming.

    Attributes
    ----------
    optimizer : fastoptim.Optimizer
    base_lrs : list of float
        ``group["initial_lr"]`` of each group at construction.
    last_epoch : int
        Number of steps taken since the schedule started (``0`` after construction).

    Raises
    ------
    TypeError
        ``optimizer`` is not a :class:`fastoptim.Optimizer` (``"<type> is not an Optimizer"``), or
        ``last_epoch`` is not an integer.
    KeyError
        ``last_epoch >= 0`` but a param group has no ``"initial_lr"``.

    Warns
    -----
    UserWarning
        On the first :meth:`step` of this scheduler, at most once:

        * torch's ``"Seems like `optimizer.step()` has been overridden after learning rate
          scheduler initialization..."`` when ``optimizer.step`` now resolves to something other
          than at construction: an instance attribute ``optimizer.step = ...`` was set, removed or
          replaced, or the class's ``step`` function was swapped. fastoptim never patches the
          optimizer; it remembers the instance ``__dict__`` entry or the class function that
          ``optimizer.step`` resolved to when the scheduler was built.
        * otherwise torch's ``"Detected call of `lr_scheduler.step()` before `optimizer.step()`..."``
          when the optimizer's ``_step_count`` (completed ``optimizer.step()`` calls) has not changed
          since the scheduler was built. torch uses a flag on the optimizer that is never reset, so
          it stays silent for a scheduler created after the optimizer's first step; fastoptim asks
          the question per scheduler.

        :class:`ReduceLROnPlateau`, :class:`SequentialLR`, :class:`ChainedScheduler` and
        :class:`CosineAnnealingWarmRestarts` never give these two warnings (as in torch).
        Passing ``epoch`` to :meth:`step` gives torch's deprecation warning, and calling
        :meth:`get_lr` outside :meth:`step` warns to use :meth:`get_last_lr`.

    Examples
    --------
    A scheduler whose lr is the initial lr divided by the step number plus one:

    >>> import numpy as np
    >>> import fastoptim as fo
    >>> class InverseLR(fo.lr_scheduler.LRScheduler):
    ...     def get_lr(self):
    ...         return [base_lr / (self.last_epoch + 1) for base_lr in self.base_lrs]
    >>> p = fo.Parameter(np.zeros(2))
    >>> opt = fo.SGD([p], lr=0.1)
    >>> sched = InverseLR(opt)
    >>> for _ in range(3):
    ...     p.grad = np.ones(2)
    ...     opt.step()
    ...     sched.step()
    >>> sched.get_last_lr()
    [0.025]
    """

    _get_lr_called_within_step = False
    _is_initial = False

    # Attributes that describe this process (the optimizer object, what the optimizer looked like
    # when the scheduler was built) rather than the schedule: never saved, never loaded.
    _transient_attributes = frozenset(
        {"optimizer", "_optimizer_step_at_init", "_optimizer_step_count_at_init"}
    )
    # Keys a valid state dict may lack (or carry) depending on how the scheduler was built.
    _optional_state_keys = frozenset()
    _state_validators = {
        "base_lrs": _v_group_lrs,
        "last_epoch": _v_integer,
        "_step_count": _v_non_negative_integer,
        "_is_initial": _v_bool,
        "_get_lr_called_within_step": _v_bool,
        "_last_lr": _v_group_lrs,
    }

    def __init__(self, optimizer, last_epoch=-1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        self.optimizer = optimizer
        last_epoch = _check_integer_argument("last_epoch", last_epoch)

        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", _copy_value(group["lr"]))
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(
                        f"param 'initial_lr' is not specified in param_groups[{i}] when resuming "
                        "scheduler with last_epoch >= 0.\n"
                        "This typically happens when:\n"
                        "1. You're trying to resume training from a checkpoint but haven't "
                        "properly loaded the optimizer state\n"
                        "2. You're using last_epoch >= 0 for a fresh training run (not recommended)"
                    )
        self.base_lrs = _param_groups_val_list(optimizer, "initial_lr")
        self.last_epoch = last_epoch
        # What `optimizer.step` is now; compared at the first step() to detect a replacement.
        self._optimizer_step_at_init = _resolve_optimizer_step(optimizer)
        self._initial_step()


    def _init(self, optimizer, last_epoch, **hyperparameters):
        """A subclass's ``__init__`` after its checks: store its hyperparameters as attributes
        (in the given order), then start as :class:`LRScheduler` does."""
        for name, value in hyperparameters.items():
            setattr(self, name, value)
        LRScheduler.__init__(self, optimizer, last_epoch)

    def _initial_step(self):
        """Reset the step count and perform the constructor's step (in initial mode)."""
        self._step_count = 0
        self._optimizer_step_count_at_init = getattr(self.optimizer, "_step_count", None)
        with _initial_mode(self):
            self.step()

    # -- state -----------------------------------------------------------------------------------

    def state_dict(self):
        """Return the scheduler's state as a dict (torch's keys and values).

        It holds every attribute except the optimizer: the hyper-parameters, ``base_lrs``,
        ``last_epoch``, ``_step_count``, ``_last_lr`` and the class's own counters. Containers are
        copies, so changing the returned dict never changes the scheduler.

        Returns
        -------
        dict
        """
        return {
            key: _copy_state(value)
            for key, value in self.__dict__.items()
            if key not in self._transient_attributes
        }

    def load_state_dict(self, state_dict):
        """Load a state saved by :meth:`state_dict` (of fastoptim or torch).

        Strict and all-or-nothing: the keys must be those this scheduler saves, and each value
        must have the right type (``last_epoch`` an integer, ``base_lrs`` one real number per param
        group, ...). On any error nothing is changed. ``state_dict`` itself is never modified and
        its containers are copied, not aliased.

        Load the optimizer's state dict too (it holds ``initial_lr`` and the current lrs).

        Parameters
        ----------
        state_dict : dict
            A dict returned by :meth:`state_dict`.

        Raises
        ------
        TypeError
            ``state_dict`` is not a dict, or a value has the wrong type.
        ValueError
            Unknown or missing keys, or a list of the wrong length or a value out of range.
        """
        self._apply_state(self._checked_state(state_dict))

    def _expected_state_keys(self):
        return set(self.state_dict())

    def _checked_state(self, state_dict):
        """Validate ``state_dict`` against this scheduler; return normalised copies of its values."""
        name = type(self).__name__
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"{name}.load_state_dict expects the dict returned by state_dict(), but got "
                f"{type(state_dict).__name__}."
            )
        expected = self._expected_state_keys()
        optional = self._optional_state_keys
        unknown = [k for k in state_dict if k not in expected and k not in optional]
        missing = sorted(k for k in expected if k not in state_dict and k not in optional)
        if unknown or missing:
            problems = []
            if unknown:
                problems.append(f"unknown key(s) {', '.join(repr(k) for k in unknown)}")
            if missing:
                problems.append(f"missing key(s) {', '.join(repr(k) for k in missing)}")
            raise ValueError(
                f"{name}.load_state_dict: {' and '.join(problems)}. A {name} state_dict has the "
                f"keys {', '.join(repr(k) for k in sorted(expected))}; load the dict saved "
                f"by a {name} built with the same arguments."
            )
        checked = {}
        for key, value in state_dict.items():
            validator = self._state_validator(key)
            checked[key] = validator(self, key, value) if validator else _copy_state(value)
        self._check_state_consistency(checked)
        return checked

    @classmethod
    def _state_validator(cls, key):
        for klass in cls.__mro__:
            validator = vars(klass).get("_state_validators", {}).get(key)
            if validator is not None:
                return validator
        return None

    def _check_state_consistency(self, checked):
        """Cross-key checks of a validated state (subclasses extend this)."""

    def _apply_state(self, checked):
        self.__dict__.update(checked)

    # -- learning rates --------------------------------------------------------------------------

    def get_last_lr(self):
        """Return the learning rates the last :meth:`step` wrote, one per param group.

        Returns
        -------
        list of float
            Each step replaces this list (it is never modified in place), so a list obtained
            earlier keeps its values.
        """
        return self._last_lr

    def get_lr(self):
        """Compute the learning rates of the next step (chainable form), one per param group.

        Called by :meth:`step`. Calling it directly warns, and for the chainable schedulers its
        result is not the current lr (it applies the factor of the current step once more, and
        :class:`CyclicLR`/:class:`OneCycleLR` also write the momentum). Use :meth:`get_last_lr`
        to read the current lrs.
        """
        raise NotImplementedError

    def _warn_if_optimizer_not_stepped(self):
        at_init = self.__dict__.get("_optimizer_step_at_init", _MISSING)
        if at_init is not _MISSING and _resolve_optimizer_step(self.optimizer) is not at_init:
            warnings.warn(STEP_OVERRIDDEN_WARNING, UserWarning, stacklevel=3)
            return
        count_at_init = self.__dict__.get("_optimizer_step_count_at_init")
        if count_at_init is not None and getattr(self.optimizer, "_step_count", None) == count_at_init:
            warnings.warn(STEP_ORDER_WARNING, UserWarning, stacklevel=3)

    def step(self, epoch=None):
        """Advance the schedule by one step and write the new lrs into the param groups.

        Call it after ``optimizer.step()``.

        Parameters
        ----------
        epoch : int, optional
            Deprecated (warns, as in torch): sets :attr:`last_epoch` to ``epoch`` and uses the
            closed form of the schedule where the class has one (else :meth:`get_lr`).

        Raises
        ------
        TypeError
            ``epoch`` is not an integer (nothing is changed).

        Warns
        -----
        UserWarning
            Only on this scheduler's first call: torch's "`optimizer.step()` has been overridden"
            warning if ``optimizer.step`` no longer resolves to what it did at construction, else
            torch's "Detected call of `lr_scheduler.step()` before `optimizer.step()`" warning if
            ``optimizer._step_count`` has not changed since construction. See :class:`LRScheduler`.
        """
        if epoch is not None:
            epoch = _check_integer_argument("epoch", epoch)
        if self._step_count == 1:
            self._warn_if_optimizer_not_stepped()
        self._step_count += 1
        if epoch is not None:
            warnings.warn(EPOCH_DEPRECATION_WARNING, UserWarning, stacklevel=2)
        self._update_lr(epoch)

    def _update_lr(self, epoch=None):
        with _enable_get_lr_call(self):
            if epoch is None:
                self.last_epoch += 1
                values = self.get_lr()
            else:
                self.last_epoch = epoch
                if hasattr(self, "_get_closed_form_lr"):
                    values = self._get_closed_form_lr()
                else:
                    values = self.get_lr()
        _set_group_values(self, values)
        self._last_lr = _param_groups_val_list(self.optimizer, "lr")


_MISSING = object()


class _LRScheduler(LRScheduler):
    """Alias of :class:`LRScheduler` kept for code written against older torch versions."""
