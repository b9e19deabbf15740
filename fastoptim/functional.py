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
import functools
import numbers

import numpy as np

from fastoptim._dispatch import kernels as _kernels
from fastoptim.optim.adafactor import adafactor  # noqa: E402,F401  (reductions: numpy/BLAS + compiled means)
from fastoptim.optim.muon import muon  # noqa: E402,F401

__all__ = ["sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "adamax", "rprop", "lion", "radam", "nadam", "asgd"]

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


def _fused(kernel, grad_scale, found_inf):
    """``kernel`` with torch's fused ``grad_scale``/``found_inf`` bound where they are given (the
    kernel checks them with everything else, before anything changes)."""
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


def sgd(params, grads, momentum_buffer_list, *, weight_decay, momentum, lr, dampening, nesterov,
        maximize, grad_scale=None, found_inf=None):
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
    grad_scale : float or 0-d ndarray, optional
        torch's fused ``grad_scale``: every gradient is divided by it as it is read (the arrays
        in ``grads`` are not modified); a positive finite number.
    found_inf : bool, number or 0-d ndarray, optional
        torch's fused ``found_inf``: non-zero skips the step after the checks (nothing changes,
        step counts included).

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
    _fused(_kernels.sgd, grad_scale, found_inf)(
                 params, grads, momentum_buffer_list,
                 lr=_scalar("lr", lr), weight_decay=_scalar("weight_decay", weight_decay),
                 momentum=_scalar("momentum", momentum), dampening=_scalar("dampening", dampening),
                 nesterov=_flag("nesterov", nesterov), maximize=_flag("maximize", maximize))


def adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, *, amsgrad, beta1,
         beta2, lr, weight_decay, eps, maximize, decoupled_weight_decay=False,
         grad_scale=None, found_inf=None):
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
    grad_scale : float or 0-d ndarray, optional
        torch's fused ``grad_scale``: every gradient is divided by it as it is read (the arrays
        in ``grads`` are not modified); a positive finite number.
    found_inf : bool, number or 0-d ndarray, optional
        torch's fused ``found_inf``: non-zero skips the step after the checks (nothing changes,
        step counts included).

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
    _fused(_kernels.adam, grad_scale, found_inf)(
                  params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps,
                  amsgrad=_flag("amsgrad", amsgrad), beta1=_scalar("beta1", beta1),
                  beta2=_scalar("beta2", beta2), lr=_scalar("lr", lr),
                  weight_decay=_scalar("weight_decay", weight_decay), eps=_scalar("eps", eps),
                  maximize=_flag("maximize", maximize),
                  decoupled_weight_decay=_flag("decoupled_weight_decay", decoupled_weight_decay))


def adamw(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, *, amsgrad, beta1,
          beta2, lr, weight_decay, eps, maximize, grad_scale=None, found_inf=None):
    r"""One AdamW step: :func:`~fastoptim.functional.adam` with ``decoupled_weight_decay=True``.

    The decay multiplies the parameter by :math:`1 - \gamma\lambda` before the moment updates
    (torch's order), instead of adding :math:`\lambda\theta` to the gradient.
    """
    adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, amsgrad=amsgrad,
         beta1=beta1, beta2=beta2, lr=lr, weight_decay=weight_decay, eps=eps, maximize=maximize,
         decoupled_weight_decay=True, grad_scale=grad_scale, found_inf=found_inf)


_PARAMS_DOC = """params : list of ndarray
        Updated in place.
    grads : list of ndarray
        One per param, same shape and dtype; only read."""

_STEPS_DOC = """state_steps : list of int
        Each param's step count *before* this step (Python ints, or 0-d integer arrays). Replaced
        in place by the new counts (Python ints), like torch's step tensors."""


def _shared_doc(func):
    """Fill the parameter descriptions every functional form shares into its docstring."""
    func.__doc__ = func.__doc__.replace("{params}", _PARAMS_DOC).replace("{steps}", _STEPS_DOC)
    return func


