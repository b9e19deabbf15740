"""The fused training step (docs/fused.rst): clip + step + EMA in one pass, ``grad_scale`` and
``found_inf``.

For every configuration of every registry optimizer, float32/float64/mixed, 1 and 2 threads, with
parameters (and a whole group) lacking gradients at some steps:
``clip_grad_norm_(..., fused_with=opt)`` + ``opt.step()`` with ``AveragedModel(..., fused_with=opt)``
must give the separate calls' params, state and EMA bit for bit; ``step(grad_scale=s)`` the step on
the gradients divided by ``s`` in memory; ``found_inf`` must change nothing. Against torch's fused
Adam/AdamW/SGD/Adagrad: torch's ``grad_scale`` is a division of the gradient (checked on torch
itself), its ``found_inf`` skips without counting a step; the values agree within the rounding
difference of torch's fused kernels and its single-tensor path (which fastoptim follows).
"""
import copy

import numpy as np
import pytest

import fastoptim as fo
from fastoptim._dispatch import kernels
from fastoptim.optim.registry import OPTIMIZERS, all_configs

CONFIGS = all_configs()
SHAPES = [(7,), (5, 13), (257,), (64,), (3, 4, 5), (1,), (33,)]
GROUPS = [[0, 1, 2], [3, 4], [5, 6]]
DTYPES = {"float32": [np.float32] * 7, "float64": [np.float64] * 7,
          "mixed": [np.float32, np.float64] * 3 + [np.float32]}
EMA = fo.swa_utils.get_ema_multi_avg_fn


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    old = fo.get_num_threads(), kernels.get_min_elements_per_thread()
    fo.set_num_threads(request.param)
    kernels.set_min_elements_per_thread(1 if request.param > 1 else old[1])
    yield request.param
    fo.set_num_threads(old[0])
    kernels.set_min_elements_per_thread(old[1])


def _make(config, dtype_name, seed=0):
    rng = np.random.default_rng(seed)
    data = [rng.standard_normal(s).astype(d) for s, d in zip(SHAPES, DTYPES[dtype_name])]
    params = [fo.Parameter(x) for x in data]
    kw = [{}, dict(config.group_overrides), {"lr": 0.002}]
    opt = config.make([{"params": [params[i] for i in g], **k} for g, k in zip(GROUPS, kw)])
    return params, opt


def _grads(rng, params, t):
    """Random gradients; some params (at step 2 a whole group) get none."""
    out = []
    for i, p in enumerate(params):
        if (t == 2 and i in GROUPS[1]) or (t % 3 == 1 and i == 6):
            out.append(None)
        else:
            out.append((rng.standard_normal(p.shape) * (1 + 2 * t)).astype(p.dtype))
    return out


def _set(params, grads):
    for p, g in zip(params, grads):
        p.grad = None if g is None else g.copy()


