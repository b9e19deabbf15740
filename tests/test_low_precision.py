"""Low-precision state and master weights (docs/low_precision.rst).

* bfloat16/float16 state, every registry optimizer and configuration: bitwise equal to the float32
  optimizer whose state is rounded to the low-precision dtype (round to nearest even, as
  ml_dtypes/NumPy round) when it is created and after every step: the math is float32, only the
  stored state is rounded.
* float16/bfloat16 params through a float32 master copy: the master bitwise equal to the float32
  optimizer run on the upcast param and gradients, the param its rounding.
* stochastic rounding: unbiased, deterministic, the same bits for 1 and 2 threads.
* state_dict / load_state_dict, fo.save / fo.load, interop with torch: dtypes kept; refusals.
"""
import importlib

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import _dispatch
from fastoptim._dispatch import kernels
from fastoptim.optim.registry import OPTIMIZERS

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
LOW = {"bfloat16": BF16, "float16": F16}
INFOS = [info for info in OPTIMIZERS.values() if info.configs]
CONFIGS = [c for info in INFOS for c in info.configs]
STEPS = 6


def _variants():
    """Every kernel variant this CPU runs (float16 conversions: F16C on v3/v4, bit routine on
    the baseline; they must give the same bits)."""
    out = []
    for name in _dispatch._candidates():
        try:
            out.append(importlib.import_module(f"fastoptim._kernels_{name}"))
        except ImportError:
            pass
    return out


VARIANTS = _variants()


def bits(a):
    a = np.asarray(a)
    return a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def rounded(a, dtype):
    """``a`` rounded to ``dtype`` and back to float32 (ml_dtypes/NumPy: round to nearest even)."""
    return np.asarray(a, np.float32).astype(dtype).astype(np.float32)


def grads_for(rng, shapes, dtype=np.float32):
    return [rng.standard_normal(s).astype(np.float32).astype(dtype) for s in shapes]


SHAPES = [(37,), (8, 9)]


def make_params(rng, dtype=np.float32):
    return [fo.Parameter(rng.standard_normal(s).astype(np.float32).astype(dtype)) for s in SHAPES]


def round_state(opt, dtype):
    info = opt._info
    for st in opt.state.values():
        for key in info.buffers:
            if key in st:
                st[key][...] = rounded(st[key], dtype)


def rounding_reference(config, params, dtype):
    """The float32 optimizer of ``config`` whose state is rounded to ``dtype`` when it is created
    (``_new_buffer``, or eagerly by the constructor) and after every step."""
    ref = config.make(params)
    new_buffer = ref._new_buffer

    def rounded_new_buffer(key, param, group):
        value = new_buffer(key, param, group)
        if key in ref._info.buffers:
            value[...] = rounded(value, dtype)
        return value

    ref._new_buffer = rounded_new_buffer
    round_state(ref, dtype)
    return ref


