# OpenMP entry points that also exist in a build without OpenMP (then they report one thread).
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define FASTOPTIM_OPENMP 1
    #else
    #define FASTOPTIM_OPENMP 0
    static int omp_get_max_threads(void) { return 1; }
    static void omp_set_num_threads(int n) { (void)n; }
    static int omp_get_num_procs(void) { return 1; }
    static int omp_get_thread_num(void) { return 0; }
    #endif
    """
    int FASTOPTIM_OPENMP
    int omp_get_max_threads() noexcept nogil
    void omp_set_num_threads(int n) noexcept nogil
    int omp_get_num_procs() noexcept nogil
    int omp_get_thread_num() noexcept nogil
