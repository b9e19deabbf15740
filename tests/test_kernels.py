"""The compiled kernels against the NumPy model of torch's arithmetic (bitwise), across dtypes,
thread counts, sizes, read-only gradients and list lengths; and their input validation."""
import copy
import os
import subprocess
import sys

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import functional as F
from fastoptim._dispatch import ieee_sqrt, kernels
from fastoptim.optim.registry import OPTIMIZERS

from reference import adam_step, bits, sgd_step

SIZES = [0, 1, 7, 4097, 10**6]
DTYPES = [np.float32, np.float64]

# Keyword arguments of the functional forms, from the optimizer table.
SGD_CONFIGS = list(OPTIMIZERS["SGD"].kernel_configs)
ADAM_CONFIGS = list(OPTIMIZERS["Adam"].kernel_configs)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    """Run with 1 or 2 OpenMP threads; with 2, split even tiny inputs between the threads."""
    old_n, old_min = fo.get_num_threads(), kernels.get_min_elements_per_thread()
    fo.set_num_threads(request.param)
    if request.param > 1:
        kernels.set_min_elements_per_thread(1)
    yield request.param
    fo.set_num_threads(old_n)
    kernels.set_min_elements_per_thread(old_min)


def _arrays(rng, sizes, dtype):
    return [rng.standard_normal(n).astype(dtype) for n in sizes]


def _grads(rng, params, readonly):
    grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in params]
    if readonly:
        for g in grads:
            g.setflags(write=False)
    return grads


def _cases():
    for dtype in DTYPES:
        for size in SIZES:
            for readonly in (False, True):
                # lists of 1 and 3 arrays; the biggest size only alone (time)
                for nlist in ((1, 3) if size < 10**6 else (1,)):
                    yield pytest.param(dtype, size, readonly, nlist,
                                       id=f"{np.dtype(dtype).name}-n{size}-{'ro' if readonly else 'rw'}-x{nlist}")


