# Compiled loops of the training utilities: gradient norms and clipping (fastoptim.clip_grad) and
# the EMA/SWA weight averaging (fastoptim.swa_utils). Included by ``_train_kernels_<variant>.pyx``,
# compiled per instruction-set level with OpenMP like the optimizer kernels (setup.py;
# fastoptim/_train_kernels.py loads one). -ffp-contract=off: the C compiler fuses nothing; ``fma``
# is called exactly where torch's CPU kernels fuse (a hardware FMA in the v3/v4 variants).
#
# Determinism: every output element (a per-array norm, a scaled or averaged element) is computed by
# exactly one thread from its own inputs, in an order that does not depend on the thread count, so
# the results are identical for every ``fo.set_num_threads`` value.
#
# Norms follow torch 2.13's CPU reduction order for one contiguous array (measured bit for bit
# against ``torch.linalg.vector_norm``, see tests/test_clip_grad.py):
#   p = 2:     ATen's vectorised last-dim path: 8 float32 (4 float64) lane accumulators
#              ``acc += x*x`` over whole vectors, a left-to-right sum of the lanes, then the tail
#              elements one by one, ``sqrt``;
#   p = 1, p:  ATen's scalar reduction: one accumulator, left to right (``acc + |x|**p``), then
#              ``acc ** (1/p)``;
#   inf, -inf: the largest / smallest ``|x|`` (NaN propagates);
#   p = 0:     the number of non-zero elements.
# Matching torch's order matters: a float32 sum over 1M elements is off by ~100 ulp from the exact
# value, and any other order lands elsewhere in that range.

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport fma, fmaf, sqrt, sqrtf, pow, powf, fabs, fabsf, isnan, INFINITY
from libc.stdlib cimport malloc, free
cimport numpy as cnp

import numpy as np

from fastoptim._openmp cimport omp_get_max_threads
from fastoptim._kernels._plan cimport share_bound as _bound   # shares start on a cache line

cnp.import_array()

# Work (elements) per thread under which another thread is not started; the same measured
# threshold as the optimizer kernels (docs/threads.rst).
cdef Py_ssize_t _MIN_PER_THREAD = 16384

cdef enum:
    NORM_TWO = 0
    NORM_ONE = 1
    NORM_INF = 2
    NORM_NEG_INF = 3
    NORM_ZERO = 4
    NORM_P = 5


cdef struct Seg:
    char* data
    const char* other     # lerp/swa: the current values
    Py_ssize_t size
    Py_ssize_t start      # first element of this array in the call's flattened work
    int is_double


cdef int _threads_for(Py_ssize_t work, Py_ssize_t max_useful) noexcept nogil:
    cdef int nthreads = omp_get_max_threads()
    cdef Py_ssize_t useful = work // _MIN_PER_THREAD
    if useful > max_useful:
        useful = max_useful
    if useful < 1:
        useful = 1
    if nthreads > useful:
        nthreads = <int>useful
    return nthreads if nthreads > 0 else 1


def norm_kind(double p):
    """The reduction used for the order ``p`` (one of the NORM_* codes)."""
    if p == 2.0:
        return NORM_TWO
    if p == 1.0:
        return NORM_ONE
    if p == INFINITY:
        return NORM_INF
    if p == -INFINITY:
        return NORM_NEG_INF
    if p == 0.0:
        return NORM_ZERO
    return NORM_P


# --------------------------------------------------------------------------------------------------
# one array's norm, torch's order
# --------------------------------------------------------------------------------------------------

include "_kernels/_fmath.pxi"   # _fma, _sqrt, _abs, _pow
include "_kernels/_prefetch.pxi"   # fo_pf, fo_pf_end, fo_pf_due


cdef extern from *:
    """
    /* ATen's vectorised sum of squares: lane accumulators acc[j] += x*x over whole vectors (8
       float32 or 4 float64 lanes: Vectorized<float>/<double> of its AVX2 build), then the lanes
       summed left to right. Written with a GCC vector type so the accumulator stays in a register
       (the same IEEE operations as the scalar lanes; no contraction: -ffp-contract=off). One
       array is one chain of dependent adds on one thread, so a long array is read by one core:
       the software prefetch of _prefetch.pxi, once per block of FO_PF_BLOCK elements, keeps more
       of its lines in flight (1x100M float32 on the Emerald Rapids VM, in a C model: 29 -> 24 ms;
       the chain's add latency is the next limit). */
    #define FASTOPTIM_SUMSQ_PREFETCH(x, d, m, T)                                              \\
        if (((d) & (FO_PF_BLOCK - 1)) == 0 && fo_pf_due((d), (m)))                       \\
            fo_pf((x), (d), sizeof(T));
    typedef float fastoptim_v8sf __attribute__((vector_size(32), aligned(4)));
    typedef double fastoptim_v4df __attribute__((vector_size(32), aligned(8)));
    /* NAME(x, m) for the scalar type T, its vector type VT of LANES lanes (acc starts at zero) */
    #define FASTOPTIM_SUMSQ_LANES(NAME, T, VT, LANES)                    \\
    static T NAME(const T *x, Py_ssize_t m) {                           \\
        VT acc = {0}, v;                                                \\
        for (Py_ssize_t d = 0; d < m; d += LANES) {                     \\
            FASTOPTIM_SUMSQ_PREFETCH(x, d, m, T)                        \\
            __builtin_memcpy(&v, x + d, sizeof v);                      \\
            acc = acc + v * v;                                          \\
        }                                                               \\
        T b = acc[0];                                                   \\
        for (int j = 1; j < LANES; j++) b = b + acc[j];                 \\
        return b;                                                       \\
    }
    FASTOPTIM_SUMSQ_LANES(fastoptim_sumsq_lanes_f, float, fastoptim_v8sf, 8)
    FASTOPTIM_SUMSQ_LANES(fastoptim_sumsq_lanes_d, double, fastoptim_v4df, 4)
    """
    float fastoptim_sumsq_lanes_f(const float* x, Py_ssize_t m) noexcept nogil
    double fastoptim_sumsq_lanes_d(const double* x, Py_ssize_t m) noexcept nogil


