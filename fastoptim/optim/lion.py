"""Lion (EvoLved Sign Momentum; Chen et al., 2023). Not part of torch.optim."""

from fastoptim._dispatch import kernels as _kernels
from fastoptim.optim._functional import _fused, _shared_doc, _step
from fastoptim.optim._validation import _check_at_least_zero, _check_betas, _check_lr
from fastoptim.optim.base import Optimizer
from fastoptim.optim.registry import OPTIMIZERS

__all__ = ["Lion", "lion"]


@_shared_doc
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
    {fused}

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


class Lion(Optimizer):
    r"""Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms"): the sign of an
    interpolated momentum, with decoupled weight decay.

    Not part of torch 2.13. Each ``step()`` makes one call into the compiled kernels per
    parameter group, over every parameter of the group that has a gradient.

    .. math::

        \begin{aligned}
            {{grad}}
            &\theta_{t-1} \leftarrow \theta_{t-1} (1 - \gamma \lambda) \\
            &c_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
            &\theta_t \leftarrow \theta_{t-1} - \gamma \operatorname{sign}(c_t) \\
            &m_t \leftarrow \beta_2 m_{t-1} + (1 - \beta_2) g_t
        \end{aligned}

    with learning rate :math:`\gamma`, ``betas`` :math:`(\beta_1, \beta_2)`, decoupled weight
    decay :math:`\lambda`, :math:`m_0 = 0` and :math:`\operatorname{sign}(0) = 0`. Every entry
    moves by exactly :math:`\gamma` (or not at all), so Lion wants a learning rate 3-10 times
    smaller than AdamW's and a weight decay 3-10 times larger (the paper's advice). The rounding
    is that of the reference implementation written in torch ops (lucidrains/lion-pytorch):
    :math:`c_t` and :math:`m_t` are fused multiply-adds. Without square roots or divisions, the
    result is the same for any thread count and bitwise that of the NumPy rule.

    Parameters
    ----------
    {{params}}
    lr : float, default 1e-4
        Learning rate :math:`\gamma`. A NumPy scalar or 1-element array is used as ``float(lr)``.
    betas : tuple of two floats, default (0.9, 0.99)
        :math:`(\beta_1, \beta_2)`, each in [0, 1]: :math:`\beta_1` interpolates the update's
        direction, :math:`\beta_2` the momentum kept.
    weight_decay : float, default 0.0
        Decoupled weight decay :math:`\lambda`.
    {{maximize}}

    Attributes
    ----------
    state : dict
        Per parameter, created at its first step with a gradient: ``"exp_avg"`` (:math:`m`), an
        array of the parameter's shape and dtype. There is no step count: the rule does not use
        one.

    Raises
    ------
    ValueError
        Before ``params`` is looked at, with the messages torch's optimizers use: ``Tensor lr
        must be 1-element``, ``Invalid learning rate``, ``Invalid beta parameter at index
        0/1``, ``Invalid weight_decay value``.

    Notes
    -----
    Hyperparameters of every param group are checked with the constructor's rules. Non-finite
    gradients propagate into the momentum; ``sign(NaN)`` is 0, so a NaN in :math:`c_t` leaves the
    parameter where the decay put it.

    Examples
    --------
    >>> import numpy as np
    >>> import fastoptim as fo
    >>> w = fo.Parameter(np.array([1.0, -2.0, 3.0]))
    >>> opt = fo.Lion([w], lr=0.1)
    >>> w.grad = np.array([0.5, -4.0, 0.0])
    >>> opt.step()                     # every entry moves by lr against the sign, or not at all
    >>> w
    Parameter([ 0.9, -1.9,  3. ])
    >>> opt.state[w]["exp_avg"]
    array([ 0.005, -0.04 ,  0.   ])
    """

    _info = OPTIMIZERS["Lion"]

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, *, maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay,
                                      maximize=maximize))

    def _check_hyperparameters(self, group):
        """The checks of the two-moment optimizers, with torch's messages (betas may be 1, as in
        the reference implementation)."""
        _check_lr(group["lr"])
        _check_betas(group["betas"], top_included=True)
        _check_at_least_zero(group["weight_decay"], "weight_decay value")


def _reference_rule(torch, groups, **kwargs):
    """Lion's reference formula (lucidrains/lion-pytorch) in torch ops over torch tensors, with
    fastoptim's param groups: the "torch" side of the parity report (benchmarks/parity_report.py),
    as torch has no Lion. An object with ``param_groups``, ``state`` and ``step()``."""

    class Reference:
        def __init__(self, groups, **kwargs):
            defaults = {"lr": 1e-4, "betas": (0.9, 0.99), "weight_decay": 0.0, "maximize": False,
                        **kwargs}
            self.param_groups = [{**defaults, **g} for g in groups]
            self.state = {}

        def step(self):
            for group in self.param_groups:
                beta1, beta2 = group["betas"]
                lr, wd = group["lr"], group["weight_decay"]
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    g = -p.grad if group["maximize"] else p.grad
                    m = self.state.setdefault(p, {"exp_avg": torch.zeros_like(p)})["exp_avg"]
                    with torch.no_grad():
                        p.mul_(1 - lr * wd)
                        p.add_(m.mul(beta1).add(g, alpha=1 - beta1).sign_(), alpha=-lr)
                    m.mul_(beta2).add_(g, alpha=1 - beta2)

    return Reference(groups, **kwargs)


# ---------------------------------------------------------------------------------------------
# The benchmark's peer (fastoptim.tools.peers) that models Lion: the registry entry lists it.

def _numpy_rule(peer, group):
    """The reference Lion step in the torch ops :func:`lion` documents, op by op."""
    import numpy as np

    beta1, beta2 = group["betas"]
    lr, wd = float(group["lr"]), group["weight_decay"]
    decay = 1 - lr * wd
    for p, g, (exp_avg,), s, a, z in peer._pieces_of():
        d = peer._scratch_n(0, a, z)
        np.multiply(exp_avg, beta1, out=s)              # exp_avg.mul(beta1)
        np.multiply(g, 1 - beta1, out=d)                #   .add(grad, alpha=1 - beta1)
        s += d
        if wd != 0:
            p *= decay                                  # param.mul_(1 - lr * wd)
        peer._sign(s, s, a, z)                          # param.add_(update.sign_(), alpha=-lr)
        s *= -lr
        p += s
        exp_avg *= beta2                                # exp_avg.mul_(beta2)
        np.multiply(g, 1 - beta2, out=d)                #   .add_(grad, alpha=1 - beta2)
        exp_avg += d
