"""The benchmark suite (``python -m fastoptim bench``): it runs, reports what it promises, and its
peers compute what fastoptim computes, so that no peer can look slow or fast by doing other work.

Nothing here asserts a timing.
"""
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastoptim
from fastoptim.tools import bench
from fastoptim.tools import peers as _bench_peers
from fastoptim.tools.peers import Case, make_peer

DTYPES = [np.float32, np.float64]


def _peer_or_skip(name, case):
    """Peer ``name`` over ``case``; the test is skipped where the peer has no implementation of
    the case's optimizer (the benchmark shows ``-`` there)."""
    try:
        return make_peer(name, case)
    except _bench_peers.Unsupported as exc:
        pytest.skip(str(exc))


def _run_steps(peer, n):
    for _ in range(n):
        peer.step()
    peer.sync()
    return peer.numpy_params()


# --------------------------------------------------------------------------------------------
# the NumPy peers against fastoptim
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer", list(bench.OPTIMIZERS))
@pytest.mark.parametrize("peer_name", ["numpy", "numpy-blocked"])
def test_numpy_peer_matches_fastoptim(peer_name, optimizer, dtype):
    # Four steps with lr 0.1, so that the updates are large. NumPy has no fused multiply-add, so
    # the peer rounds differently; each parameter must still be within 2 ulps plus a few parts
    # per million (float32; 1e-13 in float64) of fastoptim's update. A lost step, a wrong bias
    # correction or a 1% error in lr is thousands of times that.
    config = dataclasses.replace(bench.OPTIMIZERS[optimizer], lr=0.1)
    # 100_000 elements: more than one 256 KiB chunk of the blocked peer in both dtypes
    case = Case([(100_000,), (3, 5), (1,)], dtype, config, seed=3)
    ours = _run_steps(make_peer("fastoptim", case), 4)
    theirs = _run_steps(_peer_or_skip(peer_name, case), 4)
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    for p, r, p0 in zip(theirs, ours, case.init_params):
        update = np.abs(r.astype(np.float64) - p0)
        assert np.all(update > 0)
        allowed = 2 * np.spacing(np.abs(r)) + rtol * update
        np.testing.assert_array_less(np.abs(p.astype(np.float64) - r), allowed)
    assert bench.check_agreement(theirs, ours, case.init_params) <= 1.0


def test_blocked_peer_really_processes_in_chunks():
    case = Case([(200_000,)], np.float32, bench.OPTIMIZERS["adam"])
    peer = make_peer("numpy-blocked", case)
    assert len(peer._pieces[0]) == 4                   # 200_000 / 65_536 float32 elements
    assert peer._scratch.size == 65_536


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_agreement_check_catches_a_broken_peer(optimizer):
    config = bench.OPTIMIZERS[optimizer]
    case = Case([(1000,), (10, 10)], np.float32, config)
    reference = _run_steps(make_peer("fastoptim", case), 2)
    # a peer that does nothing, one that does half the steps, one that drops the bias correction
    assert bench.check_agreement(case.init_params, reference, case.init_params) > 100
    half = _run_steps(make_peer("numpy", case), 1)
    assert bench.check_agreement(half, reference, case.init_params) > 10
    wrong = make_peer("numpy", case)
    wrong.cfg = dataclasses.replace(config, lr=config.lr * 1.01)
    assert bench.check_agreement(_run_steps(wrong, 2), reference, case.init_params) > 1
    assert bench.check_agreement(reference[:1], reference, case.init_params) == np.inf


@pytest.mark.skipif(_bench_peers.unavailable_reason("fastoptim-class") is not None,
                    reason="fastoptim's optimizer classes are not available")
@pytest.mark.parametrize("optimizer", list(bench.OPTIMIZERS))
def test_class_peer_matches_functional_bit_for_bit(optimizer):
    case = Case([(1000,), (4, 4)], np.float32, bench.OPTIMIZERS[optimizer])
    ours = _run_steps(make_peer("fastoptim", case), 3)
    theirs = _run_steps(make_peer("fastoptim-class", case), 3)
    for p, r in zip(theirs, ours):
        np.testing.assert_array_equal(p, r)


@pytest.mark.skipif(_bench_peers.unavailable_reason("torch-fused") is not None,
                    reason="torch is not installed")
