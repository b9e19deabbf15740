"""The class layer's checks and conversions, each in one place: parameters, gradients, shared
memory, hyperparameter scalars, torch's flags, and the loading of saved state values.

Every error says what was wrong, where (``param 2 of param group 1``) and how to fix it.
"""
import math
import numbers

import numpy as np

from fastoptim.parameter import Parameter, _describe, _grad_mismatch

__all__ = []  # private helpers of fastoptim.optim


# ---------------------------------------------------------------------- hyperparameters


def _is_array_scalar(value):
    """Whether ``value`` is NumPy's counterpart of a torch Tensor hyperparameter.

    ``np.float64`` is a Python float and therefore counts as a float, as it would in torch.
    """
    return isinstance(value, (np.ndarray, np.generic)) and not isinstance(value, float)


def _to_float(value):
    """A hyperparameter as a Python float: Python numbers, NumPy scalars and 1-element arrays."""
    if type(value) is float:
        return value
    if isinstance(value, np.ndarray):
        return float(value.reshape(()).item())
    return float(value)


def _check_lr(lr):
    """torch 2.13's first two checks of every optimizer but SGD, with its messages."""
    if _is_array_scalar(lr) and np.size(lr) != 1:
        raise ValueError("Tensor lr must be 1-element")
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")


def _check_at_least_zero(value, what):
    """torch's ``if not 0.0 <= value: raise ValueError(f"Invalid {what}: {value}")``."""
    if not 0.0 <= value:
        raise ValueError(f"Invalid {what}: {value}")


def _check_betas(betas, top=1.0, top_included=False):
    """torch's checks of ``betas[0]`` then ``betas[1]``: in ``[0, top)`` (``[0, top]`` with
    ``top_included``)."""
    for index in (0, 1):
        beta = betas[index]
        if not (0.0 <= beta <= top if top_included else 0.0 <= beta < top):
            raise ValueError(f"Invalid beta parameter at index {index}: {beta}")


def _check_moment_hyperparameters(lr, betas, eps, weight_decay):
    """torch 2.13's checks of the two-moment optimizers, in its order: ``lr``, ``eps``, both
    betas in ``[0, 1)``, ``weight_decay``."""
    _check_lr(lr)
    _check_at_least_zero(eps, "epsilon value")
    _check_betas(betas)
    _check_at_least_zero(weight_decay, "weight_decay value")


def _check_moment_group(optimizer, group):
    """``_check_hyperparameters`` of a two-moment optimizer whose checks are exactly
    :func:`_check_moment_hyperparameters` (torch's, in its order)."""
    _check_moment_hyperparameters(group["lr"], group["betas"], group["eps"], group["weight_decay"])


def _check_pairs(group, info):
    """Each tuple-valued hyperparameter of the registry entry ``info`` (``betas``, ``etas``,
    ``step_sizes``) must be a pair (a loaded or edited group may hold anything); the message
    names its entries by their kernel arguments (``betas must be a pair (beta1, beta2)``)."""
    pairs = {}
    for name, key, index in info.scalar_access:
        if index is not None:
            pairs.setdefault(key, []).append(name)
    for key, names in pairs.items():
        value = group[key]
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise ValueError(f"{key} must be a pair ({', '.join(names)}), got {value!r}")


def _check_unsupported_flags(group):
    """torch's ``fused`` combination errors, then the flags fastoptim does not support."""
    if group.get("fused"):
        if group.get("differentiable"):
            raise RuntimeError("`fused` does not support `differentiable`")
        if group.get("foreach"):
            raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
    if group.get("differentiable"):
        raise ValueError(
            "differentiable=True is not supported by fastoptim: it makes torch's update "
            "differentiable through autograd, and fastoptim updates NumPy arrays without "
            "autograd. Use differentiable=False (the default)."
        )
    if group.get("capturable"):
        raise ValueError(
            "capturable=True is not supported by fastoptim: it makes torch's update capturable "
            "in a CUDA graph, and fastoptim runs on the CPU. Use capturable=False (the default); "
            "the numbers are the same."
        )


def _check_bool_options(group, names):
    """Refuse a non-bool value of a yes/no option (``amsgrad="yes"``), naming the option.

    torch tests such options only for truth, so ``"no"`` would switch the feature on. NumPy's
    bool and the ints 0 and 1 are accepted.
    """
    for name in names:
        value = group[name]
        if not (value is True or value is False or isinstance(value, np.bool_)
                or (isinstance(value, numbers.Integral) and value in (0, 1))):
            raise TypeError(
                f"{name} must be a bool (True or False), got {_describe(value)} {value!r}"
            )


# ---------------------------------------------------------------------- parameters and grads


def _where(index, group_index=None):
    if group_index is None:
        return f"param {index}"
    return f"param {index} of param group {group_index}"


