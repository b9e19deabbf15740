"""Ctrl-C during ``step()`` is delivered when the step returns: a step is never half applied."""
import os
import signal
import threading

import numpy as np
import pytest

import fastoptim as fo


@pytest.fixture(autouse=True)
def _python_default_sigint_handler():
    """Each test starts from Python's own handler, also when the suite runs in the background
    (a shell starts background jobs with SIGINT ignored, and the tests assert what is restored)."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def _two_group_adam():
    a, b = fo.Parameter(np.ones(5)), fo.Parameter(np.ones(3, np.float32))
    a.grad, b.grad = np.full(5, 0.5), np.full(3, 0.5, np.float32)
    opt = fo.Adam([{"params": [a]}, {"params": [b], "lr": 0.1}], lr=0.01)
    return opt, a, b


def _interrupt_during_step(opt):
    """A pre-hook sends SIGINT to this process, so it arrives before any group is updated."""
    handle = opt.register_step_pre_hook(lambda *args: os.kill(os.getpid(), signal.SIGINT))
    return handle


@pytest.mark.parametrize("cls", ["adam", "sgd"])
def test_sigint_in_step_is_raised_after_the_whole_step(cls):
    if cls == "adam":
        opt, a, b = _two_group_adam()
    else:
        a, b = fo.Parameter(np.ones(5)), fo.Parameter(np.ones(3, np.float32))
        a.grad, b.grad = np.full(5, 0.5), np.full(3, 0.5, np.float32)
        opt = fo.SGD([{"params": [a]}, {"params": [b], "lr": 0.1}], lr=0.01, momentum=0.9)
    post = []
    opt.register_step_post_hook(lambda *args: post.append(True))
    handle = _interrupt_during_step(opt)
    with pytest.raises(KeyboardInterrupt):
        opt.step()
    handle.remove()
    # every group, every state entry and the counters show one complete step
    assert not np.array_equal(a, np.ones(5)) and not np.array_equal(b, np.ones(3))
    assert post == [True] and opt._step_count == 1
    if cls == "adam":
        assert [opt.state[p]["step"] for p in (a, b)] == [1, 1]
    else:
        assert all("momentum_buffer" in opt.state[p] for p in (a, b))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    opt.step()  # and the next step is normal
    assert opt._step_count == 2


def test_custom_and_ignored_handlers_are_respected():
    opt, a, b = _two_group_adam()
    calls = []

    def handler(signum, frame):
        calls.append(signum)

    old = signal.signal(signal.SIGINT, handler)
    try:
        handle = _interrupt_during_step(opt)
        opt.step()  # the custom handler does not raise
        assert calls == [signal.SIGINT] and opt._step_count == 1
        assert signal.getsignal(signal.SIGINT) is handler
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        opt.step()  # ignored stays ignored
        assert opt._step_count == 2 and calls == [signal.SIGINT]
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        handle.remove()
    finally:
        signal.signal(signal.SIGINT, old)


def test_handler_is_restored_when_the_step_raises():
    opt, a, b = _two_group_adam()
    b.grad = np.ones(3, np.float32)
    b._grad = np.ones(4, np.float32)  # corrupt the grad behind the setter's back
    with pytest.raises(ValueError):
        opt.step()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert opt._step_count == 0


def test_steps_in_other_threads_leave_signals_alone():
    opt, a, b = _two_group_adam()
    seen = []

    def worker():
        opt.step()
        seen.append(signal.getsignal(signal.SIGINT))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [signal.default_int_handler] and opt._step_count == 1
