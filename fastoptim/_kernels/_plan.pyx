# Validation, the work plan, the overlap check and the thread policy of every kernel call, compiled
# once (the element loops are compiled per instruction-set level from ``kernels.pyx.tp``).
#
# A kernel call validates every array (with the GIL, before any element is touched) in
# ``build_plan``, which collects the data pointers through the NumPy C API into ``Segment``s, one
# per array, split by dtype. The generated drivers then give each thread an equal share of the
# elements of *all* arrays of the call (so 1000 arrays of 1k cost what one of 1M costs).

from libc.stdlib cimport malloc, free
from cpython.long cimport PyLong_Check
cimport numpy as cnp

import operator

import numpy as np

from fastoptim._bfloat16 import bfloat16

from fastoptim._openmp cimport omp_get_max_threads

cnp.import_array()

# Below this much work per thread, starting another thread costs more than it brings (an OpenMP
# fork/join costs a few microseconds). Work is counted in SGD elements; each kernel weighs its
# element by its spec's ``work_per_element`` (an Adam element counts twice: it does two divisions
# and a square root, so a second thread pays off on half as many elements). Measured with
# benchmarks/threshold.py on a 2-core Xeon: 2 threads beat 1 from about 16k SGD elements and 8k
# Adam elements per thread (docs/threads.rst).
cdef Py_ssize_t _min_elements_per_thread = 16384


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


cdef int threads_for(Py_ssize_t work) noexcept nogil:
    cdef int nthreads = omp_get_max_threads()
    cdef Py_ssize_t useful = work // _min_elements_per_thread
    if useful < 1:
        useful = 1
    if nthreads > useful:
        nthreads = <int>useful
    return nthreads if nthreads > 0 else 1


cdef inline bint _is_native_float(cnp.ndarray a, int typenum) noexcept:
    return cnp.PyArray_TYPE(a) == typenum and not cnp.PyArray_ISBYTESWAPPED(a)


cdef str _describe(object a):
    if isinstance(a, np.ndarray):
        return f"an array of dtype {a.dtype} and shape {a.shape}"
    return f"an object of type {type(a).__name__}"


cdef cnp.ndarray _check_param(object obj, str name, Py_ssize_t i):
    """A param or a state buffer: native float32/float64 (float16/bfloat16 for a param updated
    through a float32 master copy), C-contiguous, aligned, writeable."""
    cdef cnp.ndarray a
    if not isinstance(obj, cnp.ndarray):
        raise TypeError(f"{name}[{i}] must be a NumPy array, got {_describe(obj)}")
    a = <cnp.ndarray>obj
    if _kind_of(a) < 0:
        raise TypeError(
            f"{name}[{i}] has dtype {a.dtype}; fastoptim updates float32 and float64 arrays in "
            f"native byte order (and float16/bfloat16 ones through a float32 master copy) only: "
            f"convert it with a.astype(np.float32) or a.astype(np.float64)")
    _check_in_place(a, name, i)
    return a


cdef extern from "numpy/ndarraytypes.h":
    enum:
        NPY_HALF
        NPY_USERDEF


# Low precision (docs/low_precision.rst). Kinds of an array: 0 float32, 1 bfloat16 (ml_dtypes, a
# NumPy user dtype whose type number is known once one was seen), 2 float16, 3 float64.
KIND_NAMES = ("float32", "bfloat16", "float16", "float64")
cdef int _BF16 = -2


cdef int _bf16_typenum() except -2:
    """The type number of ``ml_dtypes.bfloat16`` (imports the optional package)."""
    global _BF16
    if _BF16 < 0:
        _BF16 = bfloat16("a bfloat16 state or param").num
    return _BF16


cdef int _kind_of(cnp.ndarray a) except -2:
    """The kind of a native-byte-order array (see KIND_NAMES), -1 for any other dtype."""
    global _BF16
    cdef int t = cnp.PyArray_TYPE(a)
    if t == cnp.NPY_FLOAT:
        return 0 if not cnp.PyArray_ISBYTESWAPPED(a) else -1
    if t == cnp.NPY_DOUBLE:
        return 3 if not cnp.PyArray_ISBYTESWAPPED(a) else -1
    if t == NPY_HALF:
        return 2 if not cnp.PyArray_ISBYTESWAPPED(a) else -1
    if t == _BF16:
        return 1
    if t >= NPY_USERDEF and _BF16 < 0:
        dt = (<object>a).dtype
        if dt.name == "bfloat16" and dt.itemsize == 2:
            _BF16 = t
            return 1
    return -1


