"""Adagrad, as ``torch.optim.Adagrad``."""

import numpy as np

from fastoptim._dispatch import kernels as _kernels
from fastoptim.optim._functional import _fused, _shared_doc, _step
from fastoptim.optim._validation import _check_at_least_zero, _check_lr
from fastoptim.optim.base import Optimizer
from fastoptim.optim.registry import OPTIMIZERS

__all__ = ["Adagrad", "adagrad"]


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
    {fused}

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
    _step(_fused(_kernels.adagrad, grad_scale, found_inf), dict(params=params, grads=grads, state_sums=state_sums, state_steps=state_steps),
          dict(lr=lr, weight_decay=weight_decay, lr_decay=lr_decay, eps=eps), dict(maximize=maximize))


class Adagrad(Optimizer):
    r"""Adagrad (Duchi, Hazan & Singer, 2011): per-element step sizes from the sum of all
    squared gradients.

    {{intro}}

    .. math::

        \begin{aligned}
            {{grad}}
            &\tilde\gamma \leftarrow \gamma / (1 + (t - 1) \eta) \\
            &g_t \leftarrow g_t + \lambda \theta_{t-1} \ \text{if } \lambda \neq 0 \\
            &s_t \leftarrow s_{t-1} + g_t^2 \\
            &\theta_t \leftarrow \theta_{t-1} - \tilde\gamma \, \frac{g_t}{\sqrt{s_t} + \epsilon}
        \end{aligned}

    with learning rate :math:`\gamma`, learning-rate decay :math:`\eta` (``lr_decay``),
    weight decay :math:`\lambda`, ``eps`` :math:`\epsilon` and :math:`s_0 = \tau`
    (``initial_accumulator_value``); :math:`t` counts the steps in which *this* parameter had a
    gradient. As in torch, and unlike the paper, the learning rate decays as
    :math:`1/(1 + (t-1)\eta)` and :math:`\epsilon` is added after the square root. The decayed
    learning rate is computed in double precision like torch's, and every elementwise operation
    rounds like torch's CPU kernels, so the results are torch's bit for bit on an Intel CPU with
    AVX-512, where torch's MKL square root is reproduced, and elsewhere differ only where that
    square root is 1 ulp off the correctly rounded one used there (:doc:`/numerics`).

    Parameters
    ----------
    {{params}}
    lr : float, default 1e-2
        Learning rate :math:`\gamma`. A NumPy scalar or 1-element array is used as ``float(lr)``.
    lr_decay : float, default 0
        Learning-rate decay :math:`\eta`.
    weight_decay : float, default 0
        L2 penalty :math:`\lambda`.
    initial_accumulator_value : float, default 0
        :math:`\tau`, the starting value of every sum. As in torch, the constructor's value is
        used for every parameter (a group's own value is stored but not used).
    eps : float, default 1e-10
        :math:`\epsilon`, added to the denominator for numerical stability.
    {{foreach_fused}}
    {{maximize}}
    differentiable : bool, default False
        Must be False: fastoptim has no autograd (``True`` raises ValueError).

    Attributes
    ----------
    state : dict
        As in torch, created for every parameter by the constructor (and for a parameter of a
        group added later, at its first step with a gradient): ``"step"`` (a Python int; torch
        keeps a float32 tensor) and ``"sum"`` (:math:`s`), an array of the parameter's shape and
        dtype.

    Raises
    ------
    ValueError
        With torch's messages, in torch's order, before ``params`` is looked at: ``Tensor lr
        must be 1-element``, ``Invalid learning rate``, ``Invalid lr_decay value``, ``Invalid
        weight_decay value``, ``Invalid initial_accumulator_value value``, ``Invalid epsilon
        value``.

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
    >>> opt = fo.Adagrad([w], lr=0.1)
    >>> opt.state[w]["step"], opt.state[w]["sum"]   # created by the constructor, as in torch
    (0, array([0., 0.]))
    >>> w.grad = 2 * w                 # gradient of sum(w**2)
    >>> opt.step()                     # the first step moves every entry by about lr
    >>> np.round(w, 6)
    array([ 0.9, -1.9])
    """

    _info = OPTIMIZERS["Adagrad"]

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
                 eps=1e-10, foreach=None, *, maximize=False, differentiable=False, fused=None):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      foreach=foreach, maximize=maximize,
                                      differentiable=differentiable, fused=fused))
        # torch creates the state of the constructor's parameters eagerly.
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p] = {"step": 0, "sum": self._new_state("sum", p, group)}

    def _new_buffer(self, key, param, group):
        """The starting sum: the constructor's ``initial_accumulator_value`` (torch's
        ``self.defaults[...]``, for every group)."""
        return np.full(param.shape, self.defaults["initial_accumulator_value"], dtype=param.dtype)

    def _check_hyperparameters(self, group):
        """torch 2.13's checks, in torch's order and with its messages."""
        _check_lr(group["lr"])
        for key, what in (("lr_decay", "lr_decay value"), ("weight_decay", "weight_decay value"),
                          ("initial_accumulator_value", "initial_accumulator_value value"),
                          ("eps", "epsilon value")):
            _check_at_least_zero(group[key], what)


# ---------------------------------------------------------------------------------------------
# The benchmark's peer (fastoptim.tools.peers) that models Adagrad: the registry entry lists it.

def _numpy_rule(peer, group):
    """torch's single-tensor Adagrad step on dense gradients, op by op (``_single_tensor_adagrad``):
    ``lr_decay`` and L2 weight decay as the group says."""
    t = peer.step_count
    lr, wd, eps = float(group["lr"]), group["weight_decay"], group["eps"]
    clr = lr / (1 + (t - 1) * group["lr_decay"])
    initial = group.get("initial_accumulator_value", 0.0)
    for p, g, (state_sum,), s, a, z in peer._pieces_of():
        if t == 1 and initial != 0:
            state_sum.fill(initial)                     # torch's state: full_like(p, initial)
        if wd != 0:
            g = peer._decayed_grad(p, g, wd, a, z)     # grad = grad.add(param, alpha=wd)
        np.multiply(g, g, out=s)                        # state_sum.addcmul_(grad, grad, value=1)
        state_sum += s
        np.sqrt(state_sum, out=s)                       # std = state_sum.sqrt().add_(eps)
        s += eps
        np.divide(g, s, out=s)                          # param.addcdiv_(grad, std, value=-clr)
        s *= -clr
        p += s
