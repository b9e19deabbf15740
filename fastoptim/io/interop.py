"""Convert optimizer state dicts between ``torch.optim`` and fastoptim.

Both layouts are torch's (``{"state": {index: {...}}, "param_groups": [...]}``); they differ only
in the array type (tensors vs NumPy arrays) and in Adam's ``step`` (a 0-d float tensor in torch,
a Python int in fastoptim). With these two functions a run can move between the libraries in the
middle of training::

    opt_fo.load_state_dict(fo.interop.from_torch(opt_torch.state_dict()))
    opt_torch.load_state_dict(fo.interop.to_torch(opt_fo.state_dict()))

(the parameters themselves are not part of an optimizer state dict: copy them over too).

torch is imported only inside the functions, so fastoptim does not depend on it. The step
conversions are shared with :mod:`fastoptim.io.torchfile`, which applies them to optimizer state
dicts read from or written to torch files without torch.
"""

import math
import numbers
import warnings

import numpy as np

from fastoptim.parameter import _describe

__all__ = ["to_torch", "from_torch"]

# torch's float32 step counter represents every integer up to 2**24 exactly, and no further.
_FLOAT32_EXACT_STEPS = 2**24


def _check_layout(state_dict, function):
    if not isinstance(state_dict, dict) or "state" not in state_dict or (
        "param_groups" not in state_dict
    ):
        raise TypeError(
            f"{function} expects an optimizer state dict, a dict with 'state' and "
            f"'param_groups'; got {_describe(state_dict)}"
            + (f" with keys {list(state_dict)}" if isinstance(state_dict, dict) else "")
        )


def _is_step_count(value):
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(
        value, (bool, np.bool_)
    )


def _warn_inexact_step(value, stacklevel):
    if value > _FLOAT32_EXACT_STEPS:
        warnings.warn(
            f"step {int(value)} is above 2**24, which torch's float32 step counter cannot "
            "represent exactly; it is rounded to the nearest float32",
            UserWarning,
            stacklevel=stacklevel,
        )


def step_count(step):
    """The exact int count of a torch step value (a Python float or int), or ValueError."""
    if isinstance(step, float) and (not math.isfinite(step) or step != math.floor(step)):
        raise ValueError(f"a torch step tensor holds {step!r}, not a whole number")
    if step < 0:
        raise ValueError(f"a torch step tensor holds {step!r}, a negative count")
    return int(step)


def _is_optimizer_state_dict(value):
    return (type(value) is dict and type(value.get("state")) is dict
            and type(value.get("param_groups")) is list)


def _map_steps(obj, convert):
    """Return ``obj`` with ``convert(step)`` applied to the per-parameter ``step`` of every
    optimizer state dict in it (found at any depth of dicts, lists and tuples); containers on the
    way are rebuilt only where something changed, everything else is returned as it is."""
    if _is_optimizer_state_dict(obj):
        state = {}
        for index, entry in obj["state"].items():
            if type(entry) is dict and "step" in entry:
                new = convert(entry["step"])
                entry = entry if new is entry["step"] else {**entry, "step": new}
            state[index] = entry
        return {**obj, "state": state}
    if isinstance(obj, dict):
        items = {key: _map_steps(value, convert) for key, value in obj.items()}
        if all(items[key] is value for key, value in obj.items()):
            return obj
        if type(obj) is dict:
            return items
        new = type(obj)()
        new.update(items)
        new.__dict__.update(getattr(obj, "__dict__", {}))
        return new
    if type(obj) in (list, tuple):
        items = [_map_steps(value, convert) for value in obj]
        if all(new is old for new, old in zip(items, obj)):
            return obj
        return type(obj)(items)
    return obj


def steps_as_ints(obj):
    """torch file -> fastoptim: 0-d step arrays (torch's step tensors) become Python ints."""

    def convert(step):
        if type(step) is np.ndarray and step.ndim == 0 and step.dtype.kind in "iuf":
            try:
                return step_count(step.item())
            except ValueError:
                return step  # not a count: left for load_state_dict to report
        return step

    return _map_steps(obj, convert)


def steps_as_arrays(obj):
    """fastoptim -> torch file: int steps become 0-d float32 arrays, torch's step tensors."""

    def convert(step):
        if _is_step_count(step):
            _warn_inexact_step(step, stacklevel=7)
            return np.array(float(step), dtype=np.float32)
        return step

    return _map_steps(obj, convert)


