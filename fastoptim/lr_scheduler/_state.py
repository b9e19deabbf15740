"""``load_state_dict`` schema: one small validator per state key, and copies of state values.

Each scheduler class declares ``_state_validators = {key: validator}``; ``LRScheduler`` finds a
key's validator through the class hierarchy. A validator takes ``(scheduler, key, value)`` and
returns the normalised value or raises an error that names the class, the key and the fix.
"""

from __future__ import annotations

import copy
import numbers
import operator
import types
from collections.abc import Mapping

import numpy as np


def _copy_value(value):
    """Copy a 0-d array so that stored lrs never alias a group's array (torch clones tensors)."""
    return value.copy() if isinstance(value, np.ndarray) else value


def _is_integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


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
