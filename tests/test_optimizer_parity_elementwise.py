"""RMSprop, Adagrad, Adadelta and Adamax against torch.optim 2.13, step by step (skipped without
torch), with the machinery of ``test_optimizer_parity.py``: every configuration of the registry
for 200 steps in float32, float64 and a mix, three param groups, parameters (and a whole group)
without a gradient at some steps.

Adamax has no square root: bitwise equal to torch at every step, parameters and state. The others
may differ only through torch's square root (MKL's, 1 ulp low for ~0.7% of inputs), with Adam's
bounds: whole trajectories within ADAM_MAX_ULP (ulps of each array's largest magnitude), and each
step taken from torch's exact state gives torch's sqrt-free state bitwise and parameters within
ADAM_STEP_MAX_ULP. Also: a run moved torch -> fastoptim -> torch with ``fo.interop`` mid-training.
"""
import copy

import numpy as np
import pytest

import fastoptim as fo
from fastoptim.optim.registry import OPTIMIZERS
from reference import bits
from test_optimizer_parity import (
    ADAM_MAX_ULP,
    ADAM_STEP_MAX_ULP,
    DTYPES,
    Lockstep,
    normwise_ulp_distance,
    one_thread,  # noqa: F401 (autouse fixture)
    test_torch_to_fastoptim_to_torch_mid_training as _interop_round_trip,
)

torch = pytest.importorskip("torch")

NAMES = ("RMSprop", "Adagrad", "Adadelta", "Adamax")
CONFIGS = [c for name in NAMES for c in OPTIMIZERS[name].configs]
# State that no square root enters: bitwise torch's even where the parameters are not.
SQRT_FREE = {"RMSprop": ("square_avg", "grad_avg"), "Adagrad": ("sum",),
             "Adadelta": ("square_avg",), "Adamax": ("exp_avg", "exp_inf")}
STEPS = 200
# Adadelta's acc_delta is an average of squared updates that each went through two square roots,
# and it feeds back into the next update through a third: over a trajectory its 1-ulp sqrt
# differences add up over the average's memory (observed maximum over every configuration, 200
# steps, float32/float64/mixed: 10 ulps of its largest magnitude; the parameters stay within 2).
STATE_MAX_ULP = {"Adadelta": 16}


def _compare_state(lockstep, exact_keys):
    """Same keys, same step counts (an int against torch's float32), sqrt-free state bitwise
    equal, the rest within ADAM_MAX_ULP (STATE_MAX_ULP where given)."""
    bound = STATE_MAX_ULP.get(lockstep.config.optimizer, ADAM_MAX_ULP)
    for p, tp in zip(lockstep.params, lockstep.tparams):
        ours, theirs = lockstep.opt.state.get(p), lockstep.topt.state.get(tp)
        assert (ours is None) == (theirs is None)
        if ours is None:
            continue
        assert sorted(ours) == sorted(theirs)
        if "step" in ours:
            assert type(ours["step"]) is int and ours["step"] == int(theirs["step"].item())
        for key, value in ours.items():
            if key == "step":
                continue
            if key in exact_keys:
                assert np.array_equal(bits(value), bits(theirs[key].numpy())), key
            else:
                assert normwise_ulp_distance(value, theirs[key].numpy()) <= bound, key


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.id)
def test_trajectory_matches_torch(config, dtype_name):
    lockstep = Lockstep(config, dtype_name)
    bitwise = config.optimizer == "Adamax"
    worst = 0.0
    for _ in range(STEPS):
        lockstep.step()
        if bitwise:
            for k, (p, tp) in enumerate(zip(lockstep.params, lockstep.tparams)):
                assert np.array_equal(bits(p), bits(tp.detach().numpy())), (lockstep.t, k)
        else:
            worst = max(worst, lockstep.max_ulp())
            assert worst <= ADAM_MAX_ULP, (config.id, lockstep.t, worst)
    exact = SQRT_FREE[config.optimizer] if bitwise else ()
    _compare_state(lockstep, exact)


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
@pytest.mark.parametrize("config", [c for c in CONFIGS if c.optimizer != "Adamax"],
                         ids=lambda c: c.id)