def _convert(value, leaf, key=None):
    """Rebuild ``value`` with new containers, applying ``leaf(value, key)`` to everything else."""
    if isinstance(value, dict):
        return {k: _convert(v, leaf, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_convert(v, leaf) for v in value]
    if type(value) is tuple:
        return tuple(_convert(v, leaf) for v in value)
    return leaf(value, key)


def _bfloat16():
    """``ml_dtypes.bfloat16`` as a NumPy dtype, or None without ml_dtypes."""
    try:
        import ml_dtypes  # noqa: PLC0415 - optional dependency
    except ImportError:
        return None
    return np.dtype(ml_dtypes.bfloat16)


def to_torch(state_dict):
    """Convert a fastoptim optimizer state dict into one that ``torch.optim`` can load.

    Parameters
    ----------
    state_dict : dict
        From :meth:`fastoptim.Optimizer.state_dict`.

    Returns
    -------
    dict
        The same layout with every NumPy array replaced by a tensor holding a copy of it
        (dtype kept), per-parameter ``step`` counts by 0-d tensors of torch's scalar dtype
        (float32 unless torch's default dtype is float64, what torch's Adam uses), and
        NumPy-scalar or array hyperparameters (e.g. a 0-d ``lr``) by tensors. Nothing is shared
        with ``state_dict``.

    Warns
    -----
    UserWarning
        If a ``step`` is above 2**24 and torch's default dtype is float32: torch's counter
        cannot represent it exactly (it is rounded, and torch's own counter stops there).
    """
    import torch

    _check_layout(state_dict, "to_torch")
    step_dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32

    def leaf(value, key):
        if key == "step" and _is_step_count(value):
            if step_dtype == torch.float32:
                _warn_inexact_step(value, stacklevel=5)
            return torch.tensor(float(value), dtype=step_dtype)
        if isinstance(value, np.ndarray):
            if value.dtype.kind == "V" and value.dtype.name == "bfloat16":  # ml_dtypes: bit copy
                return torch.from_numpy(np.array(value, copy=True, order="C").view(np.int16)).view(
                    torch.bfloat16)
            return torch.from_numpy(np.array(value, copy=True, order="C"))
        if isinstance(value, np.generic) and not isinstance(value, (float, int, bool, str)):
            return torch.from_numpy(np.array(value, copy=True))
        return value

    return {
        "state": _convert(state_dict["state"], leaf),
        "param_groups": _convert(state_dict["param_groups"], leaf),
        **{k: _convert(v, leaf) for k, v in state_dict.items() if k not in ("state", "param_groups")},
    }


def from_torch(state_dict):
    """Convert a ``torch.optim`` state dict into one that fastoptim optimizers can load.

    Parameters
    ----------
    state_dict : dict
        From ``torch.optim.Optimizer.state_dict()`` (tensors on any device).

    Returns
    -------
    dict
        The same layout with every tensor replaced by a NumPy array holding a copy of it
        (dtype kept; bfloat16 as ``ml_dtypes.bfloat16``, or float32 exactly where ml_dtypes is
        not installed) and every ``step``
        tensor by an exact Python int. The result loads with
        :meth:`fastoptim.Optimizer.load_state_dict`, which checks and casts it further. Nothing
        is shared with ``state_dict``.

    Raises
    ------
    ValueError
        If a ``step`` is negative or not a whole number.
    """
    import torch

    _check_layout(state_dict, "from_torch")

    def to_numpy(tensor):
        tensor = tensor.detach().cpu()
        if tensor.dtype == torch.bfloat16:
            bfloat16 = _bfloat16()
            if bfloat16 is None:
                tensor = tensor.to(torch.float32)
            else:  # the bits, as ml_dtypes.bfloat16
                return np.array(tensor.contiguous().view(torch.int16).numpy(), copy=True).view(bfloat16)
        return np.array(tensor.numpy(), copy=True)

    def leaf(value, key):
        if isinstance(value, torch.Tensor):
            if key == "step":
                return step_count(value.item())
            return to_numpy(value)
        return value

    return {
        "state": _convert(state_dict["state"], leaf),
        "param_groups": _convert(state_dict["param_groups"], leaf),
        **{k: _convert(v, leaf) for k, v in state_dict.items() if k not in ("state", "param_groups")},
    }
