"""Small numeric helpers shared by Adafactor, LBFGS and Muon (torch's CPU rounding in NumPy)."""
import numpy as np

from fastoptim import _train_kernels


def norm2(a):
    """torch's ``a.norm(2).item()``: its CPU reduction order, rounded to ``a``'s dtype."""
    return _train_kernels.vector_norm(np.ascontiguousarray(a).reshape(-1), 2.0)


def fma_add(x, alpha, u):
    """``x + alpha * u`` rounded once, as ATen's vectorised ``x.add_(u, alpha=alpha)`` (an FMA).

    float32 is computed exactly in float64 (the product of two float32 values is exact) and
    rounded once more; float64 uses separate roundings (1 ulp from the FMA at most).
    """
    if x.dtype == np.float32:
        return (x.astype(np.float64) + np.float64(np.float32(alpha)) * u.astype(np.float64)).astype(np.float32)
    return x + float(alpha) * u
