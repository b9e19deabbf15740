"""fastoptim.swa_utils against torch.optim.swa_utils 2.13: averages over 100 updates, SWALR's lr
floats, state dicts and checkpoints."""
import math

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import swa_utils


def _model_arrays(dtype, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in [(64, 33), (33,), (5000,), (3, 7, 11), (1,)]]


def _ulps(a, b):
    spacing = np.spacing(np.maximum(np.abs(a), np.abs(b))).astype(np.float64)
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)) / spacing))


def _torch_averaged(kind, arrays_per_step, dtype):
    torch = pytest.importorskip("torch")
    model = torch.nn.ParameterList([torch.nn.Parameter(torch.from_numpy(a.copy()))
                                    for a in arrays_per_step[0]])
    if kind == "ema":
        avg = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.9))
    elif kind == "ema1":
        avg = torch.optim.swa_utils.AveragedModel(
            model, avg_fn=torch.optim.swa_utils.get_ema_avg_fn(0.9))
    elif kind == "swa1":
        avg = torch.optim.swa_utils.AveragedModel(
            model, avg_fn=torch.optim.swa_utils.get_swa_avg_fn())
    elif kind == "swam":
        avg = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_swa_multi_avg_fn())
    else:
        avg = torch.optim.swa_utils.AveragedModel(model)
    for arrays in arrays_per_step:
        with torch.no_grad():
            for p, a in zip(model, arrays):
                p.copy_(torch.from_numpy(a))
        avg.update_parameters(model)
    return [p.detach().numpy() for p in avg.module]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["ema", "swa", "ema1", "swa1", "swam"])
def test_matches_torch_over_100_updates(kind, dtype):
    pytest.importorskip("torch")
    steps = [_model_arrays(dtype, k) for k in range(100)]
    if kind == "ema":
        ours = swa_utils.AveragedModel(steps[0], multi_avg_fn=swa_utils.get_ema_multi_avg_fn(0.9))
    elif kind == "ema1":
        ours = swa_utils.AveragedModel(steps[0], avg_fn=swa_utils.get_ema_avg_fn(0.9))
    elif kind == "swa1":
        ours = swa_utils.AveragedModel(steps[0], avg_fn=swa_utils.get_swa_avg_fn())
    elif kind == "swam":
        ours = swa_utils.AveragedModel(steps[0], multi_avg_fn=swa_utils.get_swa_multi_avg_fn())
    else:
        ours = swa_utils.AveragedModel(steps[0])
    for arrays in steps:
        ours.update_parameters(arrays)
    theirs = _torch_averaged(kind, steps, dtype)
    assert ours.n_averaged == 100
    for a, t in zip(ours.averaged, theirs):
        assert a.dtype == dtype
        assert _ulps(a, t) <= 1


def test_mixed_dtypes_and_dict_structure():
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal((4, 4)).astype(np.float32), "b": rng.standard_normal(4)}
    avg = swa_utils.AveragedModel(params)
    avg.update_parameters(params)
    new = {"w": params["w"] + 1, "b": params["b"] + 2}
    avg.update_parameters(new)
    np.testing.assert_allclose(avg.averaged["w"], params["w"] + 0.5, rtol=1e-6)
    np.testing.assert_allclose(avg.averaged["b"], params["b"] + 1.0)
    assert list(avg.averaged) == ["w", "b"]


def test_identical_for_any_thread_count(threads):
    out = []
    for n in (1, 2):
        fo.set_num_threads(n)
        avg = swa_utils.AveragedModel(_model_arrays(np.float32, 0) * 20,
                                      multi_avg_fn=swa_utils.get_ema_multi_avg_fn(0.99))
        for k in range(5):
            avg.update_parameters(_model_arrays(np.float32, k) * 20)
        out.append(avg.averaged)
    for a, b in zip(*out):
        assert np.array_equal(a, b)


def test_state_dict_and_checkpoint(tmp_path):
    steps = [_model_arrays(np.float64, k) for k in range(6)]
    full = swa_utils.AveragedModel(steps[0], multi_avg_fn=swa_utils.get_ema_multi_avg_fn(0.8))
    for s in steps:
        full.update_parameters(s)
    part = swa_utils.AveragedModel(steps[0], multi_avg_fn=swa_utils.get_ema_multi_avg_fn(0.8))
    for s in steps[:3]:
        part.update_parameters(s)
    fo.save(part.state_dict(), tmp_path / "avg.fo")
    resumed = swa_utils.AveragedModel(steps[0], multi_avg_fn=swa_utils.get_ema_multi_avg_fn(0.8))
    resumed.load_state_dict(fo.load(tmp_path / "avg.fo"))
    assert resumed.n_averaged == 3
    for s in steps[3:]:
        resumed.update_parameters(s)
    for a, b in zip(full.averaged, resumed.averaged):
        assert np.array_equal(a, b)


