"""Adam, AMSGrad and AdamW, as ``torch.optim.Adam`` and ``torch.optim.AdamW``."""

import numpy as np

from fastoptim.optim._validation import (
    _check_bool_options,
    _check_unsupported_flags,
    _is_array_scalar,
)
from fastoptim.optim.base import Optimizer
from fastoptim.optim.registry import OPTIMIZERS

__all__ = ["Adam", "AdamW"]


def _check_adam_hyperparameters(lr, betas, eps, weight_decay, foreach, capturable):
    """torch 2.13's checks, in torch's order and with its messages.

    Returns ``betas`` with 1-element arrays squeezed to 0-d, as torch does with tensors.
    """
    if _is_array_scalar(lr):
        if foreach and not capturable:
            raise ValueError(
                "lr as a Tensor is not supported for capturable=False and foreach=True"
            )
        if np.size(lr) != 1:
            raise ValueError("Tensor lr must be 1-element")
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")
    if not 0.0 <= betas[0] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
    if not 0.0 <= betas[1] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")
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
    rounds like torch's CPU kernels, so the results differ from torch's only where torch's MKL
    square root is 1 ulp off the correctly rounded one.

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

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0,
        amsgrad=False,
        *,
        foreach=None,
        maximize=False,
        capturable=False,
        differentiable=False,
        fused=None,
        decoupled_weight_decay=False,
    ):
        betas = _check_adam_hyperparameters(lr, betas, eps, weight_decay, foreach, capturable)
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "differentiable": differentiable,
            "fused": fused,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(params, defaults)

    def _check_group(self, group):
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        _check_adam_hyperparameters(
            group["lr"], betas, group["eps"], group["weight_decay"], group["foreach"],
            group["capturable"],
        )
        _check_unsupported_flags(group)
        _check_bool_options(group, self._info.flags)


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

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=1e-2,
        amsgrad=False,
        *,
        maximize=False,
        foreach=None,
        capturable=False,
        differentiable=False,
        fused=None,
    ):
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            foreach=foreach,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=True,
        )
