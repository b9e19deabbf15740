"""Every construction, add_param_group and load_state_dict error of torch 2.13 that applies to
NumPy (reference sections 5.2, 1.4, 1.8 and 2.1-2.3), with torch's exception types and messages,
plus fastoptim's own refusals (plain arrays, read-only/overlapping params, capturable,
differentiable).

Each case builds the fastoptim call and, where torch has the same error, the torch call from one
description; with torch installed the torch call is checked against the same regex, which pins
that the messages are torch's.
"""
import inspect
import re
import warnings

import numpy as np
import pytest

import fastoptim as fo
from fastoptim.optim.registry import OPTIMIZERS
from fastoptim.optimizer import required

try:
    import torch
except ImportError:  # the torch half of each case is skipped
    torch = None


def fo_param(shape=(1, 1)):
    return fo.Parameter(np.random.default_rng(0).standard_normal(shape))


def torch_param(shape=(1, 1)):
    return torch.nn.Parameter(torch.randn(shape))


def _t(x):
    """A NumPy hyperparameter as the torch tensor it stands for."""
    return torch.from_numpy(np.array(x, copy=True))


class Case:
    def __init__(self, desc, fo_call, torch_call, error, regex):
        self.desc, self.fo_call, self.torch_call = desc, fo_call, torch_call
        self.error, self.regex = error, regex