def state_kind(object state_dtype):
    """The kind (index into KIND_NAMES) of a ``state_dtype`` argument: None gives -1 (the
    param's dtype; float32 for a float16/bfloat16 param), else a dtype or its name."""
    if state_dtype is None:
        return -1
    if isinstance(state_dtype, str):
        name = state_dtype
    else:
        try:
            name = np.dtype(state_dtype).name
        except TypeError:
            name = None
    if name not in KIND_NAMES:
        raise TypeError(
            f"state_dtype must be None, 'float32', 'bfloat16' or 'float16' (or the NumPy dtype: "
            f"np.float32, ml_dtypes.bfloat16, np.float16), got {state_dtype!r}")
    return KIND_NAMES.index(name)


cdef int _typenum(int kind) except -2:
    if kind == 0:
        return cnp.NPY_FLOAT
    if kind == 3:
        return cnp.NPY_DOUBLE
    if kind == 2:
        return NPY_HALF
    return _bf16_typenum()


cdef cnp.ndarray _check_state(object obj, cnp.ndarray param, int kind, str name, Py_ssize_t i):
    """A state buffer of a low-precision segment: dtype of ``kind``, the param's shape, in place."""
    cdef cnp.ndarray a
    if not isinstance(obj, cnp.ndarray):
        raise TypeError(f"{name}[{i}] must be a NumPy array, got {_describe(obj)}")
    a = <cnp.ndarray>obj
    if _kind_of(a) != kind:
        raise TypeError(
            f"{name}[{i}] has dtype {a.dtype} but the state dtype of params[{i}] (dtype "
            f"{(<object>param).dtype}) is {KIND_NAMES[kind]}; fastoptim never casts silently: "
            f"convert it with .astype(...) or pass the matching state_dtype")
    if not _same_shape(a, param):
        raise ValueError(
            f"{name}[{i}] has shape {(<object>a).shape} but params[{i}] has shape {(<object>param).shape}; "
            f"each must have exactly its parameter's shape")
    _check_in_place(a, name, i)
    return a


cdef inline unsigned long long _mix64(unsigned long long z) noexcept nogil:
    """splitmix64's finaliser (Steele, Lea & Flood 2014)."""
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef int _check_in_place(cnp.ndarray a, str name, Py_ssize_t i) except -1:
    """A param or a state buffer is updated in place: it must be C-contiguous, aligned, writeable."""
    if not cnp.PyArray_IS_C_CONTIGUOUS(a) or not cnp.PyArray_ISALIGNED(a):
        raise ValueError(
            f"{name}[{i}] is not a C-contiguous, aligned array and cannot be updated in place; "
            f"make a C-contiguous, aligned copy once with a.copy() (np.ascontiguousarray(a) makes "
            f"it contiguous but not aligned) and keep using that copy")
    if not cnp.PyArray_ISWRITEABLE(a):
        raise ValueError(
            f"{name}[{i}] is read-only and cannot be updated in place; pass a writeable array "
            f"(for example a.copy())")
    return 0


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
            a = a.copy(order="C")   # np.ascontiguousarray would keep a misaligned array
        return a
    _check_in_place(a, name, i)
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


cdef class Plan:
    def __cinit__(self, Py_ssize_t n):
        cdef Py_ssize_t m = n if n > 0 else 1
        # one block: float32 segments, float64 segments, low-precision segments, then the index
        self.segs32 = <Segment*>malloc(m * (3 * sizeof(Segment) + sizeof(Segment*)))
        if self.segs32 == NULL:
            raise MemoryError()
        self.segs64 = self.segs32 + m
        self.segs_lp = self.segs64 + m
        self.index = <Segment**>(self.segs_lp + m)
        self.n = self.n32 = self.n64 = self.total32 = self.total64 = self.n_lp = self.total_lp = 0
        self.keepalive = []
        self.created = []
        self.new_steps = None

    def __dealloc__(self):
        free(self.segs32)

    cdef Segment* add(self, cnp.ndarray param, cnp.ndarray grad, int kind) except NULL:
        """``kind``: 0 float32, 9 float64, else a low-precision kind (``Segment.kind``)."""
        cdef Segment* s
        cdef Py_ssize_t size = cnp.PyArray_SIZE(param), k
        if kind != 0 and kind != 9:
            s = &self.segs_lp[self.n_lp]
            s.start = self.total_lp
            self.n_lp += 1
            self.total_lp += size
        elif kind == 0:
            s = &self.segs32[self.n32]
            s.start = self.total32
            self.n32 += 1
            self.total32 += size
        else:
            s = &self.segs64[self.n64]
            s.start = self.total64
            self.n64 += 1
            self.total64 += size
        self.index[self.n] = s
        self.n += 1
        s.param = <char*>cnp.PyArray_DATA(param)
        s.grad = <const char*>cnp.PyArray_DATA(grad)
        s.ema = NULL
        for k in range(MAX_BUFFERS):
            s.buf[k] = NULL
        for k in range(MAX_SCALARS):
            s.s[k] = 0.0
        s.size = size
        s.step = 0
        s.fresh = 0
        s.lp = NULL
        s.kind = kind
        s.key = 0
        return s

    cdef commit(self, tuple lists, object state_steps):
        """After the kernels ran: store the new buffers and step counts into the caller's lists."""
        cdef Py_ssize_t k, i
        for k, i, b in self.created:
            (<list>lists[k])[i] = b
        if self.new_steps is not None:
            state_steps[:] = self.new_steps


