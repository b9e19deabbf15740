"""Reproducers of issue 17's optimizer findings, each of which failed before: threads stepping one
optimizer, duplicate and overlapping parameters entering after construction, state arrays shared
between parameters, and the loose ends of "nothing changed on error"."""
import copy
import os
import pickle
import signal
import threading
import time

import numpy as np
import pytest

import fastoptim as fo
from fastoptim.optim.registry import OPTIMIZERS

from reference import bits

INFOS = list(OPTIMIZERS.values())


def _params(*sizes, dtype=np.float64):
    rng = np.random.default_rng(sum(sizes))
    return [fo.Parameter(rng.standard_normal(n).astype(dtype)) for n in sizes]


def _grads(ps):
    for k, p in enumerate(ps):
        p.grad = np.full(p.shape, 0.25 * (k + 1), p.dtype)


def _snapshot(opt):
    """Everything a failed step must leave unchanged."""
    arrays = [bits(p).tobytes() for g in opt.param_groups for p in g["params"]]
    state = {id(p): {k: bits(v).tobytes() if isinstance(v, np.ndarray) else v
                     for k, v in s.items()} for p, s in opt.state.items()}
    return arrays, state, opt._step_count


# ------------------------------------------------------------------------------ threads


@pytest.mark.parametrize("info", INFOS, ids=lambda i: i.name)
def test_two_threads_stepping_one_optimizer_lose_no_step(info):
    ps, ref = _params(7, 5), _params(7, 5)
    _grads(ps)
    _grads(ref)
    opt, sequential = info.default.make(ps), info.default.make(ref)
    # A pre-hook that yields the GIL mid-step: without the lock the two threads interleave.
    opt.register_step_pre_hook(lambda *args: time.sleep(0.001))
    start = threading.Barrier(2)

    def worker():
        start.wait()
        for _ in range(10):
            opt.step()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for _ in range(20):
        sequential.step()
    assert opt._step_count == 20
    for p, q in zip(ps, ref):
        assert np.array_equal(bits(p), bits(q))
        if "step" in info.scalar_state:
            assert opt.state[p]["step"] == 20


