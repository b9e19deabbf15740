"""The benchmark suite's bandwidth kernel (``StreamPlan``), at the optimizer kernels' ISA level.

``_stream_impl.pxi`` is compiled once per instruction-set level, like the optimizer kernels
(setup.py). The bound must be measured with the vector width the kernels use, or a wide-vector
kernel could look faster than the "bound": so the copy imported here is the one for the variant
``fastoptim._dispatch`` picked (``FASTOPTIM_KERNELS`` forces both).
"""
import importlib

from fastoptim import _dispatch
from fastoptim._dispatch import VARIANT

_impl = importlib.import_module(f"fastoptim._stream_kernels_{VARIANT}")
_impl._set_prefetch(_dispatch.PREFETCH)   # as the optimizer loops (_dispatch.set_prefetch)
StreamPlan = _impl.StreamPlan

__all__ = ["StreamPlan", "VARIANT"]
