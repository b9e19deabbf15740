"""The kernels of the elementwise optimizers added in round 2 against live torch 2.13 (and, without
torch, against golden data recorded from it: tests/golden/make_elementwise_golden.py): seeded random configurations, float32 and float64, many small arrays, 150+ steps,
1 and 2 threads bitwise equal.

fastoptim runs torch 2.13's CPU single-tensor op order, rounding for rounding. Each case runs
fastoptim's functional form and torch's functional forms from the same start on the same gradients
and must be bitwise equal to torch's single-tensor path. Where the update takes the square root of
an array that holds where fastoptim takes torch's square root (an Intel CPU with AVX-512:
``fastoptim._dispatch.TORCH_SQRT``); with the IEEE square root (elsewhere, or FASTOPTIM_SQRT=ieee)
it is compared with that path given the IEEE square root too (torch's own is not; ``ieee_sqrt``).
``python tests/test_kernels_elementwise.py [name ...]`` prints the deviation from live torch's
single-tensor path next to the deviation of torch's foreach path from it.
"""
import contextlib
import importlib
import os

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import functional as F
from fastoptim import _dispatch
from fastoptim._dispatch import kernels

from reference import ulp_distance

try:
    import torch
except ImportError:     # the golden-data test still runs
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")
GOLDEN_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "elementwise.npz")
GOLDEN = dict(steps=30, n_arrays=6, last=131)      # the golden data's trajectories (small file)

STEPS = 150


def _torch_fn(name):
    """torch's functional form ``torch.optim.<name>.<name>`` (the module attribute is shadowed)."""
    return getattr(importlib.import_module(f"torch.optim.{name}"), name)


@contextlib.contextmanager
def ieee_sqrt():
    """torch's CPU ``sqrt`` (MKL VML) is not correctly rounded: it is one ulp off the IEEE square
    root for about 8% of float32 and 1% of float64 inputs, in both directions, and its foreach
    path uses the same routine. Inside this context torch's tensors use the IEEE square root
    (NumPy's), so torch's op order can be compared with fastoptim's bit for bit."""
    saved = torch.Tensor.sqrt, torch.Tensor.sqrt_, torch.sqrt

    def sqrt(t):
        return torch.from_numpy(np.sqrt(t.numpy()))

    def sqrt_(t):
        return t.copy_(sqrt(t))

    torch.Tensor.sqrt, torch.Tensor.sqrt_, torch.sqrt = sqrt, sqrt_, sqrt
    try:
        yield
    finally:
        torch.Tensor.sqrt, torch.Tensor.sqrt_, torch.sqrt = saved


def _pick(rng, *choices):
    return choices[int(rng.integers(len(choices)))]


class Case:
    """One optimizer: random configs, its state lists, and the fastoptim and torch calls."""

    def __init__(self, name, config, lists, fo_call, torch_call, sqrt=True, init=lambda cfg: {}, steps=True,
                 scalars=None):
        self.name, self.config, self.lists, self.init = name, config, lists, init
        self.scalars = scalars or {}    # per-param 0-d scalar state: {list name: start value(cfg)}, float32
        self.steps = steps      # keeps step counts
        self.fo_call, self.torch_call = fo_call, torch_call
        self.sqrt = sqrt        # the update takes the square root of an array


def _torch_lion(params, grads, exp_avgs, *, lr, beta1, beta2, weight_decay, maximize):
    """Lion in torch ops (torch has none): the reference implementation's order (lion-pytorch)."""
    for p, g, m in zip(params, grads, exp_avgs):
        g = -g if maximize else g
        p.mul_(1 - lr * weight_decay)
        update = m.mul(beta1).add(g, alpha=1 - beta1).sign_()
        p.add_(update, alpha=-lr)
        m.mul_(beta2).add_(g, alpha=1 - beta2)


def _rmsprop_lists(cfg):
    return {"square_avgs": True, "grad_avgs": cfg["centered"], "momentum_buffer_list": cfg["momentum"] > 0}