def test_two_optimizers_in_two_threads_are_correct():
    ps, qs = _params(1000, 3), _params(1000, 3)
    ref_p, ref_q = _params(1000, 3), _params(1000, 3)
    for group in (ps, qs, ref_p, ref_q):
        _grads(group)
    a, b = fo.Adam(ps, lr=0.01), fo.SGD(qs, lr=0.1, momentum=0.9)
    ra, rb = fo.Adam(ref_p, lr=0.01), fo.SGD(ref_q, lr=0.1, momentum=0.9)

    def run(opt):
        for _ in range(25):
            opt.step()

    threads = [threading.Thread(target=run, args=(o,)) for o in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run(ra)
    run(rb)
    for p, q in zip(ps + qs, ref_p + ref_q):
        assert np.array_equal(bits(p), bits(q))
    assert a._step_count == b._step_count == 25


def test_lock_is_not_pickled_and_copies_get_their_own():
    (p,) = _params(3)
    opt = fo.Adam([p])
    assert "_lock" not in opt.__getstate__()
    for clone in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        assert clone._lock is not opt._lock
        clone.param_groups[0]["params"][0].grad = np.ones(3)
        clone.step()
        assert clone._step_count == 1


# ------------------------------------------------------------------------------ aliasing


@pytest.mark.parametrize("info", INFOS, ids=lambda i: i.name)
def test_same_parameter_twice_is_refused_naming_the_index(info):
    a, b = _params(3, 4)
    with pytest.raises(ValueError, match=r"param 2 of param group 0 is the same Parameter as "
                                         r"param 0 of param group 0"):
        info.cls([a, b, a])
    opt = info.cls([b])
    with pytest.raises(ValueError, match=r"param 1 of param group 1 is the same Parameter as "
                                         r"param 0 of param group 1"):
        opt.add_param_group({"params": [a, a]})
    assert len(opt.param_groups) == 1


@pytest.mark.parametrize("info", INFOS, ids=lambda i: i.name)
def test_duplicate_appended_after_construction_is_refused_at_step(info):
    a, b = _params(3, 4)
    _grads([a, b])
    opt = info.default.make([a, b])
    opt.step()
    opt.param_groups[0]["params"].append(a)
    before = _snapshot(opt)
    with pytest.raises(ValueError, match=r"param 2 of param group 0 is the same Parameter"):
        opt.step()
    assert _snapshot(opt) == before
    opt.param_groups[0]["params"].pop()
    opt.step()  # back to a valid list: steps again
    assert opt._step_count == 2


@pytest.mark.parametrize("info", INFOS, ids=lambda i: i.name)
def test_overlapping_param_appended_after_construction_is_refused_at_step(info):
    buffer = fo.Parameter(np.zeros(10))
    p, q = buffer[:5], buffer[3:]
    p.grad, q.grad = np.ones(5), np.ones(7)
    opt = info.default.make([p])
    opt.step()
    opt.param_groups[0]["params"].append(q)
    before = _snapshot(opt)
    with pytest.raises(ValueError, match=r"param 0 of param group 0 and param 1 of param group 0 "
                                         r"share memory"):
        opt.step()
    assert _snapshot(opt) == before
    # the same through a second group, and through replacing the group's list
    opt.param_groups[0]["params"].pop()
    opt.param_groups.append({**opt.param_groups[0], "params": [q]})
    before = _snapshot(opt)
    with pytest.raises(ValueError, match="share memory"):
        opt.step()
    assert _snapshot(opt) == before


def test_parameter_in_two_groups_after_construction_is_refused_at_step():
    a, b = _params(3, 4)
    _grads([a, b])
    opt = fo.SGD([{"params": [a]}, {"params": [b]}], lr=0.1)
    opt.param_groups[1]["params"] = [b, a]
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        opt.step()
    assert opt._step_count == 0


@pytest.mark.parametrize("info", INFOS, ids=lambda i: i.name)
def test_state_buffer_shared_by_two_params_is_refused(info):
    a, b = _params(4, 4)
    _grads([a, b])
    opt = info.default.make([a, b])
    opt.step()
    key = info.buffers[0]
    opt.state[b][key] = opt.state[a][key]
    before = _snapshot(opt)
    with pytest.raises(ValueError, match=rf"state\['{key}'\] of param 0 of param group 0 and "
                                         rf"state\['{key}'\] of param 1 of param group 0 share memory"):
        opt.step()
    assert _snapshot(opt) == before
    opt.state[b][key] = opt.state[a][key].copy()  # the fix the message suggests
    opt.step()
    assert opt._step_count == 2


@pytest.mark.parametrize("info", INFOS, ids=lambda i: i.name)
def test_state_buffer_that_is_a_parameter_is_refused(info):
    a, b = _params(4, 4)
    _grads([a, b])
    opt = info.default.make([a, b])
    opt.step()
    key = info.active_buffers(opt.param_groups[0])[-1]
    for alias in (a, b):  # its own parameter (a list of one array: no kernel check) or another
        saved = opt.state[a][key]
        opt.state[a][key] = alias
        before = _snapshot(opt)
        with pytest.raises(ValueError, match="share memory"):
            opt.step()
        assert _snapshot(opt) == before
        opt.state[a][key] = saved
    opt.step()
    assert opt._step_count == 2


def test_single_param_with_its_state_as_itself_is_refused():
    """One parameter: the kernels' own overlap check does not run for a list of one."""
    (a,) = _params(4)
    a.grad = np.ones(4)
    opt = fo.Adam([a], lr=0.1)
    opt.step()
    opt.state[a]["exp_avg"] = a
    with pytest.raises(ValueError, match=r"state\['exp_avg'\] of param 0 of param group 0 share"):
        opt.step()
    assert opt.state[a]["step"] == 1


# ------------------------------------------------------------------------------ loose ends


@pytest.mark.parametrize("info", INFOS, ids=lambda i: i.name)
def test_load_state_dict_without_state_is_a_clear_error(info):
    ps = _params(3)
    _grads(ps)
    opt = info.default.make(ps)
    opt.step()
    before = _snapshot(opt)
    groups = copy.deepcopy(opt.param_groups)
    with pytest.raises(KeyError, match=r"no 'state' and no 'param_groups' entry.*state_dict\(\)"):
        opt.load_state_dict({})
    with pytest.raises(KeyError, match=r"no 'state' entry"):
        opt.load_state_dict({"param_groups": opt.state_dict()["param_groups"]})
    assert _snapshot(opt) == before
    assert [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups] == \
        [{k: v for k, v in g.items() if k != "params"} for g in groups]


@pytest.mark.parametrize("info", INFOS, ids=lambda i: i.name)
def test_non_bool_flags_are_type_errors_naming_the_option(info):
    (p,) = _params(3)
    for flag in info.flags:
        if flag in info.group_forced:  # not an argument (AdamW's decoupled_weight_decay)
            continue
        with pytest.raises(TypeError, match=rf"{flag} must be a bool \(True or False\), got str 'yes'"):
            info.default.make([p], **{flag: "yes"})
    opt = info.default.make([p])
    sd = opt.state_dict()
    flag, value = info.flags[0], opt.param_groups[0][info.flags[0]]
    sd["param_groups"][0][flag] = "no"
    with pytest.raises(TypeError, match=rf"loaded param group 0: {flag} must be a bool"):
        opt.load_state_dict(sd)
    assert opt.param_groups[0][flag] is value


def test_amsgrad_yes_is_a_type_error():
    (p,) = _params(3)
    with pytest.raises(TypeError, match="amsgrad must be a bool"):
        fo.Adam([p], amsgrad="yes")
    with pytest.raises(TypeError, match="amsgrad must be a bool"):
        fo.Adam([p]).add_param_group({"params": _params(2), "amsgrad": "yes"})


@pytest.mark.parametrize("info", INFOS, ids=lambda i: i.name)
def test_raising_post_hook_leaves_the_bookkeeping_consistent(info):
    ps = _params(3, 2)
    _grads(ps)
    opt = info.default.make(ps)

    def broken(*args):
        raise RuntimeError("hook failed")

    handle = opt.register_step_post_hook(broken)
    with pytest.raises(RuntimeError, match="hook failed"):
        opt.step()
    handle.remove()
    # the update happened, and so did all of its bookkeeping
    assert opt._step_count == 1
    if "step" in info.scalar_state:
        assert all(opt.state[p]["step"] == 1 for p in ps)
    ref = _params(3, 2)
    _grads(ref)
    info.default.make(ref).step()
    assert all(np.array_equal(bits(p), bits(q)) for p, q in zip(ps, ref))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_while_another_thread_steps_does_not_hang_the_child():
    """The child of a fork gets a fresh lock: one held by another thread of the parent (a step in
    progress there) would otherwise block every step of the child forever."""
    (p,) = _params(3)
    p.grad = np.ones(3)
    opt = fo.SGD([p], lr=0.1)
    in_step, release = threading.Event(), threading.Event()
    def hold(*args):
        in_step.set()
        release.wait(10)

    opt.register_step_pre_hook(hold)
    worker = threading.Thread(target=opt.step)
    worker.start()
    try:
        assert in_step.wait(10)  # the worker holds the optimizer's lock now
        pid = os.fork()
        if pid == 0:  # the child: step once (without the parent's hook) and report
            code = 1
            try:
                opt._optimizer_step_pre_hooks.clear()
                opt.step()
                code = 0 if opt._step_count == 1 else 2
            finally:
                os._exit(code)
        deadline = time.monotonic() + 30
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("the forked child hung in step()")
            time.sleep(0.01)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        release.set()
        worker.join()
    assert opt._step_count == 1