@pytest.mark.parametrize("peer_name", ["torch-forloop", "torch-foreach", "torch-fused"])
@pytest.mark.parametrize("optimizer", list(bench.OPTIMIZERS))
def test_torch_peers_agree(peer_name, optimizer):
    case = Case([(1000,), (4, 4)], np.float64, bench.OPTIMIZERS[optimizer])
    ours = _run_steps(make_peer("fastoptim", case), 2)
    theirs = _run_steps(_peer_or_skip(peer_name, case), 2)
    assert bench.check_agreement(theirs, ours, case.init_params) <= 1.0


def test_gradients_are_shared_and_read_only():
    case = Case([(10,)], np.float32, bench.OPTIMIZERS["sgd"])
    peer = make_peer("numpy", case)
    assert all(not g.flags.writeable for g in case.grads)
    before = [g.copy() for g in case.grads]
    _run_steps(peer, 3)
    for g, b in zip(case.grads, before):
        np.testing.assert_array_equal(g, b)


# --------------------------------------------------------------------------------------------
# the bandwidth kernel
# --------------------------------------------------------------------------------------------

def _stream_variants():
    """The bandwidth kernel's compiled variants that this CPU can run."""
    import importlib

    from fastoptim import _dispatch

    names = ["baseline"]
    if _dispatch._supported("x86_64_v3", _dispatch._V3):
        names.append("x86_64_v3")
    if _dispatch._supported("x86_64_v4", _dispatch._V4):
        names.append("x86_64_v4")
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(f"fastoptim._stream_kernels_{name}"))
        except ImportError:          # not built on this platform
            pass
    return modules


def test_stream_kernel_uses_the_optimizer_kernels_variant():
    from fastoptim import _dispatch, _stream

    assert _stream.StreamPlan.__module__ == f"fastoptim._stream_kernels_{_dispatch.VARIANT}"


@pytest.mark.parametrize("module", _stream_variants(), ids=lambda m: m.__name__.rsplit("_kernels_")[-1])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [3, 4, 5])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_stream_kernel_moves_every_element(module, k, dtype, threads):
    StreamPlan = module.StreamPlan
    rng = np.random.default_rng(0)
    shapes = [(1000,), (17, 3), (5,), (4096,)]
    groups = [tuple(rng.random(s).astype(dtype) + 1 for _ in range(k)) for s in shapes]
    expected = [sum(a.astype(np.float64) for a in g) / k for g in groups]
    inputs = [g[-1].copy() for g in groups]
    plan = StreamPlan(groups)
    plan.run(threads)
    for g, e, last in zip(groups, expected, inputs):
        for a in g[:-1]:
            np.testing.assert_allclose(a, e, rtol=4 * np.finfo(dtype).eps)
        np.testing.assert_array_equal(g[-1], last)       # the "gradient" is only read
    n = sum(int(np.prod(s)) for s in shapes)
    assert plan.n_elements == n
    assert plan.bytes_per_step == n * (2 * k - 1) * np.dtype(dtype).itemsize


def test_stream_bytes_match_the_optimizers():
    for name, config in bench.OPTIMIZERS.items():
        case = Case([(64,), (8, 8)], np.float32, config)
        bound = bench.StreamBound(case)
        assert bound.plan.bytes_per_step == case.n_elements * config.bytes_per_element(np.float32)
    assert bench.OPTIMIZERS["adam"].bytes_per_element(np.float32) == 28
    assert bench.OPTIMIZERS["amsgrad"].bytes_per_element(np.float32) == 36
    assert bench.OPTIMIZERS["sgd"].bytes_per_element(np.float32) == 20
    assert bench.OPTIMIZERS["sgd"].bytes_per_element(np.float64) == 40


def test_stream_kernel_refuses_bad_groups():
    from fastoptim._stream import StreamPlan

    a = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="3, 4 or 5"):
        StreamPlan([(a, a.copy())])
    with pytest.raises(ValueError, match="expected float32"):
        StreamPlan([(a, a.copy(), np.ones(5, np.float32))])
    with pytest.raises(ValueError, match="writeable"):
        ro = a.copy()
        ro.flags.writeable = False
        StreamPlan([(a, a.copy(), ro)])
    with pytest.raises(TypeError, match="float32 or float64"):
        StreamPlan([tuple(np.ones(4, np.int32) for _ in range(3))])
    with pytest.raises(ValueError, match="n_threads"):
        StreamPlan([(a, a.copy(), a.copy())]).run(0)


