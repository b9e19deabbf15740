"""Adam, AMSGrad and AdamW, as ``torch.optim.Adam`` and ``torch.optim.AdamW``."""

import numpy as np

from fastoptim._dispatch import kernels as _kernels
from fastoptim.optim._functional import _as_list, _flag, _fused, _scalar, _shared_doc
from fastoptim.optim._validation import _check_moment_hyperparameters, _is_array_scalar
from fastoptim.optim.base import Optimizer
from fastoptim.optim.registry import OPTIMIZERS

__all__ = ["Adam", "AdamW", "adam", "adamw"]


def _check_adam_hyperparameters(lr, betas, eps, weight_decay, foreach, capturable):
    """torch 2.13's checks, in torch's order and with its messages.

    Returns ``betas`` with 1-element arrays squeezed to 0-d, as torch does with tensors.
    """
    if _is_array_scalar(lr) and foreach and not capturable:
        raise ValueError("lr as a Tensor is not supported for capturable=False and foreach=True")
    _check_moment_hyperparameters(lr, betas, eps, weight_decay)
    if not (
        (isinstance(betas[0], float) and isinstance(betas[1], float))
        or (_is_array_scalar(betas[0]) and _is_array_scalar(betas[1]))
    ):
        raise ValueError("betas must be either both floats or both Tensors")
    for index in (0, 1):
        if _is_array_scalar(betas[index]):
            if not capturable and foreach:
                raise ValueError(
                    f"betas[{index}] as a Tensor is not supported for capturable=False and "
                    "foreach=True"
                )
            if np.size(betas[index]) != 1:
                raise ValueError(f"Tensor betas[{index}] must be 1-element")
    return tuple(
        b.reshape(()) if isinstance(b, np.ndarray) and b.ndim != 0 else b for b in betas
    )


@_shared_doc
def adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, *, amsgrad, beta1,
         beta2, lr, weight_decay, eps, maximize, decoupled_weight_decay=False,
         grad_scale=None, found_inf=None):
    r"""One Adam step (L2 or decoupled weight decay, AMSGrad), in place.

    With :math:`t` the param's step count after incrementing it:

    .. math::

        g_t &\leftarrow -g_t \quad\text{if maximize} \\
        \theta_{t-1} &\leftarrow \theta_{t-1}\,(1 - \gamma\lambda) \quad\text{if decoupled (AdamW)},
        \qquad g_t \leftarrow g_t + \lambda\,\theta_{t-1} \quad\text{otherwise, if } \lambda \ne 0 \\
        m_t &\leftarrow \operatorname{lerp}(m_{t-1}, g_t, 1-\beta_1) \\
        v_t &\leftarrow \beta_2\, v_{t-1} + (1-\beta_2)\, g_t^2 \\
        \hat v_t &\leftarrow \max(\hat v_{t-1}, v_t) \quad\text{if amsgrad, else } v_t \\
        \theta_t &\leftarrow \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\,
                   \frac{m_t}{\sqrt{\hat v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    As in torch (and unlike the paper), :math:`\epsilon` is added after dividing by
    :math:`\sqrt{1-\beta_2^t}`, and the first-moment bias correction lives in the step size.
    Rounding follows torch 2.13's CPU path op by op; results are torch's bit for bit on an Intel
    CPU with AVX-512, where torch's (MKL, not correctly rounded) ``sqrt`` is reproduced, and
    elsewhere differ only where it is one ulp off the IEEE square root used there
    (:doc:`/numerics`).

    Parameters
    ----------
    params : list of ndarray
        Updated in place.
    grads : list of ndarray
        One per param, same shape and dtype; only read.
    exp_avgs, exp_avg_sqs : list of ndarray
        First and second moments, one per param; updated in place.
    max_exp_avg_sqs : list of ndarray
        Running maximum of the second moment, one per param; only used (and required) when
        ``amsgrad`` is true; may be empty otherwise.
    state_steps : list of int
        Each param's step count *before* this step. Incremented in place (like torch's step
        tensors), so after the call it holds the new counts. Exact Python ints.
    amsgrad : bool
    beta1, beta2, lr, weight_decay, eps : float
    maximize : bool
    decoupled_weight_decay : bool, default False
        True gives AdamW.
    {fused}

    Examples
    --------
    >>> import numpy as np
    >>> from fastoptim import functional as F
    >>> p, g = np.zeros(2), np.array([1.0, -2.0])
    >>> m, v, steps = np.zeros(2), np.zeros(2), [0]
    >>> F.adam([p], [g], [m], [v], [], steps, amsgrad=False, beta1=0.9, beta2=0.999, lr=0.1,
    ...        weight_decay=0.0, eps=1e-8, maximize=False)
    >>> p.round(6), steps
    (array([-0.1,  0.1]), [1])
    """
    params = _as_list("params", params)
    grads = _as_list("grads", grads)
    exp_avgs = _as_list("exp_avgs", exp_avgs)
    exp_avg_sqs = _as_list("exp_avg_sqs", exp_avg_sqs)
    max_exp_avg_sqs = _as_list("max_exp_avg_sqs", max_exp_avg_sqs)
    state_steps = _as_list("state_steps", state_steps)
    _fused(_kernels.adam, grad_scale, found_inf)(
                  params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps,
                  amsgrad=_flag("amsgrad", amsgrad), beta1=_scalar("beta1", beta1),
                  beta2=_scalar("beta2", beta2), lr=_scalar("lr", lr),
                  weight_decay=_scalar("weight_decay", weight_decay), eps=_scalar("eps", eps),
                  maximize=_flag("maximize", maximize),
                  decoupled_weight_decay=_flag("decoupled_weight_decay", decoupled_weight_decay))


