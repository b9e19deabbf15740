"""Stochastic gradient descent (optionally with momentum), as ``torch.optim.SGD``."""

import numpy as np

from fastoptim.optim._validation import (
    _check_bool_options,
    _check_unsupported_flags,
    _is_array_scalar,
)
from fastoptim.optim.base import Optimizer
from fastoptim.optim.registry import OPTIMIZERS

__all__ = ["SGD"]


def _check_sgd_hyperparameters(lr, momentum, dampening, weight_decay, nesterov):
    """torch 2.13's checks, in torch's order and with its messages."""
    if _is_array_scalar(lr) and np.size(lr) != 1:
        raise ValueError("Tensor lr must be 1-element")
    if lr < 0.0:
        raise ValueError(f"Invalid learning rate: {lr}")
    if momentum < 0.0:
        raise ValueError(f"Invalid momentum value: {momentum}")
    if weight_decay < 0.0:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")


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

    def __init__(
        self,
        params,
        lr=1e-3,
        momentum=0,
        dampening=0,
        weight_decay=0,
        nesterov=False,
        *,
        maximize=False,
        foreach=None,
        differentiable=False,
        fused=None,
    ):
        _check_sgd_hyperparameters(lr, momentum, dampening, weight_decay, nesterov)
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
            "foreach": foreach,
            "differentiable": differentiable,
            "fused": fused,
        }
        super().__init__(params, defaults)

    def _check_group(self, group):
        _check_sgd_hyperparameters(
            group["lr"], group["momentum"], group["dampening"], group["weight_decay"],
            group["nesterov"],
        )
        _check_unsupported_flags(group)
        _check_bool_options(group, self._info.flags)
