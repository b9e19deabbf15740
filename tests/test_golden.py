"""Parity with torch 2.13 without torch: replay golden data recorded from torch.optim
(tests/golden/make_kernel_golden.py) through the compiled kernels."""
import os

import numpy as np
import pytest

from fastoptim import functional as F
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