cdef extern from *:
    """
    /* The same lane sums for two arrays at once (ma, mb: whole vectors): each array's lanes see
       exactly the operations of fastoptim_sumsq_lanes_*, in the same order, but the two chains of
       dependent adds interleave, so one thread is no longer bound by the add latency (one chain
       moves ~28 GB/s on the 2.6 GHz Zen 4 development machine, two saturate its memory). */
    #define FASTOPTIM_SUMSQ2_LANES(NAME, T, VT, LANES)                                   \\
    static void NAME(const T *a, Py_ssize_t ma, const T *b, Py_ssize_t mb, T *ra, T *rb) {     \\
        VT acca = {0}, accb = acca, va, vb;                                                   \\
        Py_ssize_t m = ma < mb ? ma : mb, d;                                                  \\
        for (d = 0; d < m; d += LANES) {                                                      \\
            FASTOPTIM_SUMSQ_PREFETCH(a, d, ma, T)                                             \\
            FASTOPTIM_SUMSQ_PREFETCH(b, d, mb, T)                                             \\
            __builtin_memcpy(&va, a + d, sizeof va);                                          \\
            __builtin_memcpy(&vb, b + d, sizeof vb);                                          \\
            acca = acca + va * va;                                                            \\
            accb = accb + vb * vb;                                                            \\
        }                                                                                     \\
        for (Py_ssize_t e = d; e < ma; e += LANES) {                                          \\
            FASTOPTIM_SUMSQ_PREFETCH(a, e, ma, T)                                             \\
            __builtin_memcpy(&va, a + e, sizeof va);                                          \\
            acca = acca + va * va;                                                            \\
        }                                                                                     \\
        for (Py_ssize_t e = d; e < mb; e += LANES) {                                          \\
            FASTOPTIM_SUMSQ_PREFETCH(b, e, mb, T)                                             \\
            __builtin_memcpy(&vb, b + e, sizeof vb);                                          \\
            accb = accb + vb * vb;                                                            \\
        }                                                                                     \\
        T x = acca[0], y = accb[0];                                                           \\
        for (int j = 1; j < LANES; j++) { x = x + acca[j]; y = y + accb[j]; }                 \\
        *ra = x; *rb = y;                                                                     \\
    }
    FASTOPTIM_SUMSQ2_LANES(fastoptim_sumsq2_lanes_f, float, fastoptim_v8sf, 8)
    FASTOPTIM_SUMSQ2_LANES(fastoptim_sumsq2_lanes_d, double, fastoptim_v4df, 4)
    """
    void fastoptim_sumsq2_lanes_f(const float* a, Py_ssize_t ma, const float* b, Py_ssize_t mb,
                                  float* ra, float* rb) noexcept nogil
    void fastoptim_sumsq2_lanes_d(const double* a, Py_ssize_t ma, const double* b, Py_ssize_t mb,
                                  double* ra, double* rb) noexcept nogil


cdef inline floating _norm_two_finish(const floating* x, Py_ssize_t n, floating b) noexcept nogil:
    """The tail after the whole vectors, one element at a time (fused), then the square root."""
    cdef Py_ssize_t W = 8 if floating is float else 4
    cdef Py_ssize_t d = n - n % W
    while d < n:
        b = _fma(x[d], x[d], b)
        d += 1
    if floating is float:
        return sqrtf(b)
    else:
        return sqrt(b)


