"""Low-precision state and master weights (docs/low_precision.rst): the group keys, their checks,
and what the step template, state loading and the constructors of the elementwise optimizers need.

Two group keys, set by the constructor arguments of the same names (or in a param group dict) and
present in a group only when given:

* ``state_dtype``: ``None`` (the param's dtype; float32 for a float16/bfloat16 param), ``"float32"``,
  ``"bfloat16"`` or ``"float16"`` (NumPy dtypes are accepted and stored by name) for the optimizer's
  state arrays. The arithmetic stays float32: the kernel loads, computes as for float32 state and
  stores rounded. float64 params keep float64 state.
* ``stochastic_rounding``: ``False`` (round to nearest even), ``True`` (stochastic, seed 0) or an int
  seed >= 0.

A float16/bfloat16 :class:`fastoptim.Parameter` is updated through a float32 master copy, the state
key ``"master_param"``, created from the param at its first step.
"""
import functools
import inspect

import numpy as np

from fastoptim._bfloat16 import bfloat16

STATE_DTYPES = ("float32", "bfloat16", "float16")
LOW_PRECISION_PARAM_DTYPES = ("float16", "bfloat16")
MASTER_KEY = "master_param"
_MASK64 = (1 << 64) - 1


def _dtype_name(value):
    if isinstance(value, str):
        return value
    try:
        return np.dtype(value).name
    except TypeError:
        return None


def dtype_of(name):
    """The NumPy dtype of a state dtype name (``"bfloat16"`` needs ``ml_dtypes``)."""
    if name == "bfloat16":
        return bfloat16("state_dtype='bfloat16'")
    return np.dtype(name)


def is_low_precision(dtype):
    """Whether a param of this dtype is updated through a float32 master copy."""
    return dtype.itemsize == 2 and dtype.name in LOW_PRECISION_PARAM_DTYPES


def check_group(group):
    """Validate the low-precision keys of a complete group and normalise them in place.

    Raises TypeError/ValueError naming the key; changes nothing when it raises.
    """
    updates = {}
    if "state_dtype" in group and group["state_dtype"] is not None:
        value = group["state_dtype"]
        name = _dtype_name(value)
        if name not in STATE_DTYPES:
            raise TypeError(
                f"state_dtype must be None, 'float32', 'bfloat16' or 'float16' (or np.float32, "
                f"ml_dtypes.bfloat16, np.float16), got {value!r}")
        dtype_of(name)  # bfloat16 without ml_dtypes fails here, not at the first step
        for index, p in enumerate(group["params"]):
            dtype = getattr(p, "dtype", None)
            if dtype == np.float64 and name != "float64":
                raise TypeError(
                    f"param {index} of the group is float64, whose state is float64 only; "
                    f"state_dtype={name!r} applies to float32 (and float16/bfloat16) params")
            if dtype is not None and is_low_precision(dtype) and name not in ("float32", dtype.name):
                raise TypeError(
                    f"param {index} of the group is {dtype.name}: its state may be float32 or "
                    f"{dtype.name}, not {name}")
        updates["state_dtype"] = name
    if "stochastic_rounding" in group:
        value = group["stochastic_rounding"]
        if isinstance(value, (bool, np.bool_)):
            updates["stochastic_rounding"] = bool(value)
        elif isinstance(value, (int, np.integer)) and 0 <= value <= _MASK64:
            updates["stochastic_rounding"] = int(value)
        else:
            raise TypeError(
                f"stochastic_rounding must be False, True (seed 0) or an int seed in [0, 2**64), "
                f"got {value!r}")
    group.update(updates)


def state_dtype(group, param):
    """The dtype of ``param``'s state arrays in ``group``."""
    name = group.get("state_dtype")
    if name is not None:
        return dtype_of(name)
    return np.dtype(np.float32) if is_low_precision(param.dtype) else param.dtype


def kernel_kwargs(group, counter, steps):
    """The kernel's low-precision keyword arguments for ``group`` (none when all are defaults).

    ``counter`` is the optimizer's step count: kernels without per-parameter step counts (SGD,
    Lion) mix it into the seed so that each step draws new random bits; the others draw them from
    the parameter's own step count (then a resumed run draws the bits an uninterrupted one would).
    """
    out = {}
    if group.get("state_dtype") is not None:
        out["state_dtype"] = group["state_dtype"]
    sr = group.get("stochastic_rounding", False)
    if sr is not False:
        seed = 0 if sr is True else sr
        if not steps:
            seed = (seed + (counter + 1) * 0x9E3779B97F4A7C15) & _MASK64
        out["stochastic_rounding"] = seed
    return out


