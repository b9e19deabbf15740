"""Resume equivalence: N steps == k steps, fo.save, fo.load in a new process, N - k steps.

Bit for bit: the parameters, the optimizer's state_dict (arrays, step counts, param groups with
their lr and betas/momentum) and the scheduler's lr at every step. The gradients come from a NumPy
Generator whose state is part of the checkpoint, so the checkpoint carries everything a training
script needs to continue, exactly as it would have without the interruption.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import fastoptim as fo
from test_checkpoint import assert_same

TOTAL_STEPS = 12
RESUME_AT = 5

# name -> (optimizer factory, scheduler factory)
CONFIGS = {
    "SGD-momentum-nesterov-StepLR": (
        lambda params: fo.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
        lambda opt: fo.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5),
    ),
    "SGD-dampening-MultiStepLR": (
        lambda params: fo.SGD(params, lr=0.05, momentum=0.8, dampening=0.2),
        lambda opt: fo.lr_scheduler.MultiStepLR(opt, milestones=[4, 7], gamma=0.3),
    ),
    "Adam-CosineAnnealingLR": (
        lambda params: fo.Adam(params, lr=1e-2, weight_decay=1e-2),
        lambda opt: fo.lr_scheduler.CosineAnnealingLR(opt, T_max=TOTAL_STEPS),
    ),
    "AMSGrad-OneCycleLR": (
        lambda params: fo.Adam(params, lr=1e-2, amsgrad=True),
        lambda opt: fo.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=TOTAL_STEPS),
    ),
    "AdamW-LinearLR": (
        lambda params: fo.AdamW(params, lr=3e-3, betas=(0.8, 0.99), weight_decay=0.1),
        lambda opt: fo.lr_scheduler.LinearLR(opt, start_factor=0.25, total_iters=6),
    ),
    "AdamW-amsgrad-ExponentialLR": (
        lambda params: fo.AdamW(params, lr=3e-3, amsgrad=True),
        lambda opt: fo.lr_scheduler.ExponentialLR(opt, gamma=0.9),
    ),
}


def make_run(name):
    """Fresh parameters (float32 and float64), optimizer, scheduler and gradient generator."""
    init = np.random.default_rng(7)
    params = [
        fo.Parameter(init.standard_normal((6, 5)).astype(np.float32)),
        fo.Parameter(init.standard_normal(9)),
    ]
    make_optimizer, make_scheduler = CONFIGS[name]
    optimizer = make_optimizer(params)
    scheduler = make_scheduler(optimizer)
    return params, optimizer, scheduler, np.random.default_rng(1234)


def train(params, optimizer, scheduler, rng, steps):
    """Train on a noisy quadratic; return the lr the scheduler reports after each step."""
    lrs = []
    for _ in range(steps):
        for param in params:
            noise = rng.standard_normal(param.shape).astype(param.dtype)
            param.grad = (2 * param - 1 + noise).astype(param.dtype)
        optimizer.step()
        scheduler.step()
        lrs.append(scheduler.get_last_lr())
    return lrs


def checkpoint(params, optimizer, scheduler, rng, step):
    return {
        "model": {f"p{index}": np.asarray(param) for index, param in enumerate(params)},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng.bit_generator.state,
        "step": step,
    }


def resume(name, path, out_path):
    """Runs in a new process: load the checkpoint, continue training, save the outcome."""
    saved = fo.load(path)
    params, optimizer, scheduler, rng = make_run(name)
    for index, param in enumerate(params):
        param[...] = saved["model"][f"p{index}"]
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    rng.bit_generator.state = saved["rng"]
    lrs = train(params, optimizer, scheduler, rng, TOTAL_STEPS - saved["step"])
    result = checkpoint(params, optimizer, scheduler, rng, TOTAL_STEPS)
    result["lrs"] = lrs
    fo.save(result, out_path)


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """Save every configuration after RESUME_AT steps, then resume them all in one new process."""
    directory = tmp_path_factory.mktemp("resume")
    for name in CONFIGS:
        params, optimizer, scheduler, rng = make_run(name)
        train(params, optimizer, scheduler, rng, RESUME_AT)
        fo.save(checkpoint(params, optimizer, scheduler, rng, RESUME_AT), directory / name)
    paths = {name: str(directory / name) for name in CONFIGS}
    calls = "; ".join(
        f"test_resume.resume({name!r}, {path!r}, {path + '.out'!r})" for name, path in paths.items()
    )
    script = (f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
              f"import test_resume; {calls}")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return {name: fo.load(directory / f"{name}.out") for name in CONFIGS}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_resume_in_a_new_process_is_bit_for_bit(resumed, name):
    params, optimizer, scheduler, rng = make_run(name)
    lrs = train(params, optimizer, scheduler, rng, TOTAL_STEPS)
    expected = checkpoint(params, optimizer, scheduler, rng, TOTAL_STEPS)
    expected["lrs"] = lrs[RESUME_AT:]
    # assert_same compares arrays by their bytes, floats by their bits, and dict keys in order.
    assert_same(expected, resumed[name])


def test_resume_detects_a_difference(resumed):
    # The comparison above is strict enough to see one step less.
    params, optimizer, scheduler, rng = make_run("Adam-CosineAnnealingLR")
    train(params, optimizer, scheduler, rng, TOTAL_STEPS - 1)
    with pytest.raises(AssertionError):
        assert_same(checkpoint(params, optimizer, scheduler, rng, TOTAL_STEPS)["model"],
                    resumed["Adam-CosineAnnealingLR"]["model"])
