# The element loops, compiled for one instruction-set level (baseline); see setup.py and _dispatch.py.
include "_kernels_impl.pxi"
