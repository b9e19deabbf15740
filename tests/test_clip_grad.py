"""Gradient clipping (fastoptim.clip_grad) against torch.nn.utils 2.13, and its own contract.

The per-array norms follow torch's CPU reduction order, so the total norm is compared bit for bit
(the documented bound is 2 ulp) and the clipped gradients within 1 ulp (measured: 0)."""
import math

import numpy as np
import pytest

import fastoptim as fo

NORMS = [2.0, 1.0, math.inf, -math.inf, 0.0, 3.0, 0.5]


def _params(dtype, seed, sizes=None):
    rng = np.random.default_rng(seed)
    if sizes is None:
        sizes = [int(s) for s in rng.integers(1, 3000, size=40)] + [40000, 7, 1]
    params = []
    for k, n in enumerate(sizes):
        p = fo.Parameter(np.zeros(n, dtype))
        if k % 11 != 5:      # some None grads
            p.grad = (rng.standard_normal(n) * rng.uniform(0.1, 3.0)).astype(dtype)
        params.append(p)
    return params


def _ulps(a, b):
    a = np.asarray(a)
    b = np.asarray(b, dtype=a.dtype)
    if np.isnan(a).any() or np.isnan(b).any():
        return 0 if (np.isnan(a) == np.isnan(b)).all() else np.inf
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))
                        / np.spacing(np.maximum(np.abs(a), np.abs(b))).astype(np.float64)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm_type", NORMS)
def test_clip_grad_norm_matches_torch(dtype, norm_type):
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    torch.set_num_threads(1)      # torch's p-norm reduction splits large arrays over its threads
    try:
        params = _params(dtype, 1)
        tparams = []
        for p in params:
            t = torch.zeros(p.shape, dtype=getattr(torch, np.dtype(dtype).name), requires_grad=True)
            if p.grad is not None:
                t.grad = torch.from_numpy(p.grad.copy())
            tparams.append(t)
        max_norm = 0.1 if norm_type != 0.0 else 5.0
        ours = fo.clip_grad_norm_(params, max_norm, norm_type)
        theirs = torch.nn.utils.clip_grad_norm_(tparams, max_norm, norm_type, foreach=True)
    finally:
        torch.set_num_threads(old)
    assert isinstance(ours, np.ndarray) and ours.shape == () and ours.dtype == dtype
    assert _ulps(ours, theirs.numpy()) <= 2
    for p, t in zip(params, tparams):
        if p.grad is None:
            assert t.grad is None
        else:
            assert _ulps(p.grad, t.grad.numpy()) <= 1


def test_norm_two_of_large_arrays_matches_torch_at_any_torch_thread_count():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal(n).astype(np.float32) for n in (1_000_003, 65_536, 999)]
    theirs = torch.nn.utils.get_total_norm([torch.from_numpy(a) for a in arrays])
    assert fo.get_total_norm(arrays) == theirs.numpy()


def test_mixed_dtypes_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    arrays = [rng.standard_normal(n).astype(dt) for n, dt in
              [(100, np.float32), (50, np.float64), (300, np.float32), (7, np.float64)]]
    for p in (2.0, 1.0, math.inf):
        theirs = torch.nn.utils.get_total_norm([torch.from_numpy(a) for a in arrays], p)
        ours = fo.get_total_norm(arrays, p)
        assert ours.dtype == np.float64 and ours == theirs.numpy()


def test_clip_grads_with_norm_matches_torch():
    torch = pytest.importorskip("torch")
    params = _params(np.float32, 5, sizes=[10, 20, 30])
    tparams = [torch.zeros(p.shape, requires_grad=True) for p in params]
    for p, t in zip(params, tparams):
        if p.grad is not None:
            t.grad = torch.from_numpy(p.grad.copy())
    for total in (np.float32(3.7), np.float32(0.01)):
        fo.clip_grads_with_norm_(params, 0.5, np.array(total))
        torch.nn.utils.clip_grads_with_norm_(tparams, 0.5, torch.tensor(total))
        for p, t in zip(params, tparams):
            assert np.array_equal(p.grad, t.grad.numpy())


@pytest.mark.parametrize("clip", [0.5, 1e-3, 0.0])
def test_clip_grad_value_matches_torch(clip):
    torch = pytest.importorskip("torch")
    params = _params(np.float32, 6)
    params[0].grad[:3] = [np.nan, np.inf, -np.inf]
    tparams = []
    for p in params:
        t = torch.zeros(p.shape, requires_grad=True)
        t.grad = None if p.grad is None else torch.from_numpy(p.grad.copy())
        tparams.append(t)
    fo.clip_grad_value_(params, clip)
    torch.nn.utils.clip_grad_value_(tparams, clip)
    for p, t in zip(params, tparams):
        if p.grad is not None:
            np.testing.assert_array_equal(p.grad, t.grad.numpy())


@pytest.mark.parametrize("norm_type", NORMS)
def test_identical_for_any_thread_count(threads, norm_type):
    results = []
    for n in (1, 2):
        fo.set_num_threads(n)
        params = _params(np.float32, 7, sizes=[100_000, 3000, 50_000, 17] * 3)
        total = fo.clip_grad_norm_(params, 0.3, norm_type)
        fo.clip_grad_value_(params, 1e-4)
        results.append((total, [p.grad.copy() for p in params if p.grad is not None]))
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1], results[1][1]):
        assert np.array_equal(a, b)


