"""RAdam, as ``torch.optim.RAdam``."""

from fastoptim._dispatch import kernels as _kernels
from fastoptim.optim._functional import _fused, _shared_doc, _step
from fastoptim.optim._validation import _check_moment_group
from fastoptim.optim.base import Optimizer
from fastoptim.optim.registry import OPTIMIZERS

__all__ = ["RAdam", "radam"]


@_shared_doc
def radam(params, grads, exp_avgs, exp_avg_sqs, state_steps, decoupled_weight_decay=False, maximize=False,
          *, beta1, beta2, lr, weight_decay, eps, grad_scale=None, found_inf=None):
    r"""One RAdam step (rectified Adam; L2 or decoupled weight decay), in place; torch's ``radam``.

    With :math:`t` the param's step count after incrementing it,
    :math:`\rho_\infty = 2/(1-\beta_2) - 1` and
    :math:`\rho_t = \rho_\infty - 2t\beta_2^t/(1-\beta_2^t)`:

    .. math::

        g_t &\leftarrow -g_t \quad\text{if maximize} \\
        \theta_{t-1} &\leftarrow \theta_{t-1}\,(1 - \gamma\lambda) \quad\text{if decoupled},
        \qquad g_t \leftarrow g_t + \lambda\,\theta_{t-1} \quad\text{otherwise, if } \lambda \ne 0 \\
        m_t &\leftarrow \operatorname{lerp}(m_{t-1}, g_t, 1-\beta_1), \qquad
        v_t \leftarrow \beta_2\, v_{t-1} + (1-\beta_2)\, g_t^2 \\
        \hat m_t &= \gamma\, m_t / (1-\beta_1^t) \\
        \theta_t &\leftarrow \begin{cases}
            \theta_{t-1} - \hat m_t\, \dfrac{\sqrt{1-\beta_2^t}}{\sqrt{v_t} + \epsilon}\, r_t &
            \rho_t > 5, \quad r_t = \sqrt{\dfrac{(\rho_t-4)(\rho_t-2)\rho_\infty}
                                             {(\rho_\infty-4)(\rho_\infty-2)\rho_t}} \\
            \theta_{t-1} - \hat m_t & \text{otherwise} \end{cases}

    As in torch, :math:`\epsilon` is added to :math:`\sqrt{v_t}` before the bias correction
    multiplies. Rounding follows torch 2.13's CPU single-tensor path op by op (the adaptive term
    is ``reciprocal()`` times the scalar, as torch's ``float / Tensor`` computes it).

    Parameters
    ----------
    {params}
    exp_avgs, exp_avg_sqs : list of ndarray
        :math:`m` and :math:`v`, one per param; updated in place.
    {steps}
    decoupled_weight_decay, maximize : bool, default False
    beta1, beta2, lr, weight_decay, eps : float
    {fused}

    Examples
    --------
    >>> import numpy as np
    >>> from fastoptim import functional as F
    >>> p, m, v, steps = np.zeros(2), np.zeros(2), np.zeros(2), [0]
    >>> F.radam([p], [np.array([1.0, -2.0])], [m], [v], steps, beta1=0.9, beta2=0.999, lr=0.1,
    ...         weight_decay=0.0, eps=1e-8)
    >>> p.round(6)
    array([-0.1,  0.2])
    """
    _step(_fused(_kernels.radam, grad_scale, found_inf),
          dict(params=params, grads=grads, exp_avgs=exp_avgs, exp_avg_sqs=exp_avg_sqs, state_steps=state_steps),
          dict(beta1=beta1, beta2=beta2, lr=lr, weight_decay=weight_decay, eps=eps),
          dict(decoupled_weight_decay=decoupled_weight_decay, maximize=maximize))


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
    single-tensor path, so the results are torch's bit for bit on an Intel CPU with AVX-512, where
    torch's square root is reproduced, and elsewhere differ only where its square root differs
    from the correctly rounded one used there (:doc:`/numerics`).

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

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 decoupled_weight_decay=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      maximize=maximize, foreach=foreach, capturable=capturable,
                                      decoupled_weight_decay=decoupled_weight_decay,
                                      differentiable=differentiable))

    _check_hyperparameters = _check_moment_group  # torch 2.13's checks


# ---------------------------------------------------------------------------------------------
# The benchmark's peer (fastoptim.tools.peers) that models RAdam: the registry entry lists it.

def _numpy_rule(peer, group):
    """torch's single-tensor RAdam step, op by op (``_single_tensor_radam``): the rectified
    update once ``rho_t > 5``, the plain momentum step before; L2 or decoupled weight decay."""
    import numpy as np

    t = peer.step_count
    beta1, beta2 = group["betas"]
    lr, wd, eps = float(group["lr"]), group["weight_decay"], group["eps"]
    decoupled = group["decoupled_weight_decay"]
    bias_correction1 = 1 - beta1 ** t
    bias_correction2 = 1 - beta2 ** t
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * t * (beta2 ** t) / bias_correction2
    rectified = rho_t > 5.0
    if rectified:
        rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
        bc2_sqrt = bias_correction2 ** 0.5
    for p, g, (exp_avg, exp_avg_sq), s, a, z in peer._pieces_of():
        g = peer._two_moments(p, g, exp_avg, exp_avg_sq, s, a, z, beta1=beta1, beta2=beta2,
                               wd=wd, decoupled=decoupled, lr=lr)
        np.divide(exp_avg, bias_correction1, out=s)     # bias_corrected_exp_avg * lr
        s *= lr
        if rectified:
            d = peer._scratch_n(0, a, z)
            np.sqrt(exp_avg_sq, out=d)                  # adaptive: bc2 ** 0.5 / (sqrt(v) + eps),
            d += eps                                    #   a scalar over a tensor: torch takes
            np.reciprocal(d, out=d)                     #   the reciprocal, then multiplies
            d *= bc2_sqrt
            s *= d                                      #   * adaptive_lr * rect
            s *= rect
        p -= s                                          # param.add_(..., alpha=-1.0)
