"""RMSprop (optionally centered, with momentum), as ``torch.optim.RMSprop``."""

from fastoptim.optim._validation import _check_bool_options, _check_lr, _check_unsupported_flags
from fastoptim.optim.base import Optimizer
from fastoptim.optim.registry import OPTIMIZERS

__all__ = ["RMSprop"]


def _check_rmsprop_hyperparameters(lr, alpha, eps, weight_decay, momentum):
    """torch 2.13's checks, in torch's order and with its messages."""
    _check_lr(lr)
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")
    if not 0.0 <= momentum:
        raise ValueError(f"Invalid momentum value: {momentum}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")
    if not 0.0 <= alpha:
        raise ValueError(f"Invalid alpha value: {alpha}")


class RMSprop(Optimizer):
    r"""RMSprop (Hinton, 2012), optionally centered (Graves, 2013) and with momentum.

    {{intro}}

    .. math::

        \begin{aligned}
            {{grad}}
            &g_t \leftarrow g_t + \lambda \theta_{t-1} \ \text{if } \lambda \neq 0 \\
            &v_t \leftarrow \alpha v_{t-1} + (1 - \alpha) g_t^2 \\
            &\tilde v_t \leftarrow \begin{cases}
                    v_t - \bar g_t^2, \quad
                    \bar g_t \leftarrow \alpha \bar g_{t-1} + (1 - \alpha) g_t
                    & \text{if centered} \\
                    v_t & \text{otherwise}
                \end{cases} \\
            &\theta_t \leftarrow \begin{cases}
                    \theta_{t-1} - \gamma b_t, \quad
                    b_t \leftarrow \mu b_{t-1} + g_t / (\sqrt{\tilde v_t} + \epsilon)
                    & \text{if } \mu > 0 \\
                    \theta_{t-1} - \gamma g_t / (\sqrt{\tilde v_t} + \epsilon) & \text{otherwise}
                \end{cases}
        \end{aligned}

    with learning rate :math:`\gamma`, smoothing constant :math:`\alpha` (``alpha``), ``eps``
    :math:`\epsilon`, weight decay :math:`\lambda` and momentum :math:`\mu`;
    :math:`v_0 = \bar g_0 = b_0 = 0`. As in torch, and unlike Hinton's lecture notes,
    :math:`\epsilon` is added after the square root, the momentum buffer accumulates the scaled
    gradient (the learning rate multiplies it afterwards), and :math:`\bar g_t` is updated with
    ``lerp``. Every elementwise operation rounds like torch's CPU kernels, so the results differ
    from torch's only where torch's MKL square root is 1 ulp off the correctly rounded one.

    Parameters
    ----------
    {{params}}
    lr : float, default 1e-2
        Learning rate :math:`\gamma`. A NumPy scalar or 1-element array is used as ``float(lr)``.
    alpha : float, default 0.99
        Smoothing constant :math:`\alpha`.
    eps : float, default 1e-8
        :math:`\epsilon`, added to the denominator for numerical stability.
    weight_decay : float, default 0
        L2 penalty :math:`\lambda`.
    momentum : float, default 0
        Momentum factor :math:`\mu`.
    centered : bool, default False
        Normalise by an estimate of the gradient's variance instead of its second moment.
    capturable, differentiable : bool, default False
        Must be False: they are CUDA-graph and autograd features (``True`` raises ValueError).
    foreach : bool or None, default None
        Accepted for drop-in compatibility with torch; every fastoptim step runs as one fused
        kernel per group, whatever its value.
    {{maximize}}

    Attributes
    ----------
    state : dict
        Per parameter, created at its first step with a gradient: ``"step"`` (a Python int;
        torch keeps a float32 tensor), ``"square_avg"`` (:math:`v`), with ``momentum > 0``
        ``"momentum_buffer"`` (:math:`b`) and when centered ``"grad_avg"`` (:math:`\bar g`),
        arrays of the parameter's shape and dtype.

    Raises
    ------
    ValueError
        With torch's messages, in torch's order, before ``params`` is looked at: ``Tensor lr
        must be 1-element``, ``Invalid learning rate``, ``Invalid epsilon value``, ``Invalid
        momentum value``, ``Invalid weight_decay value``, ``Invalid alpha value``.

    Notes
    -----
    Stricter than torch (see :class:`fastoptim.Optimizer` too): hyperparameters of every param
    group are checked with the constructor's rules; ``centered`` or ``momentum`` switched on
    after a parameter's state was created is a ValueError that says so (torch raises KeyError).
    Non-finite gradients propagate exactly as in torch.

    Examples
    --------
    >>> import numpy as np
    >>> import fastoptim as fo
    >>> w = fo.Parameter(np.array([1.0, -2.0]))
    >>> opt = fo.RMSprop([w], lr=0.01)
    >>> w.grad = 2 * w                 # gradient of sum(w**2)
    >>> opt.step()                     # the first step moves every entry by lr / sqrt(1 - alpha)
    >>> np.round(w, 6)
    array([ 0.9, -1.9])
    >>> sorted(opt.state[w])
    ['square_avg', 'step']
    """

    _info = OPTIMIZERS["RMSprop"]

    def __init__(
        self,
        params,
        lr=1e-2,
        alpha=0.99,
        eps=1e-8,
        weight_decay=0,
        momentum=0,
        centered=False,
        capturable=False,
        foreach=None,
        maximize=False,
        differentiable=False,
    ):
        _check_rmsprop_hyperparameters(lr, alpha, eps, weight_decay, momentum)
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "alpha": alpha,
            "eps": eps,
            "centered": centered,
            "weight_decay": weight_decay,
            "capturable": capturable,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults)

    def _check_group(self, group):
        _check_rmsprop_hyperparameters(
            group["lr"], group["alpha"], group["eps"], group["weight_decay"], group["momentum"]
        )
        _check_unsupported_flags(group)
        _check_bool_options(group, self._info.flags)
