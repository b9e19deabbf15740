"""Gradient clipping with ``torch.nn.utils``'s semantics, for NumPy arrays.

:func:`clip_grad_norm_`, :func:`get_total_norm`, :func:`clip_grads_with_norm_` and
:func:`clip_grad_value_`. The norms are computed in one compiled pass over all gradients (each
array by one thread, in torch's CPU reduction order, so the result is torch's to the last bit and
identical for every thread count), the scaling in a second one.
"""
import math
import numbers
import types
import warnings

import numpy as np

from fastoptim import _train_kernels

__all__ = ["clip_grad_norm_", "clip_grad_value_", "get_total_norm", "clip_grads_with_norm_"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _check_foreach(foreach):
    if foreach is not None and not isinstance(foreach, (bool, np.bool_)):
        raise TypeError(f"foreach must be None, True or False, got {type(foreach).__name__}")


def _check_real(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.ndarray)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if isinstance(value, np.ndarray) and value.ndim != 0:
        raise TypeError(f"{name} must be a real number or a 0-d array, got an array of shape "
                        f"{value.shape}")
    return float(value)


def _as_list(parameters):
    """torch's handling of ``parameters``: one array, or an iterable (a generator is consumed once)."""
    if isinstance(parameters, np.ndarray):
        return [parameters], False
    is_generator = isinstance(parameters, types.GeneratorType)
    try:
        return list(parameters), is_generator
    except TypeError:
        raise TypeError(f"parameters must be a Parameter or an iterable of Parameters, got "
                        f"{type(parameters).__name__}") from None


def _rounds(grads):
    """Split ``grads`` into lists without repeated arrays, in order.

    A gradient array shared by two parameters (tied weights) is scaled once per occurrence, as
    torch's ``_foreach_mul_`` does, but never twice in one parallel pass (that would race).
    """
    if len(set(map(id, grads))) == len(grads):     # the usual case: no array twice
        return [grads]
    rounds = []
    counts = {}
    for g in grads:
        k = counts.get(id(g), 0)
        counts[id(g)] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(g)
    return rounds


def _scale(grads, coef):
    # torch always multiplies; x * 1.0 == x bit for bit (zeros, infinities, subnormals and quiet
    # NaNs keep their bits; only a signaling NaN, which arithmetic never produces, would come out
    # quieted), so a coefficient of exactly 1 (the norm is below max_norm) skips the pass
    if coef == 1.0:
        return
    for part in _rounds(grads):
        _train_kernels.scale(part, coef, coef)


def get_total_norm(tensors, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    r"""Norm of the norms of ``tensors``, as if they were concatenated into one vector.

    .. math::
        \|g\|_p = \Bigl(\sum_i \|g_i\|_p^p\Bigr)^{1/p}, \qquad
        \|g\|_\infty = \max_i \|g_i\|_\infty

    computed as torch does: the norm of each array (in its dtype), then the norm of the vector of
    those norms. The reduction order is torch 2.13's CPU order, so the value equals
    ``torch.nn.utils.get_total_norm`` bit for bit (p-norms other than 2 as torch with one
    thread), for every ``fo.set_num_threads`` value.

    Parameters
    ----------
    tensors : ndarray or iterable of ndarray
        float32/float64 arrays (any layout).
    norm_type : float, default 2.0
        Order ``p``: any real number, ``inf`` or ``-inf`` (``'inf'`` as a string is accepted).
    error_if_nonfinite : bool, default False
        Raise if the total norm is NaN or infinite.
    foreach : bool or None
        Accepted for torch compatibility; the compiled pass is always used.

    Returns
    -------
    ndarray
        0-d array of the arrays' dtype (float32 ``0.0`` for no arrays, as torch).

    Raises
    ------
    RuntimeError
        ``error_if_nonfinite`` and the norm is not finite (torch's message).

    Examples
    --------
    >>> import numpy as np, fastoptim as fo
    >>> fo.get_total_norm([np.array([3.0, 0.0]), np.array([4.0])])
    array(5.)
    """
    _check_foreach(foreach)
    arrays, _ = _as_list(tensors)
    norm_type = float(norm_type)
    if not arrays:
        return np.array(0.0, dtype=np.float32)
    value, is_double = _train_kernels.total_norm(arrays, norm_type)
    total = np.array(value, dtype=np.float64 if is_double else np.float32)
    if error_if_nonfinite and not math.isfinite(value):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, "
            "so it cannot be clipped. To disable this error and scale the gradients by the "
            "non-finite norm anyway, set `error_if_nonfinite=False`")
    return total


def _coefficient(max_norm, total_norm):
    """torch: ``clamp(max_norm / (total_norm + 1e-6), max=1)`` in the norm's dtype (the division
    is ``total.reciprocal() * max_norm``)."""
    if isinstance(total_norm, np.ndarray) or isinstance(total_norm, np.floating):
        total = np.asarray(total_norm)
        if total.ndim != 0 or total.dtype not in _FLOATS:
            raise TypeError(f"total_norm must be a 0-d float32/float64 array (as returned by "
                            f"get_total_norm), got dtype {total.dtype} and shape {total.shape}")
    else:
        total = np.array(_check_real("total_norm", total_norm), dtype=np.float64)
    dt = total.dtype.type
    coef = (dt(1) / (total + dt(1e-6))) * dt(max_norm)
    if not coef > 1:      # torch.clamp(max=1.0) keeps NaN
        return float(coef)
    return 1.0


def clip_grads_with_norm_(parameters, max_norm, total_norm, foreach=None):
    r"""Scale the gradients of ``parameters`` in place by a precomputed total norm.

    .. math::
        g \leftarrow g \cdot \min\Bigl(\frac{\text{max\_norm}}{\text{total\_norm} + 10^{-6}}, 1\Bigr)

    The coefficient is computed in ``total_norm``'s dtype as torch does and applied to each
    gradient in its own dtype, in one compiled pass.

    Parameters
    ----------
    parameters : Parameter or iterable of Parameter
        Their ``.grad`` arrays are scaled; ``None`` gradients are skipped.
    max_norm : float
    total_norm : ndarray
        0-d array (from :func:`get_total_norm`); a Python float is taken as float64.
    foreach : bool or None
        Accepted for torch compatibility.
    """
    _check_foreach(foreach)
    params, _ = _as_list(parameters)
    grads = _train_kernels.grads_of(params)
    max_norm = _check_real("max_norm", max_norm)
    if not grads:
        return
    _scale(grads, _coefficient(max_norm, total_norm))


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None, *,
                    fused_with=None):
    r"""Clip the gradient norm of ``parameters`` in place (``torch.nn.utils.clip_grad_norm_``).

    .. math::
        N = \Bigl(\sum_i \|g_i\|_p^p\Bigr)^{1/p}, \qquad
        g_i \leftarrow g_i \cdot \min\Bigl(\frac{\text{max\_norm}}{N + 10^{-6}}, 1\Bigr)

    :func:`get_total_norm` of the gradients followed by :func:`clip_grads_with_norm_`: one
    compiled pass computes the norm, one scales. Gradients that are ``None`` are skipped.

    Parameters
    ----------
    parameters : Parameter or iterable of Parameter
    max_norm : float
        Largest norm the gradients keep.
    norm_type : float, default 2.0
        ``p``; ``inf`` for the largest absolute value.
    error_if_nonfinite : bool, default False
        Raise (and leave the gradients unchanged) if the norm is NaN or infinite.
    foreach : bool or None
        Accepted for torch compatibility.
    fused_with : Optimizer, optional
        Keyword-only (fastoptim's extension): an elementwise fastoptim optimizer. The gradients
        of its parameters are then *not* scaled in memory: the coefficient is armed for its next
        ``step()``, which multiplies each gradient by it as it reads it (bitwise the separate
        calls' result; one pass over memory fewer). Gradients of other parameters are scaled in
        memory as usual. Each param group must be clipped whole or not at all; ``zero_grad()``
        drops an armed coefficient. See "One pass: clip, step and EMA" (``docs/fused.rst``).

    Returns
    -------
    ndarray
        The total norm before clipping, a 0-d array.

    Warns
    -----
    UserWarning
        ``parameters`` is an empty generator (torch's warning).

    Examples
    --------
    >>> import numpy as np, fastoptim as fo
    >>> w = fo.Parameter(np.zeros(2))
    >>> w.grad = np.array([3.0, 4.0])
    >>> fo.clip_grad_norm_([w], max_norm=1.0)
    array(5.)
    >>> w.grad
    array([0.59999988, 0.79999984])
    """
    _check_foreach(foreach)
    params, is_generator = _as_list(parameters)
    if is_generator and not params:
        warnings.warn("`parameters` is an empty generator, no gradient clipping will occur.",
                      stacklevel=2)
    max_norm = _check_real("max_norm", max_norm)
    grads = _train_kernels.grads_of(params)
    total = get_total_norm(grads, norm_type, error_if_nonfinite, foreach)
    if grads:
        coef = _coefficient(max_norm, total)
        if fused_with is None:
            _scale(grads, coef)
        else:
            from fastoptim.optim import _fused
            _fused.arm_clip(fused_with, params, coef, _scale)
    return total


def clip_grad_value_(parameters, clip_value, foreach=None):
    r"""Clamp the gradients of ``parameters`` in place to ``[-clip_value, clip_value]``.

    .. math::
        g \leftarrow \min(\max(g, -c), c)

    in each gradient's dtype; NaN stays NaN (``torch.clamp``). One compiled pass.

    Parameters
    ----------
    parameters : Parameter or iterable of Parameter
    clip_value : float
    foreach : bool or None
        Accepted for torch compatibility.

    Examples
    --------
    >>> import numpy as np, fastoptim as fo
    >>> w = fo.Parameter(np.zeros(3))
    >>> w.grad = np.array([-2.0, 0.5, 3.0])
    >>> fo.clip_grad_value_(w, 1.0)
    >>> w.grad
    array([-1. ,  0.5,  1. ])
    """
    _check_foreach(foreach)
    params, _ = _as_list(parameters)
    clip_value = _check_real("clip_value", clip_value)
    # clamping is idempotent: each array once
    _train_kernels.clamp((_rounds(_train_kernels.grads_of(params)) or [[]])[0], clip_value)
