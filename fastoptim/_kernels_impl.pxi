# The optimizer element loops. This file is included by ``_kernels_<variant>.pyx``, one compiled copy
# per instruction-set level (see setup.py); ``fastoptim/_dispatch.py`` imports the best copy the CPU
# can run. Kernels know nothing of param groups or state dicts: they take lists of arrays.
#
# Three layers, as in scikit-learn's Cython code:
#   1. ``cdef inline ... noexcept nogil`` element loops over one contiguous segment of one array,
#      with the optional features (weight decay, momentum, nesterov, amsgrad) as compile-time
#      constants of each specialised copy, so no flag is tested per element;
#   2. a parallel driver: one ``prange`` over the threads, each thread taking an equal share of the
#      elements of *all* arrays of the call (so 1000 arrays of 1k cost what one of 1M costs);
#   3. ``def`` entry points that validate every array (with the GIL, before any element is touched),
#      collect data pointers through the NumPy C API and call the driver without the GIL.
#
# Rounding: torch 2.13's CPU single-tensor path, op by op (reference section 2.4). ``fma`` is
# called exactly where torch fuses; everything else is a separately rounded IEEE operation in the
# parameter's dtype (the build uses ``-ffp-contract=off``). Python scalars are cast to the dtype
# once; per-step scalars (bias corrections) are computed in double with C ``pow`` as CPython does.
# Each element is computed by exactly one thread from its own inputs, so results are bitwise
# identical for every thread count.

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport fma, fmaf, sqrt, sqrtf, pow, fabs
from libc.stdlib cimport malloc, free
from cpython.long cimport PyLong_Check
cimport numpy as cnp

import operator

import numpy as np

from fastoptim._openmp cimport omp_get_max_threads

cnp.import_array()

# Below this much work per thread, starting another thread costs more than it brings (an OpenMP
# fork/join costs a few microseconds). Work is counted in SGD elements; an Adam element counts
# twice (it does two divisions and a square root, so a second thread pays off on half as many
# elements). Measured with benchmarks/threshold.py on a 2-core Xeon: 2 threads beat 1 from about
# 16k SGD elements and 8k Adam elements per thread (docs/threads.rst).
cdef Py_ssize_t _min_elements_per_thread = 16384
cdef enum:
    _ADAM_WORK_PER_ELEMENT = 2

# Thread shares start on a multiple of this many elements (64 bytes of float32) so that two
# threads never write the same cache line in the middle of an array.
cdef enum:
    _ALIGN = 16


def get_min_elements_per_thread():
    """Work per thread under which one more thread is not started (in SGD elements; an Adam
    element counts twice)."""
    return _min_elements_per_thread


def set_min_elements_per_thread(Py_ssize_t n):
    """Set the threading threshold (tests use 1 to force several threads on tiny inputs)."""
    global _min_elements_per_thread
    if n < 1:
        raise ValueError(f"min_elements_per_thread must be >= 1, got {n}")
    _min_elements_per_thread = n


cdef struct Segment:
    char* param              # INOUT
    const char* grad         # IN
    char* buf0               # INOUT: momentum_buffer (SGD) or exp_avg (Adam)
    char* buf1               # INOUT: exp_avg_sq
    char* buf2               # INOUT: max_exp_avg_sq
    Py_ssize_t size
    Py_ssize_t start         # index of this array's first element in the call's flattened work
    double neg_step_size     # Adam: -lr / (1 - beta1**step)
    double bc2_sqrt          # Adam: (1 - beta2**step) ** 0.5
    int first                # SGD: the momentum buffer was created by this call


# --------------------------------------------------------------------------------------------------
# 1. element loops
# --------------------------------------------------------------------------------------------------

cdef inline floating _fma(floating a, floating b, floating c) noexcept nogil:
    if floating is float:
        return fmaf(a, b, c)
    else:
        return fma(a, b, c)


cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline void _sgd_loop(floating* p, const floating* g, floating* buf, Py_ssize_t n,
                           floating sign, floating neg_lr, floating wd, floating momentum,
                           floating one_minus_dampening,
                           bint has_wd, int mode, bint nesterov) noexcept nogil:
    """SGD on n elements; ``mode`` 0: no momentum, 1: first momentum step, 2: later steps."""
    cdef Py_ssize_t i
    cdef floating d, b = 0
    for i in range(n):
        d = g[i] * sign                                   # maximize: sign = -1 (exact negation)
        if has_wd:
            d = _fma(p[i], wd, d)                         # grad.add(param, alpha=wd)
        if mode == 1:
            b = d                                         # buf = grad.clone(): no dampening
            buf[i] = b
        elif mode == 2:
            b = _fma(d, one_minus_dampening, buf[i] * momentum)   # buf.mul_(m).add_(grad, alpha=1-damp)
            buf[i] = b
        if mode != 0:
            if nesterov:
                d = _fma(b, momentum, d)                  # grad.add(buf, alpha=momentum)
            else:
                d = b
        p[i] = _fma(d, neg_lr, p[i])                      # param.add_(grad, alpha=-lr)


cdef inline void _sgd_segment(floating* p, const floating* g, floating* buf, Py_ssize_t n,
                              floating sign, floating neg_lr, floating wd, floating momentum,
                              floating one_minus_dampening,
                              bint has_wd, int mode, bint nesterov) noexcept nogil:
    # Each branch calls the loop with literal flags, so the C compiler emits one specialised,
    # vectorised loop per combination and the flags are tested once per segment.
    if has_wd:
        if mode == 0:
            _sgd_loop(p, g, buf, n, sign, neg_lr, wd, momentum, one_minus_dampening, True, 0, False)
        elif mode == 1:
            if nesterov:
                _sgd_loop(p, g, buf, n, sign, neg_lr, wd, momentum, one_minus_dampening, True, 1, True)
            else:
                _sgd_loop(p, g, buf, n, sign, neg_lr, wd, momentum, one_minus_dampening, True, 1, False)
        else:
            if nesterov:
                _sgd_loop(p, g, buf, n, sign, neg_lr, wd, momentum, one_minus_dampening, True, 2, True)
            else:
                _sgd_loop(p, g, buf, n, sign, neg_lr, wd, momentum, one_minus_dampening, True, 2, False)
    else:
        if mode == 0:
            _sgd_loop(p, g, buf, n, sign, neg_lr, wd, momentum, one_minus_dampening, False, 0, False)
        elif mode == 1:
            if nesterov:
                _sgd_loop(p, g, buf, n, sign, neg_lr, wd, momentum, one_minus_dampening, False, 1, True)
            else:
                _sgd_loop(p, g, buf, n, sign, neg_lr, wd, momentum, one_minus_dampening, False, 1, False)
        else:
            if nesterov:
                _sgd_loop(p, g, buf, n, sign, neg_lr, wd, momentum, one_minus_dampening, False, 2, True)
            else:
                _sgd_loop(p, g, buf, n, sign, neg_lr, wd, momentum, one_minus_dampening, False, 2, False)


cdef inline void _adam_loop(floating* p, const floating* g, floating* m, floating* v, floating* vmax,
                            Py_ssize_t n, floating sign, floating neg_step_size, floating bc2_sqrt,
                            floating eps, floating wd, floating decay, floating w, floating w_minus_1,
                            floating beta2, floating one_minus_beta2,
                            int wd_mode, bint small_w, bint amsgrad) noexcept nogil:
    """Adam on n elements; ``wd_mode`` 0: none, 1: L2 (Adam), 2: decoupled (AdamW)."""
    cdef Py_ssize_t i
    cdef floating d, x, mi, vi, vm, s
    for i in range(n):
        d = g[i] * sign                                   # maximize: sign = -1 (exact negation)
        x = p[i]
        if wd_mode == 1:
            d = _fma(x, wd, d)                            # grad.add(param, alpha=wd)
        elif wd_mode == 2:
            x = x * decay                                 # param.mul_(1 - lr*wd)
        # exp_avg.lerp_(grad, 1 - beta1), ATen's two-sided lerp
        if small_w:
            mi = _fma(w, d - m[i], m[i])
        else:
            mi = _fma(w_minus_1, d - m[i], d)
        m[i] = mi
        vi = _fma(one_minus_beta2 * d, d, v[i] * beta2)   # exp_avg_sq.mul_(b2).addcmul_(g, g, 1-b2)
        v[i] = vi
        if amsgrad:
            vm = vmax[i]
            vm = vm if (vm > vi or vm != vm) else vi      # torch.maximum: NaN-propagating
            vmax[i] = vm
            s = _sqrt(vm)
        else:
            s = _sqrt(vi)
        s = s / bc2_sqrt + eps                            # (v.sqrt() / bc2_sqrt).add_(eps)
        p[i] = x + (neg_step_size * mi) / s               # param.addcdiv_(exp_avg, denom, -step_size)