@_shared_doc
def rmsprop(params, grads, square_avgs, grad_avgs, momentum_buffer_list, state_steps, *, lr, alpha,
            eps, weight_decay, momentum, centered, maximize=False, grad_scale=None, found_inf=None):
    r"""One RMSprop step (weight decay, centered, momentum), in place; torch's ``rmsprop`` functional.

    With gradient :math:`g_t`, smoothing constant :math:`\alpha`, weight decay :math:`\lambda`,
    momentum :math:`\mu` and learning rate :math:`\gamma`:

    .. math::

        g_t &\leftarrow -g_t \quad\text{if maximize}, \qquad
        g_t \leftarrow g_t + \lambda\,\theta_{t-1} \quad\text{if } \lambda \ne 0 \\
        v_t &\leftarrow \alpha\, v_{t-1} + (1-\alpha)\, g_t^2 \\
        \bar g_t &\leftarrow \operatorname{lerp}(\bar g_{t-1}, g_t, 1-\alpha), \quad
        \tilde v_t \leftarrow v_t - \bar g_t^2 \quad\text{if centered, else } \tilde v_t = v_t \\
        b_t &\leftarrow \mu\, b_{t-1} + g_t / (\sqrt{\tilde v_t} + \epsilon), \quad
        \theta_t \leftarrow \theta_{t-1} - \gamma\, b_t \quad\text{if } \mu > 0 \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma\, g_t / (\sqrt{\tilde v_t} + \epsilon)
        \quad\text{otherwise}

    As in torch, :math:`\epsilon` is added after the square root and the first momentum step
    starts from the buffer passed in (zeros, as torch's ``RMSprop`` creates it). Rounding follows
    torch 2.13's CPU single-tensor path op by op.

    Parameters
    ----------
    {params}
    square_avgs : list of ndarray
        :math:`v`, one per param; updated in place.
    grad_avgs : list of ndarray
        :math:`\bar g`, one per param when ``centered`` (may be empty otherwise).
    momentum_buffer_list : list of ndarray
        :math:`b`, one per param when ``momentum > 0`` (may be empty otherwise).
    {steps}
    lr, alpha, eps, weight_decay, momentum : float
    centered, maximize : bool
    grad_scale : float or 0-d ndarray, optional
        torch's fused ``grad_scale``: every gradient is divided by it as it is read (the arrays
        in ``grads`` are not modified); a positive finite number.
    found_inf : bool, number or 0-d ndarray, optional
        torch's fused ``found_inf``: non-zero skips the step after the checks (nothing changes,
        step counts included).

    Examples
    --------
    >>> import numpy as np
    >>> from fastoptim import functional as F
    >>> p, g = np.ones(2), np.array([0.5, -2.0])
    >>> v, steps = np.zeros(2), [0]
    >>> F.rmsprop([p], [g], [v], [], [], steps, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0,
    ...           momentum=0.0, centered=False)
    >>> p.round(4), steps
    (array([0.9, 1.1]), [1])
    """
    _step(_fused(_kernels.rmsprop, grad_scale, found_inf),
          dict(params=params, grads=grads, square_avgs=square_avgs, grad_avgs=grad_avgs,
               momentum_buffer_list=momentum_buffer_list, state_steps=state_steps),
          dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum),
          dict(centered=centered, maximize=maximize))




@_shared_doc
def adagrad(params, grads, state_sums, state_steps, *, lr, weight_decay, lr_decay, eps, maximize,
            grad_scale=None, found_inf=None):
    r"""One Adagrad step (weight decay, learning-rate decay), in place; torch's ``adagrad`` functional.

    With :math:`t` the param's step count after incrementing it:

    .. math::

        g_t &\leftarrow -g_t \quad\text{if maximize}, \qquad
        g_t \leftarrow g_t + \lambda\,\theta_{t-1} \quad\text{if } \lambda \ne 0 \\
        \tilde\gamma &= \gamma / (1 + (t - 1)\,\eta) \\
        s_t &\leftarrow s_{t-1} + g_t^2 \\
        \theta_t &\leftarrow \theta_{t-1} - \tilde\gamma\, g_t / (\sqrt{s_t} + \epsilon)

    with :math:`\eta` = ``lr_decay``. The starting sums (torch's ``initial_accumulator_value``)
    are whatever ``state_sums`` holds. Rounding follows torch 2.13's CPU single-tensor path.

    Parameters
    ----------
    {params}
    state_sums : list of ndarray
        :math:`s`, one per param; updated in place.
    {steps}
    lr, weight_decay, lr_decay, eps : float
    maximize : bool
    grad_scale : float or 0-d ndarray, optional
        torch's fused ``grad_scale``: every gradient is divided by it as it is read (the arrays
        in ``grads`` are not modified); a positive finite number.
    found_inf : bool, number or 0-d ndarray, optional
        torch's fused ``found_inf``: non-zero skips the step after the checks (nothing changes,
        step counts included).

    Examples
    --------
    >>> import numpy as np
    >>> from fastoptim import functional as F
    >>> p, g, s, steps = np.ones(2), np.array([2.0, -0.5]), np.zeros(2), [0]
    >>> F.adagrad([p], [g], [s], steps, lr=0.1, weight_decay=0.0, lr_decay=0.0, eps=0.0,
    ...           maximize=False)
    >>> p, s
    (array([0.9, 1.1]), array([4.  , 0.25]))
    """
    _step(_fused(_kernels.adagrad, grad_scale, found_inf),
          dict(params=params, grads=grads, state_sums=state_sums, state_steps=state_steps),
          dict(lr=lr, weight_decay=weight_decay, lr_decay=lr_decay, eps=eps), dict(maximize=maximize))