def _construction_cases():
    cases = []
    for name, info in OPTIMIZERS.items():
        F = getattr(fo, name)
        T = (lambda n: lambda *a, **k: getattr(torch.optim, n)(*a, **k))(name)
        if not info.in_torch:
            T = None
        takes = set(inspect.signature(F).parameters)
        named = []
        if {"fused", "foreach"} <= takes:
            named.append(Case(f"{name} fused and foreach",
                              lambda F=F: F([fo_param()], foreach=True, fused=True),
                              T and (lambda T=T: T([torch_param()], foreach=True, fused=True)),
                              RuntimeError,
                              re.escape("`fused` and `foreach` cannot be `True` together.")))
        if {"fused", "differentiable"} <= takes:
            named.append(Case(f"{name} fused and differentiable",
                              lambda F=F: F([fo_param()], fused=True, differentiable=True),
                              T and (lambda T=T: T([torch_param()], fused=True,
                                                   differentiable=True)),
                              RuntimeError, re.escape("`fused` does not support `differentiable`")))
        if "differentiable" in takes:
            named.append(Case(f"{name} differentiable",
                              lambda F=F: F([fo_param()], differentiable=True), None,
                              ValueError, "differentiable=True is not supported by fastoptim"))
        named += [
            # reference 5.2, shared by every optimizer (get_error_inputs_for_all_optims)
            Case(f"{name} G1 invalid param type", lambda F=F: F(fo_param()),
                 lambda T=T: T(torch_param()), TypeError,
                 "params argument given to the optimizer should be an iterable of Tensors or dicts"),
            Case(f"{name} G3 duplicate parameters across groups",
                 lambda F=F: (lambda p: F([{"params": p}, {"params": p}]))(fo_param()),
                 lambda T=T: (lambda p: T([{"params": p}, {"params": p}]))(torch_param()),
                 ValueError, "some parameters appear in more than one parameter group"),
            Case(f"{name} G4 Tensor lr must be 1-element",
                 lambda F=F: F(None, lr=np.array([0.001, 0.001])),
                 lambda T=T: T(None, lr=torch.tensor([0.001, 0.001])),
                 ValueError, "Tensor lr must be 1-element"),
            Case(f"{name} G5 some param names are missing",
                 lambda F=F: F([("weight", fo_param()), fo_param()]),
                 lambda T=T: T([("weight", torch_param()), torch_param()]),
                 ValueError,
                 "all optimizer params should be with/without names. Some param names are missing"),
            Case(f"{name} G6 groups with and without names",
                 lambda F=F: F([{"params": [fo_param()], "lr": 1e-2},
                                {"params": [("weight", fo_param())]}]),
                 lambda T=T: T([{"params": [torch_param()], "lr": 1e-2},
                                {"params": [("weight", torch_param())]}]),
                 ValueError, "all optimizer param groups should be with/without names. cannot add "
                             "param group with names to the optimizer"),
            Case(f"{name} groups without names after named ones",
                 lambda F=F: F([{"params": [("weight", fo_param())]}, {"params": [fo_param()]}]),
                 lambda T=T: T([{"params": [("weight", torch_param())]},
                                {"params": [torch_param()]}]),
                 ValueError, "cannot add param group without names to the optimizer"),
            # reference 1.2 / 2.x
            Case(f"{name} negative lr", lambda F=F: F(None, lr=-1), lambda T=T: T(None, lr=-1),
                 ValueError, "^Invalid learning rate: -1$"),
            Case(f"{name} lr None", lambda F=F: F(None, lr=None), lambda T=T: T(None, lr=None),
                 TypeError, "'<=?' not supported between instances of"),
            Case(f"{name} negative weight_decay", lambda F=F: F(None, lr=1e-2, weight_decay=-1),
                 lambda T=T: T(None, lr=1e-2, weight_decay=-1), ValueError,
                 "^Invalid weight_decay value: -1$"),
            Case(f"{name} params None", lambda F=F: F(None), lambda T=T: T(None), TypeError,
                 "'NoneType' object is not iterable"),
            Case(f"{name} empty parameter list", lambda F=F: F([]), lambda T=T: T([]), ValueError,
                 "^optimizer got an empty parameter list$"),
            Case(f"{name} group params as a set", lambda F=F: F([{"params": {fo_param()}}]),
                 lambda T=T: T([{"params": {torch_param()}}]), TypeError,
                 "optimizer parameters need to be organized in ordered collections, but the "
                 "ordering of tensors in sets will change between runs. Please use a list instead."),
            # fastoptim's own refusals
            Case(f"{name} plain ndarray", lambda F=F: F([np.zeros(3)]), None, TypeError,
                 r"numpy\.ndarray .*wrap it as fastoptim\.Parameter\(a\)"),
            Case(f"{name} a float", lambda F=F: F([1.0]), lambda T=T: T([1.0]), TypeError,
                 "optimizer can only optimize Tensors, but one of the params is float"),
        ]
        if "weight_decay" not in takes:  # Rprop
            named = [case for case in named if not case.desc.endswith("weight_decay")]
        if T is None:  # not in torch (Lion): fastoptim's half only
            for case in named:
                case.torch_call = None
        cases += named
    cases += [
        # reference 5.2, SGD and Adam/AdamW extras
        Case("SGD S1 momentum", lambda: fo.SGD(None, lr=1e-2, momentum=-0.5),
             lambda: torch.optim.SGD(None, lr=1e-2, momentum=-0.5), ValueError,
             "^Invalid momentum value: -0.5$"),
        Case("SGD nesterov without momentum", lambda: fo.SGD(None, nesterov=True),
             lambda: torch.optim.SGD(None, nesterov=True), ValueError,
             "^Nesterov momentum requires a momentum and zero dampening$"),
        Case("SGD nesterov with dampening",
             lambda: fo.SGD(None, momentum=0.9, dampening=0.1, nesterov=True),
             lambda: torch.optim.SGD(None, momentum=0.9, dampening=0.1, nesterov=True),
             ValueError, "Nesterov momentum requires a momentum and zero dampening"),
        Case("SGD momentum checked before weight_decay",
             lambda: fo.SGD(None, lr=1.0, momentum=-1, weight_decay=-1),
             lambda: torch.optim.SGD(None, lr=1.0, momentum=-1, weight_decay=-1), ValueError,
             "Invalid momentum value: -1"),
    ]
    for name in ["Adam", "AdamW"]:
        F = getattr(fo, name)
        T = (lambda n: lambda *a, **k: getattr(torch.optim, n)(*a, **k))(name)
        cases += [
            Case(f"{name} A1 beta1", lambda F=F: F(None, lr=1e-2, betas=(1.0, 0.0)),
                 lambda T=T: T(None, lr=1e-2, betas=(1.0, 0.0)), ValueError,
                 "^Invalid beta parameter at index 0: 1.0$"),
            Case(f"{name} beta2", lambda F=F: F(None, lr=1e-2, betas=(0.9, -0.1)),
                 lambda T=T: T(None, lr=1e-2, betas=(0.9, -0.1)), ValueError,
                 "^Invalid beta parameter at index 1: -0.1$"),
            Case(f"{name} eps", lambda F=F: F(None, eps=-1e-8), lambda T=T: T(None, eps=-1e-8),
                 ValueError, "^Invalid epsilon value: -1e-08$"),
            Case(f"{name} A2 weight_decay", lambda F=F: F(None, lr=1e-2, weight_decay=-1),
                 lambda T=T: T(None, lr=1e-2, weight_decay=-1), ValueError,
                 "Invalid weight_decay value: -1"),
            Case(f"{name} A3 lr array with foreach",
                 lambda F=F: F(None, lr=np.array(0.001), foreach=True),
                 lambda T=T: T(None, lr=torch.tensor(0.001), foreach=True), ValueError,
                 "lr as a Tensor is not supported for capturable=False and foreach=True"),
            Case(f"{name} A4 betas float and array",
                 lambda F=F: F(None, lr=1e-2, betas=(0.9, np.array(0.99))),
                 lambda T=T: T(None, lr=1e-2, betas=(0.9, torch.tensor(0.99))), ValueError,
                 "betas must be either both floats or both Tensors"),
            Case(f"{name} A5 betas array and float",
                 lambda F=F: F(None, lr=1e-2, betas=(np.array(0.9), 0.99)),
                 lambda T=T: T(None, lr=1e-2, betas=(torch.tensor(0.9), 0.99)), ValueError,
                 "betas must be either both floats or both Tensors"),
            Case(f"{name} python int betas", lambda F=F: F(None, betas=(0, 0)),
                 lambda T=T: T(None, betas=(0, 0)), ValueError,
                 "betas must be either both floats or both Tensors"),
            Case(f"{name} A6 array betas with foreach",
                 lambda F=F: F(None, lr=1e-2, betas=(np.array(0.9), np.array(0.99)),
                               foreach=True),
                 lambda T=T: T(None, lr=1e-2, betas=(torch.tensor(0.9), torch.tensor(0.99)),
                               foreach=True), ValueError,
                 re.escape("betas[0] as a Tensor is not supported for capturable=False and "
                           "foreach=True")),
            Case(f"{name} lr checked before eps", lambda F=F: F(None, lr=-1, eps=-1),
                 lambda T=T: T(None, lr=-1, eps=-1), ValueError, "Invalid learning rate: -1"),
            Case(f"{name} capturable", lambda F=F: F([fo_param()], capturable=True), None,
                 ValueError, "capturable=True is not supported by fastoptim"),
        ]
    # -- cls1 --: torch 2.13's optim_error_inputs_func_{rmsprop,adagrad,adadelta,adamax} CPU
    # entries (after the shared G1-G6 above), then each remaining check, and torch's order.
    for name, kwargs, regex in [
        ("RMSprop", dict(lr=1e-2, momentum=-1.0), "^Invalid momentum value: -1.0$"),
        ("Adagrad", dict(lr=1e-2, lr_decay=-0.5), "^Invalid lr_decay value: -0.5$"),
        ("Adadelta", dict(lr=1e-2, rho=1.1), "^Invalid rho value: 1.1$"),
        ("Adamax", dict(lr=1e-2, betas=(0.0, 1.0)), "^Invalid beta parameter at index 1: 1.0$"),
        ("RMSprop", dict(eps=-1e-8), "^Invalid epsilon value: -1e-08$"),
        ("RMSprop", dict(alpha=-0.5), "^Invalid alpha value: -0.5$"),
        ("RMSprop", dict(lr=-1, eps=-1), "^Invalid learning rate: -1$"),
        ("RMSprop", dict(eps=-1, momentum=-1), "^Invalid epsilon value: -1$"),
        ("RMSprop", dict(momentum=-1, weight_decay=-1), "^Invalid momentum value: -1$"),
        ("RMSprop", dict(weight_decay=-1, alpha=-1), "^Invalid weight_decay value: -1$"),
        ("Adagrad", dict(initial_accumulator_value=-0.1),
         "^Invalid initial_accumulator_value value: -0.1$"),
        ("Adagrad", dict(eps=-1e-10), "^Invalid epsilon value: -1e-10$"),
        ("Adagrad", dict(lr_decay=-1, weight_decay=-1), "^Invalid lr_decay value: -1$"),
        ("Adagrad", dict(weight_decay=-1, initial_accumulator_value=-1),
         "^Invalid weight_decay value: -1$"),
        ("Adagrad", dict(initial_accumulator_value=-1, eps=-1),
         "^Invalid initial_accumulator_value value: -1$"),
        ("Adadelta", dict(rho=-0.1), "^Invalid rho value: -0.1$"),
        ("Adadelta", dict(eps=-1e-6), "^Invalid epsilon value: -1e-06$"),
        ("Adadelta", dict(rho=2.0, eps=-1), "^Invalid rho value: 2.0$"),
        ("Adadelta", dict(eps=-1, weight_decay=-1), "^Invalid epsilon value: -1$"),
        ("Adamax", dict(betas=(1.0, 0.5)), "^Invalid beta parameter at index 0: 1.0$"),
        ("Adamax", dict(eps=-1.0, betas=(1.0, 0.5)), "^Invalid epsilon value: -1.0$"),
        ("Adamax", dict(betas=(0.5, 1.5), weight_decay=-1),
         "^Invalid beta parameter at index 1: 1.5$"),
        ("Adamax", dict(lr=-1, eps=-1), "^Invalid learning rate: -1$"),
        # -- cls2 --: torch 2.13's optim_error_inputs_func_{nadam,radam,asgd,rprop} CPU entries
        ("RAdam", dict(lr=1e-2, betas=(1.0, 0.0)), "^Invalid beta parameter at index 0: 1.0$"),
        ("RAdam", dict(lr=1e-2, weight_decay=-1), "^Invalid weight_decay value: -1$"),
        ("Rprop", dict(lr=1e-2, etas=(1.0, 0.5)), "^Invalid eta values: 1.0, 0.5$"),
        ("NAdam", dict(lr=1e-2, betas=(1.0, 0.0)), "^Invalid beta parameter at index 0: 1.0$"),
        ("NAdam", dict(lr=1e-2, momentum_decay=-0.2), "^Invalid momentum_decay value: -0.2$"),
        ("ASGD", dict(lr=1e-2, weight_decay=-0.5), "^Invalid weight_decay value: -0.5$"),
        ("RAdam", dict(lr=-1, eps=-1), "^Invalid learning rate: -1$"),
        ("RAdam", dict(eps=-1, betas=(2.0, 0.5)), "^Invalid epsilon value: -1$"),
        ("RAdam", dict(betas=(0.5, 1.0), weight_decay=-1), "^Invalid beta parameter at index 1: 1.0$"),
        ("NAdam", dict(lr=-1, eps=-1), "^Invalid learning rate: -1$"),
        ("NAdam", dict(eps=-1, betas=(2.0, 0.5)), "^Invalid epsilon value: -1$"),
        ("NAdam", dict(betas=(0.5, 1.0), weight_decay=-1), "^Invalid beta parameter at index 1: 1.0$"),
        ("NAdam", dict(weight_decay=-1, momentum_decay=-1), "^Invalid weight_decay value: -1$"),
        ("ASGD", dict(lr=-1, weight_decay=-1), "^Invalid learning rate: -1$"),
        ("Rprop", dict(lr=-1, etas=(2.0, 0.5)), "^Invalid learning rate: -1$"),
        ("Rprop", dict(etas=(0.5, 1.0)), "^Invalid eta values: 0.5, 1.0$"),
        ("Rprop", dict(etas=(0.0, 1.2)), "^Invalid eta values: 0.0, 1.2$"),
    ]:
        F = getattr(fo, name)
        cases.append(Case(f"{name} {kwargs}", lambda F=F, k=kwargs: F(None, **k),
                          lambda n=name, k=kwargs: getattr(torch.optim, n)(None, **k),
                          ValueError, regex))
    cases += [
        Case("RMSprop takes no fused", lambda: fo.RMSprop([fo_param()], fused=True),
             lambda: torch.optim.RMSprop([torch_param()], fused=True), TypeError,
             "unexpected keyword argument 'fused'"),
        Case("Adamax capturable", lambda: fo.Adamax([fo_param()], capturable=True), None,
             ValueError, "capturable=True is not supported by fastoptim"),
        Case("Lion beta1", lambda: fo.Lion(None, betas=(1.5, 0.9)), None, ValueError,
             "^Invalid beta parameter at index 0: 1.5$"),
        Case("Lion beta2", lambda: fo.Lion(None, betas=(0.9, -0.1)), None, ValueError,
             "^Invalid beta parameter at index 1: -0.1$"),
        Case("Lion has no eps", lambda: fo.Lion([fo_param()], eps=1e-8), None, TypeError,
             "unexpected keyword argument 'eps'"),
        Case("Rprop takes no weight_decay", lambda: fo.Rprop([fo_param()], weight_decay=0.1),
             lambda: torch.optim.Rprop([torch_param()], weight_decay=0.1), TypeError,
             "unexpected keyword argument 'weight_decay'"),
        Case("NAdam takes no fused", lambda: fo.NAdam([fo_param()], fused=True),
             lambda: torch.optim.NAdam([torch_param()], fused=True), TypeError,
             "unexpected keyword argument 'fused'"),
    ] + [
        Case(f"{name} capturable", lambda F=getattr(fo, name): F([fo_param()], capturable=True),
             None, ValueError, "capturable=True is not supported by fastoptim")
        for name in ("NAdam", "RAdam", "ASGD", "Rprop")
    ]
    cases.append(Case("AdamW has no decoupled_weight_decay argument",
                      lambda: fo.AdamW([fo_param()], decoupled_weight_decay=False),
                      lambda: torch.optim.AdamW([torch_param()], decoupled_weight_decay=False),
                      TypeError, "unexpected keyword argument 'decoupled_weight_decay'"))
    return cases


