"""The guide's full training loop (docs/examples/training_loop.py): gradient accumulation,
clipping, EMA, SWALR and SWA. A run killed after step k and resumed from its checkpoint with
fo.load ends bitwise equal to the uninterrupted run."""
import importlib.util
import os

import numpy as np
import pytest

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "docs", "examples", "training_loop.py")


@pytest.fixture(scope="module")
def loop():
    spec = importlib.util.spec_from_file_location("training_loop_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _snapshot(state):
    return {
        "params": {k: np.array(p) for k, p in state["params"].items()},
        "ema": {k: a.copy() for k, a in state["ema"].averaged.items()},
        "swa": {k: a.copy() for k, a in state["swa"].averaged.items()},
        "n": (state["ema"].n_averaged, state["swa"].n_averaged),
        "lr": [g["lr"] for g in state["opt"].param_groups],
        "opt": state["opt"].state_dict(),
    }


def _assert_same(a, b):
    for part in ("params", "ema", "swa"):
        for k in a[part]:
            assert np.array_equal(a[part][k], b[part][k]), (part, k)
    assert a["n"] == b["n"] and a["lr"] == b["lr"]
    for i, s in a["opt"]["state"].items():
        for key, value in s.items():
            assert np.array_equal(value, b["opt"]["state"][i][key])


@pytest.mark.parametrize("k", [7, 40, 43])     # before SWA, at its start, inside it
def test_resumed_run_is_bitwise_equal(loop, k, tmp_path):
    full = _snapshot(loop.run())
    ckpt = tmp_path / "ckpt.fo"
    loop.run(stop_at=k, ckpt=ckpt)
    resumed = _snapshot(loop.run(resume=ckpt))
    _assert_same(full, resumed)
    assert resumed["n"] == (loop.STEPS, loop.STEPS - loop.SWA_START)


def test_the_loop_learns(loop):
    X, y = loop.make_data()
    state = loop.run()
    assert loop.accuracy(state["params"], X, y) > 0.9
    assert loop.accuracy(state["ema"].averaged, X, y) > 0.9
    assert loop.accuracy(state["swa"].averaged, X, y) > 0.9
    assert state["opt"].param_groups[0]["lr"] == 5e-3       # SWALR reached swa_lr
