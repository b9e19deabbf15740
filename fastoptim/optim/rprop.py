"""Rprop, as ``torch.optim.Rprop``."""

import numpy as np

from fastoptim._dispatch import kernels as _kernels
from fastoptim.optim._functional import _fused, _shared_doc, _step
from fastoptim.optim._validation import _check_lr, _to_float
from fastoptim.optim.base import Optimizer
from fastoptim.optim.registry import OPTIMIZERS

__all__ = ["Rprop", "rprop"]


@_shared_doc
def rprop(params, grads, prevs, step_sizes, state_steps, *, step_size_min, step_size_max, etaminus,
          etaplus, maximize=False, grad_scale=None, found_inf=None):
    r"""One Rprop step (resilient backpropagation), in place; torch's ``rprop`` functional.

    Elementwise, with :math:`\eta^+` = ``etaplus``, :math:`\eta^-` = ``etaminus``:

    .. math::

        g_t &\leftarrow -g_t \quad\text{if maximize} \\
        f &= \begin{cases} \eta^+ & g_t\, g_{t-1} > 0 \\ \eta^- & g_t\, g_{t-1} < 0 \\
                           1 & \text{otherwise} \end{cases} \\
        \delta_t &\leftarrow \operatorname{clamp}(f\,\delta_{t-1},\ \delta_{\min},\ \delta_{\max}) \\
        g_t &\leftarrow 0 \quad\text{where } f = \eta^- \\
        \theta_t &\leftarrow \theta_{t-1} - \operatorname{sign}(g_t)\, \delta_t, \qquad
        g_{t-1} \leftarrow g_t

    As in torch, a NaN product counts as 0 (``torch.sign(nan)`` is 0) and the stored previous
    gradient is the zeroed one. Bitwise equal to torch 2.13's CPU single-tensor path.

    Parameters
    ----------
    {params}
    prevs : list of ndarray
        :math:`g_{t-1}`, one per param (zeros at the start); updated in place.
    step_sizes : list of ndarray
        :math:`\delta`, one per param (torch starts them at ``lr``); updated in place.
    {steps}
    step_size_min, step_size_max, etaminus, etaplus : float
    maximize : bool, default False
    {fused}

    Examples
    --------
    >>> import numpy as np
    >>> from fastoptim import functional as F
    >>> p, prev, delta, steps = np.zeros(2), np.array([1.0, 1.0]), np.full(2, 0.01), [0]
    >>> F.rprop([p], [np.array([2.0, -3.0])], [prev], [delta], steps, step_size_min=1e-6,
    ...         step_size_max=50.0, etaminus=0.5, etaplus=1.2)
    >>> p, delta, prev
    (array([-0.012,  0.   ]), array([0.012, 0.005]), array([2., 0.]))
    """
    _step(_fused(_kernels.rprop, grad_scale, found_inf),
          dict(params=params, grads=grads, prevs=prevs, step_sizes=step_sizes, state_steps=state_steps),
          dict(step_size_min=step_size_min, step_size_max=step_size_max, etaminus=etaminus, etaplus=etaplus),
          dict(maximize=maximize))


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

    def __init__(self, params, lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50), *,
                 capturable=False, foreach=None, maximize=False, differentiable=False):
        super().__init__(params, dict(lr=lr, etas=etas, step_sizes=step_sizes, foreach=foreach,
                                      maximize=maximize, differentiable=differentiable,
                                      capturable=capturable))

    def _new_buffer(self, key, param, group):
        """torch's initial state: ``prev`` zeros, ``step_size`` the group's ``lr`` everywhere."""
        if key == "step_size":
            return np.full(param.shape, _to_float(group["lr"]), dtype=param.dtype)
        return np.zeros(param.shape, dtype=param.dtype)

    def _check_hyperparameters(self, group):
        """torch 2.13's checks, in torch's order and with its messages."""
        _check_lr(group["lr"])
        etas = group["etas"]
        if not 0.0 < etas[0] < 1.0 < etas[1]:
            raise ValueError(f"Invalid eta values: {etas[0]}, {etas[1]}")


# ---------------------------------------------------------------------------------------------
# The benchmark's peer (fastoptim.tools.peers) that models Rprop: the registry entry lists it.

def _numpy_rule(peer, group):
    """torch's single-tensor Rprop step, op by op (``_single_tensor_rprop``): the sign of
    ``grad * prev`` picks ``etaplus``, ``etaminus`` or 1 per element; step sizes clamped to
    ``step_sizes``; where the sign flipped the gradient counts as 0. The two masks are boolean
    scratch arrays of the peer (``step_size`` starts at ``lr``, filled by the first step)."""
    etaminus, etaplus = group["etas"]
    step_size_min, step_size_max = group["step_sizes"]
    keys = peer.cfg.info.active_buffers(group)
    for p, g, state, s, a, z in peer._pieces_of():
        st = dict(zip(keys, state))
        prev, step_size = st["prev"], st["step_size"]
        if peer.step_count == 1:
            step_size.fill(float(group["lr"]))          # torch's state: full_like(p, lr)
        pos, neg = peer._mask_n(2, a, z), peer._mask_n(3, a, z)
        np.multiply(g, prev, out=s)                     # sign = grad.mul(prev).sign()
        np.greater(s, 0, out=pos)
        np.less(s, 0, out=neg)
        # step_size.mul_(sign) with sign etaplus / etaminus / 1, then clamp_
        np.multiply(step_size, etaplus, out=step_size, where=pos)
        np.multiply(step_size, etaminus, out=step_size, where=neg)
        np.clip(step_size, step_size_min, step_size_max, out=step_size)
        peer._sign(g, s, a, z)                          # grad[sign == etaminus] = 0
        np.copyto(s, 0, where=neg)
        s *= step_size                                  # param.addcmul_(grad.sign(), step_size, -1)
        p -= s
        np.copyto(prev, g)                              # prev.copy_(grad)
        np.copyto(prev, 0, where=neg)