@pytest.mark.parametrize("name", ["bfloat16", "float16"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.id)
def test_low_precision_state_is_float32_math_with_rounded_state(config, name):
    dtype = LOW[name]
    rng = np.random.default_rng(0)
    params = make_params(rng)
    ref_params = [fo.Parameter(p.copy()) for p in params]
    opt = config.make(params, state_dtype=name)
    ref = rounding_reference(config, ref_params, dtype)
    info = opt._info
    for step in range(STEPS):
        for p, q, g in zip(params, ref_params, grads_for(rng, SHAPES)):
            p.grad, q.grad = g, g.copy()
        opt.step()
        ref.step()
        round_state(ref, dtype)
        for p, q in zip(params, ref_params):
            assert np.array_equal(bits(p), bits(q)), (config.id, step)
            state, ref_state = opt.state[p], ref.state[q]
            assert list(state) == list(ref_state)
            for key in info.buffers:
                if key in state:
                    assert state[key].dtype == dtype, key
                    assert np.array_equal(bits(state[key]), bits(ref_state[key].astype(dtype))), \
                        (config.id, step, key)


@pytest.mark.parametrize("state", ["float32", "same"])
@pytest.mark.parametrize("name", ["bfloat16", "float16"])
@pytest.mark.parametrize("info", INFOS, ids=lambda i: i.name)
def test_master_weights_are_the_float32_step_of_the_upcast_param(info, name, state):
    dtype = LOW[name]
    state_dtype = name if state == "same" else None
    for config in info.configs:
        rng = np.random.default_rng(1)
        params = make_params(rng, dtype)
        masters = [fo.Parameter(p.astype(np.float32)) for p in params]
        opt = config.make(params, state_dtype=state_dtype)
        ref = rounding_reference(config, masters, dtype) if state_dtype else config.make(masters)
        for step in range(STEPS):
            for p, q, g in zip(params, masters, grads_for(rng, SHAPES, dtype)):
                p.grad, q.grad = g, g.astype(np.float32)
            opt.step()
            ref.step()
            if state_dtype:
                round_state(ref, dtype)
            for p, q in zip(params, masters):
                st = opt.state[p]
                assert st["master_param"].dtype == np.float32 and p.dtype == dtype
                assert np.array_equal(bits(st["master_param"]), bits(q)), (config.id, step)
                assert np.array_equal(bits(p), bits(q.astype(dtype))), (config.id, step)
                for key in info.buffers:
                    if key in st:
                        assert st[key].dtype == (dtype if state_dtype else np.float32)
                        assert np.array_equal(bits(st[key]), bits(ref.state[q][key].astype(st[key].dtype)))


# ------------------------------------------------------------------ conversions, exhaustively


def _store_through_sgd(values, state_dtype, seed=None, module=kernels):
    """``values`` (float32) stored into a new ``state_dtype`` momentum buffer by the SGD kernel
    (its first momentum step stores the gradient itself)."""
    p = np.zeros(values.shape, np.float32)
    bufs = [None]
    module.sgd([p], [values], bufs, lr=0.0, weight_decay=0.0, momentum=0.9, dampening=0.0,
                nesterov=False, maximize=False, state_dtype=state_dtype, stochastic_rounding=seed)
    return bufs[0]


@pytest.mark.parametrize("module", VARIANTS, ids=lambda m: m.__name__.split("_kernels_")[1])
@pytest.mark.parametrize("name", ["bfloat16", "float16"])
def test_round_to_nearest_even_matches_ml_dtypes_and_numpy_for_every_pattern(name, module):
    """Every float32 whose upper 16 bits vary, with the low bits at the rounding boundaries."""
    dtype = LOW[name]
    hi = np.arange(1 << 16, dtype=np.uint32) << 16
    lows = np.array([0, 1, 0x0FFF, 0x1000, 0x1001, 0x7FFF, 0x8000, 0x8001, 0xFFFF], np.uint32)
    u = (hi[:, None] | lows[None, :]).ravel()
    x = u.view(np.float32)
    finite = np.isfinite(x)
    got = _store_through_sgd(x, name, module=module)
    assert got.dtype == dtype
    with np.errstate(over="ignore"):
        assert np.array_equal(bits(got)[finite], bits(x[finite].astype(dtype)))
    assert np.isnan(got.astype(np.float32)[np.isnan(x)]).all()
    # loading back: exact for every 16-bit pattern (the momentum step of lr 0 reads the buffer)
    every = np.arange(1 << 16, dtype=np.uint16).view(dtype)
    buf = [every.copy()]
    p = np.zeros(every.shape, np.float32)
    g = np.zeros(every.shape, np.float32)
    module.sgd([p], [g], buf, lr=0.0, weight_decay=0.0, momentum=1.0, dampening=1.0,
                nesterov=False, maximize=False, state_dtype=name)
    back = every.astype(np.float32)
    ok = np.isfinite(back) & (bits(every) != 0x8000)   # fma(0, 0, -0.0) is +0.0 in IEEE arithmetic
    assert np.array_equal(bits(buf[0])[ok], bits(every)[ok])


@pytest.mark.parametrize("module", VARIANTS, ids=lambda m: m.__name__.split("_kernels_")[1])
@pytest.mark.parametrize("name", ["bfloat16", "float16"])
@pytest.mark.parametrize("value", [1.0 + 2.0 ** -12, -3.3, 1e-3, 1.3 * 2.0 ** -20, 60001.0])
def test_stochastic_rounding_is_unbiased(name, value, module):
    """Many stochastic roundings of one value: only its two neighbours, their mean the value."""
    dtype = LOW[name]
    x = np.float32(value)
    n = 200_000
    got = _store_through_sgd(np.full(n, x, np.float32), name, seed=12345, module=module)
    values = np.unique(got.astype(np.float64))
    assert len(values) == 2, values
    down, up = values
    assert down < float(x) < up
    assert abs(int(bits(np.array(up, dtype))) - int(bits(np.array(down, dtype)))) == 1  # neighbours
    frac = (float(x) - down) / (up - down)
    sigma = np.sqrt(frac * (1 - frac) / n) * (up - down)
    assert abs(got.astype(np.float64).mean() - float(x)) <= 5 * sigma, (got.mean(), float(x), sigma)
    # the test can fail: round to nearest is biased by the whole distance to the nearer neighbour
    rne = float(_store_through_sgd(np.full(4, x, np.float32), name, module=module)[0].astype(np.float32))
    assert rne in (down, up) and abs(rne - float(x)) > 20 * sigma


def test_stochastic_rounding_is_deterministic_and_seeded():
    x = np.random.default_rng(3).standard_normal(50_000).astype(np.float32)
    a = _store_through_sgd(x, "bfloat16", seed=7)
    b = _store_through_sgd(x, "bfloat16", seed=7)
    c = _store_through_sgd(x, "bfloat16", seed=8)
    assert np.array_equal(bits(a), bits(b))
    for module in VARIANTS:          # the same bits on every variant, both dtypes
        for name in ("bfloat16", "float16"):
            assert np.array_equal(bits(_store_through_sgd(x, name, 7, module)),
                                  bits(_store_through_sgd(x, name, 7, kernels)))
    assert not np.array_equal(bits(a), bits(c))
    # every stored value is one of the two neighbours (never further than one ulp)
    lo = x.astype(np.float32).view(np.uint32) & 0xFFFF0000
    assert np.all((bits(a).astype(np.uint32) << 16 == lo) | (bits(a).astype(np.uint32) << 16 == lo + 0x10000))


@pytest.mark.parametrize("name", ["bfloat16", "float16"])
@pytest.mark.parametrize("optimizer", ["Adam", "SGD", "Lion", "Rprop"])
def test_same_bits_for_one_and_two_threads(optimizer, name, threads):
    info = OPTIMIZERS[optimizer]
    config = info.default
    results = []
    old = kernels.get_min_elements_per_thread()
    try:
        for nthreads in (1, 2):
            fo.set_num_threads(nthreads)
            kernels.set_min_elements_per_thread(1 if nthreads > 1 else old)
            rng = np.random.default_rng(5)
            params = [fo.Parameter(rng.standard_normal(n).astype(np.float32)) for n in (1001, 4099)]
            lp = [fo.Parameter(rng.standard_normal(777).astype(np.float32).astype(LOW[name]))]
            opt = config.make([{"params": params}, {"params": lp}], state_dtype=name,
                              stochastic_rounding=99)
            for _ in range(4):
                for p in params + lp:
                    p.grad = rng.standard_normal(p.shape).astype(np.float32).astype(p.dtype)
                opt.step()
            results.append([bits(p).copy() for p in params + lp]
                           + [bits(v).copy() for p in params + lp for v in opt.state[p].values()
                              if isinstance(v, np.ndarray)])
    finally:
        kernels.set_min_elements_per_thread(old)
    for a, b in zip(*results):
        assert np.array_equal(a, b)


def test_stochastic_rounding_draws_new_bits_each_step_without_step_counts():
    """SGD and Lion keep no step count: the optimizer's step counter varies their random bits."""
    p = fo.Parameter(np.zeros(4096, np.float32))
    opt = fo.SGD([p], lr=0.0, momentum=0.5, state_dtype="bfloat16", stochastic_rounding=1)
    p.grad = np.full(4096, 1.0 + 2 ** -9, np.float32)   # a quarter bfloat16 ulp above 1
    opt.step()                                         # the first momentum step stores the grad
    first = bits(opt.state[p]["momentum_buffer"]).copy()
    opt.state[p]["momentum_buffer"][...] = 0           # so that the second step stores it again
    opt.step()
    second = bits(opt.state[p]["momentum_buffer"])
    assert set(np.unique(first)) == set(np.unique(second)) and len(np.unique(first)) == 2
    assert not np.array_equal(first, second)


# ------------------------------------------------------------------ state dicts and files


def _trained(dtype=np.float32, state_dtype="bfloat16", optimizer="Adam", steps=3, seed=0):
    rng = np.random.default_rng(seed)
    params = make_params(rng, dtype)
    opt = OPTIMIZERS[optimizer].default.make(params, state_dtype=state_dtype)
    for _ in range(steps):
        for p in params:
            p.grad = rng.standard_normal(p.shape).astype(np.float32).astype(dtype)
        opt.step()
    return params, opt, rng


def _continue(params, opt, rng, steps=3):
    for _ in range(steps):
        for p in params:
            p.grad = rng.standard_normal(p.shape).astype(np.float32).astype(p.dtype)
        opt.step()
    return [bits(p).copy() for p in params]


@pytest.mark.parametrize("case", ["bf16-state", "f16-state", "bf16-params", "f16-params-f16-state"])
@pytest.mark.parametrize("how", ["state_dict", "fo.save", "fo.save-torch", "interop"])
def test_checkpoints_keep_the_dtypes_and_continue_bit_for_bit(case, how, tmp_path):
    dtype, state_dtype = {"bf16-state": (np.float32, "bfloat16"), "f16-state": (np.float32, "float16"),
                          "bf16-params": (BF16, None), "f16-params-f16-state": (F16, "float16")}[case]
    params, opt, rng = _trained(dtype, state_dtype)
    sd = opt.state_dict()
    if how == "fo.save":
        fo.save(sd, tmp_path / "ckpt")
        sd = fo.load(tmp_path / "ckpt")
    elif how == "fo.save-torch":
        fo.save(sd, tmp_path / "ckpt.pt", format="torch")
        sd = fo.load(tmp_path / "ckpt.pt")
    elif how == "interop":
        torch = pytest.importorskip("torch")
        tsd = fo.interop.to_torch(sd)
        for st in tsd["state"].values():
            for key, value in st.items():
                if key in ("exp_avg", "exp_avg_sq"):
                    assert value.dtype == {None: torch.float32, "bfloat16": torch.bfloat16,
                                           "float16": torch.float16}[state_dtype]
        sd = fo.interop.from_torch(tsd)
    for index, st in opt.state_dict()["state"].items():
        for key, value in st.items():
            if isinstance(value, np.ndarray):
                assert sd["state"][index][key].dtype == value.dtype, (key, how)
    twins = [fo.Parameter(p.copy()) for p in params]
    other = OPTIMIZERS["Adam"].default.make(twins, state_dtype=state_dtype)
    other.load_state_dict(sd)
    expected = _continue(params, opt, np.random.default_rng(42))
    got = _continue(twins, other, np.random.default_rng(42))
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))


