"""fastoptim's optimizer classes against torch.optim 2.13, step by step (skipped without torch).

Every configuration of ``optim_configs.py`` runs for 200+ steps in float32, float64 and a mix of
both, with three param groups of different hyperparameters and with parameters that have no
gradient at some steps (a whole group at others). Both libraries get bit-identical gradients,
computed from fastoptim's parameters. SGD must match torch bit for bit at every step; Adam/AdamW
may differ only through torch's square root (MKL's, which is 1 ulp low for ~0.7% of inputs): each
step taken from torch's exact state must give torch's moments bit for bit and parameters within a
few ulps, and whole independent trajectories must stay within a few ulps.

Also here: a state_dict round trip in the middle of a run continues bit for bit, and a run moved
torch -> fastoptim -> torch through ``fo.interop`` stays in lockstep with one that stayed in torch.
"""
import copy

import numpy as np
import pytest

import fastoptim as fo
from optim_configs import ADAM_CONFIGS, ADAMW_CONFIGS, ALL_CONFIGS, SGD_CONFIGS
from reference import bits, ulp_distance

torch = pytest.importorskip("torch")

# Adam/AdamW bounds. Per step, starting from torch's exact state, a 1-ulp sqrt difference changes
# the update by an ulp or two of the update and may flip the rounding of the new parameter, so the
# new parameter is within a few ulps of max(|new value|, |update|), and the moments are bitwise
# equal (observed over 1000 steps, every configuration, float32 and float64: at most 4, mostly
# 1-2). Over a whole independent trajectory the differences add up a little: ADAM_MAX_ULP is in
# ulps of the largest magnitude each parameter array has had (observed maximum over 1000 steps:
# 2). An error in the op order, a missing cast or a wrong hyperparameter gives far more.
ADAM_STEP_MAX_ULP = 4
ADAM_MAX_ULP = 4

SHAPES = [(7,), (5, 13), (257,), (64,), (3, 4, 5), (1,), (33,)]
GROUPS = [[0, 1, 2], [3, 4], [5, 6]]  # indices into SHAPES
DTYPES = {"float32": [np.float32] * 7, "float64": [np.float64] * 7,
          "mixed": [np.float32, np.float64] * 3 + [np.float32]}


@pytest.fixture(autouse=True)
def one_thread():
    old_fo, old_torch = fo.get_num_threads(), torch.get_num_threads()
    fo.set_num_threads(1)
    torch.set_num_threads(1)
    yield
    fo.set_num_threads(old_fo)
    torch.set_num_threads(old_torch)


def _group_kwargs(config):
    """Per-group hyperparameters: group 0 uses the constructor's, groups 1 and 2 their own."""
    third = {"lr": 0.002}
    return [{}, dict(config.group_overrides), third]