@_shared_doc
def adadelta(params, grads, square_avgs, acc_deltas, state_steps, *, lr, rho, eps, weight_decay,
             maximize, grad_scale=None, found_inf=None):
    r"""One Adadelta step, in place; torch's ``adadelta`` functional.

    .. math::

        g_t &\leftarrow -g_t \quad\text{if maximize}, \qquad
        g_t \leftarrow g_t + \lambda\,\theta_{t-1} \quad\text{if } \lambda \ne 0 \\
        v_t &\leftarrow \rho\, v_{t-1} + (1-\rho)\, g_t^2 \\
        \Delta_t &\leftarrow \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}}\, g_t \\
        u_t &\leftarrow \rho\, u_{t-1} + (1-\rho)\, \Delta_t^2 \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma\, \Delta_t

    Rounding follows torch 2.13's CPU single-tensor path op by op.

    Parameters
    ----------
    {params}
    square_avgs : list of ndarray
        :math:`v`, one per param; updated in place.
    acc_deltas : list of ndarray
        :math:`u`, one per param; updated in place.
    {steps}
    lr, rho, eps, weight_decay : float
    maximize : bool
    grad_scale : float or 0-d ndarray, optional
        torch's fused ``grad_scale``: every gradient is divided by it as it is read (the arrays
        in ``grads`` are not modified); a positive finite number.
    found_inf : bool, number or 0-d ndarray, optional
        torch's fused ``found_inf``: non-zero skips the step after the checks (nothing changes,
        step counts included).

    Examples
    --------
    >>> import numpy as np
    >>> from fastoptim import functional as F
    >>> p, g = np.ones(1), np.ones(1)
    >>> v, u, steps = np.zeros(1), np.zeros(1), [0]
    >>> F.adadelta([p], [g], [v], [u], steps, lr=1.0, rho=0.75, eps=1e-6, weight_decay=0.0,
    ...            maximize=False)
    >>> p.round(6), v
    (array([0.998]), array([0.25]))
    """
    _step(_fused(_kernels.adadelta, grad_scale, found_inf),
          dict(params=params, grads=grads, square_avgs=square_avgs, acc_deltas=acc_deltas,
               state_steps=state_steps),
          dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay), dict(maximize=maximize))


