"""Lion (not in torch) against a NumPy model of its rule in /work/shared/API.md, bit for bit:

    p *= 1 - lr*wd;  c = b1*m + (1-b1)*g;  p -= lr*sign(c);  m = b2*m + (1-b2)*g   (sign(0) = 0)

rounded as the reference implementation in torch ops rounds it (``add`` with ``alpha`` and the
final ``add_`` are fused multiply-adds, everything else separately rounded in the dtype). The class
runs every registry configuration for 200 steps over three param groups, in float32, float64 and
a mix, with parameters (and a whole group) that have no gradient at some steps.
"""
import numpy as np
import pytest

import fastoptim as fo
from fastoptim.optim.registry import OPTIMIZERS
from reference import bits, fma

CONFIGS = OPTIMIZERS["Lion"].configs
SHAPES = [(7,), (5, 13), (257,), (64,), (3, 4, 5), (1,), (33,)]
GROUPS = [[0, 1, 2], [3, 4], [5, 6]]
DTYPES = {"float32": [np.float32] * 7, "float64": [np.float64] * 7,
          "mixed": [np.float32, np.float64] * 3 + [np.float32]}


def lion_step(p, g, m, *, lr, betas, weight_decay, maximize):
    """One step of the rule on NumPy arrays (in place), in ``p``'s dtype."""
    t = p.dtype.type
    beta1, beta2 = betas
    if maximize:
        g = -g
    if weight_decay != 0:
        p *= t(1.0 - lr * weight_decay)
    c = fma(g, t(1.0 - beta1), m * t(beta1))
    p[...] = fma(np.sign(c), t(-lr), p)
    m[...] = fma(g, t(1.0 - beta2), m * t(beta2))


def _groups(config):
    return [{}, dict(config.group_overrides), {"lr": 0.002}]


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.id)
def test_class_is_bitwise_the_numpy_rule(config, dtype_name):
    rng = np.random.default_rng(0)
    data = [rng.standard_normal(s).astype(d) for s, d in zip(SHAPES, DTYPES[dtype_name])]
    params = [fo.Parameter(x.copy()) for x in data]
    kwargs = _groups(config)
    opt = config.make([{"params": [params[i] for i in g], **kw} for g, kw in zip(GROUPS, kwargs)])
    model = [x.copy() for x in data]
    moments = [None] * len(model)
    hyper = []
    for group in opt.param_groups:
        hyper += [{k: group[k] for k in ("lr", "betas", "weight_decay", "maximize")}] * len(
            group["params"])
    for t in range(200):
        for k, p in enumerate(params):
            if (t + k) % 7 == 3 or (t % 50 == 25 and k in GROUPS[1]):
                p.grad = None
                continue
            g = (p * p.dtype.type(0.5) + rng.standard_normal(p.shape).astype(p.dtype)).astype(p.dtype)
            p.grad = g
            if moments[k] is None:
                moments[k] = np.zeros_like(model[k])
            lion_step(model[k], g, moments[k], **hyper[k])
        opt.step()
        for k, p in enumerate(params):
            assert np.array_equal(bits(p), bits(model[k])), (config.id, t, k)
    for k, p in enumerate(params):
        state = opt.state.get(p)
        assert list(state) == ["exp_avg"]
        assert np.array_equal(bits(state["exp_avg"]), bits(moments[k]))


def test_sign_of_zero_is_zero_and_the_defaults():
    w = fo.Parameter(np.array([1.0, 2.0], dtype=np.float32))
    opt = fo.Lion([w])
    assert opt.defaults == {"lr": 1e-4, "betas": (0.9, 0.99), "weight_decay": 0.0,
                            "maximize": False}
    w.grad = np.zeros(2, dtype=np.float32)
    opt.step()
    assert np.array_equal(w, [1.0, 2.0]) and np.array_equal(opt.state[w]["exp_avg"], [0, 0])


def test_state_dict_round_trip_and_all_or_nothing_load():
    rng = np.random.default_rng(1)
    a = [fo.Parameter(rng.standard_normal(5)) for _ in range(2)]
    b = [fo.Parameter(np.array(p, copy=True)) for p in a]
    opt_a, opt_b = fo.Lion(a, lr=0.01, weight_decay=0.1), fo.Lion(b, lr=0.01, weight_decay=0.1)
    for _ in range(5):
        for p in a:
            p.grad = rng.standard_normal(5)
        opt_a.step()
    for p, q in zip(a, b):
        q[...] = p
    sd = opt_a.state_dict()
    bad = {**sd, "state": {0: sd["state"][0], 1: {"exp_avg": np.zeros(4)}}}
    with pytest.raises(ValueError, match="has shape"):
        opt_b.load_state_dict(bad)
    assert not opt_b.state and opt_b.param_groups[0]["weight_decay"] == 0.1
    with pytest.raises(ValueError, match=r"unexpected key\(s\) \['step'\]; Lion state has only"):
        opt_b.load_state_dict({**sd, "state": {0: {**sd["state"][0], "step": 3}}})
    opt_b.load_state_dict(sd)
    for _ in range(5):
        for p, q in zip(a, b):
            p.grad = rng.standard_normal(5)
            q.grad = p.grad.copy()
        opt_a.step()
        opt_b.step()
    for p, q in zip(a, b):
        assert np.array_equal(bits(p), bits(q))
