"""Adafactor (Shazeer & Stern, 2018) as ``torch.optim.Adafactor`` of torch 2.13."""
import numpy as np

from fastoptim import _train_kernels
from fastoptim._train_numerics import norm2
from fastoptim.optim._validation import _with_grad
from fastoptim.optimizer import Optimizer, _load_array, _load_step, _to_float
from fastoptim.parameter import _describe

__all__ = ["Adafactor", "adafactor"]


def _check_adafactor_hyperparameters(lr, beta2_decay, eps, d, weight_decay):
    """torch 2.13's checks, in its order and with its messages."""
    if isinstance(lr, np.ndarray) and lr.size != 1:
        raise ValueError("Tensor lr must be 1-element")
    if not 0.0 <= lr:
        raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
    if not 0.0 >= beta2_decay:
        raise ValueError(f"beta2_decay should be <= 0 but is: {beta2_decay}")
    if eps[0] is not None and not 0.0 <= eps[0]:
        raise ValueError(f"epsilon1 should be >= 0 but is: {eps[0]}")
    if not 0.0 <= eps[1]:
        raise ValueError(f"epsilon2 should be >= 0 but is: {eps[1]}")
    if not 1.0 <= d:
        raise ValueError(f"Clipping threshold d should be >= 1 but is: {d}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"weight_decay should be >= 0 but is: {weight_decay}")


def adafactor(params, grads, row_vars, col_vars, variances, state_steps, foreach=None,
              grad_scale=None, found_inf=None, has_complex=False, *, d, lr, beta2_decay,
              weight_decay, eps1, eps2, maximize):
    r"""Functional Adafactor (torch's ``torch.optim._adafactor.adafactor``), in place.

    For each parameter :math:`\theta` of shape (..., m, n) with gradient :math:`g` at step
    :math:`t` (``state_steps[i]`` is incremented first):

    .. math::
        \begin{aligned}
        &\beta_{2,t} = 1 - t^{\tau},\ \rho_t = \min(\gamma, t^{-1/2}),\
          \alpha_t = \max(\epsilon_2, \mathrm{RMS}(\theta))\,\rho_t,\
          \theta \leftarrow \theta (1 - \gamma\lambda)\\
        &R \leftarrow \mathrm{lerp}(R, \mathrm{mean}_{-1}(g^2), t^{\tau}),\
          C \leftarrow \mathrm{lerp}(C, \mathrm{mean}_{-2}(g^2), t^{\tau}),\
          \hat V = \frac{R C}{\max(\mathrm{mean}_{-2}(R), \epsilon_1)}\\
        &U = g / \sqrt{\max(\hat V, \epsilon_1^2)},\
          \theta \leftarrow \theta - \frac{\alpha_t}{\max(1, \mathrm{RMS}(U)/d)}\, U
        \end{aligned}

    Vectors (and 0-d arrays) keep a full ``variance`` :math:`V \leftarrow \mathrm{lerp}(V, g^2, t^\tau)`
    instead of the factors. ``eps1=None`` means the machine epsilon of the first parameter's dtype.

    Parameters
    ----------
    params, grads : list of ndarray
    row_vars, col_vars, variances : list of ndarray or None
        Per parameter: ``row_var`` (shape ``(..., m, 1)``) and ``col_var`` (``(..., 1, n)``) for
        arrays with two or more dimensions, else ``variance`` (the parameter's shape).
    state_steps : list of int
        Replaced in place by the incremented counts.
    foreach, grad_scale, found_inf, has_complex
        torch's arguments; ``grad_scale``/``found_inf`` must be None.
    d, lr, beta2_decay, weight_decay, eps1, eps2, maximize
        As :class:`Adafactor`.
    """
    if grad_scale is not None or found_inf is not None:
        raise AssertionError("Grad scaling should occur outside of optimizer.step()")
    n = len(params)
    for name, lst in (("grads", grads), ("row_vars", row_vars), ("col_vars", col_vars),
                      ("variances", variances), ("state_steps", state_steps)):
        if len(lst) != n:
            raise ValueError(f"adafactor: {name} has {len(lst)} entries but params has {n}")
    for i in range(n):
        p, g = params[i], grads[i]
        if not isinstance(p, np.ndarray) or p.dtype not in (np.float32, np.float64):
            raise TypeError(f"params[{i}] must be a float32 or float64 array, got {_describe(p)}")
        if not isinstance(g, np.ndarray) or g.shape != p.shape or g.dtype != p.dtype:
            raise ValueError(f"grads[{i}] must be an array of params[{i}]'s shape {p.shape} and "
                             f"dtype {p.dtype}")
        if p.ndim > 1:
            if row_vars[i] is None or col_vars[i] is None:
                raise AssertionError("row_var and col_var should be defined when grad is multidimensional")
        elif variances[i] is None:
            raise AssertionError("variance should be defined when grad is a vector")
    lr = _to_float(lr)
    new_steps = list(state_steps)
    for i, param in enumerate(params):
        grad = -grads[i] if maximize else grads[i]
        dt = param.dtype.type
        if eps1 is None:
            eps1 = float(np.finfo(param.dtype).eps)
        new_steps[i] = step = int(state_steps[i]) + 1
        step_float = float(step)
        one_minus_beta2_t = step_float ** beta2_decay
        rho_t = min(lr, 1 / (step_float ** 0.5))
        alpha = max(eps2, norm2(param) / (param.size ** 0.5)) * rho_t
        if weight_decay != 0:
            param *= dt(1 - lr * weight_decay)
        if grad.ndim > 1:
            row_var, col_var = row_vars[i], col_vars[i]
            m, k = grad.shape[-2], grad.shape[-1]
            g3 = np.ascontiguousarray(grad).reshape(-1, m, k)
            row_mean = np.empty(row_var.shape, param.dtype)
            col_mean = np.empty(col_var.shape, param.dtype)
            # (g*g).mean(-1) and (g*g).mean(-2) as torch computes them (norm, square, divide)
            _train_kernels.adafactor_means(g3, row_mean, col_mean)
            _train_kernels.lerp([row_var, col_var], [row_mean, col_mean], one_minus_beta2_t,
                                one_minus_beta2_t)
            row_mean_mean = np.maximum(row_var.mean(axis=-2, keepdims=True), dt(eps1))
            update = np.empty(g3.shape, param.dtype)
            _train_kernels.adafactor_update(g3, row_var, col_var, row_mean_mean, eps1 * eps1, update)
        else:
            variance = variances[i]
            grad_squared = np.array(grad * grad, dtype=param.dtype, order="C")
            _train_kernels.lerp([variance], [grad_squared], one_minus_beta2_t, one_minus_beta2_t)
            update = dt(1) / np.sqrt(np.maximum(variance, dt(eps1 * eps1)))
            update *= grad
        denom = max(1.0, norm2(update) / ((update.size ** 0.5) * d))
        _train_kernels.axpy([param.reshape(-1)], [update.reshape(-1)], -alpha / denom)
    state_steps[:] = new_steps


class Adafactor(Optimizer):
    r"""Adafactor: Adam-like steps with a factored second moment (torch 2.13's ``Adafactor``).

    A matrix (or the last two dimensions of a higher-dimensional array) keeps only a row and a
    column average of the squared gradient, :math:`O(m + n)` memory instead of :math:`O(mn)`;
    vectors keep a full second moment. The step size is relative to the parameter's RMS. See
    :func:`fastoptim.functional.adafactor` for the update rule.

    Parameters
    ----------
    params : iterable
        Parameters or param groups.
    lr : float, default 1e-2
        :math:`\gamma`, the cap on the relative step size :math:`\rho_t = \min(\gamma, 1/\sqrt t)`.
    beta2_decay : float, default -0.8
        :math:`\tau`: the second moment's weight of the new gradient is :math:`t^{\tau}`.
    eps : tuple (float or None, float), default (None, 1e-3)
        :math:`\epsilon_1` (floor of the second moment; None: the dtype's machine epsilon) and
        :math:`\epsilon_2` (floor of the parameter RMS).
    d : float, default 1.0
        Clipping threshold of the update's RMS.
    weight_decay : float, default 0.0
        Decoupled weight decay :math:`\lambda`.
    foreach : bool, optional
        Accepted for torch compatibility.
    maximize : bool, default False

    Notes
    -----
    State per parameter: ``step`` (int), and ``row_var``/``col_var`` (arrays with 2+ dims) or
    ``variance``. Results are within 1e-5 (float32) / 1e-12 (float64) relative error of torch's
    after 100 steps; reductions use fixed orders, so every thread count gives the same bits.

    Examples
    --------
    >>> import numpy as np, fastoptim as fo
    >>> w = fo.Parameter(np.ones((2, 3)))
    >>> opt = fo.Adafactor([w], lr=0.1)
    >>> w.grad = np.full((2, 3), 0.5)
    >>> opt.step()
    >>> sorted(opt.state[w])
    ['col_var', 'row_var', 'step']
    """

    def __init__(self, params, lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0,
                 weight_decay=0.0, *, foreach=None, maximize=False):
        _check_adafactor_hyperparameters(lr, beta2_decay, eps, d, weight_decay)
        defaults = {"lr": lr, "beta2_decay": beta2_decay, "eps": eps, "d": d,
                    "weight_decay": weight_decay, "foreach": foreach, "maximize": maximize}
        super().__init__(params, defaults)

    def _check_group(self, group):
        _check_adafactor_hyperparameters(group["lr"], group["beta2_decay"], group["eps"],
                                         group["d"], group["weight_decay"])

    def _fill_group_defaults(self, group):
        group.setdefault("foreach", None)

    def _load_param_state(self, param, saved, where, group):
        if not isinstance(saved, dict):
            raise TypeError(f"{where} must be a dict, got {_describe(saved)}")
        factored = param.ndim > 1
        expected = {"step", "row_var", "col_var"} if factored else {"step", "variance"}
        if set(saved) != expected:
            raise ValueError(f"{where} has keys {sorted(saved)}; Adafactor state of a parameter "
                             f"of shape {param.shape} has {sorted(expected)}")
        out = {"step": _load_step(saved["step"], f"{where}['step']")}
        if factored:
            for key, axis in (("row_var", -1), ("col_var", -2)):
                shape = list(param.shape)
                shape[axis] = 1
                proxy = np.empty(shape, param.dtype)
                out[key] = _load_array(saved[key], proxy, f"{where}[{key!r}]")
        else:
            out["variance"] = _load_array(saved["variance"], param, f"{where}['variance']")
        return out

    def step(self, closure=None):
        """Perform one optimization step.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model and returns the loss; called first.
        """
        loss = None
        if closure is not None:
            loss = closure()
        for group in self.param_groups:
            params, grads, row_vars, col_vars, variances, steps = [], [], [], [], [], []
            for p in _with_grad(group["params"]):
                params.append(p)
                grads.append(p.grad)
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    if p.grad.ndim > 1:
                        row_shape = list(p.grad.shape)
                        row_shape[-1] = 1
                        state["row_var"] = np.zeros(row_shape, p.dtype)
                        col_shape = list(p.grad.shape)
                        col_shape[-2] = 1
                        state["col_var"] = np.zeros(col_shape, p.dtype)
                    else:
                        state["variance"] = np.zeros(p.shape, p.dtype)
                row_vars.append(state.get("row_var"))
                col_vars.append(state.get("col_var"))
                variances.append(state.get("variance"))
                steps.append(state["step"])
            if not params:
                continue
            eps1, eps2 = group["eps"]
            adafactor(params, grads, row_vars, col_vars, variances, steps, d=group["d"],
                      lr=group["lr"], beta2_decay=group["beta2_decay"],
                      weight_decay=group["weight_decay"], eps1=eps1, eps2=eps2,
                      foreach=group["foreach"], maximize=group["maximize"])
            for p, s in zip(params, steps):
                self.state[p]["step"] = s
        return loss
