r"""Learning-rate schedulers: every scheduler of ``torch.optim.lr_scheduler`` for fastoptim optimizers.

Each class has the signature, validation messages, warnings, ``state_dict`` keys and, above all,
the *numbers* of its counterpart in torch 2.13: the learning rates are computed with the same
double-precision arithmetic in the same order, so a schedule gives exactly the same Python floats
as torch's, step for step, including the recursive ("chainable") forms that multiply the current
``group["lr"]`` and so accumulate rounding exactly as torch does.

Learning rates are Python floats
--------------------------------
torch allows a group's ``lr`` to be a 0-dim ``Tensor`` that schedulers update in place. The NumPy
counterpart is a 0-d ``numpy.ndarray``: when a group's value is one, the schedulers write into it in
place (``arr[()] = value``) and store copies of it, as torch does with tensors. Everything else is
treated as a Python number, and the parity with torch is tested for Python floats.

Differences from torch (all deliberate)
---------------------------------------
* torch detects ``scheduler.step()`` before ``optimizer.step()`` by replacing ``optimizer.step``
  with a wrapper. fastoptim never patches the optimizer: it compares the optimizer's
  ``_step_count`` (completed ``optimizer.step()`` calls) at the scheduler's first ``step()`` with
  its value when the scheduler was built, and it detects a replaced ``optimizer.step`` by
  comparing what ``optimizer.step`` resolves to (instance attribute or class function) with what it
  resolved to at construction. The warning texts are torch's.
* ``state_dict()`` returns copies of the containers it holds (torch returns live references).
* ``load_state_dict()`` is strict and all-or-nothing: unknown or missing keys, wrongly typed values
  (a non-integer ``last_epoch``, a ``base_lrs`` of the wrong length or with non-numbers, ...) and
  values with which the next ``step()`` would fail (a :class:`StepLR` ``step_size`` of 0, a
  :class:`CyclicLR` ``total_size`` of 0, ...) raise an error that names the key, and nothing is
  changed.
* A :class:`StepLR` ``step_size`` or :class:`CosineAnnealingLR` ``T_max`` of 0 is refused by the
  constructor (torch accepts it and raises ``ZeroDivisionError`` at the first ``step()``).
* ``last_epoch`` and the deprecated ``epoch`` argument of ``step()`` must be integers (torch does
  not check); :class:`CosineAnnealingWarmRestarts` keeps accepting fractional epochs.
* Constructors validate everything before they write into the optimizer's param groups, so an
  invalid :class:`CyclicLR` or :class:`OneCycleLR` leaves the optimizer untouched.
"""
from __future__ import annotations

import copy
import inspect
import math
import numbers
import operator
import types
import warnings
from bisect import bisect_right
from collections import Counter
from collections.abc import Mapping
from functools import partial

import numpy as np

from fastoptim.optimizer import Optimizer

__all__ = [
    "LambdaLR",
    "MultiplicativeLR",
    "StepLR",
    "MultiStepLR",
    "ConstantLR",
    "LinearLR",
    "ExponentialLR",
    "SequentialLR",
    "CosineAnnealingLR",
    "ChainedScheduler",
    "ReduceLROnPlateau",
    "CyclicLR",
    "CosineAnnealingWarmRestarts",
    "OneCycleLR",
    "PolynomialLR",
    "LRScheduler",
]

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


# ---------------------------------------------------------------------------------------------
# Helpers shared by the schedulers (the names mirror torch's)
# ---------------------------------------------------------------------------------------------


def _copy_value(value):
    """Copy a 0-d array so that stored lrs never alias a group's array (torch clones tensors)."""
    return value.copy() if isinstance(value, np.ndarray) else value


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


def _is_integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


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


# ---------------------------------------------------------------------------------------------
# load_state_dict validation: one small validator per key, found through the class hierarchy
# ---------------------------------------------------------------------------------------------


class _StateError:
    """Builds the errors of ``load_state_dict``: they name the class, the key and the fix."""

    @staticmethod
    def prefix(scheduler, key):
        return f"{type(scheduler).__name__}.load_state_dict: {key!r}"

    @staticmethod
    def type_error(scheduler, key, expected, value):
        return TypeError(
            f"{_StateError.prefix(scheduler, key)} must be {expected}, but got {value!r} of type "
            f"{type(value).__name__}. Load a state_dict() saved by the same scheduler class."
        )


