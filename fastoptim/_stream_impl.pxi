# A STREAM-style bandwidth kernel for the benchmark suite (``fastoptim/bench.py``). Included by
# ``_stream_kernels_<variant>.pyx``, one compiled copy per instruction-set level exactly like the
# optimizer kernels; ``fastoptim/_stream.py`` imports the copy of the level the kernels run at.
#
# It moves exactly the bytes an optimizer step must move, and nothing else: per element it reads
# ``k`` arrays and writes ``k - 1`` of them back in place (SGD with momentum: read param, grad and
# buffer, write param and buffer, k = 3; Adam/AdamW: k = 4; AMSGrad: k = 5). Writing in place, as
# the optimizer does, matters: a store to a line that was just read needs no extra read-for-
# ownership, while a store to a separate output array would add one and make the bound too low.
#
# Work is split exactly as the optimizer kernels split it (``_kernels/_plan.pyx``): one ``prange``
# over the threads, each thread taking an equal, contiguous share of the flattened elements of all
# arrays of the call, so the bound sees the same per-array boundaries and the same thread count.
#
# Each written array gets the mean of the ``k`` inputs: every load and store is needed (nothing can
# be elided), and values that start in [1, 2) stay there, so no step ever meets a subnormal, an
# infinity or a NaN whose handling could slow the loop down.
#
# Why one copy per ISA level: on the 2-core AVX-512 development machine, an SSE2 build of this loop
# moved 10-20% fewer GB/s than an AVX-512 build at the 10M workload (and ~2x fewer on arrays that
# fit in L2), which would have made a bound that the AVX-512 optimizer kernels could "beat".

from cython cimport floating
from cython.parallel cimport prange
from libc.stdlib cimport malloc, free
cimport numpy as cnp

from fastoptim._kernels._plan cimport share_bound as _bound   # shares start on a cache line

include "_kernels/_prefetch.pxi"   # fo_pf: the optimizer loops' software prefetch

import numpy as np

cnp.import_array()


