# The bandwidth kernel of the benchmark suite, compiled for one instruction-set level (x86_64_v4); see
# _stream_impl.pxi, setup.py and fastoptim/_stream.py.
include "_stream_impl.pxi"