def _assert_same(a, b, what):
    (pa, oa), (pb, ob) = a, b
    for i, (x, y) in enumerate(zip(pa, pb)):
        assert x.tobytes() == y.tobytes(), f"{what}: param {i}"
        sa, sb = oa.state.get(x, {}), ob.state.get(y, {})
        assert list(sa) == list(sb), f"{what}: state keys of param {i}"
        for k in sa:
            va, vb = np.asarray(sa[k]), np.asarray(sb[k])
            assert va.dtype == vb.dtype and va.tobytes() == vb.tobytes(), f"{what}: state {k!r} of param {i}"


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.id)
def test_fused_clip_step_ema_equals_the_separate_calls(config, dtype_name, threads):
    rng = np.random.default_rng(hash(config.id) % 2**32)
    decay = float(rng.choice([0.999, 0.9, 0.3]))        # 0.3: the lerp's other branch
    max_norm = float(rng.choice([0.5, 5.0, 1e6]))       # 1e6: coefficient 1
    pa, oa = _make(config, dtype_name)
    pb, ob = _make(config, dtype_name)
    ema_a = fo.swa_utils.AveragedModel(pa, multi_avg_fn=EMA(decay))
    ema_b = fo.swa_utils.AveragedModel(pb, multi_avg_fn=EMA(decay), fused_with=ob)
    for t in range(6):
        grads = _grads(rng, pa, t)
        _set(pa, grads)
        _set(pb, grads)
        na = fo.clip_grad_norm_(pa, max_norm)
        nb = fo.clip_grad_norm_(pb, max_norm, fused_with=ob)
        assert na.tobytes() == nb.tobytes()
        oa.step()
        ema_a.update_parameters(pa)
        ob.step()
        for g, p in zip(grads, pb):                     # the fused step leaves the grads alone
            assert (g is None and p.grad is None) or p.grad.tobytes() == g.tobytes()
        _assert_same((pa, oa), (pb, ob), f"step {t}")
        for x, y in zip(ema_a.averaged, ema_b.averaged):
            assert x.tobytes() == y.tobytes(), f"EMA after step {t}"
        assert ema_a.n_averaged == ema_b.n_averaged == t + 1
    assert ema_a.state_dict()["n_averaged"] == ema_b.state_dict()["n_averaged"]


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.id)
def test_grad_scale_divides_and_found_inf_skips(config, dtype_name, threads):
    rng = np.random.default_rng(1)
    pa, oa = _make(config, dtype_name)
    pb, ob = _make(config, dtype_name)
    for t in range(5):
        grads = _grads(rng, pa, t)
        scale = [3.0, 1024.0, 0.75, 7.0, 65536.0][t]
        # separate: torch's GradScaler.unscale_ (a division in the gradient's dtype), then step
        _set(pa, [None if g is None else g / g.dtype.type(scale) for g in grads])
        _set(pb, grads)
        oa.step()
        ob.step(grad_scale=np.array(scale, np.float32) if t % 2 else scale)
        _assert_same((pa, oa), (pb, ob), f"step {t}")
        before = copy.deepcopy((pb, ob.state_dict()))
        ob.step(grad_scale=scale, found_inf=np.array(1.0, np.float32))
        _assert_same((pa, oa), (pb, ob), f"found_inf after step {t}")
        assert [p.tobytes() for p in before[0]] == [p.tobytes() for p in pb]


def test_found_inf_on_the_first_step_creates_no_state():
    p = fo.Parameter(np.ones(4, np.float32))
    p.grad = np.ones(4, np.float32)
    opt = fo.Adam([p])
    opt.step(found_inf=True)
    assert not opt.state.get(p) and np.all(p == 1)
    opt.step(found_inf=0.0)
    assert opt.state[p]["step"] == 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_fused_ema_of_a_skipped_step_is_the_separate_update(dtype):
    rng = np.random.default_rng(3)
    pa = [fo.Parameter(rng.standard_normal(9).astype(dtype))]
    pb = [fo.Parameter(pa[0].copy())]
    oa, ob = fo.AdamW(pa), fo.AdamW(pb)
    ea = fo.swa_utils.AveragedModel(pa, multi_avg_fn=EMA(0.5))
    eb = fo.swa_utils.AveragedModel(pb, multi_avg_fn=EMA(0.5), fused_with=ob)
    for t in range(4):
        g = rng.standard_normal(9).astype(dtype)
        pa[0].grad, pb[0].grad = g.copy(), g.copy()
        skip = t == 2
        if not skip:
            oa.step()
        ea.update_parameters(pa)
        ob.step(found_inf=skip)
        assert pa[0].tobytes() == pb[0].tobytes()
        assert ea.averaged[0].tobytes() == eb.averaged[0].tobytes()
    assert eb.n_averaged == 4


# --------------------------------------------------------------------------------------------------
# against torch's fused optimizers
# --------------------------------------------------------------------------------------------------

TORCH_FUSED = [("Adam", {"weight_decay": 0.1, "amsgrad": True}), ("Adam", {}),
               ("AdamW", {"weight_decay": 0.1}),
               ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
               ("SGD", {"lr": 0.1}), ("Adagrad", {"weight_decay": 0.1, "lr_decay": 0.01})]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name,kw", TORCH_FUSED, ids=[f"{n}-{i}" for i, (n, _) in enumerate(TORCH_FUSED)])
