"""Parity with torch 2.13 without torch: replay golden data recorded from torch.optim through the
compiled kernels (SGD and Adam: tests/golden/make_kernel_golden.py) and through the optimizer
classes (the round-2 elementwise optimizers: tests/golden/make_elementwise_golden.py)."""
import os

import numpy as np
import pytest

from fastoptim import functional as F
from fastoptim._dispatch import ieee_sqrt
from fastoptim.optim.registry import OPTIMIZERS

from reference import adam_step, bits

SGD_CONFIGS = OPTIMIZERS["SGD"].kernel_configs
ADAM_CONFIGS = OPTIMIZERS["Adam"].kernel_configs
GOLDEN = np.load(os.path.join(os.path.dirname(__file__), "golden", "kernels.npz"))
STEPS = max(int(k.split("/grad")[1]) for k in GOLDEN.files if "/grad" in k) + 1


def _sqrt_one_ulp_low(x):
    return np.nextafter(np.sqrt(x), np.zeros_like(x))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("k", range(len(SGD_CONFIGS)))
def test_sgd_golden_bitwise(k, dtype):
    key, cfg = f"sgd{k}_{dtype}", SGD_CONFIGS[k]
    p = GOLDEN[f"{key}/param0"].copy()
    bufs = [None]
    for s in range(STEPS):
        F.sgd([p], [GOLDEN[f"{key}/grad{s}"]], bufs, **cfg)
        assert np.array_equal(bits(p), bits(GOLDEN[f"{key}/param{s + 1}"])), f"step {s + 1}"
        if cfg["momentum"]:
            assert np.array_equal(bits(bufs[0]), bits(GOLDEN[f"{key}/buf{s + 1}"]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("k", range(len(ADAM_CONFIGS)))
def test_adam_golden_differs_only_by_torch_sqrt(k, dtype):
    """Each step from torch's state: the moments are bitwise equal, and every parameter element
    equals either our result or the result with sqrt rounded one ulp down (torch's MKL sqrt)."""
    key, cfg = f"adam{k}_{dtype}", ADAM_CONFIGS[k]
    prev = GOLDEN[f"{key}/param0"]
    zeros = np.zeros_like(prev)
    m, v, x = zeros, zeros, zeros
    for s in range(STEPS):
        g = GOLDEN[f"{key}/grad{s}"]
        p, mm, vv, xx, steps = prev.copy(), m.copy(), v.copy(), x.copy(), [s]
        F.adam([p], [g], [mm], [vv], [xx], steps, **cfg)
        low = adam_step(prev, g, m, v, x, s, sqrt=_sqrt_one_ulp_low, **cfg)[0]
        want = GOLDEN[f"{key}/param{s + 1}"]
        assert np.array_equal(bits(mm), bits(GOLDEN[f"{key}/exp_avg{s + 1}"]))
        assert np.array_equal(bits(vv), bits(GOLDEN[f"{key}/exp_avg_sq{s + 1}"]))
        explained = (bits(p) == bits(want)) | (bits(low) == bits(want))
        assert explained.all(), f"step {s + 1}: {np.flatnonzero(~explained)}"
        prev, m, v = want, GOLDEN[f"{key}/exp_avg{s + 1}"], GOLDEN[f"{key}/exp_avg_sq{s + 1}"]
        if cfg["amsgrad"]:
            assert np.array_equal(bits(xx), bits(GOLDEN[f"{key}/max_exp_avg_sq{s + 1}"]))
            x = GOLDEN[f"{key}/max_exp_avg_sq{s + 1}"]


# ------------------------------------------------------------------------------------------------
# The round-2 elementwise optimizers, class level: every test configuration of the registry, float32
# and float64, three param groups (the constructor's hyperparameters, the configuration's
# ``group_overrides``, another lr), parameters (and once a whole group) without a gradient at some
# steps. Recorded by tests/golden/make_elementwise_golden.py from torch 2.13's classes (the
# single-tensor path, with the IEEE square root where the update takes one: the only thing in which
# fastoptim differs from live torch, see tests/test_kernels_elementwise.py), and for Lion (not in
# torch) from its reference formula in torch ops. Replayed here bit for bit, without torch.
# ------------------------------------------------------------------------------------------------

CLASS_GOLDEN_PATH = os.path.join(os.path.dirname(__file__), "golden", "elementwise_classes.npz")
CLASS_NAMES = ("RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam", "RAdam", "ASGD", "Rprop", "Lion")
CLASS_SHAPES = [(7,), (5, 13), (33,), (1,), (3, 4, 5), (20,)]
CLASS_GROUPS = [[0, 1], [2, 3], [4, 5]]     # indices into CLASS_SHAPES
CLASS_STEPS = 40
CLASS_CASES = [(name, k) for name in CLASS_NAMES for k in range(len(OPTIMIZERS[name].configs))]


def class_groups(config, params):
    """The param groups of a run: the constructor's hyperparameters, the configuration's
    ``group_overrides``, and ``lr=0.002``."""
    extra = [{}, dict(config.group_overrides), {"lr": 0.002}]
    return [{"params": [params[i] for i in g], **kw} for g, kw in zip(CLASS_GROUPS, extra)]


def class_inputs(name, k, dtype):
    """The seeded start and, per step, the gradients (``None`` for a parameter without one: every
    seventh step of each parameter, and the whole second group at step 25)."""
    rng = np.random.default_rng([CLASS_NAMES.index(name), k, np.dtype(dtype).itemsize])
    start = [rng.standard_normal(s).astype(dtype) for s in CLASS_SHAPES]
    grads = []
    for t in range(CLASS_STEPS):
        step = []
        for j, s in enumerate(CLASS_SHAPES):
            noise = rng.standard_normal(s).astype(dtype)
            none = (t + j) % 7 == 3 or (t == 25 and j in CLASS_GROUPS[1])
            step.append(None if none else noise)
        grads.append(step)
    return start, grads


def class_key(name, k, dtype):
    return f"{name}/{k}/{np.dtype(dtype).name}"


def flatten_state(prefix, params, state_of):
    """``{prefix/param<j>: param, prefix/<j>/<state key>: value}`` (``step`` as an int64 0-d array)."""
    out = {}
    for j, p in enumerate(params):
        out[f"{prefix}/param{j}"] = np.asarray(p)
        for key, value in state_of(j).items():
            out[f"{prefix}/{j}/{key}"] = np.asarray(value, dtype=np.int64) if key == "step" else np.asarray(value)
    return out


def run_class(name, k, dtype):
    """fastoptim's class over the golden run: the final parameters and state, flattened."""
    import fastoptim as fo

    config = OPTIMIZERS[name].configs[k]
    start, grads = class_inputs(name, k, dtype)
    params = [fo.Parameter(x.copy()) for x in start]
    opt = config.make(class_groups(config, params))
    for step in grads:
        for p, g in zip(params, step):
            p.grad = g
        opt.step()
    return flatten_state(class_key(name, k, dtype), params, lambda j: opt.state.get(params[j], {}))


def pack(flat):
    """One case's arrays as a manifest (``key dtype shape`` per array, sorted by key) and their
    bytes concatenated in that order: one entry each in the .npz instead of one per array."""
    keys = sorted(flat)
    manifest = np.array([f"{key} {flat[key].dtype.str} {flat[key].shape}" for key in keys])
    data = np.frombuffer(b"".join(np.ascontiguousarray(flat[key]).tobytes() for key in keys), np.uint8)
    return manifest, data


@pytest.fixture(scope="module")
def class_golden():
    return np.load(CLASS_GOLDEN_PATH)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,k", CLASS_CASES, ids=[f"{n}-{k}" for n, k in CLASS_CASES])
def test_elementwise_class_golden_bitwise(name, k, dtype, class_golden):
    """Parameters, every state array, the 0-d state (dtype included) and the step counts after
    CLASS_STEPS steps: bitwise what torch's class computed (Lion: the reference formula), with the
    IEEE square root on both sides (the data holds no CPU's own torch.sqrt)."""
    with ieee_sqrt():
        flat = run_class(name, k, dtype)
    manifest, data = pack(flat)
    key = class_key(name, k, dtype)
    assert manifest.tolist() == class_golden[key + "/manifest"].tolist()
    want = class_golden[key + "/data"]
    if not np.array_equal(data, want):
        offset, wrong = 0, []
        for entry in manifest:
            size = flat[entry.split()[0]].nbytes
            if not np.array_equal(data[offset:offset + size], want[offset:offset + size]):
                wrong.append(entry.split()[0])
            offset += size
        pytest.fail(f"differ from torch's: {wrong}")