CASES = {
    "rmsprop": Case(
        "rmsprop",
        lambda rng: dict(lr=_pick(rng, 1e-3, 1e-2), alpha=_pick(rng, 0.99, 0.9, 0.3, 0.7),
                         eps=_pick(rng, 1e-8, 1e-3), weight_decay=_pick(rng, 0.0, 0.01),
                         momentum=_pick(rng, 0.0, 0.9), centered=_pick(rng, False, True),
                         maximize=_pick(rng, False, True)),
        _rmsprop_lists,
        lambda p, g, st, steps, cfg: F.rmsprop(p, g, st["square_avgs"], st["grad_avgs"],
                                               st["momentum_buffer_list"], steps, **cfg),
        lambda p, g, st, steps, cfg, foreach: _torch_fn("rmsprop")(
            p, g, st["square_avgs"], st["grad_avgs"], st["momentum_buffer_list"], steps,
            foreach=foreach, **cfg),
    ),
    "adagrad": Case(
        "adagrad",
        lambda rng: dict(lr=_pick(rng, 1e-2, 0.1), weight_decay=_pick(rng, 0.0, 0.01),
                         lr_decay=_pick(rng, 0.0, 1e-3), eps=_pick(rng, 1e-10, 1e-6),
                         maximize=_pick(rng, False, True)),
        lambda cfg: {"state_sums": True},
        lambda p, g, st, steps, cfg: F.adagrad(p, g, st["state_sums"], steps, **cfg),
        lambda p, g, st, steps, cfg, foreach: _torch_fn("adagrad")(
            p, g, st["state_sums"], steps, foreach=foreach, **cfg),
    ),
    "adadelta": Case(
        "adadelta",
        lambda rng: dict(lr=_pick(rng, 1.0, 0.1), rho=_pick(rng, 0.9, 0.5), eps=_pick(rng, 1e-6, 1e-3),
                         weight_decay=_pick(rng, 0.0, 0.01), maximize=_pick(rng, False, True)),
        lambda cfg: {"square_avgs": True, "acc_deltas": True},
        lambda p, g, st, steps, cfg: F.adadelta(p, g, st["square_avgs"], st["acc_deltas"], steps, **cfg),
        lambda p, g, st, steps, cfg, foreach: _torch_fn("adadelta")(
            p, g, st["square_avgs"], st["acc_deltas"], steps, foreach=foreach, **cfg),
    ),
    "adamax": Case(
        "adamax",
        lambda rng: dict(lr=_pick(rng, 2e-3, 1e-2), beta1=_pick(rng, 0.9, 0.3, 0.6), beta2=_pick(rng, 0.999, 0.9),
                         eps=_pick(rng, 1e-8, 1e-3), weight_decay=_pick(rng, 0.0, 0.01),
                         maximize=_pick(rng, False, True)),
        lambda cfg: {"exp_avgs": True, "exp_infs": True},
        lambda p, g, st, steps, cfg: F.adamax(p, g, st["exp_avgs"], st["exp_infs"], steps, **cfg),
        lambda p, g, st, steps, cfg, foreach: _torch_fn("adamax")(
            p, g, st["exp_avgs"], st["exp_infs"], steps, foreach=foreach, **cfg),
        sqrt=False,
    ),
    "rprop": Case(
        "rprop",
        lambda rng: dict(step_size_min=_pick(rng, 1e-6, 1e-3), step_size_max=_pick(rng, 50.0, 0.05),
                         etaminus=_pick(rng, 0.5, 0.3), etaplus=_pick(rng, 1.2, 1.5),
                         maximize=_pick(rng, False, True), lr=_pick(rng, 1e-2, 1e-3)),
        lambda cfg: {"prevs": True, "step_sizes": True},
        lambda p, g, st, steps, cfg: F.rprop(p, g, st["prevs"], st["step_sizes"], steps,
                                             **{k: v for k, v in cfg.items() if k != "lr"}),
        lambda p, g, st, steps, cfg, foreach: _torch_fn("rprop")(
            p, g, st["prevs"], st["step_sizes"], steps, foreach=foreach,
            **{k: v for k, v in cfg.items() if k != "lr"}),
        sqrt=False,
        init=lambda cfg: {"step_sizes": cfg["lr"]},      # torch: step_size = full_like(grad, lr)
    ),
    "radam": Case(
        "radam",
        lambda rng: dict(lr=_pick(rng, 1e-3, 1e-2), beta1=_pick(rng, 0.9, 0.3, 0.6), beta2=_pick(rng, 0.999, 0.9, 0.99),
                         eps=_pick(rng, 1e-8, 1e-3), weight_decay=_pick(rng, 0.0, 0.01),
                         decoupled_weight_decay=_pick(rng, False, True), maximize=_pick(rng, False, True)),
        lambda cfg: {"exp_avgs": True, "exp_avg_sqs": True},
        lambda p, g, st, steps, cfg: F.radam(p, g, st["exp_avgs"], st["exp_avg_sqs"], steps, **cfg),
        lambda p, g, st, steps, cfg, foreach: _torch_fn("radam")(
            p, g, st["exp_avgs"], st["exp_avg_sqs"], steps, foreach=foreach, **cfg),
    ),
    "nadam": Case(
        "nadam",
        lambda rng: dict(lr=_pick(rng, 2e-3, 1e-2), beta1=_pick(rng, 0.9, 0.3, 0.6), beta2=_pick(rng, 0.999, 0.9),
                         eps=_pick(rng, 1e-8, 1e-3), weight_decay=_pick(rng, 0.0, 0.01),
                         momentum_decay=_pick(rng, 4e-3, 0.1), decoupled_weight_decay=_pick(rng, False, True),
                         maximize=_pick(rng, False, True)),
        lambda cfg: {"exp_avgs": True, "exp_avg_sqs": True},
        lambda p, g, st, steps, cfg: F.nadam(p, g, st["exp_avgs"], st["exp_avg_sqs"], st["mu_products"], steps,
                                             **cfg),
        lambda p, g, st, steps, cfg, foreach: _torch_fn("nadam")(
            p, g, st["exp_avgs"], st["exp_avg_sqs"], st["mu_products"], steps, foreach=foreach, **cfg),
        scalars={"mu_products": lambda cfg: 1.0},
    ),
    "asgd": Case(
        "asgd",
        lambda rng: dict(lr=_pick(rng, 1e-2, 0.1), lambd=_pick(rng, 1e-4, 1e-2), alpha=_pick(rng, 0.75, 0.5),
                         t0=_pick(rng, 1e6, 20.0, 0.0), weight_decay=_pick(rng, 0.0, 0.01),
                         maximize=_pick(rng, False, True)),
        lambda cfg: {"axs": True},
        lambda p, g, st, steps, cfg: F.asgd(p, g, st["axs"], st["mus"], st["etas"], steps, **cfg),
        lambda p, g, st, steps, cfg, foreach: _torch_fn("asgd")(
            p, g, st["axs"], st["mus"], st["etas"], steps, foreach=foreach, **cfg),
        sqrt=False,
        scalars={"mus": lambda cfg: 1.0, "etas": lambda cfg: cfg["lr"]},
    ),
    "lion": Case(
        "lion",
        lambda rng: dict(lr=_pick(rng, 1e-4, 1e-3), beta1=_pick(rng, 0.9, 0.95), beta2=_pick(rng, 0.99, 0.98),
                         weight_decay=_pick(rng, 0.0, 0.1), maximize=_pick(rng, False, True)),
        lambda cfg: {"exp_avgs": True},
        lambda p, g, st, steps, cfg: F.lion(p, g, st["exp_avgs"], **cfg),
        lambda p, g, st, steps, cfg, foreach: _torch_lion(p, g, st["exp_avgs"], **cfg),
        sqrt=False,
        steps=False,
    ),
}