cdef inline void _adam_segment(floating* p, const floating* g, floating* m, floating* v,
                               floating* vmax, Py_ssize_t n, floating sign,
                               floating neg_step_size, floating bc2_sqrt, floating eps, floating wd,
                               floating decay, floating w, floating w_minus_1, floating beta2,
                               floating one_minus_beta2,
                               int wd_mode, bint small_w, bint amsgrad) noexcept nogil:
    # One specialised loop per (weight decay, lerp branch, amsgrad) combination; see _sgd_segment.
    if amsgrad:
        if small_w:
            if wd_mode == 0:
                _adam_loop(p, g, m, v, vmax, n, sign, neg_step_size, bc2_sqrt, eps, wd, decay, w,
                           w_minus_1, beta2, one_minus_beta2, 0, True, True)
            elif wd_mode == 1:
                _adam_loop(p, g, m, v, vmax, n, sign, neg_step_size, bc2_sqrt, eps, wd, decay, w,
                           w_minus_1, beta2, one_minus_beta2, 1, True, True)
            else:
                _adam_loop(p, g, m, v, vmax, n, sign, neg_step_size, bc2_sqrt, eps, wd, decay, w,
                           w_minus_1, beta2, one_minus_beta2, 2, True, True)
        else:
            if wd_mode == 0:
                _adam_loop(p, g, m, v, vmax, n, sign, neg_step_size, bc2_sqrt, eps, wd, decay, w,
                           w_minus_1, beta2, one_minus_beta2, 0, False, True)
            elif wd_mode == 1:
                _adam_loop(p, g, m, v, vmax, n, sign, neg_step_size, bc2_sqrt, eps, wd, decay, w,
                           w_minus_1, beta2, one_minus_beta2, 1, False, True)
            else:
                _adam_loop(p, g, m, v, vmax, n, sign, neg_step_size, bc2_sqrt, eps, wd, decay, w,
                           w_minus_1, beta2, one_minus_beta2, 2, False, True)
    else:
        if small_w:
            if wd_mode == 0:
                _adam_loop(p, g, m, v, vmax, n, sign, neg_step_size, bc2_sqrt, eps, wd, decay, w,
                           w_minus_1, beta2, one_minus_beta2, 0, True, False)
            elif wd_mode == 1:
                _adam_loop(p, g, m, v, vmax, n, sign, neg_step_size, bc2_sqrt, eps, wd, decay, w,
                           w_minus_1, beta2, one_minus_beta2, 1, True, False)
            else:
                _adam_loop(p, g, m, v, vmax, n, sign, neg_step_size, bc2_sqrt, eps, wd, decay, w,
                           w_minus_1, beta2, one_minus_beta2, 2, True, False)
        else:
            if wd_mode == 0:
                _adam_loop(p, g, m, v, vmax, n, sign, neg_step_size, bc2_sqrt, eps, wd, decay, w,
                           w_minus_1, beta2, one_minus_beta2, 0, False, False)
            elif wd_mode == 1:
                _adam_loop(p, g, m, v, vmax, n, sign, neg_step_size, bc2_sqrt, eps, wd, decay, w,
                           w_minus_1, beta2, one_minus_beta2, 1, False, False)
            else:
                _adam_loop(p, g, m, v, vmax, n, sign, neg_step_size, bc2_sqrt, eps, wd, decay, w,
                           w_minus_1, beta2, one_minus_beta2, 2, False, False)


# --------------------------------------------------------------------------------------------------
# 2. parallel drivers
# --------------------------------------------------------------------------------------------------

cdef inline Py_ssize_t _share_bound(Py_ssize_t total, int t, int nthreads) noexcept nogil:
    """First flattened element of thread t's share (t == nthreads gives total)."""
    cdef Py_ssize_t b
    if t >= nthreads:
        return total
    b = <Py_ssize_t>((<double>total * t) / nthreads)
    return b - b % _ALIGN


cdef inline Py_ssize_t _first_segment(const Segment* segs, Py_ssize_t nseg, Py_ssize_t lo) noexcept nogil:
    """Index of the segment that holds flattened element ``lo`` (binary search on ``start``)."""
    cdef Py_ssize_t a = 0, b = nseg - 1, mid
    while a < b:
        mid = (a + b + 1) // 2
        if segs[mid].start <= lo:
            a = mid
        else:
            b = mid - 1
    return a