CONSTRUCTION_CASES = _construction_cases()


@pytest.mark.parametrize("case", CONSTRUCTION_CASES, ids=lambda c: c.desc)
def test_construction_errors(case):
    with pytest.raises(case.error, match=case.regex):
        case.fo_call()
    if case.torch_call is not None and torch is not None:
        with pytest.raises(case.error, match=case.regex):
            case.torch_call()


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_G2_duplicate_parameters_in_a_group_refused_where_torch_warns(name):
    p = fo_param()
    regex = ".*a parameter group with duplicate parameters.*"
    with pytest.raises(ValueError, match=regex):
        getattr(fo, name)([p, p])
    if torch is not None:
        if not OPTIMIZERS[name].in_torch:
            return
        t = torch_param()
        with pytest.warns(UserWarning, match=regex):
            getattr(torch.optim, name)([t, t])


def test_hyperparameters_are_validated_before_params_are_read():
    def params():
        raise AssertionError("params were read before the hyperparameters were validated")
        yield

    with pytest.raises(ValueError, match="Invalid momentum value: -0.5"):
        fo.SGD(params(), lr=1e-2, momentum=-0.5)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 0"):
        fo.Adam(params(), betas=(1.5, 0.9))


# ---------------------------------------------------------------------------- add_param_group


