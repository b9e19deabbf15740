"""Stochastic gradient descent (optionally with momentum), as ``torch.optim.SGD``."""

import numpy as np

from fastoptim import functional as _functional
from fastoptim.optimizer import Optimizer, _diagnose_failed_call, _load_array, _to_float
from fastoptim.parameter import _describe

__all__ = ["SGD"]


def _is_array_scalar(value):
    # NumPy's counterpart of a torch Tensor hyperparameter (np.float64 is a Python float and
    # therefore counts as a float, as it would in torch).
    return isinstance(value, (np.ndarray, np.generic)) and not isinstance(value, float)


def _check_sgd_hyperparameters(lr, momentum, dampening, weight_decay, nesterov):
    """torch 2.13's checks, in torch's order and with its messages."""
    if _is_array_scalar(lr) and np.size(lr) != 1:
        raise ValueError("Tensor lr must be 1-element")
    if lr < 0.0:
        raise ValueError(f"Invalid learning rate: {lr}")
    if momentum < 0.0:
        raise ValueError(f"Invalid momentum value: {momentum}")
    if weight_decay < 0.0:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")


def _check_unsupported_flags(group):
    """torch's ``fused`` combination errors, then the flags fastoptim does not support."""
    if group.get("fused"):
        if group.get("differentiable"):
            raise RuntimeError("`fused` does not support `differentiable`")
        if group.get("foreach"):
            raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
    if group.get("differentiable"):
        raise ValueError(
            "differentiable=True is not supported by fastoptim: it makes torch's update "
            "differentiable through autograd, and fastoptim updates NumPy arrays without "
            "autograd. Use differentiable=False (the default)."
        )
    if group.get("capturable"):
        raise ValueError(
            "capturable=True is not supported by fastoptim: it makes torch's update capturable "
            "in a CUDA graph, and fastoptim runs on the CPU. Use capturable=False (the default); "
            "the numbers are the same."
        )


