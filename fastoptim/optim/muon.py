"""Muon (momentum + Newton–Schulz orthogonalisation) as ``torch.optim.Muon`` of torch 2.13.

The Newton–Schulz iteration runs in bfloat16 as torch's does: every intermediate matrix is rounded
to bfloat16 (through ``ml_dtypes``) where torch's bfloat16 tensor op rounds it.
"""
import math

import numpy as np

from fastoptim import _train_kernels
from fastoptim._bfloat16 import bfloat16
from fastoptim._train_numerics import fma_add, norm2
from fastoptim.optim._validation import _with_grad
from fastoptim.optimizer import Optimizer, _load_array, _to_float
from fastoptim.parameter import _describe

__all__ = ["Muon", "muon"]

EPS = 1e-7
DEFAULT_A = 3.4445
DEFAULT_B = -4.7750
DEFAULT_C = 2.0315
DEFAULT_NS_STEPS = 5


def _bf16(x):
    """Round to bfloat16 (nearest even, through float32 as torch converts) and return the values
    as float64 (exactly representable)."""
    bf16 = bfloat16("fastoptim.Muon (its Newton-Schulz iteration runs in bfloat16)").type
    return np.asarray(x).astype(np.float32).astype(bf16).astype(np.float64)


def _zeropower_via_newtonschulz(grad, ns_coefficients, ns_steps, eps):
    """Orthogonalise ``grad`` (2-d) by ``ns_steps`` quintic Newton–Schulz iterations in bfloat16.

    Each matrix torch holds as a bfloat16 tensor is rounded to bfloat16 here; the products and
    sums between two roundings are computed in float64 (torch's bfloat16 GEMM accumulates in
    float32 in an order of its own; a wider sum lands closest to it on average). Returns the
    bfloat16 result as float64 values.
    """
    if ns_steps >= 100:
        raise ValueError("Number of steps must be less than 100 for computational efficiency")
    if grad.ndim != 2:
        raise ValueError("Input tensor gradient must be a 2D matrix")
    if len(ns_coefficients) != 3:
        raise ValueError("Coefficients must be a tuple of exactly 3 values")
    a, b, c = ns_coefficients
    ortho = _bf16(grad)
    # the Frobenius norm of the bfloat16 matrix, accumulated in float32 in torch's order
    norm = float(_bf16(norm2(ortho.astype(np.float32))))
    norm = max(norm, float(_bf16(eps)))
    transposed = grad.shape[0] > grad.shape[1]
    if transposed:
        ortho = ortho.T
    ortho = _bf16(ortho / norm)
    for _ in range(ns_steps):
        gram = _bf16(ortho @ ortho.T)
        gram_update = _bf16(c * (gram @ gram) + b * gram)
        ortho = _bf16(gram_update @ ortho + a * ortho)
    if transposed:
        ortho = ortho.T
    return ortho


def _adjust_lr(lr, adjust_lr_fn, param_shape):
    """torch's learning-rate adjustment of Muon."""
    A, B = param_shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        adjusted_ratio = math.sqrt(max(1, A / B))
    elif adjust_lr_fn == "match_rms_adamw":
        adjusted_ratio = 0.2 * math.sqrt(max(A, B))
    else:
        adjusted_ratio = 1.0
    return lr * adjusted_ratio