def test_loaded_state_with_another_dtype_is_refused_and_nothing_changes():
    params, opt, _ = _trained(np.float32, "bfloat16")
    sd = opt.state_dict()
    before = {k: bits(v).copy() for k, v in opt.state[params[0]].items() if isinstance(v, np.ndarray)}
    bad = opt.state_dict()
    bad["state"][0]["exp_avg"] = bad["state"][0]["exp_avg"].astype(np.float32)
    with pytest.raises(TypeError, match="state_dtype is bfloat16.*never casts"):
        opt.load_state_dict(bad)
    after = {k: bits(v) for k, v in opt.state[params[0]].items() if isinstance(v, np.ndarray)}
    assert all(np.array_equal(before[k], after[k]) for k in before)
    # a group without state_dtype takes state as before: cast to the default state dtype (exact)
    plain = OPTIMIZERS["Adam"].default.make([fo.Parameter(p.copy()) for p in params])
    sd["param_groups"][0].pop("state_dtype")
    plain.load_state_dict(sd)
    assert "state_dtype" not in plain.param_groups[0]
    assert plain.state[plain.param_groups[0]["params"][0]]["exp_avg"].dtype == np.float32


def test_master_copy_is_loaded_as_float32_only():
    params, opt, _ = _trained(BF16, None)
    sd = opt.state_dict()
    assert sd["state"][0]["master_param"].dtype == np.float32
    sd["state"][0]["master_param"] = sd["state"][0]["master_param"].astype(np.float64)
    with pytest.raises(TypeError, match="master copy is float32"):
        opt.load_state_dict(sd)
    f32 = [fo.Parameter(np.zeros(s, np.float32)) for s in SHAPES]
    other = fo.Adam(f32)
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="unexpected key"):
        other.load_state_dict(sd)


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize("bad", ["bf16", "float64", np.int16, 3, "int8"])
def test_bad_state_dtype_is_refused(bad):
    p = fo.Parameter(np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="state_dtype must be"):
        fo.Adam([p], state_dtype=bad)


