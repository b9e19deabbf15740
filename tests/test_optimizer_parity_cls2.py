"""NAdam, RAdam, ASGD and Rprop against torch.optim 2.13 (skipped without torch), with the
machinery of ``test_optimizer_parity.py``: every configuration of the registry for 200 steps in
float32, float64 and a mix, three param groups, parameters (and a whole group) without a gradient
at some steps.

ASGD and Rprop take no square root, exp or power of an array: parameters and every state entry
bitwise torch's at every step. NAdam and RAdam differ only through torch's square root (Adam's
bounds, ADAM_MAX_ULP in ulps of each array's largest magnitude). Their 0-d state (NAdam's
``mu_product``, ASGD's ``eta`` and ``mu``) is bitwise torch's, dtype included, always. Also: state
dict layout against live torch, interop round trips mid-training, all-or-nothing loads, and
CyclicLR/OneCycleLR (``betas`` cycled for NAdam/RAdam, refused for ASGD/Rprop) side by side.
"""
import copy

import numpy as np
import pytest

import fastoptim as fo
from fastoptim.optim.registry import OPTIMIZERS
from reference import bits
from test_optimizer_parity import (
    ADAM_MAX_ULP,
    DTYPES,
    Lockstep,
    normwise_ulp_distance,
    one_thread,  # noqa: F401 (autouse fixture)
    test_torch_to_fastoptim_to_torch_mid_training as _interop_round_trip,
)

torch = pytest.importorskip("torch")

NAMES = ("NAdam", "RAdam", "ASGD", "Rprop")
BITWISE = ("ASGD", "Rprop")
CONFIGS = [c for name in NAMES for c in OPTIMIZERS[name].configs]
STEPS = 200


def _check_state(lockstep, bitwise):
    for p, tp in zip(lockstep.params, lockstep.tparams):
        ours, theirs = lockstep.opt.state.get(p), lockstep.topt.state.get(tp)
        assert (ours is None) == (theirs is None)
        if ours is None:
            continue
        assert list(ours) == list(theirs)  # torch's keys in torch's order
        assert type(ours["step"]) is int and ours["step"] == int(theirs["step"].item())
        for key, value in ours.items():
            if key == "step":
                continue
            expected = theirs[key].numpy()
            if value.ndim == 0:  # mu_product, eta, mu: torch's dtype and exact value
                assert value.dtype == expected.dtype and value.tobytes() == expected.tobytes()
            elif bitwise:
                assert np.array_equal(bits(value), bits(expected)), key
            else:
                assert normwise_ulp_distance(value, expected) <= ADAM_MAX_ULP, key


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.id)
def test_trajectory_matches_torch(config, dtype_name):
    lockstep = Lockstep(config, dtype_name)
    bitwise = config.optimizer in BITWISE
    for _ in range(STEPS):
        lockstep.step()
        if bitwise:
            lockstep.assert_bitwise_equal()
        else:
            assert lockstep.max_ulp() <= ADAM_MAX_ULP, (config.id, lockstep.t)
        if bitwise or lockstep.t % 50 == 0:
            _check_state(lockstep, bitwise)
    _check_state(lockstep, bitwise)


@pytest.mark.parametrize("name", NAMES)
def test_torch_to_fastoptim_to_torch_mid_training(name):
    _interop_round_trip(OPTIMIZERS[name].default)


def _two_groups(config, rng, make, tensor):
    data = [rng.standard_normal(s) for s in [(3,), (2, 2), (4,)]]
    ps = [tensor(x.copy()) for x in data]
    return ps, make([{"params": ps[:2]}, {"params": ps[2:], **config.group_overrides}])


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_layout_matches_torch(name):
    """Keys, group keys and values, state keys in torch's order, ``step`` an int, 0-d state a
    0-d array of torch's dtype and value."""
    config = OPTIMIZERS[name].default
    ps, opt = _two_groups(config, np.random.default_rng(0), config.make, fo.Parameter)
    tps, topt = _two_groups(
        config, np.random.default_rng(0),
        lambda groups: config.make_torch([{**g, **config.torch_kwargs(
            {k: v for k, v in g.items() if k != "params"})} for g in groups]),
        lambda x: torch.nn.Parameter(torch.from_numpy(x)))
    rng = np.random.default_rng(1)
    for _ in range(3):
        for k, (p, tp) in enumerate(zip(ps, tps)):
            g = None if k == 1 else rng.standard_normal(p.shape)
            p.grad = g
            tp.grad = None if g is None else torch.from_numpy(g.copy())
        opt.step()
        topt.step()
    ours, theirs = opt.state_dict(), topt.state_dict()
    assert list(ours) == list(theirs)
    for g, tg in zip(ours["param_groups"], theirs["param_groups"]):
        assert list(g) == list(tg) and g == tg
    assert list(ours["state"]) == list(theirs["state"])
    for index, state in ours["state"].items():
        assert list(state) == list(theirs["state"][index])
        assert type(state["step"]) is int
        for key in OPTIMIZERS[name].scalar_arrays:
            assert state[key].shape == () and state[key].dtype == np.float32
            assert state[key].tobytes() == theirs["state"][index][key].numpy().tobytes()
    # and back into torch, exactly
    converted = fo.interop.to_torch(ours)
    for index, state in converted["state"].items():
        for key in OPTIMIZERS[name].scalar_arrays:
            assert torch.is_tensor(state[key]) and state[key].dtype == torch.float32
            assert torch.equal(state[key], theirs["state"][index][key])


