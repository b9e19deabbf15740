"""Run-time facts of the compiled build: OpenMP, thread count, CPU features.

Kept apart from the kernels so that it compiles without any instruction-set flags and can be
imported on every CPU to decide which kernel variant to load.
"""
from fastoptim._openmp cimport (FASTOPTIM_OPENMP, omp_get_max_threads, omp_set_num_threads,
                                omp_get_num_procs)

cdef extern from *:
    """
    #include <string.h>
    static int fastoptim_cpu_supports(const char *name) {
    #if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
        __builtin_cpu_init();
    #if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
        if (!strcmp(name, "x86-64-v3")) return __builtin_cpu_supports("x86-64-v3");
        if (!strcmp(name, "x86-64-v4")) return __builtin_cpu_supports("x86-64-v4");
    #endif
        if (!strcmp(name, "avx2")) return __builtin_cpu_supports("avx2");
        if (!strcmp(name, "fma")) return __builtin_cpu_supports("fma");
        if (!strcmp(name, "bmi2")) return __builtin_cpu_supports("bmi2");
        if (!strcmp(name, "avx512f")) return __builtin_cpu_supports("avx512f");
        if (!strcmp(name, "avx512dq")) return __builtin_cpu_supports("avx512dq");
        if (!strcmp(name, "avx512bw")) return __builtin_cpu_supports("avx512bw");
        if (!strcmp(name, "avx512vl")) return __builtin_cpu_supports("avx512vl");
        return -1;
    #else
        (void)name;
        return -1;
    #endif
    }
    """
    int fastoptim_cpu_supports(const char *name) noexcept nogil


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(FASTOPTIM_OPENMP)


def get_max_threads():
    """``omp_get_max_threads()``: honours ``OMP_NUM_THREADS``, threadpoolctl and ``set_num_threads``."""
    return omp_get_max_threads()


def set_max_threads(int n):
    """``omp_set_num_threads(n)`` for the calling thread."""
    omp_set_num_threads(n)


def num_procs():
    return omp_get_num_procs()


def cpu_supports(str feature):
    """Whether the running x86 CPU has ``feature`` (``avx2``, ``fma``, ``avx512f``, ``x86-64-v3``...).

    Returns None when this build cannot tell (not x86, or an ISA level name with a compiler older
    than gcc 12).
    """
    cdef bytes name = feature.encode("ascii")
    cdef int r = fastoptim_cpu_supports(name)
    return None if r < 0 else bool(r)
