"""The compiled loops of the training utilities (clipping, weight averaging), for this CPU.

``_train_kernels_impl.pxi`` is compiled once per instruction-set level like the optimizer kernels
(setup.py); this module loads the variant that ``fastoptim._dispatch`` picked for the running CPU
(on x86-64 without AVX2/FMA the baseline, whose ``fma`` is a slower library call with the same
bits).
"""
import importlib

from fastoptim import _dispatch
from fastoptim._dispatch import VARIANT

try:
    _impl = importlib.import_module(f"fastoptim._train_kernels_{VARIANT}")
except ImportError:  # a build with the baseline variant only
    _impl = importlib.import_module("fastoptim._train_kernels_baseline")
_impl._set_prefetch(_dispatch.PREFETCH)   # as the optimizer loops (_dispatch.set_prefetch)

# The loaded variant's entry points, as names of this module.
__all__ = ["norm_kind", "array_norms", "vector_norm", "grads_of", "total_norm", "scale", "clamp",
           "lerp", "running_mean", "adafactor_means", "adafactor_update", "axpy", "blas_dot",
           "aten_sum"]
globals().update({name: getattr(_impl, name) for name in __all__})
