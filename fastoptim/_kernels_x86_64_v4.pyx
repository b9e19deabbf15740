# The element loops, compiled for one instruction-set level (x86_64_v4); see setup.py and _dispatch.py.
include "_kernels_impl.pxi"