@_shared_doc
def adamax(params, grads, exp_avgs, exp_infs, state_steps, *, eps, beta1, beta2, lr, weight_decay,
           maximize=False, grad_scale=None, found_inf=None):
    r"""One Adamax step (Adam with the infinity norm), in place; torch's ``adamax`` functional.

    With :math:`t` the param's step count after incrementing it:

    .. math::

        g_t &\leftarrow -g_t \quad\text{if maximize}, \qquad
        g_t \leftarrow g_t + \lambda\,\theta_{t-1} \quad\text{if } \lambda \ne 0 \\
        m_t &\leftarrow \operatorname{lerp}(m_{t-1}, g_t, 1-\beta_1) \\
        u_t &\leftarrow \max(\beta_2\, u_{t-1},\ |g_t| + \epsilon) \\
        \theta_t &\leftarrow \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\, \frac{m_t}{u_t}

    As in torch, :math:`\epsilon` is added to :math:`|g_t|` inside the maximum (the paper has
    none), and the maximum propagates NaN. Rounding follows torch 2.13's CPU single-tensor path.

    Parameters
    ----------
    {params}
    exp_avgs, exp_infs : list of ndarray
        :math:`m` and :math:`u`, one per param; updated in place.
    {steps}
    eps, beta1, beta2, lr, weight_decay : float
    maximize : bool, default False
    grad_scale : float or 0-d ndarray, optional
        torch's fused ``grad_scale``: every gradient is divided by it as it is read (the arrays
        in ``grads`` are not modified); a positive finite number.
    found_inf : bool, number or 0-d ndarray, optional
        torch's fused ``found_inf``: non-zero skips the step after the checks (nothing changes,
        step counts included).

    Examples
    --------
    >>> import numpy as np
    >>> from fastoptim import functional as F
    >>> p, g = np.zeros(2), np.array([1.0, -4.0])
    >>> m, u, steps = np.zeros(2), np.zeros(2), [0]
    >>> F.adamax([p], [g], [m], [u], steps, eps=1e-8, beta1=0.9, beta2=0.999, lr=0.1,
    ...          weight_decay=0.0)
    >>> p.round(6), u.round(6)
    (array([-0.1,  0.1]), array([1., 4.]))
    """
    _step(_fused(_kernels.adamax, grad_scale, found_inf),
          dict(params=params, grads=grads, exp_avgs=exp_avgs, exp_infs=exp_infs, state_steps=state_steps),
          dict(eps=eps, beta1=beta1, beta2=beta2, lr=lr, weight_decay=weight_decay), dict(maximize=maximize))


@_shared_doc
def rprop(params, grads, prevs, step_sizes, state_steps, *, step_size_min, step_size_max, etaminus,
          etaplus, maximize=False, grad_scale=None, found_inf=None):
    r"""One Rprop step (resilient backpropagation), in place; torch's ``rprop`` functional.

    Elementwise, with :math:`\eta^+` = ``etaplus``, :math:`\eta^-` = ``etaminus``:

    .. math::

        g_t &\leftarrow -g_t \quad\text{if maximize} \\
        f &= \begin{cases} \eta^+ & g_t\, g_{t-1} > 0 \\ \eta^- & g_t\, g_{t-1} < 0 \\
                           1 & \text{otherwise} \end{cases} \\
        \delta_t &\leftarrow \operatorname{clamp}(f\,\delta_{t-1},\ \delta_{\min},\ \delta_{\max}) \\
        g_t &\leftarrow 0 \quad\text{where } f = \eta^- \\
        \theta_t &\leftarrow \theta_{t-1} - \operatorname{sign}(g_t)\, \delta_t, \qquad
        g_{t-1} \leftarrow g_t

    As in torch, a NaN product counts as 0 (``torch.sign(nan)`` is 0) and the stored previous
    gradient is the zeroed one. Bitwise equal to torch 2.13's CPU single-tensor path.

    Parameters
    ----------
    {params}
    prevs : list of ndarray
        :math:`g_{t-1}`, one per param (zeros at the start); updated in place.
    step_sizes : list of ndarray
        :math:`\delta`, one per param (torch starts them at ``lr``); updated in place.
    {steps}
    step_size_min, step_size_max, etaminus, etaplus : float
    maximize : bool, default False
    grad_scale : float or 0-d ndarray, optional
        torch's fused ``grad_scale``: every gradient is divided by it as it is read (the arrays
        in ``grads`` are not modified); a positive finite number.
    found_inf : bool, number or 0-d ndarray, optional
        torch's fused ``found_inf``: non-zero skips the step after the checks (nothing changes,
        step counts included).

    Examples
    --------
    >>> import numpy as np
    >>> from fastoptim import functional as F
    >>> p, prev, delta, steps = np.zeros(2), np.array([1.0, 1.0]), np.full(2, 0.01), [0]
    >>> F.rprop([p], [np.array([2.0, -3.0])], [prev], [delta], steps, step_size_min=1e-6,
    ...         step_size_max=50.0, etaminus=0.5, etaplus=1.2)
    >>> p, delta, prev
    (array([-0.012,  0.   ]), array([0.012, 0.005]), array([2., 0.]))
    """
    _step(_fused(_kernels.rprop, grad_scale, found_inf),
          dict(params=params, grads=grads, prevs=prevs, step_sizes=step_sizes, state_steps=state_steps),
          dict(step_size_min=step_size_min, step_size_max=step_size_max, etaminus=etaminus, etaplus=etaplus),
          dict(maximize=maximize))


