"""NAdam, as ``torch.optim.NAdam``."""

import numpy as np

from fastoptim._dispatch import kernels as _kernels
from fastoptim.optim._functional import _fused, _shared_doc, _step
from fastoptim.optim._validation import _check_at_least_zero, _check_moment_group
from fastoptim.optim.base import Optimizer
from fastoptim.optim.registry import OPTIMIZERS

__all__ = ["NAdam", "nadam"]


@_shared_doc
def nadam(params, grads, exp_avgs, exp_avg_sqs, mu_products, state_steps, decoupled_weight_decay=False,
          maximize=False, *, beta1, beta2, lr, weight_decay, momentum_decay, eps,
          grad_scale=None, found_inf=None):
    r"""One NAdam step (Nesterov-accelerated Adam with momentum decay), in place; torch's ``nadam``.

    With :math:`t` the param's step count after incrementing it and :math:`\psi` =
    ``momentum_decay``:

    .. math::

        g_t &\leftarrow -g_t \quad\text{if maximize} \\
        \theta_{t-1} &\leftarrow \theta_{t-1}\,(1 - \gamma\lambda) \quad\text{if decoupled},
        \qquad g_t \leftarrow g_t + \lambda\,\theta_{t-1} \quad\text{otherwise, if } \lambda \ne 0 \\
        \mu_t &= \beta_1 (1 - \tfrac12\, 0.96^{t\psi}), \qquad
        \mu_{t+1} = \beta_1 (1 - \tfrac12\, 0.96^{(t+1)\psi}), \qquad
        P_t = P_{t-1}\,\mu_t \\
        m_t &\leftarrow \operatorname{lerp}(m_{t-1}, g_t, 1-\beta_1), \qquad
        v_t \leftarrow \beta_2\, v_{t-1} + (1-\beta_2)\, g_t^2 \\
        d_t &= \sqrt{v_t / (1-\beta_2^t)} + \epsilon \\
        \theta_t &\leftarrow \theta_{t-1} - \frac{\gamma (1-\mu_t)}{1-P_t}\,\frac{g_t}{d_t}
                   - \frac{\gamma\,\mu_{t+1}}{1-P_t\,\mu_{t+1}}\,\frac{m_t}{d_t}

    :math:`P` is each param's ``mu_product``: a 0-d array (float32 unless you keep it in float64,
    as torch keeps a 0-d tensor of its default dtype), multiplied in its own dtype as torch does.
    Rounding follows torch 2.13's CPU single-tensor path op by op.

    Parameters
    ----------
    {params}
    exp_avgs, exp_avg_sqs : list of ndarray
        :math:`m` and :math:`v`, one per param; updated in place.
    mu_products : list of 0-d ndarray
        :math:`P`, one per param (1.0 at the start); updated in place.
    {steps}
    decoupled_weight_decay, maximize : bool, default False
    beta1, beta2, lr, weight_decay, momentum_decay, eps : float
    {fused}

    Examples
    --------
    >>> import numpy as np
    >>> from fastoptim import functional as F
    >>> p, m, v = np.zeros(2), np.zeros(2), np.zeros(2)
    >>> mu_products, steps = [np.array(1.0, dtype=np.float32)], [0]
    >>> F.nadam([p], [np.array([1.0, -2.0])], [m], [v], mu_products, steps, beta1=0.9, beta2=0.999,
    ...         lr=0.002, weight_decay=0.0, momentum_decay=0.004, eps=1e-8)
    >>> p.round(6), mu_products[0]
    (array([-0.002113,  0.002113]), array(0.45007348, dtype=float32))
    """
    _step(_fused(_kernels.nadam, grad_scale, found_inf),
          dict(params=params, grads=grads, exp_avgs=exp_avgs, exp_avg_sqs=exp_avg_sqs, mu_products=mu_products,
               state_steps=state_steps),
          dict(beta1=beta1, beta2=beta2, lr=lr, weight_decay=weight_decay, momentum_decay=momentum_decay, eps=eps),
          dict(decoupled_weight_decay=decoupled_weight_decay, maximize=maximize))


