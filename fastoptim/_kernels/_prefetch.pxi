# Software prefetch for the element loops: one definition, included by the optimizer kernels
# (kernels.pyx.tp), the training utilities' loops (_train_kernels_impl.pxi) and the benchmark's
# bandwidth kernel (_stream_impl.pxi), so that the bound prefetches exactly as the loops it bounds.
#
# A loop over n elements runs in blocks of FO_PF_BLOCK elements; before each block it asks for the
# cache lines of every array it streams FO_PF_AHEAD elements ahead (``fo_pf``: a prefetch of the
# whole block there, T0 hint), unless that lies past the end of the array. The hardware
# prefetchers of the Intel Xeon (Emerald Rapids) development machine keep fewer lines in flight
# than a loop over four or five arrays needs: measured there on 1x100M float32, 2 threads, Adam's
# step went from 65.8 to 47.7 ms with these prefetches, with bfloat16 state from 53.7 to 37.6 ms,
# a C model of the EMA lerp from 27 to 24 ms; in cache (32k elements) a C model of the blocked
# loop ran as fast as the plain one (0.60 vs 0.59 ns per element). docs/performance.rst has the
# interleaved measurements. The distance: 256, 512, 1024, 2048 and 4096 elements ahead measured in
# interleaved rounds there (Adam, 1x100M, 2 threads) took 44.5, 43.0, 42.6, 43.7, 43.7 ms with
# bfloat16 state and 54.3, 53.7, 54.6, 54.8, 55.7 ms in float32: 1024 is the best or within
# the noise of it for both. Prefetches never fault and never change a result.
# ``FASTOPTIM_PREFETCH=off`` switches them off (``fastoptim._dispatch``, which sets every compiled
# module's ``fo_pf_on`` alike; the benchmarks compare both ways in one process).

cdef extern from *:
    """
    #define FO_PF_BLOCK 64      /* elements per block (a power of two): 256 bytes of float32 */
    #define FO_PF_AHEAD 1024    /* elements ahead: 4 KiB of float32 */
    static int fo_pf_on = 1;
    static int fo_pf_set(int on) { fo_pf_on = on != 0; return fo_pf_on; }
    /* prefetch the FO_PF_BLOCK elements of `size` bytes each that lie FO_PF_AHEAD elements after
       element i of the array at base */
    static inline __attribute__((always_inline)) void fo_pf(const void* base, Py_ssize_t i, int size) {
        const char* a = (const char*)base + (i + FO_PF_AHEAD) * (Py_ssize_t)size;
        for (int j = 0; j < FO_PF_BLOCK * size; j += 64) __builtin_prefetch(a + j, 0, 3);
    }
    /* the end of the block that starts at element blk of an n-element loop */
    static inline __attribute__((always_inline)) Py_ssize_t fo_pf_end(Py_ssize_t blk, Py_ssize_t n) {
        return blk + FO_PF_BLOCK < n ? blk + FO_PF_BLOCK : n;
    }
    /* whether the block at blk prefetches: switched on, and the lines ahead lie inside the array */
    static inline __attribute__((always_inline)) int fo_pf_due(Py_ssize_t blk, Py_ssize_t n) {
        return fo_pf_on && blk + FO_PF_AHEAD + FO_PF_BLOCK <= n;
    }
    """
    int fo_pf_on
    int fo_pf_set(int on) noexcept nogil
    void fo_pf(const void* base, Py_ssize_t i, int size) noexcept nogil
    Py_ssize_t fo_pf_end(Py_ssize_t blk, Py_ssize_t n) noexcept nogil
    bint fo_pf_due(Py_ssize_t blk, Py_ssize_t n) noexcept nogil


def _set_prefetch(on=None):
    """Software prefetch in this module's element loops on or off (``on=None``: left as it is);
    returns whether it is on."""
    if on is not None:
        fo_pf_set(bool(on))
    return bool(fo_pf_on)