def test_single_parameter_and_none_grads():
    p = fo.Parameter(np.zeros(2))
    p.grad = np.array([3.0, 4.0])
    q = fo.Parameter(np.zeros(3))
    assert fo.clip_grad_norm_(p, 10.0) == 5.0
    np.testing.assert_array_equal(p.grad, [3.0, 4.0])       # coefficient clamped to 1
    assert fo.clip_grad_norm_([q], 1.0) == 0.0              # no grads: float32 zero, as torch
    assert fo.clip_grad_norm_([q], 1.0).dtype == np.float32
    total = fo.clip_grad_norm_([p, q], 1.0)
    assert total == 5.0 and q.grad is None
    assert abs(np.linalg.norm(p.grad) - 1.0) < 1e-6


def test_error_if_nonfinite_changes_nothing():
    p = fo.Parameter(np.zeros(3, np.float32))
    p.grad = np.array([1.0, np.inf, 2.0], np.float32)
    before = p.grad.copy()
    with pytest.raises(RuntimeError, match="non-finite, so it cannot be clipped"):
        fo.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    np.testing.assert_array_equal(p.grad, before)
    assert np.isinf(fo.clip_grad_norm_([p], 1.0))            # without the flag: scaled by 0


def test_empty_generator_warns():
    with pytest.warns(UserWarning, match="empty generator"):
        fo.clip_grad_norm_((p for p in []), 1.0)


def test_bad_inputs():
    p = fo.Parameter(np.zeros(3))
    p.grad = np.ones(3)
    with pytest.raises(TypeError, match="no .grad"):
        fo.clip_grad_norm_([np.zeros(3)], 1.0)
    with pytest.raises(TypeError, match="max_norm must be a real number"):
        fo.clip_grad_norm_([p], "1")
    with pytest.raises(TypeError, match="float32 and float64"):
        fo.get_total_norm([np.zeros(3, np.int64)])
    ro = np.ones(3)
    ro.flags.writeable = False
    p.grad = ro
    with pytest.raises(ValueError, match="read-only"):
        fo.clip_grad_norm_([p], 0.1)
    np.testing.assert_array_equal(ro, 1.0)
    with pytest.raises(RuntimeError, match="empty tensor"):
        fo.get_total_norm([np.zeros(0)], math.inf)


def test_non_contiguous_grads():
    p = fo.Parameter(np.zeros((4, 3)))
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    p.grad = base[:, ::2]
    expected_norm = np.linalg.norm(base[:, ::2])
    total = fo.clip_grad_norm_(p, 1.0)
    assert abs(total - expected_norm) <= 4 * np.spacing(expected_norm)
    assert abs(np.linalg.norm(base[:, ::2]) - 1.0) < 1e-6
    np.testing.assert_array_equal(base[:, 1::2], np.arange(24.0).reshape(4, 6)[:, 1::2])


def test_shared_gradient_is_scaled_once_per_occurrence_like_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    g = rng.standard_normal(50_000).astype(np.float32)
    a, b = fo.Parameter(np.zeros(50_000, np.float32)), fo.Parameter(np.zeros(50_000, np.float32))
    a.grad = b.grad = g.copy()                     # tied weights: one gradient array
    ta, tb = (torch.zeros(50_000, requires_grad=True) for _ in range(2))
    ta.grad = tb.grad = torch.from_numpy(g.copy())
    assert fo.clip_grad_norm_([a, b], 0.5) == torch.nn.utils.clip_grad_norm_([ta, tb], 0.5).numpy()
    np.testing.assert_array_equal(a.grad, ta.grad.numpy())
    fo.clip_grad_value_([a, b], 1e-3)
    torch.nn.utils.clip_grad_value_([ta, tb], 1e-3)
    np.testing.assert_array_equal(a.grad, ta.grad.numpy())


@pytest.mark.parametrize("n", [1, 2])
def test_paired_norms_and_reordered_scaling_are_exact(threads, n):
    """The norm pass sums two arrays of one size class at once and the scaling walks the arrays
    in reverse size order in chunks: each result must still be the array's own norm in torch's
    order (vector_norm, one array at a time) and the plain product, whatever the thread count."""
    from fastoptim import _train_kernels

    fo.set_num_threads(n)
    rng = np.random.default_rng(11)
    sizes = [300_000, 70_001, 1, 0, 13, 70_000, 300_017, 5, 8, 200_000, 131_072, 9]
    arrays = [rng.standard_normal(s).astype(np.float32 if i % 3 else np.float64)
              for i, s in enumerate(sizes)]
    norms = _train_kernels.array_norms(arrays, 2.0)
    assert [float(x) for x in norms] == [_train_kernels.vector_norm(a, 2.0) for a in arrays]
    scaled = [a.copy() for a in arrays]
    _train_kernels.scale(scaled, 0.3, 0.3)
    for s, a in zip(scaled, arrays):
        assert np.array_equal(s, a * a.dtype.type(0.3))


def test_coefficient_one_leaves_grads_untouched():
    w = fo.Parameter(np.zeros(3, np.float32))
    w.grad = np.array([0.1, -0.0, np.nan], np.float32)
    fo.clip_grad_norm_([w], max_norm=1.0)
    assert np.isnan(w.grad).all()   # NaN norm: the coefficient is NaN, the pass runs (as torch)
    w.grad = np.array([0.1, -0.0, 0.2], np.float32)
    before = w.grad.copy()
    fo.clip_grad_norm_([w], max_norm=10.0)
    assert w.grad.tobytes() == before.tobytes()
