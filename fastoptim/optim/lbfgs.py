"""L-BFGS as ``torch.optim.LBFGS`` of torch 2.13 (with its strong-Wolfe line search).

A line-by-line port: the flat vectors are NumPy arrays of the parameters' dtype, and every scalar
that torch keeps as a 0-d tensor (dot products, ``ro``, ``H_diag``, often ``t``) is a NumPy scalar
of that dtype, so it is rounded where torch rounds it (NumPy 2 promotes a Python float with a
float32 scalar to float32, as torch does with a 0-d tensor).
"""
import numbers

import numpy as np

from fastoptim import _train_kernels

from fastoptim._train_numerics import fma_add
from fastoptim.optimizer import Optimizer, _load_step, _to_float
from fastoptim.parameter import _describe

__all__ = ["LBFGS"]


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square >= 0:
        d2 = np.sqrt(d2_square)
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, xmin_bound), xmax_bound)
    return (xmin_bound + xmax_bound) / 2.0


def _strong_wolfe(obj_func, x, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    d_norm = np.max(np.abs(d))
    g = g.copy()
    f_new, g_new = obj_func(x, t, d)
    ls_func_evals = 1
    gtd_new = _dot(g_new, d)
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    ls_iter = 0
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket = [t_prev, t]
            bracket_f = [f_prev, f_new]
            bracket_g = [g_prev, g_new.copy()]
            bracket_gtd = [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket = [t]
            bracket_f = [f_new]
            bracket_g = [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket = [t_prev, t]
            bracket_f = [f_prev, f_new]
            bracket_g = [g_prev, g_new.copy()]
            bracket_gtd = [gtd_prev, gtd_new]
            break
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step))
        t_prev = tmp
        f_prev = f_new
        g_prev = g_new.copy()
        gtd_prev = gtd_new
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = _dot(g_new, d)
        ls_iter += 1
    if ls_iter == max_ls:
        bracket = [0, t]
        bracket_f = [f, f_new]
        bracket_g = [g, g_new]

    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0],
                               bracket[1], bracket_f[1], bracket_gtd[1])
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                if abs(t - max(bracket)) < abs(t - min(bracket)):
                    t = max(bracket) - eps
                else:
                    t = min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = _dot(g_new, d)
        ls_iter += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            bracket[high_pos] = t
            bracket_f[high_pos] = f_new
            bracket_g[high_pos] = g_new.copy()
            bracket_gtd[high_pos] = gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                bracket[high_pos] = bracket[low_pos]
                bracket_f[high_pos] = bracket_f[low_pos]
                bracket_g[high_pos] = bracket_g[low_pos]
                bracket_gtd[high_pos] = bracket_gtd[low_pos]
            bracket[low_pos] = t
            bracket_f[low_pos] = f_new
            bracket_g[low_pos] = g_new.copy()
            bracket_gtd[low_pos] = gtd_new
    t = bracket[low_pos]
    f_new = bracket_f[low_pos]
    g_new = bracket_g[low_pos]
    return f_new, g_new, t, ls_func_evals


def _dot(a, b):
    """torch's ``a.dot(b)`` as a scalar of the arrays' dtype: its BLAS's summation order (MKL's,
    reproduced in ``_train_kernels.blas_dot``), one thread, independent of ``fo.set_num_threads``."""
    return a.dtype.type(_train_kernels.blas_dot(a, b))


def _to_state(value):
    """A NumPy scalar (torch's 0-d tensor) as a 0-d array for the state dict."""
    return np.asarray(value) if isinstance(value, np.generic) else value


def _from_state(value):
    return value[()] if isinstance(value, np.ndarray) and value.ndim == 0 else value