def lion(params, grads, exp_avgs, *, lr, beta1, beta2, weight_decay, maximize=False,
         grad_scale=None, found_inf=None):
    r"""One Lion step (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"), in place.

    .. math::

        g_t &\leftarrow -g_t \quad\text{if maximize} \\
        \theta_{t-1} &\leftarrow \theta_{t-1}\,(1 - \gamma\lambda) \\
        c_t &= \beta_1\, m_{t-1} + (1-\beta_1)\, g_t \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma\, \operatorname{sign}(c_t) \\
        m_t &\leftarrow \beta_2\, m_{t-1} + (1-\beta_2)\, g_t

    with :math:`\operatorname{sign}(0) = 0`. Not part of torch: the rounding is that of the
    reference implementation written in torch ops (``exp_avg.mul(beta1).add(grad, alpha=1-beta1)``,
    ``param.add_(update.sign_(), alpha=-lr)``, ``exp_avg.mul_(beta2).add_(grad, alpha=1-beta2)``,
    where ``add`` with ``alpha`` is a fused multiply-add on torch's CPU path).

    Parameters
    ----------
    params : list of ndarray
        Updated in place.
    grads : list of ndarray
        One per param, same shape and dtype; only read.
    exp_avgs : list of ndarray
        :math:`m`, one per param (zeros at the start); updated in place.
    lr, beta1, beta2, weight_decay : float
    maximize : bool, default False
    grad_scale : float or 0-d ndarray, optional
        torch's fused ``grad_scale``: every gradient is divided by it as it is read (the arrays
        in ``grads`` are not modified); a positive finite number.
    found_inf : bool, number or 0-d ndarray, optional
        torch's fused ``found_inf``: non-zero skips the step after the checks (nothing changes,
        step counts included).

    Examples
    --------
    >>> import numpy as np
    >>> from fastoptim import functional as F
    >>> p, m = np.zeros(3), np.zeros(3)
    >>> F.lion([p], [np.array([0.5, 0.0, -2.0])], [m], lr=0.1, beta1=0.9, beta2=0.99,
    ...        weight_decay=0.0)
    >>> p, m
    (array([-0.1,  0. ,  0.1]), array([ 0.005,  0.   , -0.02 ]))
    """
    _step(_fused(_kernels.lion, grad_scale, found_inf), dict(params=params, grads=grads, exp_avgs=exp_avgs),
          dict(lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay), dict(maximize=maximize))


@_shared_doc
def radam(params, grads, exp_avgs, exp_avg_sqs, state_steps, decoupled_weight_decay=False, maximize=False,
          *, beta1, beta2, lr, weight_decay, eps, grad_scale=None, found_inf=None):
    r"""One RAdam step (rectified Adam; L2 or decoupled weight decay), in place; torch's ``radam``.

    With :math:`t` the param's step count after incrementing it,
    :math:`\rho_\infty = 2/(1-\beta_2) - 1` and
    :math:`\rho_t = \rho_\infty - 2t\beta_2^t/(1-\beta_2^t)`:

    .. math::

        g_t &\leftarrow -g_t \quad\text{if maximize} \\
        \theta_{t-1} &\leftarrow \theta_{t-1}\,(1 - \gamma\lambda) \quad\text{if decoupled},
        \qquad g_t \leftarrow g_t + \lambda\,\theta_{t-1} \quad\text{otherwise, if } \lambda \ne 0 \\
        m_t &\leftarrow \operatorname{lerp}(m_{t-1}, g_t, 1-\beta_1), \qquad
        v_t \leftarrow \beta_2\, v_{t-1} + (1-\beta_2)\, g_t^2 \\
        \hat m_t &= \gamma\, m_t / (1-\beta_1^t) \\
        \theta_t &\leftarrow \begin{cases}
            \theta_{t-1} - \hat m_t\, \dfrac{\sqrt{1-\beta_2^t}}{\sqrt{v_t} + \epsilon}\, r_t &
            \rho_t > 5, \quad r_t = \sqrt{\dfrac{(\rho_t-4)(\rho_t-2)\rho_\infty}
                                             {(\rho_\infty-4)(\rho_\infty-2)\rho_t}} \\
            \theta_{t-1} - \hat m_t & \text{otherwise} \end{cases}

    As in torch, :math:`\epsilon` is added to :math:`\sqrt{v_t}` before the bias correction
    multiplies. Rounding follows torch 2.13's CPU single-tensor path op by op (the adaptive term
    is ``reciprocal()`` times the scalar, as torch's ``float / Tensor`` computes it).

    Parameters
    ----------
    {params}
    exp_avgs, exp_avg_sqs : list of ndarray
        :math:`m` and :math:`v`, one per param; updated in place.
    {steps}
    decoupled_weight_decay, maximize : bool, default False
    beta1, beta2, lr, weight_decay, eps : float
    grad_scale : float or 0-d ndarray, optional
        torch's fused ``grad_scale``: every gradient is divided by it as it is read (the arrays
        in ``grads`` are not modified); a positive finite number.
    found_inf : bool, number or 0-d ndarray, optional
        torch's fused ``found_inf``: non-zero skips the step after the checks (nothing changes,
        step counts included).

    Examples
    --------
    >>> import numpy as np
    >>> from fastoptim import functional as F
    >>> p, m, v, steps = np.zeros(2), np.zeros(2), np.zeros(2), [0]
    >>> F.radam([p], [np.array([1.0, -2.0])], [m], [v], steps, beta1=0.9, beta2=0.999, lr=0.1,
    ...         weight_decay=0.0, eps=1e-8)
    >>> p.round(6)
    array([-0.1,  0.2])
    """
    _step(_fused(_kernels.radam, grad_scale, found_inf),
          dict(params=params, grads=grads, exp_avgs=exp_avgs, exp_avg_sqs=exp_avg_sqs, state_steps=state_steps),
          dict(beta1=beta1, beta2=beta2, lr=lr, weight_decay=weight_decay, eps=eps),
          dict(decoupled_weight_decay=decoupled_weight_decay, maximize=maximize))


