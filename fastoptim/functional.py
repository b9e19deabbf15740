r"""Functional optimizer steps over lists of NumPy arrays.

These are torch's functional forms (``torch.optim._functional``) for NumPy: they take lists of
arrays, update them in place, and run one compiled call over all arrays, parallelised with OpenMP.
The optimizer classes (:class:`fastoptim.SGD`, :class:`fastoptim.Adam`, :class:`fastoptim.AdamW`)
call them once per parameter group; use them directly to drive your own state.

Every function validates all of its inputs (list lengths, shapes, dtypes, contiguity, writeability,
hyperparameter types) before it modifies anything: when it raises, every array, list and step
count is exactly as it was.

Arrays
    ``params`` and the state buffers must be C-contiguous, writeable float32 or float64 arrays in
    native byte order. Each gradient must have exactly its parameter's shape and dtype (no silent
    casts); gradients may be read-only or non-contiguous. One call may mix float32 and float64
    parameters. Parameters and state buffers must not share memory with one another.
"""
import numbers

import numpy as np

from fastoptim._dispatch import kernels as _kernels
from fastoptim.adafactor import adafactor  # noqa: E402,F401  (train room: Adafactor/Muon modules)
from fastoptim.muon import muon  # noqa: E402,F401

__all__ = ["sgd", "adam", "adamw"]

# The optimizer classes call the kernels through these, with hyperparameters they have already
# converted and without the memory-overlap check: a class refuses overlapping parameters when
# they are added and allocates (or copies, on load) every state buffer itself, so the check would
# only cost time on every step (about 60 us per 1000 Adam parameters).
_sgd_step = _kernels.sgd
_adam_step = _kernels.adam


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


def sgd(params, grads, momentum_buffer_list, *, weight_decay, momentum, lr, dampening, nesterov,
        maximize):
    r"""One SGD step (with momentum, dampening, Nesterov, weight decay), in place.

    With gradient :math:`g_t`, parameter :math:`\theta_{t-1}`, momentum :math:`\mu`, dampening
    :math:`\tau`, weight decay :math:`\lambda` and learning rate :math:`\gamma`:

    .. math::

        g_t &\leftarrow -g_t \quad\text{if maximize} \\
        g_t &\leftarrow g_t + \lambda\,\theta_{t-1} \quad\text{if } \lambda \ne 0 \\
        b_t &\leftarrow \begin{cases} g_t & \text{first step (no dampening, as torch)} \\
                                      \mu\, b_{t-1} + (1-\tau)\, g_t & \text{later steps}\end{cases} \\
        g_t &\leftarrow \begin{cases} g_t + \mu\, b_t & \text{nesterov} \\ b_t & \text{otherwise}\end{cases}
              \quad\text{if } \mu \ne 0 \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma\, g_t

    Rounding is torch 2.13's CPU path exactly (fused multiply-adds where torch fuses them), so the
    results are bitwise equal to ``torch.optim.SGD``.

    Parameters
    ----------
    params : list of ndarray
        Updated in place.
    grads : list of ndarray
        One per param, same shape and dtype; only read.
    momentum_buffer_list : list of (ndarray or None)
        One per param when ``momentum != 0`` (ignored otherwise). A ``None`` entry means the
        param has no buffer yet: a new one is allocated, holds the first momentum step, and is
        stored into the list.
    weight_decay, momentum, lr, dampening : float
    nesterov, maximize : bool

    Examples
    --------
    >>> import numpy as np
    >>> from fastoptim import functional as F
    >>> p, g = np.ones(3, np.float32), np.full(3, 0.5, np.float32)
    >>> bufs = [None]
    >>> F.sgd([p], [g], bufs, weight_decay=0.0, momentum=0.9, lr=0.1, dampening=0.0,
    ...       nesterov=False, maximize=False)
    >>> p
    array([0.95, 0.95, 0.95], dtype=float32)
    >>> bufs[0]
    array([0.5, 0.5, 0.5], dtype=float32)
    """
    params = _as_list("params", params)
    grads = _as_list("grads", grads)
    momentum_buffer_list = _as_list("momentum_buffer_list", momentum_buffer_list)
    _kernels.sgd(params, grads, momentum_buffer_list,
                 lr=_scalar("lr", lr), weight_decay=_scalar("weight_decay", weight_decay),
                 momentum=_scalar("momentum", momentum), dampening=_scalar("dampening", dampening),
                 nesterov=_flag("nesterov", nesterov), maximize=_flag("maximize", maximize))


def adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, *, amsgrad, beta1,
         beta2, lr, weight_decay, eps, maximize, decoupled_weight_decay=False):
    r"""One Adam step (L2 or decoupled weight decay, AMSGrad), in place.

    With :math:`t` the param's step count after incrementing it:

    .. math::

        g_t &\leftarrow -g_t \quad\text{if maximize} \\
        \theta_{t-1} &\leftarrow \theta_{t-1}\,(1 - \gamma\lambda) \quad\text{if decoupled (AdamW)},
        \qquad g_t \leftarrow g_t + \lambda\,\theta_{t-1} \quad\text{otherwise, if } \lambda \ne 0 \\
        m_t &\leftarrow \operatorname{lerp}(m_{t-1}, g_t, 1-\beta_1) \\
        v_t &\leftarrow \beta_2\, v_{t-1} + (1-\beta_2)\, g_t^2 \\
        \hat v_t &\leftarrow \max(\hat v_{t-1}, v_t) \quad\text{if amsgrad, else } v_t \\
        \theta_t &\leftarrow \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\,
                   \frac{m_t}{\sqrt{\hat v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    As in torch (and unlike the paper), :math:`\epsilon` is added after dividing by
    :math:`\sqrt{1-\beta_2^t}`, and the first-moment bias correction lives in the step size.
    Rounding follows torch 2.13's CPU path op by op; results differ from torch only where torch's
    (MKL, not correctly rounded) ``sqrt`` is one ulp below the IEEE square root used here.

    Parameters
    ----------
    params : list of ndarray
        Updated in place.
    grads : list of ndarray
        One per param, same shape and dtype; only read.
    exp_avgs, exp_avg_sqs : list of ndarray
        First and second moments, one per param; updated in place.
    max_exp_avg_sqs : list of ndarray
        Running maximum of the second moment, one per param; only used (and required) when
        ``amsgrad`` is true; may be empty otherwise.
    state_steps : list of int
        Each param's step count *before* this step. Incremented in place (like torch's step
        tensors), so after the call it holds the new counts. Exact Python ints.
    amsgrad : bool
    beta1, beta2, lr, weight_decay, eps : float
    maximize : bool
    decoupled_weight_decay : bool, default False
        True gives AdamW.

    Examples
    --------
    >>> import numpy as np
    >>> from fastoptim import functional as F
    >>> p, g = np.zeros(2), np.array([1.0, -2.0])
    >>> m, v, steps = np.zeros(2), np.zeros(2), [0]
    >>> F.adam([p], [g], [m], [v], [], steps, amsgrad=False, beta1=0.9, beta2=0.999, lr=0.1,
    ...        weight_decay=0.0, eps=1e-8, maximize=False)
    >>> p.round(6), steps
    (array([-0.1,  0.1]), [1])
    """
    params = _as_list("params", params)
    grads = _as_list("grads", grads)
    exp_avgs = _as_list("exp_avgs", exp_avgs)
    exp_avg_sqs = _as_list("exp_avg_sqs", exp_avg_sqs)
    max_exp_avg_sqs = _as_list("max_exp_avg_sqs", max_exp_avg_sqs)
    state_steps = _as_list("state_steps", state_steps)
    _kernels.adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps,
                  amsgrad=_flag("amsgrad", amsgrad), beta1=_scalar("beta1", beta1),
                  beta2=_scalar("beta2", beta2), lr=_scalar("lr", lr),
                  weight_decay=_scalar("weight_decay", weight_decay), eps=_scalar("eps", eps),
                  maximize=_flag("maximize", maximize),
                  decoupled_weight_decay=_flag("decoupled_weight_decay", decoupled_weight_decay))


def adamw(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, *, amsgrad, beta1,
          beta2, lr, weight_decay, eps, maximize):
    r"""One AdamW step: :func:`~fastoptim.functional.adam` with ``decoupled_weight_decay=True``.

    The decay multiplies the parameter by :math:`1 - \gamma\lambda` before the moment updates
    (torch's order), instead of adding :math:`\lambda\theta` to the gradient.
    """
    adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, amsgrad=amsgrad,
         beta1=beta1, beta2=beta2, lr=lr, weight_decay=weight_decay, eps=eps, maximize=maximize,
         decoupled_weight_decay=True)