def muon(params, grads, muon_momentum_bufs, *, foreach=None, lr, weight_decay, momentum,
         nesterov, ns_coefficients, ns_steps, eps, adjust_lr_fn, has_complex=False):
    r"""Functional Muon (torch's ``torch.optim._muon.muon``), in place.

    .. math::
        \begin{aligned}
        &B \leftarrow \mathrm{lerp}(B, g, 1 - \mu), \qquad
         \tilde B = \mathrm{lerp}(g, B, \mu)\ \text{(nesterov) else } B\\
        &O = \mathrm{NS}^{(a,b,c)}_k(\tilde B;\varepsilon), \qquad
         \theta \leftarrow \theta(1 - \gamma\lambda) - \mathrm{AdjustLR}(\gamma)\, O
        \end{aligned}

    ``NS`` normalises :math:`X = \tilde B / \max(\|\tilde B\|_F, \varepsilon)` (transposed when
    it has more rows than columns) and iterates :math:`G = XX^\top`,
    :math:`X \leftarrow aX + (bG + cG^2)X` in bfloat16.

    Parameters
    ----------
    params, grads, muon_momentum_bufs : list of ndarray
        2-d arrays; the momentum buffers are updated in place.
    foreach : bool, optional
        ``True`` is refused, as in torch.
    lr, weight_decay, momentum, nesterov, ns_coefficients, ns_steps, eps, adjust_lr_fn
        As :class:`Muon`.
    """
    if foreach is not None and foreach:
        raise RuntimeError("Foreach is not supported for Muon yet")
    if has_complex:
        raise ValueError("Complex parameters are not supported")
    lr = _to_float(lr)
    if not (len(params) == len(grads) == len(muon_momentum_bufs)):
        raise ValueError(f"muon: got {len(params)} params, {len(grads)} grads and "
                         f"{len(muon_momentum_bufs)} momentum buffers; pass one of each per parameter")
    for i, (param, grad, buf) in enumerate(zip(params, grads, muon_momentum_bufs)):
        if grad.ndim != 2:
            raise ValueError("Param gradient must be a 2D matrix")
        if grad.shape != param.shape or buf.shape != param.shape:
            raise ValueError(f"grads[{i}] and muon_momentum_bufs[{i}] must have params[{i}]'s "
                             f"shape {param.shape}")
    w = 1 - momentum
    for param, grad, buf in zip(params, grads, muon_momentum_bufs):
        _train_kernels.lerp([buf], [grad], w, w)
        if nesterov:
            update = np.array(grad, dtype=param.dtype, order="C", copy=True)
            _train_kernels.lerp([update], [buf], momentum, momentum)
        else:
            update = buf
        update = _zeropower_via_newtonschulz(update, ns_coefficients, ns_steps, eps)
        adjusted_lr = _adjust_lr(lr, adjust_lr_fn, param.shape)
        param *= param.dtype.type(1 - lr * weight_decay)
        param[...] = fma_add(param.view(np.ndarray), -adjusted_lr, update.astype(param.dtype))


