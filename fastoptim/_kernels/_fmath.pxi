# The elementary operations of every compiled element loop, for float and double (the fused type
# ``floating``): one definition, included by the optimizer kernels (kernels.pyx.tp) and the
# training utilities' loops (_train_kernels_impl.pxi), so that each rounds alike. ``_fma`` is a
# fused multiply-add (one rounding), ``_sqrt`` torch's square root of a tensor (below), the others
# the correctly rounded IEEE operations of libm.

from cython cimport floating
from libc.math cimport fma, fmaf, sqrt, sqrtf, pow, powf, fabs, fabsf


cdef inline floating _fma(floating a, floating b, floating c) noexcept nogil:
    if floating is float:
        return fmaf(a, b, c)
    else:
        return fma(a, b, c)


# torch's square root of a tensor (``Tensor.sqrt``) is not C's: on x86-64 torch calls MKL's vector
# math library (``vsSqrt``/``vdSqrt``, "high accuracy"), and on an Intel CPU with AVX-512 MKL runs
# an AVX-512 routine that is one unit in the last place below the correctly rounded root for about
# 0.7 % of the inputs. That routine is reproduced here instruction by instruction (read off MKL
# 2024.2, the version torch 2.13 links): y = rsqrt14(x) (the hardware's 14-bit reciprocal square
# root estimate), s = x*y, h = y/2; float64 refines once more (e = 1/2 - s*h, s += e*s, h += e*h);
# then r = x - s*s and the root is s + r*h, each step a fused multiply-add or one rounding; inputs
# below 2**-78 (float32) or 2**-916 (float64) are scaled as MKL scales them; zeros, infinities and
# negative numbers take the IEEE root. It equals torch.sqrt bit for bit on every one of 2**31
# positive float32 inputs (docs/numerics.rst). gcc calls the 8- and 16-lane routines from the
# vectorised loops (``simd`` declarations, the x86-64 vector function ABI) and the scalar one in
# the loops' remainders. It is compiled only into the AVX-512 kernels (gcc) and used only where MKL
# takes that routine, an Intel CPU (``fo_mkl_avx512_cpu``; switched on at import by _dispatch.py);
# everywhere else, and with FASTOPTIM_SQRT=ieee, ``_sqrt`` is the correctly rounded IEEE root.
cdef extern from *:
    """
    #include <math.h>
    /* Whether MKL takes its AVX-512 code paths here (the square root below, the dot products of
       _train_kernels_impl.pxi): an Intel CPU with AVX-512F; on AMD CPUs, AVX-512 or not, it runs
       others. Asked of the CPU, whatever the variant was compiled for. */
    static int fo_mkl_avx512_cpu(void) {
    #if defined(__x86_64__) && defined(__GNUC__)
        __builtin_cpu_init();
        return __builtin_cpu_is("intel") && __builtin_cpu_supports("avx512f");
    #else
        return 0;
    #endif
    }
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__AVX512F__) \
        && defined(__AVX512DQ__) && defined(__AVX512VL__)
    #include <immintrin.h>
    #define FO_TSQRT_BUILT 1
    #define FO_HIDDEN __attribute__((visibility("hidden")))
    static int fo_tsqrt_on = 0;
    FO_HIDDEN float fo_tsqrtf(float) __attribute__((simd("notinbranch"), const, nothrow));
    FO_HIDDEN double fo_tsqrtd(double) __attribute__((simd("notinbranch"), const, nothrow));
    /* the scalar routines: the same operations on lane 0 (rsqrt14ss is rsqrt14ps's lane) */
    FO_HIDDEN float fo_tsqrtf_scalar(float x) __asm__("fo_tsqrtf");
    FO_HIDDEN float fo_tsqrtf_scalar(float x) {
        if (!fo_tsqrt_on || !(x > 0.0f) || x == INFINITY) return sqrtf(x);
        __m128 v = _mm_set_ss(x);
        float y = _mm_cvtss_f32(_mm_rsqrt14_ss(v, v));
        float h = y * 0.5f, s = y * x, xs = x, ss = s;
        if (y > 0x1p39f) { xs = x * 0x1p78f; ss = s * 0x1p39f; h = h * 0x1p-78f; }
        return fmaf(fmaf(-ss, ss, xs), h, s);
    }
    FO_HIDDEN double fo_tsqrtd_scalar(double x) __asm__("fo_tsqrtd");
    FO_HIDDEN double fo_tsqrtd_scalar(double x) {
        if (!fo_tsqrt_on || !(x > 0.0) || x == INFINITY) return sqrt(x);
        __m128d v = _mm_set_sd(x);
        double y = _mm_cvtsd_f64(_mm_rsqrt14_sd(v, v));
        double h = y * 0.5, s = y * x;
        double e = fma(-s, h, 0.5);
        s = fma(e, s, s);
        h = fma(h, e, h);
        double xs = x, ss = s;
        if (y > 0x1p458) { xs = x * 0x1p916; ss = s * 0x1p458; h = h * 0x1p-916; }
        return fma(fma(-ss, ss, xs), h, s);
    }
    /* W vector type, P intrinsic prefix, T ps/pd, K mask type; BIG/UP/DOWN the scaling (2**39,
       2**78, 2**-78 for float32), REFINE the float64 step */
    #define FO_TSQRT_BODY(W, P, T, K, BIG, UP, DOWN, REFINE) \
        if (!fo_tsqrt_on) return P##_sqrt_##T(x); \
        W y = P##_rsqrt14_##T(x), half = P##_set1_##T(0.5); \
        W h = P##_mul_##T(y, half), s = P##_mul_##T(y, x); \
        REFINE \
        K big = P##_cmp_##T##_mask(P##_set1_##T(BIG), y, _CMP_LT_OS); \
        W xs = P##_mask_mul_##T(x, big, x, P##_set1_##T(UP)); \
        W ss = P##_mask_mul_##T(s, big, s, P##_set1_##T(BIG)); \
        h = P##_mask_mul_##T(h, big, h, P##_set1_##T(DOWN)); \
        W root = P##_fmadd_##T(P##_fnmadd_##T(ss, ss, xs), h, s); \
        return P##_mask_blend_##T(P##_fpclass_##T##_mask(x, 0x5e), root, P##_sqrt_##T(x));
    #define FO_REFINE(P, T) { W e = P##_fnmadd_##T(s, h, half); \
        s = P##_fmadd_##T(e, s, s); h = P##_fmadd_##T(h, e, h); }
    #define W __m256
    FO_HIDDEN __m256 _ZGVdN8v_fo_tsqrtf(__m256 x) {
        FO_TSQRT_BODY(__m256, _mm256, ps, __mmask8, 0x1p39f, 0x1p78f, 0x1p-78f, ) }
    #undef W
    #define W __m512
    FO_HIDDEN __m512 _ZGVeN16v_fo_tsqrtf(__m512 x) {
        FO_TSQRT_BODY(__m512, _mm512, ps, __mmask16, 0x1p39f, 0x1p78f, 0x1p-78f, ) }
    #undef W
    #define W __m256d
    FO_HIDDEN __m256d _ZGVdN4v_fo_tsqrtd(__m256d x) {
        FO_TSQRT_BODY(__m256d, _mm256, pd, __mmask8, 0x1p458, 0x1p916, 0x1p-916, FO_REFINE(_mm256, pd)) }
    #undef W
    #define W __m512d
    FO_HIDDEN __m512d _ZGVeN8v_fo_tsqrtd(__m512d x) {
        FO_TSQRT_BODY(__m512d, _mm512, pd, __mmask8, 0x1p458, 0x1p916, 0x1p-916, FO_REFINE(_mm512, pd)) }
    #undef W
    #else
    #define FO_TSQRT_BUILT 0
    static int fo_tsqrt_on = 0;
    static inline float fo_tsqrtf(float x) { return sqrtf(x); }
    static inline double fo_tsqrtd(double x) { return sqrt(x); }
    #endif
    static int fo_tsqrt_set(int on) { fo_tsqrt_on = FO_TSQRT_BUILT && on; return fo_tsqrt_on; }
    """
    int FO_TSQRT_BUILT
    int fo_mkl_avx512_cpu() noexcept nogil
    int fo_tsqrt_set(int on) noexcept nogil
    float fo_tsqrtf(float x) noexcept nogil
    double fo_tsqrtd(double x) noexcept nogil


cdef inline floating _sqrt(floating x) noexcept nogil:
    # torch's Tensor.sqrt (above): MKL's AVX-512 routine where torch runs it, else IEEE
    if floating is float:
        return fo_tsqrtf(x)
    else:
        return fo_tsqrtd(x)


def _torch_sqrt_available():
    """Whether this module has MKL's AVX-512 square root and the CPU is one where torch runs it."""
    return bool(FO_TSQRT_BUILT and fo_mkl_avx512_cpu())


def _sqrt_into(floating[::1] out, const floating[::1] x):
    """``out[i] = _sqrt(x[i])``: the square root the element loops take (for the tests)."""
    cdef Py_ssize_t i, n = min(out.shape[0], x.shape[0])
    with nogil:
        for i in range(n):
            out[i] = _sqrt(x[i])


def _set_torch_sqrt(bint on):
    """Use torch's (MKL's) square root in the element loops (``on``, where built) or the IEEE one;
    returns whether torch's is now in use."""
    return bool(fo_tsqrt_set(on))


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
