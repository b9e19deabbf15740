# The elementary operations of every compiled element loop, for float and double (the fused type
# ``floating``): one definition, included by the optimizer kernels (kernels.pyx.tp) and the
# training utilities' loops (_train_kernels_impl.pxi), so that each rounds alike. ``_fma`` is a
# fused multiply-add (one rounding), the others the correctly rounded IEEE operations of libm.

from cython cimport floating
from libc.math cimport fma, fmaf, sqrt, sqrtf, pow, powf, fabs, fabsf


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


cdef inline floating _abs(floating x) noexcept nogil:
    if floating is float:
        return fabsf(x)
    else:
        return fabs(x)


cdef inline floating _pow(floating x, floating y) noexcept nogil:
    if floating is float:
        return powf(x, y)
    else:
        return pow(x, y)
