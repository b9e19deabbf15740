r"""Weight averaging: ``torch.optim.swa_utils`` for NumPy arrays.

:class:`AveragedModel` keeps averaged copies of a set of arrays (exponential moving average, EMA,
or the equal-weight stochastic weight average, SWA); :class:`SWALR` anneals the learning rate to a
constant for the SWA phase. The averaging of all arrays is one compiled call (torch's
``_foreach_lerp_`` arithmetic, identical for every thread count).
"""
import math
import numbers
import warnings
from collections.abc import Mapping

import numpy as np

from fastoptim import _train_kernels
from fastoptim.lr_scheduler import LRScheduler

__all__ = [
    "AveragedModel",
    "SWALR",
    "get_ema_multi_avg_fn",
    "get_swa_multi_avg_fn",
    "get_ema_avg_fn",
    "get_swa_avg_fn",
]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _check_decay(decay):
    if decay < 0.0 or decay > 1.0:
        raise ValueError(f"Invalid decay value {decay} provided. Please provide a value in [0,1] range.")


def _swa_weight(num_averaged):
    """torch's ``1 / (n_averaged + 1)`` of its int64 ``n_averaged`` tensor: a float32 value."""
    return float(np.float32(1.0) / np.float32(int(num_averaged) + 1))


def get_ema_multi_avg_fn(decay=0.999):
    r"""The EMA update of many arrays at once, for ``AveragedModel(multi_avg_fn=...)``.

    .. math::
        W^{\text{EMA}}_0 = W^{\text{model}}_0, \qquad
        W^{\text{EMA}}_{t+1} = \text{decay}\, W^{\text{EMA}}_t + (1 - \text{decay})\, W^{\text{model}}_{t+1}

    computed as torch's ``_foreach_lerp_(ema, model, 1 - decay)`` (a fused multiply-add per
    element), in one compiled call over every array.

    Parameters
    ----------
    decay : float, default 0.999
        In ``[0, 1]``.

    Returns
    -------
    callable
        ``ema_update(ema_list, current_list, num_averaged)``, updating ``ema_list`` in place.
    """
    _check_decay(decay)
    weight = 1 - decay

    def ema_update(ema_param_list, current_param_list, _):
        _train_kernels.lerp(list(ema_param_list), list(current_param_list), weight, weight)

    ema_update._fastoptim_multi_dtype = True
    ema_update._fastoptim_ema_weight = weight      # AveragedModel(..., fused_with=opt) reads it
    return ema_update


def get_swa_multi_avg_fn():
    r"""The SWA (running mean) update of many arrays at once.

    .. math::
        W^{\text{SWA}}_{n+1} = W^{\text{SWA}}_n + \frac{W^{\text{model}} - W^{\text{SWA}}_n}{n + 1}

    computed as torch's ``_foreach_lerp_(swa, model, 1 / (n + 1))`` with the weight rounded to
    float32 (torch divides its int64 counter), in one compiled call.

    Returns
    -------
    callable
        ``swa_update(averaged_list, current_list, num_averaged)``.
    """
    def swa_update(averaged_param_list, current_param_list, num_averaged):
        w = _swa_weight(num_averaged)
        _train_kernels.lerp(list(averaged_param_list), list(current_param_list), w, w)

    swa_update._fastoptim_multi_dtype = True
    return swa_update


def get_ema_avg_fn(decay=0.999):
    r"""The EMA update of one array: returns ``decay * ema + (1 - decay) * current``.

    Parameters
    ----------
    decay : float, default 0.999
        In ``[0, 1]``.
    """
    _check_decay(decay)

    def ema_update(ema_param, current_param, num_averaged):
        return decay * ema_param + (1 - decay) * current_param

    return ema_update


def get_swa_avg_fn():
    r"""The SWA update of one array: returns ``avg + (current - avg) / (n + 1)``."""
    def swa_update(averaged_param, current_param, num_averaged):
        diff = current_param - averaged_param
        return averaged_param + diff / diff.dtype.type(int(num_averaged) + 1)

    return swa_update


def _structure(params, what):
    """(keys or None, list of arrays) of an iterable or a dict of arrays."""
    if isinstance(params, np.ndarray):
        raise TypeError(f"{what} must be an iterable or a dict of arrays, got a single array; "
                        f"wrap it in a list")
    if isinstance(params, Mapping):
        keys = list(params)
        arrays = [params[k] for k in keys]
    else:
        try:
            arrays = list(params)
        except TypeError:
            raise TypeError(f"{what} must be an iterable or a dict of arrays, got "
                            f"{type(params).__name__}") from None
        keys = None
    for i, a in enumerate(arrays):
        name = repr(keys[i]) if keys is not None else i
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{what}[{name}] must be a NumPy array, got {type(a).__name__}")
        if a.dtype not in _FLOATS or not a.dtype.isnative:
            raise TypeError(f"{what}[{name}] has dtype {a.dtype}; AveragedModel averages float32 "
                            f"and float64 arrays: convert it with .astype(np.float32)")
    return keys, arrays


