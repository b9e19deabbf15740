"""The NumPy peers of the benchmark (``_numpy_rule`` in each class file) compute what fastoptim
computes, for every optimizer whose registry entry declares the ``"numpy"`` peer and for every
test configuration of its entry (not only the benchmark's), and a wrong rule is caught.

The peers do not model ``maximize`` (they refuse it); configurations that set it are run without.
"""
import dataclasses

import numpy as np
import pytest

from fastoptim.optim.registry import OPTIMIZERS
from fastoptim.tools import bench
from fastoptim.tools.peers import Case, make_peer

NUMPY_OPTIMIZERS = [name for name, info in OPTIMIZERS.items() if "numpy" in info.peers]
NUMPY_BENCH = [key for key, cfg in bench.OPTIMIZERS.items() if "numpy" in cfg.info.peers]

# Settings the registry's configurations reach only together with maximize or in a second group:
# ASGD averaging from step 3 (mu != 1), RAdam and NAdam with few warm-up steps.
EXTRA = {
    "ASGD": [{"lr": 0.03, "lambd": 0.01, "alpha": 0.5, "t0": 2, "weight_decay": 0.05}],
    "RAdam": [{"lr": 0.01, "betas": (0.5, 0.9), "weight_decay": 0.05,
               "decoupled_weight_decay": True}],
    "Rprop": [{"lr": 0.1, "etas": (0.2, 1.9), "step_sizes": (0.05, 0.2)}],
}


def _cases():
    cases = []
    for name in NUMPY_OPTIMIZERS:
        rows = [c.kwargs for c in OPTIMIZERS[name].configs] + EXTRA.get(name, [])
        for i, kwargs in enumerate(rows):
            kwargs = {k: v for k, v in kwargs.items() if k != "maximize"}
            lr = float(kwargs.pop("lr", 0.01))
            cases.append(pytest.param(name, kwargs, lr, id=f"{name}-{i}"))
    return cases


def _config(name, kwargs, lr):
    return bench.OptimizerConfig(name.lower(), name, name, kwargs, lr=lr)


def _run(peer, n):
    for _ in range(n):
        peer.step()
    return peer.numpy_params()


def test_the_nine_round_two_optimizers_have_a_numpy_peer():
    assert {"RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam", "RAdam", "ASGD", "Rprop",
            "Lion"} <= set(NUMPY_OPTIMIZERS)
    for name in NUMPY_OPTIMIZERS:                       # the rule exists and is a function
        assert callable(OPTIMIZERS[name].peer_rule("numpy"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, kwargs, lr", _cases())
def test_numpy_rule_matches_fastoptim_on_every_configuration(name, kwargs, lr, dtype):
    # Eight steps: RAdam's rectified branch starts at step 6 with these betas, ASGD averages from
    # step 3 with t0=2. The peers must build (no Unsupported) and agree with fastoptim.
    config = _config(name, kwargs, lr)
    case = Case([(70_000,), (3, 5), (1,)], dtype, config, seed=5)
    ours = _run(make_peer("fastoptim", case), 8)
    for peer_name in ("numpy", "numpy-blocked"):
        theirs = _run(make_peer(peer_name, case), 8)
        error = bench.check_agreement(theirs, ours, case.init_params)
        assert error <= 1.0, (peer_name, error)


@pytest.mark.parametrize("optimizer", NUMPY_BENCH)
def test_agreement_check_catches_a_wrong_numpy_rule(optimizer):
    config = dataclasses.replace(bench.OPTIMIZERS[optimizer], lr=0.01)
    case = Case([(1000,), (10, 10)], np.float32, config)
    reference = _run(make_peer("fastoptim", case), 2)
    assert bench.check_agreement(_run(make_peer("numpy", case), 2), reference,
                                 case.init_params) <= 1.0
    half = _run(make_peer("numpy", case), 1)            # a lost step
    assert bench.check_agreement(half, reference, case.init_params) > 1
    wrong = make_peer("numpy", case)                    # a 1% error in lr
    wrong.cfg = dataclasses.replace(config, lr=config.lr * 1.01)
    assert bench.check_agreement(_run(wrong, 2), reference, case.init_params) > 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, kwargs, lr", _cases())
def test_numpy_rule_matches_fastoptim_with_changing_gradients(name, kwargs, lr, dtype):
    # The benchmark's gradients are fixed; here they change between steps (a random half of the
    # entries flips sign, all are rescaled), in place in the memory every peer reads, so that
    # Rprop's sign logic (etaminus, the zeroed gradient), Adamax's running max and the momentum
    # buffers see both signs. Both peers step in lockstep.
    config = _config(name, kwargs, lr)
    case = Case([(5_000,), (3, 5), (1,)], dtype, config, seed=7)
    rng = np.random.default_rng(11)
    peers = [make_peer(n, case) for n in ("fastoptim", "numpy", "numpy-blocked")]
    flips = 0
    for _ in range(6):
        for peer in peers:
            peer.step()
        for g in case.writeable_grads:
            sign = np.where(rng.random(g.shape) < 0.5, -1.0, 1.0).astype(dtype)
            g *= sign * dtype(rng.uniform(0.5, 2.0))
            flips += int((sign < 0).sum())
    assert flips > 0
    ours = peers[0].numpy_params()
    for peer in peers[1:]:
        error = bench.check_agreement(peer.numpy_params(), ours, case.init_params)
        assert error <= 1.0, (peer.name, error)


def test_peer_sign_is_torchs_sign():
    # torch.sign gives 0 for NaN (np.sign gives NaN): the Lion and Rprop rules use the peer's
    case = Case([(5,)], np.float32, bench.OPTIMIZERS[NUMPY_BENCH[0]])
    peer = make_peer("numpy", case)
    x = np.array([np.nan, -0.0, 0.0, 2.5, -3e-30], np.float32)
    out = np.full(5, 7.0, np.float32)
    peer._sign(x, out, 0, 5)
    np.testing.assert_array_equal(out, [0.0, 0.0, 0.0, 1.0, -1.0])