def _v_integer(scheduler, key, value):
    if not _is_integer(value):
        raise _StateError.type_error(scheduler, key, "an integer", value)
    return operator.index(value)


def _v_non_negative_integer(scheduler, key, value):
    value = _v_integer(scheduler, key, value)
    if value < 0:
        raise ValueError(f"{_StateError.prefix(scheduler, key)} must be >= 0, but got {value}.")
    return value


def _v_real(scheduler, key, value):
    if not _is_real(value):
        raise _StateError.type_error(scheduler, key, "a real number", value)
    return value


def _v_real_where(condition, test):
    """A real number for which ``test`` holds (``condition`` says which, in the error).

    For the values a constructor never produces and with which the next ``step()`` would fail
    (a ``ZeroDivisionError`` from a ``step_size`` of 0, ...)."""

    def validator(scheduler, key, value):
        value = _v_real(scheduler, key, value)
        if not test(value):
            raise ValueError(
                f"{_StateError.prefix(scheduler, key)} must be {condition}, but got {value!r} (the "
                "next step() would fail with it). Load a state_dict() saved by the same scheduler "
                "class."
            )
        return value

    return validator


_v_nonzero_real = _v_real_where("non-zero", lambda value: value != 0)


def _check_nonzero_period(scheduler, name, value):
    """Constructor check of a period that the schedule divides by (torch fails at a later step)."""
    if _is_real(value) and value == 0:
        raise ValueError(
            f"{scheduler}: {name} must be non-zero (the schedule divides by it), but got {value!r}."
        )


def _v_optional_real(scheduler, key, value):
    return None if value is None else _v_real(scheduler, key, value)


def _v_bool(scheduler, key, value):
    if not isinstance(value, (bool, np.bool_)):
        raise _StateError.type_error(scheduler, key, "a bool", value)
    return bool(value)


def _is_lr_value(value):
    if _is_real(value):
        return True
    return isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "fiu"


def _v_sequence(scheduler, key, value, item_check, items, item, length=None, length_what=""):
    """A list/tuple of ``items`` (e.g. "real numbers"), each ``item`` (e.g. "a real number")."""
    if not isinstance(value, (list, tuple)):
        raise _StateError.type_error(scheduler, key, f"a list of {items}", value)
    if length is not None and len(value) != length:
        raise ValueError(
            f"{_StateError.prefix(scheduler, key)} has {len(value)} values, but {length_what} "
            f"{length}. The state_dict was saved for an optimizer with a different number of "
            "param groups; rebuild the optimizer with the same groups before loading."
        )
    for index, element in enumerate(value):
        if not item_check(element):
            raise TypeError(
                f"{_StateError.prefix(scheduler, key)}[{index}] must be {item}, "
                f"but got {element!r} of type {type(element).__name__}. Load a state_dict() saved "
                "by the same scheduler class."
            )
    return [_copy_value(element) for element in value]


def _v_group_lrs(scheduler, key, value):
    """One learning rate (a real number or 0-d real array) per param group of the optimizer."""
    return _v_sequence(
        scheduler, key, value, _is_lr_value, "real numbers", "a real number",
        length=len(scheduler.optimizer.param_groups), length_what="the optimizer has param groups:",
    )


def _v_real_list(scheduler, key, value):
    return _v_sequence(scheduler, key, value, _is_real, "real numbers", "a real number")


def _v_integer_list(scheduler, key, value):
    return _v_sequence(scheduler, key, value, _is_integer, "integers", "an integer")


def _v_choice(*choices):
    def validator(scheduler, key, value):
        if not isinstance(value, str) or value not in choices:
            raise ValueError(
                f"{_StateError.prefix(scheduler, key)} must be one of "
                f"{', '.join(repr(c) for c in choices)}, but got {value!r}."
            )
        return value

    return validator


def _v_str(scheduler, key, value):
    if not isinstance(value, str):
        raise _StateError.type_error(scheduler, key, "a str", value)
    return value