@pytest.mark.parametrize("dtype,size,readonly,nlist", list(_cases()))
def test_sgd_matches_reference(threads, dtype, size, readonly, nlist):
    rng = np.random.default_rng(size + nlist)
    sizes = [size] + [max(0, size // (k + 2) + k) for k in range(nlist - 1)]
    configs = SGD_CONFIGS if size < 10**6 else SGD_CONFIGS[2:3] + SGD_CONFIGS[4:]
    for cfg in configs:
        params = _arrays(rng, sizes, dtype)
        ref = [p.copy() for p in params]
        bufs, ref_bufs = [None] * nlist, [None] * nlist
        for _ in range(3):
            grads = _grads(rng, params, readonly)
            F.sgd(params, grads, bufs, **cfg)
            for i in range(nlist):
                ref[i], ref_bufs[i] = sgd_step(ref[i], grads[i], ref_bufs[i], **cfg)
            for i in range(nlist):
                assert np.array_equal(bits(params[i]), bits(ref[i])), (cfg, i)
                if cfg["momentum"]:
                    assert np.array_equal(bits(bufs[i]), bits(ref_bufs[i])), (cfg, i)


@pytest.mark.parametrize("dtype,size,readonly,nlist", list(_cases()))
def test_adam_matches_reference(threads, dtype, size, readonly, nlist):
    with ieee_sqrt():       # the reference takes NumPy's (IEEE) square root
        _check_adam_against_reference(dtype, size, readonly, nlist)


def _check_adam_against_reference(dtype, size, readonly, nlist):
    rng = np.random.default_rng(1000 + size + nlist)
    sizes = [size] + [max(0, size // (k + 2) + k) for k in range(nlist - 1)]
    configs = ADAM_CONFIGS if size < 10**6 else ADAM_CONFIGS[2:4]
    for cfg in configs:
        params = _arrays(rng, sizes, dtype)
        m = [np.zeros_like(p) for p in params]
        v = [np.zeros_like(p) for p in params]
        vmax = [np.zeros_like(p) for p in params]
        steps = [0] * nlist
        ref = [(p.copy(), np.zeros_like(p), np.zeros_like(p), np.zeros_like(p), 0) for p in params]
        for _ in range(3):
            grads = _grads(rng, params, readonly)
            F.adam(params, grads, m, v, vmax if cfg["amsgrad"] else [], steps, **cfg)
            ref = [adam_step(r[0], g, r[1], r[2], r[3], r[4], **cfg) for r, g in zip(ref, grads)]
            for i in range(nlist):
                assert np.array_equal(bits(params[i]), bits(ref[i][0])), (cfg, i)
                assert np.array_equal(bits(m[i]), bits(ref[i][1])), (cfg, i)
                assert np.array_equal(bits(v[i]), bits(ref[i][2])), (cfg, i)
                if cfg["amsgrad"]:
                    assert np.array_equal(bits(vmax[i]), bits(ref[i][3])), (cfg, i)
                assert steps[i] == ref[i][4]


def test_adamw_is_decoupled_adam():
    rng = np.random.default_rng(5)
    p1 = rng.standard_normal(100)
    p2 = p1.copy()
    g = rng.standard_normal(100)
    s1, s2 = [0], [0]
    z = lambda: [np.zeros(100)]  # noqa: E731
    m1, v1, m2, v2 = z(), z(), z(), z()
    kw = dict(amsgrad=False, beta1=0.9, beta2=0.999, lr=0.01, weight_decay=0.1, eps=1e-8, maximize=False)
    F.adamw([p1], [g], m1, v1, [], s1, **kw)
    F.adam([p2], [g], m2, v2, [], s2, decoupled_weight_decay=True, **kw)
    assert np.array_equal(bits(p1), bits(p2))


@pytest.mark.parametrize("dtype", DTYPES)
def test_many_small_arrays_equal_one_big_array(threads, dtype):
    """The work split over a list is invisible in the results: 300 arrays == their concatenation."""
    rng = np.random.default_rng(7)
    sizes = rng.integers(0, 300, size=300)
    params = _arrays(rng, sizes, dtype)
    big = np.concatenate(params)
    cfg = ADAM_CONFIGS[2]
    m, v, x = ([np.zeros_like(p) for p in params] for _ in range(3))
    bm, bv, bx = (np.zeros_like(big) for _ in range(3))
    steps, bsteps = [0] * len(params), [0]
    for _ in range(3):
        grads = _grads(rng, params, False)
        F.adam(params, grads, m, v, x, steps, **cfg)
        F.adam([big], [np.concatenate(grads)], [bm], [bv], [bx], bsteps, **cfg)
    assert np.array_equal(bits(np.concatenate(params)), bits(big))
    assert np.array_equal(bits(np.concatenate(v)), bits(bv))


def test_mixed_dtypes_in_one_call(threads):
    rng = np.random.default_rng(8)
    params = [rng.standard_normal(50).astype(np.float32), rng.standard_normal(70),
              rng.standard_normal(3).astype(np.float32)]
    ref = [p.copy() for p in params]
    bufs, ref_bufs = [None] * 3, [None] * 3
    cfg = SGD_CONFIGS[4]
    for _ in range(3):
        grads = _grads(rng, params, False)
        F.sgd(params, grads, bufs, **cfg)
        for i in range(3):
            ref[i], ref_bufs[i] = sgd_step(ref[i], grads[i], ref_bufs[i], **cfg)
    for i in range(3):
        assert params[i].dtype == ref[i].dtype
        assert np.array_equal(bits(params[i]), bits(ref[i]))


def test_adam_per_param_steps_and_bias_correction():
    """Params at different step counts get their own bias corrections in one call."""
    rng = np.random.default_rng(9)
    cfg = ADAM_CONFIGS[0]
    params = _arrays(rng, [10, 20, 30], np.float64)
    m, v = [rng.random(p.shape) for p in params], [rng.random(p.shape) for p in params]
    steps = [0, 5, 2**30]
    ref = [adam_step(p, g, a, b, None, s, **cfg)
           for p, g, a, b, s in zip([p.copy() for p in params], params, m, v, steps)]
    F.adam(params, [p.copy() for p in params], m, v, [], steps, **cfg)
    assert steps == [1, 6, 2**30 + 1]
    for i in range(3):
        assert np.array_equal(bits(params[i]), bits(ref[i][0]))


def test_non_contiguous_grads_are_read_correctly():
    rng = np.random.default_rng(10)
    p = rng.standard_normal((6, 5))
    g_full = rng.standard_normal((6, 10))
    g = g_full[:, ::2]  # strided view
    ref, _ = sgd_step(p.copy(), np.ascontiguousarray(g), None, **SGD_CONFIGS[0])
    F.sgd([p], [g], [None], **SGD_CONFIGS[0])
    assert np.array_equal(bits(p), bits(ref))


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_finite_gradients_propagate_like_torch(dtype):
    g = np.array([np.inf, -np.inf, np.nan, 1.0], dtype=dtype)
    for cfg in SGD_CONFIGS:
        p = np.ones(4, dtype=dtype)
        ref, _ = sgd_step(p.copy(), g, None, **cfg)
        F.sgd([p], [g], [None], **cfg)
        assert np.array_equal(bits(p), bits(ref)) or np.array_equal(np.isnan(p), np.isnan(ref))
    for cfg in ADAM_CONFIGS:
        p = np.ones(4, dtype=dtype)
        with np.errstate(invalid="ignore"):  # inf/inf in the model, as in torch
            ref = adam_step(p.copy(), g, np.zeros(4, dtype), np.zeros(4, dtype), np.zeros(4, dtype), 0, **cfg)
            F.adam([p], [g], [np.zeros(4, dtype)], [np.zeros(4, dtype)], [np.zeros(4, dtype)], [0], **cfg)
        np.testing.assert_array_equal(np.isnan(p), np.isnan(ref[0]))
        finite = np.isfinite(ref[0])
        assert np.array_equal(bits(p[finite]), bits(ref[0][finite]))


# ----------------------------------------------------------------------------------------------
# validation: clear errors, and nothing is modified when one is raised
# ----------------------------------------------------------------------------------------------

def _sgd_inputs():
    params = [np.ones(4, np.float32), np.ones((2, 3), np.float32)]
    grads = [np.full(4, 0.5, np.float32), np.full((2, 3), 0.5, np.float32)]
    bufs = [np.zeros(4, np.float32), None]
    return params, grads, bufs


SGD_KW = dict(lr=0.1, weight_decay=0.0, momentum=0.9, dampening=0.0, nesterov=False, maximize=False)


@pytest.mark.parametrize("mutate,exc,match", [
    (lambda p, g, b: g.pop(), ValueError, r"grads has 1 entries but params has 2"),
    (lambda p, g, b: g.__setitem__(1, np.ones((3, 2), np.float32)), ValueError,
     r"grads\[1\] has shape \(3, 2\) but params\[1\] has shape \(2, 3\)"),
    (lambda p, g, b: g.__setitem__(1, np.ones((2, 3), np.float64)), TypeError,
     r"grads\[1\] has dtype float64 but params\[1\] has dtype float32.*astype"),
    (lambda p, g, b: g.__setitem__(0, None), TypeError, r"grads\[0\] is None"),
    (lambda p, g, b: g.__setitem__(0, [1.0, 2.0, 3.0, 4.0]), TypeError, r"grads\[0\] must be a NumPy array"),
    (lambda p, g, b: p.__setitem__(1, np.ones((3, 2), np.float32).T), ValueError,
     r"params\[1\] is not a C-contiguous.*ascontiguousarray"),
    (lambda p, g, b: p[1].setflags(write=False), ValueError, r"params\[1\] is read-only"),
    (lambda p, g, b: p.__setitem__(0, np.ones(4, np.int64)), TypeError,
     r"params\[0\] has dtype int64; fastoptim updates float32 and float64"),
    (lambda p, g, b: p.__setitem__(0, np.ones(4, ">f4")), TypeError, r"native byte order"),
    (lambda p, g, b: b.__setitem__(0, np.zeros(5, np.float32)), ValueError,
     r"momentum_buffer_list\[0\] has shape \(5,\)"),
    (lambda p, g, b: (p.__setitem__(1, p[0]), g.__setitem__(1, g[0])), ValueError, r"share memory"),
    (lambda p, g, b: b.__setitem__(1, p[1].ravel()), ValueError, r"shape"),
])
def test_sgd_errors_change_nothing(mutate, exc, match):
    params, grads, bufs = _sgd_inputs()
    mutate(params, grads, bufs)
    before = copy.deepcopy((params, grads, bufs))
    with pytest.raises(exc, match=match):
        F.sgd(params, grads, bufs, **SGD_KW)
    for a, b in zip(params + [x for x in bufs if x is not None], before[0] + [x for x in before[2] if x is not None]):
        assert np.array_equal(a, b)
    assert [x is None for x in bufs] == [x is None for x in before[2]]


def test_sgd_overlap_error_names_both_arrays():
    buf = np.zeros(10, np.float32)
    with pytest.raises(ValueError, match=r"params\[0\] and params\[1\] share memory"):
        F.sgd([buf[:6], buf[4:]], [np.ones(6, np.float32), np.ones(6, np.float32)], [None, None], **SGD_KW)
    assert not buf.any()


def test_adam_errors_change_nothing():
    params = [np.ones(3), np.ones(4)]
    grads = [np.ones(3), np.ones(4)]
    m, v = [np.zeros(3), np.zeros(4)], [np.zeros(3), np.zeros(4)]
    kw = dict(amsgrad=True, beta1=0.9, beta2=0.999, lr=0.1, weight_decay=0.0, eps=1e-8, maximize=False)
    steps = [3, 4]
    with pytest.raises(ValueError, match=r"max_exp_avg_sqs has 1 entries"):
        F.adam(params, grads, m, v, [np.zeros(3)], steps, **kw)
    with pytest.raises(ValueError, match=r"max_exp_avg_sqs\[1\] has shape \(3,\) but params\[1\] has shape \(4,\)"):
        F.adam(params, grads, m, v, [np.zeros(3), np.zeros(3)], steps, **kw)
    with pytest.raises(TypeError, match=r"state_steps\[1\] must be an int"):
        F.adam(params, grads, m, v, [np.zeros(3), np.zeros(4)], [3, 4.5], **kw)
    with pytest.raises(ValueError, match=r"state_steps\[0\] must be >= 0"):
        F.adam(params, grads, m, v, [np.zeros(3), np.zeros(4)], [-1, 4], **kw)
    with pytest.raises(TypeError, match=r"exp_avgs\[0\] has dtype float32"):
        F.adam(params, grads, [np.zeros(3, np.float32), np.zeros(4)], v, [np.zeros(3), np.zeros(4)], steps, **kw)
    with pytest.raises(TypeError, match=r"lr must be a real number"):
        F.adam(params, grads, m, v, [np.zeros(3), np.zeros(4)], steps, **dict(kw, lr="0.1"))
    with pytest.raises(TypeError, match=r"amsgrad must be a bool"):
        F.adam(params, grads, m, v, [np.zeros(3), np.zeros(4)], steps, **dict(kw, amsgrad=1))
    with pytest.raises(TypeError, match=r"state_steps must be a list"):
        F.adam(params, grads, m, v, [np.zeros(3), np.zeros(4)], (3, 4), **kw)
    assert steps == [3, 4]
    assert all(np.array_equal(p, np.ones_like(p)) for p in params)
    assert all(not a.any() for a in m + v)


def test_numpy_integer_steps_and_one_element_array_lr():
    p, g = np.zeros(2), np.ones(2)
    steps = [np.int64(4)]
    F.adam([p], [g], [np.zeros(2)], [np.zeros(2)], [], steps, amsgrad=False, beta1=0.9,
           beta2=0.999, lr=np.array([0.1]), weight_decay=0.0, eps=1e-8, maximize=False)
    assert steps == [5] and type(steps[0]) is int
    with pytest.raises(ValueError, match="one-element"):
        F.sgd([p], [g], [None], **dict(SGD_KW, lr=np.array([0.1, 0.2])))


def test_empty_lists_are_a_no_op():
    F.sgd([], [], [], **SGD_KW)
    steps = []
    F.adam([], [], [], [], [], steps, amsgrad=True, beta1=0.9, beta2=0.999, lr=0.1,
           weight_decay=0.0, eps=1e-8, maximize=False)
    assert steps == []


# ----------------------------------------------------------------------------------------------
# build, variants and threads
# ----------------------------------------------------------------------------------------------

@pytest.mark.skipif(os.environ.get("FASTOPTIM_ALLOW_NO_OPENMP", "0") not in ("", "0"),
                    reason="FASTOPTIM_ALLOW_NO_OPENMP is set")
def test_openmp_was_compiled_in():
    from fastoptim import _runtime

    assert _runtime.openmp_enabled(), "fastoptim was built without OpenMP"


def test_set_and_get_num_threads():
    old = fo.get_num_threads()
    try:
        fo.set_num_threads(1)
        assert fo.get_num_threads() == 1
        fo.set_num_threads(3)
        assert fo.get_num_threads() == 3
        with pytest.raises(ValueError, match=">= 1"):
            fo.set_num_threads(0)
        with pytest.raises(TypeError, match="expects an int"):
            fo.set_num_threads(2.0)
        assert fo.get_num_threads() == 3
    finally:
        fo.set_num_threads(old)


def test_threadpoolctl_limits_are_honoured():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    old = fo.get_num_threads()
    fo.set_num_threads(2)
    try:
        with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
            assert fo.get_num_threads() == 1
        assert fo.get_num_threads() == 2
    finally:
        fo.set_num_threads(old)


def _run_python(code, **env):
    full_env = dict(os.environ, **env)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env,
                         cwd=os.path.dirname(__file__), timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_omp_num_threads_is_honoured():
    assert _run_python("import fastoptim as fo; print(fo.get_num_threads())", OMP_NUM_THREADS="1") == "1"
    assert _run_python("import fastoptim as fo; print(fo.get_num_threads())", OMP_NUM_THREADS="3") == "3"


_VARIANT_CHECK = """
import numpy as np
from fastoptim import functional as F, _dispatch
from reference import adam_step, sgd_step, bits
rng = np.random.default_rng(0)
p = rng.standard_normal(1003).astype(np.{dtype})
ref = (p.copy(), np.zeros_like(p), np.zeros_like(p), np.zeros_like(p), 0)
m, v, x, s = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p), [0]
cfg = dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, amsgrad=True, maximize=False, decoupled_weight_decay=False)
sp, sref, b = p.copy(), p.copy(), [None]
sref_b = None
for _ in range(3):
    g = rng.standard_normal(p.shape).astype(p.dtype)
    F.adam([p], [g], [m], [v], [x], s, **cfg)
    ref = adam_step(ref[0], g, ref[1], ref[2], ref[3], ref[4], **cfg)
    F.sgd([sp], [g], b, lr=0.1, weight_decay=0.1, momentum=0.9, dampening=0.0, nesterov=True, maximize=False)
    sref, sref_b = sgd_step(sref, g, sref_b, lr=0.1, weight_decay=0.1, momentum=0.9, dampening=0.0, nesterov=True, maximize=False)
assert np.array_equal(bits(p), bits(ref[0])) and np.array_equal(bits(sp), bits(sref))
print(_dispatch.VARIANT)
"""


def _available_variants():
    import importlib.util

    from fastoptim import _runtime

    names = ["baseline"]
    if importlib.util.find_spec("fastoptim._kernels_x86_64_v3") and _runtime.cpu_supports("avx2") \
            and _runtime.cpu_supports("fma"):
        names.append("x86_64_v3")
    if importlib.util.find_spec("fastoptim._kernels_x86_64_v4") and _runtime.cpu_supports("avx512f"):
        names.append("x86_64_v4")
    return names


@pytest.mark.parametrize("variant", _available_variants())
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_kernel_variant_matches_the_reference(variant, dtype):
    # the IEEE square root: the variants' one difference is torch's square root, on AVX-512 only
    assert _run_python(_VARIANT_CHECK.format(dtype=dtype), FASTOPTIM_KERNELS=variant,
                       FASTOPTIM_SQRT="ieee") == variant


def test_show_config_and_cli(capsys):
    fo.show_config()
    out = capsys.readouterr().out
    for key in ("fastoptim", "numpy", "openmp", "num_threads", "cflags", "kernel_variant"):
        assert key in out
    assert fo.__version__ in out
    cli = subprocess.run([sys.executable, "-m", "fastoptim", "info"], capture_output=True, text=True,
                         timeout=120)
    assert cli.returncode == 0 and "openmp" in cli.stdout and np.__version__ in cli.stdout


@pytest.mark.parametrize("seed", range(20))
def test_overlap_detection_agrees_with_brute_force(seed):
    """Random slices of one buffer: the sort-based check refuses exactly the overlapping lists."""
    rng = np.random.default_rng(seed)
    buf = np.zeros(4000, np.float32)
    n = int(rng.integers(2, 40))
    starts = rng.integers(0, 3900, size=n)
    lengths = rng.integers(0, 100, size=n) if seed % 2 else rng.integers(0, 3, size=n)
    if seed % 4 == 0:  # disjoint on purpose: consecutive pieces
        lengths = rng.integers(1, 50, size=n)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    params = [buf[s:s + k] for s, k in zip(starts, lengths)]
    overlap = any(
        params[i].size and params[j].size and starts[i] < starts[j] + lengths[j] and starts[j] < starts[i] + lengths[i]
        for i in range(n) for j in range(i + 1, n))
    grads = [np.ones(p.shape, np.float32) for p in params]
    if overlap:
        with pytest.raises(ValueError, match="share memory"):
            F.sgd(params, grads, [None] * n, **SGD_KW)
        assert not buf.any()
    else:
        F.sgd(params, grads, [None] * n, **SGD_KW)


def _sqrt_inputs(dtype, n=1 << 20):
    """Random bit patterns over every positive finite value (subnormals included), random values
    of the sizes optimizers take roots of, and the special values."""
    rng = np.random.default_rng(11)
    uint, top = (np.uint32, 0x7F800000) if dtype == np.float32 else (np.uint64, 0x7FF0000000000000)
    bits_ = rng.integers(0, top, n, dtype=uint).view(dtype)
    small = np.ldexp(rng.random(n // 4), rng.integers(-160, 10, n // 4)).astype(dtype)
    tiny = np.arange(1, 4097, dtype=uint).view(dtype)       # the smallest subnormals
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -1.0, -1e-30, 1.0, 4.0, 2.0,
                        np.finfo(dtype).max, np.finfo(dtype).tiny], dtype)
    return np.concatenate([bits_, small, tiny, special])


def _same_bits(a, b):
    nan = np.isnan(a)
    return np.array_equal(nan, np.isnan(b)) and np.array_equal(bits(a[~nan]), bits(b[~nan]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_square_root_is_torchs_or_ieee(dtype):
    """The element loops' square root: torch's, bit for bit, where fastoptim claims it (an Intel
    CPU with AVX-512, the AVX-512 kernels), else the IEEE one; inside ``ieee_sqrt`` always IEEE."""
    from fastoptim import _dispatch

    x = _sqrt_inputs(dtype)
    out = np.empty_like(x)
    with np.errstate(invalid="ignore"):
        ieee = np.sqrt(x)
    kernels._sqrt_into(out, x)
    if _dispatch.TORCH_SQRT:
        torch = pytest.importorskip("torch")
        assert _same_bits(out, torch.from_numpy(x).sqrt().numpy())
        assert not _same_bits(out, ieee)        # torch's is not the IEEE root (about 0.7 % differ)
    else:
        assert _same_bits(out, ieee)
    with _dispatch.ieee_sqrt():
        kernels._sqrt_into(out, x)
        assert _same_bits(out, ieee) and not _dispatch.TORCH_SQRT
    assert _dispatch.TORCH_SQRT == kernels._set_torch_sqrt(_dispatch.TORCH_SQRT)   # restored


def test_torch_square_root_taken_where_it_is_reproduced():
    """On an Intel CPU with AVX-512 (where torch runs MKL's AVX-512 square root) the AVX-512
    kernels take torch's unless FASTOPTIM_SQRT=ieee; a wrong value of the variable is refused."""
    from fastoptim import _dispatch

    claimed = _dispatch.VARIANT == "x86_64_v4" and kernels._torch_sqrt_available()
    if os.environ.get("FASTOPTIM_SQRT", "").strip().lower() != "ieee":
        assert _dispatch.TORCH_SQRT == claimed
    code = "import fastoptim as fo; from fastoptim import _dispatch; print(_dispatch.TORCH_SQRT, fo._config.config_dict()['sqrt'])"
    assert _run_python(code, FASTOPTIM_SQRT="ieee") == "False IEEE (correctly rounded)"
    if claimed:
        assert _run_python(code, FASTOPTIM_SQRT="torch").startswith("True torch's")
    bad = subprocess.run([sys.executable, "-c", "import fastoptim"], capture_output=True, text=True,
                         env=dict(os.environ, FASTOPTIM_SQRT="fast"), timeout=120)
    assert bad.returncode != 0 and "FASTOPTIM_SQRT must be 'torch'" in bad.stderr and "'fast'" in bad.stderr


def _prefetch_run(info, config, dtype, state_dtype=None, fused=False, steps=4):
    """``steps`` steps of ``config`` on arrays long enough to prefetch (more than
    FO_PF_AHEAD + FO_PF_BLOCK = 1088 elements) with tails that do not fill a block, two threads;
    ``fused``: clip + step + EMA in one pass. Returns every param, state array and EMA array."""
    rng = np.random.default_rng(7)
    params = [fo.Parameter(rng.standard_normal(n).astype(dtype)) for n in (70_001, 1_200, 63)]
    extra = {"state_dtype": state_dtype} if state_dtype else {}
    opt = config.make(params, **extra)
    ema = fo.swa_utils.AveragedModel(params, multi_avg_fn=fo.swa_utils.get_ema_multi_avg_fn(0.9),
                                     **({"fused_with": opt} if fused else {}))
    for _ in range(steps):
        for p in params:
            p.grad = rng.standard_normal(p.shape).astype(dtype)
        fo.clip_grad_norm_(params, 50.0, **({"fused_with": opt} if fused else {}))
        opt.step()
        if not fused:
            ema.update_parameters(params)
    state = [v for p in params for v in opt.state[p].values() if isinstance(v, np.ndarray)]
    return [np.asarray(a) for a in params + state + list(ema.averaged)]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_prefetch_changes_no_bit(name):
    """Software prefetch (``_kernels/_prefetch.pxi``, on by default) changes speed only: with it
    off every param, state array and EMA is bitwise the same, for every configuration of the
    registry, float32 and float64, the fused pass and bfloat16 state; ``set_prefetch`` switches
    the optimizer kernels, the training utilities and the bandwidth bound alike."""
    from fastoptim import _dispatch, _stream, _train_kernels

    info = OPTIMIZERS[name]
    threads = fo.get_num_threads()
    fo.set_num_threads(2)
    runs = []
    try:
        for on in (True, False):
            previous = _dispatch.set_prefetch(on)
            try:
                assert _dispatch.PREFETCH is on
                for module in (kernels, _stream._impl, _train_kernels._impl):
                    assert module._set_prefetch() is on
                out = []
                for config in info.configs:
                    for dtype in (np.float32, np.float64):
                        out += _prefetch_run(info, config, dtype)
                    out += _prefetch_run(info, config, np.float32, fused=True)
                out += _prefetch_run(info, info.configs[0], np.float32, state_dtype="bfloat16")
                runs.append(out)
            finally:
                _dispatch.set_prefetch(previous)
    finally:
        fo.set_num_threads(threads)
    assert len(runs[0]) == len(runs[1]) > 0
    for a, b in zip(*runs):
        assert a.dtype == b.dtype and _same_bits(a.astype(np.float64).ravel(), b.astype(np.float64).ravel())


def test_prefetch_environment_variable():
    """``FASTOPTIM_PREFETCH=off`` switches the prefetch off in every module (show_config says
    so); a wrong value is refused at import, naming the variable."""
    code = ("import fastoptim as fo; from fastoptim import _dispatch, _stream, _train_kernels; "
            "from fastoptim._dispatch import kernels; "
            "print(_dispatch.PREFETCH, fo._config.config_dict()['prefetch'].split()[0], "
            "kernels._set_prefetch(), _stream._impl._set_prefetch(), _train_kernels._impl._set_prefetch())")
    assert _run_python(code, FASTOPTIM_PREFETCH="off") == "False off False False False"
    assert _run_python(code, FASTOPTIM_PREFETCH="on") == "True on True True True"
    bad = subprocess.run([sys.executable, "-c", "import fastoptim"], capture_output=True, text=True,
                         env=dict(os.environ, FASTOPTIM_PREFETCH="yes"), timeout=120)
    assert bad.returncode != 0 and "FASTOPTIM_PREFETCH must be 'on'" in bad.stderr and "'yes'" in bad.stderr
