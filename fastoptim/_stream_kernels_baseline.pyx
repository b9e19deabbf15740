# The bandwidth kernel of the benchmark suite, compiled for one instruction-set level (baseline); see
# _stream_impl.pxi, setup.py and fastoptim/_stream.py.
include "_stream_impl.pxi"
