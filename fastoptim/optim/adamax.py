"""Adamax (Adam with the infinity norm), as ``torch.optim.Adamax``."""

from fastoptim._dispatch import kernels as _kernels
from fastoptim.optim._functional import _fused, _shared_doc, _step
from fastoptim.optim._validation import _check_moment_group
from fastoptim.optim.base import Optimizer
from fastoptim.optim.registry import OPTIMIZERS

__all__ = ["Adamax", "adamax"]


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
    {fused}

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


class Adamax(Optimizer):
    r"""Adamax (Kingma & Ba, 2015, section 7.1): Adam with the infinity norm.

    {{intro}}

    .. math::

        \begin{aligned}
            {{grad}}
            &g_t \leftarrow g_t + \lambda \theta_{t-1} \ \text{if } \lambda \neq 0 \\
            &m_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
            &u_t \leftarrow \max(\beta_2 u_{t-1}, |g_t| + \epsilon) \\
            &\theta_t \leftarrow \theta_{t-1} - \frac{\gamma}{1 - \beta_1^t} \, \frac{m_t}{u_t}
        \end{aligned}

    with learning rate :math:`\gamma`, ``betas`` :math:`(\beta_1, \beta_2)`, ``eps``
    :math:`\epsilon` and weight decay :math:`\lambda`; :math:`m_0 = u_0 = 0` and :math:`t`
    counts the steps in which *this* parameter had a gradient. As in torch, and unlike the
    paper, :math:`\epsilon` is added to :math:`|g_t|` inside the maximum (so :math:`u_t > 0`
    and nothing divides by zero), :math:`m_t` is updated with ``lerp``, and the maximum
    propagates NaN. The bias correction is computed in double precision with C ``pow`` like
    torch's, and every elementwise operation rounds like torch's CPU kernels: no square root
    enters, so the results are bitwise torch's.

    Parameters
    ----------
    {{params}}
    lr : float, default 2e-3
        Learning rate :math:`\gamma`. A NumPy scalar or 1-element array is used as ``float(lr)``.
    betas : tuple of two floats, default (0.9, 0.999)
        :math:`(\beta_1, \beta_2)`, each in [0, 1).
    eps : float, default 1e-8
        :math:`\epsilon`.
    weight_decay : float, default 0
        L2 penalty :math:`\lambda`.
    foreach : bool or None, default None
        Accepted for drop-in compatibility with torch; every fastoptim step runs as one fused
        kernel per group, whatever its value.
    {{maximize}}
    differentiable, capturable : bool, default False
        Must be False: they are autograd and CUDA-graph features (``True`` raises ValueError).

    Attributes
    ----------
    state : dict
        Per parameter, created at its first step with a gradient: ``"step"`` (a Python int;
        torch keeps a float32 tensor), ``"exp_avg"`` (:math:`m`) and ``"exp_inf"``
        (:math:`u`), arrays of the parameter's shape and dtype.

    Raises
    ------
    ValueError
        With torch's messages, in torch's order, before ``params`` is looked at: ``Tensor lr
        must be 1-element``, ``Invalid learning rate``, ``Invalid epsilon value``, ``Invalid
        beta parameter at index 0/1``, ``Invalid weight_decay value``.

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
    >>> opt = fo.Adamax([w], lr=0.1)
    >>> w.grad = 2 * w                 # gradient of sum(w**2)
    >>> opt.step()                     # the first step moves every entry by about lr
    >>> np.round(w, 6)
    array([ 0.9, -1.9])
    >>> opt.state[w]["exp_inf"]          # max(beta2 * 0, |g| + eps)
    array([2.00000001, 4.00000001])
    """

    _info = OPTIMIZERS["Adamax"]

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 foreach=None, *, maximize=False, differentiable=False, capturable=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      foreach=foreach, maximize=maximize,
                                      differentiable=differentiable, capturable=capturable))

    _check_hyperparameters = _check_moment_group  # torch 2.13's checks, as RAdam's


# ---------------------------------------------------------------------------------------------
# The benchmark's peer (fastoptim.tools.peers) that models Adamax: the registry entry lists it.

def _numpy_rule(peer, group):
    """torch's single-tensor Adamax step, op by op (``_single_tensor_adamax``)."""
    import numpy as np

    t = peer.step_count
    beta1, beta2 = group["betas"]
    lr, wd, eps = float(group["lr"]), group["weight_decay"], group["eps"]
    clr = lr / (1 - beta1 ** t)
    for p, g, (exp_avg, exp_inf), s, a, z in peer._pieces_of():
        if wd != 0:
            g = peer._decayed_grad(p, g, wd, a, z)     # grad = grad.add(param, alpha=wd)
        peer._lerp(exp_avg, g, 1 - beta1, s)            # exp_avg.lerp_(grad, 1 - beta1)
        exp_inf *= beta2                                # max(exp_inf.mul_(beta2),
        np.abs(g, out=s)                                #     grad.abs().add_(eps))
        s += eps
        np.maximum(exp_inf, s, out=exp_inf)
        np.divide(exp_avg, exp_inf, out=s)              # param.addcdiv_(exp_avg, exp_inf, -clr)
        s *= -clr
        p += s