cdef void _sgd_share(const Segment* segs, Py_ssize_t nseg, Py_ssize_t lo, Py_ssize_t hi,
                     floating sign, floating neg_lr, floating wd, floating momentum,
                     floating one_minus_dampening, bint has_wd, bint use_momentum,
                     bint nesterov) noexcept nogil:
    cdef Py_ssize_t k, a, b
    cdef int mode
    if lo >= hi:
        return
    k = _first_segment(segs, nseg, lo)
    while k < nseg and segs[k].start < hi:
        a = lo - segs[k].start if lo > segs[k].start else 0
        b = hi - segs[k].start if hi < segs[k].start + segs[k].size else segs[k].size
        if b > a:
            mode = (1 if segs[k].first else 2) if use_momentum else 0
            _sgd_segment((<floating*>segs[k].param) + a, (<const floating*>segs[k].grad) + a,
                         (<floating*>segs[k].buf0) + a if use_momentum else NULL, b - a,
                         sign, neg_lr, wd, momentum, one_minus_dampening, has_wd, mode, nesterov)
        k += 1


cdef void _sgd_run(const Segment* segs, Py_ssize_t nseg, Py_ssize_t total, int nthreads,
                   floating sign, floating neg_lr, floating wd, floating momentum,
                   floating one_minus_dampening, bint has_wd, bint use_momentum,
                   bint nesterov) noexcept nogil:
    cdef int t
    if nthreads <= 1:
        _sgd_share(segs, nseg, 0, total, sign, neg_lr, wd, momentum, one_minus_dampening,
                   has_wd, use_momentum, nesterov)
        return
    for t in prange(nthreads, schedule="static", num_threads=nthreads):
        _sgd_share(segs, nseg, _share_bound(total, t, nthreads), _share_bound(total, t + 1, nthreads),
                   sign, neg_lr, wd, momentum, one_minus_dampening, has_wd, use_momentum, nesterov)


cdef void _adam_share(const Segment* segs, Py_ssize_t nseg, Py_ssize_t lo, Py_ssize_t hi,
                      floating sign, floating eps, floating wd, floating decay, floating w,
                      floating w_minus_1, floating beta2, floating one_minus_beta2,
                      int wd_mode, bint small_w, bint amsgrad) noexcept nogil:
    cdef Py_ssize_t k, a, b
    if lo >= hi:
        return
    k = _first_segment(segs, nseg, lo)
    while k < nseg and segs[k].start < hi:
        a = lo - segs[k].start if lo > segs[k].start else 0
        b = hi - segs[k].start if hi < segs[k].start + segs[k].size else segs[k].size
        if b > a:
            _adam_segment((<floating*>segs[k].param) + a, (<const floating*>segs[k].grad) + a,
                          (<floating*>segs[k].buf0) + a, (<floating*>segs[k].buf1) + a,
                          (<floating*>segs[k].buf2) + a if amsgrad else NULL, b - a, sign,
                          <floating>segs[k].neg_step_size, <floating>segs[k].bc2_sqrt, eps, wd,
                          decay, w, w_minus_1, beta2, one_minus_beta2, wd_mode, small_w, amsgrad)
        k += 1


cdef void _adam_run(const Segment* segs, Py_ssize_t nseg, Py_ssize_t total, int nthreads,
                    floating sign, floating eps, floating wd, floating decay, floating w,
                    floating w_minus_1, floating beta2, floating one_minus_beta2,
                    int wd_mode, bint small_w, bint amsgrad) noexcept nogil:
    cdef int t
    if nthreads <= 1:
        _adam_share(segs, nseg, 0, total, sign, eps, wd, decay, w, w_minus_1, beta2,
                    one_minus_beta2, wd_mode, small_w, amsgrad)
        return
    for t in prange(nthreads, schedule="static", num_threads=nthreads):
        _adam_share(segs, nseg, _share_bound(total, t, nthreads), _share_bound(total, t + 1, nthreads),
                    sign, eps, wd, decay, w, w_minus_1, beta2, one_minus_beta2,
                    wd_mode, small_w, amsgrad)


cdef int _threads_for(Py_ssize_t total) noexcept nogil:
    cdef int nthreads = omp_get_max_threads()
    cdef Py_ssize_t useful = total // _min_elements_per_thread
    if useful < 1:
        useful = 1
    if nthreads > useful:
        nthreads = <int>useful
    return nthreads if nthreads > 0 else 1