def stand_in(param, dtype):
    """What ``_new_buffer`` is given for a state array of another dtype than the param's: an array
    of the param's shape and the state dtype (a broadcast zero, nothing allocated)."""
    if dtype == param.dtype:
        return param
    return np.broadcast_to(np.zeros((), dtype), param.shape)


def master_params(params, state):
    """``(masters, created)`` for one kernel call: the float32 master copy of each
    float16/bfloat16 param (None for the others), created from the param where its state has none
    yet; ``None`` when the call has no such param. ``created`` lists ``(index, array)`` to store in
    the state once the step succeeded."""
    masters = None
    created = []
    for i, p in enumerate(params):
        if is_low_precision(p.dtype):
            if masters is None:
                masters = [None] * len(params)
            param_state = state.get(p)
            master = param_state.get(MASTER_KEY) if param_state else None
            if master is None:
                master = np.array(p, dtype=np.float32, copy=True, subok=False)
                created.append((i, master))
            masters[i] = master
    return masters, created


def load_state_array(value, param, group, where, load_array):
    """A loaded state array of ``param``: with a ``state_dtype`` in the group it must have exactly
    that dtype (no silent cast); otherwise it is cast to the default state dtype as before."""
    target = state_dtype(group, param)
    if group.get("state_dtype") is not None and isinstance(value, np.ndarray) and value.dtype != target:
        raise TypeError(
            f"{where} has dtype {value.dtype} but the group's state_dtype is {target.name}; "
            f"fastoptim never casts state silently: convert it with .astype(...) first or load it "
            f"into a group with the matching state_dtype")
    return load_array(value, stand_in(param, target), where)


def load_master(value, param, where, load_array):
    """A loaded ``master_param``: a float32 array of the param's shape (never cast)."""
    if not is_low_precision(param.dtype):
        raise ValueError(f"{where} is a master copy, but the param is {param.dtype}: only "
                         f"float16/bfloat16 params have one")
    if isinstance(value, np.ndarray) and value.dtype != np.float32:
        raise TypeError(f"{where} has dtype {value.dtype}; a master copy is float32 (no silent cast)")
    return load_array(value, stand_in(param, np.dtype(np.float32)), where)


_KWARGS_DOC = (
    ("state_dtype", None),
    ("stochastic_rounding", False),
)


def wrap_init(init):
    """``init`` taking the keyword-only arguments ``state_dtype`` and ``stochastic_rounding``
    (the defaults of the groups that do not set them), as every elementwise optimizer does.

    The values are handed to :class:`Optimizer.__init__ <fastoptim.Optimizer>` through the
    instance (a subclass's ``__init__`` calling its parent's keeps the outermost values)."""

    @functools.wraps(init)
    def __init__(self, *args, state_dtype=None, stochastic_rounding=False, **kwargs):
        given = {}
        if state_dtype is not None:
            given["state_dtype"] = state_dtype
        if stochastic_rounding is not False:
            given["stochastic_rounding"] = stochastic_rounding
        outer = "_low_precision_defaults" not in self.__dict__
        if outer:
            self.__dict__["_low_precision_defaults"] = given
        try:
            init(self, *args, **kwargs)
        finally:
            if outer:
                self.__dict__.pop("_low_precision_defaults", None)

    signature = inspect.signature(init)
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
             for name, default in _KWARGS_DOC if name not in signature.parameters]
    params = list(signature.parameters.values())
    var_kw = [p for p in params if p.kind is inspect.Parameter.VAR_KEYWORD]
    params = [p for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD] + extra + var_kw
    __init__.__signature__ = signature.replace(parameters=params)
    __init__._fastoptim_low_precision = True
    return __init__


def defaults_of(optimizer):
    """The constructor's low-precision values to add to ``defaults`` (checked), or ``{}``."""
    given = optimizer.__dict__.get("_low_precision_defaults")
    if not given:
        return {}
    check = dict(given, params=[])
    check_group(check)
    del check["params"]
    return check