def _v_positive_integer(scheduler, key, value):
    value = _v_integer(scheduler, key, value)
    if value <= 0:
        raise ValueError(f"{_StateError.prefix(scheduler, key)} must be > 0, but got {value}.")
    return value


def _v_callable_states(scheduler, key, value, callables):
    """State of the user's callables: ``None`` (nothing saved) or an attribute dict per callable."""
    if not isinstance(value, (list, tuple)):
        raise _StateError.type_error(scheduler, key, "a list of None or dicts", value)
    if len(value) != len(callables):
        raise ValueError(
            f"{_StateError.prefix(scheduler, key)} has {len(value)} entries, but this scheduler "
            f"has {len(callables)} lr_lambdas (one per param group)."
        )
    states = []
    for index, (state, fn) in enumerate(zip(value, callables)):
        if state is None:
            states.append(None)
            continue
        if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
            raise TypeError(
                f"{_StateError.prefix(scheduler, key)}[{index}] must be None or a dict of "
                f"attribute names to values, but got {state!r} of type {type(state).__name__}."
            )
        if isinstance(fn, types.FunctionType) or not hasattr(fn, "__dict__"):
            raise ValueError(
                f"{_StateError.prefix(scheduler, key)}[{index}] holds the attributes of a callable "
                f"object, but this scheduler's callable {index} is {fn!r}, which keeps no state. "
                "Construct the scheduler with the same kind of callable objects that were saved."
            )
        states.append(_copy_state(dict(state)))
    return states