def _initial(rng, dtype, n_arrays, last):
    sizes = [int(rng.integers(1, 70)) for _ in range(n_arrays - 1)] + [last]
    return [rng.standard_normal(s).astype(dtype) for s in sizes]


TORCH_RUNS = {"single": dict(foreach=False), "foreach": dict(foreach=True),
              "ieee": dict(foreach=False, ieee=True)}


def run_case(case, seed, dtype, n_arrays=12, steps=STEPS, threads=1, torch_runs=tuple(TORCH_RUNS), last=1031,
             specials=False):
    """fastoptim's trajectory and torch's (``specials``: gradients hold NaN, infinities and zeros) (``torch_runs``: its single-tensor path, its foreach
    path, its single-tensor path with the IEEE square root) from the same start on the same
    gradients. Returns ``{run: params followed by every state buffer}`` with run "fo" for
    fastoptim, and the config."""
    rng = np.random.default_rng(seed)
    cfg = case.config(rng)
    params = _initial(rng, dtype, n_arrays, last)
    used = case.lists(cfg)
    # state starts at zero, as torch's optimizers create it
    init = case.init(cfg)      # starting values of the state lists (default 0, as torch)
    fo_state = {k: [np.full_like(p, init.get(k, 0)) for p in params] if on else [] for k, on in used.items()}
    for k, start in case.scalars.items():
        fo_state[k] = [np.array(start(cfg), np.float32) for _ in params]
    fo_params = [p.copy() for p in params]
    fo_steps = [0] * len(params)
    runs = {run: ([torch.from_numpy(p.copy()) for p in params],
                  {k: [torch.from_numpy(a.copy()) for a in fo_state[k]] for k in fo_state},
                  [torch.tensor(0.0) for _ in params]) for run in torch_runs}
    old = fo.get_num_threads(), kernels.get_min_elements_per_thread()
    fo.set_num_threads(threads)
    kernels.set_min_elements_per_thread(1 if threads > 1 else old[1])
    try:
        for _ in range(steps):
            grads = [rng.standard_normal(p.shape).astype(dtype) for p in params]
            if specials:
                for gr in grads:
                    gr[rng.random(gr.shape) < 0.05] = rng.choice([np.nan, np.inf, -np.inf, 0.0, -0.0])
            case.fo_call(fo_params, grads, fo_state, fo_steps, cfg)
            for run, (tp, tst, tsteps) in runs.items():
                with ieee_sqrt() if TORCH_RUNS[run].get("ieee") else contextlib.nullcontext():
                    case.torch_call(tp, [torch.from_numpy(g) for g in grads], tst, tsteps, cfg,
                                    TORCH_RUNS[run]["foreach"])
    finally:
        fo.set_num_threads(old[0])
        kernels.set_min_elements_per_thread(old[1])
    assert fo_steps == ([steps] * len(params) if case.steps else [0] * len(params))
    out = {"fo": fo_params + [np.atleast_1d(a) for k in fo_state for a in fo_state[k]]}
    for run, (tp, tst, _) in runs.items():
        out[run] = [t.numpy() for t in tp] + [np.atleast_1d(t.numpy()) for k in fo_state for t in tst[k]]
    return out, cfg


