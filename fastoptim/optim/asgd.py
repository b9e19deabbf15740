"""ASGD, as ``torch.optim.ASGD``."""

import numpy as np

from fastoptim._dispatch import kernels as _kernels
from fastoptim.optim._functional import _fused, _shared_doc, _step
from fastoptim.optim._validation import _check_at_least_zero, _check_lr, _to_float
from fastoptim.optim.base import Optimizer
from fastoptim.optim.registry import OPTIMIZERS

__all__ = ["ASGD", "asgd"]


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
    {fused}

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


class ASGD(Optimizer):
    r"""ASGD (Polyak & Juditsky, 1992): SGD with a decaying step and iterate averaging.

    {{intro}}

    .. math::

        \begin{aligned}
            {{grad}}
            &g_t \leftarrow g_t + \lambda_w \theta_{t-1} \ \text{if } \lambda_w \neq 0 \\
            &\theta_t \leftarrow \theta_{t-1} (1 - \lambda \eta_{t-1}) - \eta_{t-1} g_t \\
            &a_t \leftarrow \begin{cases} \theta_t & \text{if } \mu_{t-1} = 1 \\
                a_{t-1} + \mu_{t-1} (\theta_t - a_{t-1}) & \text{otherwise} \end{cases} \\
            &\eta_t \leftarrow \gamma / (1 + \lambda \gamma t)^{\alpha}, \qquad
             \mu_t \leftarrow 1 / \max(1, t - t_0)
        \end{aligned}

    with learning rate :math:`\gamma`, ``lambd`` :math:`\lambda`, ``alpha`` :math:`\alpha`,
    ``t0`` :math:`t_0` and weight decay :math:`\lambda_w`; :math:`\eta_0 = \gamma`,
    :math:`\mu_0 = 1`, :math:`a_0 = 0`, and :math:`t` counts the steps in which *this* parameter
    had a gradient. The averaged parameters :math:`a` are state ``"ax"``: copy them into the
    model to evaluate the average. As in torch: :math:`\eta` and :math:`\mu` are 0-d float32
    arrays (each step's new values rounded to float32), and the step uses those of the previous
    step; ``lr`` is read at every step only through :math:`\eta_t` (a scheduler's change acts
    from the next step). Bitwise torch's results (the power is of a scalar, not an array).

    Parameters
    ----------
    {{params}}
    lr : float, default 1e-2
        Learning rate :math:`\gamma`.
    lambd : float, default 1e-4
        :math:`\lambda`, the decay term.
    alpha : float, default 0.75
        :math:`\alpha`, the power of the step-size decay.
    t0 : float, default 1e6
        :math:`t_0`, the step from which averaging starts.
    weight_decay : float, default 0
        :math:`\lambda_w` (L2 penalty).
    {{foreach}}
    {{maximize}}
    {{capturable}}

    Attributes
    ----------
    state : dict
        Per parameter, created at its first step with a gradient: ``"step"`` (a Python int;
        torch keeps a float32 tensor), ``"eta"`` and ``"mu"`` (0-d float32 arrays holding
        torch's exact values), and ``"ax"`` (:math:`a`), an array of the parameter's shape.

    Raises
    ------
    ValueError
        With torch's messages: ``Invalid learning rate``, ``Invalid weight_decay value``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastoptim as fo
    >>> w = fo.Parameter(np.array([1.0, -2.0]))
    >>> opt = fo.ASGD([w], lr=0.1, t0=0)
    >>> for _ in range(3):
    ...     w.grad = 2 * w             # gradient of sum(w**2)
    ...     opt.step()
    >>> np.round(w, 4), np.round(opt.state[w]["ax"], 4)
    (array([ 0.512, -1.024]), array([ 0.576, -1.152]))
    """

    _info = OPTIMIZERS["ASGD"]

    def __init__(self, params, lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0,
                 foreach=None, maximize=False, differentiable=False, capturable=False):
        super().__init__(params, dict(lr=lr, lambd=lambd, alpha=alpha, t0=t0,
                                      weight_decay=weight_decay, foreach=foreach,
                                      maximize=maximize, differentiable=differentiable,
                                      capturable=capturable))

    def _new_buffer(self, key, param, group):
        """torch's initial state: ``eta`` the group's ``lr`` and ``mu`` one, as 0-d float32
        arrays; ``ax`` zeros."""
        if key == "eta":
            return np.array(_to_float(group["lr"]), dtype=np.float32)
        if key == "mu":
            return np.ones((), dtype=np.float32)
        return np.zeros(param.shape, dtype=param.dtype)

    def _check_hyperparameters(self, group):
        """torch 2.13's checks, in torch's order and with its messages."""
        _check_lr(group["lr"])
        _check_at_least_zero(group["weight_decay"], "weight_decay value")


# ---------------------------------------------------------------------------------------------
# The benchmark's peer (fastoptim.tools.peers) that models ASGD: the registry entry lists it.

def _numpy_rule(peer, group):
    """torch's single-tensor ASGD step, op by op (``_single_tensor_asgd``). ``eta`` and ``mu``
    are torch's 0-d float32 state, the same for every param: the values the previous step stored
    (the initial ones, ``lr`` and 1, at the first step), rounded to float32."""
    t = peer.step_count
    lr, lambd, alpha, t0 = float(group["lr"]), group["lambd"], group["alpha"], group["t0"]
    wd = group["weight_decay"]
    if t == 1:
        eta, mu = float(np.float32(lr)), 1.0
    else:
        eta = float(np.float32(lr / ((1 + lambd * lr * (t - 1)) ** alpha)))
        mu = float(np.float32(1 / max(1, (t - 1) - t0)))
    decay = 1 - lambd * eta
    for p, g, (ax,), s, a, z in peer._pieces_of():
        if wd != 0:
            g = peer._decayed_grad(p, g, wd, a, z)     # grad = grad.add(param, alpha=wd)
        p *= decay                                      # param.mul_(1 - lambd * eta)
        np.multiply(g, -eta, out=s)                     # param.add_(grad, alpha=-eta)
        p += s
        if mu != 1:
            np.subtract(p, ax, out=s)                   # ax.add_(param.sub(ax).mul_(mu))
            s *= mu
            ax += s
        else:
            np.copyto(ax, p)                            # ax.copy_(param)