def _check_param(param, index, group_index=None):
    """Raise if ``param`` is not something the kernels can update in place."""
    if not isinstance(param, Parameter):
        if isinstance(param, np.ndarray):
            raise TypeError(
                "optimizer can only optimize Tensors, but one of the params is "
                f"{_describe(param)} ({_where(index, group_index)}): fastoptim optimizes "
                "fastoptim.Parameter arrays; wrap it as fastoptim.Parameter(a), which shares "
                "its memory, so `a` sees the updates"
            )
        raise TypeError(
            "optimizer can only optimize Tensors, but one of the params is "
            f"{_describe(param)} (fastoptim optimizes fastoptim.Parameter arrays)"
        )
    if (param.dtype not in (np.float32, np.float64) or not param.dtype.isnative) and not (
            param.dtype.itemsize == 2 and param.dtype.name in ("float16", "bfloat16")):
        raise TypeError(
            f"{_where(index, group_index)} has dtype {param.dtype.str}, but the optimizers "
            "update float32 and float64 Parameters only (and float16/bfloat16 ones through a "
            "float32 master copy)"
        )
    flags = param.flags
    if not flags.c_contiguous:
        raise ValueError(
            f"{_where(index, group_index)} is not C-contiguous (a view such as p.T or p[::2] of "
            "another Parameter?); the kernels update each parameter as one flat block. Optimize "
            "a contiguous Parameter, e.g. fastoptim.Parameter(np.ascontiguousarray(x))."
        )
    if not flags.writeable:
        raise ValueError(
            f"{_where(index, group_index)} is read-only, but the optimizer updates parameters "
            "in place; make it writeable (p.flags.writeable = True) or optimize a writeable copy"
        )


def _check_no_duplicates(params, group_index):
    """Refuse a Parameter listed twice in one group (stricter than torch, which warns and then
    applies the update once per occurrence)."""
    first = {}
    for index, p in enumerate(params):
        seen = first.setdefault(id(p), index)
        if seen != index:
            raise ValueError(
                f"{_where(index, group_index)} is the same Parameter as {_where(seen, group_index)}: "
                "optimizer contains a parameter group with duplicate parameters, which fastoptim "
                "refuses (torch warns, then applies the update once per occurrence). List each "
                "parameter once."
            )


def _check_grad(param, grad, group_index, group):
    index = next(i for i, p in enumerate(group["params"]) if p is param)
    where = _where(index, group_index)
    problem = _grad_mismatch(grad, param.dtype, param.shape)
    if problem == "type":
        raise TypeError(
            f"the grad of {where} is a {_describe(grad)}, not a numpy.ndarray; assign an "
            "array to p.grad. Nothing was updated."
        )
    if problem == "dtype":
        raise TypeError(
            f"the grad of {where} has dtype {grad.dtype}, but the parameter has dtype "
            f"{param.dtype} (was the dtype changed in place?); assign "
            f"p.grad = g.astype(np.{param.dtype.name}). Nothing was updated."
        )
    if problem == "shape":
        raise ValueError(
            f"the grad of {where} has shape {grad.shape}, but the parameter has shape "
            f"{param.shape} (was a shape changed in place?); a gradient must have exactly the "
            "parameter's shape. Nothing was updated."
        )


def _with_grad(params):
    """The parameters that have a gradient, in order (a step skips the others, as torch's)."""
    return [p for p in params if p.grad is not None]


def _check_group_arrays(group_index, group, params, grads):
    """Check a group's parameters (they may have been changed in place since they were added)
    and gradients (whose shape or dtype may have been changed in place since assignment)."""
    for p, g in zip(params, grads):
        try:
            ok = g.dtype is p.dtype and g.shape == p.shape
        except AttributeError:
            ok = False
        if not ok:
            _check_grad(p, g, group_index, group)
        flags = p.flags
        if not (flags.writeable and flags.c_contiguous):
            index = next(i for i, q in enumerate(group["params"]) if q is p)
            _check_param(p, index, group_index)


def _diagnose_failed_call(exc, group_index, group, params, grads):
    """Re-raise a functional-layer error about ``params``/``grads`` naming the group and the
    parameter's position in it (the functional layer only knows list positions). Returns
    quietly if the error is about something else, so the caller re-raises the original."""
    if isinstance(exc, (TypeError, ValueError)):
        try:
            _check_group_arrays(group_index, group, params, grads)
        except (TypeError, ValueError) as clearer:
            raise clearer from exc


def _first_overlap(labelled):
    """The labels of two arrays of ``labelled`` (``(array, label)`` pairs) whose memory
    overlaps, or None (a label is anything: it is only returned, so it can be formatted only
    when there is an error to report).

    Every array here is C-contiguous, so it covers exactly the bytes [start, start + nbytes):
    two of them share memory exactly when these intervals overlap, which a sort finds in
    O(n log n) instead of calling np.shares_memory on every pair.
    """
    intervals = []
    for position, (array, label) in enumerate(labelled):
        if array.nbytes == 0:
            continue
        start = array.__array_interface__["data"][0]
        intervals.append((start, start + array.nbytes, position, label))
    intervals.sort(key=lambda interval: interval[:3])
    furthest = None
    for interval in intervals:
        if furthest is not None and interval[0] < furthest[1]:
            return furthest[3], interval[3]
        if furthest is None or interval[1] > furthest[1]:
            furthest = interval
    return None