# --------------------------------------------------------------------------------------------------
# 3. validation and the Python entry points
# --------------------------------------------------------------------------------------------------

cdef inline bint _is_native_float(cnp.ndarray a, int typenum) noexcept:
    return cnp.PyArray_TYPE(a) == typenum and not cnp.PyArray_ISBYTESWAPPED(a)


cdef str _describe(object a):
    if isinstance(a, np.ndarray):
        return f"an array of dtype {a.dtype} and shape {a.shape}"
    return f"an object of type {type(a).__name__}"


cdef cnp.ndarray _check_param(object obj, str name, Py_ssize_t i):
    """A param or a state buffer: native float32/float64, C-contiguous, aligned, writeable."""
    cdef cnp.ndarray a
    if not isinstance(obj, cnp.ndarray):
        raise TypeError(f"{name}[{i}] must be a NumPy array, got {_describe(obj)}")
    a = <cnp.ndarray>obj
    if not (_is_native_float(a, cnp.NPY_FLOAT) or _is_native_float(a, cnp.NPY_DOUBLE)):
        raise TypeError(
            f"{name}[{i}] has dtype {a.dtype}; fastoptim updates float32 and float64 arrays in "
            f"native byte order only: convert it with a.astype(np.float32) or a.astype(np.float64)")
    if not cnp.PyArray_IS_C_CONTIGUOUS(a) or not cnp.PyArray_ISALIGNED(a):
        raise ValueError(
            f"{name}[{i}] is not a C-contiguous, aligned array and cannot be updated in place; "
            f"make it contiguous once with np.ascontiguousarray(...) and keep using that copy")
    if not cnp.PyArray_ISWRITEABLE(a):
        raise ValueError(
            f"{name}[{i}] is read-only and cannot be updated in place; pass a writeable array "
            f"(for example a.copy())")
    return a


cdef inline bint _same_shape(cnp.ndarray a, cnp.ndarray b) noexcept:
    # a plain loop: shapes have one or two dimensions, where a memcmp call costs more than it saves
    cdef int nd = cnp.PyArray_NDIM(a), k
    cdef cnp.npy_intp* da = cnp.PyArray_DIMS(a)
    cdef cnp.npy_intp* db = cnp.PyArray_DIMS(b)
    if nd != cnp.PyArray_NDIM(b):
        return False
    for k in range(nd):
        if da[k] != db[k]:
            return False
    return True


cdef cnp.ndarray _check_like(object obj, cnp.ndarray param, str name, Py_ssize_t i, bint is_grad):
    """An array that must have exactly ``param``'s shape and dtype.

    Gradients may be read-only or non-contiguous (they are only read; a non-contiguous or
    unaligned one is copied into a contiguous temporary). State buffers must be writeable and
    contiguous, like params.
    """
    cdef cnp.ndarray a
    if not isinstance(obj, cnp.ndarray):
        if is_grad and obj is None:
            raise TypeError(f"{name}[{i}] is None; pass only params that have a gradient")
        raise TypeError(f"{name}[{i}] must be a NumPy array, got {_describe(obj)}")
    a = <cnp.ndarray>obj
    if cnp.PyArray_TYPE(a) != cnp.PyArray_TYPE(param) or cnp.PyArray_ISBYTESWAPPED(a):
        raise TypeError(
            f"{name}[{i}] has dtype {a.dtype} but params[{i}] has dtype {param.dtype}; fastoptim "
            f"never casts silently: convert it with .astype(np.{param.dtype})")
    if not _same_shape(a, param):
        raise ValueError(
            f"{name}[{i}] has shape {(<object>a).shape} but params[{i}] has shape {(<object>param).shape}; "
            f"each must have exactly its parameter's shape")
    if is_grad:
        if not cnp.PyArray_IS_C_CONTIGUOUS(a) or not cnp.PyArray_ISALIGNED(a):
            a = np.ascontiguousarray(a)
        return a
    if not cnp.PyArray_IS_C_CONTIGUOUS(a) or not cnp.PyArray_ISALIGNED(a):
        raise ValueError(
            f"{name}[{i}] is not a C-contiguous, aligned array and cannot be updated in place; "
            f"make it contiguous with np.ascontiguousarray(...)")
    if not cnp.PyArray_ISWRITEABLE(a):
        raise ValueError(f"{name}[{i}] is read-only and cannot be updated in place")
    return a


