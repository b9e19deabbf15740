"""RMSprop (optionally centered, with momentum), as ``torch.optim.RMSprop``."""

from fastoptim._dispatch import kernels as _kernels
from fastoptim.optim._functional import _fused, _shared_doc, _step
from fastoptim.optim._validation import _check_at_least_zero, _check_lr
from fastoptim.optim.base import Optimizer
from fastoptim.optim.registry import OPTIMIZERS

__all__ = ["RMSprop", "rmsprop"]


@_shared_doc
def rmsprop(params, grads, square_avgs, grad_avgs, momentum_buffer_list, state_steps, *, lr, alpha,
            eps, weight_decay, momentum, centered, maximize=False, grad_scale=None, found_inf=None):
    r"""One RMSprop step (weight decay, centered, momentum), in place; torch's ``rmsprop`` functional.

    With gradient :math:`g_t`, smoothing constant :math:`\alpha`, weight decay :math:`\lambda`,
    momentum :math:`\mu` and learning rate :math:`\gamma`:

    .. math::

        g_t &\leftarrow -g_t \quad\text{if maximize}, \qquad
        g_t \leftarrow g_t + \lambda\,\theta_{t-1} \quad\text{if } \lambda \ne 0 \\
        v_t &\leftarrow \alpha\, v_{t-1} + (1-\alpha)\, g_t^2 \\
        \bar g_t &\leftarrow \operatorname{lerp}(\bar g_{t-1}, g_t, 1-\alpha), \quad
        \tilde v_t \leftarrow v_t - \bar g_t^2 \quad\text{if centered, else } \tilde v_t = v_t \\
        b_t &\leftarrow \mu\, b_{t-1} + g_t / (\sqrt{\tilde v_t} + \epsilon), \quad
        \theta_t \leftarrow \theta_{t-1} - \gamma\, b_t \quad\text{if } \mu > 0 \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma\, g_t / (\sqrt{\tilde v_t} + \epsilon)
        \quad\text{otherwise}

    As in torch, :math:`\epsilon` is added after the square root and the first momentum step
    starts from the buffer passed in (zeros, as torch's ``RMSprop`` creates it). Rounding follows
    torch 2.13's CPU single-tensor path op by op.

    Parameters
    ----------
    {params}
    square_avgs : list of ndarray
        :math:`v`, one per param; updated in place.
    grad_avgs : list of ndarray
        :math:`\bar g`, one per param when ``centered`` (may be empty otherwise).
    momentum_buffer_list : list of ndarray
        :math:`b`, one per param when ``momentum > 0`` (may be empty otherwise).
    {steps}
    lr, alpha, eps, weight_decay, momentum : float
    centered, maximize : bool
    {fused}

    Examples
    --------
    >>> import numpy as np
    >>> from fastoptim import functional as F
    >>> p, g = np.ones(2), np.array([0.5, -2.0])
    >>> v, steps = np.zeros(2), [0]
    >>> F.rmsprop([p], [g], [v], [], [], steps, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0,
    ...           momentum=0.0, centered=False)
    >>> p.round(4), steps
    (array([0.9, 1.1]), [1])
    """
    _step(_fused(_kernels.rmsprop, grad_scale, found_inf),
          dict(params=params, grads=grads, square_avgs=square_avgs, grad_avgs=grad_avgs,
               momentum_buffer_list=momentum_buffer_list, state_steps=state_steps),
          dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum),
          dict(centered=centered, maximize=maximize))


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
    ``lerp``. Every elementwise operation rounds like torch's CPU kernels, so the results are
    torch's bit for bit on an Intel CPU with AVX-512, where torch's MKL square root is reproduced,
    and elsewhere differ only where that square root is 1 ulp off the correctly rounded one used
    there (:doc:`/numerics`).

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

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, capturable=False, foreach=None, maximize=False,
                 differentiable=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps,
                                      centered=centered, weight_decay=weight_decay,
                                      capturable=capturable, foreach=foreach, maximize=maximize,
                                      differentiable=differentiable))

    def _check_hyperparameters(self, group):
        """torch 2.13's checks, in torch's order and with its messages."""
        _check_lr(group["lr"])
        for key, what in (("eps", "epsilon value"), ("momentum", "momentum value"),
                          ("weight_decay", "weight_decay value"), ("alpha", "alpha value")):
            _check_at_least_zero(group[key], what)


# ---------------------------------------------------------------------------------------------
# The benchmark's peer (fastoptim.tools.peers) that models RMSprop: the registry entry lists it.

def _numpy_rule(peer, group):
    """torch's single-tensor RMSprop step, op by op (``_single_tensor_rmsprop``): centered,
    momentum and L2 weight decay as the group says."""
    import numpy as np

    lr, alpha, eps = float(group["lr"]), group["alpha"], group["eps"]
    wd, momentum, centered = group["weight_decay"], group["momentum"], group["centered"]
    keys = peer.cfg.info.active_buffers(group)
    for p, g, state, s, a, z in peer._pieces_of():
        st = dict(zip(keys, state))
        if wd != 0:
            g = peer._decayed_grad(p, g, wd, a, z)     # grad = grad.add(param, alpha=wd)
        v = st["square_avg"]
        v *= alpha                                      # square_avg.mul_(alpha)
        np.multiply(g, g, out=s)                        #   .addcmul_(grad, grad, 1 - alpha)
        s *= 1.0 - alpha
        v += s
        if centered:
            ga = st["grad_avg"]
            peer._lerp(ga, g, 1.0 - alpha, s)           # grad_avg.lerp_(grad, 1 - alpha)
            np.multiply(ga, ga, out=s)                  # avg = square_avg.addcmul(ga, ga, -1)
            np.subtract(v, s, out=s)
            np.sqrt(s, out=s)                           #   .sqrt_()
        else:
            np.sqrt(v, out=s)                           # avg = square_avg.sqrt()
        s += eps                                        # avg.add_(eps)
        np.divide(g, s, out=s)                          # grad / avg
        if momentum > 0:
            buf = st["momentum_buffer"]
            buf *= momentum                             # buf.mul_(momentum).addcdiv_(grad, avg)
            buf += s
            np.multiply(buf, -lr, out=s)                # param.add_(buf, alpha=-lr)
        else:
            s *= -lr                                    # param.addcdiv_(grad, avg, value=-lr)
        p += s