class SGD(Optimizer):
    r"""Stochastic gradient descent with optional momentum, Nesterov momentum and weight decay.

    The same algorithm, arguments, defaults and results as ``torch.optim.SGD`` of torch 2.13,
    for :class:`fastoptim.Parameter` arrays. Each ``step()`` makes one call into the compiled
    kernels per parameter group, over every parameter of the group that has a gradient.

    .. math::

        \begin{aligned}
            &g_t \leftarrow \nabla_\theta f_t(\theta_{t-1}),
                \qquad g_t \leftarrow -g_t \ \text{if maximize} \\
            &g_t \leftarrow g_t + \lambda \theta_{t-1} \ \text{if } \lambda \neq 0 \\
            &\text{if } \mu \neq 0: \quad
                b_t \leftarrow \begin{cases}
                    g_t & \text{at the parameter's first step} \\
                    \mu b_{t-1} + (1 - \tau) g_t & \text{afterwards}
                \end{cases},
                \qquad g_t \leftarrow \begin{cases}
                    g_t + \mu b_t & \text{if nesterov} \\
                    b_t & \text{otherwise}
                \end{cases} \\
            &\theta_t \leftarrow \theta_{t-1} - \gamma g_t
        \end{aligned}

    with learning rate :math:`\gamma` (``lr``), momentum :math:`\mu`, dampening :math:`\tau`
    and weight decay :math:`\lambda`. As in torch, and unlike Sutskever et al. (2013), the
    velocity is not scaled by the learning rate (:math:`\theta` moves by
    :math:`\gamma b_t`), and the first momentum step stores the (decayed) gradient itself,
    without dampening. Every operation rounds like torch's CPU kernels (``g + λθ`` and the
    buffer update are fused multiply-adds), so results are bitwise equal to torch's on x86-64
    CPUs with FMA.

    Parameters
    ----------
    params : iterable
        Parameters, ``(name, Parameter)`` pairs, or dicts defining parameter groups.
    lr : float, default 1e-3
        Learning rate :math:`\gamma`. A NumPy scalar or 1-element array is used as ``float(lr)``
        (what torch does with a tensor ``lr`` in SGD).
    momentum : float, default 0
        Momentum factor :math:`\mu`.
    dampening : float, default 0
        Dampening :math:`\tau` for momentum.
    weight_decay : float, default 0
        L2 penalty :math:`\lambda`.
    nesterov : bool, default False
        Use Nesterov momentum (requires ``momentum > 0`` and ``dampening == 0``).
    maximize : bool, default False
        Maximize the objective instead of minimizing it.
    foreach, fused : bool or None, default None
        Accepted for drop-in compatibility with torch; every fastoptim step runs as one fused
        kernel per group, whatever their value. As in torch, both ``True`` raises RuntimeError.
    differentiable : bool, default False
        Must be False: fastoptim has no autograd (``True`` raises ValueError).

    Attributes
    ----------
    state : dict
        Per parameter, ``{"momentum_buffer": ndarray}`` once the parameter has had a gradient at
        a step with ``momentum != 0``; nothing otherwise (as in torch).

    Raises
    ------
    ValueError
        With torch's messages, before ``params`` is looked at: ``Invalid learning rate``,
        ``Invalid momentum value``, ``Invalid weight_decay value``, ``Nesterov momentum requires
        a momentum and zero dampening``, ``Tensor lr must be 1-element``.

    Notes
    -----
    Stricter than torch (see :class:`fastoptim.Optimizer` too): hyperparameters of every param
    group are checked with the constructor's rules; a gradient whose shape or dtype does not
    match its parameter makes ``step()`` raise before any parameter or state changes.
    Non-finite gradients are not checked: NaN and inf propagate into the parameters and the
    momentum buffers exactly as in torch.

    Examples
    --------
    >>> import numpy as np
    >>> import fastoptim as fo
    >>> w = fo.Parameter(np.array([1.0, -2.0]))
    >>> opt = fo.SGD([w], lr=0.1, momentum=0.9)
    >>> w.grad = 2 * w                 # gradient of sum(w**2)
    >>> opt.step()
    >>> w
    Parameter([ 0.8, -1.6])
    """

    def __init__(
        self,
        params,
        lr=1e-3,
        momentum=0,
        dampening=0,
        weight_decay=0,
        nesterov=False,
        *,
        maximize=False,
        foreach=None,
        differentiable=False,
        fused=None,
    ):
        _check_sgd_hyperparameters(lr, momentum, dampening, weight_decay, nesterov)
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
            "foreach": foreach,
            "differentiable": differentiable,
            "fused": fused,
        }
        super().__init__(params, defaults)

    def _check_group(self, group):
        _check_sgd_hyperparameters(
            group["lr"], group["momentum"], group["dampening"], group["weight_decay"],
            group["nesterov"],
        )
        _check_unsupported_flags(group)

    def _fill_group_defaults(self, group):
        group.setdefault("nesterov", False)
        group.setdefault("maximize", False)
        group.setdefault("foreach", None)
        group.setdefault("differentiable", False)
        group.setdefault("fused", False)

    def _load_param_state(self, param, saved, where, group):
        if not isinstance(saved, dict):
            raise TypeError(f"{where} must be a dict, got {_describe(saved)}")
        unknown = [k for k in saved if k != "momentum_buffer"]
        if unknown:
            raise ValueError(
                f"{where} has unexpected key(s) {unknown}; SGD state has only 'momentum_buffer'"
            )
        buffer = saved.get("momentum_buffer")
        if buffer is None:
            # Older torch versions stored ``momentum_buffer: None`` when momentum was 0.
            return {}
        return {"momentum_buffer": _load_array(buffer, param, f"{where}['momentum_buffer']")}

    def step(self, closure=None):
        """Perform one optimization step.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model, sets the gradients and returns the loss; it is called first.

        Returns
        -------
        loss : object or None
            The closure's return value, or None without a closure.
        """
        loss = None
        if closure is not None:
            loss = closure()

        state = self.state
        work = []
        for group_index, group, params, grads in self._grouped_grads():
            momentum = _to_float(group["momentum"])
            hyperparameters = {
                "weight_decay": _to_float(group["weight_decay"]),
                "momentum": momentum,
                "lr": _to_float(group["lr"]),
                "dampening": _to_float(group["dampening"]),
                "nesterov": bool(group["nesterov"]),
                "maximize": bool(group["maximize"]),
            }
            if momentum != 0:
                param_states = list(map(state.get, params))
                buffers = [s.get("momentum_buffer") if s else None for s in param_states]
                fresh = [i for i, b in enumerate(buffers) if b is None]
            else:
                buffers = [None] * len(params)
                fresh = ()
            work.append((group_index, group, params, grads, buffers, fresh, hyperparameters))

        for group_index, group, params, grads, buffers, fresh, hyperparameters in work:
            try:
                _functional._sgd_step(params, grads, buffers, check_overlap=False, **hyperparameters)
            except Exception as exc:
                _diagnose_failed_call(exc, group_index, group, params, grads)
                raise
            # The functional layer allocated the missing buffers and put them in the list.
            for i in fresh:
                state[params[i]]["momentum_buffer"] = buffers[i]
        return loss