class Muon(Optimizer):
    r"""Muon: SGD momentum whose update is orthogonalised by Newton–Schulz (torch 2.13's ``Muon``).

    For 2-d parameters (hidden-layer weight matrices); optimise biases and embeddings with
    another optimizer. Per step and parameter (see :func:`fastoptim.functional.muon`):

    .. math::
        B_t = \mu B_{t-1} + (1-\mu) g_t,\quad
        O_t = \mathrm{NS}_k(\text{nesterov} ? \ \mathrm{lerp}(g_t, B_t, \mu) : B_t),\quad
        \theta_t = \theta_{t-1}(1 - \gamma\lambda) - \gamma' O_t

    with :math:`\gamma' = \gamma\sqrt{\max(1, A/B)}` (``"original"``) or
    :math:`0.2\gamma\sqrt{\max(A, B)}` (``"match_rms_adamw"``) for an :math:`A \times B` matrix.

    Parameters
    ----------
    params : iterable
        2-d Parameters or param groups.
    lr : float, default 1e-3
    weight_decay : float, default 0.1
    momentum : float, default 0.95
    nesterov : bool, default True
    ns_coefficients : tuple of 3 floats, default (3.4445, -4.7750, 2.0315)
    eps : float, default 1e-7
    ns_steps : int, default 5
    adjust_lr_fn : {None, "original", "match_rms_adamw"}

    Notes
    -----
    State per parameter: ``momentum_buffer``. The Newton–Schulz iteration is computed in
    bfloat16 (needs ``ml_dtypes``), so results are close to torch's but not equal: bfloat16 GEMMs
    round their float32 sums in an order that differs between libraries.

    Examples
    --------
    >>> import numpy as np, fastoptim as fo
    >>> w = fo.Parameter(np.eye(3, dtype=np.float32))
    >>> opt = fo.Muon([w], lr=0.02)
    >>> w.grad = np.ones((3, 3), np.float32)
    >>> opt.step()
    >>> list(opt.state[w])
    ['momentum_buffer']
    """

    def __init__(self, params, lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
                 ns_coefficients=(DEFAULT_A, DEFAULT_B, DEFAULT_C), eps=EPS,
                 ns_steps=DEFAULT_NS_STEPS, adjust_lr_fn=None):
        _check_muon_hyperparameters(lr, momentum, weight_decay, adjust_lr_fn)
        defaults = {"lr": lr, "weight_decay": weight_decay, "momentum": momentum,
                    "nesterov": nesterov, "ns_coefficients": ns_coefficients, "eps": eps,
                    "ns_steps": ns_steps, "adjust_lr_fn": adjust_lr_fn}
        super().__init__(params, defaults)
        for group in self.param_groups:
            _check_2d(group)

    def _check_group(self, group):
        _check_muon_hyperparameters(group["lr"], group["momentum"], group["weight_decay"],
                                    group["adjust_lr_fn"])

    def add_param_group(self, param_group):
        """Add a param group (its parameters must be 2-d, as torch checks at construction)."""
        groups = getattr(self, "param_groups", None)
        if groups:
            params = param_group["params"] if isinstance(param_group, dict) else param_group
            _check_2d({"params": [params] if isinstance(params, np.ndarray) else list(params)})
        super().add_param_group(param_group)

    def _load_param_state(self, param, saved, where, group):
        if not isinstance(saved, dict):
            raise TypeError(f"{where} must be a dict, got {_describe(saved)}")
        if set(saved) != {"momentum_buffer"}:
            raise ValueError(f"{where} has keys {sorted(saved)}; Muon state has only "
                             f"'momentum_buffer'")
        return {"momentum_buffer": _load_array(saved["momentum_buffer"], param,
                                               f"{where}['momentum_buffer']")}

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
            params, grads, bufs = [], [], []
            for p in _with_grad(group["params"]):
                params.append(p)
                grads.append(p.grad)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = np.zeros(p.shape, p.dtype)
                bufs.append(state["momentum_buffer"])
            muon(params, grads, bufs, lr=group["lr"], weight_decay=group["weight_decay"],
                 momentum=group["momentum"], nesterov=group["nesterov"],
                 ns_coefficients=group["ns_coefficients"], ns_steps=group["ns_steps"],
                 eps=group["eps"], adjust_lr_fn=group["adjust_lr_fn"])
        return loss


def _check_muon_hyperparameters(lr, momentum, weight_decay, adjust_lr_fn):
    """torch 2.13's checks, in its order and with its messages."""
    if isinstance(lr, np.ndarray) and lr.size != 1:
        raise ValueError("Tensor lr must be 1-element")
    if not 0.0 <= lr:
        raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
    if not 0.0 <= momentum:
        raise ValueError(f"momentum should be >= 0 but is: {momentum}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"weight decay should be >= 0 but is: {weight_decay}")
    if adjust_lr_fn is not None and adjust_lr_fn not in ["original", "match_rms_adamw"]:
        raise ValueError(f"Adjust learning rate function {adjust_lr_fn} is not supported")


def _check_2d(group):
    for p in group["params"]:
        if p.ndim != 2:
            # torch prints p.size(): torch.Size([2, 3, 4]), whatever the array type
            raise ValueError(f"Muon only supports 2D parameters whereas we found a parameter "
                             f"with size: torch.Size({[int(d) for d in p.shape]})")
