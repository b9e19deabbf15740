"""Misaligned arrays in the kernels: a parameter or state array is refused with advice that works
(``a.copy()``; ``np.ascontiguousarray`` keeps a contiguous array misaligned), a gradient is copied."""
import numpy as np
import pytest

from fastoptim import functional as F

SGD = dict(lr=0.1, weight_decay=0.0, momentum=0.9, dampening=0.0, nesterov=False, maximize=False)


def _misaligned(n=10):
    a = np.zeros(n * 8 + 1, np.uint8)[1:].view(np.float64)
    assert a.flags.c_contiguous and not a.flags.aligned
    assert not np.ascontiguousarray(a).flags.aligned       # why the advice names a.copy()
    return a


def test_misaligned_param_is_refused_with_copy_advice_and_nothing_changes():
    p, g = _misaligned(), np.ones(10)
    with pytest.raises(ValueError, match=r"params\[0\] is not a C-contiguous, aligned array.*"
                                         r"a\.copy\(\).*ascontiguousarray"):
        F.sgd([p], [g], [None], **SGD)
    assert not p.any()
    fixed = [p.copy()]
    assert fixed[0].flags.aligned
    F.sgd(fixed, [g], [None], **SGD)
    np.testing.assert_array_equal(fixed[0], np.full(10, -0.1))


def test_misaligned_state_is_refused_with_copy_advice():
    buf = _misaligned()
    with pytest.raises(ValueError, match=r"a\.copy\(\)"):
        F.sgd([np.zeros(10)], [np.ones(10)], [buf], **SGD)


def test_misaligned_gradient_is_read_through_an_aligned_copy():
    g = _misaligned()
    g[:] = np.arange(10.0)
    p = [np.zeros(10)]
    F.sgd(p, [g], [None], **SGD)
    np.testing.assert_array_equal(p[0], -0.1 * np.arange(10.0))
