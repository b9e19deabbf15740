"""The compiled loops of the training utilities (clipping, weight averaging), for this CPU.

``_train_kernels_impl.pxi`` is compiled once per instruction-set level like the optimizer kernels
(setup.py); this module loads the variant that ``fastoptim._dispatch`` picked for the running CPU
(on x86-64 without AVX2/FMA the baseline, whose ``fma`` is a slower library call with the same
bits).
"""
import importlib

from fastoptim._dispatch import VARIANT

try:
    _impl = importlib.import_module(f"fastoptim._train_kernels_{VARIANT}")
except ImportError:  # a build with the baseline variant only
    _impl = importlib.import_module("fastoptim._train_kernels_baseline")

norm_kind = _impl.norm_kind
array_norms = _impl.array_norms
vector_norm = _impl.vector_norm
grads_of = _impl.grads_of
total_norm = _impl.total_norm
scale = _impl.scale
clamp = _impl.clamp
lerp = _impl.lerp
running_mean = _impl.running_mean
adafactor_means = _impl.adafactor_means
adafactor_update = _impl.adafactor_update
axpy = _impl.axpy
blas_dot = _impl.blas_dot
aten_sum = _impl.aten_sum
