"""A process forked after the parent ran OpenMP threads must step correctly and never hang.

GNU libgomp keeps a thread's OpenMP pool in that thread's thread-local storage; after ``fork()`` the
pool of the forking thread names threads that no longer exist, and the next parallel region started
from that thread waits for them forever (issue 17). fastoptim's fork guard
(``fastoptim._config._after_fork_in_child``) runs the kernels on one thread there.

Every scenario runs in a fresh interpreter under a hard timeout, in its own process group that is
killed on timeout, so a regression fails the test instead of hanging the test run. Each scenario
first steps a large array on two threads in the parent (which starts the OpenMP team), then steps
again in the child(ren) and compares the result bit for bit with the parent's.
"""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from fastoptim import _runtime

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")

TIMEOUT = 120  # seconds for a whole scenario; a healthy one takes about a second

PRELUDE = textwrap.dedent("""
    import os, sys, threading, warnings
    import numpy as np
    import fastoptim as fo

    N = 1_000_000   # far above the threshold at which the kernels start a parallel region

    def run(cls=fo.Adam):
        p = fo.Parameter(np.linspace(-1.0, 1.0, N, dtype=np.float32))
        opt = cls([p], lr=1e-2, weight_decay=1e-4)
        for _ in range(3):
            p.grad = np.sin(3 * p)
            opt.step()
        return p.view(np.ndarray).copy()

    fo.set_num_threads(2)   # even on a one-core machine: OpenMP starts the team
    EXPECTED = {cls: run(cls) for cls in (fo.SGD, fo.Adam)}

    def child_matches():
        return all(np.array_equal(run(cls), EXPECTED[cls]) for cls in (fo.SGD, fo.Adam))

    def in_fork_child(check):
        # run check() in a fork child; True when it returned True there
        pid = os.fork()
        if pid == 0:
            try:
                ok = bool(check())
            except BaseException:
                import traceback
                traceback.print_exc()
                ok = False
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status) == 0
""")


def _run_scenario(body, timeout=TIMEOUT):
    """Run PRELUDE + body as a script in a new interpreter; return (stdout, stderr).

    Fails if it hangs. A script file rather than ``-c`` so that spawn children can import it."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".py", prefix="fork_scenario_", delete=False) as f:
        f.write(PRELUDE + textwrap.dedent(body))
    try:
        return _run_file(f.name, timeout)
    finally:
        os.unlink(f.name)


def _run_file(path, timeout):
    proc = subprocess.Popen([sys.executable, path], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the scenario and every process it forked
        out, err = proc.communicate()
        pytest.fail(f"scenario hung for {timeout} s (a fork child deadlocked?)\n"
                    f"stdout:\n{out}\nstderr:\n{err}")
    assert proc.returncode == 0, f"scenario failed (rc {proc.returncode})\nstdout:\n{out}\nstderr:\n{err}"
    return out, err


def _fork_warnings(err):
    return err.count("was created by fork()")


needs_openmp = pytest.mark.skipif(not _runtime.openmp_enabled(),
                                  reason="built without OpenMP: nothing to guard")


def test_os_fork_child_steps_single_threaded_bitwise_and_warns_once():
    out, err = _run_scenario("""
        assert in_fork_child(lambda: child_matches() and fo.get_num_threads() == 1)
        assert fo.get_num_threads() == 2          # the parent keeps its threads
        assert child_matches()                    # and still runs them
        print("ok")
    """)
    assert out.strip() == "ok"
    assert _fork_warnings(err) == (1 if _runtime.openmp_enabled() else 0), err


@needs_openmp
def test_warning_names_the_cause_and_the_way_back():
    _, err = _run_scenario("""
        assert in_fork_child(lambda: True)
    """)
    assert "RuntimeWarning" in err
    for fact in ("fork()", "libgomp", "one thread", "bitwise the same", "'spawn'", "'forkserver'"):
        assert fact in err, fact


def test_fork_pool():
    out, err = _run_scenario("""
        import multiprocessing as mp

        def work(cls_name):
            p = run(getattr(fo, cls_name))
            return p.tobytes(), fo.get_num_threads()

        with mp.get_context("fork").Pool(2) as pool:
            results = pool.map(work, ["SGD", "Adam", "SGD", "Adam"])
        for name, (data, threads) in zip(["SGD", "Adam", "SGD", "Adam"], results):
            assert data == EXPECTED[getattr(fo, name)].tobytes(), name
            assert threads == 1
        print("ok")
    """)
    assert out.strip() == "ok"
    assert _fork_warnings(err) <= 2, err  # at most one per worker process


def test_process_pool_executor_with_fork_context():
    out, _ = _run_scenario("""
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        def work(cls_name):
            return run(getattr(fo, cls_name)).tobytes()

        with ProcessPoolExecutor(2, mp_context=mp.get_context("fork")) as ex:
            results = list(ex.map(work, ["Adam", "SGD", "Adam"]))
        assert results == [EXPECTED[fo.Adam].tobytes(), EXPECTED[fo.SGD].tobytes(),
                           EXPECTED[fo.Adam].tobytes()]
        print("ok")
    """)
    assert out.strip() == "ok"


def test_fork_from_a_worker_thread_and_grandchild():
    # The parent forks from a thread other than the one that ran the team, and the child forks
    # again: every process along the way steps correctly.
    out, _ = _run_scenario("""
        result = []

        def fork_and_check():
            result.append(in_fork_child(lambda: child_matches() and in_fork_child(child_matches)))

        t = threading.Thread(target=fork_and_check)
        t.start(); t.join()
        assert result == [True], result
        print("ok")
    """)
    assert out.strip() == "ok"


@needs_openmp
def test_set_num_threads_in_fork_child_warns_and_keeps_one_thread():
    out, err = _run_scenario("""
        def check():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fo.set_num_threads(2)
                threads = fo.get_num_threads()
                fo.set_num_threads(1)   # asking for one thread is fine and silent
            return (threads == 1 and len(caught) == 1
                    and "set_num_threads(2) ignored" in str(caught[0].message)
                    and caught[0].category is RuntimeWarning and child_matches())

        assert in_fork_child(check)
        print("ok")
    """)
    assert out.strip() == "ok"


@needs_openmp
def test_new_thread_in_fork_child_gets_a_fresh_pool_and_threads():
    # docs/threads.rst states it: only the forking thread's OpenMP pool is stale after fork; a
    # thread started in the child starts its own, so it may use several threads (and does not hang).
    out, _ = _run_scenario("""
        def check():
            seen = []
            t = threading.Thread(target=lambda: seen.append((fo.get_num_threads(), child_matches())))
            t.start(); t.join()
            return seen == [(2, True)]

        assert in_fork_child(check)
        print("ok")
    """)
    assert out.strip() == "ok"


def test_no_warning_when_the_parent_runs_one_thread():
    _, err = _run_scenario("""
        fo.set_num_threads(1)
        assert in_fork_child(child_matches)
    """)
    assert _fork_warnings(err) == 0, err


def test_spawn_children_keep_their_threads():
    out, err = _run_scenario("""
        import multiprocessing as mp

        def threads(_):
            fo.set_num_threads(2)
            return fo.get_num_threads(), child_matches()

        if __name__ == "__main__":
            with mp.get_context("spawn").Pool(1) as pool:
                assert pool.map(threads, [0]) == [(2, True)]
            print("ok")
    """)
    assert out.strip() == "ok"
    assert _fork_warnings(err) == 0, err