def test_grad_scale_and_found_inf_against_torch_fused(name, kw, dtype):
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = np.random.default_rng(0)
        x = [rng.standard_normal(s).astype(dtype) for s in [(257,), (33, 5)]]
        ps = [fo.Parameter(a.copy()) for a in x]
        ta = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in x]
        tb = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in x]
        opt = getattr(fo, name)(ps, **kw)
        topt_a = getattr(torch.optim, name)(ta, fused=True, **kw)
        topt_b = getattr(torch.optim, name)(tb, fused=True, **kw)
        worst = 0.0
        for t in range(12):
            s = [3.0, 1024.0, 0.75][t % 3]
            inf = t % 5 == 3
            g = [(rng.standard_normal(a.shape) * s).astype(dtype) for a in x]
            for p, q, r, gg in zip(ps, ta, tb, g):
                p.grad = gg.copy()
                q.grad = torch.from_numpy(gg.copy())
                r.grad = torch.from_numpy(gg / dtype(s))
            # torch's GradScaler sets these attributes for the fused step (float32 tensors)
            topt_a.grad_scale = torch.tensor(s, dtype=torch.float32)
            topt_a.found_inf = torch.tensor(1.0 if inf else 0.0, dtype=torch.float32)
            topt_a.step()
            if not inf:
                topt_b.step()
            opt.step(grad_scale=s, found_inf=inf)
            for p, q, r in zip(ps, ta, tb):
                # torch itself: grad_scale is the division of the gradient, found_inf a skip
                assert torch.equal(q, r)
                tq = q.detach().numpy()
                worst = max(worst, float(np.max(np.abs(np.asarray(p) - tq) / np.maximum(np.abs(tq), 1e-3))))
            steps = [opt.state[p].get("step") for p in ps]
            tsteps = [topt_a.state[q].get("step") for q in ta]
            assert [None if v is None else int(v) for v in tsteps] == steps
        # torch's fused kernels round differently from its single-tensor path (which fastoptim
        # follows bit for bit): measured at most 64 ulps over these steps
        assert worst < (2e-5 if dtype == np.float32 else 1e-12), worst
    finally:
        torch.set_num_threads(old)


# --------------------------------------------------------------------------------------------------
# bad input: a clear error, nothing changed
# --------------------------------------------------------------------------------------------------

def _adam_setup(fused_ema=True):
    rng = np.random.default_rng(5)
    ps = [fo.Parameter(rng.standard_normal(s).astype(np.float32)) for s in [(6,), (2, 3)]]
    opt = fo.Adam([{"params": [ps[0]]}, {"params": [ps[1]], "lr": 0.01}])
    ema = fo.swa_utils.AveragedModel(ps, multi_avg_fn=EMA(0.9), fused_with=opt if fused_ema else None)
    for _ in range(2):
        for p in ps:
            p.grad = rng.standard_normal(p.shape).astype(np.float32)
        opt.step()
        if not fused_ema:
            ema.update_parameters(ps)
    for p in ps:
        p.grad = rng.standard_normal(p.shape).astype(np.float32)
    return ps, opt, ema


def _snapshot(ps, opt, ema):
    return ([p.tobytes() for p in ps], [p.grad.tobytes() for p in ps],
            repr(opt.state_dict()), [a.tobytes() for a in ema.averaged], ema.n_averaged)


@pytest.mark.parametrize("grad_scale,error,match", [
    (float("inf"), ValueError, "grad_scale must be a positive finite"),
    (float("nan"), ValueError, "grad_scale must be a positive finite"),
    (0.0, ValueError, "grad_scale must be a positive finite"),
    (-2.0, ValueError, "grad_scale must be a positive finite"),
    (np.ones(2), ValueError, "grad_scale must be a number or a 0-d array"),
    ("2", TypeError, "grad_scale must be a real number"),
    (np.array("x"), TypeError, "grad_scale must be a real number"),
])
def test_bad_grad_scale_changes_nothing(grad_scale, error, match):
    ps, opt, ema = _adam_setup()
    before = _snapshot(ps, opt, ema)
    with pytest.raises(error, match=match):
        opt.step(grad_scale=grad_scale)
    assert _snapshot(ps, opt, ema) == before


@pytest.mark.parametrize("found_inf,error,match", [
    (np.zeros(3), ValueError, "found_inf must be a number or a 0-d array"),
    ("yes", TypeError, "found_inf must be a real number"),
])
def test_bad_found_inf_changes_nothing(found_inf, error, match):
    ps, opt, ema = _adam_setup()
    before = _snapshot(ps, opt, ema)
    with pytest.raises(error, match=match):
        opt.step(found_inf=found_inf)
    assert _snapshot(ps, opt, ema) == before


