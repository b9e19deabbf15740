"""``python -m fastoptim demo`` and the command line around it.

Most tests run the demo the way a user does, ``python -m fastoptim demo ...`` in a subprocess, with
few steps: progress lines, checkpoints that ``fo.load`` reads, bit-for-bit resume (after
``--stop-after`` and after a real SIGINT), bad options, corrupt checkpoints, the plot with and
without matplotlib. A few check the pieces in-process: the hand-written backward pass against
finite differences, and the default run's accuracy.
"""

import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

import fastoptim as fo
from fastoptim.tools import demo

ERROR_PREFIX = "python -m fastoptim demo: error: "
DIGEST = re.compile(r"final params sha256: ([0-9a-f]{64})")


def cli(*args, env=None, check_rc=None):
    """Run ``python -m fastoptim *args``; returns the CompletedProcess."""
    proc = subprocess.run([sys.executable, "-m", "fastoptim", *args], capture_output=True,
                          text=True, env=env, timeout=120)
    if check_rc is not None:
        assert proc.returncode == check_rc, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def final_digest(stdout):
    found = DIGEST.findall(stdout)
    assert len(found) == 1, stdout
    return found[0]


def progress_steps(stdout):
    """Step numbers of the progress lines, in order."""
    return [int(m) for m in re.findall(r"^step +(\d+)/\d+ +loss ", stdout, flags=re.M)]


