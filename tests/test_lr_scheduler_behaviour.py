"""Warnings, construction errors and strict state loading of fastoptim.lr_scheduler.

The warning scenarios and the bad-argument table carry their expected results literally, so they
check fastoptim without torch; a second test runs each of them with torch and requires torch to
give exactly the same (which keeps the literals honest).
"""
import copy
import functools
import math
import warnings

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import lr_scheduler

import make_lr_golden as golden  # tests/golden, on sys.path via conftest.py

ORDER = "ORDER"
OVERRIDDEN = "OVERRIDDEN"
EPOCH = "EPOCH"
GET_LR = "GET_LR"
_SHORT = {
    lr_scheduler.STEP_ORDER_WARNING: ORDER,
    lr_scheduler.STEP_OVERRIDDEN_WARNING: OVERRIDDEN,
    lr_scheduler.EPOCH_DEPRECATION_WARNING: EPOCH,
    lr_scheduler.GET_LR_OUTSIDE_STEP_WARNING: GET_LR,
}


def sgd(b, groups=1, **kwargs):
    kwargs.setdefault("lr", 0.1)
    return b.optim.SGD([{"params": [b.make_param()]} for _ in range(groups)], **kwargs)


def adam(b, groups=1, **kwargs):
    kwargs.setdefault("lr", 0.01)
    return b.optim.Adam([{"params": [b.make_param()]} for _ in range(groups)], **kwargs)


def plain(b):
    """An optimizer with neither momentum nor betas (for the cycle_momentum errors)."""

    class Plain(b.optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {"lr": 0.1})

        def step(self, closure=None):
            return None

    return Plain([b.make_param()])


def opt_step(b, opt):
    golden.step_optimizer(b, opt)


