# The training-utility loops, compiled for one instruction-set level (baseline); see setup.py and
# fastoptim/_train_kernels.py.
include "_train_kernels_impl.pxi"