def test_kernel_ema_targets_are_checked():
    p, g = np.ones(4, np.float32), np.ones(4, np.float32)
    for ema, error, match in [([np.zeros(4)], TypeError, r"ema\[0\] has dtype float64"),
                              ([np.zeros(5, np.float32)], ValueError, r"ema\[0\] has shape"),
                              ([np.zeros(4, np.float32)[::-1]], ValueError, "C-contiguous"),
                              ([], ValueError, "ema has 0 entries"),
                              ([p], ValueError, "share memory")]:
        with pytest.raises(error, match=match):
            kernels.sgd([p], [g], [None], lr=0.1, weight_decay=0.0, momentum=0.0, dampening=0.0,
                        nesterov=False, maximize=False, ema=ema, ema_weight=0.1)
        assert np.all(p == 1)


def test_fused_with_errors():
    ps, opt, ema = _adam_setup()
    with pytest.raises(RuntimeError, match="do not call update_parameters"):
        ema.update_parameters(ps)
    with pytest.raises(ValueError, match="already updates an AveragedModel"):
        fo.swa_utils.AveragedModel(ps, multi_avg_fn=EMA(0.9), fused_with=opt)
    other = fo.Parameter(np.zeros(3, np.float32))
    opt2 = fo.SGD(ps, lr=0.1)
    with pytest.raises(ValueError, match="not a parameter of the optimizer"):
        fo.swa_utils.AveragedModel([ps[0], other], multi_avg_fn=EMA(0.9), fused_with=opt2)
    with pytest.raises(ValueError, match="get_ema_multi_avg_fn"):
        fo.swa_utils.AveragedModel(ps, fused_with=opt2)
    with pytest.raises(TypeError, match="elementwise fastoptim optimizer"):
        fo.swa_utils.AveragedModel(ps, multi_avg_fn=EMA(0.9), fused_with=object())
    ema.detach()
    ema.update_parameters(ps)                       # works again
    assert ema.fused_with is None


def test_clip_fused_with_errors_change_nothing():
    ps, opt, ema = _adam_setup()
    before = _snapshot(ps, opt, ema)
    with pytest.raises(ValueError, match="clip all of them or none"):
        opt.param_groups[0]["params"].append(fo.Parameter(np.ones(2, np.float32)))
        opt.param_groups[0]["params"][-1].grad = np.ones(2, np.float32)
        fo.clip_grad_norm_(ps, 1.0, fused_with=opt)
    opt.param_groups[0]["params"].pop()
    assert _snapshot(ps, opt, ema) == before and opt._armed_clip is None
    fo.clip_grad_norm_(ps, 1.0, fused_with=opt)
    with pytest.raises(RuntimeError, match="already called"):
        fo.clip_grad_norm_(ps, 1.0, fused_with=opt)
    with pytest.raises(ValueError, match="unscale the gradients first"):
        opt.step(grad_scale=2.0)
    ps[1].grad = ps[1].grad.copy()                  # a new array the coefficient was not made for
    with pytest.raises(RuntimeError, match="did not see"):
        opt.step()
    assert _snapshot(ps, opt, ema) == before
    opt.zero_grad(set_to_none=False)                # drops the armed coefficient
    assert opt._armed_clip is None
    with pytest.raises(TypeError, match="elementwise fastoptim optimizer"):
        fo.clip_grad_norm_(ps, 1.0, fused_with=object())


def test_clip_fused_with_scales_the_gradients_the_optimizer_does_not_own():
    rng = np.random.default_rng(2)
    data = [rng.standard_normal(s).astype(np.float32) for s in (5, 5, 3)]
    grads = [rng.standard_normal(a.shape).astype(np.float32) * 10 for a in data]
    runs = []
    for fused in (False, True):
        ps = [fo.Parameter(a.copy()) for a in data]
        for p, g in zip(ps, grads):
            p.grad = g.copy()
        opt = fo.SGD(ps[:2], lr=0.1, momentum=0.9)
        fo.clip_grad_norm_(ps, 1.0, **({"fused_with": opt} if fused else {}))
        opt.step()
        runs.append(ps)
    (a0, a1, a2), (b0, b1, b2) = runs
    assert b2.grad.tobytes() == a2.grad.tobytes()            # not the optimizer's: scaled in memory
    assert b0.grad.tobytes() == grads[0].tobytes() != a0.grad.tobytes()
    assert a0.tobytes() == b0.tobytes() and a1.tobytes() == b1.tobytes()