@_shared_doc
def nadam(params, grads, exp_avgs, exp_avg_sqs, mu_products, state_steps, decoupled_weight_decay=False,
          maximize=False, *, beta1, beta2, lr, weight_decay, momentum_decay, eps,
          grad_scale=None, found_inf=None):
    r"""One NAdam step (Nesterov-accelerated Adam with momentum decay), in place; torch's ``nadam``.

    With :math:`t` the param's step count after incrementing it and :math:`\psi` =
    ``momentum_decay``:

    .. math::

        g_t &\leftarrow -g_t \quad\text{if maximize} \\
        \theta_{t-1} &\leftarrow \theta_{t-1}\,(1 - \gamma\lambda) \quad\text{if decoupled},
        \qquad g_t \leftarrow g_t + \lambda\,\theta_{t-1} \quad\text{otherwise, if } \lambda \ne 0 \\
        \mu_t &= \beta_1 (1 - \tfrac12\, 0.96^{t\psi}), \qquad
        \mu_{t+1} = \beta_1 (1 - \tfrac12\, 0.96^{(t+1)\psi}), \qquad
        P_t = P_{t-1}\,\mu_t \\
        m_t &\leftarrow \operatorname{lerp}(m_{t-1}, g_t, 1-\beta_1), \qquad
        v_t \leftarrow \beta_2\, v_{t-1} + (1-\beta_2)\, g_t^2 \\
        d_t &= \sqrt{v_t / (1-\beta_2^t)} + \epsilon \\
        \theta_t &\leftarrow \theta_{t-1} - \frac{\gamma (1-\mu_t)}{1-P_t}\,\frac{g_t}{d_t}
                   - \frac{\gamma\,\mu_{t+1}}{1-P_t\,\mu_{t+1}}\,\frac{m_t}{d_t}

    :math:`P` is each param's ``mu_product``: a 0-d array (float32 unless you keep it in float64,
    as torch keeps a 0-d tensor of its default dtype), multiplied in its own dtype as torch does.
    Rounding follows torch 2.13's CPU single-tensor path op by op.

    Parameters
    ----------
    {params}
    exp_avgs, exp_avg_sqs : list of ndarray
        :math:`m` and :math:`v`, one per param; updated in place.
    mu_products : list of 0-d ndarray
        :math:`P`, one per param (1.0 at the start); updated in place.
    {steps}
    decoupled_weight_decay, maximize : bool, default False
    beta1, beta2, lr, weight_decay, momentum_decay, eps : float
    grad_scale : float or 0-d ndarray, optional
        torch's fused ``grad_scale``: every gradient is divided by it as it is read (the arrays
        in ``grads`` are not modified); a positive finite number.
    found_inf : bool, number or 0-d ndarray, optional
        torch's fused ``found_inf``: non-zero skips the step after the checks (nothing changes,
        step counts included).

    Examples
    --------
    >>> import numpy as np
    >>> from fastoptim import functional as F
    >>> p, m, v = np.zeros(2), np.zeros(2), np.zeros(2)
    >>> mu_products, steps = [np.array(1.0, dtype=np.float32)], [0]
    >>> F.nadam([p], [np.array([1.0, -2.0])], [m], [v], mu_products, steps, beta1=0.9, beta2=0.999,
    ...         lr=0.002, weight_decay=0.0, momentum_decay=0.004, eps=1e-8)
    >>> p.round(6), mu_products[0]
    (array([-0.002113,  0.002113]), array(0.45007348, dtype=float32))
    """
    _step(_fused(_kernels.nadam, grad_scale, found_inf),
          dict(params=params, grads=grads, exp_avgs=exp_avgs, exp_avg_sqs=exp_avg_sqs, mu_products=mu_products,
               state_steps=state_steps),
          dict(beta1=beta1, beta2=beta2, lr=lr, weight_decay=weight_decay, momentum_decay=momentum_decay, eps=eps),
          dict(decoupled_weight_decay=decoupled_weight_decay, maximize=maximize))