def adamw(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, *, amsgrad, beta1,
          beta2, lr, weight_decay, eps, maximize, grad_scale=None, found_inf=None):
    r"""One AdamW step: :func:`~fastoptim.functional.adam` with ``decoupled_weight_decay=True``.

    The decay multiplies the parameter by :math:`1 - \gamma\lambda` before the moment updates
    (torch's order), instead of adding :math:`\lambda\theta` to the gradient.
    """
    adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, amsgrad=amsgrad,
         beta1=beta1, beta2=beta2, lr=lr, weight_decay=weight_decay, eps=eps, maximize=maximize,
         decoupled_weight_decay=True, grad_scale=grad_scale, found_inf=found_inf)


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015), with optional AMSGrad, L2 or decoupled weight decay.

    {{intro}}

    .. math::

        \begin{aligned}
            {{grad}}
            &\text{if } \lambda \neq 0: \quad \begin{cases}
                \theta_{t-1} \leftarrow \theta_{t-1} (1 - \gamma \lambda)
                    & \text{if decoupled\_weight\_decay (AdamW)} \\
                g_t \leftarrow g_t + \lambda \theta_{t-1} & \text{otherwise (L2)}
                \end{cases} \\
            &m_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
            &v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
            &\hat v_t \leftarrow \max(\hat v_{t-1}, v_t) \ \text{if amsgrad, else } v_t \\
            &\theta_t \leftarrow \theta_{t-1} - \frac{\gamma}{1 - \beta_1^t} \,
                \frac{m_t}{\sqrt{\hat v_t} / \sqrt{1 - \beta_2^t} + \epsilon}
        \end{aligned}

    with learning rate :math:`\gamma`, ``betas`` :math:`(\beta_1, \beta_2)`, ``eps``
    :math:`\epsilon` and weight decay :math:`\lambda`; :math:`m_0 = v_0 = \hat v_0 = 0` and
    :math:`t` counts the steps in which *this* parameter had a gradient. As in torch, and unlike
    the paper, the bias corrections are folded into scalars (the paper divides
    :math:`m_t` and :math:`v_t` by them elementwise) and :math:`\epsilon` is added after the
    division by :math:`\sqrt{1 - \beta_2^t}`, not to :math:`\sqrt{\hat v_t}`. The scalars are
    computed in double precision with C ``pow`` like torch's, and every elementwise operation
    rounds like torch's CPU kernels, so the results are torch's bit for bit on an Intel CPU with
    AVX-512, where torch's MKL square root is reproduced, and elsewhere differ only where that
    square root is 1 ulp off the correctly rounded one used there (:doc:`/numerics`).

    Parameters
    ----------
    {{params}}
    lr : float, default 1e-3
        Learning rate :math:`\gamma`. A NumPy scalar or 1-element array is used as ``float(lr)``
        (torch computes the step size in float32 when ``lr`` is a tensor; fastoptim always in
        double).
    betas : tuple of two floats, default (0.9, 0.999)
        :math:`(\beta_1, \beta_2)`, each in [0, 1). Both Python floats or both NumPy
        scalars/1-element arrays (torch's "both floats or both Tensors" rule: Python ints are
        refused).
    eps : float, default 1e-8
        :math:`\epsilon`, added to the denominator for numerical stability.
    weight_decay : float, default 0
        :math:`\lambda`.
    amsgrad : bool, default False
        Use the AMSGrad variant (Reddi et al., 2018): keep the running maximum of :math:`v_t`.
    {{foreach_fused}}
    {{maximize}}
    capturable, differentiable : bool, default False
        Must be False: they are CUDA-graph and autograd features (``True`` raises ValueError).
    decoupled_weight_decay : bool, default False
        Apply weight decay to the parameters directly, as AdamW (Loshchilov & Hutter, 2019).

    Attributes
    ----------
    state : dict
        Per parameter, created at its first step with a gradient: ``"step"`` (a Python int: the
        number of steps this parameter had a gradient; torch keeps a float32 tensor, which stops
        counting at 2**24), ``"exp_avg"`` (:math:`m`), ``"exp_avg_sq"`` (:math:`v`) and, with
        amsgrad, ``"max_exp_avg_sq"`` (:math:`\hat v`), arrays of the parameter's shape and
        dtype.

    Raises
    ------
    ValueError
        With torch's messages, before ``params`` is looked at: ``Invalid learning rate``,
        ``Invalid epsilon value``, ``Invalid beta parameter at index 0/1``, ``Invalid
        weight_decay value``, ``betas must be either both floats or both Tensors``, ...

    Notes
    -----
    Stricter than torch (see :class:`fastoptim.Optimizer` too): hyperparameters of every param
    group are checked with the constructor's rules; a gradient whose shape or dtype does not
    match its parameter makes ``step()`` raise before any parameter, state entry or step count
    changes; a group with ``amsgrad=True`` whose existing state lacks ``max_exp_avg_sq``
    (amsgrad switched on mid-run) raises a ValueError that says so (torch raises KeyError).
    Non-finite gradients are not checked: NaN and inf propagate into the parameters and the
    moment estimates exactly as in torch.

    Examples
    --------
    >>> import numpy as np
    >>> import fastoptim as fo
    >>> w = fo.Parameter(np.array([1.0, -2.0]))
    >>> opt = fo.Adam([w], lr=0.1)
    >>> w.grad = 2 * w                 # gradient of sum(w**2)
    >>> opt.step()                     # the first Adam step moves every entry by about lr
    >>> np.round(w, 6)
    array([ 0.9, -1.9])
    >>> opt.state[w]["step"]
    1
    """

    _info = OPTIMIZERS["Adam"]

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False, fused=None, decoupled_weight_decay=False):
        betas = _check_adam_hyperparameters(lr, betas, eps, weight_decay, foreach, capturable)
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize, foreach=foreach,
                                      capturable=capturable, differentiable=differentiable,
                                      fused=fused, decoupled_weight_decay=decoupled_weight_decay))

    def _check_hyperparameters(self, group):
        _check_adam_hyperparameters(group["lr"], group["betas"], group["eps"],
                                    group["weight_decay"], group["foreach"], group["capturable"])


class AdamW(Adam):
    r"""AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay.

    The same algorithm, arguments, defaults and results as ``torch.optim.AdamW`` of torch 2.13:
    exactly :class:`Adam` with ``decoupled_weight_decay=True`` (which every group carries, and
    which loading a state dict forces back to True) and a default ``weight_decay`` of ``1e-2``.

    .. math::

        \begin{aligned}
            {{grad}}
            &\theta_{t-1} \leftarrow \theta_{t-1} (1 - \gamma \lambda) \\
            &m_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
            &v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
            &\hat v_t \leftarrow \max(\hat v_{t-1}, v_t) \ \text{if amsgrad, else } v_t \\
            &\theta_t \leftarrow \theta_{t-1} - \frac{\gamma}{1 - \beta_1^t} \,
                \frac{m_t}{\sqrt{\hat v_t} / \sqrt{1 - \beta_2^t} + \epsilon}
        \end{aligned}

    As in torch, the decay factor is :math:`1 - \gamma\lambda` (the paper's schedule multiplier
    is folded into the learning rate), it is applied before the moment updates, and
    :math:`\epsilon` is added after the bias-correction division (see :class:`Adam`).

    Parameters
    ----------
    params, lr, betas, eps, amsgrad, foreach, maximize, capturable, differentiable, fused
        As for :class:`Adam`.
    weight_decay : float, default 1e-2
        Decoupled weight decay :math:`\lambda`.

    Notes
    -----
    As in torch, ``decoupled_weight_decay`` is not an argument of AdamW. Non-finite gradients
    propagate as in torch; see :class:`Adam` for where fastoptim is stricter than torch.

    Examples
    --------
    >>> import numpy as np
    >>> import fastoptim as fo
    >>> w = fo.Parameter(np.array([1.0, -2.0], dtype=np.float32))
    >>> opt = fo.AdamW([w], lr=0.1, weight_decay=0.1)
    >>> w.grad = np.zeros(2, dtype=np.float32)
    >>> opt.step()                     # a zero gradient: only the decay acts
    >>> w
    Parameter([ 0.99, -1.98], dtype=float32)
    """

    _info = OPTIMIZERS["AdamW"]

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False, foreach=None, capturable=False,
                 differentiable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach,
                         maximize=maximize, capturable=capturable, differentiable=differentiable,
                         fused=fused, decoupled_weight_decay=True)


# ---------------------------------------------------------------------------------------------
# The benchmark's peers (fastoptim.tools.peers) that model Adam and AdamW: the registry entry lists them.

def _numpy_rule(peer, group):
    """torch's single-tensor two-moment step, op by op (``_single_tensor_adam``)."""
    t = peer.step_count
    beta1, beta2 = group["betas"]
    lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
    decoupled = group["decoupled_weight_decay"]
    # Per-step scalars in double precision, as torch computes them.
    step_size = lr / (1.0 - beta1 ** t)
    bc2_sqrt = (1.0 - beta2 ** t) ** 0.5
    for p, g, (m, v, *vm), s, a, z in peer._pieces_of():
        peer._two_moments(p, g, m, v, s, a, z, beta1=beta1, beta2=beta2, wd=wd,
                          decoupled=decoupled, lr=lr)
        if vm:                                  # amsgrad
            np.maximum(vm[0], v, out=vm[0])
            np.sqrt(vm[0], out=s)
        else:
            np.sqrt(v, out=s)
        s /= bc2_sqrt                           # denom = sqrt(v) / bc2_sqrt + eps
        s += eps
        np.divide(m, s, out=s)                  # param.addcdiv_(m, denom, -step_size)
        s *= -step_size
        p += s


def _optax_rule(optax, group):
    """The optax transformation of this two-moment step (NotImplementedError where optax has none)."""
    (b1, b2), lr, eps, wd = group["betas"], group["lr"], group["eps"], group["weight_decay"]
    if group["decoupled_weight_decay"]:
        if group["amsgrad"]:
            raise NotImplementedError("the optax peer has no decoupled weight decay with amsgrad")
        return optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=wd)
    if wd != 0:
        raise NotImplementedError("the optax peer has no L2 (coupled) weight decay")
    if group["amsgrad"]:
        return optax.amsgrad(lr, b1=b1, b2=b2, eps=eps)
    return optax.adam(lr, b1=b1, b2=b2, eps=eps)
