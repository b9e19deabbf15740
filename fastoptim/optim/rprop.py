"""Rprop, as ``torch.optim.Rprop``."""

import numpy as np

from fastoptim.optim._validation import _check_bool_options, _check_unsupported_flags, _to_float
from fastoptim.optim.base import Optimizer
from fastoptim.optim.radam import _check_lr, _check_pair
from fastoptim.optim.registry import OPTIMIZERS

__all__ = ["Rprop"]


def _check_rprop_hyperparameters(lr, etas):
    """torch 2.13's checks, in torch's order and with its messages."""
    _check_lr(lr)
    if not 0.0 < etas[0] < 1.0 < etas[1]:
        raise ValueError(f"Invalid eta values: {etas[0]}, {etas[1]}")


class Rprop(Optimizer):
    r"""Rprop (Riedmiller & Braun, 1993): resilient backpropagation, steps from gradient signs.

    {{intro}}

    .. math::

        \begin{aligned}
            {{grad}}
            &f_t \leftarrow \begin{cases} \eta_+ & \text{if } g_t\, g_{t-1} > 0 \\
                \eta_- & \text{if } g_t\, g_{t-1} < 0 \\ 1 & \text{otherwise} \end{cases} \\
            &\delta_t \leftarrow \min(\max(f_t\, \delta_{t-1}, \Gamma_{\min}), \Gamma_{\max}) \\
            &g_t \leftarrow 0 \ \text{where } f_t = \eta_- \\
            &\theta_t \leftarrow \theta_{t-1} - \operatorname{sign}(g_t)\, \delta_t \\
            &g_{t-1} \leftarrow g_t \ \text{(state ``prev``)}
        \end{aligned}

    elementwise, with ``etas`` :math:`(\eta_-, \eta_+)`, ``step_sizes``
    :math:`(\Gamma_{\min}, \Gamma_{\max})`, :math:`g_0 = 0` and :math:`\delta_0` = ``lr``. This is
    the paper's Rprop without weight backtracking (the "Rprop-" variant), as torch implements
    it: after a sign change the step is skipped and the stored gradient is zero. A NaN product
    counts as 0 (``torch.sign(nan)`` is 0). No square root enters: the results are bitwise
    torch's.

    Parameters
    ----------
    {{params}}
    lr : float, default 1e-2
        The initial step size :math:`\delta_0` of every element (read when a parameter's state
        is created; later changes of ``lr``, e.g. by a scheduler, do not act).
    etas : tuple of two floats, default (0.5, 1.2)
        :math:`(\eta_-, \eta_+)`, with :math:`0 < \eta_- < 1 < \eta_+`.
    step_sizes : tuple of two floats, default (1e-6, 50)
        :math:`(\Gamma_{\min}, \Gamma_{\max})`, the bounds of the step sizes.
    {{capturable}}
    {{foreach}}
    {{maximize}}

    Attributes
    ----------
    state : dict
        Per parameter, created at its first step with a gradient: ``"step"`` (a Python int;
        torch keeps a float32 tensor), ``"prev"`` (:math:`g_{t-1}`) and ``"step_size"``
        (:math:`\delta`), arrays of the parameter's shape and dtype.

    Raises
    ------
    ValueError
        With torch's messages: ``Invalid learning rate``, ``Invalid eta values``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastoptim as fo
    >>> w = fo.Parameter(np.array([1.0, -2.0]))
    >>> opt = fo.Rprop([w], lr=0.1)
    >>> for _ in range(2):
    ...     w.grad = 2 * w             # the same sign twice: the step grows by eta+ = 1.2
    ...     opt.step()
    >>> w, opt.state[w]["step_size"]
    (Parameter([ 0.78, -1.78]), array([0.12, 0.12]))
    """

    _info = OPTIMIZERS["Rprop"]

    def __init__(
        self,
        params,
        lr=1e-2,
        etas=(0.5, 1.2),
        step_sizes=(1e-6, 50),
        *,
        capturable=False,
        foreach=None,
        maximize=False,
        differentiable=False,
    ):
        _check_rprop_hyperparameters(lr, etas)
        defaults = {
            "lr": lr,
            "etas": etas,
            "step_sizes": step_sizes,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
        }
        super().__init__(params, defaults)

    def _new_buffer(self, key, param, group):
        """torch's initial state: ``prev`` zeros, ``step_size`` the group's ``lr`` everywhere."""
        if key == "step_size":
            return np.full(param.shape, _to_float(group["lr"]), dtype=param.dtype)
        return np.zeros(param.shape, dtype=param.dtype)

    def _check_group(self, group):
        _check_pair(group, "etas", "etaminus, etaplus")
        _check_pair(group, "step_sizes", "step_size_min, step_size_max")
        _check_rprop_hyperparameters(group["lr"], group["etas"])
        _check_unsupported_flags(group)
        _check_bool_options(group, self._info.flags)