def deviation(a, b):
    """(mismatching elements, total elements, max ulp distance, max relative error) between two
    lists of arrays; the relative error of an element is taken against its array's largest value."""
    mism = total = worst = 0
    rel = 0.0
    for x, y in zip(a, b):
        d = ulp_distance(x, y)
        mism += int(np.count_nonzero(d))
        total += x.size
        worst = max(worst, int(d.max()) if d.size else 0)
        scale = float(np.max(np.abs(y))) if y.size else 0.0
        if scale > 0:
            rel = max(rel, float(np.max(np.abs(x.astype(np.float64) - y))) / scale)
    return mism, total, worst, rel


def golden_runs(case):
    """The torch run the golden data and the bitwise test compare with: its single-tensor path,
    given the IEEE square root where the update takes one and fastoptim takes the IEEE one."""
    return ("ieee",) if case.sqrt and not _dispatch.TORCH_SQRT else ("single",)


SQRT_MODES = {"default": contextlib.nullcontext, "ieee": _dispatch.ieee_sqrt}


@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("name,sqrt", [(name, mode) for name in sorted(CASES) for mode in sorted(SQRT_MODES)
                                       if mode == "default" or (CASES[name].sqrt and _dispatch.TORCH_SQRT)])
def test_bitwise_equal_to_torch_single_tensor_path(name, sqrt, seed, dtype):
    """Bitwise equal to torch's single-tensor path op for op, over 150 steps: live torch where
    fastoptim takes torch's square root (``default`` on an Intel CPU with AVX-512), else, where the
    update takes a square root, that path with the IEEE square root on both sides (see
    ``ieee_sqrt``): then the square root is the only difference, never the order or fusion of an
    operation."""
    case = CASES[name]
    with SQRT_MODES[sqrt]():
        runs = golden_runs(case)
        out, cfg = run_case(case, seed, dtype, torch_runs=runs)
    mism, total, worst, _ = deviation(out["fo"], out[runs[0]])
    assert mism == 0, (cfg, runs, mism, total, worst)