cdef Plan build_plan(str what, list params, list grads, tuple lists, tuple names, unsigned active,
                     unsigned lazy, tuple extra_lists, tuple extra_names, object state_steps,
                     bint check_overlap, object master_params=None, object state_dtype=None,
                     object stochastic_rounding=None):
    """Validate one call's arrays and plan its work; nothing is modified before everything passed.

    ``lists`` holds the state-buffer lists in the kernel's order, ``names`` their argument names;
    bit k of ``active`` says whether ``lists[k]`` is used by this call (an unused list is neither
    read nor checked). A list whose bit is set in ``lazy`` may hold ``None``: that param gets a
    new, uninitialised buffer (``Segment.fresh``) that the kernel fills, stored into the list by
    ``Plan.commit``. ``extra_lists`` (named ``extra_names``) are further per-parameter lists the
    kernel reads itself (scalar state); only their lengths are checked here. ``state_steps`` (or
    None) holds the step counts before the call; the new ones go to ``Segment.step`` and, by
    ``commit``, back into the list.

    Low precision (docs/low_precision.rst): ``state_dtype`` (None: the param's dtype, float32 for
    a float16/bfloat16 param) is the dtype every state buffer must have (never cast);
    ``master_params`` (None or a list with a float32 array for each float16/bfloat16 param and
    None for the others) holds the master copies those params are updated through;
    ``stochastic_rounding`` (None or an int seed) gives each array its hash key.
    """
    cdef Py_ssize_t n = len(params), i, k, nbuf = len(lists)
    cdef cnp.ndarray p, g, b, mp, ref
    cdef int pk, sk, sk_req = state_kind(state_dtype), kind
    cdef unsigned long long seed = 0
    cdef Segment* s
    cdef Plan plan
    cdef list lst
    cdef long long step

    if len(grads) != n or (state_steps is not None and len(state_steps) != n):
        _lengths_error(what, params, grads, lists, names, active, extra_lists, extra_names, state_steps)
    for k in range(nbuf):
        if (active >> k) & 1 and len(<list>lists[k]) != n:
            _lengths_error(what, params, grads, lists, names, active, extra_lists, extra_names, state_steps)
    for k in range(len(extra_lists)):
        if len(<list>extra_lists[k]) != n:
            _lengths_error(what, params, grads, lists, names, active, extra_lists, extra_names, state_steps)
    if master_params is not None and (not isinstance(master_params, list) or len(master_params) != n):
        raise ValueError(f"{what}: master_params must be None or a list with one entry per parameter "
                         f"(None for a float32/float64 param)")
    if stochastic_rounding is not None:
        seed = <unsigned long long>(operator.index(stochastic_rounding) & 0xFFFFFFFFFFFFFFFF)
    plan = Plan(n)
    if state_steps is not None:
        plan.new_steps = [None] * n
    # Pass 1 (GIL held): validate everything and collect pointers; nothing is modified yet.
    for i in range(n):
        p = _check_param(params[i], "params", i)
        g = _check_like(grads[i], p, "grads", i, True)
        if g is not grads[i]:
            plan.keepalive.append(g)
        pk = _kind_of(p)
        ref = p
        if pk == 1 or pk == 2:
            if master_params is None or master_params[i] is None:
                raise TypeError(
                    f"params[{i}] has dtype {p.dtype}: a float16/bfloat16 param is updated through "
                    f"a float32 master copy; pass master_params=[...] with a float32 copy of it "
                    f"(params[{i}].astype(np.float32)), which the step updates too")
            mp = _check_param(master_params[i], "master_params", i)
            if _kind_of(mp) != 0 or not _same_shape(mp, p):
                raise TypeError(
                    f"master_params[{i}] must be a float32 array of params[{i}]'s shape "
                    f"{(<object>p).shape}, got {_describe(mp)}")
            ref = mp
        elif master_params is not None and master_params[i] is not None:
            raise ValueError(f"master_params[{i}] must be None: params[{i}] has dtype {p.dtype} "
                             f"and is updated directly")
        sk = sk_req if sk_req >= 0 else (3 if pk == 3 else 0)
        if pk == 3 and sk != 3:
            raise TypeError(
                f"params[{i}] is float64, whose state is float64 only; state_dtype="
                f"{KIND_NAMES[sk]!r} applies to float32 (and float16/bfloat16) params")
        if pk != 3 and sk == 3 or (pk == 1 or pk == 2) and sk != 0 and sk != pk:
            raise TypeError(
                f"params[{i}] has dtype {p.dtype}: its state may be float32"
                + (" or bfloat16/float16" if pk == 0 else f" or {KIND_NAMES[pk]}")
                + f", not {KIND_NAMES[sk]}")
        kind = 9 if pk == 3 else 3 * pk + sk
        s = plan.add(ref, g, kind)
        if ref is not p:
            s.lp = <char*>cnp.PyArray_DATA(p)
        for k in range(nbuf):
            if not (active >> k) & 1:
                continue
            lst = <list>lists[k]
            if (lazy >> k) & 1 and lst[i] is None:
                s.fresh |= 1u << k
            elif kind == 0 or kind == 9:
                b = _check_like(lst[i], p, names[k], i, False)
                s.buf[k] = <char*>cnp.PyArray_DATA(b)
            else:
                b = _check_state(lst[i], p, sk, names[k], i)
                s.buf[k] = <char*>cnp.PyArray_DATA(b)
        if state_steps is not None:
            step = _as_step(state_steps[i], i) + 1
            plan.new_steps[i] = step
            s.step = step
        if stochastic_rounding is not None:
            # a key per (seed, new step count, position in the call): with the element index and
            # the buffer it gives every stored element its own random bits (kernels.pyx.tp)
            s.key = _mix64(seed + _mix64(<unsigned long long>s.step + _mix64(<unsigned long long>i
                                                                           + 0x9E3779B97F4A7C15ULL)))
    if check_overlap and (n > 1 or master_params is not None):
        _check_no_overlap((params,) + tuple([lists[k] for k in range(nbuf) if (active >> k) & 1])
                          + ((master_params,) if master_params is not None else ()),
                          ("params",) + tuple([names[k] for k in range(nbuf) if (active >> k) & 1])
                          + (("master_params",) if master_params is not None else ()))
    # Pass 2: allocate the lazily created buffers (torch: buf = grad.clone() on the first step).
    if lazy & active:
        for i in range(n):
            s = plan.index[i]
            if s.fresh:
                p = <cnp.ndarray>params[i]
                for k in range(nbuf):
                    if (s.fresh >> k) & 1:
                        b = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(p), cnp.PyArray_DIMS(p),
                                              cnp.PyArray_TYPE(p) if s.kind == 0 or s.kind == 9
                                              else _typenum(s.kind % 3), 0)
                        plan.created.append((k, i, b))
                        s.buf[k] = <char*>cnp.PyArray_DATA(b)
    return plan