def _check_no_shared_memory(groups):
    """Refuse distinct parameters whose memory overlaps (e.g. two views of one buffer)."""
    labelled = [
        (p, (index, group_index))
        for group_index, group in enumerate(groups)
        for index, p in enumerate(group["params"])
    ]
    overlap = _first_overlap(labelled)
    if overlap is not None:
        first, second = (_where(*label) for label in overlap)
        raise ValueError(
            f"{first} and {second} share memory (views of one buffer?). Each parameter is "
            "updated in place, so overlapping parameters would be updated twice per step; "
            "give each parameter its own memory, e.g. fastoptim.Parameter(a.copy())."
        )


def _check_state_not_shared(groups, state, family):
    """Refuse state arrays that share memory with one another or with a parameter (a buffer
    assigned to two parameters' state, or a parameter used as its own buffer): the step would
    update that memory twice. Checked before the step changes anything."""
    labelled = []
    arrays = 0
    for group_index, group in enumerate(groups):
        for index, p in enumerate(group["params"]):
            labelled.append((p, (None, index, group_index)))
            param_state = state.get(p)
            if not param_state:
                continue
            for key, value in param_state.items():
                if isinstance(value, np.ndarray) and value.ndim > 0:
                    labelled.append((value, (key, index, group_index)))
                    arrays += 1
    if not arrays:  # parameters alone were checked where they entered
        return
    overlap = _first_overlap(labelled)
    if overlap is not None:
        first, second = (
            _where(index, group_index) if key is None
            else f"state[{key!r}] of {_where(index, group_index)}"
            for key, index, group_index in overlap
        )
        raise ValueError(
            f"the {family} optimizer's {first} and {second} share memory; every parameter and "
            "state array must have its own memory, or the step would update it twice (was one "
            "array assigned to two state entries, or a parameter to a state entry? assign a "
            "copy, e.g. state[p]['exp_avg'] = buffer.copy()). Nothing was updated."
        )


# ---------------------------------------------------------------------- loading saved state


def _is_torch_tensor(value):
    return type(value).__module__.startswith("torch")


def _torch_hint(where, value):
    return (
        f"{where} is a {_describe(value)}; convert torch state dicts with "
        "fastoptim.interop.from_torch(state_dict) before loading them"
    )


def _snapshot(value):
    """Copy arrays and containers of a state/group value, so a state dict is independent."""
    if isinstance(value, np.ndarray):
        return np.array(value, copy=True, subok=False)
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snapshot(v) for v in value]
    if type(value) is tuple:
        return tuple(_snapshot(v) for v in value)
    return value


def _load_array(value, param, where):
    """A copy of a saved state array, validated against ``param`` and cast to its dtype."""
    if not isinstance(value, np.ndarray):
        if _is_torch_tensor(value):
            raise TypeError(_torch_hint(where, value))
        raise TypeError(f"{where} must be a numpy.ndarray, got {_describe(value)}")
    if value.dtype.kind != "f" and value.dtype.name != "bfloat16":
        raise TypeError(
            f"{where} has dtype {value.dtype}, but optimizer state must be floating point"
        )
    if value.shape != param.shape:
        raise ValueError(
            f"{where} has shape {value.shape}, but its parameter has shape {param.shape}; the "
            "state dict belongs to a different model (or the parameters are in another order)"
        )
    return np.array(value, dtype=param.dtype, order="C", copy=True)


def _load_step(value, where):
    """A saved step count as an exact, non-negative Python int."""
    raw = value
    if isinstance(value, np.ndarray):
        if value.ndim != 0 or value.dtype.kind not in "iuf":
            raise TypeError(
                f"{where} must be an integer (or a 0-d integer/float array), got an array of "
                f"shape {value.shape} and dtype {value.dtype}"
            )
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.number)):
        if _is_torch_tensor(raw):
            raise TypeError(_torch_hint(where, raw))
        raise TypeError(f"{where} must be an integer step count, got {_describe(raw)}")
    if isinstance(value, (numbers.Integral, np.integer)):
        step = int(value)
    else:
        value = float(value)
        if not math.isfinite(value) or value != math.floor(value):
            raise ValueError(f"{where} must be a whole number of steps, got {value!r}")
        step = int(value)
    if step < 0:
        raise ValueError(f"{where} must be non-negative, got {step}")
    return step


def _load_scalar_array(value, where):
    """A copy of saved 0-d state (torch's 0-d tensor: NAdam's ``mu_product``, ASGD's ``eta``),
    as a 0-d float32/float64 array; its dtype is kept (it is the dtype torch computes in)."""
    if not isinstance(value, np.ndarray):
        if _is_torch_tensor(value):
            raise TypeError(_torch_hint(where, value))
        raise TypeError(f"{where} must be a 0-d numpy.ndarray, got {_describe(value)}")
    if value.dtype not in (np.float32, np.float64) or value.shape != ():
        raise TypeError(
            f"{where} must be a 0-d float32 or float64 array, got an array of shape "
            f"{value.shape} and dtype {value.dtype}"
        )
    return np.array(value, dtype=value.dtype.newbyteorder("="), copy=True)


# How each kind of scalar state is loaded (OptimizerInfo.scalar_state names them).
_SCALAR_STATE_LOADERS = {"step": _load_step}
