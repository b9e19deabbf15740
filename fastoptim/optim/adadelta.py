"""Adadelta, as ``torch.optim.Adadelta``."""

from fastoptim._dispatch import kernels as _kernels
from fastoptim.optim._functional import _fused, _shared_doc, _step
from fastoptim.optim._validation import _check_at_least_zero, _check_lr
from fastoptim.optim.base import Optimizer
from fastoptim.optim.registry import OPTIMIZERS

__all__ = ["Adadelta", "adadelta"]


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
    {fused}

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


class Adadelta(Optimizer):
    r"""Adadelta (Zeiler, 2012): per-element step sizes from running averages of squared
    gradients and squared updates.

    {{intro}}

    .. math::

        \begin{aligned}
            {{grad}}
            &g_t \leftarrow g_t + \lambda \theta_{t-1} \ \text{if } \lambda \neq 0 \\
            &v_t \leftarrow \rho v_{t-1} + (1 - \rho) g_t^2 \\
            &\Delta_t \leftarrow \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}} \, g_t \\
            &u_t \leftarrow \rho u_{t-1} + (1 - \rho) \Delta_t^2 \\
            &\theta_t \leftarrow \theta_{t-1} - \gamma \Delta_t
        \end{aligned}

    with learning rate :math:`\gamma`, decay :math:`\rho` (``rho``), ``eps`` :math:`\epsilon`
    and weight decay :math:`\lambda`; :math:`v_0 = u_0 = 0`. As in torch, and unlike the paper
    (which has no learning rate), the update is scaled by :math:`\gamma` (default 1.0, the
    paper's algorithm). Every elementwise operation rounds like torch's CPU kernels, so the
    results are torch's bit for bit on an Intel CPU with AVX-512, where torch's MKL square root is
    reproduced, and elsewhere differ only where that square root is 1 ulp off the correctly
    rounded one used there (:doc:`/numerics`).

    Parameters
    ----------
    {{params}}
    lr : float, default 1.0
        Learning rate :math:`\gamma`, scaling :math:`\Delta_t`. A NumPy scalar or 1-element
        array is used as ``float(lr)``.
    rho : float, default 0.9
        Decay :math:`\rho` of both running averages, in [0, 1].
    eps : float, default 1e-6
        :math:`\epsilon`, added inside both square roots.
    weight_decay : float, default 0
        L2 penalty :math:`\lambda`.
    foreach : bool or None, default None
        Accepted for drop-in compatibility with torch; every fastoptim step runs as one fused
        kernel per group, whatever its value.
    capturable, differentiable : bool, default False
        Must be False: they are CUDA-graph and autograd features (``True`` raises ValueError).
    {{maximize}}

    Attributes
    ----------
    state : dict
        Per parameter, created at its first step with a gradient: ``"step"`` (a Python int;
        torch keeps a float32 tensor), ``"square_avg"`` (:math:`v`) and ``"acc_delta"``
        (:math:`u`), arrays of the parameter's shape and dtype.

    Raises
    ------
    ValueError
        With torch's messages, in torch's order, before ``params`` is looked at: ``Tensor lr
        must be 1-element``, ``Invalid learning rate``, ``Invalid rho value``, ``Invalid
        epsilon value``, ``Invalid weight_decay value``.

    Notes
    -----
    Stricter than torch (see :class:`fastoptim.Optimizer` too): hyperparameters of every param
    group are checked with the constructor's rules. Non-finite gradients propagate exactly as in
    torch.

    Examples
    --------
    >>> import numpy as np
    >>> import fastoptim as fo
    >>> w = fo.Parameter(np.array([1.0, -2.0]))
    >>> opt = fo.Adadelta([w], rho=0.75)
    >>> w.grad = np.array([1.0, 1.0])
    >>> opt.step()                     # the first step is about sqrt(eps / (1 - rho))
    >>> np.round(w, 6)
    array([ 0.998, -2.002])
    """

    _info = OPTIMIZERS["Adadelta"]

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, foreach=None, *,
                 capturable=False, maximize=False, differentiable=False):
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                                      maximize=maximize, capturable=capturable, foreach=foreach,
                                      differentiable=differentiable))

    def _check_hyperparameters(self, group):
        """torch 2.13's checks, in torch's order and with its messages."""
        _check_lr(group["lr"])
        rho = group["rho"]
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        _check_at_least_zero(group["eps"], "epsilon value")
        _check_at_least_zero(group["weight_decay"], "weight_decay value")


# ---------------------------------------------------------------------------------------------
# The benchmark's peer (fastoptim.tools.peers) that models Adadelta: the registry entry lists it.

def _numpy_rule(peer, group):
    """torch's single-tensor Adadelta step, op by op (``_single_tensor_adadelta``)."""
    import numpy as np

    lr, rho, eps, wd = float(group["lr"]), group["rho"], group["eps"], group["weight_decay"]
    for p, g, (square_avg, acc_delta), s, a, z in peer._pieces_of():
        d = peer._scratch_n(0, a, z)
        if wd != 0:
            g = peer._decayed_grad(p, g, wd, a, z)     # grad = grad.add(param, alpha=wd)
        square_avg *= rho                               # square_avg.mul_(rho)
        np.multiply(g, g, out=s)                        #   .addcmul_(grad, grad, 1 - rho)
        s *= 1.0 - rho
        square_avg += s
        np.add(square_avg, eps, out=s)                  # std = square_avg.add(eps).sqrt_()
        np.sqrt(s, out=s)
        np.add(acc_delta, eps, out=d)                   # delta = acc_delta.add(eps).sqrt_()
        np.sqrt(d, out=d)
        d /= s                                          # delta.div_(std).mul_(grad)
        d *= g
        acc_delta *= rho                                # acc_delta.mul_(rho)
        np.multiply(d, d, out=s)                        #   .addcmul_(delta, delta, 1 - rho)
        s *= 1.0 - rho
        acc_delta += s
        np.multiply(d, -lr, out=s)                      # param.add_(delta, alpha=-lr)
        p += s