def _opt(**kwargs):
    return fo.SGD([fo_param()], lr=0.1, **kwargs)


def test_add_param_group_errors_with_torch_messages():
    opt = _opt()
    with pytest.raises(TypeError, match=r"^param_group must be a dict, but got <class 'list'>$"):
        opt.add_param_group([fo_param()])
    with pytest.raises(KeyError, match="params"):
        opt.add_param_group({"lr": 0.1})
    with pytest.raises(TypeError, match="ordering of tensors in sets will change between runs"):
        opt.add_param_group({"params": {fo_param()}})
    with pytest.raises(ValueError, match="Some param names are missing"):
        opt.add_param_group({"params": [("a", fo_param()), fo_param()]})
    with pytest.raises(ValueError, match="cannot add param group with names to the optimizer"):
        opt.add_param_group({"params": [("a", fo_param())]})
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        opt.add_param_group({"params": opt.param_groups[0]["params"][0]})
    with pytest.raises(TypeError, match="optimizer can only optimize Tensors, but one of the params "
                                        "is str"):
        opt.add_param_group({"params": ["w"]})
    assert len(opt.param_groups) == 1


def test_required_hyperparameter():
    class Custom(fo.Optimizer):
        def __init__(self, params, lr=required, scale=2.0):
            super().__init__(params, {"lr": lr, "scale": scale})

    with pytest.raises(ValueError, match="^parameter group didn't specify a value of required "
                                         "optimization parameter lr$"):
        Custom([fo_param()])
    opt = Custom([{"params": [fo_param()], "lr": 0.5}])
    assert opt.param_groups[0]["lr"] == 0.5 and opt.param_groups[0]["scale"] == 2.0
    with pytest.raises(ValueError, match="required optimization parameter lr"):
        opt.add_param_group({"params": [fo_param()]})
    assert repr(required) == "<required parameter>"