@pytest.mark.parametrize("bad", [-1, 1.5, "yes", None, 2 ** 64])
def test_bad_stochastic_rounding_is_refused(bad):
    p = fo.Parameter(np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="stochastic_rounding must be"):
        fo.Adam([p], stochastic_rounding=bad)


def test_float64_params_keep_float64_state():
    p = fo.Parameter(np.zeros(3))
    with pytest.raises(TypeError, match="float64, whose state is float64 only"):
        fo.Adam([p], state_dtype="bfloat16")
    q = fo.Parameter(np.zeros(3, np.float32))
    opt = fo.Adam([q], state_dtype="bfloat16")
    with pytest.raises(TypeError, match="float64, whose state is float64 only"):
        opt.add_param_group({"params": [p]})
    assert len(opt.param_groups) == 1


def test_low_precision_param_state_is_float32_or_its_own_dtype():
    p = fo.Parameter(np.zeros(3, BF16))
    with pytest.raises(TypeError, match="its state may be float32 or bfloat16, not float16"):
        fo.Adam([p], state_dtype="float16")


def test_state_dtype_as_dtype_objects_and_group_key():
    p = fo.Parameter(np.zeros(3, np.float32))
    q = fo.Parameter(np.zeros(3, np.float32))
    opt = fo.Adam([{"params": [p], "state_dtype": ml_dtypes.bfloat16}, {"params": [q]}],
                  state_dtype=np.float16)
    assert [g["state_dtype"] for g in opt.param_groups] == ["bfloat16", "float16"]
    p.grad = q.grad = np.ones(3, np.float32)
    opt.step()
    assert opt.state[p]["exp_avg"].dtype == BF16 and opt.state[q]["exp_avg"].dtype == F16
    plain = fo.Adam([fo.Parameter(np.zeros(3, np.float32))])
    assert "state_dtype" not in plain.param_groups[0]   # torch's group keys when unused