class LBFGS(Optimizer):
    r"""L-BFGS with optional strong-Wolfe line search (torch 2.13's ``LBFGS``).

    Each :meth:`step` runs up to ``max_iter`` quasi-Newton iterations on the closure. The
    direction is the two-loop recursion over the last ``history_size`` pairs
    :math:`s_k = x_{k+1} - x_k`, :math:`y_k = g_{k+1} - g_k` (kept when :math:`y^\top s > 10^{-10}`):

    .. math::
        q \leftarrow -g,\quad a_i = \rho_i s_i^\top q,\ q \leftarrow q - a_i y_i\ (i = k..1),\quad
        r \leftarrow \frac{s_k^\top y_k}{y_k^\top y_k}\, q,\quad
        r \leftarrow r + (a_i - \rho_i y_i^\top r)\, s_i\ (i = 1..k)

    with :math:`\rho_i = 1 / y_i^\top s_i`, then :math:`x \leftarrow x + t\, r` with
    :math:`t` = ``lr`` (the first iteration: :math:`\min(1, 1/\|g\|_1)\,\text{lr}`) or the step of
    the strong-Wolfe line search.

    Parameters
    ----------
    params : iterable
        Parameters (one group only).
    lr : float, default 1
    max_iter : int, default 20
        Iterations per :meth:`step`.
    max_eval : int, optional
        Function evaluations per step (default ``max_iter * 5 // 4``).
    tolerance_grad : float, default 1e-7
    tolerance_change : float, default 1e-9
    history_size : int, default 100
    line_search_fn : {None, "strong_wolfe"}

    Notes
    -----
    The state lives in ``state[first param]``: ``func_evals``, ``n_iter``, ``d``, ``t``,
    ``old_dirs``, ``old_stps``, ``ro``, ``H_diag``, ``prev_flat_grad``, ``prev_loss`` and ``al``,
    as in torch; torch's 0-d tensors are 0-d arrays. The dot products and the gradient's absolute
    sum are computed in torch's CPU summation orders (its MKL dot, ATen's cascade sum), one
    thread, so results are independent of ``fo.set_num_threads`` and within 1e-5 (float32) /
    1e-12 (float64) relative error of torch's after 20 steps (measured: float64 identical).

    Examples
    --------
    >>> import numpy as np, fastoptim as fo
    >>> x = fo.Parameter(np.array([1.5, -0.5]))
    >>> opt = fo.LBFGS([x], line_search_fn="strong_wolfe")
    >>> def closure():
    ...     x.grad = 2 * (x - [3.0, 1.0])
    ...     return float(((x - [3.0, 1.0]) ** 2).sum())
    >>> _ = opt.step(closure)
    >>> np.round(x, 6)
    array([3., 1.])
    """

    _couples_parameters = True  # one update of all parameters: ZeRO cannot shard it

    def __init__(self, params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7,
                 tolerance_change=1e-9, history_size=100, line_search_fn=None):
        if isinstance(lr, np.ndarray) and lr.size != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = {"lr": lr, "max_iter": max_iter, "max_eval": max_eval,
                    "tolerance_grad": tolerance_grad, "tolerance_change": tolerance_change,
                    "history_size": history_size, "line_search_fn": line_search_fn}
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")

    @property
    def _params(self):
        return self.param_groups[0]["params"]

    def _check_group(self, group):
        if not 0.0 <= group["lr"]:
            raise ValueError(f"Invalid learning rate: {group['lr']}")

    def _load_param_state(self, param, saved, where, group):
        if not isinstance(saved, dict):
            raise TypeError(f"{where} must be a dict, got {_describe(saved)}")
        known = {"func_evals", "n_iter", "d", "t", "old_dirs", "old_stps", "ro", "H_diag",
                 "prev_flat_grad", "prev_loss", "al"}
        unknown = sorted(set(saved) - known)
        if unknown:
            raise ValueError(f"{where} has unexpected key(s) {unknown}; LBFGS state has "
                             f"{sorted(known)}")
        numel = sum(p.size for p in self._params)
        out = {}

        def vector(value, name):
            if not isinstance(value, np.ndarray) or value.dtype.kind != "f" or value.shape != (numel,):
                raise ValueError(f"{where}[{name!r}] must be a float array of shape ({numel},) "
                                 f"(the parameters' total size), got {_describe(value)}")
            return np.array(value, dtype=param.dtype, copy=True)

        def scalar(value, name):
            if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind == "f":
                return np.array(value, dtype=param.dtype, copy=True)
            if isinstance(value, (numbers.Real,)) and not isinstance(value, bool):
                return value
            raise TypeError(f"{where}[{name!r}] must be a number or a 0-d float array, got "
                            f"{_describe(value)}")

        for key, value in saved.items():
            if key in ("func_evals", "n_iter"):
                out[key] = _load_step(value, f"{where}[{key!r}]")
            elif key in ("d", "prev_flat_grad"):
                out[key] = None if value is None else vector(value, key)
            elif key in ("old_dirs", "old_stps"):
                if not isinstance(value, list):
                    raise TypeError(f"{where}[{key!r}] must be a list, got {_describe(value)}")
                out[key] = [vector(v, key) for v in value]
            elif key in ("ro", "al"):
                if not isinstance(value, list):
                    raise TypeError(f"{where}[{key!r}] must be a list, got {_describe(value)}")
                out[key] = [None if v is None else scalar(v, key) for v in value]
            else:
                out[key] = None if value is None else scalar(value, key)
        return out

    def _gather_flat_grad(self):
        views = []
        for p in self._params:
            if p.grad is None:
                views.append(np.zeros(p.size, p.dtype))
            else:
                views.append(np.asarray(p.grad).reshape(-1))
        return np.concatenate(views, 0)

    def _add_grad(self, step_size, update):
        offset = 0
        for p in self._params:
            numel = p.size
            p[...] = fma_add(p.view(np.ndarray), step_size, update[offset:offset + numel].reshape(p.shape))
            offset += numel

    def _clone_param(self):
        return [np.array(p, copy=True, subok=False) for p in self._params]

    def _set_param(self, params_data):
        for p, pdata in zip(self._params, params_data):
            np.copyto(p, pdata)

    def _directional_evaluate(self, closure, x, t, d):
        self._add_grad(t, d)
        loss = float(closure())
        flat_grad = self._gather_flat_grad()
        self._set_param(x)
        return loss, flat_grad

    def step(self, closure):
        """Perform one optimization step (up to ``max_iter`` iterations).

        Parameters
        ----------
        closure : callable
            Re-evaluates the model: sets every parameter's ``.grad`` and returns the loss.

        Returns
        -------
        The closure's first return value.
        """
        if len(self.param_groups) != 1:
            raise AssertionError(f"Expected exactly one param_group, but got {len(self.param_groups)}")
        group = self.param_groups[0]
        lr = _to_float(group["lr"])
        max_iter = group["max_iter"]
        max_eval = group["max_eval"]
        tolerance_grad = group["tolerance_grad"]
        tolerance_change = group["tolerance_change"]
        line_search_fn = group["line_search_fn"]
        history_size = group["history_size"]

        state = self.state[self._params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss = closure()
        loss = float(orig_loss)
        current_evals = 1
        state["func_evals"] += 1

        flat_grad = self._gather_flat_grad()
        opt_cond = np.max(np.abs(flat_grad)) <= tolerance_grad
        if opt_cond:
            return orig_loss

        d = state.get("d")
        t = _from_state(state.get("t"))
        old_dirs = state.get("old_dirs")
        old_stps = state.get("old_stps")
        ro = [_from_state(v) for v in state.get("ro", [])] if "ro" in state else None
        H_diag = _from_state(state.get("H_diag"))
        prev_flat_grad = state.get("prev_flat_grad")
        prev_loss = state.get("prev_loss")
        if "al" in state:
            state["al"] = [_from_state(v) for v in state["al"]]

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                d = -flat_grad
                old_dirs = []
                old_stps = []
                ro = []
                H_diag = 1
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = _dot(y, s)
                if ys > 1e-10:
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(ys.dtype.type(1.0) / ys)
                    H_diag = ys / _dot(y, y)
                num_old = len(old_dirs)
                if "al" not in state:
                    state["al"] = [None] * history_size
                al = state["al"]
                q = -flat_grad
                for i in range(num_old - 1, -1, -1):
                    al[i] = _dot(old_stps[i], q) * ro[i]
                    q = fma_add(q, -al[i], old_dirs[i])
                d = r = q * H_diag
                for i in range(num_old):
                    be_i = _dot(old_dirs[i], r) * ro[i]
                    r[...] = fma_add(r, al[i] - be_i, old_stps[i])

            if prev_flat_grad is None:
                prev_flat_grad = flat_grad.copy()
            else:
                prev_flat_grad[...] = flat_grad
            prev_loss = loss

            if state["n_iter"] == 1:
                # torch's flat_grad.abs().sum(): ATen's summation order (compiled aten_sum)
                g_sum = flat_grad.dtype.type(_train_kernels.aten_sum(np.abs(flat_grad)))
                t = min(1.0, g_sum.dtype.type(1.0) / g_sum) * lr
            else:
                t = lr

            gtd = _dot(flat_grad, d)
            if gtd > -tolerance_change:
                break

            ls_func_evals = 0
            if line_search_fn is not None:
                if line_search_fn != "strong_wolfe":
                    raise RuntimeError("only 'strong_wolfe' is supported")
                x_init = self._clone_param()

                def obj_func(x, t, d):
                    return self._directional_evaluate(closure, x, t, d)

                loss, flat_grad, t, ls_func_evals = _strong_wolfe(
                    obj_func, x_init, t, d, loss, flat_grad, gtd, max_ls=max_eval - current_evals)
                self._add_grad(t, d)
                opt_cond = np.max(np.abs(flat_grad)) <= tolerance_grad
            else:
                self._add_grad(t, d)
                if n_iter != max_iter:
                    loss = float(closure())
                    flat_grad = self._gather_flat_grad()
                    opt_cond = np.max(np.abs(flat_grad)) <= tolerance_grad
                    ls_func_evals = 1

            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            if n_iter == max_iter:
                break
            if current_evals >= max_eval:
                break
            if opt_cond:
                break
            if np.max(np.abs(d * t)) <= tolerance_change:
                break
            if abs(loss - prev_loss) < tolerance_change:
                break

        state["d"] = d
        state["t"] = _to_state(t)
        state["old_dirs"] = old_dirs
        state["old_stps"] = old_stps
        state["ro"] = [_to_state(v) for v in ro]
        state["H_diag"] = _to_state(H_diag)
        state["prev_flat_grad"] = prev_flat_grad
        state["prev_loss"] = prev_loss
        if "al" in state:
            state["al"] = [_to_state(v) for v in state["al"]]
        return orig_loss
