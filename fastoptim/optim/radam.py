"""RAdam, as ``torch.optim.RAdam``."""

import numpy as np

from fastoptim.optim._validation import (
    _check_bool_options,
    _check_unsupported_flags,
    _is_array_scalar,
)
from fastoptim.optim.base import Optimizer
from fastoptim.optim.registry import OPTIMIZERS

__all__ = ["RAdam"]


def _check_lr(lr):
    """torch 2.13's learning-rate checks of RAdam, NAdam, ASGD and Rprop, with its messages."""
    if _is_array_scalar(lr) and np.size(lr) != 1:
        raise ValueError("Tensor lr must be 1-element")
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")


def _check_radam_hyperparameters(lr, betas, eps, weight_decay):
    """torch 2.13's checks of RAdam (and the first ones of NAdam), in torch's order."""
    _check_lr(lr)
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")
    if not 0.0 <= betas[0] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
    if not 0.0 <= betas[1] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")


def _check_pair(group, key, names):
    """A tuple-valued hyperparameter must be a pair (``betas``, ``etas``, ``step_sizes``)."""
    value = group[key]
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{key} must be a pair ({names}), got {value!r}")


class RAdam(Optimizer):
    r"""RAdam (Liu et al., 2020): Adam whose adaptive step is rectified for its variance.

    {{intro}}

    With :math:`\rho_\infty = 2/(1-\beta_2) - 1` and
    :math:`\rho_t = \rho_\infty - 2t\beta_2^t/(1-\beta_2^t)`:

    .. math::

        \begin{aligned}
            {{grad}}
            &\text{if } \lambda \neq 0: \quad \begin{cases}
                \theta_{t-1} \leftarrow \theta_{t-1} (1 - \gamma \lambda)
                    & \text{if decoupled\_weight\_decay} \\
                g_t \leftarrow g_t + \lambda \theta_{t-1} & \text{otherwise (L2)}
                \end{cases} \\
            &m_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
            &v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
            &\hat m_t \leftarrow \gamma\, m_t / (1 - \beta_1^t) \\
            &\theta_t \leftarrow \begin{cases}
                \theta_{t-1} - \hat m_t \, \dfrac{\sqrt{1 - \beta_2^t}}{\sqrt{v_t} + \epsilon}
                \, r_t, \quad r_t = \sqrt{\dfrac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}
                {(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}} & \text{if } \rho_t > 5 \\
                \theta_{t-1} - \hat m_t & \text{otherwise}
                \end{cases}
        \end{aligned}

    with learning rate :math:`\gamma`, ``betas`` :math:`(\beta_1, \beta_2)`, ``eps``
    :math:`\epsilon` and weight decay :math:`\lambda`; :math:`m_0 = v_0 = 0` and :math:`t` counts
    the steps in which *this* parameter had a gradient. As in torch, and unlike the paper,
    :math:`\epsilon` is added to :math:`\sqrt{v_t}` (the paper has none) and the threshold is
    :math:`\rho_t > 5` (the paper's is 4). Every elementwise operation rounds like torch's CPU
    single-tensor path, so the results differ from torch's only where its square root differs.

    Parameters
    ----------
    {{params}}
    lr : float, default 1e-3
        Learning rate :math:`\gamma` (a NumPy scalar or 1-element array is used as a float).
    betas : tuple of two floats, default (0.9, 0.999)
        :math:`(\beta_1, \beta_2)`, each in [0, 1).
    eps : float, default 1e-8
        :math:`\epsilon`, added to the denominator for numerical stability.
    weight_decay : float, default 0
        :math:`\lambda`.
    decoupled_weight_decay : bool, default False
        Decay the parameters directly, as AdamW does, instead of adding :math:`\lambda\theta` to
        the gradient.
    {{foreach}}
    {{maximize}}
    {{capturable}}

    Attributes
    ----------
    state : dict
        Per parameter, created at its first step with a gradient: ``"step"`` (a Python int;
        torch keeps a float32 tensor), ``"exp_avg"`` (:math:`m`) and ``"exp_avg_sq"``
        (:math:`v`), arrays of the parameter's shape and dtype.

    Raises
    ------
    ValueError
        With torch's messages: ``Invalid learning rate``, ``Invalid epsilon value``, ``Invalid
        beta parameter at index 0/1``, ``Invalid weight_decay value``.

    Notes
    -----
    Stricter than torch as :class:`Adam` is (hyperparameters of every group checked, gradients
    checked before anything changes). Non-finite gradients propagate as in torch.

    Examples
    --------
    >>> import numpy as np
    >>> import fastoptim as fo
    >>> w = fo.Parameter(np.array([1.0, -2.0]))
    >>> opt = fo.RAdam([w], lr=0.1)
    >>> w.grad = 2 * w                 # gradient of sum(w**2)
    >>> opt.step()                     # rho_1 <= 5: the un-adapted step lr * m_hat
    >>> w
    Parameter([ 0.8, -1.6])
    """

    _info = OPTIMIZERS["RAdam"]

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0,
        decoupled_weight_decay=False,
        *,
        foreach=None,
        maximize=False,
        capturable=False,
        differentiable=False,
    ):
        _check_radam_hyperparameters(lr, betas, eps, weight_decay)
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "decoupled_weight_decay": decoupled_weight_decay,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults)

    def _check_group(self, group):
        _check_pair(group, "betas", "beta1, beta2")
        _check_radam_hyperparameters(group["lr"], group["betas"], group["eps"],
                                     group["weight_decay"])
        _check_unsupported_flags(group)
        _check_bool_options(group, self._info.flags)