def test_kernel_refusals_change_nothing():
    p = np.ones(4, BF16)
    g = np.ones(4, BF16)
    m, v = [np.zeros(4, np.float32)], [np.zeros(4, np.float32)]
    kw = dict(amsgrad=False, beta1=0.9, beta2=0.999, lr=0.1, weight_decay=0.0, eps=1e-8, maximize=False)
    steps = [0]
    with pytest.raises(TypeError, match="float32 master copy"):
        kernels.adam([p], [g], m, v, [], steps, **kw)
    with pytest.raises(TypeError, match="master_params\\[0\\] must be a float32"):
        kernels.adam([p], [g], m, v, [], steps, master_params=[np.ones(4, np.float64)], **kw)
    with pytest.raises(TypeError, match="state dtype of params\\[0\\].*is bfloat16"):
        kernels.adam([p], [g], m, v, [], steps, master_params=[np.ones(4, np.float32)],
                     state_dtype="bfloat16", **kw)
    f = [np.ones(4, np.float32)]
    with pytest.raises(ValueError, match="master_params\\[0\\] must be None"):
        kernels.adam(f, [np.ones(4, np.float32)], m, v, [], steps, master_params=[np.ones(4, np.float32)], **kw)
    with pytest.raises(ValueError, match="share memory"):
        kernels.adam([p], [g], m, v, [], steps, master_params=m, **kw)
    assert steps == [0] and np.all(p.astype(np.float32) == 1) and not m[0].any() and not v[0].any()