@pytest.mark.parametrize("name", NAMES)
def test_loading_a_torch_state_is_all_or_nothing(name):
    """A converted torch state dict with one bad entry (wrong shape; missing key; a 0-d state
    given as a 1-element array) is refused and changes nothing; the good one then continues as
    torch does."""
    config = OPTIMIZERS[name].default
    rng = np.random.default_rng(2)
    data = [rng.standard_normal(s) for s in [(3,), (2, 2)]]
    tps = [torch.nn.Parameter(torch.from_numpy(x.copy())) for x in data]
    topt = config.make_torch(tps)
    ps = [fo.Parameter(x.copy()) for x in data]
    opt = config.make(ps)
    for _ in range(2):
        for p, tp in zip(ps, tps):
            tp.grad = torch.from_numpy(rng.standard_normal(p.shape))
        topt.step()
    good = fo.interop.from_torch(topt.state_dict())
    before = copy.deepcopy(opt.state_dict())
    key = OPTIMIZERS[name].buffers[-1]
    bads = [copy.deepcopy(good) for _ in range(2)]
    bads[0]["state"][1][key] = np.zeros(5)
    del bads[1]["state"][1][key]
    for scalar in OPTIMIZERS[name].scalar_arrays:
        bad = copy.deepcopy(good)
        bad["state"][1][scalar] = bad["state"][1][scalar].reshape(1)
        bads.append(bad)
    for bad in bads:
        with pytest.raises((ValueError, TypeError)):
            opt.load_state_dict(bad)
        assert opt.state_dict()["state"] == before["state"] == {}
        assert opt.state_dict()["param_groups"] == before["param_groups"]
    opt.load_state_dict(good)
    for _ in range(5):
        for p, tp in zip(ps, tps):
            p[...] = tp.detach().numpy()
            g = rng.standard_normal(p.shape)
            p.grad, tp.grad = g, torch.from_numpy(g.copy())
        opt.step()
        topt.step()
        for p, tp in zip(ps, tps):
            if name in BITWISE:
                assert np.array_equal(bits(p), bits(tp.detach().numpy()))
            else:
                assert normwise_ulp_distance(np.asarray(p), tp.detach().numpy()) <= ADAM_MAX_ULP


def _scheduler_pair(name, make_scheduler):
    config = OPTIMIZERS[name].default
    p, tp = fo.Parameter(np.ones(3)), torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt, topt = config.make([p]), config.make_torch([tp])
    return (p, opt, make_scheduler(fo.lr_scheduler, opt)), (tp, topt, make_scheduler(
        torch.optim.lr_scheduler, topt))


SCHEDULERS = {
    "CyclicLR": lambda m, o: m.CyclicLR(o, base_lr=1e-3, max_lr=1e-2, step_size_up=3,
                                        base_momentum=0.8, max_momentum=0.9),
    "OneCycleLR": lambda m, o: m.OneCycleLR(o, max_lr=1e-2, total_steps=12),
}


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
@pytest.mark.parametrize("name", ["NAdam", "RAdam"])
def test_cyclic_schedulers_cycle_betas_as_torch(name, scheduler):
    (p, opt, sched), (tp, topt, tsched) = _scheduler_pair(name, SCHEDULERS[scheduler])
    for _ in range(10):
        p.grad, tp.grad = np.full(3, 0.5), torch.full((3,), 0.5, dtype=torch.float64)
        opt.step()
        topt.step()
        sched.step()
        tsched.step()
        group, tgroup = opt.param_groups[0], topt.param_groups[0]
        assert group["lr"] == tgroup["lr"] and group["betas"] == tgroup["betas"]
        assert normwise_ulp_distance(np.asarray(p), tp.detach().numpy()) <= ADAM_MAX_ULP


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
@pytest.mark.parametrize("name", ["ASGD", "Rprop"])
def test_cyclic_schedulers_refuse_without_momentum_as_torch(name, scheduler):
    config = OPTIMIZERS[name].default
    message = "optimizer must support momentum or beta1 with `cycle_momentum` option enabled"
    with pytest.raises(ValueError, match=f"^{message}$"):
        SCHEDULERS[scheduler](torch.optim.lr_scheduler, config.make_torch(
            [torch.nn.Parameter(torch.ones(2))]))
    opt = config.make([fo.Parameter(np.ones(2))])
    before = copy.deepcopy(opt.param_groups[0])
    with pytest.raises(ValueError, match=f"^{message}$"):
        SCHEDULERS[scheduler](fo.lr_scheduler, opt)
    assert opt.param_groups[0].keys() == before.keys()