@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(CASES))
def test_special_values_like_torch(name, dtype):
    """NaN, infinities and signed zeros in the gradients: the same values as torch's single-tensor
    path (NaN where torch has NaN, whatever its sign and payload)."""
    case = CASES[name]
    runs = golden_runs(case)
    with np.errstate(all="ignore"):
        out, cfg = run_case(case, 5, dtype, n_arrays=6, steps=6, torch_runs=runs, specials=True)
    for a, b in zip(out["fo"], out[runs[0]]):
        nan = np.isnan(a)
        assert np.array_equal(nan, np.isnan(b)), cfg
        assert np.array_equal(a[~nan].view(np.uint8), b[~nan].view(np.uint8)), cfg


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_bitwise(name, seed, dtype):
    """Without torch: the trajectories recorded from torch's single-tensor path (with the IEEE
    square root where the update takes one), replayed from the same seeds with the IEEE root."""
    golden = np.load(GOLDEN_PATH)
    with _dispatch.ieee_sqrt():
        out, cfg = run_case(CASES[name], seed, dtype, torch_runs=(), **GOLDEN)
    key = f"{name}/{np.dtype(dtype).name}/{seed}"
    assert len(out["fo"]) == len([k for k in golden.files if k.startswith(key + "/")])
    for j, a in enumerate(out["fo"]):
        assert np.array_equal(a.view(np.uint8), golden[f"{key}/{j}"].view(np.uint8)), (cfg, j)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(CASES))
def test_two_threads_bitwise_equal_to_one(name, dtype):
    case = CASES[name]
    one = run_case(case, 7, dtype, n_arrays=40, steps=20, threads=1, torch_runs=())[0]["fo"]
    two = run_case(case, 7, dtype, n_arrays=40, steps=20, threads=2, torch_runs=())[0]["fo"]
    for a, b in zip(one, two):
        assert np.array_equal(a.view(np.uint8), b.view(np.uint8))


if __name__ == "__main__":
    import sys

    for name in sys.argv[1:] or sorted(CASES):
        for dtype in (np.float32, np.float64):
            sums = {}
            for seed in range(8):
                out, _ = run_case(CASES[name], seed, dtype)
                for key, (a, b) in {"fo~single": ("fo", "single"), "fo~ieee": ("fo", "ieee"),
                                    "foreach~single": ("foreach", "single")}.items():
                    m, t, w, r = deviation(out[a], out[b])
                    old = sums.get(key, (0, 0, 0, 0.0))
                    sums[key] = (old[0] + m, old[1] + t, max(old[2], w), max(old[3], r))
            print(f"{name:8s} {np.dtype(dtype).name}: " + "; ".join(
                f"{k} {m}/{t} differ, max {w} ulp, rel {r:.1e}" for k, (m, t, w, r) in sums.items()))