def test_each_step_within_the_last_bit_of_sqrt(config, dtype_name):
    """Before every step fastoptim takes torch's parameters and state (``interop.from_torch``
    and ``load_state_dict``); after it the sqrt-free state must be torch's bit for bit and the
    parameters within ADAM_STEP_MAX_ULP of max(|new value|, |update|)."""
    lockstep = Lockstep(config, dtype_name, seed=1)
    exact = SQRT_FREE[config.optimizer]
    group_of = {id(p): g for g in lockstep.topt.param_groups for p in g["params"]}
    for _ in range(STEPS // 2):
        for p, tp in zip(lockstep.params, lockstep.tparams):
            p[...] = tp.detach().numpy()
        lockstep.opt.load_state_dict(fo.interop.from_torch(lockstep.topt.state_dict()))
        before = [tp.detach().numpy().copy() for tp in lockstep.tparams]
        buffers = [lockstep.topt.state.get(tp, {}).get("momentum_buffer") for tp in lockstep.tparams]
        buffers = [None if b is None else b.numpy().copy() for b in buffers]
        lockstep.step()
        for k, (p, tp, old) in enumerate(zip(lockstep.params, lockstep.tparams, before)):
            theirs = tp.detach().numpy()
            scale = np.maximum(np.abs(theirs), np.abs(theirs - old))
            new_buffer = lockstep.topt.state.get(tp, {}).get("momentum_buffer")
            if buffers[k] is not None and tp.grad is not None:
                # RMSprop's buffer adds g / (sqrt(v) + eps) to mu * b and may cancel: the sqrt's
                # ulp is one of that term, which can exceed the new buffer and the update.
                group = group_of[id(tp)]
                term = np.abs(new_buffer.numpy()) + group["momentum"] * np.abs(buffers[k])
                scale = np.maximum(scale, group["lr"] * term)
            diff = np.abs(np.asarray(p, dtype=np.float64) - theirs)
            assert np.all(diff <= ADAM_STEP_MAX_ULP * np.spacing(scale)), (lockstep.t, k)
            ours, state = lockstep.opt.state.get(p), lockstep.topt.state.get(tp)
            assert (ours is None) == (state is None)
            if ours is not None:
                assert ours["step"] == int(state["step"].item())
                for key in exact:
                    if key in state:
                        assert np.array_equal(bits(ours[key]), bits(state[key].numpy())), key


@pytest.mark.parametrize("config", [OPTIMIZERS[name].default for name in NAMES],
                         ids=lambda c: c.id)
def test_torch_to_fastoptim_to_torch_mid_training(config):
    _interop_round_trip(config)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_layout_matches_torch(name):
    """Keys, group keys, state keys (in torch's order) and types against a live torch run."""
    config = OPTIMIZERS[name].default
    rng = np.random.default_rng(0)
    data = [rng.standard_normal(s) for s in [(3,), (2, 2), (4,)]]
    ps = [fo.Parameter(x.copy()) for x in data]
    tps = [torch.nn.Parameter(torch.from_numpy(x.copy())) for x in data]
    opt = config.make([{"params": ps[:2]}, {"params": ps[2:], **config.group_overrides}])
    topt = config.make_torch([{"params": tps[:2]},
                              {"params": tps[2:], **config.torch_kwargs(config.group_overrides)}])
    for _ in range(2):
        for k, (p, tp) in enumerate(zip(ps, tps)):
            g = None if k == 1 else rng.standard_normal(p.shape)
            p.grad = g
            tp.grad = None if g is None else torch.from_numpy(g.copy())
        opt.step()
        topt.step()
    ours, theirs = opt.state_dict(), topt.state_dict()
    assert list(ours) == list(theirs)
    for g, tg in zip(ours["param_groups"], theirs["param_groups"]):
        assert list(g) == list(tg)
        assert {k: v for k, v in g.items() if k != "lr"} == \
               {k: v for k, v in tg.items() if k != "lr"}
    assert list(ours["state"]) == list(theirs["state"])
    for index, state in ours["state"].items():
        assert list(state) == list(theirs["state"][index])
        assert type(state["step"]) is int
        assert state["step"] == int(theirs["state"][index]["step"].item())


@pytest.mark.parametrize("name", NAMES)
def test_loading_a_torch_state_is_all_or_nothing(name):
    """A converted torch state dict whose last entry is bad (a wrong shape; a missing key) is
    refused and changes nothing; the good one then loads and continues as torch does."""
    config = OPTIMIZERS[name].default
    rng = np.random.default_rng(2)
    data = [rng.standard_normal(s) for s in [(3,), (2, 2)]]
    tps = [torch.nn.Parameter(torch.from_numpy(x.copy())) for x in data]
    topt = config.make_torch(tps)
    ps = [fo.Parameter(x.copy()) for x in data]
    opt = config.make(ps)
    for p, tp in zip(ps, tps):
        tp.grad = torch.from_numpy(rng.standard_normal(p.shape))
    topt.step()
    good = fo.interop.from_torch(topt.state_dict())
    before = copy.deepcopy(opt.state_dict())
    key = [k for k in good["state"][1] if k != "step"][-1]
    wrong_shape = copy.deepcopy(good)
    wrong_shape["state"][1][key] = np.zeros(5)
    missing = copy.deepcopy(good)
    del missing["state"][1][key]
    for bad in (wrong_shape, missing):
        with pytest.raises(ValueError, match=key):
            opt.load_state_dict(bad)
        after = opt.state_dict()
        assert after["param_groups"] == before["param_groups"]
        assert after["state"].keys() == before["state"].keys()
        for index, state in after["state"].items():
            for k, v in state.items():
                assert np.array_equal(v, before["state"][index][k])
    opt.load_state_dict(good)
    for p, tp in zip(ps, tps):
        p[...] = tp.detach().numpy()
        g = rng.standard_normal(p.shape)
        p.grad, tp.grad = g, torch.from_numpy(g.copy())
    opt.step()
    topt.step()
    for p, tp in zip(ps, tps):
        assert normwise_ulp_distance(np.asarray(p), tp.detach().numpy()) <= ADAM_MAX_ULP


def test_adagrad_state_is_eager_and_later_groups_use_the_constructors_initial_value():
    """torch creates Adagrad's state in the constructor; a group added later gets its state at
    its first step, from ``defaults["initial_accumulator_value"]`` (not the group's value)."""
    a, b = fo.Parameter(np.ones(3)), fo.Parameter(np.ones(2))
    ta, tb = torch.nn.Parameter(torch.ones(3, dtype=torch.float64)), \
        torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    opt = fo.Adagrad([a], lr=0.1, initial_accumulator_value=0.5)
    topt = torch.optim.Adagrad([ta], lr=0.1, initial_accumulator_value=0.5)
    assert opt.state_dict()["state"][0]["step"] == 0
    assert np.array_equal(opt.state[a]["sum"], topt.state[ta]["sum"].numpy())
    opt.add_param_group({"params": [b], "initial_accumulator_value": 2.0})
    topt.add_param_group({"params": [tb], "initial_accumulator_value": 2.0})
    assert b not in opt.state and tb not in topt.state
    b.grad, tb.grad = np.full(2, 0.5), torch.full((2,), 0.5, dtype=torch.float64)
    opt.step()
    topt.step()
    assert np.array_equal(opt.state[b]["sum"], topt.state[tb]["sum"].numpy())  # 0.5 + 0.25
    assert opt.state[a]["step"] == 0 and opt.state[b]["step"] == 1
