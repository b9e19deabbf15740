# The training-utility loops, compiled for one instruction-set level (x86_64_v4); see setup.py and
# fastoptim/_train_kernels.py.
include "_train_kernels_impl.pxi"
