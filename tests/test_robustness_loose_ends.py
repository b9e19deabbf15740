"""Loose ends of issue 17: bad input refused where it enters, with a clear error and nothing changed."""
import copy

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import lr_scheduler as lrs


# -- Parameter: unaligned memory ---------------------------------------------------------------

def _unaligned(dtype, n=8):
    raw = np.zeros(n * np.dtype(dtype).itemsize + 1, np.uint8)
    a = raw[1:].view(dtype)
    assert a.flags.c_contiguous and a.flags.writeable and not a.flags.aligned
    return a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unaligned_array_refused_at_parameter_construction(dtype):
    a = _unaligned(dtype)
    with pytest.raises(ValueError, match=r"not aligned.*Parameter\(a\.copy\(\)\)"):
        fo.Parameter(a)


def test_aligned_copy_of_unaligned_array_is_accepted_and_steps():
    p = fo.Parameter(_unaligned(np.float32).copy())
    p.grad = np.ones_like(p)
    fo.SGD([p], lr=0.5).step()
    assert np.array_equal(p, np.full(8, -0.5, np.float32))


# -- schedulers: state dicts the next step() could not use -------------------------------------

def _optimizer():
    p = fo.Parameter(np.zeros(2))
    p.grad = np.ones(2)
    return fo.SGD([p], lr=0.1, momentum=0.9)


BAD_STATES = [
    (lambda o: lrs.StepLR(o, step_size=3), "step_size", 0, "non-zero"),
    (lambda o: lrs.StepLR(o, step_size=3), "step_size", 0.0, "non-zero"),
    (lambda o: lrs.CosineAnnealingLR(o, T_max=10), "T_max", 0, "non-zero"),
    (lambda o: lrs.CosineAnnealingWarmRestarts(o, T_0=3), "T_i", 0, "> 0"),
    (lambda o: lrs.CosineAnnealingWarmRestarts(o, T_0=3), "T_i", -2, "> 0"),
    (lambda o: lrs.CyclicLR(o, 0.01, 0.1, step_size_up=3), "total_size", 0, "a finite number > 0"),
    (lambda o: lrs.CyclicLR(o, 0.01, 0.1, step_size_up=3), "total_size", float("nan"), "a finite"),
    (lambda o: lrs.CyclicLR(o, 0.01, 0.1, step_size_up=3), "total_size", float("inf"), "a finite"),
    (lambda o: lrs.CyclicLR(o, 0.01, 0.1, step_size_up=3), "step_ratio", 0.0, r"in \(0, 1\]"),
    (lambda o: lrs.CyclicLR(o, 0.01, 0.1, step_size_up=3), "step_ratio", 1.5, r"in \(0, 1\]"),
]


@pytest.mark.parametrize("make, key, value, condition", BAD_STATES,
                         ids=[f"{key}={value!r}" for _, key, value, _ in BAD_STATES])
def test_scheduler_state_that_would_break_step_is_refused_and_nothing_changes(make, key, value,
                                                                              condition):
    opt = _optimizer()
    sched = make(opt)
    for _ in range(2):
        opt.step()
        sched.step()
    before = copy.deepcopy(sched.__dict__)
    groups_before = copy.deepcopy(opt.param_groups)
    state = sched.state_dict()
    state["last_epoch"] = 7  # a valid change that must not be applied either
    state[key] = value
    with pytest.raises(ValueError, match=rf"{type(sched).__name__}\.load_state_dict: {key!r} "
                                         rf"must be {condition}"):
        sched.load_state_dict(state)
    assert sched.__dict__.keys() == before.keys()
    for name, old in before.items():
        if name != "optimizer":
            assert repr(sched.__dict__[name]) == repr(old), name
    assert repr(opt.param_groups) == repr(groups_before)
    opt.step()
    sched.step()  # still works


@pytest.mark.parametrize("make, key", [
    (lambda o: lrs.StepLR(o, step_size=3), "step_size"),
    (lambda o: lrs.CosineAnnealingLR(o, T_max=10), "T_max"),
    (lambda o: lrs.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2), "T_i"),
    (lambda o: lrs.CyclicLR(o, 0.01, 0.1, step_size_up=3, step_size_down=2), "total_size"),
])
def test_valid_states_still_round_trip(make, key):
    opt = _optimizer()
    sched = make(opt)
    for _ in range(4):
        opt.step()
        sched.step()
    state = sched.state_dict()
    other = make(_optimizer())
    other.load_state_dict(state)
    assert getattr(other, key) == state[key]
    assert other.state_dict() == state


@pytest.mark.parametrize("cls, kwargs, name", [
    (lrs.StepLR, {"step_size": 0}, "step_size"),
    (lrs.CosineAnnealingLR, {"T_max": 0}, "T_max"),
])
def test_zero_period_refused_at_construction_before_touching_the_optimizer(cls, kwargs, name):
    opt = _optimizer()
    with pytest.raises(ValueError, match=rf"{cls.__name__}: {name} must be non-zero"):
        cls(opt, **kwargs)
    assert "initial_lr" not in opt.param_groups[0]