cdef _lengths_error(str what, list params, list grads, tuple lists, tuple names, unsigned active,
                    tuple extra_lists, tuple extra_names, object state_steps):
    """Raise the error for lists of different lengths, naming the first one that differs."""
    cdef Py_ssize_t k
    cdef list checked = [("grads", grads)]
    for k in range(len(lists)):
        if (active >> k) & 1:
            checked.append((names[k], lists[k]))
    checked += list(zip(extra_names, extra_lists))
    if state_steps is not None:
        checked.append(("state_steps", state_steps))
    for name, lst in checked:
        if len(lst) != len(params):
            raise ValueError(
                f"{what}: {name} has {len(lst)} entries but params has {len(params)}; "
                f"pass one entry per parameter")


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


cdef double scalar_state(list values, Py_ssize_t i, str name) except? -1.0:
    """The value of ``values[i]``, a writeable 0-d float32/float64 array, as a double."""
    cdef object a = values[i]
    if (not isinstance(a, cnp.ndarray) or cnp.PyArray_NDIM(<cnp.ndarray>a) != 0
            or not (_is_native_float(<cnp.ndarray>a, cnp.NPY_FLOAT)
                    or _is_native_float(<cnp.ndarray>a, cnp.NPY_DOUBLE))):
        raise TypeError(
            f"{name}[{i}] must be a 0-d float32 or float64 array (torch keeps it as a 0-d tensor), "
            f"got {_describe(a)}; create it with np.array(value, dtype=np.float32)")
    if not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>a):
        raise ValueError(f"{name}[{i}] is read-only and cannot be updated in place")
    if cnp.PyArray_TYPE(<cnp.ndarray>a) == cnp.NPY_FLOAT:
        return (<float*>cnp.PyArray_DATA(<cnp.ndarray>a))[0]
    return (<double*>cnp.PyArray_DATA(<cnp.ndarray>a))[0]