def test_errors_change_nothing():
    arrays = _model_arrays(np.float32, 0)
    avg = swa_utils.AveragedModel(arrays)
    avg.update_parameters(arrays)
    before = [a.copy() for a in avg.averaged]
    bad = [a.copy() for a in arrays]
    bad[-1] = np.zeros(2, np.float32)
    with pytest.raises(ValueError, match="shape"):
        avg.update_parameters(bad)
    with pytest.raises(ValueError, match="n_averaged"):
        avg.load_state_dict({"averaged": arrays, "n_averaged": -1})
    with pytest.raises(ValueError, match="keys"):
        avg.load_state_dict({"averaged": arrays})
    with pytest.raises(TypeError, match="dtype"):
        swa_utils.AveragedModel([np.zeros(3, np.int32)])
    with pytest.raises(AssertionError, match="Only one of avg_fn and multi_avg_fn"):
        swa_utils.AveragedModel(arrays, avg_fn=swa_utils.get_swa_avg_fn(),
                                multi_avg_fn=swa_utils.get_swa_multi_avg_fn())
    with pytest.raises(ValueError, match=r"Invalid decay value 1.5 provided"):
        swa_utils.get_ema_multi_avg_fn(1.5)
    assert avg.n_averaged == 1
    for a, b in zip(avg.averaged, before):
        assert np.array_equal(a, b)


def _lrs(module, strategy, anneal_epochs, swa_lr, n=25):
    if module == "torch":
        torch = pytest.importorskip("torch")
        ps = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
        opt = torch.optim.SGD([{"params": [ps[0]]}, {"params": [ps[1]], "lr": 0.3}], lr=0.7)
        sched = torch.optim.swa_utils.SWALR(opt, swa_lr, anneal_epochs, strategy)
    else:
        ps = [fo.Parameter(np.zeros(1)), fo.Parameter(np.zeros(1))]
        opt = fo.SGD([{"params": [ps[0]]}, {"params": [ps[1]], "lr": 0.3}], lr=0.7)
        sched = swa_utils.SWALR(opt, swa_lr, anneal_epochs, strategy)
    out = [[g["lr"] for g in opt.param_groups]]
    for _ in range(n):
        opt.step()
        sched.step()
        out.append([g["lr"] for g in opt.param_groups])
    return out, sched.get_last_lr()


@pytest.mark.parametrize("strategy", ["cos", "linear"])
@pytest.mark.parametrize("anneal_epochs", [0, 1, 7])
@pytest.mark.parametrize("swa_lr", [0.05, [0.05, 0.2]])
def test_swalr_lrs_identical_to_torch(strategy, anneal_epochs, swa_lr):
    pytest.importorskip("torch")
    assert _lrs("fo", strategy, anneal_epochs, swa_lr) == _lrs("torch", strategy, anneal_epochs, swa_lr)


def test_swalr_state_dict_and_errors():
    p = fo.Parameter(np.zeros(1))
    opt = fo.SGD([p], lr=0.5)
    sched = swa_utils.SWALR(opt, 0.1, anneal_epochs=4)
    sd = sched.state_dict()
    assert sd["_anneal_strategy"] == "cos" and sd["anneal_epochs"] == 4
    assert "anneal_func" not in sd and "optimizer" not in sd
    with pytest.raises(ValueError, match="anneal_strategy must be one of 'cos' or 'linear', instead got x"):
        swa_utils.SWALR(opt, 0.1, anneal_strategy="x")
    with pytest.raises(ValueError, match="anneal_epochs must be equal or greater than 0, got -1"):
        swa_utils.SWALR(opt, 0.1, anneal_epochs=-1)
    with pytest.raises(ValueError, match="swa_lr must have the same length"):
        swa_utils.SWALR(opt, [0.1, 0.2])
    other = swa_utils.SWALR(fo.SGD([fo.Parameter(np.zeros(1))], lr=0.5), 0.1, anneal_strategy="linear")
    other.load_state_dict(sd)
    assert other.anneal_func(0.5) == pytest.approx((1 - math.cos(math.pi * 0.5)) / 2)
