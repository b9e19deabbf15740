"""The torch.optim API of fastoptim's optimizers: construction forms and group keys, state,
_step_count, zero_grad, closures, hooks, state_dict layout (against live torch where installed),
load_state_dict strictness and atomicity, repr, pickling and deepcopy."""
import copy
import inspect
import pickle
import types

import numpy as np
import pytest

import fastoptim as fo
from fastoptim.optim.registry import OPTIMIZERS
from fastoptim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
from optim_configs import CLIQUEY_VARIANTS, DEFAULT_CONFIGS, SGD_CONFIGS
from reference import bits

try:
    import torch
except ImportError:
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")

SGD_DEFAULTS = {"lr": 0.001, "momentum": 0, "dampening": 0, "weight_decay": 0, "nesterov": False,
                "maximize": False, "foreach": None, "differentiable": False, "fused": None}
ADAM_DEFAULTS = {"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-08, "weight_decay": 0,
                 "amsgrad": False, "maximize": False, "foreach": None, "capturable": False,
                 "differentiable": False, "fused": None, "decoupled_weight_decay": False}


def params(*shapes, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [fo.Parameter(rng.standard_normal(s).astype(dtype)) for s in shapes]


def set_grads(ps, seed=1, skip=()):
    rng = np.random.default_rng(seed)
    for k, p in enumerate(ps):
        p.grad = None if k in skip else rng.standard_normal(p.shape).astype(p.dtype)


def snapshot(opt, ps):
    """Everything a step may change, as comparable bytes."""
    return ([bits(p).tobytes() for p in ps], opt._step_count,
            [(id(k), {n: bits(v).tobytes() if isinstance(v, np.ndarray) else v
                      for n, v in s.items()}) for k, s in opt.state.items()])


# ---------------------------------------------------------------------------- construction


def test_defaults_have_torchs_values_and_key_order():
    assert list(fo.SGD(params(2)).defaults.items()) == list(SGD_DEFAULTS.items())
    assert list(fo.Adam(params(2)).defaults.items()) == list(ADAM_DEFAULTS.items())
    adamw = {**ADAM_DEFAULTS, "weight_decay": 0.01, "decoupled_weight_decay": True}
    assert list(fo.AdamW(params(2)).defaults.items()) == list(adamw.items())


@needs_torch
@pytest.mark.parametrize("name", [name for name, info in OPTIMIZERS.items() if info.in_torch])
def test_defaults_match_live_torch(name):
    ours = getattr(fo, name)(params(2)).defaults
    theirs = getattr(torch.optim, name)([torch.nn.Parameter(torch.zeros(2))]).defaults
    assert list(ours.items()) == list(theirs.items())


def test_params_forms():
    a, b, c = params(2, 3, 4)
    for given in ([a, b], (a, b), (p for p in [a, b]), {"x": a, "y": b}.values()):
        opt = fo.SGD(given, lr=0.1)
        assert len(opt.param_groups) == 1 and opt.param_groups[0]["params"][0] is a
    named = fo.SGD([("x", a), ("y", b)], lr=0.1)
    assert list(named.param_groups[0]) == ["params", "param_names", *SGD_DEFAULTS]
    assert named.param_groups[0]["param_names"] == ["x", "y"]
    single = fo.SGD([{"params": c, "momentum": 0.5}], lr=0.1)  # a lone Parameter in a group
    assert len(single.param_groups[0]["params"]) == 1 and single.param_groups[0]["params"][0] is c


def test_group_keys_user_keys_first_then_defaults_in_order():
    a, b = params(2, 3)
    group = {"momentum": 0.5, "params": [a], "custom": "kept"}
    opt = fo.SGD([group, {"params": [b]}], lr=0.1)
    assert opt.param_groups[0] is group  # stored, not copied (torch)
    assert list(group) == ["momentum", "params", "custom", "lr", "dampening", "weight_decay",
                           "nesterov", "maximize", "foreach", "differentiable", "fused"]
    assert opt.param_groups[1]["momentum"] == 0 and opt.param_groups[1]["lr"] == 0.1


def test_hyperparameters_may_be_numpy_scalars_and_arrays():
    (a,), (b,) = params(3), params(3)
    set_grads([a])
    set_grads([b])
    plain = fo.SGD([b], lr=0.01, momentum=0.9)
    arr = fo.SGD([a], lr=np.array(0.01), momentum=np.float64(0.9))
    for _ in range(3):
        plain.step()
        arr.step()
    assert np.array_equal(bits(a), bits(b))
    adam = fo.Adam(params(3), lr=np.float32(0.01), betas=(np.float32(0.9), np.float32(0.99)))
    adam.param_groups[0]["params"][0].grad = np.ones(3)
    adam.step()
    assert adam.state[adam.param_groups[0]["params"][0]]["step"] == 1


# ---------------------------------------------------------------------------- state and steps


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_state_is_lazy_with_torch_keys(dtype):
    ps = params(3, (2, 2), 5, dtype=dtype)
    opt = fo.Adam(ps, amsgrad=True)
    assert len(opt.state) == 0
    set_grads(ps, skip={1})
    opt.step()
    assert ps[1] not in opt.state  # no grad, no state (torch)
    for p in (ps[0], ps[2]):
        s = opt.state[p]
        assert list(s) == ["step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
        assert type(s["step"]) is int and s["step"] == 1
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            assert type(s[key]) is np.ndarray and s[key].dtype == dtype and s[key].shape == p.shape
    set_grads(ps)
    opt.step()
    assert [opt.state[p]["step"] for p in ps] == [2, 1, 2]


def test_adam_without_amsgrad_has_no_max_buffer():
    ps = params(3)
    opt = fo.AdamW(ps)
    set_grads(ps)
    opt.step()
    assert list(opt.state[ps[0]]) == ["step", "exp_avg", "exp_avg_sq"]


def test_sgd_state_only_with_momentum():
    ps = params(3, 4)
    set_grads(ps, skip={1})
    plain = fo.SGD(ps, lr=0.1)
    plain.step()
    assert len(plain.state) == 0 and plain.state_dict()["state"] == {}
    heavy = fo.SGD(ps, lr=0.1, momentum=0.9)
    heavy.step()
    assert list(heavy.state) == [ps[0]] and list(heavy.state[ps[0]]) == ["momentum_buffer"]


def test_a_zero_grad_is_not_skipped():
    (p,) = params(3)
    opt = fo.Adam([p])
    p.grad = np.zeros(3)
    opt.step()
    assert opt.state[p]["step"] == 1


def test_mixed_dtypes_in_one_group():
    ps = [fo.Parameter(np.ones(4, np.float32)), fo.Parameter(np.ones(4, np.float64))]
    for cls in (fo.SGD, fo.Adam):
        opt = cls(ps, lr=0.1)
        set_grads(ps)
        opt.step()
        assert ps[0].dtype == np.float32 and ps[1].dtype == np.float64


def test_step_count_counts_completed_steps_only():
    ps = params(3)
    opt = fo.Adam(ps)
    assert opt._step_count == 0
    opt.step()  # no grads at all: still a completed step
    assert opt._step_count == 1
    set_grads(ps)
    opt.step()
    assert opt._step_count == 2

    def failing_closure():
        raise RuntimeError("loss blew up")

    with pytest.raises(RuntimeError, match="loss blew up"):
        opt.step(failing_closure)
    assert opt._step_count == 2
    # The update of a step whose post-hook raises has happened: it is counted, like the
    # per-parameter steps, and the hook's exception propagates.
    handle = opt.register_step_post_hook(lambda o, a, k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        opt.step()
    handle.remove()
    assert opt._step_count == 3 and all(opt.state[p]["step"] == 2 for p in ps)
    assert "_step_count" not in opt.state_dict() and "_step_count" not in str(opt.state_dict())


def test_step_is_a_plain_function_on_the_class():
    opt = fo.SGD(params(2), lr=0.1)
    for cls in (info.cls for info in OPTIMIZERS.values()):
        assert isinstance(cls.__dict__.get("step", cls.step), types.FunctionType)
    assert "step" not in vars(opt)
    assert opt.step.__func__ is type(opt).step
    opt.step = lambda closure=None: None  # a user's replacement is an instance attribute
    assert "step" in vars(opt) and isinstance(type(opt).__dict__["step"], types.FunctionType)


def test_subclass_calling_super_step_runs_hooks_and_counts_once():
    calls = []

    class Noisy(fo.SGD):
        def step(self, closure=None):
            calls.append("sub")
            return super().step(closure)

    ps = params(3)
    opt = Noisy(ps, lr=0.1)
    opt.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    opt.register_step_post_hook(lambda o, a, k: calls.append("post"))
    set_grads(ps)
    assert opt.step(lambda: 3.0) == 3.0
    assert calls == ["pre", "sub", "post"] and opt._step_count == 1


def test_closure_value_is_returned_and_called_before_the_update():
    (p,) = params(3)
    opt = fo.SGD([p], lr=0.5)
    before = np.array(p)

    def closure():
        np.testing.assert_array_equal(p, before)  # not updated yet
        p.grad = np.ones(3)
        return 1.25

    assert opt.step(closure) == 1.25
    np.testing.assert_array_equal(p, before - 0.5)
    assert opt.step() is None


def test_zero_grad():
    a, b, c = params(3, 3, 3)
    opt = fo.SGD([a, b, c], lr=0.1)
    buffer = np.ones((3, 2))
    a.grad = buffer[:, 0]  # writeable, non-contiguous view: zeroed in place
    b.grad = np.broadcast_to(np.float64(2.0), (3,))  # read-only: replaced
    read_only = b.grad
    opt.zero_grad(set_to_none=False)
    assert a.grad.base is buffer and np.all(buffer[:, 0] == 0) and np.all(buffer[:, 1] == 1)
    assert b.grad is not read_only and np.all(b.grad == 0) and b.grad.flags.writeable
    assert np.all(read_only == 2) and c.grad is None
    opt.zero_grad()
    assert a.grad is None and b.grad is None and c.grad is None


def test_duplicate_parameter_in_a_group_is_refused():
    (p,) = params(4)
    with pytest.raises(ValueError, match=r"param 1 of param group 0 is the same Parameter as "
                                         r"param 0 of param group 0"):
        fo.SGD([p, p], lr=0.1, momentum=0.9)


def test_add_param_group_after_construction_then_step():
    a, b = params(3, 3)
    opt = fo.Adam([a], lr=0.1)
    opt.add_param_group({"params": [b], "lr": 0.01})
    assert opt.param_groups[1]["betas"] == (0.9, 0.999)
    set_grads([a, b])
    opt.step()
    assert opt.state[b]["step"] == 1


def _accepts(config, variant):
    return set(variant) <= set(inspect.signature(config.fastoptim_class).parameters)


@pytest.mark.parametrize("config, variant",
                         [(c, v) for c in DEFAULT_CONFIGS for v in CLIQUEY_VARIANTS if _accepts(c, v)],
                         ids=lambda x: x.id if hasattr(x, "id") else str(x))
def test_foreach_and_fused_flags_change_nothing(config, variant):
    """Each flag the class takes (torch's signature: RMSprop has no ``fused``, Lion none)."""
    base_ps, flag_ps = params(5, (2, 3)), params(5, (2, 3))
    base, flagged = config.make(base_ps), config.make(flag_ps, **variant)
    for k in range(4):
        set_grads(base_ps, seed=k)
        set_grads(flag_ps, seed=k)
        base.step()
        flagged.step()
    for p, q in zip(base_ps, flag_ps):
        assert np.array_equal(bits(p), bits(q))


# ---------------------------------------------------------------------------- atomic steps


@pytest.mark.parametrize("cls", [fo.SGD, fo.Adam])
def test_bad_grad_in_the_last_group_changes_nothing(cls):
    ps = params(3, 4, 5)
    opt = cls([{"params": ps[:2]}, {"params": ps[2:]}], lr=0.1, **(
        {"momentum": 0.9} if cls is fo.SGD else {}))
    set_grads(ps)
    opt.step()
    set_grads(ps, seed=2)
    ps[0].grad = None
    fresh = fo.Parameter(np.zeros(2))
    opt.add_param_group({"params": [fresh]})
    fresh.grad = np.ones(2)  # would create state lazily
    ps[2].grad.shape = (5, 1)  # changed in place after assignment
    before = snapshot(opt, ps + [fresh])
    with pytest.raises(ValueError, match=r"grad of param 0 of param group 1 has shape \(5, 1\).*"
                                         r"Nothing was updated"):
        opt.step()
    assert snapshot(opt, ps + [fresh]) == before and fresh not in opt.state
    ps[2].grad = ps[2].grad.reshape(5).astype(np.float32).astype(np.float64)
    ps[2].grad.dtype = np.int64  # in place again
    with pytest.raises(TypeError, match="grad of param 0 of param group 1 has dtype int64"):
        opt.step()
    assert snapshot(opt, ps + [fresh]) == before


@pytest.mark.parametrize("cls", [fo.SGD, fo.Adam])
def test_bad_grad_in_a_single_group_changes_nothing(cls):
    ps = params(3, 4, 5)
    opt = cls(ps, lr=0.1)
    set_grads(ps)
    ps[1].grad.shape = (2, 2)
    before = snapshot(opt, ps)
    with pytest.raises(ValueError, match=r"grad of param 1 of param group 0 has shape \(2, 2\)"):
        opt.step()
    assert snapshot(opt, ps) == before and len(opt.state) == 0


def test_param_made_read_only_after_construction_changes_nothing():
    ps = params(3, 4)
    opt = fo.SGD([{"params": [ps[0]]}, {"params": [ps[1]]}], lr=0.1)
    set_grads(ps)
    ps[1].flags.writeable = False
    before = snapshot(opt, ps)
    with pytest.raises(ValueError, match="param 0 of param group 1 is read-only"):
        opt.step()
    assert snapshot(opt, ps) == before


def test_amsgrad_switched_on_mid_run_is_a_clear_error():
    ps = params(3)
    opt = fo.Adam(ps)
    set_grads(ps)
    opt.step()
    opt.param_groups[0]["amsgrad"] = True
    before = snapshot(opt, ps)
    with pytest.raises(ValueError, match="amsgrad was switched on"):
        opt.step()
    assert snapshot(opt, ps) == before


def test_non_finite_gradients_propagate_like_torch():
    ps = params(3)
    opt = fo.Adam(ps)
    ps[0].grad = np.array([np.nan, np.inf, 1.0])
    opt.step()
    assert np.isnan(ps[0][0]) and np.isnan(ps[0][1]) and np.isfinite(ps[0][2])


# ---------------------------------------------------------------------------- hooks


def test_step_hook_order_and_removal():
    order = []
    opt = fo.SGD(params(2), lr=0.1)
    handles = [
        register_optimizer_step_pre_hook(lambda o, a, k: order.append("gpre")),
        opt.register_step_pre_hook(lambda o, a, k: order.append("pre")),
        opt.register_step_post_hook(lambda o, a, k: order.append("post")),
        register_optimizer_step_post_hook(lambda o, a, k: order.append("gpost")),
    ]
    try:
        opt.step()
        assert order == ["gpre", "pre", "post", "gpost"]
        fo.Adam(params(2)).step()  # global hooks run for every optimizer
        assert order[4:] == ["gpre", "gpost"]
    finally:
        for h in handles:
            h.remove()
    opt.step()
    assert len(order) == 6
    handles[0].remove()  # removing twice is harmless


def test_step_pre_hook_sees_and_replaces_the_arguments():
    opt = fo.SGD(params(2), lr=0.1)
    seen = []

    def hook(optimizer, args, kwargs):
        seen.append((optimizer, args, kwargs))
        return (optimizer, lambda: "replaced"), {}

    opt.register_step_pre_hook(hook)
    post = []
    opt.register_step_post_hook(lambda o, a, k: post.append((a, k)))
    assert opt.step(closure=lambda: "original") == "replaced"
    assert seen[0][0] is opt and seen[0][1] == (opt,) and "closure" in seen[0][2]
    assert post[0][0][0] is opt and post[0][1] == {}


@needs_torch
def test_state_dict_hook_order_matches_torch():
    def run(opt):
        order = []
        opt.register_state_dict_pre_hook(lambda o: order.append("sd_pre1"))
        opt.register_state_dict_pre_hook(lambda o: order.append("sd_pre0"), prepend=True)
        opt.register_state_dict_post_hook(lambda o, sd: order.append("sd_post"))
        opt.register_load_state_dict_pre_hook(lambda o, sd: order.append("lsd_pre"))
        opt.register_load_state_dict_post_hook(lambda o: order.append("lsd_post"))
        opt.load_state_dict(opt.state_dict())
        return order

    ours = run(fo.SGD(params(2), lr=0.1))
    assert ours == ["sd_pre0", "sd_pre1", "sd_post", "lsd_pre", "lsd_post"]
    assert ours == run(torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1))


def test_state_dict_hooks_may_replace_the_dict():
    opt = fo.SGD(params(2), lr=0.1)
    opt.register_state_dict_post_hook(lambda o, sd: {**sd, "extra": 1})
    assert opt.state_dict()["extra"] == 1
    seen = []
    original = opt.state_dict()

    def pre(o, sd):
        seen.append(sd)
        sd["param_groups"] = [{**sd["param_groups"][0], "lr": 0.5}]  # on the shallow copy
        return None

    opt.register_load_state_dict_pre_hook(pre)
    opt.load_state_dict(original)
    assert seen[0] is not original and original["param_groups"][0]["lr"] == 0.1
    assert opt.param_groups[0]["lr"] == 0.5
    handle = opt.register_load_state_dict_pre_hook(lambda o, sd: {**sd, "param_groups": [
        {**sd["param_groups"][0], "lr": 0.25}]})
    opt.load_state_dict(original)
    assert opt.param_groups[0]["lr"] == 0.25
    handle.remove()
    with opt.register_load_state_dict_post_hook(lambda o: seen.append("post")):
        opt.load_state_dict(original)
    opt.load_state_dict(original)
    assert seen.count("post") == 1  # the context manager removed it


# ---------------------------------------------------------------------------- state_dict


@needs_torch
@pytest.mark.parametrize("name, kwargs", [("SGD", {"lr": 0.1, "momentum": 0.9}),
                                          ("Adam", {"amsgrad": True}), ("AdamW", {})])
@pytest.mark.parametrize("named", [False, True])
def test_state_dict_layout_matches_torch(name, kwargs, named):
    rng = np.random.default_rng(0)
    data = [rng.standard_normal(s) for s in [(3,), (2, 2), (4,)]]
    ours = [fo.Parameter(d.copy()) for d in data]
    theirs = [torch.nn.Parameter(torch.from_numpy(d.copy())) for d in data]

    def groups(ps):
        wrap = (lambda i, p: (f"p{i}", p)) if named else (lambda i, p: p)
        return [{"params": [wrap(0, ps[0]), wrap(1, ps[1])]},
                {"params": [wrap(2, ps[2])], "lr": 0.5}]

    opt, topt = getattr(fo, name)(groups(ours), **kwargs), getattr(torch.optim, name)(
        groups(theirs), **kwargs)
    for step in range(2):
        for k, (p, t) in enumerate(zip(ours, theirs)):
            g = None if k == 1 else rng.standard_normal(p.shape)
            p.grad = g
            t.grad = None if g is None else torch.from_numpy(g.copy())
        opt.step()
        topt.step()
    sd, tsd = opt.state_dict(), topt.state_dict()
    assert list(sd) == list(tsd) == ["state", "param_groups"]
    assert list(sd["state"]) == list(tsd["state"]) == [0, 2]
    for k in sd["state"]:
        assert list(sd["state"][k]) == list(tsd["state"][k])
        for key, value in sd["state"][k].items():
            if key == "step":
                assert type(value) is int and value == tsd["state"][k][key].item() == 2
            else:
                np.testing.assert_allclose(value, tsd["state"][k][key].numpy(), rtol=1e-12)
    assert [list(g) for g in sd["param_groups"]] == [list(g) for g in tsd["param_groups"]]
    assert sd["param_groups"] == tsd["param_groups"]


def test_state_dict_is_a_snapshot():
    ps = params(3)
    opt = fo.Adam(ps)
    set_grads(ps)
    opt.step()
    sd = opt.state_dict()
    frozen = copy.deepcopy(sd)
    set_grads(ps, seed=5)
    opt.step()
    assert sd["state"][0]["step"] == 1 and np.array_equal(sd["state"][0]["exp_avg"],
                                                          frozen["state"][0]["exp_avg"])
    sd["state"][0]["exp_avg"][:] = 99
    sd["state"][0]["step"] = 1000
    sd["param_groups"][0]["lr"] = 5.0
    assert opt.state[ps[0]]["step"] == 2 and not np.any(opt.state[ps[0]]["exp_avg"] == 99)
    assert opt.param_groups[0]["lr"] == 0.001


def test_load_state_dict_restores_and_takes_the_saved_hyperparameters():
    ps = params(3, 4)
    opt = fo.Adam([{"params": [ps[0]]}, {"params": [ps[1]], "lr": 0.5}], amsgrad=True)
    set_grads(ps)
    opt.step()
    sd = opt.state_dict()
    qs = params(3, 4, seed=9)
    other = fo.Adam([{"params": [qs[0]], "lr": 7.0}, {"params": [qs[1]]}], amsgrad=True)
    other.load_state_dict(sd)
    assert [g["lr"] for g in other.param_groups] == [0.001, 0.5]
    assert other.param_groups[0]["params"][0] is qs[0]
    for p, q in zip(ps, qs):
        assert other.state[q]["step"] == 1
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            np.testing.assert_array_equal(other.state[q][key], opt.state[p][key])


def test_load_state_dict_copies_and_never_mutates_its_argument():
    ps = params(3)
    opt = fo.SGD(ps, lr=0.1, momentum=0.9)
    set_grads(ps)
    opt.step()
    sd = opt.state_dict()
    reference = copy.deepcopy(sd)
    target_ps = params(3)
    target = fo.SGD(target_ps, lr=0.1, momentum=0.9)
    target.load_state_dict(sd)
    buffer = target.state[target_ps[0]]["momentum_buffer"]
    assert not np.shares_memory(buffer, sd["state"][0]["momentum_buffer"])
    assert target.param_groups[0] is not sd["param_groups"][0]
    set_grads(target_ps)
    target.step()
    assert sd.keys() == reference.keys() and sd["param_groups"] == reference["param_groups"]
    assert np.array_equal(sd["state"][0]["momentum_buffer"], reference["state"][0]["momentum_buffer"])
    assert "params" in sd["param_groups"][0] and sd["param_groups"][0]["params"] == [0]


def test_load_casts_float_state_to_the_param_dtype_and_converts_steps():
    (p,) = params(4, dtype=np.float64)
    opt = fo.Adam([p])
    state = {"exp_avg": np.ones(4, np.float32), "exp_avg_sq": np.ones(4, np.float16)}
    for step in (3, np.int64(3), 3.0, np.float32(3.0), np.array(3.0, np.float32), np.array(3)):
        opt.load_state_dict({"state": {0: {"step": step, **state}},
                             "param_groups": opt.state_dict()["param_groups"]})
        loaded = opt.state[p]
        assert type(loaded["step"]) is int and loaded["step"] == 3
        assert loaded["exp_avg"].dtype == np.float64 and loaded["exp_avg_sq"].dtype == np.float64
        assert loaded["exp_avg"].flags.c_contiguous and loaded["exp_avg"].flags.writeable


def test_step_is_exact_beyond_float32_range():
    (p,) = params(2)
    opt = fo.Adam([p])
    big = 2**24 + 1  # float32 cannot represent this; torch's counter stops at 2**24
    opt.load_state_dict({"state": {0: {"step": big, "exp_avg": np.zeros(2),
                                       "exp_avg_sq": np.zeros(2)}},
                         "param_groups": opt.state_dict()["param_groups"]})
    p.grad = np.ones(2)
    opt.step()
    opt.step()
    assert opt.state[p]["step"] == big + 2 and type(opt.state[p]["step"]) is int


def test_old_checkpoint_keys_are_filled():
    ps = params(3)
    opt = fo.SGD(ps, lr=0.1, momentum=0.9)
    old_group = {"lr": 0.2, "momentum": 0.9, "dampening": 0, "weight_decay": 0, "params": [0]}
    opt.load_state_dict({"state": {0: {"momentum_buffer": None}}, "param_groups": [old_group]})
    group = opt.param_groups[0]
    assert group["lr"] == 0.2 and group["nesterov"] is False and group["fused"] is False
    assert group["foreach"] is None and opt.state[ps[0]] == {}
    adamw = fo.AdamW(params(3))
    adam_sd = fo.Adam(params(3), weight_decay=0.0).state_dict()
    adamw.load_state_dict(adam_sd)
    assert adamw.param_groups[0]["decoupled_weight_decay"] is True
    assert adamw.param_groups[0]["weight_decay"] == 0.0


def _adam_sd(opt, **state):
    return {"state": {0: state}, "param_groups": copy.deepcopy(opt.state_dict()["param_groups"])}


@pytest.mark.parametrize("bad_state, error, regex", [
    ({"step": 1, "exp_avg": np.zeros(5), "exp_avg_sq": np.zeros(4)}, ValueError,
     r"\['exp_avg'\] has shape \(5,\), but its parameter has shape \(4,\)"),
    ({"step": 1, "exp_avg": np.zeros(4, np.int32), "exp_avg_sq": np.zeros(4)}, TypeError,
     "must be floating point"),
    ({"step": 1, "exp_avg": [0.0] * 4, "exp_avg_sq": np.zeros(4)}, TypeError,
     "must be a numpy.ndarray, got list"),
    ({"step": -1, "exp_avg": np.zeros(4), "exp_avg_sq": np.zeros(4)}, ValueError, "non-negative"),
    ({"step": 1.5, "exp_avg": np.zeros(4), "exp_avg_sq": np.zeros(4)}, ValueError,
     "whole number"),
    ({"step": True, "exp_avg": np.zeros(4), "exp_avg_sq": np.zeros(4)}, TypeError,
     "integer step count"),
    ({"step": np.array([1]), "exp_avg": np.zeros(4), "exp_avg_sq": np.zeros(4)}, TypeError,
     "0-d"),
    ({"step": 1, "exp_avg": np.zeros(4)}, ValueError, r"lacks \['exp_avg_sq'\]"),
    ({"step": 1, "exp_avg": np.zeros(4), "exp_avg_sq": np.zeros(4), "momentum": np.zeros(4)},
     ValueError, r"unexpected key\(s\) \['momentum'\]"),
])
def test_load_state_dict_validates_everything_and_changes_nothing(bad_state, error, regex):
    ps = params(4, 4)
    opt = fo.Adam(ps)
    set_grads(ps)
    opt.step()
    good = opt.state_dict()
    before = snapshot(opt, ps)
    groups_before = opt.param_groups
    sd = _adam_sd(opt)
    sd["state"] = {1: good["state"][1], 0: bad_state}  # the good entry comes first
    with pytest.raises(error, match=regex):
        opt.load_state_dict(sd)
    assert snapshot(opt, ps) == before and opt.param_groups is groups_before


@pytest.mark.parametrize("mutate, error, regex", [
    (lambda sd: sd["param_groups"][0].update(lr=-1.0), ValueError,
     "loaded param group 0: Invalid learning rate: -1.0"),
    (lambda sd: sd["param_groups"][0].update(betas=(1.0, 0.9)), ValueError,
     "Invalid beta parameter at index 0: 1.0"),
    (lambda sd: sd["param_groups"][0].pop("eps"), ValueError, r"lacks the hyperparameter\(s\) "
                                                              r"\['eps'\]"),
    (lambda sd: sd["param_groups"][0].update(capturable=True), ValueError,
     "capturable=True is not supported"),
    (lambda sd: sd["state"].update({7: {}}), ValueError, "entry 7 that is not the index"),
    (lambda sd: sd["param_groups"][0].update(amsgrad=True), ValueError,
     r"lacks \['max_exp_avg_sq'\] \(the group has amsgrad=True\)"),
])
def test_load_state_dict_validates_groups(mutate, error, regex):
    ps = params(4)
    opt = fo.Adam(ps)
    set_grads(ps)
    opt.step()
    sd = opt.state_dict()
    mutate(sd)
    before = snapshot(opt, ps)
    with pytest.raises(error, match=regex):
        opt.load_state_dict(sd)
    assert snapshot(opt, ps) == before and opt.param_groups[0]["lr"] == 0.001


@needs_torch
def test_loading_torch_tensors_points_to_interop():
    t = torch.nn.Parameter(torch.zeros(3))
    topt = torch.optim.SGD([t], lr=0.1, momentum=0.9)
    t.grad = torch.ones(3)
    topt.step()
    opt = fo.SGD(params(3), lr=0.1, momentum=0.9)
    with pytest.raises(TypeError, match=r"fastoptim\.interop\.from_torch"):
        opt.load_state_dict(topt.state_dict())


# ---------------------------------------------------------------------------- repr


@needs_torch
@pytest.mark.parametrize("name, kwargs", [("SGD", {"lr": 0.1, "momentum": 0.9}),
                                          ("Adam", {"betas": (0.8, 0.99)}),
                                          ("AdamW", {"amsgrad": True})])
def test_repr_matches_torch(name, kwargs):
    ours = getattr(fo, name)([{"params": [("a", fo.Parameter(np.zeros(2)))]},
                              {"params": [("b", fo.Parameter(np.zeros(2)))], "lr": 0.5}], **kwargs)
    theirs = getattr(torch.optim, name)(
        [{"params": [("a", torch.nn.Parameter(torch.zeros(2)))]},
         {"params": [("b", torch.nn.Parameter(torch.zeros(2)))], "lr": 0.5}], **kwargs)
    assert repr(ours) == repr(theirs)


def test_repr_format():
    opt = fo.SGD([{"params": params(1)}, {"params": params(1, seed=3), "lr": 0.5}], lr=0.1,
                 momentum=0.9)
    text = repr(opt)
    assert text.startswith("SGD (\nParameter Group 0\n    dampening: 0\n")
    assert "\nParameter Group 1\n" in text and "    lr: 0.5\n" in text and text.endswith("\n)")


# ---------------------------------------------------------------------------- pickle / deepcopy


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@pytest.mark.parametrize("config", DEFAULT_CONFIGS + [SGD_CONFIGS[2]], ids=lambda c: c.id)
def test_copies_continue_identically_without_hooks(config, how):
    ps = params(3, (2, 2))
    opt = config.make([{"params": [ps[0]]}, {"params": [ps[1]], "lr": 0.01}])
    set_grads(ps)
    opt.step()
    opt.step()
    opt.register_step_pre_hook(lambda o, a, k: None)
    opt.register_state_dict_post_hook(lambda o, sd: None)
    clone = copy.deepcopy(opt) if how == "deepcopy" else pickle.loads(pickle.dumps(opt))
    assert type(clone) is type(opt) and clone._step_count == 2
    assert not clone._optimizer_step_pre_hooks and not clone._optimizer_state_dict_post_hooks
    clone_ps = [p for g in clone.param_groups for p in g["params"]]
    assert all(not np.shares_memory(p, q) for p, q in zip(ps, clone_ps))
    assert all(q in clone.state for q in clone_ps) == bool(opt.state)  # keyed by the copies
    assert repr(clone) == repr(opt)
    for k in range(3):
        set_grads(ps, seed=10 + k)
        set_grads(clone_ps, seed=10 + k)
        opt.step()
        clone.step()
    for p, q in zip(ps, clone_ps):
        assert np.array_equal(bits(p), bits(q))
    assert clone._step_count == 5


def test_unpickled_optimizer_accepts_new_hooks():
    opt = pickle.loads(pickle.dumps(fo.SGD(params(2), lr=0.1)))
    seen = []
    opt.register_step_post_hook(lambda o, a, k: seen.append(1))
    opt.step()
    assert seen == [1]


def test_required_survives_pickling():
    from fastoptim.optimizer import required

    assert pickle.loads(pickle.dumps(required)) is required
    assert copy.deepcopy(required) is required