class AveragedModel:
    r"""Averaged copies of a set of arrays: SWA by default, EMA with an EMA function.

    ``torch.optim.swa_utils.AveragedModel`` for arrays instead of a module. The first
    :meth:`update_parameters` copies the current values; each later one averages:

    .. math::
        W^{\text{avg}} \leftarrow
        \begin{cases}
          W^{\text{model}} & n = 0\\
          f(W^{\text{avg}}, W^{\text{model}}, n) & n > 0
        \end{cases},
        \qquad n \leftarrow n + 1

    with the running mean :math:`f = W^{\text{avg}} + (W^{\text{model}} - W^{\text{avg}})/(n+1)`
    by default (torch's CPU default, :func:`get_swa_avg_fn`'s arithmetic). The default and the
    functions of :func:`get_ema_multi_avg_fn` / :func:`get_swa_multi_avg_fn` update every array
    in one compiled call; an ``avg_fn`` is called
    per array and its result copied in; another ``multi_avg_fn`` is called once per dtype, as
    torch calls it once per (device, dtype) group.

    Parameters
    ----------
    params : iterable or dict of ndarray
        The arrays to average (e.g. ``[w, b]`` or ``{"w": w, "b": b}``), float32/float64.
    avg_fn : callable, optional
        ``avg_fn(averaged, current, num_averaged) -> new averaged array``.
    multi_avg_fn : callable, optional
        ``multi_avg_fn(averaged_list, current_list, num_averaged)`` updating in place.
    fused_with : Optimizer, optional
        Keyword-only (fastoptim's extension): an elementwise fastoptim optimizer whose parameters
        ``params`` are; each ``fused_with.step()`` then updates the average from the new
        parameters in the same pass over memory as the step (bitwise what
        :meth:`update_parameters` after the step gives; the first step copies) and counts
        :attr:`n_averaged`. Needs ``multi_avg_fn=get_ema_multi_avg_fn(decay)``;
        :meth:`update_parameters` is then refused (the step does it) until :meth:`detach`.
        See "One pass: clip, step and EMA" (``docs/fused.rst``).

    Attributes
    ----------
    averaged : list or dict of ndarray
        The averaged arrays, in ``params``' structure (updated in place).
    n_averaged : int
        Number of :meth:`update_parameters` calls so far.

    Examples
    --------
    >>> import numpy as np, fastoptim as fo
    >>> w = np.array([1.0, 2.0])
    >>> ema = fo.swa_utils.AveragedModel({"w": w},
    ...                                  multi_avg_fn=fo.swa_utils.get_ema_multi_avg_fn(0.5))
    >>> ema.update_parameters({"w": w})
    >>> w += 2.0
    >>> ema.update_parameters({"w": w})
    >>> ema.averaged["w"], ema.n_averaged
    (array([2., 3.]), 2)
    """

    def __init__(self, params, avg_fn=None, multi_avg_fn=None, *, fused_with=None):
        if avg_fn is not None and multi_avg_fn is not None:
            raise AssertionError("Only one of avg_fn and multi_avg_fn should be provided")
        for name, fn in (("avg_fn", avg_fn), ("multi_avg_fn", multi_avg_fn)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
        keys, arrays = _structure(params, "params")
        weight = None
        if fused_with is not None:
            weight = getattr(multi_avg_fn, "_fastoptim_ema_weight", None)
            if weight is None:
                raise ValueError("fused_with needs multi_avg_fn=fo.swa_utils.get_ema_multi_avg_fn(decay): "
                                 "the fused step updates an exponential moving average")
        self._keys = keys
        self._arrays = [np.array(a, dtype=a.dtype, order="C", copy=True, subok=False) for a in arrays]
        self.n_averaged = 0
        self.avg_fn = avg_fn
        self.multi_avg_fn = multi_avg_fn
        self._fused_with = None
        if fused_with is not None:
            from fastoptim.optim import _fused
            _fused.attach_ema(fused_with, self, arrays, self._arrays, weight)
            self._fused_with = fused_with

    @property
    def fused_with(self):
        """The optimizer whose steps update this average (``None``: :meth:`update_parameters` does)."""
        return self._fused_with

    def detach(self):
        """Stop updating the average in ``fused_with``'s steps (:meth:`update_parameters` works again)."""
        if self._fused_with is not None:
            from fastoptim.optim import _fused
            _fused.detach_ema(self._fused_with, self)
            self._fused_with = None

    @property
    def averaged(self):
        """The averaged arrays, in the structure of ``params`` (a list, or a dict with its keys).

        The container is new on each access; the arrays are the ones updated in place.
        """
        if self._keys is None:
            return list(self._arrays)
        return dict(zip(self._keys, self._arrays))

    def _matching(self, params, what):
        keys, arrays = _structure(params, what)
        if (keys is None) != (self._keys is None):
            raise TypeError(f"{what} must be a {'dict' if self._keys is not None else 'list'} "
                            f"like the params AveragedModel was built with")
        if keys is not None and keys != self._keys:
            raise ValueError(f"{what} has keys {keys} but the averaged arrays have keys {self._keys}")
        if len(arrays) != len(self._arrays):
            raise ValueError(f"{what} has {len(arrays)} arrays but {len(self._arrays)} are averaged")
        for i, (a, mine) in enumerate(zip(arrays, self._arrays)):
            name = repr(keys[i]) if keys is not None else i
            if a.shape != mine.shape or a.dtype != mine.dtype:
                raise ValueError(f"{what}[{name}] has shape {a.shape} and dtype {a.dtype} but the "
                                 f"averaged array has shape {mine.shape} and dtype {mine.dtype}")
        return arrays

    def update_parameters(self, params):
        """Average the current ``params`` (same structure, shapes and dtypes) into :attr:`averaged`.

        Everything is checked before any array changes.
        """
        if self._fused_with is not None:
            raise RuntimeError(f"this AveragedModel is updated by the steps of its fused_with "
                               f"{type(self._fused_with).__name__}; do not call update_parameters "
                               f"as well (or call detach() first)")
        current = self._matching(params, "params")
        if self.n_averaged == 0:
            for mine, a in zip(self._arrays, current):
                np.copyto(mine, a)
        elif self.avg_fn is not None:
            new = [np.asarray(self.avg_fn(mine, a, self.n_averaged)) for mine, a in
                   zip(self._arrays, current)]
            for i, (mine, value) in enumerate(zip(self._arrays, new)):
                if value.shape != mine.shape:
                    raise ValueError(f"avg_fn returned shape {value.shape} for array {i} of "
                                     f"shape {mine.shape}")
            for mine, value in zip(self._arrays, new):
                np.copyto(mine, value, casting="same_kind")
        else:
            fn = self.multi_avg_fn if self.multi_avg_fn is not None else _swa_running_mean
            if getattr(fn, "_fastoptim_multi_dtype", False):
                fn(self._arrays, current, self.n_averaged)
            else:
                # torch's grouping by dtype: groups in reverse order of first appearance
                dtypes = []
                for a in self._arrays:
                    if a.dtype not in dtypes:
                        dtypes.append(a.dtype)
                for dt in reversed(dtypes):
                    idx = [i for i, a in enumerate(self._arrays) if a.dtype == dt]
                    fn([self._arrays[i] for i in idx], [current[i] for i in idx], self.n_averaged)
        self.n_averaged += 1

    def state_dict(self):
        """``{"averaged": copies in params' structure, "n_averaged": int}`` (saveable with ``fo.save``)."""
        copies = [a.copy() for a in self._arrays]
        averaged = copies if self._keys is None else dict(zip(self._keys, copies))
        return {"averaged": averaged, "n_averaged": self.n_averaged}

    def load_state_dict(self, state_dict):
        """Load a :meth:`state_dict`: the arrays are copied into :attr:`averaged` in place.

        All-or-nothing: structure, shapes, dtypes and ``n_averaged`` are checked first.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"AveragedModel.load_state_dict expects the dict returned by "
                            f"state_dict(), got {type(state_dict).__name__}")
        if set(state_dict) != {"averaged", "n_averaged"}:
            raise ValueError(f"AveragedModel.load_state_dict: expected the keys 'averaged' and "
                             f"'n_averaged', got {sorted(map(str, state_dict))}")
        n = state_dict["n_averaged"]
        if isinstance(n, np.ndarray) and n.ndim == 0 and n.dtype.kind in "iu":
            n = int(n)
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (numbers.Integral,)) or n < 0:
            raise ValueError(f"AveragedModel.load_state_dict: n_averaged must be an integer >= 0, "
                             f"got {n!r}")
        arrays = self._matching(state_dict["averaged"], "state_dict['averaged']")
        for mine, a in zip(self._arrays, arrays):
            np.copyto(mine, a)
        self.n_averaged = int(n)


def _swa_running_mean(averaged_param_list, current_param_list, num_averaged):
    # torch's default on CPU (no foreach lerp there): get_swa_avg_fn on every array
    _train_kernels.running_mean(averaged_param_list, current_param_list, float(num_averaged + 1))


_swa_running_mean._fastoptim_multi_dtype = True


def _v_anneal_epochs(scheduler, key, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"SWALR.load_state_dict: {key} must be an integer >= 0, got {value!r}")
    return int(value)


def _v_anneal_strategy(scheduler, key, value):
    if value not in ("cos", "linear"):
        raise ValueError(f"SWALR.load_state_dict: {key} must be 'cos' or 'linear', got {value!r}")
    return value


class SWALR(LRScheduler):
    r"""Anneal each group's learning rate to a constant ``swa_lr`` (torch's ``SWALR``).

    With :math:`T` = ``anneal_epochs`` and :math:`t = \min(1, s / \max(1, T))` at scheduler step
    :math:`s`, the anneal factor is :math:`\alpha_t = (1 - \cos \pi t)/2` (``"cos"``) or
    :math:`\alpha_t = t` (``"linear"``), and

    .. math::
        \eta_s = \alpha_t\, \eta_{\text{swa}} + (1 - \alpha_t)\, \eta_0^{(s)}, \qquad
        \eta_0^{(s)} = \frac{\eta_{s-1} - \alpha_{t'} \eta_{\text{swa}}}{1 - \alpha_{t'}}

    where :math:`t'` is the previous step's :math:`t` (so the schedule starts from whatever lr the
    group has when SWALR takes over). The floats are torch's, operation for operation.

    Parameters
    ----------
    optimizer : fastoptim.Optimizer
    swa_lr : float or list of float
        The final lr, for all groups or one per group (stored as ``group["swa_lr"]``).
    anneal_epochs : int, default 10
    anneal_strategy : {"cos", "linear"}, default "cos"
    last_epoch : int, default -1

    Examples
    --------
    >>> import numpy as np, fastoptim as fo
    >>> p = fo.Parameter(np.zeros(1))
    >>> opt = fo.SGD([p], lr=1.0)
    >>> swa = fo.swa_utils.SWALR(opt, swa_lr=0.1, anneal_epochs=2, anneal_strategy="linear")
    >>> for _ in range(3):
    ...     p.grad = np.zeros(1)
    ...     opt.step()
    ...     swa.step()
    ...     print(round(opt.param_groups[0]["lr"], 6))
    0.55
    0.1
    0.1
    """

    _state_validators = {"anneal_epochs": _v_anneal_epochs, "_anneal_strategy": _v_anneal_strategy}

    def __init__(self, optimizer, swa_lr, anneal_epochs=10, anneal_strategy="cos", last_epoch=-1):
        groups = getattr(optimizer, "param_groups", None)
        if groups is None:
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        if isinstance(swa_lr, (list, tuple)):
            if len(swa_lr) != len(groups):
                raise ValueError(
                    f"swa_lr must have the same length as optimizer.param_groups. swa_lr has "
                    f"{len(swa_lr)} values, param_groups has {len(groups)}.")
            swa_lrs = list(swa_lr)
        else:
            swa_lrs = [swa_lr] * len(groups)
        if anneal_strategy not in ["cos", "linear"]:
            raise ValueError(
                f"anneal_strategy must be one of 'cos' or 'linear', instead got {anneal_strategy}")
        if not isinstance(anneal_epochs, int) or anneal_epochs < 0:
            raise ValueError(f"anneal_epochs must be equal or greater than 0, got {anneal_epochs}")
        for value, group in zip(swa_lrs, groups):
            group["swa_lr"] = value
        self._anneal_strategy = anneal_strategy
        self.anneal_epochs = anneal_epochs
        super().__init__(optimizer, last_epoch)

    @staticmethod
    def _linear_anneal(t):
        return t

    @staticmethod
    def _cosine_anneal(t):
        return (1 - math.cos(math.pi * t)) / 2

    @property
    def anneal_func(self):
        """The anneal function of ``anneal_strategy`` (not part of the state dict, as in torch)."""
        return self._cosine_anneal if self._anneal_strategy == "cos" else self._linear_anneal

    @staticmethod
    def _get_initial_lr(lr, swa_lr, alpha):
        if alpha == 1:
            return swa_lr
        return (lr - alpha * swa_lr) / (1 - alpha)

    def get_lr(self):
        """The next learning rates (called by :meth:`step`; use :meth:`get_last_lr` to read them)."""
        if not self._get_lr_called_within_step:
            warnings.warn("To get the last learning rate computed by the scheduler, please use "
                          "`get_last_lr()`.", UserWarning, stacklevel=2)
        step = self._step_count - 1
        if self.anneal_epochs == 0:
            step = max(1, step)
        prev_t = max(0, min(1, (step - 1) / max(1, self.anneal_epochs)))
        prev_alpha = self.anneal_func(prev_t)
        prev_lrs = [self._get_initial_lr(group["lr"], group["swa_lr"], prev_alpha)
                    for group in self.optimizer.param_groups]
        t = max(0, min(1, step / max(1, self.anneal_epochs)))
        alpha = self.anneal_func(t)
        return [group["swa_lr"] * alpha + lr * (1 - alpha)
                for group, lr in zip(self.optimizer.param_groups, prev_lrs)]