@_shared_doc
def asgd(params, grads, axs, mus, etas, state_steps, maximize=False, *, lambd, lr, t0, alpha, weight_decay,
         grad_scale=None, found_inf=None):
    r"""One ASGD step (averaged SGD), in place; torch's ``asgd`` functional.

    With :math:`\eta_{t-1}`, :math:`\mu_{t-1}` each param's ``eta`` and ``mu`` from the previous
    step and :math:`t` its step count after incrementing it:

    .. math::

        g_t &\leftarrow -g_t \quad\text{if maximize}, \qquad
        g_t \leftarrow g_t + \lambda_w\,\theta_{t-1} \quad\text{if } \lambda_w \ne 0 \\
        \theta_t &\leftarrow \theta_{t-1}\,(1 - \lambda\,\eta_{t-1}) - \eta_{t-1}\, g_t \\
        a_t &\leftarrow \begin{cases} \theta_t & \mu_{t-1} = 1 \\
                                     a_{t-1} + \mu_{t-1}(\theta_t - a_{t-1}) & \text{otherwise}
                        \end{cases} \\
        \eta_t &= \gamma / (1 + \lambda\gamma t)^{\alpha}, \qquad \mu_t = 1 / \max(1, t - t_0)

    :math:`\eta` and :math:`\mu` are 0-d arrays (torch's 0-d tensors: float32 by default), stored
    rounded to their dtype as torch stores them. Bitwise equal to torch 2.13's CPU single-tensor
    path.

    Parameters
    ----------
    {params}
    axs : list of ndarray
        The averaged parameters :math:`a`, one per param; updated in place.
    mus, etas : list of 0-d ndarray
        One each per param (torch starts them at 1.0 and ``lr``); updated in place.
    {steps}
    maximize : bool, default False
    lambd, lr, t0, alpha, weight_decay : float
    grad_scale : float or 0-d ndarray, optional
        torch's fused ``grad_scale``: every gradient is divided by it as it is read (the arrays
        in ``grads`` are not modified); a positive finite number.
    found_inf : bool, number or 0-d ndarray, optional
        torch's fused ``found_inf``: non-zero skips the step after the checks (nothing changes,
        step counts included).

    Examples
    --------
    >>> import numpy as np
    >>> from fastoptim import functional as F
    >>> p, ax = np.ones(2), np.zeros(2)
    >>> mus, etas, steps = [np.array(1.0, np.float32)], [np.array(0.5, np.float32)], [0]
    >>> F.asgd([p], [np.array([1.0, -1.0])], [ax], mus, etas, steps, lambd=0.0, lr=0.5, t0=1e6,
    ...        alpha=0.75, weight_decay=0.0)
    >>> p, ax, etas[0]
    (array([0.5, 1.5]), array([0.5, 1.5]), array(0.5, dtype=float32))
    """
    _step(_fused(_kernels.asgd, grad_scale, found_inf),
          dict(params=params, grads=grads, axs=axs, mus=mus, etas=etas, state_steps=state_steps),
          dict(lambd=lambd, lr=lr, t0=t0, alpha=alpha, weight_decay=weight_decay), dict(maximize=maximize))