def _copy_state(value):
    """Copy the containers of a state value (lists, tuples, dicts, Counters, 0-d arrays).

    Plain values are returned as they are; a deep copy would also try to copy user objects
    (lambdas' closures, locks) that torch's state dicts may reference but never own.
    """
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, list):
        return [_copy_state(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_copy_state(item) for item in value)
    if isinstance(value, dict):
        result = copy.copy(value)  # keeps the type (Counter, OrderedDict)
        for key in result:
            result[key] = _copy_state(value[key])
        return result
    return value


def _callable_state(fn):
    """What torch saves for a user callable: ``None`` for functions, a copy of ``__dict__`` else.

    Callables without a ``__dict__`` (builtins) are saved as ``None``; torch would raise here.
    """
    if isinstance(fn, types.FunctionType) or not hasattr(fn, "__dict__"):
        return None
    return _copy_state(fn.__dict__.copy())


# ---------------------------------------------------------------------------------------------
# Base class
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Schedulers
# ---------------------------------------------------------------------------------------------


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
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

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
        self.milestones = Counter(milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

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


def _v_checked_real(check):
    """A real number that also passes the constructor's own range check (same message)."""

    def validator(scheduler, key, value):
        value = _v_real(scheduler, key, value)
        try:
            check(value)
        except ValueError as exc:
            raise ValueError(f"{_StateError.prefix(scheduler, key)}: {exc}") from None
        return value

    return validator


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
        self.factor = factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

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
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

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
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

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


def _check_composite_children(composite, optimizer, schedulers):
    """Validation shared by SequentialLR and ChainedScheduler (torch's messages and order)."""
    name = type(composite).__name__
    for scheduler_idx, scheduler in enumerate(schedulers):
        if not hasattr(scheduler, "optimizer"):
            raise TypeError(f"{name} at index {scheduler_idx} should have `optimizer` as its attribute.")
        if isinstance(scheduler, ReduceLROnPlateau):
            raise ValueError(
                f"{name} does not support `ReduceLROnPlateau` scheduler as it "
                "requires additional kwargs to be specified when calling `step`, "
                f"but got one at index {scheduler_idx} in the given schedulers sequence."
            )
        if optimizer != scheduler.optimizer:
            raise ValueError(
                f"{name} expects all schedulers to belong to the same optimizer, but "
                f"got scheduler {scheduler.__class__.__name__} at index {scheduler_idx} has {scheduler.optimizer}, "
                f"which is different from {optimizer.__class__.__name__}."
            )


class _CompositeStateMixin:
    """state_dict of SequentialLR / ChainedScheduler: ``_schedulers`` holds the children's dicts."""

    # A composite that a parent SequentialLR "initial-steps" (nested composites) gains these.
    _optional_state_keys = frozenset({"_step_count", "_is_initial", "_get_lr_called_within_step"})

    def state_dict(self):
        """Return the state as a dict; ``_schedulers`` holds each child's ``state_dict()``."""
        state = {
            key: _copy_state(value)
            for key, value in self.__dict__.items()
            if key not in self._transient_attributes and key != "_schedulers"
        }
        state["_schedulers"] = [scheduler.state_dict() for scheduler in self._schedulers]
        return state

    def _check_state_consistency(self, checked):
        children = checked["_schedulers"]
        if not isinstance(children, (list, tuple)) or len(children) != len(self._schedulers):
            count = len(children) if isinstance(children, (list, tuple)) else type(children).__name__
            raise ValueError(
                f"{_StateError.prefix(self, '_schedulers')} must be a list of {len(self._schedulers)} "
                f"child state dicts (one per scheduler), but got {count}."
            )
        checked_children = []
        for index, (scheduler, child_state) in enumerate(zip(self._schedulers, children)):
            try:
                checked_children.append(scheduler._checked_state(child_state))
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{type(self).__name__}.load_state_dict: _schedulers[{index}]: {exc}") from exc
        checked["_schedulers"] = checked_children

    def _apply_state(self, checked):
        children = checked.pop("_schedulers")
        self.__dict__.update(checked)
        for scheduler, child_state in zip(self._schedulers, children):
            scheduler._apply_state(child_state)


class SequentialLR(_CompositeStateMixin, LRScheduler):
    r"""Run schedulers one after another, switching at the given milestones.

    .. math::
        \eta_t = \eta^{(k)}_{t - m_k}, \qquad m_k \le t < m_{k+1}

    where :math:`\eta^{(k)}` is the schedule of ``schedulers[k]`` and :math:`m_0 = 0 < m_1 < \dots`
    are the milestones. At a milestone the next scheduler restarts from its step 0 (via its
    closed form where it has one), starting from the lr the previous one left.

    Parameters
    ----------
    optimizer : fastoptim.Optimizer
        Must be the optimizer of every scheduler.
    schedulers : list of LRScheduler
        At least one; no :class:`ReduceLROnPlateau`. May contain other SequentialLR or
        :class:`ChainedScheduler` objects.
    milestones : list of int
        ``len(schedulers) - 1`` increasing step indices.
    last_epoch : int, default -1

    Raises
    ------
    ValueError, TypeError
        torch's messages for an empty list, a child without ``optimizer``, a ReduceLROnPlateau
        child, a child of another optimizer, or a wrong number of milestones.

    Notes
    -----
    Construction resets every group's lr to ``initial_lr``, undoes the initial step of every
    child (recursively) and performs the initial step of the first active one, as torch does.
    ``step()`` takes no ``epoch`` argument and never warns about the step order.

    Examples
    --------
    Linear warmup for 2 steps, then exponential decay:

    >>> import numpy as np
    >>> import fastoptim as fo
    >>> from fastoptim import lr_scheduler as ls
    >>> p = fo.Parameter(np.zeros(2))
    >>> opt = fo.SGD([p], lr=0.1)
    >>> warmup = ls.LinearLR(opt, start_factor=0.5, total_iters=2)
    >>> decay = ls.ExponentialLR(opt, gamma=0.5)
    >>> sched = ls.SequentialLR(opt, schedulers=[warmup, decay], milestones=[2])
    >>> lrs = [sched.get_last_lr()[0]]
    >>> for _ in range(4):
    ...     p.grad = np.ones(2)
    ...     opt.step()
    ...     sched.step()
    ...     lrs.append(sched.get_last_lr()[0])
    >>> lrs
    [0.05, 0.07500000000000001, 0.1, 0.05, 0.025]
    """

    _state_validators = {"_milestones": _v_integer_list, "last_epoch": _v_integer, "_last_lr": _v_group_lrs}

    def __init__(self, optimizer, schedulers, milestones, last_epoch=-1):
        if len(schedulers) < 1:
            raise ValueError(f"{self.__class__.__name__} expects at least one scheduler, but got no scheduler.")
        _check_composite_children(self, optimizer, schedulers)
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(
                "Sequential Schedulers expects number of schedulers provided to be one more "
                f"than the number of milestone points, but got number of schedulers {len(schedulers)} and the "
                f"number of milestones to be equal to {len(milestones)}"
            )
        last_epoch = _check_integer_argument("last_epoch", last_epoch)
        self._schedulers = schedulers
        self._milestones = milestones
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer

        # Start from the initial lrs: every child's constructor already stepped once.
        for group in self.optimizer.param_groups:
            _update_param_group_val(group, "lr", group["initial_lr"])

        # Undo the steps the children's constructors performed...
        self.recursive_undo()

        # ...and perform the initial step of the scheduler that runs at step 0 only.
        idx = bisect_right(self._milestones, 0)
        self._schedulers[idx]._initial_step()

        self._last_lr = schedulers[idx].get_last_lr()

    def _check_state_consistency(self, checked):
        if len(checked["_milestones"]) != len(self._schedulers) - 1:
            raise ValueError(
                f"{_StateError.prefix(self, '_milestones')} has {len(checked['_milestones'])} "
                f"milestones, but this SequentialLR has {len(self._schedulers)} schedulers and needs "
                f"{len(self._schedulers) - 1}."
            )
        super()._check_state_consistency(checked)

    def recursive_undo(self, sched=None):
        """Decrement ``last_epoch`` of every (nested) child, undoing their constructors' steps."""
        scheds = self if sched is None else sched
        if hasattr(scheds, "_schedulers"):
            for s in scheds._schedulers:
                self.recursive_undo(s)
        elif hasattr(scheds, "last_epoch"):
            scheds.last_epoch -= 1

    def step(self):
        """Advance by one step: restart the next scheduler at a milestone, else step the active one."""
        self.last_epoch += 1
        idx = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            scheduler._update_lr(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()


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
        self.total_iters = total_iters
        self.power = power
        super().__init__(optimizer, last_epoch)

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
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

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


class ChainedScheduler(_CompositeStateMixin, LRScheduler):
    r"""Step several schedulers together: their (chainable) updates compose.

    .. math::
        \eta_t = f_K \circ \dots \circ f_1(\eta_{t-1})

    where :math:`f_k` is the chainable update of ``schedulers[k]``; with multiplicative schedulers
    the factors multiply, e.g. a :class:`ConstantLR` warmup on top of an :class:`ExponentialLR`.

    Parameters
    ----------
    schedulers : sequence of LRScheduler
        At least one; no :class:`ReduceLROnPlateau`; all of the same optimizer.
    optimizer : fastoptim.Optimizer, optional
        Defaults to ``schedulers[0].optimizer``.

    Raises
    ------
    ValueError, TypeError
        torch's messages for an empty sequence, a child without ``optimizer``, a
        ReduceLROnPlateau child or a child of another optimizer.

    Examples
    --------
    >>> import numpy as np
    >>> import fastoptim as fo
    >>> from fastoptim import lr_scheduler as ls
    >>> p = fo.Parameter(np.zeros(2))
    >>> opt = fo.SGD([p], lr=0.1)
    >>> sched = ls.ChainedScheduler([ls.ConstantLR(opt, factor=0.5, total_iters=2),
    ...                              ls.ExponentialLR(opt, gamma=0.5)])
    >>> lrs = [sched.get_last_lr()[0]]
    >>> for _ in range(3):
    ...     p.grad = np.ones(2)
    ...     opt.step()
    ...     sched.step()
    ...     lrs.append(sched.get_last_lr()[0])
    >>> lrs
    [0.05, 0.025, 0.025, 0.0125]
    """

    _state_validators = {"_last_lr": _v_group_lrs}

    def __init__(self, schedulers, optimizer=None):
        if len(schedulers) < 1:
            raise ValueError(
                f"{self.__class__.__name__} expects at least one scheduler to be chained, but got no scheduler."
            )
        if optimizer is None:
            # torch reads schedulers[0].optimizer unguarded (an AttributeError); a missing
            # attribute is reported by the index check below instead.
            optimizer = getattr(schedulers[0], "optimizer", None)
        _check_composite_children(self, optimizer, schedulers)
        self._schedulers = schedulers
        self.optimizer = optimizer
        self._last_lr = _param_groups_val_list(self._schedulers[-1].optimizer, "lr")

    def step(self):
        """Step every scheduler in order."""
        for scheduler in self._schedulers:
            scheduler.step()
        self._last_lr = _param_groups_val_list(self._schedulers[-1].optimizer, "lr")


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


class CyclicLR(LRScheduler):
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

    _optional_state_keys = frozenset({"use_beta1", "base_momentums", "max_momentums"})
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

    def _expected_state_keys(self):
        keys = set(self.state_dict())
        if not self.__dict__.get("cycle_momentum", False):
            # A scheduler built without momentum cycling may load a state that has it.
            keys -= self._optional_state_keys
        return keys

    def _check_state_consistency(self, checked):
        if checked["cycle_momentum"]:
            missing = [k for k in ("use_beta1", "base_momentums", "max_momentums") if k not in checked]
            if missing:
                raise ValueError(
                    f"CyclicLR.load_state_dict: 'cycle_momentum' is True but the state has no "
                    f"{', '.join(repr(k) for k in missing)}; load a complete CyclicLR state_dict."
                )
            key = "betas" if checked["use_beta1"] else "momentum"
            if any(key not in group for group in self.optimizer.param_groups):
                raise ValueError(
                    f"CyclicLR.load_state_dict: the state cycles {key!r}, but the optimizer's param "
                    f"groups have no {key!r}; load it into an optimizer of the saved type."
                )
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
        self.T_0 = T_0
        self.T_i = T_0
        self.T_mult = T_mult
        self.eta_min = eta_min
        self.T_cur = last_epoch
        super().__init__(optimizer, last_epoch)

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


class OneCycleLR(LRScheduler):
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

    _optional_state_keys = frozenset({"use_beta1"})
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

        if three_phase:
            self._schedule_phases = [
                {
                    "end_step": float(pct_start * self.total_steps) - 1,
                    "start_lr": "initial_lr",
                    "end_lr": "max_lr",
                    "start_momentum": "max_momentum",
                    "end_momentum": "base_momentum",
                },
                {
                    "end_step": float(2 * pct_start * self.total_steps) - 2,
                    "start_lr": "max_lr",
                    "end_lr": "initial_lr",
                    "start_momentum": "base_momentum",
                    "end_momentum": "max_momentum",
                },
                {
                    "end_step": self.total_steps - 1,
                    "start_lr": "initial_lr",
                    "end_lr": "min_lr",
                    "start_momentum": "max_momentum",
                    "end_momentum": "max_momentum",
                },
            ]
        else:
            self._schedule_phases = [
                {
                    "end_step": float(pct_start * self.total_steps) - 1,
                    "start_lr": "initial_lr",
                    "end_lr": "max_lr",
                    "start_momentum": "max_momentum",
                    "end_momentum": "base_momentum",
                },
                {
                    "end_step": self.total_steps - 1,
                    "start_lr": "max_lr",
                    "end_lr": "min_lr",
                    "start_momentum": "base_momentum",
                    "end_momentum": "max_momentum",
                },
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

    def _expected_state_keys(self):
        keys = set(self.state_dict())
        if not self.__dict__.get("cycle_momentum", False):
            keys -= self._optional_state_keys
        return keys

    def _check_state_consistency(self, checked):
        if checked["cycle_momentum"]:
            if "use_beta1" not in checked:
                raise ValueError(
                    "OneCycleLR.load_state_dict: 'cycle_momentum' is True but the state has no "
                    "'use_beta1'; load a complete OneCycleLR state_dict."
                )
            key = "betas" if checked["use_beta1"] else "momentum"
            if any(key not in group for group in self.optimizer.param_groups):
                raise ValueError(
                    f"OneCycleLR.load_state_dict: the state cycles {key!r}, but the optimizer's "
                    f"param groups have no {key!r}; load it into an optimizer of the saved type."
                )