class Lockstep:
    """The same training run in fastoptim and in torch, fed identical gradients."""

    def __init__(self, config, dtype_name, seed=0):
        self.config = config
        self.rng = np.random.default_rng(seed)
        dtypes = DTYPES[dtype_name]
        data = [self.rng.standard_normal(s).astype(d) for s, d in zip(SHAPES, dtypes)]
        self.params = [fo.Parameter(x.copy()) for x in data]
        self.tparams = [torch.nn.Parameter(torch.from_numpy(x.copy())) for x in data]
        kwargs = _group_kwargs(config)
        self.opt = config.make(
            [{"params": [self.params[i] for i in g], **kw} for g, kw in zip(GROUPS, kwargs)]
        )
        self.topt = config.make_torch(
            [{"params": [self.tparams[i] for i in g], **config.torch_kwargs(kw)}
             for g, kw in zip(GROUPS, kwargs)]
        )
        self.t = 0
        self.scale = [float(np.abs(x).max(initial=0.0)) for x in data]

    def step(self):
        """One step in both libraries; some parameters (and sometimes a group) get no grad."""
        t = self.t
        for k, (p, tp) in enumerate(zip(self.params, self.tparams)):
            if (t + k) % 7 == 3 or (t % 50 == 25 and k in GROUPS[1]):
                p.grad = None
                tp.grad = None
                continue
            noise = self.rng.standard_normal(p.shape).astype(p.dtype)
            grad = (p * p.dtype.type(0.5) + noise).astype(p.dtype)
            p.grad = grad
            tp.grad = torch.from_numpy(grad.copy())
        self.opt.step()
        self.topt.step()
        self.t += 1

    def max_ulp(self):
        """The largest distance between the two runs' parameters, in ulps of the largest
        magnitude each parameter array has had so far (see :func:`normwise_ulp_distance`)."""
        worst = 0.0
        for k, (p, tp) in enumerate(zip(self.params, self.tparams)):
            self.scale[k] = max(self.scale[k], float(np.abs(p).max(initial=0.0)))
            worst = max(worst, normwise_ulp_distance(np.asarray(p), tp.detach().numpy(),
                                                     self.scale[k]))
        return worst

    def max_elementwise_ulp(self):
        return max(int(ulp_distance(np.asarray(p), tp.detach().numpy()).max())
                   for p, tp in zip(self.params, self.tparams))

    def assert_bitwise_equal(self):
        for k, (p, tp) in enumerate(zip(self.params, self.tparams)):
            assert np.array_equal(bits(p), bits(tp.detach().numpy())), (self.config.id, self.t, k)
        for k, (p, tp) in enumerate(zip(self.params, self.tparams)):
            theirs = self.topt.state.get(tp, {}).get("momentum_buffer")
            ours = self.opt.state.get(p, {}).get("momentum_buffer")
            assert (theirs is None) == (ours is None), (self.t, k)
            if ours is not None:
                assert np.array_equal(bits(ours), bits(theirs.numpy())), (self.t, k)

    def assert_adam_state_matches(self):
        """Same per-parameter step counts (exact ints vs torch's float32) and close moments."""
        for p, tp in zip(self.params, self.tparams):
            ours, theirs = self.opt.state.get(p), self.topt.state.get(tp)
            assert (ours is None) == (theirs is None)
            if ours is None:
                continue
            assert type(ours["step"]) is int and ours["step"] == int(theirs["step"].item())
            assert sorted(ours) == sorted(theirs)
            for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                if key in ours:
                    assert normwise_ulp_distance(ours[key], theirs[key].numpy()) <= ADAM_MAX_ULP


def normwise_ulp_distance(a, b, scale=None):
    """max |a - b| in units of the last place (in a's dtype) of ``scale``, by default max |a|.

    Elementwise ulps mislead for whole trajectories: both runs get the same gradients, so nothing
    pulls them back together, and a 1-ulp difference picked up while a value was near 1 is still
    there when it later passes near 0, where it is thousands of that tiny value's ulps. Measured
    against the largest magnitude the array has had (``scale``), it stays an ulp or so.
    """
    if scale is None:
        scale = float(np.abs(a).max(initial=0.0))
    if scale == 0:
        return 0.0 if not np.any(b) else np.inf
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64)).max()
    return float(diff / np.float64(np.spacing(a.dtype.type(scale))))