cdef floating _norm_two(const floating* x, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t W = 8 if floating is float else 4
    cdef floating b
    if floating is float:
        b = fastoptim_sumsq_lanes_f(x, n - n % W)
    else:
        b = fastoptim_sumsq_lanes_d(x, n - n % W)
    return _norm_two_finish(x, n, b)


cdef void _norm_two_pair(const floating* x, Py_ssize_t nx, const floating* y, Py_ssize_t ny,
                         double* rx, double* ry) noexcept nogil:
    """``_norm_two`` of two arrays in one interleaved pass (bitwise the same two results)."""
    cdef Py_ssize_t W = 8 if floating is float else 4
    cdef floating bx, by
    if floating is float:
        fastoptim_sumsq2_lanes_f(x, nx - nx % W, y, ny - ny % W, &bx, &by)
    else:
        fastoptim_sumsq2_lanes_d(x, nx - nx % W, y, ny - ny % W, &bx, &by)
    rx[0] = _norm_two_finish(x, nx, bx)
    ry[0] = _norm_two_finish(y, ny, by)


cdef floating _norm_generic(const floating* x, Py_ssize_t n, int kind, floating p) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating acc = 0, a
    if kind == NORM_TWO:
        return _norm_two(x, n)
    if kind == NORM_ONE:
        for i in range(n):
            acc = acc + _abs(x[i])
        return acc
    if kind == NORM_INF or kind == NORM_NEG_INF:
        if n == 0:
            return 0
        acc = _abs(x[0])
        for i in range(1, n):
            a = _abs(x[i])
            if isnan(a) or isnan(acc):
                acc = a + acc
            elif kind == NORM_INF:
                acc = a if a > acc else acc
            else:
                acc = a if a < acc else acc
        return acc
    if kind == NORM_ZERO:
        for i in range(n):
            acc = acc + (<floating>1 if x[i] != 0 else <floating>0)
        return acc
    for i in range(n):
        acc = acc + _pow(_abs(x[i]), p)
    return _pow(acc, (<floating>1) / p)


# --------------------------------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------------------------------

cdef cnp.ndarray _as_float_array(object obj, str name, Py_ssize_t i):
    if not isinstance(obj, cnp.ndarray):
        raise TypeError(f"{name}[{i}] must be a NumPy array, got {type(obj).__name__}")
    cdef cnp.ndarray a = <cnp.ndarray>obj
    cdef int t = cnp.PyArray_TYPE(a)
    if (t != cnp.NPY_FLOAT and t != cnp.NPY_DOUBLE) or cnp.PyArray_ISBYTESWAPPED(a):
        raise TypeError(
            f"{name}[{i}] has dtype {a.dtype}; only float32 and float64 arrays (native byte order) "
            f"are supported: convert it with .astype(np.float32) or .astype(np.float64)")
    return a


cdef inline int _size_class(Py_ssize_t size) noexcept nogil:
    """floor(log2(size)) + 1 (0 for an empty array): arrays of one class differ < 2x in size."""
    cdef int c = 0
    while size > 0:
        size >>= 1
        c += 1
    return c


cdef void _by_size(const Seg* segs, Py_ssize_t n, Py_ssize_t* order) noexcept nogil:
    """``order``: the indices 0..n-1 by size class, largest first, stable within a class (a
    counting sort: O(n), no comparison sort on the per-call path)."""
    cdef Py_ssize_t count[66]
    cdef Py_ssize_t i, pos = 0, c
    for c in range(66):
        count[c] = 0
    for i in range(n):
        count[_size_class(segs[i].size)] += 1
    for c in range(65, -1, -1):                  # start offsets, largest class first
        i = count[c]
        count[c] = pos
        pos += i
    for i in range(n):
        c = _size_class(segs[i].size)
        order[count[c]] = i
        count[c] += 1


cdef Py_ssize_t _pair_tasks(const Seg* segs, Py_ssize_t n, bint pair, const Py_ssize_t* order,
                            Py_ssize_t* task) noexcept nogil:
    """The norm pass's tasks, in ``order`` (largest first): ``task[2k]`` an array, ``task[2k+1]``
    the array summed with it in one interleaved pass (``pair``: the next one, of one dtype and size
    class) or -1. Returns the number of tasks."""
    cdef Py_ssize_t k = 0, ntask = 0
    while k < n:
        task[2 * ntask] = order[k]
        task[2 * ntask + 1] = -1
        if (pair and k + 1 < n and segs[order[k + 1]].is_double == segs[order[k]].is_double
                and _size_class(segs[order[k + 1]].size) == _size_class(segs[order[k]].size)):
            task[2 * ntask + 1] = order[k + 1]
            k += 1
        k += 1
        ntask += 1
    return ntask


cdef void _owners(const Seg* segs, const Py_ssize_t* task, Py_ssize_t ntask, int nt,
                  int* owner) noexcept nogil:
    """A fixed thread for each task: consecutive tasks (largest first) to one thread, cut where
    the running size crosses ``t / nt`` of the total, so the threads get equal work. Fixed, and
    in runs: the norm pass and the scaling after it give every array to the same thread, and
    neighbouring arrays (and neighbouring norms in the output) to one thread, so no cache line
    travels between threads on every array. Handing out single tasks as the threads come
    (dynamic scheduling) made two threads twice as slow as one on 1000 arrays of 1k: the
    lines at the arrays' ends and the norms' output bounced between the cores."""
    cdef Py_ssize_t k, size, cum = 0, total = 0
    cdef int t
    for k in range(ntask):
        total += segs[task[2 * k]].size
        if task[2 * k + 1] >= 0:
            total += segs[task[2 * k + 1]].size
    for k in range(ntask):
        size = segs[task[2 * k]].size
        if task[2 * k + 1] >= 0:
            size += segs[task[2 * k + 1]].size
        t = <int>(((2 * cum + size) * nt) // (2 * total)) if total > 0 else 0
        owner[k] = t if t < nt else nt - 1
        cum += size


def array_norms(list arrays, double p):
    """Per-array ``p``-norms of ``arrays`` (float32/float64, any layout), one compiled pass.

    Returns a float64 array; entry ``i`` is the norm of ``arrays[i]`` computed and rounded in that
    array's dtype (a float32 norm is exactly representable in float64). Each norm is computed by
    one thread in torch's order, so the result does not depend on the thread count. The arrays
    are ordered largest first (size classes, a counting sort) and cut into one run of equal work
    per thread (``_owners``); for ``p = 2`` two arrays of one size class and dtype are summed in
    one interleaved pass (two independent dependency chains per thread).
    """
    cdef Py_ssize_t n = len(arrays), i, total = 0, ntask = 0, k
    cdef int kind = norm_kind(p), nt, t
    cdef cnp.ndarray a
    cdef list keep = []
    cdef cnp.ndarray out = np.empty(n, np.float64)
    cdef double* o = <double*>cnp.PyArray_DATA(out)
    cdef Seg* segs = <Seg*>malloc((n if n > 0 else 1) * sizeof(Seg))
    cdef Py_ssize_t* order = <Py_ssize_t*>malloc((n if n > 0 else 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t* task = <Py_ssize_t*>malloc((2 * n if n > 0 else 2) * sizeof(Py_ssize_t))
    cdef int* owner = <int*>malloc((n if n > 0 else 1) * sizeof(int))
    if segs == NULL or order == NULL or task == NULL or owner == NULL:
        free(segs)
        free(order)
        free(task)
        free(owner)
        raise MemoryError()
    try:
        for i in range(n):
            a = _as_float_array(arrays[i], "arrays", i)
            if not cnp.PyArray_IS_C_CONTIGUOUS(a) or not cnp.PyArray_ISALIGNED(a):
                a = np.ascontiguousarray(a)
                keep.append(a)
            if cnp.PyArray_SIZE(a) == 0 and (kind == NORM_INF or kind == NORM_NEG_INF):
                raise RuntimeError(
                    f"linalg.vector_norm cannot compute the {p} norm on an empty tensor because "
                    f"the operation does not have an identity")
            segs[i].data = <char*>cnp.PyArray_DATA(a)
            segs[i].size = cnp.PyArray_SIZE(a)
            segs[i].is_double = cnp.PyArray_TYPE(a) == cnp.NPY_DOUBLE
            total += segs[i].size
        with nogil:
            # tasks: (first, second or -1), largest first
            _by_size(segs, n, order)
            ntask = _pair_tasks(segs, n, kind == NORM_TWO, order, task)
            nt = min(_threads_for(total, ntask), 64)
            if nt <= 1:
                for k in range(ntask):
                    _norm_task(segs, task[2 * k], task[2 * k + 1], kind, p, o)
            else:
                _owners(segs, task, ntask, nt, owner)
                for t in prange(nt, schedule="static", num_threads=nt):
                    for k in range(ntask):
                        if owner[k] == t:
                            _norm_task(segs, task[2 * k], task[2 * k + 1], kind, p, o)
    finally:
        free(segs)
        free(order)
        free(task)
        free(owner)
    return out


cdef void _norm_task(const Seg* segs, Py_ssize_t i, Py_ssize_t j, int kind, double p,
                     double* o) noexcept nogil:
    if j < 0:
        o[i] = _one_norm(&segs[i], kind, p)
    elif segs[i].is_double:
        _norm_two_pair[double](<const double*>segs[i].data, segs[i].size,
                               <const double*>segs[j].data, segs[j].size, &o[i], &o[j])
    else:
        _norm_two_pair[float](<const float*>segs[i].data, segs[i].size,
                              <const float*>segs[j].data, segs[j].size, &o[i], &o[j])


cdef double _one_norm(const Seg* s, int kind, double p) noexcept nogil:
    if s.is_double:
        return _norm_generic[double](<const double*>s.data, s.size, kind, p)
    return _norm_generic[float](<const float*>s.data, s.size, kind, <float>p)


def vector_norm(cnp.ndarray v, double p):
    """The ``p``-norm of a 1-d contiguous float32/float64 array in torch's order, as a Python float
    (holding the value rounded to ``v``'s dtype)."""
    cdef Seg s
    v = _as_float_array(v, "v", 0)
    v = np.ascontiguousarray(v)
    s.data = <char*>cnp.PyArray_DATA(v)
    s.size = cnp.PyArray_SIZE(v)
    s.is_double = cnp.PyArray_TYPE(v) == cnp.NPY_DOUBLE
    return _one_norm(&s, norm_kind(p), p)


# --------------------------------------------------------------------------------------------------
# elementwise passes over all arrays: scaling, clamping, averaging
# --------------------------------------------------------------------------------------------------

cdef enum:
    OP_MUL = 0        # x *= a
    OP_CLAMP = 1      # x = min(max(x, -a), a), NaN-propagating like torch.clamp_min_/clamp_max_
    OP_LERP = 2       # x = lerp(x, other, w), ATen's two-sided lerp (a = w, b = w - 1)
    OP_MEAN = 3       # x = x + (other - x) / a (torch's get_swa_avg_fn with a = n_averaged + 1)
    OP_AXPY = 4       # x = fma(a, other, x) (ATen's vectorised add_ with alpha)


cdef inline floating _clamp_min(floating x, floating lo) noexcept nogil:
    if isnan(x) or isnan(lo):
        return x + lo
    return x if x > lo else lo


cdef inline floating _clamp_max(floating x, floating hi) noexcept nogil:
    if isnan(x) or isnan(hi):
        return x + hi
    return x if x < hi else hi


cdef void _elementwise(floating* x, const floating* y, Py_ssize_t n, int op, floating a,
                       floating b) noexcept nogil:
    # in blocks with software prefetch (_kernels/_prefetch.pxi), as the optimizer loops
    cdef Py_ssize_t blk = 0, end
    while blk < n:
        end = fo_pf_end(blk, n)
        if fo_pf_due(blk, n):
            fo_pf(x, blk, sizeof(floating))
            if y != NULL:
                fo_pf(y, blk, sizeof(floating))
        _elementwise_block(x + blk, y + blk if y != NULL else NULL, end - blk, op, a, b)
        blk = end


cdef inline void _elementwise_block(floating* x, const floating* y, Py_ssize_t n, int op, floating a,
                                    floating b) noexcept nogil:
    cdef Py_ssize_t i
    if op == OP_MUL:
        for i in range(n):
            x[i] = x[i] * a
    elif op == OP_CLAMP:
        for i in range(n):
            x[i] = _clamp_max(_clamp_min(x[i], -a), a)
    elif op == OP_MEAN:
        for i in range(n):
            x[i] = x[i] + (y[i] - x[i]) / a
    elif op == OP_AXPY:
        for i in range(n):
            x[i] = _fma(a, y[i], x[i])
    elif fabs(<double>a) < 0.5:
        for i in range(n):
            x[i] = _fma(a, y[i] - x[i], x[i])         # self + w * (end - self)
    else:
        for i in range(n):
            x[i] = _fma(b, y[i] - x[i], y[i])         # end - (end - self) * (1 - w)


cdef void _share(const Seg* segs, Py_ssize_t nseg, Py_ssize_t lo, Py_ssize_t hi, int op,
                 double a32, double b32, double a64, double b64) noexcept nogil:
    cdef Py_ssize_t k = 0, s, e, top = nseg, mid
    while k < top:                                # the first segment ending after lo
        mid = (k + top) // 2
        if segs[mid].start + segs[mid].size <= lo:
            k = mid + 1
        else:
            top = mid
    while k < nseg and segs[k].start < hi:
        s = lo - segs[k].start if lo > segs[k].start else 0
        e = hi - segs[k].start if hi < segs[k].start + segs[k].size else segs[k].size
        if e > s:
            if segs[k].is_double:
                _elementwise[double]((<double*>segs[k].data) + s,
                                     (<const double*>segs[k].other) + s if segs[k].other != NULL else NULL,
                                     e - s, op, a64, b64)
            else:
                _elementwise[float]((<float*>segs[k].data) + s,
                                    (<const float*>segs[k].other) + s if segs[k].other != NULL else NULL,
                                    e - s, op, <float>a32, <float>b32)
        k += 1


cdef cnp.ndarray _writable(object obj, str name, Py_ssize_t i):
    cdef cnp.ndarray a = _as_float_array(obj, name, i)
    if not cnp.PyArray_ISWRITEABLE(a):
        raise ValueError(f"{name}[{i}] is read-only and cannot be updated in place; pass a "
                         f"writeable array (for example a.copy())")
    return a


cdef inline bint _is_plain(cnp.ndarray a) noexcept:
    return cnp.PyArray_IS_C_CONTIGUOUS(a) and cnp.PyArray_ISALIGNED(a)


cdef _numpy_fallback(cnp.ndarray x, object y, int op, double a32, double b32, double a64,
                     double b64):
    """The same element operation for an array the compiled pass cannot address (non-contiguous
    or unaligned): through a contiguous copy, written back."""
    cdef cnp.ndarray tmp = np.ascontiguousarray(x)
    cdef list others = None if y is None else [np.ascontiguousarray(y)]
    _run([tmp], others, op, a32, b32, a64, b64)
    x[...] = tmp


cdef _run(list arrays, list others, int op, double a32, double b32, double a64, double b64,
          bint reuse_order=False):
    """Validate every array (nothing is modified on error), then one compiled pass over all.

    By default each thread takes an equal contiguous share of the arrays' elements in list order.
    With ``reuse_order`` (the scaling after :func:`array_norms` read the same arrays), each array
    goes to the thread that computed its norm (the same tasks and fixed owners, ``_owners``), which
    walks its arrays in the reverse of the order it read them, so what it read last, still in its
    cache, is updated first; when the norm pass ran on one thread (one array, or little work) the
    elements are shared as by default. Every element is still updated once, from its own value:
    the result is the same bits either way.
    """
    cdef Py_ssize_t n = len(arrays), i, total = 0, j, ntask = 0, k, a, b
    cdef cnp.ndarray x, y
    cdef list keep = []
    cdef list strided = []
    cdef int nt, t
    cdef Py_ssize_t* order = NULL
    cdef Py_ssize_t* task = NULL
    cdef int* owner = NULL
    if others is not None and len(others) != n:
        raise ValueError(f"got {n} arrays to update but {len(others)} current arrays; pass one "
                         f"per averaged array")
    cdef Seg* segs = <Seg*>malloc((n if n > 0 else 1) * sizeof(Seg))
    if segs == NULL:
        raise MemoryError()
    try:
        j = 0
        for i in range(n):
            x = _writable(arrays[i], "arrays", i)
            y = None
            if others is not None:
                y = _as_float_array(others[i], "current", i)
                if cnp.PyArray_TYPE(y) != cnp.PyArray_TYPE(x) or (<object>y).shape != (<object>x).shape:
                    raise ValueError(
                        f"current[{i}] has dtype {y.dtype} and shape {(<object>y).shape} but the "
                        f"averaged array has dtype {x.dtype} and shape {(<object>x).shape}; they "
                        f"must match")
                if not _is_plain(y):
                    y = np.ascontiguousarray(y)
                    keep.append(y)
            if not _is_plain(x):
                strided.append((x, y))
                continue
            segs[j].data = <char*>cnp.PyArray_DATA(x)
            segs[j].other = <const char*>cnp.PyArray_DATA(y) if y is not None else NULL
            segs[j].size = cnp.PyArray_SIZE(x)
            segs[j].is_double = cnp.PyArray_TYPE(x) == cnp.NPY_DOUBLE
            if segs[j].size == 0:
                continue
            segs[j].start = total
            total += segs[j].size
            j += 1
        nt = _threads_for(total, total)
        if reuse_order and j > 1 and nt > 1:
            order = <Py_ssize_t*>malloc(j * sizeof(Py_ssize_t))
            task = <Py_ssize_t*>malloc(2 * j * sizeof(Py_ssize_t))
            owner = <int*>malloc(j * sizeof(int))
            if order == NULL or task == NULL or owner == NULL:
                raise MemoryError()
            _by_size(segs, j, order)
            ntask = _pair_tasks(segs, j, True, order, task)
            nt = min(_threads_for(total, ntask), 64)   # as array_norms counts its threads
            if nt > 1:
                _owners(segs, task, ntask, nt, owner)
            else:
                nt = _threads_for(total, total)
                ntask = 0
        with nogil:
            if nt <= 1:
                _share(segs, j, 0, total, op, a32, b32, a64, b64)
            elif ntask > 0:
                for t in prange(nt, schedule="static", num_threads=nt):
                    for k in range(ntask - 1, -1, -1):
                        if owner[k] == t:
                            a = task[2 * k]
                            b = task[2 * k + 1]
                            if b >= 0:
                                _share(&segs[b], 1, segs[b].start, segs[b].start + segs[b].size,
                                       op, a32, b32, a64, b64)
                            _share(&segs[a], 1, segs[a].start, segs[a].start + segs[a].size,
                                   op, a32, b32, a64, b64)
            else:
                for t in prange(nt, schedule="static", num_threads=nt):
                    _share(segs, j, _bound(total, t, nt), _bound(total, t + 1, nt), op,
                           a32, b32, a64, b64)
    finally:
        free(segs)
        free(order)
        free(task)
        free(owner)
    for x, y in strided:
        _numpy_fallback(x, y, op, a32, b32, a64, b64)


def grads_of(list params):
    """The ``.grad`` of every parameter that has one (torch's ``[p.grad for p in params if
    p.grad is not None]``), with a clear error for objects without ``.grad``."""
    cdef list out = []
    cdef Py_ssize_t i
    cdef object g
    for i in range(len(params)):
        try:
            g = params[i].grad
        except AttributeError:
            raise TypeError(
                f"parameters[{i}] is a {type(params[i]).__name__}, which has no .grad; pass "
                f"fastoptim.Parameter objects (use get_total_norm for plain arrays)") from None
        if g is not None:
            out.append(g)
    return out


def total_norm(list arrays, double p):
    """torch's ``vector_norm(stack([vector_norm(a, p) for a in arrays]), p)``: per-array norms in
    one compiled pass, then the norm of the norms. Returns ``(value, is_float64)``.

    torch groups the arrays by dtype and stacks the groups' norms promoted to the widest dtype; its
    grouping (a C++ hash map) yields the groups in reverse order of first appearance (measured; the
    order matters for p-norms summed left to right).
    """
    cdef cnp.ndarray norms = array_norms(arrays, p)
    cdef Py_ssize_t n = len(arrays), i
    cdef int first = -1, t
    cdef bint mixed = False
    for i in range(n):
        t = cnp.PyArray_TYPE(<cnp.ndarray>arrays[i])
        if first < 0:
            first = t
        elif t != first:
            mixed = True
    if not mixed:
        if first == cnp.NPY_DOUBLE:
            return vector_norm(norms, p), True
        return vector_norm(norms.astype(np.float32), p), False
    order = [i for i in range(n) if cnp.PyArray_TYPE(<cnp.ndarray>arrays[i]) != first]
    order += [i for i in range(n) if cnp.PyArray_TYPE(<cnp.ndarray>arrays[i]) == first]
    return vector_norm(norms[order], p), True


def scale(list arrays, double coef32, double coef64):
    """``x *= coef`` for every array, float32 arrays by ``float32(coef32)``, float64 by ``coef64``.

    Walks the arrays in the reverse of :func:`array_norms`' order (clipping scales right after
    the norm pass: the arrays read last are still in the cache)."""
    _run(arrays, None, OP_MUL, coef32, 0.0, coef64, 0.0, True)


def clamp(list arrays, double clip_value):
    """``x = clamp(x, -clip_value, clip_value)`` (in each array's dtype; NaN propagates)."""
    _run(arrays, None, OP_CLAMP, clip_value, 0.0, clip_value, 0.0)


def lerp(list averaged, list current, double weight32, double weight64):
    """``averaged[i] = lerp(averaged[i], current[i], w)`` for all arrays (torch's ``_foreach_lerp_``
    on CPU), ``w`` = ``float32(weight32)`` for float32 arrays and ``weight64`` for float64."""
    cdef float w32 = <float>weight32
    _run(averaged, current, OP_LERP, w32, w32 - <float>1, weight64, weight64 - 1.0)


def running_mean(list averaged, list current, double count):
    """``averaged[i] += (current[i] - averaged[i]) / count`` for all arrays, ``count`` rounded to
    each array's dtype (torch's ``get_swa_avg_fn`` with its int64 counter)."""
    _run(averaged, current, OP_MEAN, count, 0.0, count, 0.0)


# --------------------------------------------------------------------------------------------------
# torch's CPU dot product (LBFGS): MKL's sdot/ddot summation order, reproduced bit for bit
# --------------------------------------------------------------------------------------------------
# torch's ``a.dot(b)`` for float32/float64 calls its BLAS (MKL in the x86-64 wheels). Its order was
# recovered by experiment against torch 2.13 on the AMD EPYC (Zen 4) build machine, where MKL runs
# its generic x86 code path, one thread (n up to 4099, 100 random vectors per length, every result
# equal; the summation tree read off with the +M/-M probe):
#   float32: four 4-lane accumulators over blocks of 16 (acc[k] += x[16t+4k : 16t+4k+4] * y[...],
#            products rounded, no FMA); of the remainder (< 16) a pair of vectors goes to acc[0]
#            and acc[1], a single vector to acc[0], the last n % 4 elements one by one to lane 0
#            of acc[0]; then acc[0] + acc[1] + acc[2] + acc[3] per lane, left to right, and the
#            lanes as (l0 + l2) + (l1 + l3).
#   float64: four 2-lane accumulators over blocks of 8; the remainder's whole vectors to acc[0], the
#            last odd element to lane 0 of acc[0]; accumulators left to right, then l0 + l1.
# That is MKL's order for 16-byte-aligned vectors (torch allocates at 64 bytes; on a misaligned
# vector MKL first peels elements up to the boundary).
# On Intel CPUs with AVX-512 MKL takes its AVX-512 code path, whose float64 order was recovered the
# same way (Intel Xeon, torch 2.13, one thread; lengths 1-139, 257, 1001, 1031, 3 random vectors
# each, every result equal):
#   float64: four 8-lane accumulators over blocks of 32, fused multiply-adds; of the remainder a
#            pair of vectors goes to acc[0] and acc[1], a single vector to acc[0], the last n % 8
#            elements (a masked vector) to their lanes of acc[0]; then (acc[0] + acc[1]) +
#            (acc[2] + acc[3]) per lane, and the lanes halved: l[j] + l[j+4], then + l[j+2], then
#            l0 + l1.
#   float32 there is another order, not recovered: the generic one above is used.
# Another BLAS or CPU family may sum differently; tests/test_train_optimizers.py checks these
# orders against the installed torch before it holds LBFGS to the tight bounds.

# whether MKL takes its AVX-512 path here (_kernels/_fmath.pxi, shared with the square root)
cdef bint _MKL_AVX512 = fo_mkl_avx512_cpu()


cdef double _mkl_ddot_avx512(const double* x, const double* y, Py_ssize_t n) noexcept nogil:
    # MKL's AVX-512 float64 order (above): four 8-lane accumulators, fused multiply-adds
    cdef double acc[4][8]
    cdef Py_ssize_t t = 0
    cdef int k, l, h
    for k in range(4):
        for l in range(8):
            acc[k][l] = 0
    while t + 32 <= n:
        for k in range(4):
            for l in range(8):
                acc[k][l] = _fma(x[t + 8 * k + l], y[t + 8 * k + l], acc[k][l])
        t += 32
    k = 0
    while t + 8 <= n:
        for l in range(8):
            acc[k][l] = _fma(x[t + l], y[t + l], acc[k][l])
        t += 8
        k ^= 1
    for l in range(n - t):
        acc[0][l] = _fma(x[t + l], y[t + l], acc[0][l])
    for l in range(8):
        acc[0][l] = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l])
    h = 4
    while h >= 1:
        for l in range(h):
            acc[0][l] = acc[0][l] + acc[0][l + h]
        h //= 2
    return acc[0][0]


cdef floating _mkl_dot(const floating* x, const floating* y, Py_ssize_t n) noexcept nogil:
    # L lanes per vector (16 bytes), four accumulator vectors; the two orders above differ only in
    # where the remainder's whole vectors go (float32 alternates acc[0]/acc[1], float64 all to
    # acc[0]) and in how the lanes are added at the end
    cdef int L = 4 if floating is float else 2
    cdef floating acc[4][4]
    cdef Py_ssize_t t = 0
    cdef int k, l
    for k in range(4):
        for l in range(4):
            acc[k][l] = 0
    while t + 4 * L <= n:
        for k in range(4):
            for l in range(L):
                acc[k][l] = acc[k][l] + x[t + L * k + l] * y[t + L * k + l]
        t += 4 * L
    k = 0
    while t + L <= n:
        for l in range(L):
            acc[k][l] = acc[k][l] + x[t + l] * y[t + l]
        t += L
        if floating is float:
            k ^= 1
    while t < n:
        acc[0][0] = acc[0][0] + x[t] * y[t]
        t += 1
    for k in range(1, 4):
        for l in range(L):
            acc[0][l] = acc[0][l] + acc[k][l]
    if floating is float:
        return (acc[0][0] + acc[0][2]) + (acc[0][1] + acc[0][3])
    return acc[0][0] + acc[0][1]


def blas_dot(cnp.ndarray x, cnp.ndarray y):
    """torch's CPU ``x.dot(y)`` (MKL's order for this CPU, see above) of two 1-d float32/float64 arrays of one
    dtype and length, as a Python float holding the value rounded to their dtype."""
    x = np.ascontiguousarray(_as_float_array(x, "x", 0))
    y = np.ascontiguousarray(_as_float_array(y, "y", 0))
    if x.ndim != 1 or y.ndim != 1 or x.shape[0] != y.shape[0] or x.dtype != y.dtype:
        raise ValueError(f"dot needs two 1-d arrays of one length and dtype, got {x.dtype} "
                         f"{(<object>x).shape} and {y.dtype} {(<object>y).shape}")
    cdef Py_ssize_t n = x.shape[0]
    cdef double r
    if cnp.PyArray_TYPE(x) == cnp.NPY_DOUBLE:
        with nogil:
            if _MKL_AVX512:
                r = _mkl_ddot_avx512(<const double*>cnp.PyArray_DATA(x), <const double*>cnp.PyArray_DATA(y), n)
            else:
                r = _mkl_dot(<const double*>cnp.PyArray_DATA(x), <const double*>cnp.PyArray_DATA(y), n)
    else:
        with nogil:
            r = _mkl_dot(<const float*>cnp.PyArray_DATA(x), <const float*>cnp.PyArray_DATA(y), n)
    return r


# --------------------------------------------------------------------------------------------------
# torch's CPU sum of a contiguous 1-d array (LBFGS's ``flat_grad.abs().sum()``)
# --------------------------------------------------------------------------------------------------
# ATen's cascade sum (aten/src/ATen/native/cpu/SumKernel.cpp: vectorized_inner_sum, row_sum,
# multi_row_sum) as its AVX2 build runs it (8 float32 / 4 float64 lanes, as measured here), one
# thread: the whole vectors in rows of 4, summed over up to 4 cascade levels of 2**max(4,
# ceil(log2(rows)) / 4) rows each, the leftover vectors into row 0, rows 1-3 into row 0, then the
# scalar tail summed left to right and the lanes added to it left to right; fewer elements than
# one vector go through the same row sum with 1-element "vectors". Checked bit for bit against
# torch.sum (lengths 1 to 70000, both dtypes, tests/test_train_optimizers.py).

cdef inline int _ceil_log2(Py_ssize_t x) noexcept nogil:
    cdef int r = 0
    x -= 1
    while x > 0:
        x >>= 1
        r += 1
    return r


cdef void _multi_row_sum(const floating* x, Py_ssize_t size, Py_ssize_t lw,
                         floating* out) noexcept nogil:
    """Rows of ``4 * lw`` elements; ``out[0 : 4 * lw]`` = ATen's multi_row_sum<4> of them."""
    cdef floating acc[4][32]
    cdef Py_ssize_t W = 4 * lw, i = 0, jj, e
    cdef int j, level_power = _ceil_log2(size) // 4
    cdef Py_ssize_t level_step, level_mask
    if level_power < 4:
        level_power = 4
    level_step = (<Py_ssize_t>1) << level_power
    level_mask = level_step - 1
    for j in range(4):
        for e in range(W):
            acc[j][e] = 0
    while i + level_step <= size:
        for jj in range(level_step):
            for e in range(W):
                acc[0][e] = acc[0][e] + x[i * W + e]
            i += 1
        for j in range(1, 4):
            for e in range(W):
                acc[j][e] = acc[j][e] + acc[j - 1][e]
                acc[j - 1][e] = 0
            if (i & (level_mask << (j * level_power))) != 0:
                break
    while i < size:
        for e in range(W):
            acc[0][e] = acc[0][e] + x[i * W + e]
        i += 1
    for j in range(1, 4):
        for e in range(W):
            acc[0][e] = acc[0][e] + acc[j][e]
    for e in range(W):
        out[e] = acc[0][e]


cdef floating _aten_sum(const floating* x, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t L = 8 if floating is float else 4
    cdef Py_ssize_t vec_size = n // L, size_ilp, i, l
    cdef int k
    cdef floating P[32]
    cdef floating f = 0
    for i in range(32):
        P[i] = 0
    if vec_size == 0:
        size_ilp = n // 4
        if size_ilp > 0:
            _multi_row_sum(x, size_ilp, 1, P)
        for i in range(size_ilp * 4, n):
            P[0] = P[0] + x[i]
        for k in range(1, 4):
            P[0] = P[0] + P[k]
        return P[0]
    size_ilp = vec_size // 4
    if size_ilp > 0:
        _multi_row_sum(x, size_ilp, L, P)
    for i in range(size_ilp * 4, vec_size):
        for l in range(L):
            P[l] = P[l] + x[i * L + l]
    for k in range(1, 4):
        for l in range(L):
            P[l] = P[l] + P[k * L + l]
    for i in range(vec_size * L, n):
        f = f + x[i]
    for l in range(L):
        f = f + P[l]
    return f


def aten_sum(cnp.ndarray x):
    """torch's single-threaded CPU ``x.sum()`` of a 1-d float32/float64 array (ATen's cascade
    order, see above), as a Python float holding the value rounded to ``x``'s dtype."""
    x = np.ascontiguousarray(_as_float_array(x, "x", 0))
    if x.ndim != 1:
        raise ValueError(f"aten_sum needs a 1-d array, got shape {(<object>x).shape}")
    cdef Py_ssize_t n = x.shape[0]
    cdef double r
    if cnp.PyArray_TYPE(x) == cnp.NPY_DOUBLE:
        with nogil:
            r = _aten_sum[double](<const double*>cnp.PyArray_DATA(x), n)
    else:
        with nogil:
            r = _aten_sum[float](<const float*>cnp.PyArray_DATA(x), n)
    return r


# --------------------------------------------------------------------------------------------------
# Adafactor's factored second moment (fastoptim/adafactor.py): torch's single-tensor op order
# --------------------------------------------------------------------------------------------------

cdef void _ada_means(const floating* g, Py_ssize_t B, Py_ssize_t m, Py_ssize_t n,
                     floating* rowm, floating* colm, floating* colacc) noexcept nogil:
    """row_mean = norm(g, dim=-1)**2 / n and col_mean = norm(g, dim=-2)**2 / m per batch entry."""
    cdef Py_ssize_t b, i, j
    cdef const floating* row
    cdef floating r, x
    for b in range(B):
        for j in range(n):
            colacc[j] = 0
        for i in range(m):
            row = g + (b * m + i) * n
            r = _norm_two(row, n)
            rowm[b * m + i] = (r * r) / (<floating>n)
            for j in range(n):
                x = row[j]
                colacc[j] = colacc[j] + x * x
        for j in range(n):
            if floating is float:
                r = sqrtf(colacc[j])
            else:
                r = sqrt(colacc[j])
            colm[b * n + j] = (r * r) / (<floating>m)


cdef void _ada_update(const floating* g, const floating* rowv, const floating* colv,
                      const floating* rmean, Py_ssize_t B, Py_ssize_t m, Py_ssize_t n,
                      floating eps1sq, floating* u) noexcept nogil:
    """u = g * rsqrt(clamp((row_var @ col_var) / rmean, min=eps1**2)), elementwise."""
    cdef Py_ssize_t b, i, j, k
    cdef floating v, rv, den
    for b in range(B):
        den = rmean[b]
        for i in range(m):
            rv = rowv[b * m + i]
            k = (b * m + i) * n
            for j in range(n):
                v = (rv * colv[b * n + j]) / den
                if v < eps1sq:                      # clamp_(min=...): NaN stays NaN
                    v = eps1sq
                if floating is float:
                    u[k + j] = ((<floating>1) / sqrtf(v)) * g[k + j]
                else:
                    u[k + j] = ((<floating>1) / sqrt(v)) * g[k + j]


def adafactor_means(cnp.ndarray g, cnp.ndarray rowm, cnp.ndarray colm):
    """Fill ``rowm`` (B, m) and ``colm`` (B, n) from the contiguous gradient ``g`` (B, m, n)."""
    cdef Py_ssize_t B = g.shape[0], m = g.shape[1], n = g.shape[2]
    cdef cnp.ndarray acc = np.empty(n if n > 0 else 1, g.dtype)
    if cnp.PyArray_TYPE(g) == cnp.NPY_DOUBLE:
        with nogil:
            _ada_means[double](<const double*>cnp.PyArray_DATA(g), B, m, n,
                               <double*>cnp.PyArray_DATA(rowm), <double*>cnp.PyArray_DATA(colm),
                               <double*>cnp.PyArray_DATA(acc))
    else:
        with nogil:
            _ada_means[float](<const float*>cnp.PyArray_DATA(g), B, m, n,
                              <float*>cnp.PyArray_DATA(rowm), <float*>cnp.PyArray_DATA(colm),
                              <float*>cnp.PyArray_DATA(acc))


def adafactor_update(cnp.ndarray g, cnp.ndarray rowv, cnp.ndarray colv, cnp.ndarray rmean,
                     double eps1sq, cnp.ndarray out):
    """``out`` (B, m, n) = Adafactor's normalised update of the contiguous gradient ``g``."""
    cdef Py_ssize_t B = g.shape[0], m = g.shape[1], n = g.shape[2]
    if cnp.PyArray_TYPE(g) == cnp.NPY_DOUBLE:
        with nogil:
            _ada_update[double](<const double*>cnp.PyArray_DATA(g), <const double*>cnp.PyArray_DATA(rowv),
                                <const double*>cnp.PyArray_DATA(colv), <const double*>cnp.PyArray_DATA(rmean),
                                B, m, n, eps1sq, <double*>cnp.PyArray_DATA(out))
    else:
        with nogil:
            _ada_update[float](<const float*>cnp.PyArray_DATA(g), <const float*>cnp.PyArray_DATA(rowv),
                               <const float*>cnp.PyArray_DATA(colv), <const float*>cnp.PyArray_DATA(rmean),
                               B, m, n, <float>eps1sq, <float*>cnp.PyArray_DATA(out))


def axpy(list xs, list ys, double alpha):
    """``x = fma(alpha, y, x)`` for all arrays (ATen's vectorised ``x.add_(y, alpha=alpha)``),
    ``alpha`` rounded to each array's dtype."""
    _run(xs, ys, OP_AXPY, alpha, 0.0, alpha, 0.0)
