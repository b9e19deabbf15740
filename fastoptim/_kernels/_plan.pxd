# The part of every kernel call that does not depend on the optimizer or the instruction set:
# validation, the work plan (segments over all arrays), the overlap check and the thread policy.
# Compiled once (``_plan.pyx``); the per-ISA kernel modules cimport it.
cimport numpy as cnp

# Thread shares start on a multiple of this many elements (64 bytes of float32) so that two
# threads never write the same cache line in the middle of an array.
cdef enum:
    ALIGN = 16
    MAX_BUFFERS = 4     # state buffers per parameter (Segment.buf)
    MAX_SCALARS = 4     # per-array scalars (Segment.s)


cdef struct Segment:
    char* param                 # INOUT
    const char* grad            # IN
    char* ema                   # INOUT: the EMA target of the param (NULL: no EMA in this call)
    char* buf[MAX_BUFFERS]      # INOUT: the state buffers in the kernel's order (NULL when unused)
    Py_ssize_t size
    Py_ssize_t start            # index of this array's first element in the call's flattened work
    long long step              # the step count after this call (kernels that count steps)
    double s[MAX_SCALARS]       # per-array scalars; their meaning is the kernel's (spec.per_array)
    unsigned fresh              # bit k: buf[k] was allocated by this call (a lazily created buffer)
    # low precision (segs_lp only; docs/low_precision.rst): kind = 3 * param kind + state kind,
    # kinds 0 float32, 1 bfloat16, 2 float16 (float32 and float64 segments: 0 and 9); ``param`` is then the float32 master copy when the
    # param kind is not 0 and ``lp`` the float16/bfloat16 param, rounded from it
    char* lp                    # OUT: the low-precision param (NULL: none)
    int kind
    unsigned long long key      # stochastic rounding: the hash key of this array in this call


cdef class Plan:
    """Segments of one call, split by dtype, plus the references that keep them alive."""
    cdef Segment* segs32
    cdef Segment* segs64
    cdef Segment* segs_lp       # float16/bfloat16 state or params (one specialised loop per kind)
    cdef Segment** index        # index[i]: the segment of params[i]
    cdef Py_ssize_t n, n32, n64, total32, total64, n_lp, total_lp
    cdef list keepalive         # temporaries (contiguous copies of gradients)
    cdef list created           # (list index, param index, new buffer) of lazily created buffers
    cdef list new_steps         # the step counts after this call, as Python ints
    cdef Segment* add(self, cnp.ndarray param, cnp.ndarray grad, int kind) except NULL
    cdef commit(self, tuple lists, object state_steps)


# The fused training step (docs/fused.rst): the gradient divisor (torch's ``grad_scale``), the skip
# flag (``found_inf``) and the EMA targets updated from the new params in the same element loop.
cdef double grad_divisor(object grad_scale) except? -1.0
cdef bint found_inf_set(object found_inf) except -1
cdef int attach_ema(Plan plan, list params, list ema, bint check_overlap) except -1

cdef Plan build_plan(str what, list params, list grads, tuple lists, tuple names, unsigned active,
                     unsigned lazy, tuple extra_lists, tuple extra_names, object state_steps,
                     bint check_overlap, object master_params=*, object state_dtype=*,
                     object stochastic_rounding=*)

# Per-parameter scalar state that torch keeps as a 0-d tensor (NAdam's mu_product, ASGD's eta and
# mu): a 0-d float32/float64 array, read and written in double, rounded to its dtype.
cdef double scalar_state(list values, Py_ssize_t i, str name) except? -1.0
cdef double round_to(object array, double value)
cdef void set_scalar_state(object array, double value) noexcept

cdef int threads_for(Py_ssize_t work) noexcept nogil


cdef inline Py_ssize_t share_bound(Py_ssize_t total, int t, int nthreads) noexcept nogil:
    """First flattened element of thread t's share (t == nthreads gives total)."""
    cdef Py_ssize_t b
    if t >= nthreads:
        return total
    b = <Py_ssize_t>((<double>total * t) / nthreads)
    return b - b % ALIGN


cdef inline Py_ssize_t first_segment(const Segment* segs, Py_ssize_t nseg, Py_ssize_t lo) noexcept nogil:
    """Index of the segment that holds flattened element ``lo`` (binary search on ``start``)."""
    cdef Py_ssize_t a = 0, b = nseg - 1, mid
    while a < b:
        mid = (a + b + 1) // 2
        if segs[mid].start <= lo:
            a = mid
        else:
            b = mid - 1
    return a