@pytest.mark.parametrize("name", [n for n, i in OPTIMIZERS.items() if i.kernel])
def test_every_functional_form_takes_grad_scale_and_found_inf(name):
    import inspect

    sig = inspect.signature(OPTIMIZERS[name].functional)
    for arg in ("grad_scale", "found_inf"):
        assert sig.parameters[arg].kind is inspect.Parameter.KEYWORD_ONLY
        assert sig.parameters[arg].default is None


def _functional_cases():
    from fastoptim import functional as F

    def sgd(p, g, **kw):
        F.sgd(p, g, [None], weight_decay=0.01, momentum=0.9, lr=0.1, dampening=0.0, nesterov=True,
              maximize=False, **kw)

    def adamw(p, g, state=None, **kw):
        n = p[0].shape
        state = state if state is not None else ([np.zeros(n, p[0].dtype)], [np.zeros(n, p[0].dtype)], [0])
        F.adamw(p, g, state[0], state[1], [], state[2], amsgrad=False, beta1=0.9, beta2=0.999, lr=0.1,
                weight_decay=0.01, eps=1e-8, maximize=False, **kw)
        return state

    def adagrad(p, g, state=None, **kw):
        state = state if state is not None else ([np.zeros(p[0].shape, p[0].dtype)], [0])
        F.adagrad(p, g, state[0], state[1], lr=0.1, weight_decay=0.0, lr_decay=0.0, eps=1e-10,
                  maximize=False, **kw)
        return state

    return [("sgd", sgd), ("adamw", adamw), ("adagrad", adagrad)]


@pytest.mark.parametrize("name,step", _functional_cases(), ids=lambda x: x if isinstance(x, str) else "")
def test_functional_grad_scale_and_found_inf(name, step):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(37).astype(np.float32)
    g = rng.standard_normal(37).astype(np.float32) * 96
    a, b = [x.copy()], [x.copy()]
    step(a, [g / np.float32(3.0)])
    step(b, [g], grad_scale=np.array(3.0, np.float32))
    assert a[0].tobytes() == b[0].tobytes()
    c = [x.copy()]
    state = step(c, [g], found_inf=np.array(1.0, np.float32))
    assert c[0].tobytes() == x.tobytes()
    if state is not None:
        assert state[-1] == [0] and not np.any(state[0][0])
    with pytest.raises(ValueError, match="grad_scale must be a positive finite"):
        step(c, [g], grad_scale=0.0)
    assert c[0].tobytes() == x.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_ema_with_none_entries_and_grad_mul(dtype, threads):
    """The kernel level: ``ema`` entries may be None (those params get no EMA update), the EMA
    target is lerped from the new param exactly as ``_train_kernels.lerp`` after the step, and
    ``grad_mul`` is the multiplication of the gradient in memory."""
    from fastoptim import _train_kernels

    rng = np.random.default_rng(7)
    shapes = [(3000,), (17,), (2500,)]
    x = [rng.standard_normal(s).astype(dtype) for s in shapes]
    g = [rng.standard_normal(s).astype(dtype) for s in shapes]
    e = [rng.standard_normal(s).astype(dtype) for s in shapes]
    for weight in (0.001, 0.7):
        a, b = [v.copy() for v in x], [v.copy() for v in x]
        ea, eb = [v.copy() for v in e], [v.copy() for v in e]
        kw = dict(lr=0.1, weight_decay=0.01, momentum=0.0, dampening=0.0, nesterov=False, maximize=False)
        kernels.sgd(a, [v * dtype(0.37) for v in g], [None] * 3, **kw)
        _train_kernels.lerp([ea[0], ea[2]], [a[0], a[2]], weight, weight)
        kernels.sgd(b, g, [None] * 3, grad_mul=0.37, ema=[eb[0], None, eb[2]], ema_weight=weight, **kw)
        assert all(u.tobytes() == v.tobytes() for u, v in zip(a, b))
        assert all(u.tobytes() == v.tobytes() for u, v in zip(ea, eb))
        assert eb[1].tobytes() == e[1].tobytes()