def run(config, dtype_name, steps, seed=0):
    """Run ``steps`` steps in lockstep, checking after each; returns the largest ulp distance."""
    lockstep = Lockstep(config, dtype_name, seed)
    worst = 0
    for _ in range(steps):
        lockstep.step()
        if config.optimizer == "SGD":
            lockstep.assert_bitwise_equal()
        else:
            worst = max(worst, lockstep.max_ulp())
            assert worst <= ADAM_MAX_ULP, (config.id, lockstep.t, worst)
    if config.optimizer != "SGD":
        lockstep.assert_adam_state_matches()
    return worst


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("config", SGD_CONFIGS, ids=lambda c: c.id)
def test_sgd_bitwise_equal_to_torch(config, dtype_name):
    run(config, dtype_name, steps=200)


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("config", ADAM_CONFIGS + ADAMW_CONFIGS, ids=lambda c: c.id)
def test_adam_trajectory_within_sqrt_rounding_of_torch(config, dtype_name):
    run(config, dtype_name, steps=200)


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("config", ADAM_CONFIGS + ADAMW_CONFIGS, ids=lambda c: c.id)
def test_adam_each_step_within_the_last_bit_of_sqrt(config, dtype_name):
    """Before every step fastoptim takes torch's parameters and state (through
    ``interop.from_torch`` and ``load_state_dict``); after it the moments must be bitwise torch's
    (no sqrt is involved in them) and the parameters within ADAM_STEP_MAX_ULP."""
    lockstep = Lockstep(config, dtype_name, seed=1)
    for _ in range(200):
        for p, tp in zip(lockstep.params, lockstep.tparams):
            p[...] = tp.detach().numpy()
        lockstep.opt.load_state_dict(fo.interop.from_torch(lockstep.topt.state_dict()))
        before = [tp.detach().numpy().copy() for tp in lockstep.tparams]
        lockstep.step()
        for k, (p, tp, old) in enumerate(zip(lockstep.params, lockstep.tparams, before)):
            theirs = tp.detach().numpy()
            scale = np.maximum(np.abs(theirs), np.abs(theirs - old))
            diff = np.abs(np.asarray(p, dtype=np.float64) - theirs)
            assert np.all(diff <= ADAM_STEP_MAX_ULP * np.spacing(scale)), (lockstep.t, k)
            ours, state = lockstep.opt.state.get(p), lockstep.topt.state.get(tp)
            assert (ours is None) == (state is None)
            if ours is not None:
                assert ours["step"] == int(state["step"].item())
                for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                    if key in state:
                        assert np.array_equal(bits(ours[key]), bits(state[key].numpy()))


def test_table_covers_torch_configurations():
    """Every CPU configuration of torch 2.13's optim_inputs_func_{sgd,adam,adamw} is in the table."""
    descs = {(c.optimizer, c.desc) for c in ALL_CONFIGS}
    for desc in ["default", "non-default lr", "tensor lr", "non-zero weight_decay", "momentum",
                 "maximize", "dampening", "weight_decay w/ momentum", "nesterov"]:
        assert ("SGD", desc) in descs
    for name in ["Adam", "AdamW"]:
        for desc in ["default", "non-default lr", "nonzero weight_decay", "maximize", "amsgrad"]:
            assert (name, desc) in descs
    for config in ALL_CONFIGS:  # like torch's test_optim_infos_do_not_specify_global_cliquey_kwargs
        assert not {"foreach", "fused", "differentiable"} & set(config.kwargs)


@pytest.mark.parametrize("config", [SGD_CONFIGS[8], ADAM_CONFIGS[5], ADAMW_CONFIGS[4]],
                         ids=lambda c: c.id)
def test_state_dict_round_trip_mid_run_continues_bit_for_bit(config):
    """Save after 60 steps, load into a fresh optimizer over copies of the parameters, and the
    two runs stay bit-identical (fastoptim against itself: no sqrt difference here)."""
    a = Lockstep(config, "mixed", seed=3)
    for _ in range(60):
        a.step()
    params_b = [fo.Parameter(np.array(p, copy=True)) for p in a.params]
    opt_b = config.make([{"params": [params_b[i] for i in g], **kw}
                         for g, kw in zip(GROUPS, _group_kwargs(config))])
    opt_b.load_state_dict(copy.deepcopy(a.opt.state_dict()))
    rng = np.random.default_rng(11)
    for t in range(60):
        for k, (p, q) in enumerate(zip(a.params, params_b)):
            if (t + k) % 5 == 0:
                p.grad = q.grad = None
                continue
            g = (np.asarray(p) * 0.5 + rng.standard_normal(p.shape)).astype(p.dtype)
            p.grad, q.grad = g, g.copy()
        a.opt.step()
        opt_b.step()
        for p, q in zip(a.params, params_b):
            assert np.array_equal(bits(p), bits(q))
    assert _state_bits(a.opt) == _state_bits(opt_b)