cdef double round_to(object array, double value):
    """``value`` rounded to the dtype of a checked 0-d array (what storing it there keeps)."""
    if cnp.PyArray_TYPE(<cnp.ndarray>array) == cnp.NPY_FLOAT:
        return <float>value
    return value


cdef void set_scalar_state(object array, double value) noexcept:
    """Store ``value`` (rounded to nearest) into a checked 0-d array."""
    if cnp.PyArray_TYPE(<cnp.ndarray>array) == cnp.NPY_FLOAT:
        (<float*>cnp.PyArray_DATA(<cnp.ndarray>array))[0] = <float>value
    else:
        (<double*>cnp.PyArray_DATA(<cnp.ndarray>array))[0] = value


# --------------------------------------------------------------------------------------------------
# the fused training step: gradient scale, found_inf, EMA targets (docs/fused.rst)
# --------------------------------------------------------------------------------------------------

cdef double _zero_d_value(object value, str name) except? -1.0:
    """A Python real number or a 0-d (or one-element) real array, as a double."""
    if isinstance(value, (bool, np.bool_)):
        return 1.0 if value else 0.0
    if isinstance(value, np.ndarray):
        if (<object>value).size != 1:
            raise ValueError(f"{name} must be a number or a 0-d array, got an array of shape "
                             f"{(<object>value).shape}")
        if (<object>value).dtype.kind not in "biuf":
            raise TypeError(f"{name} must be a real number or a 0-d real array, got an array of "
                            f"dtype {(<object>value).dtype}")
        return float((<object>value).reshape(()).item())
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    raise TypeError(f"{name} must be a real number or a 0-d array, got {type(value).__name__}")


cdef double grad_divisor(object grad_scale) except? -1.0:
    """torch's ``grad_scale`` (every gradient is divided by it in the kernel): 1.0 for None; else a
    positive finite number or 0-d array (a loss scale)."""
    cdef double v
    if grad_scale is None:
        return 1.0
    v = _zero_d_value(grad_scale, "grad_scale")
    if not (v > 0.0 and v < float("inf")):
        raise ValueError(f"grad_scale must be a positive finite number (the loss scale the "
                         f"gradients are divided by), got {v!r}; nothing was updated")
    return v


cdef bint found_inf_set(object found_inf) except -1:
    """torch's ``found_inf``: None/False/0 -> take the step; anything non-zero (NaN included) ->
    skip it, changing nothing."""
    if found_inf is None:
        return False
    return _zero_d_value(found_inf, "found_inf") != 0.0


cdef int attach_ema(Plan plan, list params, list ema, bint check_overlap) except -1:
    """Point each segment at the EMA target of its param (``ema[i]``: exactly ``params[i]``'s
    shape and dtype, C-contiguous, writeable; ``None``: that param has no EMA target). Checks
    everything before the caller modifies anything."""
    cdef Py_ssize_t n = len(params), i
    cdef cnp.ndarray e
    if len(ema) != n:
        raise ValueError(f"ema has {len(ema)} entries but params has {n}; pass one EMA target "
                         f"(or None) per parameter")
    for i in range(n):
        if ema[i] is None:
            continue
        e = _check_like(ema[i], <cnp.ndarray>params[i], "ema", i, False)
        plan.index[i].ema = <char*>cnp.PyArray_DATA(e)
    if check_overlap and n > 0:
        _check_no_overlap((params, ema), ("params", "ema"))
    return 0


def check_fused_arguments(grad_scale, found_inf):
    """``(divisor, skip)``: what a kernel makes of ``grad_scale`` and ``found_inf`` (the optimizer
    classes check them once per step, before any group is touched)."""
    return grad_divisor(grad_scale), found_inf_set(found_inf)
