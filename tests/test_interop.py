"""fo.interop.to_torch / from_torch: layout, types, copies, step conversion; torch is imported
only when they are called."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import fastoptim as fo


def test_importing_fastoptim_does_not_import_torch():
    code = "import sys, fastoptim, fastoptim.interop; assert 'torch' not in sys.modules"
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(fo.__file__))}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


torch = pytest.importorskip("torch")


def _trained(cls, dtype=np.float32, **kwargs):
    ps = [fo.Parameter(np.linspace(-1, 1, n).astype(dtype)) for n in (3, 4)]
    opt = cls([("a", ps[0]), ("b", ps[1])], **kwargs)
    for step in range(3):
        for p in ps:
            p.grad = (np.asarray(p) * 0.5 + step).astype(dtype)
        opt.step()
    return opt, ps


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_to_torch_types_and_copies(dtype):
    opt, _ = _trained(fo.Adam, dtype, amsgrad=True)
    sd = opt.state_dict()
    tsd = fo.interop.to_torch(sd)
    assert list(tsd) == ["state", "param_groups"]
    assert tsd["param_groups"] == sd["param_groups"]
    for k, s in tsd["state"].items():
        assert list(s) == list(sd["state"][k])
        assert s["step"].dtype == torch.float32 and s["step"].shape == () and s["step"].item() == 3
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            assert s[key].dtype == (torch.float32 if dtype == np.float32 else torch.float64)
            np.testing.assert_array_equal(s[key].numpy(), sd["state"][k][key])
            assert not np.shares_memory(s[key].numpy(), sd["state"][k][key])


def test_torch_loads_the_converted_dict_and_steps_identically():
    opt, ps = _trained(fo.SGD, np.float64, lr=0.1, momentum=0.9, nesterov=True)
    tparams = [torch.nn.Parameter(torch.from_numpy(np.array(p))) for p in ps]
    topt = torch.optim.SGD([("a", tparams[0]), ("b", tparams[1])], lr=0.5)
    topt.load_state_dict(fo.interop.to_torch(opt.state_dict()))
    assert topt.param_groups[0]["lr"] == 0.1 and topt.param_groups[0]["nesterov"] is True
    for p, t in zip(ps, tparams):
        g = np.asarray(p) * 0.3
        p.grad = g
        t.grad = torch.from_numpy(g.copy())
    opt.step()
    topt.step()
    for p, t in zip(ps, tparams):
        np.testing.assert_array_equal(p, t.detach().numpy())


def test_from_torch_types_and_copies():
    t = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    topt = torch.optim.AdamW([t], lr=0.01, amsgrad=True)
    for _ in range(4):
        t.grad = torch.randn(5, dtype=torch.float64)
        topt.step()
    tsd = topt.state_dict()
    sd = fo.interop.from_torch(tsd)
    state = sd["state"][0]
    assert type(state["step"]) is int and state["step"] == 4
    for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        assert type(state[key]) is np.ndarray and state[key].dtype == np.float64
        np.testing.assert_array_equal(state[key], tsd["state"][0][key].numpy())
        assert not np.shares_memory(state[key], tsd["state"][0][key].numpy())
    assert sd["param_groups"] == tsd["param_groups"] and sd["param_groups"] is not tsd["param_groups"]
    opt = fo.AdamW([fo.Parameter(t.detach().numpy().copy())], amsgrad=True)
    opt.load_state_dict(sd)
    assert opt.state[opt.param_groups[0]["params"][0]]["step"] == 4


def test_from_torch_converts_tensor_hyperparameters_and_bfloat16():
    t = torch.nn.Parameter(torch.zeros(3))
    topt = torch.optim.SGD([t], lr=torch.tensor(0.01), momentum=0.9)
    t.grad = torch.ones(3)
    topt.step()
    tsd = topt.state_dict()
    tsd["state"][0]["momentum_buffer"] = tsd["state"][0]["momentum_buffer"].to(torch.bfloat16)
    sd = fo.interop.from_torch(tsd)
    lr = sd["param_groups"][0]["lr"]
    assert type(lr) is np.ndarray and lr.shape == () and lr.dtype == np.float32
    ml_dtypes = pytest.importorskip("ml_dtypes")
    buf = sd["state"][0]["momentum_buffer"]
    assert buf.dtype == ml_dtypes.bfloat16  # bfloat16 kept, bit for bit (float32 without ml_dtypes)
    assert np.array_equal(buf.view(np.int16), tsd["state"][0]["momentum_buffer"].view(torch.int16).numpy())
    opt = fo.SGD([fo.Parameter(np.zeros(3))], momentum=0.9)
    opt.load_state_dict(sd)
    assert opt.state[opt.param_groups[0]["params"][0]]["momentum_buffer"].dtype == np.float64
    back = fo.interop.to_torch(opt.state_dict())
    assert isinstance(back["param_groups"][0]["lr"], torch.Tensor)


@pytest.mark.parametrize("bad", [torch.tensor(1.5), torch.tensor(-1.0), torch.tensor(float("nan"))])
def test_from_torch_refuses_impossible_steps(bad):
    tsd = {"state": {0: {"step": bad, "exp_avg": torch.zeros(2), "exp_avg_sq": torch.zeros(2)}},
           "param_groups": [{"lr": 0.1, "params": [0]}]}
    with pytest.raises(ValueError, match="step tensor holds"):
        fo.interop.from_torch(tsd)


def test_to_torch_warns_above_float32_step_range():
    sd = {"state": {0: {"step": 2**24 + 1, "exp_avg": np.zeros(2), "exp_avg_sq": np.zeros(2)}},
          "param_groups": [{"lr": 0.1, "params": [0]}]}
    with pytest.warns(UserWarning, match="above 2\\*\\*24"):
        tsd = fo.interop.to_torch(sd)
    assert tsd["state"][0]["step"].item() == 2**24
    sd["state"][0]["step"] = 2**24
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # exactly representable: no warning
        assert fo.interop.to_torch(sd)["state"][0]["step"].item() == 2**24


@pytest.mark.parametrize("function", [fo.interop.to_torch, fo.interop.from_torch])
def test_refuses_things_that_are_not_state_dicts(function):
    with pytest.raises(TypeError, match="expects an optimizer state dict"):
        function({"model": 1})
    with pytest.raises(TypeError, match="expects an optimizer state dict"):
        function([1, 2])


def test_round_trip_is_lossless():
    opt, _ = _trained(fo.Adam, np.float64, amsgrad=True, lr=np.array(0.01))
    sd = opt.state_dict()
    back = fo.interop.from_torch(fo.interop.to_torch(sd))
    assert back["param_groups"][0]["lr"] == sd["param_groups"][0]["lr"]
    for k, s in sd["state"].items():
        assert back["state"][k]["step"] == s["step"]
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            np.testing.assert_array_equal(back["state"][k][key], s[key])