def _state_bits(opt):
    sd = opt.state_dict()
    return {k: {n: (bits(v).tobytes() if isinstance(v, np.ndarray) else v) for n, v in s.items()}
            for k, s in sd["state"].items()}


@pytest.mark.parametrize("config", [SGD_CONFIGS[9], ADAM_CONFIGS[4], ADAMW_CONFIGS[5]],
                         ids=lambda c: c.id)
def test_torch_to_fastoptim_to_torch_mid_training(config):
    """A run that starts in torch, continues in fastoptim and returns to torch, through
    ``fo.interop``, stays in lockstep with a run that never left torch (bitwise for SGD; within
    sqrt rounding for Adam/AdamW, and exactly equal step counts)."""
    rng = np.random.default_rng(5)
    data = [rng.standard_normal(s) for s in SHAPES]
    kwargs = _group_kwargs(config)

    def torch_run(tensors):
        return config.make_torch([{"params": [tensors[i] for i in g], **config.torch_kwargs(kw)}
                                  for g, kw in zip(GROUPS, kwargs)])

    ref = [torch.nn.Parameter(torch.from_numpy(x.copy())) for x in data]
    ref_opt = torch_run(ref)
    moving = [torch.nn.Parameter(torch.from_numpy(x.copy())) for x in data]
    moving_opt = torch_run(moving)

    def grads_at(t, values):
        g_rng = np.random.default_rng(1000 + t)
        return [None if (t + k) % 6 == 2 else v * 0.5 + g_rng.standard_normal(v.shape)
                for k, v in enumerate(values)]

    def torch_step(t, tensors, opt, values):
        for tp, g in zip(tensors, grads_at(t, values)):
            tp.grad = None if g is None else torch.from_numpy(g.copy())
        opt.step()

    def compare(ours, t):
        for k, (x, r) in enumerate(zip(ours, ref)):
            r = r.detach().numpy()
            if config.optimizer == "SGD":
                assert np.array_equal(bits(x), bits(r)), (t, k)
            else:
                assert normwise_ulp_distance(np.asarray(x), r) <= ADAM_MAX_ULP, (t, k)

    t = 0
    for _ in range(40):  # phase 1: both in torch
        values = [r.detach().numpy().copy() for r in ref]
        torch_step(t, ref, ref_opt, values)
        torch_step(t, moving, moving_opt, values)
        t += 1
    # torch -> fastoptim
    fparams = [fo.Parameter(tp.detach().numpy().copy()) for tp in moving]
    fopt = config.make([{"params": [fparams[i] for i in g], **kw} for g, kw in zip(GROUPS, kwargs)])
    fopt.load_state_dict(fo.interop.from_torch(moving_opt.state_dict()))
    for _ in range(40):  # phase 2: the reference in torch, the moving run in fastoptim
        values = [np.asarray(p).copy() for p in fparams]
        grads = grads_at(t, values)
        for p, g in zip(fparams, grads):
            p.grad = g
        fopt.step()
        torch_step(t, ref, ref_opt, values)
        t += 1
        compare(fparams, t)
    # fastoptim -> torch
    back = [torch.nn.Parameter(torch.from_numpy(np.array(p, copy=True))) for p in fparams]
    back_opt = torch_run(back)
    back_opt.load_state_dict(fo.interop.to_torch(fopt.state_dict()))
    for _ in range(40):  # phase 3: both in torch again
        values = [tp.detach().numpy().copy() for tp in back]
        torch_step(t, back, back_opt, values)
        torch_step(t, ref, ref_opt, values)
        t += 1
        compare([tp.detach().numpy() for tp in back], t)
    for tp, rp in zip(back, ref):
        s, r = back_opt.state.get(tp, {}), ref_opt.state.get(rp, {})
        assert sorted(s) == sorted(r)
        if "step" in s:
            assert s["step"].dtype == r["step"].dtype and s["step"].item() == r["step"].item()