def test_bytes_per_element_follow_the_state_dtype():
    info = OPTIMIZERS["Adam"]
    group = {"amsgrad": False}
    assert info.bytes_per_element(4, group) == 28
    assert info.bytes_per_element(4, {**group, "state_dtype": "bfloat16"}) == 4 * 3 + 2 * 2 * 2
    # bfloat16 params + float32 master and state: grad 2, param 2 (written), master 8, state 16
    assert info.bytes_per_element(2, group) == 2 + 2 + 8 + 16
    assert info.bytes_per_element(2, {**group, "state_dtype": "bfloat16"}) == 2 + 2 + 8 + 8


@pytest.mark.parametrize("name", ["LBFGS", "Adafactor", "Muon"])
def test_optimizers_without_a_kernel_refuse_low_precision_params(name):
    p = fo.Parameter(np.zeros((4, 4), np.float16))
    with pytest.raises(TypeError, match="float32 and float64 Parameters only"):
        getattr(fo, name)([p])


@pytest.mark.parametrize("how", ["grad_scale", "clip", "ema"])
def test_the_fused_step_is_refused_for_low_precision_groups_and_changes_nothing(how):
    """grad_scale, clip_grad_norm_(fused_with=) and AveragedModel(fused_with=) work on
    float32/float64 groups only: a low-precision group is refused before anything changes."""
    params, opt, rng = _trained()
    kwargs = {}
    if how == "ema":  # the first update copies (outside the kernel); the second is refused
        fo.swa_utils.AveragedModel(params, multi_avg_fn=fo.swa_utils.get_ema_multi_avg_fn(0.9),
                                   fused_with=opt)
        _continue(params, opt, rng, steps=1)
    before = [p.copy() for p in params]
    state = {k: v.copy() for k, v in opt.state[params[0]].items() if isinstance(v, np.ndarray)}
    steps = opt._step_count
    for p in params:
        p.grad = rng.standard_normal(p.shape).astype(p.dtype)
    if how == "grad_scale":
        kwargs["grad_scale"] = 2.0
    elif how == "clip":
        fo.clip_grad_norm_(params, 1e-3, fused_with=opt)
    with pytest.raises(ValueError, match="float16/bfloat16 state or params"):
        opt.step(**kwargs)
    assert all(np.array_equal(a, b) for a, b in zip(params, before))
    assert all(np.array_equal(opt.state[params[0]][k], v) for k, v in state.items())
    assert opt._step_count == steps


def test_the_fused_kernel_arguments_are_refused_for_low_precision_arrays():
    p = np.ones(8, np.float32)
    g = np.full(8, 0.5, np.float32)
    m, v = np.zeros(8, BF16), np.zeros(8, BF16)
    steps = [0]
    args = ([p], [g], [m], [v], [None], steps)
    kw = dict(amsgrad=False, beta1=0.9, beta2=0.999, lr=0.1, weight_decay=0.0, eps=1e-8,
              maximize=False, state_dtype="bfloat16")
    with pytest.raises(ValueError, match="float16/bfloat16 state or params"):
        kernels.adam(*args, grad_mul=0.5, **kw)
    assert steps == [0] and np.all(p == 1) and not m.view(np.uint16).any()
    kernels.adam(*args, grad_mul=1.0, **kw)   # the default factor: the plain low-precision step
    assert steps == [1] and np.all(p < 1)
