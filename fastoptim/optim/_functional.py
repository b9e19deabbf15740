"""What every functional form shares: argument checks and conversions, the one kernel call,
and the parameter descriptions of their docstrings.

The functional forms themselves live in their optimizer's module (``fastoptim/optim/<name>.py``,
next to the class); :mod:`fastoptim.functional` is their public home.
"""
import functools
import numbers

import numpy as np

__all__ = []


def _scalar(name, value):
    """A hyperparameter as a Python float (a number or a one-element array)."""
    if type(value) is float:  # the common case, without the ABC machinery below
        return value
    if type(value) is int:
        return float(value)
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"{name} must be a number or a one-element array, got an array of shape {value.shape}")
        value = value.reshape(()).item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    return float(value)


def _flag(name, value):
    if value is True or value is False:
        return value
    if not isinstance(value, np.bool_):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def _as_list(name, value):
    if type(value) is list:
        return value
    if isinstance(value, list):
        return value
    if isinstance(value, (tuple,)):
        raise TypeError(f"{name} must be a list (it may be updated in place), got a tuple; pass list({name})")
    raise TypeError(f"{name} must be a list of arrays, got {type(value).__name__}")


def _fused(kernel, grad_scale, found_inf):
    """``kernel`` with torch's fused ``grad_scale``/``found_inf`` bound where they are given (the
    kernel checks them with everything else, before anything changes; docs/fused.rst)."""
    if grad_scale is None and found_inf is None:
        return kernel
    return functools.partial(kernel, grad_scale=grad_scale, found_inf=found_inf)


def _step(kernel, lists, scalars, flags):
    """Check the lists, convert the hyperparameters, and run ``kernel`` (one compiled call).

    ``lists``, ``scalars`` and ``flags`` map argument names to values, in the order they are
    checked (so the first bad one is the one reported)."""
    args = [_as_list(name, value) for name, value in lists.items()]
    options = {name: _scalar(name, value) for name, value in scalars.items()}
    options.update({name: _flag(name, value) for name, value in flags.items()})
    kernel(*args, **options)


_PARAMS_DOC = """params : list of ndarray
        Updated in place.
    grads : list of ndarray
        One per param, same shape and dtype; only read."""

_STEPS_DOC = """state_steps : list of int
        Each param's step count *before* this step (Python ints, or 0-d integer arrays). Replaced
        in place by the new counts (Python ints), like torch's step tensors."""


_FUSED_DOC = """grad_scale : float or 0-d ndarray, optional
        torch's fused ``grad_scale``: every gradient is divided by it as it is read (the arrays
        in ``grads`` are not modified); a positive finite number.
    found_inf : bool, number or 0-d ndarray, optional
        torch's fused ``found_inf``: non-zero skips the step after the checks (nothing changes,
        step counts included)."""


def _shared_doc(func):
    """Fill the parameter descriptions every functional form shares into its docstring."""
    func.__doc__ = (func.__doc__.replace("{params}", _PARAMS_DOC).replace("{steps}", _STEPS_DOC)
                    .replace("{fused}", _FUSED_DOC))
    return func