# --------------------------------------------------------------------------------------------
# the command, end to end
# --------------------------------------------------------------------------------------------

QUICK = ["--quick", "--workloads", "10M", "mix", "--optimizers", "sgd", "adam",
         "--dtypes", "float32", "--threads", "1", "2", "--repeats", "2", "--quiet"]


HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick run; with matplotlib (the ``bench`` extra, not the ``test`` one) it also plots."""
    out = tmp_path_factory.mktemp("bench")
    json_path, png_path = out / "bench.json", out / "bench.png"
    argv = QUICK + ["--json", str(json_path), "--csv", str(out / "results.csv")]
    if HAS_MATPLOTLIB:
        argv += ["--plot", str(png_path)]
    status = bench.main(argv)
    return status, json.loads(json_path.read_text()), png_path


def test_quick_run_succeeds(quick_run):
    status, report, png_path = quick_run
    assert status == 0


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib is not installed (pip install fastoptim[bench])")
def test_quick_run_writes_a_plot_per_workload(quick_run):
    status, report, png_path = quick_run
    paths = bench.plot_paths(str(png_path), ["10M", "mix"])
    assert [os.path.basename(p) for p in paths.values()] == ["bench-10M.png", "bench-mix.png"]
    for path in paths.values():
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_csv_round_trip(quick_run, tmp_path):
    _, report, _ = quick_run
    path = tmp_path / "results.csv"
    bench.write_csv(report["results"], path)
    back = bench.read_csv(path)
    assert len(back) == len(report["results"])
    key = lambda r: (r["workload"], r["optimizer"], r["dtype"], r["threads"], r["peer"])  # noqa: E731
    original = {key(r): r for r in report["results"]}
    for r in back:
        o = original[key(r)]
        assert r["median_s"] == pytest.approx(o["median_s"], rel=1e-3)
        assert r["melem_per_s"] == pytest.approx(o["melem_per_s"], rel=1e-3)
        assert r["agrees"] == o.get("agrees", True)
    # the summary of the CSV is the summary of the run
    rows, expected = bench.summary(back), bench.summary(report["results"])
    assert len(rows) == len(expected)
    for ours, theirs in zip(rows, expected):
        assert ours["ratio"] == pytest.approx(theirs["ratio"], rel=1e-3)


def test_plot_without_matplotlib_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(SystemExit) as exc:
        bench.main(QUICK + ["--plot", str(tmp_path / "x.png")])
    assert exc.value.code == 2
    assert "matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_quick_run_json_structure(quick_run):
    _, report, _ = quick_run
    machine = report["machine"]
    for key in ("cpu_model", "logical_cpus", "usable_cpus", "l3_cache", "memory_total_bytes",
                "numpy", "torch", "fastoptim"):
        assert key in machine
    assert machine["fastoptim"]["kernel_variant"] == fastoptim._dispatch.VARIANT
    assert machine["numpy"] == np.__version__
    assert report["settings"]["threads"] == [1, 2]
    assert report["settings"]["quick"] is True
    assert report["timestamp"]
    assert report["problems"] == []
    peers = set(report["settings"]["peers"])
    assert {"bound", "fastoptim", "numpy", "numpy-blocked"} <= peers
    cells = {(r["workload"], r["optimizer"], r["dtype"], r["threads"]) for r in report["results"]}
    assert cells == {(w, o, "float32", t) for w in ("10M", "mix") for o in ("sgd", "adam")
                     for t in (1, 2)}
    for r in report["results"]:
        assert r["peer"] in peers
        assert len(r["times_s"]) == 2 and all(t > 0 for t in r["times_s"])
        assert r["steps_per_repeat"] >= 1
        assert r["min_s"] <= r["q1_s"] <= r["median_s"] <= r["q3_s"] <= r["max_s"]
        assert r["bytes_per_element"] == bench.OPTIMIZERS[r["optimizer"]].bytes_per_element("float32")
        assert r["melem_per_s"] == pytest.approx(r["n_elements"] / r["median_s"] / 1e6)
        assert r["gb_per_s"] == pytest.approx(r["melem_per_s"] * r["bytes_per_element"] / 1e3)
        assert r["pct_of_bound"] > 0
        if r["peer"] == "bound":
            assert r["pct_of_bound"] == pytest.approx(100)
        else:
            assert r["agrees"] is True and r["agreement_error"] <= 1.0
        if r["peer"] == "fastoptim":
            assert r["fastoptim_speedup"] == pytest.approx(1)
    mix = next(r for r in report["results"] if r["workload"] == "mix")
    assert mix["n_arrays"] == 150
    assert report["overhead"] == []          # not part of a quick check


def test_step_overhead_measurement():
    records = bench.measure_overhead(("fastoptim",), optimizers=("sgd", "adam"), counts=(1, 50),
                                     repeats=2, min_time=0.001)
    assert [(o["optimizer"], o["peer"]) for o in records] == [("sgd", "fastoptim"),
                                                               ("adam", "fastoptim")]
    for o in records:
        assert o["counts"] == [1, 50] and len(o["min_step_s"]) == 2
        assert o["min_step_s"][0] > 0 and o["fixed_us"] == pytest.approx(
            o["min_step_s"][0] * 1e6 - o["per_array_us"])


def test_quick_report_is_compact_and_shows_no_ratios(quick_run):
    _, report, _ = quick_run
    text = bench.format_report(report)
    assert "QUICK CHECK" in text
    for ratio in ("% bound", "speedup", "faster by", "step() overhead"):
        assert ratio not in text
    # honest names: the quick shapes are not 10M elements
    assert "64k" in text and "mix-35k" in text and "10M" not in text
    # the default quick run (every workload, optimizer and dtype, one thread count) fits in 40 lines
    full = dict(report, results=[
        dict(r, workload=w, optimizer=o, dtype=d, threads=2)
        for w in bench.WORKLOADS for o in bench.OPTIMIZERS for d in bench.DTYPES
        for r in report["results"] if r["workload"] == "10M" and r["optimizer"] == "sgd"
        and r["threads"] == 2])
    assert len(bench.format_report(full).splitlines()) <= 40


def test_full_report_table_and_summary(quick_run):
    _, report, _ = quick_run
    full = dict(report, settings=dict(report["settings"], quick=False))
    text = bench.format_report(full)
    assert "% bound" in text and "fo speedup" in text and "fastest peer" in text
    rst = bench.format_table(report["results"], "rst")
    lines = rst.splitlines()
    assert lines[0] == lines[2] == lines[-1] and set(lines[0]) == {"=", " "}
    assert len(lines) == 4 + len(report["results"])
    rows = bench.summary(report["results"])
    assert len(rows) == len({(r["workload"], r["optimizer"], r["dtype"], r["threads"])
                             for r in report["results"]})
    for row in rows:
        cell = {r["peer"]: r for r in report["results"]
                if (r["workload"], r["optimizer"], r["dtype"], r["threads"])
                == (row["workload"], row["optimizer"], row["dtype"], row["threads"])}
        others = [r for p, r in cell.items() if p not in ("bound", "fastoptim", "fastoptim-class")]
        best = min(others, key=lambda r: r["median_s"])
        assert row["best_peer"] == best["peer"]
        ours = cell.get("fastoptim-class", cell["fastoptim"])
        assert row["ratio"] == pytest.approx(best["median_s"] / ours["median_s"])


def test_run_time_estimate_grows_with_the_work():
    small = bench.estimate_seconds(["10M"], ["sgd"], ["float32"], [1], [])
    big = bench.estimate_seconds(["10M", "mix"], ["sgd", "adam"], ["float32", "float64"], [1, 2],
                                 ["numpy", "torch-fused"])
    assert 0 < small < big
    assert bench._duration(30) == "30 s" and bench._duration(600) == "10 min"


def test_a_peer_that_disagrees_fails_the_run(monkeypatch, capsys):
    class Lazy(_bench_peers.NumpyPeer):
        """Skips every other step: twice as fast, and wrong."""

        name = "numpy"
        calls = 0

        def step(self):
            self.calls += 1
            if self.calls % 2:
                super().step()

    monkeypatch.setitem(_bench_peers.PEERS, "numpy", Lazy)
    status = bench.main(["--quick", "--workloads", "10M", "--optimizers", "adam", "--dtypes",
                         "float32", "--threads", "1", "--repeats", "1", "--peers", "numpy",
                         "--no-overhead", "--quiet"])
    captured = capsys.readouterr()
    assert status == 1
    assert "MISMATCH" in captured.out and "numpy" in captured.out
    assert "disagree with fastoptim" in captured.err


def _cli(*args):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "fastoptim", *args], capture_output=True,
                          text=True, env=env, timeout=120)


@pytest.mark.parametrize("args, message", [
    (["--workloads", "5M"], "invalid choice: '5M'"),
    (["--threads", "0"], "expected a positive integer, got 0"),
    (["--repeats", "x"], "expected a positive integer, got 'x'"),
    (["--min-time", "-1"], "expected a positive number of seconds"),
    (["--peers", "jax"], "invalid choice: 'jax'"),
    (["--json", "/nonexistent-dir/out.json"], "directory /nonexistent-dir does not exist"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
])
def test_bad_options_exit_with_a_message(args, message):
    result = _cli("bench", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_unavailable_peer_is_refused(monkeypatch, capsys):
    monkeypatch.setattr(_bench_peers, "_importable", lambda module: False)
    with pytest.raises(SystemExit) as exc:
        bench.main(["--quick", "--peers", "optax", "--quiet"])
    assert exc.value.code == 2
    assert "peer 'optax' cannot run here: jax and optax are not installed" in capsys.readouterr().err


def test_help_and_info_still_work():
    result = _cli("bench", "--help")
    assert result.returncode == 0 and "--workloads" in result.stdout
    result = _cli("info")
    assert result.returncode == 0 and "kernel_variant" in result.stdout


def test_default_threads_cover_one_two_and_all():
    threads = bench.default_threads()
    cores = bench._usable_cores()
    assert threads[0] == 1 and threads[-1] == cores and len(set(threads)) == len(threads)
    assert (2 in threads) == (cores >= 2)


def test_memory_estimate_refuses_what_cannot_fit(monkeypatch):
    monkeypatch.setattr(bench, "_available_memory", lambda: 2**30)
    with pytest.raises(bench.BenchError, match="needs about .* GiB"):
        bench.run(["100M"], ["adam"], ["float32"], [1], ["numpy"], overhead=False, quiet=True)


def test_a_full_run_says_how_long_it_will_take(monkeypatch, capsys):
    def fake_cell(workload, config, dtype, threads, peers, **kwargs):
        return [], []

    monkeypatch.setattr(bench, "run_cell", fake_cell)
    bench.run(["10M"], ["sgd"], ["float32"], [1], [], overhead=False)
    err = capsys.readouterr().err.splitlines()
    assert "this takes about" in err[0] and "1 workload x optimizer x dtype cells" in err[0]
    assert err[-1].endswith("1/1 done")
    bench.run(["10M"], ["sgd"], ["float32"], [1], [], overhead=False, quick=True)
    assert "takes about" not in capsys.readouterr().err      # a quick check is quick


def test_a_peer_without_the_optimizer_is_listed_once_not_as_a_problem():
    unsupported = [{"peer": "numpy", "kind": "unsupported", "reason": "there is no NumPy peer",
                    "workload": w, "optimizer": o, "dtype": "float32"}
                   for w in ("10M", "mix") for o in ("x", "y")]
    mismatch = {"peer": "torch-foreach", "kind": "mismatch", "reason": "differs",
                "workload": "10M", "optimizer": "x", "dtype": "float32"}
    lines = bench._problem_lines({"problems": unsupported + [mismatch]})
    assert lines == ["", "Problems:", "  torch-foreach (10M x float32): mismatch: differs",
                     "", "Not run (no implementation in that peer):", "  numpy: x, y"]
    assert bench._problem_lines({"problems": []}) == []


def test_every_registry_optimizer_with_a_class_is_benchmarked():
    from fastoptim.optim import registry

    benchmarked = {config.optimizer for config in bench.OPTIMIZERS.values()}
    assert benchmarked == set(registry.OPTIMIZERS)
    for config in bench.OPTIMIZERS.values():
        active = config.info.active_buffers(config.group)
        assert config.bytes_per_element(np.float64) == 8 * (3 + 2 * len(active))
