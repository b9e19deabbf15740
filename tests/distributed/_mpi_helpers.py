"""Helpers of the tests that run on every rank under mpirun."""
import hashlib

import numpy as np
import pytest

import fastoptim as fo

# (class name, constructor keywords); classes another branch has not added yet are skipped
CONFIGS = [
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    ("Adam", dict(lr=1e-2, amsgrad=True, weight_decay=1e-3)),
    ("AdamW", dict(lr=1e-2)),
    ("Adadelta", {}),
    ("Adagrad", dict(lr=1e-2)),
    ("Adamax", {}),
    ("ASGD", {}),
    ("NAdam", {}),
    ("RAdam", {}),
    ("RMSprop", dict(momentum=0.5, centered=True)),
    ("Rprop", {}),
    ("Lion", {}),
    ("Adafactor", {}),
]
CONFIG_IDS = [name for name, _ in CONFIGS]

# a float32 and a float64 group of small arrays (packed into buckets)...
SHAPES = ([(np.float32, (64, 33)), (np.float32, (1000,)), (np.float32, (5,))],
          [(np.float64, (40, 30)), (np.float64, (7,))])
# ... and with an array of just over 1 MiB in each (reduced in place, as its own collective)
LARGE_SHAPES = (SHAPES[0] + [(np.float32, (512, 513))], SHAPES[1] + [(np.float64, (256, 513))])


def optimizer_class(name):
    cls = getattr(fo, name, None)
    if cls is None:
        pytest.skip(f"fastoptim.{name} is not in this build")
    return cls


def make_params(seed=0, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return [[fo.Parameter(rng.standard_normal(shape).astype(dtype)) for dtype, shape in group]
            for group in shapes]


def groups_of(params):
    return [{"params": params[0]}, {"params": params[1]}]


def bits(a):
    """The bytes of an array (any shape, 0-d included) for exact comparison (-0.0 != 0.0, NaNs
    compared by payload)."""
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


def rank_grads(params, step, rank, seed=1):
    """The gradients rank ``rank`` sees at ``step`` (every rank can compute every rank's)."""
    rng = np.random.default_rng([seed, step, rank])
    return [(rng.standard_normal(p.shape) * (1 + rank)).astype(p.dtype) for p in params]


def averaged(all_grads, n):
    """The documented average: rank-order sum, then divided by n."""
    out = []
    for per_param in zip(*all_grads):
        acc = per_param[0]
        for g in per_param[1:]:
            acc = acc + g
        out.append(acc / n)
    return out


def flat(params):
    return [p for group in params for p in group]


def digest(arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def assert_bitwise(actual, expected):
    assert len(actual) == len(expected)
    for i, (a, b) in enumerate(zip(actual, expected)):
        assert a.dtype == b.dtype and a.shape == b.shape, i
        if not np.array_equal(bits(a), bits(b)):
            diff = np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))
            raise AssertionError(f"array {i} differs (max abs diff {diff})")


def assert_same_on_all_ranks(comm, arrays):
    digests = comm.allgather(digest(arrays))
    assert len(set(digests)) == 1, digests


def assert_state_dicts_equal(actual, expected):
    assert actual["param_groups"] == expected["param_groups"]
    assert set(actual["state"]) == set(expected["state"])
    for index, state in expected["state"].items():
        got = actual["state"][index]
        assert set(got) == set(state), index
        for key, value in state.items():
            if isinstance(value, np.ndarray):
                assert isinstance(got[key], np.ndarray) and got[key].dtype == value.dtype
                assert np.array_equal(bits(got[key]), bits(value)), (index, key)
            else:
                assert got[key] == value and type(got[key]) is type(value), (index, key)
