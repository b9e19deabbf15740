"""The optimizer table (fastoptim/optim/registry.py) against what it describes: each entry's class,
functional form, torch counterpart, state keys, flags and test configurations; and the house
rule that an elementwise optimizer is one entry plus a thin class."""
import inspect

import numpy as np
import pytest

import fastoptim as fo
from fastoptim._kernels.spec import KERNELS
from fastoptim.optim.base import Optimizer
from fastoptim.optim.registry import OPTIMIZERS, OptimizerInfo

INFOS = list(OPTIMIZERS.values())
ids = [info.name for info in INFOS]


@pytest.mark.parametrize("info", INFOS, ids=ids)
def test_entry_names_real_things(info):
    assert getattr(fo, info.name) is info.cls and info.cls._info is info
    assert info.functional is getattr(fo.functional, info.functional_name)
    assert info.kernel in KERNELS
    assert set(info.optional) <= set(info.buffers)
    assert set(info.lazy_buffers) <= set(info.buffers)
    assert not info.state_order or sorted(info.state_order) == sorted(info.buffers)
    defaults = info.cls([fo.Parameter(np.zeros(2))]).defaults
    for key in (*info.flags, *info.group_defaults, *info.group_forced, *info.optional.values()):
        assert key in defaults or key in info.group_forced, key
    for _, key, _ in info.scalar_access:
        assert key in defaults
    torch = pytest.importorskip("torch")
    assert hasattr(torch.optim, info.torch_name) == info.in_torch


@pytest.mark.parametrize("info", INFOS, ids=ids)
def test_state_keys_are_what_a_step_creates(info):
    for config in info.configs:
        p = fo.Parameter(np.ones(3))
        p.grad = np.full(3, 0.5)
        opt = config.make([p])
        opt.step()
        group = opt.param_groups[0]
        expected = info.scalar_state + info.scalar_arrays + tuple(
            k for k in info.active_buffers(group)
            if not (k in info.optional and not group[info.optional[k]]))
        assert tuple(opt.state.get(p, {})) == expected, config.id
        n = len(info.active_buffers(group))
        assert info.bytes_per_element(4, group) == 4 * (3 + 2 * n)


@pytest.mark.parametrize("info", [i for i in INFOS if i.kernel_configs], ids=lambda i: i.name)
def test_kernel_configs_fit_the_functional_form(info):
    names = set(inspect.signature(info.functional).parameters)
    for cfg in info.kernel_configs:
        assert set(cfg) <= names


def test_configs_ids_are_unique_and_cliquey_free():
    configs = [c for info in INFOS for c in info.configs]
    assert len({c.id for c in configs}) == len(configs)
    assert all(not {"foreach", "fused", "differentiable"} & set(c.kwargs) for c in configs)


def test_an_elementwise_optimizer_is_one_entry_and_a_thin_class():
    """A throwaway optimizer on the SGD kernel: its entry and a class with only a signature and
    its checks get the whole step, state handling, loading and group defaults."""
    info = OptimizerInfo(
        name="HeavyBall", module=__name__, kernel="sgd", functional_name="sgd",
        family="HeavyBall", scalars=("lr", "weight_decay", "momentum", "dampening"),
        flags=("nesterov", "maximize"), lazy_buffers=("momentum_buffer",),
        group_defaults={"maximize": False, "nesterov": False},
    )

    class HeavyBall(Optimizer):
        _info = info

        def __init__(self, params, lr=0.1, momentum=0.9):
            super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": 0.0,
                                      "weight_decay": 0.0, "nesterov": False,
                                      "maximize": False, "differentiable": False})

    p, q = fo.Parameter(np.ones(4)), fo.Parameter(np.ones(4))
    p.grad, q.grad = np.full(4, 0.5), np.full(4, 0.5)
    ours, sgd = HeavyBall([p]), fo.SGD([q], lr=0.1, momentum=0.9)
    for _ in range(3):
        ours.step()
        sgd.step()
    assert np.array_equal(p, q) and ours._step_count == 3
    assert HeavyBall.step.__qualname__.endswith("HeavyBall.step")
    sd = ours.state_dict()
    assert set(sd["state"][0]) == {"momentum_buffer"}
    fresh = HeavyBall([fo.Parameter(np.ones(4))])
    fresh.load_state_dict(sd)
    assert np.array_equal(fresh.state[fresh.param_groups[0]["params"][0]]["momentum_buffer"],
                          ours.state[p]["momentum_buffer"])
    with pytest.raises(ValueError, match=r"unexpected key\(s\) \['exp_avg'\]; HeavyBall state "
                                         r"has only 'momentum_buffer'"):
        fresh.load_state_dict({**sd, "state": {0: {"exp_avg": np.zeros(4)}}})