def test_group_hyperparameters_are_validated_unlike_torch():
    opt = _opt()
    with pytest.raises(ValueError, match="^Invalid learning rate: -1$"):
        opt.add_param_group({"params": [fo_param()], "lr": -1})
    with pytest.raises(ValueError, match="Invalid momentum value"):
        fo.SGD([{"params": [fo_param()], "momentum": -0.1}], lr=0.1)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1: 3.0"):
        fo.Adam([fo_param()]).add_param_group({"params": [fo_param()], "betas": (0.5, 3.0)})
    with pytest.raises(ValueError, match="capturable=True is not supported"):
        fo.Adam([fo_param()]).add_param_group({"params": [fo_param()], "capturable": True})
    assert len(opt.param_groups) == 1


def test_plain_arrays_and_unusable_params_are_refused():
    with pytest.raises(TypeError, match=r"fastoptim\.Parameter\(a\), which shares its memory"):
        fo.Adam([np.zeros(3)])
    p = fo.Parameter(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="not C-contiguous"):
        fo.SGD([p.T])  # a Parameter view (NumPy keeps the subclass) that is not contiguous
    q = fo_param()
    q.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        fo.SGD([q])
    with pytest.raises(TypeError, match="float32 and float64 Parameters only"):
        fo.SGD([p.astype(np.int64)])