cdef struct _Range:
    size_t lo
    size_t hi
    Py_ssize_t which    # index of the list in ``lists``
    Py_ssize_t index    # index in that list


cdef void _sort_ranges(_Range* r, _Range* tmp, Py_ssize_t n) noexcept nogil:
    """Bottom-up merge sort by ``lo`` (several times faster than qsort's callback per compare)."""
    cdef Py_ssize_t width = 1, lo, mid, hi, i, j, k
    cdef _Range* src = r
    cdef _Range* dst = tmp
    cdef _Range* swap
    while width < n:
        lo = 0
        while lo < n:
            mid = lo + width if lo + width < n else n
            hi = lo + 2 * width if lo + 2 * width < n else n
            i, j, k = lo, mid, lo
            while i < mid and j < hi:
                if src[j].lo < src[i].lo:
                    dst[k] = src[j]
                    j += 1
                else:
                    dst[k] = src[i]
                    i += 1
                k += 1
            while i < mid:
                dst[k] = src[i]
                i += 1
                k += 1
            while j < hi:
                dst[k] = src[j]
                j += 1
                k += 1
            lo = hi
        swap = src
        src = dst
        dst = swap
        width *= 2
    if src != r:
        for i in range(n):
            r[i] = src[i]


cdef _check_no_overlap(tuple lists, tuple names):
    """Refuse written arrays that share memory: threads would race on them.

    ``lists`` are lists of already validated arrays (``None`` entries are skipped); ``names``
    names each list for the error message. Sorting the address ranges costs O(n log n) C work.
    """
    cdef Py_ssize_t total = 0, j = 0, k, w
    cdef _Range* r
    cdef cnp.ndarray a
    cdef list lst
    for w in range(len(lists)):
        total += len(<list>lists[w])
    if total < 2:
        return
    r = <_Range*>malloc(2 * total * sizeof(_Range))
    if r == NULL:
        raise MemoryError()
    try:
        for w in range(len(lists)):
            lst = <list>lists[w]
            for k in range(len(lst)):
                if lst[k] is None:
                    continue
                a = <cnp.ndarray>lst[k]
                if cnp.PyArray_SIZE(a) == 0:
                    continue
                r[j].lo = <size_t>cnp.PyArray_DATA(a)
                r[j].hi = r[j].lo + <size_t>cnp.PyArray_NBYTES(a)
                r[j].which = w
                r[j].index = k
                j += 1
        _sort_ranges(r, r + total, j)
        for k in range(1, j):
            if r[k].lo < r[k - 1].hi:
                raise ValueError(
                    f"{names[r[k - 1].which]}[{r[k - 1].index}] and {names[r[k].which]}[{r[k].index}] "
                    f"share memory; every parameter and state buffer must be a separate array "
                    f"(pass each parameter once)")
    finally:
        free(r)


cdef class _Plan:
    """Segments of one call, split by dtype, plus the references that keep them alive."""
    cdef Segment* segs32
    cdef Segment* segs64
    cdef Py_ssize_t n32, n64, total32, total64
    cdef list keepalive

    def __cinit__(self, Py_ssize_t n):
        self.segs32 = <Segment*>malloc((n if n > 0 else 1) * sizeof(Segment))
        self.segs64 = <Segment*>malloc((n if n > 0 else 1) * sizeof(Segment))
        if self.segs32 == NULL or self.segs64 == NULL:
            raise MemoryError()
        self.n32 = self.n64 = self.total32 = self.total64 = 0
        self.keepalive = []

    def __dealloc__(self):
        free(self.segs32)
        free(self.segs64)

    cdef Segment* add(self, cnp.ndarray param, cnp.ndarray grad):
        cdef Segment* s
        cdef Py_ssize_t size = cnp.PyArray_SIZE(param)
        if cnp.PyArray_TYPE(param) == cnp.NPY_FLOAT:
            s = &self.segs32[self.n32]
            s.start = self.total32
            self.n32 += 1
            self.total32 += size
        else:
            s = &self.segs64[self.n64]
            s.start = self.total64
            self.n64 += 1
            self.total64 += size
        s.param = <char*>cnp.PyArray_DATA(param)
        s.grad = <const char*>cnp.PyArray_DATA(grad)
        s.buf0 = s.buf1 = s.buf2 = NULL
        s.size = size
        s.neg_step_size = s.bc2_sqrt = 0.0
        s.first = 0
        return s