class NAdam(Optimizer):
    r"""NAdam (Dozat, 2016): Adam with Nesterov momentum and a momentum schedule.

    {{intro}}

    With :math:`\psi` = ``momentum_decay``:

    .. math::

        \begin{aligned}
            {{grad}}
            &\text{if } \lambda \neq 0: \quad \begin{cases}
                \theta_{t-1} \leftarrow \theta_{t-1} (1 - \gamma \lambda)
                    & \text{if decoupled\_weight\_decay} \\
                g_t \leftarrow g_t + \lambda \theta_{t-1} & \text{otherwise (L2)}
                \end{cases} \\
            &\mu_t \leftarrow \beta_1 \bigl(1 - \tfrac12\, 0.96^{t\psi}\bigr), \qquad
             \mu_{t+1} \leftarrow \beta_1 \bigl(1 - \tfrac12\, 0.96^{(t+1)\psi}\bigr) \\
            &P_t \leftarrow P_{t-1}\, \mu_t \quad \text{(state ``mu_product``)} \\
            &m_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
            &v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
            &d_t \leftarrow \sqrt{v_t / (1 - \beta_2^t)} + \epsilon \\
            &\theta_t \leftarrow \theta_{t-1}
                - \frac{\gamma (1 - \mu_t)}{1 - P_t} \, \frac{g_t}{d_t}
                - \frac{\gamma\, \mu_{t+1}}{1 - P_t\, \mu_{t+1}} \, \frac{m_t}{d_t}
        \end{aligned}

    with learning rate :math:`\gamma`, ``betas`` :math:`(\beta_1, \beta_2)`, ``eps``
    :math:`\epsilon` and weight decay :math:`\lambda`; :math:`m_0 = v_0 = 0`, :math:`P_0 = 1`,
    and :math:`t` counts the steps in which *this* parameter had a gradient. As in torch:
    :math:`P_t` is a 0-d float32 array, multiplied in float32 (torch's 0-d tensor of its
    default dtype), :math:`\epsilon` is added after the square root, and the decoupled option
    (NAdamW) is torch's, not the paper's. Every elementwise operation rounds like torch's CPU
    single-tensor path, so the results are torch's bit for bit on an Intel CPU with AVX-512, where
    torch's square root is reproduced, and elsewhere differ only where its square root differs
    from the correctly rounded one used there (:doc:`/numerics`).

    Parameters
    ----------
    {{params}}
    lr : float, default 2e-3
        Learning rate :math:`\gamma` (a NumPy scalar or 1-element array is used as a float).
    betas, eps, weight_decay, foreach, maximize, capturable, differentiable
        As for :class:`RAdam`.
    momentum_decay : float, default 4e-3
        :math:`\psi`, the rate of the momentum schedule.
    decoupled_weight_decay : bool, default False
        Decay the parameters directly, as AdamW does (NAdamW).

    Attributes
    ----------
    state : dict
        Per parameter, created at its first step with a gradient: ``"step"`` (a Python int;
        torch keeps a float32 tensor), ``"mu_product"`` (:math:`P`, a 0-d float32 array holding
        torch's exact value; a loaded float64 one stays float64), ``"exp_avg"`` (:math:`m`) and
        ``"exp_avg_sq"`` (:math:`v`), arrays of the parameter's shape and dtype.

    Raises
    ------
    ValueError
        With torch's messages: ``Invalid learning rate``, ``Invalid epsilon value``, ``Invalid
        beta parameter at index 0/1``, ``Invalid weight_decay value``, ``Invalid
        momentum_decay value``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastoptim as fo
    >>> w = fo.Parameter(np.array([1.0, -2.0]))
    >>> opt = fo.NAdam([w], lr=0.1)
    >>> w.grad = 2 * w                 # gradient of sum(w**2)
    >>> opt.step()
    >>> np.round(w, 6), opt.state[w]["mu_product"]
    (array([ 0.894355, -1.894355]), array(0.45007348, dtype=float32))
    """

    _info = OPTIMIZERS["NAdam"]

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 momentum_decay=4e-3, decoupled_weight_decay=False, *, foreach=None,
                 maximize=False, capturable=False, differentiable=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay,
                                      decoupled_weight_decay=decoupled_weight_decay,
                                      maximize=maximize, foreach=foreach, capturable=capturable,
                                      differentiable=differentiable))

    def _new_buffer(self, key, param, group):
        """torch's initial state: ``mu_product`` a 0-d float32 one, the moments zeros."""
        if key == "mu_product":
            return np.ones((), dtype=np.float32)
        return np.zeros(param.shape, dtype=param.dtype)

    def _check_hyperparameters(self, group):
        """torch 2.13's checks, in torch's order and with its messages."""
        _check_moment_group(self, group)
        _check_at_least_zero(group["momentum_decay"], "momentum_decay value")


# ---------------------------------------------------------------------------------------------
# The benchmark's peer (fastoptim.tools.peers) that models NAdam: the registry entry lists it.

def _numpy_rule(peer, group):
    """torch's single-tensor NAdam step, op by op (``_single_tensor_nadam``): ``momentum_decay``,
    L2 or decoupled weight decay as the group says."""
    t = peer.step_count
    beta1, beta2 = group["betas"]
    lr, wd, eps = float(group["lr"]), group["weight_decay"], group["eps"]
    decoupled, psi = group["decoupled_weight_decay"], group["momentum_decay"]
    bias_correction2 = 1 - beta2 ** t
    mu = beta1 * (1.0 - 0.5 * (0.96 ** (t * psi)))
    mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((t + 1) * psi)))
    # mu_product: torch's 0-d float32 tensor (the same for every param here), *= mu in float32
    if t == 1:
        peer._mu_product = np.float32(1.0)
    peer._mu_product = np.float32(float(peer._mu_product) * float(np.float32(mu)))
    mu_product = float(peer._mu_product)
    mu_product_next = mu_product * mu_next
    value_grad = -lr * (1.0 - mu) / (1.0 - mu_product)
    value_avg = (-lr * mu_next) / (1.0 - mu_product_next)
    for p, g, (exp_avg, exp_avg_sq), s, a, z in peer._pieces_of():
        d = peer._scratch_n(0, a, z)
        g = peer._two_moments(p, g, exp_avg, exp_avg_sq, s, a, z, beta1=beta1, beta2=beta2,
                               wd=wd, decoupled=decoupled, lr=lr)
        np.divide(exp_avg_sq, bias_correction2, out=s)  # denom = exp_avg_sq.div(bc2).sqrt()
        np.sqrt(s, out=s)
        s += eps                                        # denom.add_(eps)
        np.divide(g, s, out=d)                          # param.addcdiv_(grad, denom, value_grad)
        d *= value_grad
        p += d
        np.divide(exp_avg, s, out=d)                    # param.addcdiv_(exp_avg, denom, value_avg)
        d *= value_avg
        p += d