def test_params_sharing_memory_are_refused():
    buffer = fo.Parameter(np.zeros(10))
    with pytest.raises(ValueError, match=r"param 0 of param group 0 and param 1 of param group 0 "
                                         r"share memory"):
        fo.SGD([buffer[:6], buffer[4:]])
    with pytest.raises(ValueError, match="share memory"):
        fo.SGD([{"params": [buffer]}, {"params": [buffer[2:5]]}])
    opt = fo.SGD([buffer[:5]])
    with pytest.raises(ValueError, match="param 0 of param group 0 and param 0 of param group 1"):
        opt.add_param_group({"params": [buffer[3:]]})
    opt.add_param_group({"params": [buffer[5:]]})  # adjacent, not overlapping
    assert len(opt.param_groups) == 2


# ---------------------------------------------------------------------------- load_state_dict


def test_load_state_dict_errors_with_torch_messages():
    opt = fo.SGD([fo_param(), fo_param()], lr=0.1)
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="^loaded state dict has a different number of parameter "
                                         "groups$"):
        opt.load_state_dict({"state": {}, "param_groups": sd["param_groups"] * 2})
    short = {**sd["param_groups"][0], "params": [0]}
    with pytest.raises(ValueError, match="^loaded state dict contains a parameter group that "
                                         "doesn't match the size of optimizer's group$"):
        opt.load_state_dict({"state": {}, "param_groups": [short]})
    with pytest.raises(KeyError, match="param_groups"):
        opt.load_state_dict({"state": {}})
    with pytest.raises(KeyError, match="state"):
        opt.load_state_dict({"param_groups": sd["param_groups"]})
    if torch is not None:
        topt = torch.optim.SGD([torch_param(), torch_param()], lr=0.1)
        tsd = topt.state_dict()
        with pytest.raises(ValueError, match="different number of parameter groups"):
            topt.load_state_dict({"state": {}, "param_groups": tsd["param_groups"] * 2})
        with pytest.raises(ValueError, match="doesn't match the size of optimizer's group"):
            topt.load_state_dict({"state": {}, "param_groups": [{**tsd["param_groups"][0],
                                                                  "params": [0]}]})


def test_base_optimizer_step_is_not_implemented():
    opt = fo.Optimizer([fo_param()], {"lr": 0.1})
    with pytest.raises(NotImplementedError):
        opt.step()


def test_step_pre_hook_with_a_bad_return_value():
    opt = _opt()
    opt.register_step_pre_hook(lambda o, a, k: "oops")
    with pytest.raises(RuntimeError, match=r"SGD\.step at 0x[0-9a-f]+> must return None or a tuple "
                                           r"of \(new_args, new_kwargs\), but got oops\."):
        opt.step()
    assert opt._step_count == 0


def test_no_warnings_for_valid_construction():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fo.SGD([fo_param()], lr=0.1, momentum=0.9, foreach=False, fused=True)
        fo.Adam([fo_param()], foreach=True)
        fo.AdamW([fo_param()], fused=False)