def assert_same_checkpoint(a, b):
    """Two demo checkpoints hold equal values (arrays: same dtype, shape and bits)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for key in a:
            assert_same_checkpoint(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_checkpoint(x, y)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()
    else:
        assert a == b


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """One 60-step run, with the plot when matplotlib is installed: (out dir, CompletedProcess)."""
    out = tmp_path_factory.mktemp("short")
    proc = cli("demo", "--steps", "60", "--log-every", "20", "--checkpoint-every", "25",
               "--out", str(out), check_rc=0)
    return out, proc


def test_short_run_progress_and_checkpoint(short_run):
    out, proc = short_run
    assert progress_steps(proc.stdout) == [0, 20, 40, 60]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("step 20/60"))
    assert re.search(r"loss \d\.\d{4} \(val \d\.\d{4}\)  acc +\d+\.\d% \(val +\d+\.\d%\)  "
                     r"lr \d\.\d\de[-+]\d\d +\d+ steps/s", line), line
    assert "checkpoint saved at step 25" in proc.stdout
    assert "checkpoint saved at step 50" in proc.stdout
    assert re.search(r"^done: 60 steps in [\d.]+ s \(\d+ steps/s\)$", proc.stdout, flags=re.M)

    ckpt = fo.load(out / demo.CHECKPOINT_NAME)
    assert ckpt["step"] == 60
    assert ckpt["config"] == {"optimizer": "adamw", "lr": 0.01, "weight_decay": 0.01,
                              "steps": 60, "batch_size": 128, "seed": 0}
    assert set(ckpt) >= {"model", "optimizer", "scheduler", "sampler", "history"}
    assert ckpt["sampler"]["bit_generator"]["bit_generator"] == "PCG64"
    groups = ckpt["optimizer"]["param_groups"]
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0]
    assert ckpt["history"]["step"] == [0, 20, 40, 60]
    # The digest printed is the digest of the parameters in the final checkpoint.
    assert final_digest(proc.stdout) == demo.params_digest(ckpt["model"])


def test_short_run_plot(short_run):
    pytest.importorskip("matplotlib")
    out, proc = short_run
    png = out / demo.PLOT_NAME
    assert f"plot: {png}" in proc.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_the_plot_is_skipped(tmp_path):
    # A package named matplotlib that fails to import stands in for a missing one.
    blocker = tmp_path / "blocker" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(blocker.parent)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    out = tmp_path / "out"
    proc = cli("demo", "--steps", "5", "--out", str(out), env=env, check_rc=0)
    assert "plot: skipped (matplotlib is not installed" in proc.stdout
    assert not (out / demo.PLOT_NAME).exists()


def test_resume_is_bit_for_bit(tmp_path):
    """N steps == k steps, stop, --resume to N: the same digest, checkpoint and history.

    The uninterrupted run uses one kernel thread and the interrupted one two, so this also checks
    that the thread count does not change the numbers.
    """
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = ["--steps", "80", "--log-every", "10", "--no-plot"]
    a = cli("demo", *common, "--threads", "1", "--out", str(straight), check_rc=0)

    b1 = cli("demo", *common, "--threads", "2", "--stop-after", "33", "--out", str(split),
             check_rc=0)
    assert "stopped at step 33/80 (--stop-after)" in b1.stdout
    assert f"python -m fastoptim demo --resume --out {split}" in b1.stdout
    assert fo.load(split / demo.CHECKPOINT_NAME)["step"] == 33
    b2 = cli("demo", "--resume", "--threads", "2", "--no-plot", "--out", str(split), check_rc=0)
    assert "at step 33/80" in b2.stdout
    assert progress_steps(b2.stdout) == [40, 50, 60, 70, 80]

    assert final_digest(b2.stdout) == final_digest(a.stdout)
    assert_same_checkpoint(fo.load(split / demo.CHECKPOINT_NAME),
                           fo.load(straight / demo.CHECKPOINT_NAME))
    # the printed metrics of the resumed part are those of the uninterrupted run
    tail = [l for l in a.stdout.splitlines() if re.match(r"step +[4-8]0/80", l)]
    tail_resumed = [l for l in b2.stdout.splitlines() if re.match(r"step +[4-8]0/80", l)]
    strip_rate = lambda lines: [re.sub(r" +\d+ steps/s.*", "", l) for l in lines]  # noqa: E731
    assert strip_rate(tail) == strip_rate(tail_resumed)

    # resuming a finished run changes nothing and says so
    again = cli("demo", "--resume", "--no-plot", "--out", str(split), check_rc=0)
    assert "already finished at step 80" in again.stdout
    assert final_digest(again.stdout) == final_digest(a.stdout)


def test_ctrl_c_stops_with_a_checkpoint_and_resumes_exactly(tmp_path):
    out, straight = tmp_path / "interrupted", tmp_path / "straight"
    steps = 1500
    # --log-every 1 writes a line per step, about 150 kB in all, and the test stops reading after
    # the first progress line: once the pipe's buffer (64 kB on Linux) is full, the demo blocks in
    # print(), so it cannot finish before the SIGINT arrives, however slowly this process runs.
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastoptim", "demo", "--steps", str(steps), "--log-every", "1",
         "--checkpoint-every", "0", "--no-plot", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        head = []
        for line in proc.stdout:
            head.append(line)
            if line.startswith("step "):
                break
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stdout = "".join(head) + rest
    assert proc.returncode == 130, (stdout[-2000:], err)
    assert "Traceback" not in err, err
    m = re.search(rf"^stopped at step (\d+)/{steps} \(Ctrl-C\); checkpoint saved to ", stdout,
                  flags=re.M)
    assert m, stdout[-2000:]
    stopped_at = int(m.group(1))
    assert 0 < stopped_at < steps
    assert f"python -m fastoptim demo --resume --out {out}" in stdout
    assert fo.load(out / demo.CHECKPOINT_NAME)["step"] == stopped_at

    # (the run keeps its --log-every 1 unless told otherwise; evaluating every step is slow)
    resumed = cli("demo", "--resume", "--log-every", "500", "--no-plot", "--out", str(out),
                  check_rc=0)
    assert progress_steps(resumed.stdout) == [s for s in (500, 1000, 1500) if s > stopped_at]
    assert f"resumed from {out / demo.CHECKPOINT_NAME} at step {stopped_at}/{steps}" \
        in resumed.stdout
    uninterrupted = cli("demo", "--steps", str(steps), "--no-plot", "--out", str(straight),
                        check_rc=0)
    assert final_digest(resumed.stdout) == final_digest(uninterrupted.stdout)


def test_verify_resume(tmp_path):
    proc = cli("demo", "--steps", "40", "--verify-resume", "--no-plot", "--out", str(tmp_path),
               check_rc=0)
    digest = final_digest(proc.stdout)
    assert f"resume check: identical (sha256 {digest})" in proc.stdout
    assert "stopped at step 20" in proc.stdout or "stopping at step 20" in proc.stdout
    # the check cleans up after itself
    assert sorted(os.listdir(tmp_path)) == [demo.CHECKPOINT_NAME]


def test_verify_resume_reports_a_difference(capsys, tmp_path):
    """The check compares for real: a wrong reference state is reported, with exit status 1."""
    config = {"optimizer": "sgd", "lr": 0.1, "weight_decay": 1e-4, "steps": 6, "batch_size": 16,
              "seed": 3}
    status = demo._verify_resume(config, demo.make_dataset(), "0" * 64, None, str(tmp_path))
    assert status == 1
    assert "resume check: DIFFERENT" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--steps", "-5"], "argument --steps: must be an integer >= 1, got -5"),
    (["--steps", "0"], "argument --steps: must be an integer >= 1, got 0"),
    (["--steps", "ten"], "argument --steps: expected an integer, got 'ten'"),
    (["--optimizer", "rmsprop"], "argument --optimizer: invalid choice: 'rmsprop'"),
    (["--lr", "0"], "argument --lr: must be a finite number > 0, got 0"),
    (["--lr", "-0.1"], "argument --lr: must be a finite number > 0, got -0.1"),
    (["--lr", "inf"], "argument --lr: must be a finite number > 0, got inf"),
    (["--threads", "0"], "argument --threads: must be an integer >= 1, got 0"),
    (["--batch-size", "100000"], "--batch-size must be at most the 8000 training examples"),
    (["--steps", "10", "--stop-after", "10"], "--stop-after 10 must be less than the run's 10"),
    (["--resume"], "--resume: no checkpoint to resume from in "),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
])
def test_bad_options(tmp_path, args, message):
    proc = cli("demo", *args, "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1].startswith(ERROR_PREFIX + message), proc.stderr
    assert proc.stdout == ""


def test_unwritable_out(tmp_path):
    # A path below a regular file cannot be created, not even by root (unlike a chmod-ed dir).
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = cli("demo", "--steps", "5", "--out", str(blocker / "out"))
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == \
        f"{ERROR_PREFIX}cannot write to --out {blocker / 'out'}: Not a directory"


def test_resume_refuses_changed_settings(short_run):
    out, _ = short_run
    proc = cli("demo", "--resume", "--lr", "0.5", "--out", str(out))
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1].startswith(
        f"{ERROR_PREFIX}--lr 0.5 does not match the checkpoint in {out} (--lr 0.01)")


@pytest.mark.parametrize("damage", ["flip", "truncate", "foreign"])
def test_resume_from_a_bad_checkpoint(short_run, tmp_path, damage):
    good = (short_run[0] / demo.CHECKPOINT_NAME).read_bytes()
    path = tmp_path / demo.CHECKPOINT_NAME
    if damage == "flip":
        data = bytearray(good)
        data[len(data) // 2] ^= 0x10
        path.write_bytes(bytes(data))
        expected = "checkpoint is corrupt"
    elif damage == "truncate":
        path.write_bytes(good[:len(good) // 3])
        expected = "truncated"
    else:
        fo.save({"epoch": 3}, path)
        expected = "not one written by the demo"
    proc = cli("demo", "--resume", "--out", str(tmp_path))
    assert proc.returncode == 1
    last = proc.stderr.splitlines()[-1]
    assert last.startswith(f"{ERROR_PREFIX}cannot resume: {path}")
    assert expected in last


def test_demo_help_and_info():
    helped = cli("demo", "--help", check_rc=0)
    for option in ("--optimizer", "--lr", "--steps", "--threads", "--out", "--seed",
                   "--checkpoint-every", "--resume", "--verify-resume"):
        assert option in helped.stdout
    info = cli("info", check_rc=0)
    assert fo.__version__ in info.stdout
    top = cli("--help", check_rc=0)
    assert "demo" in top.stdout and "info" in top.stdout


def test_version_and_bare_command():
    version = cli("--version", check_rc=0)
    assert version.stdout.strip() == f"fastoptim {fo.__version__}"
    bare = cli()
    assert bare.returncode == 2 and bare.stdout == ""
    assert bare.stderr.splitlines() == [
        "python -m fastoptim: error: a command is required: info, demo, bench "
        "(python -m fastoptim --help for more)"]
    stray = cli("--frobnicate")
    assert stray.returncode == 2
    assert stray.stderr.splitlines()[-1] == \
        "python -m fastoptim: error: unrecognized arguments: --frobnicate"


def test_backward_matches_finite_differences():
    rng = np.random.default_rng(5)
    model = demo.MLP((2, 7, 6, 4), rng, dtype=np.float64)
    x = rng.standard_normal((9, 2))
    y = rng.integers(0, 4, size=9)
    logits, cache = model.forward(x)
    _, dlogits = demo.softmax_cross_entropy(logits, y)
    model.backward(cache, dlogits)
    eps = 1e-6
    for name, p in model.params.items():
        numeric = np.empty_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + eps
            up, _ = demo.softmax_cross_entropy(model.forward(x)[0], y)
            p[i] = old - eps
            down, _ = demo.softmax_cross_entropy(model.forward(x)[0], y)
            p[i] = old
            numeric[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(p.grad, numeric, rtol=1e-5, atol=1e-8, err_msg=name)


def test_defaults_learn_the_spiral():
    """The default run starts at chance and ends above 95% validation accuracy."""
    parser = demo.build_parser()
    config = demo._resolve_config(parser.parse_args([]), None)
    training = demo.Training(config, demo.make_dataset())
    assert training.evaluate()["val_acc"] < 0.3
    while training.step < training.steps:
        training.train_step()
    assert training.evaluate()["val_acc"] >= 0.95