def _zeros_state(case, cfg, params):
    state = {k: [np.zeros_like(p) for p in params] if on else [] for k, on in case.lists(cfg).items()}
    for k, start in case.scalars.items():
        state[k] = [np.array(start(cfg), np.float32) for _ in params]
    return state


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_changes_nothing(name):
    """A bad array anywhere in the lists is reported by name and index before anything changes."""
    case = CASES[name]
    rng = np.random.default_rng(3)
    cfg = case.config(rng)
    params = [rng.standard_normal(5).astype(np.float32) for _ in range(3)]
    state = _zeros_state(case, cfg, params)
    for st in state.values():
        for a in st:
            a += 0.5            # positive state, valid for every optimizer
    before = [p.copy() for p in params] + [a.copy() for st in state.values() for a in st]
    steps = [4, 4, 4]
    grads = [np.ones(5, np.float32), np.ones(5, np.float32), np.ones(5, np.float64)]
    with pytest.raises(TypeError, match=r"grads\[2\] has dtype float64 but params\[2\] has dtype float32"):
        case.fo_call(params, grads, state, steps, cfg)
    grads[2] = np.ones(5, np.float32)
    first_list = next(iter(state))
    state[first_list][1] = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=rf"{first_list}\[1\] has shape \(4,\) but params\[1\] has shape \(5,\)"):
        case.fo_call(params, grads, state, steps, cfg)
    state[first_list][1] = before[len(params) + 1].copy()
    if case.steps:
        steps[0] = -1
        with pytest.raises(ValueError, match=r"state_steps\[0\] must be >= 0, got -1"):
            case.fo_call(params, grads, state, steps, cfg)
        assert steps == [-1, 4, 4]
    after = [p for p in params] + [a for st in state.values() for a in st]
    for a, b in zip(before, after):
        assert np.array_equal(a, b)
    state[first_list].pop()
    with pytest.raises(ValueError, match=rf"{name}: {first_list} has 2 entries but params has 3"):
        case.fo_call(params, grads, state, [0, 0, 0], cfg)


@pytest.mark.parametrize("name", sorted(n for n in CASES if CASES[n].steps))
def test_steps_accept_zero_d_arrays_and_become_ints(name):
    case = CASES[name]
    rng = np.random.default_rng(5)
    cfg = case.config(rng)
    params = [rng.standard_normal(3) for _ in range(2)]
    steps = [np.array(2), 7]
    case.fo_call(params, [np.ones(3), np.ones(3)], _zeros_state(case, cfg, params), steps, cfg)
    assert steps == [3, 8] and all(type(s) is int for s in steps)


@pytest.mark.parametrize("name", sorted(n for n in CASES if CASES[n].scalars))
def test_bad_scalar_state_changes_nothing(name):
    """The 0-d scalar state (NAdam's mu_products, ASGD's mus/etas) is checked before anything changes."""
    case = CASES[name]
    rng = np.random.default_rng(11)
    cfg = case.config(rng)
    params = [rng.standard_normal(4) for _ in range(3)]
    state = _zeros_state(case, cfg, params)
    key = next(iter(case.scalars))
    state[key][2] = 1.0

    def snapshot():     # everything but the bad entry
        return [p.copy() for p in params] + [np.copy(a) for k, st in state.items() for j, a in enumerate(st)
                                             if (k, j) != (key, 2)]
    before = snapshot()
    steps = [0, 0, 0]
    with pytest.raises(TypeError, match=rf"{key}\[2\] must be a 0-d float32 or float64 array"):
        case.fo_call(params, [np.ones(4)] * 3, state, steps, cfg)
    state[key][2] = np.ones(1, np.float32)
    with pytest.raises(TypeError, match=rf"{key}\[2\] must be a 0-d float32 or float64 array"):
        case.fo_call(params, [np.ones(4)] * 3, state, steps, cfg)
    assert steps == [0, 0, 0]
    for a, b in zip(before, snapshot()):
        assert np.array_equal(a, b)
