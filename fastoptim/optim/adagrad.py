"""Adagrad, as ``torch.optim.Adagrad``."""

import numpy as np

from fastoptim.optim._validation import _check_bool_options, _check_lr, _check_unsupported_flags
from fastoptim.optim.base import Optimizer
from fastoptim.optim.registry import OPTIMIZERS

__all__ = ["Adagrad"]


def _check_adagrad_hyperparameters(lr, lr_decay, weight_decay, initial_accumulator_value, eps):
    """torch 2.13's checks, in torch's order and with its messages."""
    _check_lr(lr)
    if not 0.0 <= lr_decay:
        raise ValueError(f"Invalid lr_decay value: {lr_decay}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")
    if not 0.0 <= initial_accumulator_value:
        raise ValueError(
            f"Invalid initial_accumulator_value value: {initial_accumulator_value}"
        )
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")


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
    rounds like torch's CPU kernels, so the results differ from torch's only where torch's MKL
    square root is 1 ulp off the correctly rounded one.

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

    def __init__(
        self,
        params,
        lr=1e-2,
        lr_decay=0,
        weight_decay=0,
        initial_accumulator_value=0,
        eps=1e-10,
        foreach=None,
        *,
        maximize=False,
        differentiable=False,
        fused=None,
    ):
        _check_adagrad_hyperparameters(lr, lr_decay, weight_decay, initial_accumulator_value, eps)
        defaults = {
            "lr": lr,
            "lr_decay": lr_decay,
            "eps": eps,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "fused": fused,
        }
        super().__init__(params, defaults)
        # torch creates the state of the constructor's parameters eagerly.
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p] = {"step": 0, "sum": self._new_state("sum", p, group)}

    def _new_buffer(self, key, param, group):
        """The starting sum: the constructor's ``initial_accumulator_value`` (torch's
        ``self.defaults[...]``, for every group)."""
        return np.full(param.shape, self.defaults["initial_accumulator_value"], dtype=param.dtype)

    def _check_group(self, group):
        _check_adagrad_hyperparameters(
            group["lr"], group["lr_decay"], group["weight_decay"],
            group["initial_accumulator_value"], group["eps"],
        )
        _check_unsupported_flags(group)
        _check_bool_options(group, self._info.flags)