cdef inline Py_ssize_t _check_lengths(str what, list names, tuple lists) except -1:
    cdef Py_ssize_t n = len(lists[0]), k
    for k in range(1, len(lists)):
        if len(lists[k]) != n:
            raise ValueError(
                f"{what}: {names[k]} has {len(lists[k])} entries but {names[0]} has {n}; "
                f"pass one entry per parameter")
    return n


def sgd(list params, list grads, list momentum_buffer_list, *, double lr, double weight_decay,
        double momentum, double dampening, bint nesterov, bint maximize,
        bint check_overlap=True):
    """SGD step over all arrays in one compiled call (see ``fastoptim.functional.sgd``).

    ``momentum_buffer_list`` entries that are ``None`` get a new buffer (stored into the list)
    holding the first momentum step. Everything is validated before any array is modified.
    """
    cdef Py_ssize_t n, i
    cdef cnp.ndarray p, g, b
    cdef Segment* s
    cdef bint use_momentum = momentum != 0.0
    cdef bint has_wd = weight_decay != 0.0
    cdef list created = []
    cdef _Plan plan
    cdef int nt

    if use_momentum:
        n = _check_lengths("sgd", ["params", "grads", "momentum_buffer_list"],
                           (params, grads, momentum_buffer_list))
    else:
        n = _check_lengths("sgd", ["params", "grads"], (params, grads))
    plan = _Plan(n)
    # Pass 1 (GIL held): validate everything and collect pointers; nothing is modified yet.
    for i in range(n):
        p = _check_param(params[i], "params", i)
        g = _check_like(grads[i], p, "grads", i, True)
        if g is not grads[i]:
            plan.keepalive.append(g)
        s = plan.add(p, g)
        if use_momentum:
            if momentum_buffer_list[i] is None:
                s.first = 1
            else:
                b = _check_like(momentum_buffer_list[i], p, "momentum_buffer_list", i, False)
                s.buf0 = <char*>cnp.PyArray_DATA(b)
    if check_overlap and n > 1:
        if use_momentum:
            _check_no_overlap((params, momentum_buffer_list), ("params", "momentum_buffer_list"))
        else:
            _check_no_overlap((params,), ("params",))
    # Pass 2: allocate the buffers of the first momentum step (torch: buf = grad.clone()).
    if use_momentum:
        for i in range(n):
            if momentum_buffer_list[i] is None:
                p = <cnp.ndarray>params[i]
                b = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(p), cnp.PyArray_DIMS(p), cnp.PyArray_TYPE(p), 0)
                created.append((i, b))
        _fill_new_buffers(plan, params, created)
    # Pass 3: the kernels, without the GIL.
    if plan.n32:
        nt = _threads_for(plan.total32)
        with nogil:
            _sgd_run[float](plan.segs32, plan.n32, plan.total32, nt, <float>(-1.0 if maximize else 1.0),
                            <float>(-lr), <float>weight_decay, <float>momentum,
                            <float>(1.0 - dampening), has_wd, use_momentum, nesterov)
    if plan.n64:
        nt = _threads_for(plan.total64)
        with nogil:
            _sgd_run[double](plan.segs64, plan.n64, plan.total64, nt, -1.0 if maximize else 1.0,
                             -lr, weight_decay, momentum, 1.0 - dampening,
                             has_wd, use_momentum, nesterov)
    for i, b in created:
        momentum_buffer_list[i] = b


cdef _fill_new_buffers(_Plan plan, list params, list created):
    """Point the segments of params without a momentum buffer at their new buffers."""
    cdef Py_ssize_t k32 = 0, k64 = 0, i, j = 0
    cdef cnp.ndarray p, b
    cdef Segment* s
    for i in range(len(params)):
        p = <cnp.ndarray>params[i]
        if cnp.PyArray_TYPE(p) == cnp.NPY_FLOAT:
            s = &plan.segs32[k32]
            k32 += 1
        else:
            s = &plan.segs64[k64]
            k64 += 1
        if s.first:
            b = <cnp.ndarray>created[j][1]
            j += 1
            s.buf0 = <char*>cnp.PyArray_DATA(b)


