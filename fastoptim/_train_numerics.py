"""Small numeric helpers shared by Adafactor, LBFGS and Muon (torch's CPU rounding in NumPy)."""
import numpy as np

from fastoptim import _train_kernels


def norm2(a):
    """torch's ``a.norm(2).item()``: its CPU reduction order, rounded to ``a``'s dtype."""
    return _train_kernels.vector_norm(np.ascontiguousarray(a).reshape(-1), 2.0)


def fma_add(x, alpha, u):
    """``x + alpha * u`` rounded once, as ATen's vectorised ``x.add_(u, alpha=alpha)`` (an FMA),
    ``alpha`` rounded to ``x``'s dtype; a new array (``u`` is cast to ``x``'s dtype)."""
    out = np.array(x, dtype=x.dtype, order="C", copy=True)
    _train_kernels.axpy([out], [np.ascontiguousarray(u, dtype=x.dtype).reshape(out.shape)], alpha)
    return out
