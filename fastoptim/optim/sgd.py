"""Stochastic gradient descent (optionally with momentum), as ``torch.optim.SGD``."""

import numpy as np

from fastoptim._dispatch import kernels as _kernels
from fastoptim.optim._functional import _as_list, _flag, _fused, _scalar, _shared_doc
from fastoptim.optim._validation import _is_array_scalar
from fastoptim.optim.base import Optimizer
from fastoptim.optim.registry import OPTIMIZERS

__all__ = ["SGD", "sgd"]


@_shared_doc
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
    {fused}

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


class SGD(Optimizer):
    r"""Stochastic gradient descent with optional momentum, Nesterov momentum and weight decay.

    {{intro}}

    .. math::

        \begin{aligned}
            {{grad}}
            &g_t \leftarrow g_t + \lambda \theta_{t-1} \ \text{if } \lambda \neq 0 \\
            &\text{if } \mu \neq 0: \quad
                b_t \leftarrow \begin{cases}
                    g_t & \text{at the parameter's first step} \\
                    \mu b_{t-1} + (1 - \tau) g_t & \text{afterwards}
                \end{cases},
                \qquad g_t \leftarrow \begin{cases}
                    g_t + \mu b_t & \text{if nesterov} \\
                    b_t & \text{otherwise}
                \end{cases} \\
            &\theta_t \leftarrow \theta_{t-1} - \gamma g_t
        \end{aligned}

    with learning rate :math:`\gamma` (``lr``), momentum :math:`\mu`, dampening :math:`\tau`
    and weight decay :math:`\lambda`. As in torch, and unlike Sutskever et al. (2013), the
    velocity is not scaled by the learning rate (:math:`\theta` moves by
    :math:`\gamma b_t`), and the first momentum step stores the (decayed) gradient itself,
    without dampening. Every operation rounds like torch's CPU kernels (``g + λθ`` and the
    buffer update are fused multiply-adds), so results are bitwise equal to torch's on x86-64
    CPUs with FMA.

    Parameters
    ----------
    {{params}}
    lr : float, default 1e-3
        Learning rate :math:`\gamma`. A NumPy scalar or 1-element array is used as ``float(lr)``
        (what torch does with a tensor ``lr`` in SGD).
    momentum : float, default 0
        Momentum factor :math:`\mu`.
    dampening : float, default 0
        Dampening :math:`\tau` for momentum.
    weight_decay : float, default 0
        L2 penalty :math:`\lambda`.
    nesterov : bool, default False
        Use Nesterov momentum (requires ``momentum > 0`` and ``dampening == 0``).
    {{maximize}}
    {{foreach_fused}}
    differentiable : bool, default False
        Must be False: fastoptim has no autograd (``True`` raises ValueError).

    Attributes
    ----------
    state : dict
        Per parameter, ``{"momentum_buffer": ndarray}`` once the parameter has had a gradient at
        a step with ``momentum != 0``; nothing otherwise (as in torch).

    Raises
    ------
    ValueError
        With torch's messages, before ``params`` is looked at: ``Invalid learning rate``,
        ``Invalid momentum value``, ``Invalid weight_decay value``, ``Nesterov momentum requires
        a momentum and zero dampening``, ``Tensor lr must be 1-element``.

    Notes
    -----
    Stricter than torch (see :class:`fastoptim.Optimizer` too): hyperparameters of every param
    group are checked with the constructor's rules; a gradient whose shape or dtype does not
    match its parameter makes ``step()`` raise before any parameter or state changes.
    Non-finite gradients are not checked: NaN and inf propagate into the parameters and the
    momentum buffers exactly as in torch.

    Examples
    --------
    >>> import numpy as np
    >>> import fastoptim as fo
    >>> w = fo.Parameter(np.array([1.0, -2.0]))
    >>> opt = fo.SGD([w], lr=0.1, momentum=0.9)
    >>> w.grad = 2 * w                 # gradient of sum(w**2)
    >>> opt.step()
    >>> w
    Parameter([ 0.8, -1.6])
    """

    _info = OPTIMIZERS["SGD"]

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False, foreach=None, differentiable=False, fused=None):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize, foreach=foreach,
                                      differentiable=differentiable, fused=fused))

    def _check_hyperparameters(self, group):
        """torch 2.13's checks, in torch's order and with its messages."""
        lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
        if _is_array_scalar(lr) and np.size(lr) != 1:
            raise ValueError("Tensor lr must be 1-element")
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if group["nesterov"] and (momentum <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")


# ---------------------------------------------------------------------------------------------
# The benchmark's peers (fastoptim.tools.peers) that model SGD: the registry entry lists them.

def _numpy_rule(peer, group):
    """torch's single-tensor momentum step, op by op (``_single_tensor_sgd``)."""
    first = peer.step_count == 1
    wd, momentum, lr = group["weight_decay"], group["momentum"], group["lr"]
    one_minus_dampening = 1.0 - group["dampening"]
    for p, g, state, s, a, z in peer._pieces_of():
        d = peer._decayed_grad(p, g, wd, a, z) if wd != 0 else g
        if momentum != 0:
            (buf,) = state
            if first:
                np.copyto(buf, d)               # torch: buf = grad.clone()
            else:
                buf *= momentum                 # buf.mul_(momentum).add_(grad, 1 - damp)
                if one_minus_dampening == 1.0:
                    buf += d
                else:
                    np.multiply(d, one_minus_dampening, out=s)
                    buf += s
            if group["nesterov"]:
                np.multiply(buf, momentum, out=s)   # grad.add(buf, alpha=momentum)
                s += d
                d = s
            else:
                d = buf
        np.multiply(d, -lr, out=s)              # param.add_(grad, alpha=-lr)
        p += s


def _optax_rule(optax, group):
    """The optax transformation of this momentum step (NotImplementedError where optax has none)."""
    if group["dampening"] != 0 or group["weight_decay"] != 0:
        raise NotImplementedError("the optax peer models momentum only (no dampening or weight decay)")
    return optax.sgd(group["lr"], momentum=group["momentum"] or None, nesterov=group["nesterov"])