cdef inline void _rw3(floating* a0, floating* a1, const floating* a2, Py_ssize_t lo,
                      Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating s
    cdef floating scale = <floating>(1.0 / 3.0)
    for i in range(lo, hi):
        s = (a0[i] + a1[i] + a2[i]) * scale
        a0[i] = s
        a1[i] = s


cdef inline void _rw4(floating* a0, floating* a1, floating* a2, const floating* a3, Py_ssize_t lo,
                      Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating s
    for i in range(lo, hi):
        s = (a0[i] + a1[i] + a2[i] + a3[i]) * <floating>0.25
        a0[i] = s
        a1[i] = s
        a2[i] = s


cdef inline void _rw5(floating* a0, floating* a1, floating* a2, floating* a3, const floating* a4,
                      Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating s
    cdef floating scale = <floating>0.2
    for i in range(lo, hi):
        s = (a0[i] + a1[i] + a2[i] + a3[i] + a4[i]) * scale
        a0[i] = s
        a1[i] = s
        a2[i] = s
        a3[i] = s


cdef void _segment(floating** p, int k, Py_ssize_t a, Py_ssize_t n) noexcept nogil:
    """Elements [a, a + n) of one group of ``k`` arrays, in blocks with software prefetch exactly
    as the optimizer loops run (``_kernels/_prefetch.pxi``)."""
    cdef Py_ssize_t blk = 0, end
    cdef int j
    cdef floating* q[5]
    for j in range(k):
        q[j] = p[j] + a
    while blk < n:
        end = fo_pf_end(blk, n)
        if fo_pf_due(blk, n):
            for j in range(k):
                fo_pf(q[j], blk, sizeof(floating))
        if k == 3:
            _rw3(q[0], q[1], q[2], blk, end)
        elif k == 4:
            _rw4(q[0], q[1], q[2], q[3], blk, end)
        else:
            _rw5(q[0], q[1], q[2], q[3], q[4], blk, end)
        blk = end


cdef void _share(char** ptrs, const Py_ssize_t* sizes, const Py_ssize_t* starts, Py_ssize_t nseg,
                 int k, bint is_double, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """One thread's share: flattened elements [lo, hi) of all groups."""
    cdef Py_ssize_t s = 0, a, b, first = 0, last = nseg - 1, mid
    if lo >= hi:
        return
    # binary search for the group holding element lo, as the optimizer kernels do
    while first < last:
        mid = (first + last + 1) // 2
        if starts[mid] <= lo:
            first = mid
        else:
            last = mid - 1
    s = first
    while s < nseg and starts[s] < hi:
        a = lo - starts[s] if lo > starts[s] else 0
        b = hi - starts[s] if hi < starts[s] + sizes[s] else sizes[s]
        if b > a:
            if is_double:
                _segment(<double**>(ptrs + s * k), k, a, b - a)
            else:
                _segment(<float**>(ptrs + s * k), k, a, b - a)
        s += 1


cdef class StreamPlan:
    """A prepared bandwidth kernel over groups of equally shaped arrays.

    Parameters
    ----------
    groups : list of tuple of ndarray
        One tuple of ``k`` arrays per workload array (``k`` is 3, 4 or 5, the same for every
        group); all arrays of all groups share one dtype (float32 or float64), each group's arrays
        share one shape, and every array is C-contiguous and writeable. The first ``k - 1`` arrays
        of each group are overwritten, in place, with the mean of the group's ``k`` arrays at every
        :meth:`run`; the last one is only read.

    Attributes
    ----------
    n_elements : int
        Elements per array summed over the groups.
    bytes_per_step : int
        Bytes one :meth:`run` reads and writes: ``n_elements * (2k - 1) * itemsize``.
    """
    cdef char** ptrs
    cdef Py_ssize_t* sizes
    cdef Py_ssize_t* starts
    cdef Py_ssize_t nseg
    cdef int k
    cdef bint is_double
    cdef readonly Py_ssize_t n_elements
    cdef readonly Py_ssize_t bytes_per_step
    cdef list _keepalive

    def __cinit__(self, list groups):
        self.ptrs = NULL
        self.sizes = NULL
        self.starts = NULL

    def __init__(self, list groups):
        cdef Py_ssize_t s, j, total = 0
        cdef cnp.ndarray a
        if not groups:
            raise ValueError("StreamPlan needs at least one group of arrays")
        k = len(groups[0])
        if k not in (3, 4, 5):
            raise ValueError(f"each group must hold 3, 4 or 5 arrays, got {k}")
        dtype = np.asarray(groups[0][0]).dtype
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"StreamPlan works on float32 or float64 arrays, got {dtype}")
        self.k = k
        self.is_double = dtype == np.float64
        self.nseg = len(groups)
        self.ptrs = <char**>malloc(self.nseg * k * sizeof(char*))
        self.sizes = <Py_ssize_t*>malloc(self.nseg * sizeof(Py_ssize_t))
        self.starts = <Py_ssize_t*>malloc(self.nseg * sizeof(Py_ssize_t))
        if self.ptrs == NULL or self.sizes == NULL or self.starts == NULL:
            raise MemoryError()
        self._keepalive = []
        for s in range(self.nseg):
            group = groups[s]
            if len(group) != k:
                raise ValueError(f"group {s} holds {len(group)} arrays, group 0 holds {k}")
            for j in range(k):
                if not isinstance(group[j], np.ndarray):
                    raise TypeError(f"group {s}, array {j} is a {type(group[j]).__name__}, not an ndarray")
                arr = group[j]
                if arr.dtype != dtype or arr.shape != group[0].shape:
                    raise ValueError(
                        f"group {s}, array {j} has dtype {arr.dtype} and shape {arr.shape}; "
                        f"expected {dtype} and {group[0].shape}")
                a = <cnp.ndarray>arr
                if not cnp.PyArray_IS_C_CONTIGUOUS(a) or not cnp.PyArray_ISWRITEABLE(a):
                    raise ValueError(f"group {s}, array {j} must be C-contiguous and writeable")
                self.ptrs[s * k + j] = <char*>cnp.PyArray_DATA(a)
                self._keepalive.append(a)
            self.sizes[s] = cnp.PyArray_SIZE(<cnp.ndarray>group[0])
            self.starts[s] = total
            total += self.sizes[s]
        self.n_elements = total
        self.bytes_per_step = total * (2 * k - 1) * dtype.itemsize

    def __dealloc__(self):
        free(self.ptrs)
        free(self.sizes)
        free(self.starts)

    def run(self, int n_threads):
        """One pass over every group, on ``n_threads`` OpenMP threads (all of them started)."""
        cdef int t
        if n_threads < 1:
            raise ValueError(f"n_threads must be >= 1, got {n_threads}")
        with nogil:
            if n_threads == 1:
                _share(self.ptrs, self.sizes, self.starts, self.nseg, self.k, self.is_double,
                       0, self.n_elements)
            else:
                for t in prange(n_threads, schedule="static", num_threads=n_threads):
                    _share(self.ptrs, self.sizes, self.starts, self.nseg, self.k, self.is_double,
                           _bound(self.n_elements, t, n_threads), _bound(self.n_elements, t + 1, n_threads))