def record_warnings(fn, *args):
    """Run ``fn`` and return its warnings, torch's texts abbreviated to ORDER/OVERRIDDEN/EPOCH/GET_LR."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn(*args)
    return [_SHORT.get(str(w.message), f"{w.category.__name__}: {w.message}") for w in caught]


# ---------------------------------------------------------------------------------------------
# Warnings: each scenario runs with a backend and states what it must warn
# ---------------------------------------------------------------------------------------------

WARNING_SCENARIOS = {}


def scenario(*expected):
    def register(fn):
        WARNING_SCENARIOS[fn.__name__] = (fn, list(expected))
        return fn

    return register


@scenario(ORDER)
def scheduler_stepped_three_times_before_optimizer(b):
    opt = sgd(b)
    sched = b.lr_scheduler.StepLR(opt, 1)
    for _ in range(3):
        sched.step()


@scenario(ORDER)
def wrong_order_once_then_right_order(b):
    opt = sgd(b)
    sched = b.lr_scheduler.StepLR(opt, 1)
    sched.step()
    for _ in range(3):
        opt_step(b, opt)
        sched.step()


@scenario()
def right_order(b):
    opt = sgd(b)
    sched = b.lr_scheduler.ExponentialLR(opt, 0.9)
    for _ in range(3):
        opt_step(b, opt)
        sched.step()


@scenario(ORDER, ORDER)
def two_schedulers_warn_once_each(b):
    opt = sgd(b)
    first = b.lr_scheduler.StepLR(opt, 1)
    second = b.lr_scheduler.ExponentialLR(opt, 0.9)
    for _ in range(2):
        first.step()
        second.step()


@scenario(OVERRIDDEN)
def optimizer_step_replaced_after_construction(b):
    opt = sgd(b)
    sched = b.lr_scheduler.StepLR(opt, 1)
    opt.step = functools.partial(type(opt).step, opt)
    for _ in range(3):
        opt_step(b, opt)
        sched.step()


@scenario(OVERRIDDEN)
def optimizer_step_replaced_and_not_called(b):
    opt = sgd(b)
    sched = b.lr_scheduler.CosineAnnealingLR(opt, 10)
    opt.step = functools.partial(type(opt).step, opt)
    sched.step()
    sched.step()


@scenario()
def plateau_never_warns_about_order(b):
    sched = b.lr_scheduler.ReduceLROnPlateau(sgd(b))
    for _ in range(3):
        sched.step(1.0)


@scenario()
def warm_restarts_never_warn_about_order(b):
    sched = b.lr_scheduler.CosineAnnealingWarmRestarts(sgd(b), 3)
    sched.step()
    sched.step()
    sched.step(1.5)


@scenario(ORDER, ORDER)
def sequential_itself_is_silent_but_its_children_warn(b):
    opt = sgd(b)
    ls = b.lr_scheduler
    sched = ls.SequentialLR(opt, [ls.ConstantLR(opt), ls.ExponentialLR(opt, 0.9)], [2])
    for _ in range(4):
        sched.step()


@scenario()
def sequential_right_order(b):
    opt = sgd(b)
    ls = b.lr_scheduler
    sched = ls.SequentialLR(opt, [ls.ConstantLR(opt), ls.ExponentialLR(opt, 0.9)], [2])
    for _ in range(4):
        opt_step(b, opt)
        sched.step()


@scenario(ORDER, ORDER)
def chained_itself_is_silent_but_its_children_warn(b):
    opt = sgd(b)
    ls = b.lr_scheduler
    sched = ls.ChainedScheduler([ls.ConstantLR(opt), ls.ExponentialLR(opt, 0.9)])
    for _ in range(3):
        sched.step()


@scenario()
def chained_right_order(b):
    opt = sgd(b)
    ls = b.lr_scheduler
    sched = ls.ChainedScheduler([ls.ConstantLR(opt), ls.ExponentialLR(opt, 0.9)])
    for _ in range(3):
        opt_step(b, opt)
        sched.step()


@scenario(ORDER)
def nested_sequential_warns_during_construction(b):
    # torch steps the inner SequentialLR's first child while building the outer one
    opt = sgd(b)
    ls = b.lr_scheduler
    inner = ls.SequentialLR(opt, [ls.ConstantLR(opt), ls.StepLR(opt, 2)], [3])
    sched = ls.SequentialLR(opt, [inner, ls.ExponentialLR(opt, 0.9)], [6])
    for _ in range(8):
        opt_step(b, opt)
        sched.step()


@scenario(EPOCH, EPOCH, EPOCH)
def epoch_argument_warns_every_time(b):
    opt = sgd(b)
    sched = b.lr_scheduler.StepLR(opt, 2)
    opt_step(b, opt)
    sched.step(3)
    sched.step(epoch=4)
    sched.step()
    sched.step(epoch=0)


@scenario(EPOCH, EPOCH)
def plateau_epoch_argument(b):
    sched = b.lr_scheduler.ReduceLROnPlateau(sgd(b))
    sched.step(1.0, epoch=3)
    sched.step(1.0, 4)
    sched.step(1.0)


@scenario()
def warm_restarts_epoch_argument_is_silent(b):
    opt = sgd(b)
    sched = b.lr_scheduler.CosineAnnealingWarmRestarts(opt, 3)
    opt_step(b, opt)
    sched.step(epoch=2)
    sched.step(0.5)


@scenario(GET_LR, GET_LR)
def get_lr_outside_step(b):
    opt = sgd(b)
    sched = b.lr_scheduler.StepLR(opt, 2)
    sched.get_lr()
    opt_step(b, opt)
    sched.step()
    sched.get_lr()


@scenario(GET_LR, GET_LR, GET_LR, GET_LR)
def get_lr_outside_step_other_classes(b):
    ls = b.lr_scheduler
    ls.CyclicLR(sgd(b, momentum=0.9), 0.01, 0.1, 2).get_lr()
    ls.CosineAnnealingWarmRestarts(sgd(b), 2).get_lr()
    ls.OneCycleLR(adam(b), 0.1, total_steps=10).get_lr()
    ls.LambdaLR(sgd(b), lambda e: 1.0).get_lr()


@scenario()
def get_last_lr_never_warns(b):
    sched = b.lr_scheduler.LinearLR(sgd(b))
    sched.get_last_lr()


@pytest.mark.parametrize("name", list(WARNING_SCENARIOS))
def test_warnings(name, fo_backend):
    fn, expected = WARNING_SCENARIOS[name]
    assert record_warnings(fn, fo_backend) == expected


@pytest.mark.parametrize("name", list(WARNING_SCENARIOS))
def test_warnings_match_torch(name, torch_backend):
    # record_warnings abbreviates only messages equal to fastoptim's constants, so this also
    # proves that torch's texts are exactly fastoptim's
    fn, expected = WARNING_SCENARIOS[name]
    assert record_warnings(fn, torch_backend) == expected


def test_warnings_point_at_the_callers_line(fo_backend):
    opt = sgd(fo_backend)
    sched = lr_scheduler.StepLR(opt, 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sched.get_lr()
        sched.step()
        sched.step(epoch=3)
    assert [_SHORT[str(w.message)] for w in caught] == [GET_LR, ORDER, EPOCH]
    assert {w.filename for w in caught} == {__file__}


def test_order_warning_is_per_scheduler_not_per_optimizer(fo_backend):
    """Deliberate difference: torch never warns once the optimizer has stepped at all."""
    opt = sgd(fo_backend)
    opt_step(fo_backend, opt)  # torch sets its never-reset flag here
    sched = lr_scheduler.StepLR(opt, 2)
    assert record_warnings(sched.step) == [ORDER]
    late = lr_scheduler.StepLR(opt, 2)
    opt_step(fo_backend, opt)
    assert record_warnings(late.step) == []


def test_step_replaced_before_construction_does_not_warn(fo_backend):
    # torch cannot even build a scheduler here (it unwraps `opt.step.__func__` of the partial)
    opt = sgd(fo_backend)
    opt.step = functools.partial(type(opt).step, opt)
    sched = lr_scheduler.StepLR(opt, 2)
    opt_step(fo_backend, opt)
    assert record_warnings(sched.step) == []


def test_swapping_the_class_step_is_detected(fo_backend):
    class MySGD(fo.SGD):
        pass

    opt = MySGD([fo.Parameter(np.zeros(2))], lr=0.1)
    sched = lr_scheduler.ExponentialLR(opt, 0.9)
    original = fo.SGD.step
    MySGD.step = lambda self, closure=None: original(self, closure)
    opt_step(fo_backend, opt)
    assert record_warnings(sched.step) == [OVERRIDDEN]
    assert record_warnings(sched.step) == []


def test_removing_the_instance_step_is_detected(fo_backend):
    opt = sgd(fo_backend)
    opt.step = functools.partial(type(opt).step, opt)
    sched = lr_scheduler.StepLR(opt, 2)
    del opt.step
    opt_step(fo_backend, opt)
    assert record_warnings(sched.step) == [OVERRIDDEN]


def test_the_optimizer_is_never_patched(fo_backend):
    opt = sgd(fo_backend)
    before = dict(vars(opt))
    sched = lr_scheduler.CyclicLR(opt, 0.01, 0.1, cycle_momentum=False)
    opt_step(fo_backend, opt)
    sched.step()
    assert "step" not in vars(opt)
    assert set(vars(opt)) == set(before)
    assert type(opt).step is fo.SGD.step


def test_an_optimizer_step_without_gradients_counts(fo_backend):
    opt = sgd(fo_backend)
    sched = lr_scheduler.StepLR(opt, 2)
    opt.param_groups[0]["params"][0].grad = None
    opt.step()  # no gradient: a completed step that updates nothing still counts, as in torch
    assert record_warnings(sched.step) == []


# ---------------------------------------------------------------------------------------------
# Construction errors: torch's types and messages
# ---------------------------------------------------------------------------------------------

ERRORS = {}


def error(exc_type, message):
    def register(fn):
        ERRORS[fn.__name__] = (fn, exc_type, message)
        return fn

    return register


@error(TypeError, "object is not an Optimizer")
def base_not_an_optimizer(b, ctx):
    b.lr_scheduler.StepLR(object(), 3)


@error(TypeError, "object is not an Optimizer")
def cyclic_not_an_optimizer(b, ctx):
    b.lr_scheduler.CyclicLR(object(), 0.01, 0.1)


@error(TypeError, "object is not an Optimizer")
def one_cycle_not_an_optimizer(b, ctx):
    b.lr_scheduler.OneCycleLR(object(), 0.1, 10)


@error(TypeError, "object is not an Optimizer")
def plateau_not_an_optimizer(b, ctx):
    b.lr_scheduler.ReduceLROnPlateau(object())


@error(ValueError, "Factor should be < 1.0.")
def plateau_factor_checked_before_optimizer(b, ctx):
    b.lr_scheduler.ReduceLROnPlateau(object(), factor=1.0)


@error(ValueError, "expected 2 min_lrs, got 1")
def plateau_min_lr_list(b, ctx):
    b.lr_scheduler.ReduceLROnPlateau(sgd(b, groups=2), min_lr=[0.1])


@error(ValueError, "mode maximum is unknown!")
def plateau_mode(b, ctx):
    b.lr_scheduler.ReduceLROnPlateau(sgd(b), mode="maximum")


@error(ValueError, "threshold mode relative is unknown!")
def plateau_threshold_mode(b, ctx):
    b.lr_scheduler.ReduceLROnPlateau(sgd(b), threshold_mode="relative")


@error(KeyError, "param 'initial_lr' is not specified in param_groups[0] when resuming scheduler with "
       "last_epoch >= 0.\nThis typically happens when:\n1. You're trying to resume training from a "
       "checkpoint but haven't properly loaded the optimizer state\n2. You're using last_epoch >= 0 for "
       "a fresh training run (not recommended)")
def resume_without_initial_lr(b, ctx):
    b.lr_scheduler.StepLR(sgd(b), 3, last_epoch=5)


@error(ValueError, "Expected 2 lr_lambdas, but got 1")
def lambda_list_length(b, ctx):
    b.lr_scheduler.LambdaLR(sgd(b, groups=2), [lambda e: 1.0])


@error(ValueError, "Expected 1 lr_lambdas, but got 2")
def multiplicative_list_length(b, ctx):
    b.lr_scheduler.MultiplicativeLR(sgd(b), (lambda e: 1.0, lambda e: 1.0))


@error(TypeError, "lr_lambda should be a function, but got float")
def multiplicative_not_callable(b, ctx):
    b.lr_scheduler.MultiplicativeLR(sgd(b), 0.9)


@error(ValueError, "Constant multiplicative factor expected to be between 0 and 1.")
def constant_factor_above_one(b, ctx):
    b.lr_scheduler.ConstantLR(sgd(b), factor=1.5)


@error(ValueError, "Constant multiplicative factor expected to be between 0 and 1.")
def constant_factor_negative(b, ctx):
    b.lr_scheduler.ConstantLR(sgd(b), factor=-0.1)


@error(ValueError, "Starting multiplicative factor expected to be greater than 0 and less or equal to 1.")
def linear_start_zero(b, ctx):
    b.lr_scheduler.LinearLR(sgd(b), start_factor=0)


@error(ValueError, "Starting multiplicative factor expected to be greater than 0 and less or equal to 1.")
def linear_start_above_one(b, ctx):
    b.lr_scheduler.LinearLR(sgd(b), start_factor=1.01)


@error(ValueError, "Ending multiplicative factor expected to be between 0 and 1.")
def linear_end_negative(b, ctx):
    b.lr_scheduler.LinearLR(sgd(b), end_factor=-0.5)


@error(ValueError, "Ending multiplicative factor expected to be between 0 and 1.")
def linear_end_above_one(b, ctx):
    b.lr_scheduler.LinearLR(sgd(b), end_factor=2.0)


@error(ValueError, "Expected positive integer T_0, but got 0")
def warm_restarts_T_0_zero(b, ctx):
    b.lr_scheduler.CosineAnnealingWarmRestarts(sgd(b), 0)


@error(ValueError, "Expected positive integer T_0, but got 2.0")
def warm_restarts_T_0_float(b, ctx):
    b.lr_scheduler.CosineAnnealingWarmRestarts(sgd(b), 2.0)


@error(ValueError, "Expected integer T_mult >= 1, but got 0")
def warm_restarts_T_mult_zero(b, ctx):
    b.lr_scheduler.CosineAnnealingWarmRestarts(sgd(b), 2, T_mult=0)


@error(ValueError, "Expected integer T_mult >= 1, but got 1.5")
def warm_restarts_T_mult_float(b, ctx):
    b.lr_scheduler.CosineAnnealingWarmRestarts(sgd(b), 2, T_mult=1.5)


@error(ValueError, "Expected float or int eta_min, but got 0.1 of type <class 'str'>")
def warm_restarts_eta_min(b, ctx):
    b.lr_scheduler.CosineAnnealingWarmRestarts(sgd(b), 2, eta_min="0.1")


@error(ValueError, "Expected non-negative epoch, but got -1")
def warm_restarts_negative_epoch(b, ctx):
    b.lr_scheduler.CosineAnnealingWarmRestarts(sgd(b), 2).step(-1)


@error(ValueError, "mode is invalid and scale_fn is None")
def cyclic_mode(b, ctx):
    b.lr_scheduler.CyclicLR(sgd(b), 0.01, 0.1, mode="square")


@error(ValueError, "optimizer must support momentum or beta1 with `cycle_momentum` option enabled")
def cyclic_momentum_unsupported(b, ctx):
    b.lr_scheduler.CyclicLR(plain(b), 0.01, 0.1)


@error(ValueError, "base_lr must have the same length as optimizer.param_groups. base_lr has 3 values, "
       "param_groups has 2.")
def cyclic_base_lr_length(b, ctx):
    b.lr_scheduler.CyclicLR(sgd(b, groups=2, momentum=0.9), [0.1, 0.2, 0.3], 1.0)


@error(ValueError, "max_lr must have the same length as optimizer.param_groups. max_lr has 1 values, "
       "param_groups has 2.")
def cyclic_max_lr_length(b, ctx):
    b.lr_scheduler.CyclicLR(sgd(b, groups=2, momentum=0.9), 0.1, [1.0])


@error(ValueError, "max_momentum must have the same length as optimizer.param_groups. max_momentum has 2 "
       "values, param_groups has 1.")
def cyclic_max_momentum_length(b, ctx):
    b.lr_scheduler.CyclicLR(sgd(b, momentum=0.9), 0.1, 1.0, max_momentum=[0.9, 0.95])


@error(ValueError, "Expected positive integer total_steps, but got 0")
def one_cycle_total_steps_zero(b, ctx):
    b.lr_scheduler.OneCycleLR(sgd(b, momentum=0.9), 0.1, total_steps=0)


@error(ValueError, "Expected positive integer total_steps, but got 10.0")
def one_cycle_total_steps_float(b, ctx):
    b.lr_scheduler.OneCycleLR(sgd(b, momentum=0.9), 0.1, total_steps=10.0)


@error(ValueError, "Expected positive integer epochs, but got 0")
def one_cycle_epochs(b, ctx):
    b.lr_scheduler.OneCycleLR(sgd(b, momentum=0.9), 0.1, epochs=0, steps_per_epoch=5)


@error(ValueError, "Expected positive integer steps_per_epoch, but got -1")
def one_cycle_steps_per_epoch(b, ctx):
    b.lr_scheduler.OneCycleLR(sgd(b, momentum=0.9), 0.1, epochs=2, steps_per_epoch=-1)


@error(ValueError, "You must define either total_steps OR (epochs AND steps_per_epoch)")
def one_cycle_no_length(b, ctx):
    b.lr_scheduler.OneCycleLR(sgd(b, momentum=0.9), 0.1, epochs=3)


@error(ValueError, "Expected float between 0 and 1 pct_start, but got 1")
def one_cycle_pct_start_int(b, ctx):
    b.lr_scheduler.OneCycleLR(sgd(b, momentum=0.9), 0.1, 10, pct_start=1)


@error(ValueError, "Expected float between 0 and 1 pct_start, but got 1.5")
def one_cycle_pct_start_range(b, ctx):
    b.lr_scheduler.OneCycleLR(sgd(b, momentum=0.9), 0.1, 10, pct_start=1.5)


@error(ValueError, "anneal_strategy must be one of 'cos' or 'linear', instead got exp")
def one_cycle_anneal_strategy(b, ctx):
    b.lr_scheduler.OneCycleLR(sgd(b, momentum=0.9), 0.1, 10, anneal_strategy="exp")


@error(ValueError, "optimizer must support momentum or beta1 with `cycle_momentum` option enabled")
def one_cycle_momentum_unsupported(b, ctx):
    b.lr_scheduler.OneCycleLR(plain(b), 0.1, 10)


@error(ValueError, "Tried to step 4 times. The specified number of total steps is 3")
def one_cycle_past_the_end(b, ctx):
    opt = adam(b)
    sched = b.lr_scheduler.OneCycleLR(opt, 0.1, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(4):
            sched.step()


@error(ValueError, "SequentialLR expects at least one scheduler, but got no scheduler.")
def sequential_empty(b, ctx):
    b.lr_scheduler.SequentialLR(sgd(b), [], [])


@error(TypeError, "SequentialLR at index 1 should have `optimizer` as its attribute.")
def sequential_child_without_optimizer(b, ctx):
    opt = sgd(b)
    b.lr_scheduler.SequentialLR(opt, [b.lr_scheduler.StepLR(opt, 2), object()], [3])


@error(ValueError, "SequentialLR does not support `ReduceLROnPlateau` scheduler as it requires additional "
       "kwargs to be specified when calling `step`, but got one at index 0 in the given schedulers sequence.")
def sequential_plateau_child(b, ctx):
    opt = sgd(b)
    b.lr_scheduler.SequentialLR(opt, [b.lr_scheduler.ReduceLROnPlateau(opt)], [])


@error(ValueError, "SequentialLR expects all schedulers to belong to the same optimizer, but got scheduler "
       "ExponentialLR at index 1 has {other}, which is different from SGD.")
def sequential_other_optimizer(b, ctx):
    opt, ctx["other"] = sgd(b), sgd(b)
    ls = b.lr_scheduler
    ls.SequentialLR(opt, [ls.StepLR(opt, 2), ls.ExponentialLR(ctx["other"], 0.9)], [3])


@error(ValueError, "Sequential Schedulers expects number of schedulers provided to be one more than the "
       "number of milestone points, but got number of schedulers 2 and the number of milestones to be "
       "equal to 2")
def sequential_milestones(b, ctx):
    opt = sgd(b)
    ls = b.lr_scheduler
    ls.SequentialLR(opt, [ls.StepLR(opt, 2), ls.ExponentialLR(opt, 0.9)], [3, 5])


@error(ValueError, "ChainedScheduler expects at least one scheduler to be chained, but got no scheduler.")
def chained_empty(b, ctx):
    b.lr_scheduler.ChainedScheduler([])


@error(TypeError, "ChainedScheduler at index 1 should have `optimizer` as its attribute.")
def chained_child_without_optimizer(b, ctx):
    b.lr_scheduler.ChainedScheduler([b.lr_scheduler.StepLR(sgd(b), 2), 3.0])


@error(ValueError, "ChainedScheduler does not support `ReduceLROnPlateau` scheduler as it requires "
       "additional kwargs to be specified when calling `step`, but got one at index 1 in the given "
       "schedulers sequence.")
def chained_plateau_child(b, ctx):
    opt = sgd(b)
    b.lr_scheduler.ChainedScheduler([b.lr_scheduler.StepLR(opt, 2), b.lr_scheduler.ReduceLROnPlateau(opt)])


@error(ValueError, "ChainedScheduler expects all schedulers to belong to the same optimizer, but got "
       "scheduler StepLR at index 0 has {other}, which is different from SGD.")
def chained_other_optimizer(b, ctx):
    opt, ctx["other"] = sgd(b), sgd(b)
    b.lr_scheduler.ChainedScheduler([b.lr_scheduler.StepLR(ctx["other"], 2)], optimizer=opt)


@error(NotImplementedError, "")
def base_get_lr_is_abstract(b, ctx):
    class NoGetLR(b.lr_scheduler.LRScheduler):
        pass

    NoGetLR(sgd(b))


def _raise(b, name):
    fn, exc_type, message = ERRORS[name]
    ctx = {}
    with pytest.raises(exc_type) as info:
        fn(b, ctx)
    expected = message.format(**{key: repr(value) for key, value in ctx.items()})
    actual = info.value.args[0] if info.value.args else ""
    return type(info.value), actual, exc_type, expected


@pytest.mark.parametrize("name", list(ERRORS))
def test_construction_errors(name, fo_backend):
    actual_type, actual, expected_type, expected = _raise(fo_backend, name)
    assert actual_type is expected_type
    assert actual == expected


@pytest.mark.parametrize("name", list(ERRORS))
def test_construction_errors_match_torch(name, torch_backend):
    actual_type, actual, expected_type, expected = _raise(torch_backend, name)
    assert actual_type is expected_type
    assert actual == expected


# ---------------------------------------------------------------------------------------------
# Stricter than torch
# ---------------------------------------------------------------------------------------------


def test_invalid_cyclic_and_one_cycle_leave_the_optimizer_untouched(fo_backend):
    opt = sgd(fo_backend, groups=2)
    before = copy.deepcopy([{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups])
    attempts = [
        lambda: lr_scheduler.CyclicLR(opt, 0.01, 0.1, mode="square"),
        lambda: lr_scheduler.CyclicLR(opt, 0.01, [0.1]),
        lambda: lr_scheduler.CyclicLR(plain(fo_backend), 0.01, 0.1),
        lambda: lr_scheduler.CyclicLR(opt, 0.01, 0.1, last_epoch=0.5),
        lambda: lr_scheduler.OneCycleLR(opt, 0.1, 10, max_momentum=[0.9]),
        lambda: lr_scheduler.OneCycleLR(opt, [0.1], 10),
    ]
    for attempt in attempts:
        with pytest.raises((TypeError, ValueError)):
            attempt()
        assert [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups] == before


@pytest.mark.parametrize("last_epoch", [2.5, 3.0, "3", True, None])
def test_last_epoch_must_be_an_integer(fo_backend, last_epoch):
    opt = sgd(fo_backend)
    opt.param_groups[0]["initial_lr"] = 0.1
    with pytest.raises(TypeError, match="last_epoch must be an integer"):
        lr_scheduler.StepLR(opt, 3, last_epoch=last_epoch)


def test_numpy_integer_last_epoch_and_epoch_are_accepted(fo_backend):
    opt = sgd(fo_backend)
    opt.param_groups[0]["initial_lr"] = 0.1
    sched = lr_scheduler.StepLR(opt, 2, 0.5, last_epoch=np.int64(3))
    assert sched.last_epoch == 4 and type(sched.last_epoch) is int
    opt_step(fo_backend, opt)
    with pytest.warns(UserWarning, match="The epoch parameter"):
        sched.step(np.int32(6))
    assert sched.last_epoch == 6 and type(sched.last_epoch) is int
    assert sched.get_last_lr() == [0.1 * 0.5**3]


@pytest.mark.parametrize("epoch", [2.5, "3", True])
def test_epoch_argument_must_be_an_integer_and_changes_nothing(fo_backend, epoch):
    opt = sgd(fo_backend)
    sched = lr_scheduler.StepLR(opt, 2)
    plateau = lr_scheduler.ReduceLROnPlateau(opt)
    before = (sched.state_dict(), plateau.state_dict())
    with pytest.raises(TypeError, match="epoch must be an integer"):
        sched.step(epoch)
    with pytest.raises(TypeError, match="epoch must be an integer"):
        plateau.step(1.0, epoch)
    assert (sched.state_dict(), plateau.state_dict()) == before


def test_warm_restarts_accept_fractional_epochs_but_not_other_types(fo_backend):
    sched = lr_scheduler.CosineAnnealingWarmRestarts(sgd(fo_backend), 3)
    sched.step(np.float64(1.25))
    assert sched.last_epoch == 1 and sched.T_cur == 1.25
    with pytest.raises(TypeError, match="epoch must be a real number"):
        sched.step("2")
    assert sched.last_epoch == 1 and sched.T_cur == 1.25


@pytest.mark.parametrize("make", [lambda o: lr_scheduler.LambdaLR(o, lambda e: 0.9**e),
                                  lambda o: lr_scheduler.CyclicLR(o, 0.01, 0.1, cycle_momentum=False)])
def test_param_groups_added_after_construction_are_reported(fo_backend, make):
    # torch raises a bare "zip() argument 2 is shorter than argument 1" here
    opt = sgd(fo_backend)
    sched = make(opt)
    opt.add_param_group({"params": [fo.Parameter(np.zeros(2))]})
    opt_step(fo_backend, opt)
    with pytest.raises(ValueError, match="computed 1 learning rates for 2 param groups"):
        sched.step()


def test_zero_dim_array_lrs_are_updated_in_place(fo_backend):
    """A 0-d array lr is filled in place (torch's Tensor path); the values equal the float run."""
    float_opt = sgd(fo_backend, groups=2)
    array_opt = sgd(fo_backend, groups=2)
    arrays = [np.array(0.1), np.array(0.01)]
    for group, array, float_group in zip(array_opt.param_groups, arrays, float_opt.param_groups):
        group["lr"] = array
        float_group["lr"] = float(array)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no optimizer steps here: the order warning is expected
        float_sched = lr_scheduler.CosineAnnealingLR(float_opt, 10, 1e-3)
        array_sched = lr_scheduler.CosineAnnealingLR(array_opt, 10, 1e-3)
        for _ in range(15):
            float_sched.step()
            array_sched.step()
            for group, array in zip(array_opt.param_groups, arrays):
                assert group["lr"] is array
            assert [float(g["lr"]) for g in array_opt.param_groups] == [g["lr"] for g in float_opt.param_groups]
            last = array_sched.get_last_lr()
            assert all(isinstance(v, np.ndarray) and v is not a for v, a in zip(last, arrays))
    assert array_opt.param_groups[0]["initial_lr"] is not arrays[0]
    restored = lr_scheduler.CosineAnnealingLR(array_opt, 10, 1e-3)
    restored.load_state_dict(array_sched.state_dict())
    assert [float(v) for v in restored.base_lrs] == [0.1, 0.01]


def test_get_last_lr_is_not_changed_by_later_steps(fo_backend):
    opt = sgd(fo_backend)
    sched = lr_scheduler.ExponentialLR(opt, 0.5)
    first = sched.get_last_lr()
    opt_step(fo_backend, opt)
    sched.step()
    assert first == [0.1] and sched.get_last_lr() == [0.05]


def test_state_dict_is_a_copy(fo_backend):
    opt = sgd(fo_backend, groups=2)
    sched = lr_scheduler.MultiStepLR(opt, [3, 6], 0.5)
    state = sched.state_dict()
    state["base_lrs"].append(1.0)
    state["milestones"][100] = 1
    assert sched.base_lrs == [0.1, 0.1] and 100 not in sched.milestones


def test_callable_object_state_is_saved_and_restored(fo_backend):
    opt = sgd(fo_backend, groups=2)
    plain_fn = lambda e: 1.0  # noqa: E731
    sched = lr_scheduler.LambdaLR(opt, [golden.Halving(0.9), plain_fn])
    sched.lr_lambdas[0].scale = 0.25
    state = sched.state_dict()
    assert state["lr_lambdas"] == [{"rate": 0.9, "scale": 0.25}, None]

    other = lr_scheduler.LambdaLR(sgd(fo_backend, groups=2), [golden.Halving(0.9), plain_fn])
    other.load_state_dict(state)
    assert other.lr_lambdas[0].scale == 0.25
    state["lr_lambdas"][0]["scale"] = 0.5  # the scheduler did not alias the dict
    assert other.lr_lambdas[0].scale == 0.25


def test_builtin_lr_lambda_state_dict(fo_backend):
    # torch raises here (a builtin has no __dict__); fastoptim saves None as for a function
    sched = lr_scheduler.MultiplicativeLR(sgd(fo_backend), abs)
    assert sched.state_dict()["lr_lambdas"] == [None]


# ---------------------------------------------------------------------------------------------
# load_state_dict: strict and all-or-nothing
# ---------------------------------------------------------------------------------------------


def _groups(opt):
    return copy.deepcopy([{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups])


def _scheduler_for(case_name, fo_backend, steps=7):
    case = golden.CASES_BY_NAME[case_name]
    run = golden.run(case, fo_backend, steps=steps)
    return run.scheduler, run.optimizer


def assert_refused(sched, opt, state, exc_type, *fragments):
    """Loading ``state`` raises ``exc_type`` naming every fragment, and changes nothing at all."""
    before_state = sched.state_dict()
    before_groups = _groups(opt)
    before_input = copy.deepcopy(state)
    with pytest.raises(exc_type) as info:
        sched.load_state_dict(state)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert sched.state_dict() == before_state
    assert _groups(opt) == before_groups
    assert state == before_input
    return message


@pytest.mark.parametrize("case", golden.CASES, ids=lambda case: case.name)
def test_load_own_state_dict_leaves_input_untouched(case, fo_backend):
    run = golden.run(case, fo_backend, steps=5)
    state = run.scheduler.state_dict()
    snapshot = copy.deepcopy(state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimizer, scheduler = golden.make(case, fo_backend)
    scheduler.load_state_dict(state)
    assert state == snapshot
    assert scheduler.state_dict() == state


@pytest.mark.parametrize("case", golden.CASES, ids=lambda case: case.name)
def test_unknown_and_missing_keys_are_refused(case, fo_backend):
    run = golden.run(case, fo_backend, steps=5)
    sched, opt = run.scheduler, run.optimizer
    state = sched.state_dict()
    state["momentum_typo"] = 1
    assert_refused(sched, opt, state, ValueError, "unknown key(s) 'momentum_typo'", type(sched).__name__)
    state = sched.state_dict()
    key = "last_epoch" if "last_epoch" in state else "_last_lr"
    del state[key]
    assert_refused(sched, opt, state, ValueError, f"missing key(s) '{key}'")


@pytest.mark.parametrize(
    "value, exc_type, fragment",
    [(2.5, TypeError, "must be an integer"), ("3", TypeError, "must be an integer"),
     (True, TypeError, "must be an integer"), (None, TypeError, "must be an integer")],
)
@pytest.mark.parametrize("case_name", ["StepLR/two-groups", "ReduceLROnPlateau/noisy-loss",
                                       "CosineAnnealingWarmRestarts/T3-mult2", "SequentialLR/linear-then-exp"])
def test_non_integer_last_epoch_is_refused(case_name, value, exc_type, fragment, fo_backend):
    sched, opt = _scheduler_for(case_name, fo_backend)
    state = sched.state_dict()
    state["last_epoch"] = value
    assert_refused(sched, opt, state, exc_type, "'last_epoch'", fragment)


@pytest.mark.parametrize("key", ["base_lrs", "_last_lr"])
def test_per_group_lists_are_checked(key, fo_backend):
    sched, opt = _scheduler_for("StepLR/two-groups", fo_backend)
    for bad, exc_type, fragment in [
        ([0.1], ValueError, "has 1 values, but the optimizer has param groups: 2"),
        ([0.1, 0.1, 0.1], ValueError, "has 3 values"),
        ([0.1, "0.1"], TypeError, f"'{key}'[1] must be a real number"),
        ([0.1, None], TypeError, f"'{key}'[1] must be a real number"),
        ([0.1, True], TypeError, f"'{key}'[1] must be a real number"),
        (0.1, TypeError, "must be a list of real numbers"),
    ]:
        state = sched.state_dict()
        state[key] = bad
        assert_refused(sched, opt, state, exc_type, f"StepLR.load_state_dict: '{key}'", fragment)


def test_numpy_numbers_are_accepted(fo_backend):
    sched, opt = _scheduler_for("StepLR/two-groups", fo_backend)
    state = sched.state_dict()
    state["base_lrs"] = [np.float64(0.1), np.float32(0.01)]
    state["last_epoch"] = np.int64(state["last_epoch"])
    sched.load_state_dict(state)
    assert type(sched.last_epoch) is int


def test_a_bad_child_state_changes_no_scheduler(fo_backend):
    sched, opt = _scheduler_for("SequentialLR/nested-sequential", fo_backend)
    state = sched.state_dict()
    state["last_epoch"] = 99  # valid, and would be applied first by a naive loader
    state["_schedulers"][0]["_schedulers"][1]["factor"] = "half"
    message = assert_refused(sched, opt, state, TypeError, "_schedulers[0]", "_schedulers[1]", "'factor'")
    assert message.startswith("SequentialLR.load_state_dict: _schedulers[0]: SequentialLR.load_state_dict:")

    state = sched.state_dict()
    state["_schedulers"] = state["_schedulers"][:1]
    assert_refused(sched, opt, state, ValueError, "'_schedulers' must be a list of 2 child state dicts")
    state = sched.state_dict()
    state["_milestones"] = [20, 30]
    assert_refused(sched, opt, state, ValueError, "needs 1")


def test_chained_child_errors_are_all_or_nothing(fo_backend):
    sched, opt = _scheduler_for("ChainedScheduler/nested", fo_backend)
    state = sched.state_dict()
    state["_last_lr"] = [1.0]
    state["_schedulers"][1]["_schedulers"][0]["total_iters"] = [6]
    assert_refused(sched, opt, state, TypeError, "_schedulers[1]", "'total_iters' must be a real number")


def test_range_checks_match_the_constructors(fo_backend):
    cases = [
        ("ConstantLR/half-4", "factor", 1.5, "Constant multiplicative factor expected to be between 0 and 1."),
        ("LinearLR/warmup-4", "start_factor", 0.0, "Starting multiplicative factor expected"),
        ("LinearLR/warmup-4", "end_factor", -1.0, "Ending multiplicative factor expected"),
        ("CosineAnnealingWarmRestarts/T3-mult2", "T_0", 0, "Expected positive integer T_0, but got 0"),
        ("CosineAnnealingWarmRestarts/T3-mult2", "T_mult", 0, "Expected integer T_mult >= 1, but got 0"),
        ("ReduceLROnPlateau/noisy-loss", "factor", 1.0, "Factor should be < 1.0."),
        ("ReduceLROnPlateau/noisy-loss", "mode", "maximum", "must be one of 'min', 'max'"),
        ("ReduceLROnPlateau/noisy-loss", "threshold_mode", "relative", "must be one of 'rel', 'abs'"),
        ("ReduceLROnPlateau/noisy-loss", "num_bad_epochs", -1, "must be >= 0"),
        ("StepLR/two-groups", "_step_count", -1, "must be >= 0"),
        ("CyclicLR/exp_range-adam-betas", "mode", "square", "mode must be 'triangular'"),
        ("CyclicLR/exp_range-adam-betas", "scale_mode", "epochs", "must be one of 'cycle', 'iterations'"),
        ("OneCycleLR/epochs-adam-betas", "total_steps", 0, "must be > 0"),
        ("OneCycleLR/epochs-adam-betas", "_anneal_func_type", "exp", "must be one of 'cos', 'linear'"),
        ("OneCycleLR/epochs-adam-betas", "_schedule_phases", [{"end_step": 1.0}], "'_schedule_phases'[0]"),
    ]
    for case_name, key, value, fragment in cases:
        sched, opt = _scheduler_for(case_name, fo_backend)
        state = sched.state_dict()
        state[key] = value
        assert_refused(sched, opt, state, ValueError, f"'{key}'", fragment)


def test_type_checks_of_class_keys(fo_backend):
    cases = [
        ("MultiStepLR/repeated-milestone", "milestones", [2, 5], "must be a Counter"),
        ("MultiStepLR/repeated-milestone", "milestones", {2: 1.5}, "must map milestones"),
        ("ExponentialLR/gamma09", "gamma", "0.9", "must be a real number"),
        ("CosineAnnealingLR/T4-eta001", "T_max", None, "must be a real number"),
        ("CyclicLR/triangular2-sgd-momentum", "cycle_momentum", 1, "must be a bool"),
        ("CyclicLR/triangular2-sgd-momentum", "max_momentums", [0.9], "has 1 values"),
        ("ReduceLROnPlateau/noisy-loss", "best", "inf", "must be a real number"),
        ("ReduceLROnPlateau/noisy-loss", "default_min_lr", [0.0], "must be a real number"),
        ("LambdaLR/exp095", "lr_lambdas", [None, None], "has 2 entries"),
        ("LambdaLR/callable-object-state", "lr_lambdas", [["scale", 1.0]], "must be None or a dict"),
    ]
    for case_name, key, value, fragment in cases:
        sched, opt = _scheduler_for(case_name, fo_backend)
        state = sched.state_dict()
        state[key] = value
        assert_refused(sched, opt, state, (TypeError, ValueError), f"'{key}'", fragment)


def test_callable_state_for_a_plain_function_is_refused(fo_backend):
    sched, opt = _scheduler_for("LambdaLR/exp095", fo_backend)
    state = sched.state_dict()
    state["lr_lambdas"] = [{"rate": 0.5}]
    assert_refused(sched, opt, state, ValueError, "'lr_lambdas'[0] holds the attributes of a callable object")
    sched, opt = _scheduler_for("CyclicLR/exp_range-adam-betas", fo_backend)
    state = sched.state_dict()
    state["_scale_fn_custom"] = {"damping": 0.1}
    assert_refused(sched, opt, state, ValueError, "'_scale_fn_custom' holds the attributes")


def test_plateau_min_lrs_must_match_groups_when_given_per_group(fo_backend):
    sched, opt = _scheduler_for("ReduceLROnPlateau/max-abs-cooldown-two-groups", fo_backend)
    state = sched.state_dict()
    state["min_lrs"] = [0.001]
    assert_refused(sched, opt, state, ValueError, "'min_lrs' has 1 values for 2 param groups")


def test_cyclic_momentum_state_needs_a_momentum_optimizer(fo_backend):
    sched, opt = _scheduler_for("CyclicLR/exp_range-adam-betas", fo_backend)
    state = sched.state_dict()
    state["use_beta1"] = False  # would cycle group["momentum"], which Adam groups do not have
    assert_refused(sched, opt, state, ValueError, "cycles 'momentum'")
    state = sched.state_dict()
    del state["base_momentums"]
    assert_refused(sched, opt, state, ValueError, "'base_momentums'")


def test_cyclic_without_momentum_can_load_a_state_with_momentum(fo_backend):
    opt = sgd(fo_backend, momentum=0.9)
    source = lr_scheduler.CyclicLR(opt, 0.01, 0.1, 4)
    target = lr_scheduler.CyclicLR(sgd(fo_backend, momentum=0.9), 0.01, 0.1, 4, cycle_momentum=False)
    target.load_state_dict(source.state_dict())
    assert target.cycle_momentum and target.use_beta1 is False


def test_state_dict_must_be_a_mapping(fo_backend):
    sched = lr_scheduler.StepLR(sgd(fo_backend), 2)
    with pytest.raises(TypeError, match="expects the dict returned by state_dict"):
        sched.load_state_dict([("last_epoch", 3)])


def test_torch_state_dicts_of_every_class_load(torch_backend, fo_backend):
    """torch's state dicts (Counter milestones, None lambdas, ...) pass the strict checks."""
    for case in golden.CASES:
        torch_run = golden.run(case, torch_backend, steps=6)
        fo_run = golden.run(case, fo_backend, steps=6)
        state = torch_run.scheduler.state_dict()
        fo_run.scheduler.load_state_dict(state)
        assert fo_run.scheduler.state_dict() == state, case.name


def test_plateau_resume_keeps_reducing_like_an_uninterrupted_run(fo_backend):
    metrics = [1.0] * 30
    opt = sgd(fo_backend)
    sched = lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2, cooldown=1, min_lr=1e-3)
    uninterrupted = []
    for m in metrics:
        sched.step(m)
        uninterrupted.append(opt.param_groups[0]["lr"])

    opt = sgd(fo_backend)
    sched = lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2, cooldown=1, min_lr=1e-3)
    resumed = []
    for i, m in enumerate(metrics):
        if i == 11:
            opt_state, sched_state = copy.deepcopy(opt.state_dict()), copy.deepcopy(sched.state_dict())
            opt = sgd(fo_backend)
            sched = lr_scheduler.ReduceLROnPlateau(opt)  # other arguments: the state decides
            opt.load_state_dict(opt_state)
            sched.load_state_dict(sched_state)
        sched.step(m)
        resumed.append(opt.param_groups[0]["lr"])
    assert resumed == uninterrupted
    assert math.isclose(uninterrupted[-1], 1e-3)


def test_state_dicts_survive_a_safe_checkpoint_round_trip(fo_backend, tmp_path):
    """Every scheduler's state dict is made of types ``fo.save``/``fo.load`` keep in safe mode."""
    save, load = getattr(fo, "save", None), getattr(fo, "load", None)
    if save is None or load is None:  # until the package exports them (API.md: fo.save / fo.load)
        checkpoint = pytest.importorskip("fastoptim.checkpoint")
        save, load = checkpoint.save, checkpoint.load
    for case in golden.CASES:
        run = golden.run(case, fo_backend, steps=8)
        path = tmp_path / "ckpt"
        save({"scheduler": run.scheduler.state_dict(), "optimizer": run.optimizer.state_dict()}, path)
        loaded = load(path)  # weights_only=True
        assert loaded["scheduler"] == run.scheduler.state_dict(), case.name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optimizer, scheduler = golden.make(case, fo_backend)
        optimizer.load_state_dict(loaded["optimizer"])
        scheduler.load_state_dict(loaded["scheduler"])
        assert scheduler.state_dict() == run.scheduler.state_dict(), case.name