cdef inline long long _as_step(object step, Py_ssize_t i) except? -1:
    cdef long long value
    if PyLong_Check(step) and not isinstance(step, bool):
        value = step
    else:
        try:
            value = operator.index(step)
        except TypeError:
            raise TypeError(
                f"state_steps[{i}] must be an int (the number of steps taken), got "
                f"{type(step).__name__} {step!r}") from None
    if value < 0:
        raise ValueError(f"state_steps[{i}] must be >= 0, got {value}")
    return value


def adam(list params, list grads, list exp_avgs, list exp_avg_sqs, list max_exp_avg_sqs,
         list state_steps, *, bint amsgrad, double beta1, double beta2, double lr,
         double weight_decay, double eps, bint maximize, bint decoupled_weight_decay=False,
         bint check_overlap=True):
    """Adam/AdamW step over all arrays in one compiled call (see ``fastoptim.functional.adam``).

    ``state_steps`` holds each param's step count before the step and is incremented in place.
    Everything is validated before any array or step count is modified.
    """
    cdef Py_ssize_t n, i
    cdef cnp.ndarray p, g, a
    cdef Segment* s
    cdef long long step, prev_step = -1
    cdef double neg_step_size = 0.0, bc2_sqrt = 0.0
    cdef int wd_mode = 0 if weight_decay == 0.0 else (2 if decoupled_weight_decay else 1)
    cdef list new_steps
    cdef _Plan plan
    cdef int nt
    cdef float w32 = <float>(1.0 - beta1)
    cdef double w64 = 1.0 - beta1

    if amsgrad:
        n = _check_lengths("adam", ["params", "grads", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs",
                                    "state_steps"],
                           (params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps))
    else:
        n = _check_lengths("adam", ["params", "grads", "exp_avgs", "exp_avg_sqs", "state_steps"],
                           (params, grads, exp_avgs, exp_avg_sqs, state_steps))
    plan = _Plan(n)
    new_steps = [None] * n
    for i in range(n):
        p = _check_param(params[i], "params", i)
        g = _check_like(grads[i], p, "grads", i, True)
        if g is not grads[i]:
            plan.keepalive.append(g)
        s = plan.add(p, g)
        a = _check_like(exp_avgs[i], p, "exp_avgs", i, False)
        s.buf0 = <char*>cnp.PyArray_DATA(a)
        a = _check_like(exp_avg_sqs[i], p, "exp_avg_sqs", i, False)
        s.buf1 = <char*>cnp.PyArray_DATA(a)
        if amsgrad:
            a = _check_like(max_exp_avg_sqs[i], p, "max_exp_avg_sqs", i, False)
            s.buf2 = <char*>cnp.PyArray_DATA(a)
        step = _as_step(state_steps[i], i) + 1
        new_steps[i] = step
        if step != prev_step:
            # torch: bias_correction1 = 1 - beta1 ** step; step_size = lr / bias_correction1;
            # bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5, all Python doubles, libm pow.
            neg_step_size = -(lr / (1.0 - pow(beta1, <double>step)))
            bc2_sqrt = pow(1.0 - pow(beta2, <double>step), 0.5)
            prev_step = step
        s.neg_step_size = neg_step_size
        s.bc2_sqrt = bc2_sqrt
    if check_overlap and n > 1:
        if amsgrad:
            _check_no_overlap((params, exp_avgs, exp_avg_sqs, max_exp_avg_sqs),
                              ("params", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"))
        else:
            _check_no_overlap((params, exp_avgs, exp_avg_sqs), ("params", "exp_avgs", "exp_avg_sqs"))
    if plan.n32:
        nt = _threads_for(plan.total32 * _ADAM_WORK_PER_ELEMENT)
        with nogil:
            _adam_run[float](plan.segs32, plan.n32, plan.total32, nt, <float>(-1.0 if maximize else 1.0),
                             <float>eps, <float>weight_decay, <float>(1.0 - lr * weight_decay),
                             w32, w32 - 1, <float>beta2, <float>(1.0 - beta2),
                             wd_mode, fabs(w32) < 0.5, amsgrad)
    if plan.n64:
        nt = _threads_for(plan.total64 * _ADAM_WORK_PER_ELEMENT)
        with nogil:
            _adam_run[double](plan.segs64, plan.n64, plan.total64, nt, -1.0 if maximize else 1.0,
                              eps, weight_decay, 1.0 - lr * weight_decay,
                              w64, w64 - 1, beta2, 1.0 - beta2,
                              wd_mode, fabs(w64) < 0.5, amsgrad)
    state_steps[:] = new_steps
