"""fastoptim.distributed without a launcher: the import contract, torch's partition, and the
launch pattern that ends the whole job when one rank raises (this file starts mpirun itself)."""
import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run_python(code):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=120)


def test_import_fastoptim_does_not_import_mpi4py():
    result = _run_python("""
        import sys, fastoptim
        assert "mpi4py" not in sys.modules and "fastoptim.distributed" not in sys.modules
    """)
    assert result.returncode == 0, result.stderr


def test_missing_mpi4py_says_how_to_install_it():
    result = _run_python("""
        import sys
        sys.modules["mpi4py"] = None     # as if mpi4py were not installed
        import fastoptim
        try:
            import fastoptim.distributed
        except ImportError as exc:
            print(exc)
        else:
            raise SystemExit("no ImportError")
    """)
    assert result.returncode == 0, result.stderr
    assert 'pip install "fastoptim[distributed]"' in result.stdout


def _load_partition():
    # the module itself, without importing the package (whose __init__ imports mpi4py)
    path = ROOT / "fastoptim" / "distributed" / "_partition.py"
    spec = importlib.util.spec_from_file_location("_fo_partition", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.partition_parameters


class _Sized:
    def __init__(self, size):
        self.size = size


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit, imported by torch.distributed
@pytest.mark.parametrize("seed", range(6))
def test_partition_equals_torchs(seed):
    torch = pytest.importorskip("torch")
    from torch.distributed.optim import ZeroRedundancyOptimizer as TorchZero

    partition = _load_partition()
    rng = np.random.default_rng(seed)
    group_sizes = [list(rng.integers(1, 50, size=rng.integers(1, 12))) for _ in range(3)]
    group_sizes[0] += [7, 7, 7]                                   # ties keep their order
    for world_size in (1, 2, 3, 5, 8):
        ours = [[{"params": [_Sized(int(s)) for s in sizes], "lr": 0.1}]
                for sizes in group_sizes]
        groups = [g[0] for g in ours]
        tensors = [{"params": [torch.empty(p.size) for p in g["params"]], "lr": 0.1}
                   for g in groups]
        fake = TorchZero.__new__(TorchZero)                       # torch's own method, no
        fake.param_groups = tensors                               # process group needed
        fake.world_size = world_size
        fake._partition_parameters_cache = []
        expected = TorchZero._partition_parameters(fake)
        got = partition(groups, world_size)
        index = {id(t): (g, i) for g, group in enumerate(tensors)
                 for i, t in enumerate(group["params"])}
        mine = {id(p): (g, i) for g, group in enumerate(groups)
                for i, p in enumerate(group["params"])}
        for rank in range(world_size):
            assert [[index[id(t)] for t in g["params"]] for g in expected[rank]] == [
                [mine[id(p)] for p in g["params"]] for g in got[rank]]


def _mpirun():
    mpirun = shutil.which("mpirun")
    if mpirun is None or importlib.util.find_spec("mpi4py") is None:
        pytest.skip('needs mpirun and mpi4py: pip install "fastoptim[distributed]"')
    command = [mpirun, "--oversubscribe"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-run-as-root")
    return command


FAULTY_SCRIPT = """
import sys
import numpy as np
import fastoptim as fo
import fastoptim.distributed as fd
from mpi4py import MPI

comm = MPI.COMM_WORLD
path = sys.argv[1]
p = fo.Parameter(np.zeros(4096, np.float32))
opt = fd.DistributedOptimizer(fo.SGD([p], lr=0.5))
for step in range(1_000_000):
    p.grad = np.ones_like(p)
    if comm.rank == 1 and step == 20:
        raise RuntimeError("a failure on rank 1")
    opt.step()                       # rank 0 then waits in the gradient allreduce forever
    if comm.rank == 0:               # ... unless the job is aborted
        fo.save({"step": step + 1, "p": p.copy()}, path)
"""


def test_a_rank_that_raises_ends_the_whole_job(tmp_path):
    """``mpirun -n 2 python -m mpi4py train.py``: an exception on one rank aborts every rank
    (exit status non-zero) within seconds, and the last checkpoint stays intact."""
    command = _mpirun()
    script = tmp_path / "train.py"
    script.write_text(FAULTY_SCRIPT)
    checkpoint = tmp_path / "last.fo"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    start = time.monotonic()
    try:
        result = subprocess.run(
            command + ["-n", "2", sys.executable, "-m", "mpi4py", str(script), str(checkpoint)],
            capture_output=True, text=True, env=env, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the job still ran 60 s after one rank raised")
    elapsed = time.monotonic() - start
    assert result.returncode != 0
    assert elapsed < 30, elapsed
    assert "a failure on rank 1" in result.stderr + result.stdout

    import fastoptim as fo

    saved = fo.load(checkpoint)                    # complete, loadable, self-consistent
    assert 1 <= saved["step"] <= 21
    np.testing.assert_array_equal(saved["p"], np.full(4096, -0.5 * saved["step"], np.float32))


def _demo(command, ranks, *args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(
        command + ["-n", str(ranks), sys.executable, "-m", "mpi4py", "-m", "fastoptim", "demo",
                   "--distributed", "--log-every", "1000", "--threads", "1", *args],
        capture_output=True, text=True, env=env, timeout=300, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    digest = result.stdout.split("params sha256: ")[1].split()[0]
    return digest


def test_distributed_demo_resumes_exactly_and_on_another_world_size(tmp_path):
    command = _mpirun()
    whole = _demo(command, 2, "--steps", "30", "--out", "a", cwd=tmp_path)
    _demo(command, 2, "--steps", "30", "--stop-after", "15", "--out", "b", cwd=tmp_path)
    shutil.copytree(tmp_path / "b", tmp_path / "c")
    assert _demo(command, 2, "--resume", "--out", "b", cwd=tmp_path) == whole  # bit for bit
    other = _demo(command, 3, "--resume", "--out", "c", cwd=tmp_path)       # 3 ranks go on
    import fastoptim as fo

    saved = fo.load(tmp_path / "c" / "checkpoint.fo")
    assert saved["step"] == 30 and saved["format"] == "fastoptim-demo"
    assert other != whole   # the batch is split in 3 shards: another rounding of the same sums


def test_distributed_bench_smoke(tmp_path):
    command = _mpirun()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = tmp_path / "bench.json"
    result = subprocess.run(
        command + ["-n", "2", sys.executable, "-m", "mpi4py", "-m", "fastoptim", "bench",
                   "--distributed", "--quick", "--no-torch", "--steps", "1", "--repeats", "1",
                   "--json", str(out)],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fastoptim ZeRO(Adam, average_gradients=True)" in result.stdout
    import json

    report = json.loads(out.read_text())
    assert report["ranks"] == 2 and all(v > 0 for v in report["step_ms"].values())
