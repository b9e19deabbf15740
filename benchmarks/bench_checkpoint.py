"""Checkpoint throughput and memory: fastoptim.save/load against the disk, pickle and torch.save.

The state is what Adam keeps for a model of N float32 parameters (the parameters, ``exp_avg`` and
``exp_avg_sq``: 12 bytes per parameter), in a training-checkpoint layout, 1 GB by default (about
90M parameters). Each save and each load runs in a fresh Python process so that its peak resident
memory (``ru_maxrss``) can be measured; the table shows the memory it needed *beyond* the state
itself (a load returns the state, a save is handed it). Every save ends with ``fsync`` (as
``fastoptim.save`` does), and the page cache is emptied for the file (``POSIX_FADV_DONTNEED``)
before every load, so the loads read from the disk, not from memory.

The reference rows are the disk itself: writing the same bytes with ``os.write`` + ``fsync``, and
reading them with ``readinto`` into preallocated arrays.

Usage::

    python benchmarks/bench_checkpoint.py [--size-gb 1.0] [--dir /tmp] [--no-torch] [--warm]
    python benchmarks/bench_checkpoint.py --formats torch,torchzip   # torch files: torch vs fastoptim

The ``torchzip`` row reads the file ``torch.save`` wrote with ``fastoptim.load`` (in a process
that never imports torch), beside the ``torch`` row's ``torch.load(weights_only=True)`` of the same
kind of file: the side-by-side comparison of reading torch files. ``--warm`` leaves the file in the
page cache, so that the loads measure the readers rather than the disk.

It writes one file of the given size at a time into ``--dir`` (deleted afterwards); check the free
space first. On a shared machine run it once, not in a loop.
"""

import argparse
import hashlib
import importlib.util
import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np

N_PARAMETERS = 16  # the model's parameter arrays; the total size is split evenly between them


def current_rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def evict_from_page_cache(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # DONTNEED only drops clean pages
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_state(total_bytes):
    """Adam state in the layout of a training checkpoint, filled in place (no temporaries)."""
    per_array = max(1, total_bytes // (3 * N_PARAMETERS * 4))
    model, state = {}, {}
    for index in range(N_PARAMETERS):
        arrays = []
        for offset in range(3):
            array = np.empty(per_array, np.float32)
            array[:] = index + offset / 4
            arrays.append(array)
        model[f"layer{index}.weight"] = arrays[0]
        state[index] = {"step": 1000, "exp_avg": arrays[1], "exp_avg_sq": arrays[2]}
    groups = [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
               "params": list(range(N_PARAMETERS))}]
    return {"model": model, "optimizer": {"state": state, "param_groups": groups}, "epoch": 3}


def arrays_of(state):
    for index in range(N_PARAMETERS):
        yield state["model"][f"layer{index}.weight"]
        yield state["optimizer"]["state"][index]["exp_avg"]
        yield state["optimizer"]["state"][index]["exp_avg_sq"]


def check_state(state):
    for index in range(N_PARAMETERS):
        arrays = (state["model"][f"layer{index}.weight"],
                  state["optimizer"]["state"][index]["exp_avg"],
                  state["optimizer"]["state"][index]["exp_avg_sq"])
        for offset, array in enumerate(arrays):
            value = float(np.asarray(array)[-1])
            if value != index + offset / 4:
                raise AssertionError(f"loaded the wrong value {value} for array {index}.{offset}")


# ---- the operations, each run in a child process -------------------------------------------------


def save_raw(state, path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        for array in arrays_of(state):
            view = memoryview(array).cast("B")
            while view:
                view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def load_raw(path, total_bytes):
    per_array = total_bytes // (3 * N_PARAMETERS * 4)
    arrays = [np.empty(per_array, np.float32) for _ in range(3 * N_PARAMETERS)]
    with open(path, "rb", buffering=0) as file:
        for array in arrays:
            view = memoryview(array).cast("B")
            while view:
                view = view[file.readinto(view):]
    return arrays


def save_fastoptim(state, path):
    import fastoptim

    fastoptim.save(state, path)


def load_fastoptim(path):
    import fastoptim

    return fastoptim.load(path)


def save_pickle(state, path, protocol):
    with open(path, "wb") as file:
        pickle.dump(state, file, protocol=protocol)
        file.flush()
        os.fsync(file.fileno())


def load_pickle(path):
    with open(path, "rb") as file:
        return pickle.load(file)


def _to_torch(obj):
    import torch

    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj)  # shares the memory: no copy
    if isinstance(obj, dict):
        return {key: _to_torch(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_to_torch(value) for value in obj]
    return obj


def save_torch(state, path):
    import torch

    torch.save(_to_torch(state), path)
    fsync_path(path)  # torch.save does not fsync; the comparison is with durable saves


def load_torch(path):
    import torch

    return torch.load(path, weights_only=True)


def child(operation, path, total_bytes):
    if operation == "load-torchzip":
        import fastoptim  # noqa: F401 - and never torch: the point of this row
    elif operation.endswith("torch"):
        import torch  # noqa: F401 - imported before the baseline is taken

        torch.set_num_threads(1)
    if operation.endswith("fastoptim"):
        import fastoptim  # noqa: F401

    if operation.startswith("save"):
        state = make_state(total_bytes)
        nbytes = sum(array.nbytes for array in arrays_of(state))
        baseline = current_rss()
        start = time.perf_counter()
        {
            "save-raw": lambda: save_raw(state, path),
            "save-fastoptim": lambda: save_fastoptim(state, path),
            "save-pickle4": lambda: save_pickle(state, path, 4),
            "save-pickle5": lambda: save_pickle(state, path, 5),
            "save-torch": lambda: save_torch(state, path),
            "save-torchzip": lambda: save_torch(state, path),
        }[operation]()
        seconds = time.perf_counter() - start
        extra = peak_rss() - baseline
    else:
        baseline = current_rss()
        start = time.perf_counter()
        loaded = {
            "load-raw": lambda: load_raw(path, total_bytes),
            "load-fastoptim": lambda: load_fastoptim(path),
            "load-pickle4": lambda: load_pickle(path),
            "load-pickle5": lambda: load_pickle(path),
            "load-torch": lambda: load_torch(path),
            "load-torchzip": lambda: load_fastoptim(path),
        }[operation]()
        seconds = time.perf_counter() - start
        if operation == "load-raw":
            nbytes = sum(array.nbytes for array in loaded)
        else:
            if operation == "load-torch":
                loaded = _from_torch(loaded)
            check_state(loaded)
            if operation == "load-torchzip":
                assert "torch" not in sys.modules, "fastoptim.load imported torch"
            nbytes = sum(np.asarray(array).nbytes for array in arrays_of(loaded))
        # The loaded state itself is expected; report what was needed beyond it.
        extra = peak_rss() - baseline - nbytes
    print(json.dumps({"seconds": seconds, "bytes": nbytes, "extra": extra}))


def _from_torch(obj):
    if hasattr(obj, "numpy"):
        return obj.numpy()
    if isinstance(obj, dict):
        return {key: _from_torch(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_from_torch(value) for value in obj]
    return obj


# ---- driver ------------------------------------------------------------------------------------


def run_child(operation, path, total_bytes):
    command = [sys.executable, os.path.abspath(__file__), "--child", operation, path,
               str(total_bytes)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"{operation} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def checksum_speeds(nbytes=256 << 20):
    data = memoryview(np.random.default_rng(0).integers(0, 256, nbytes, dtype=np.uint8))
    rows = []
    for name, function in [
        ("zlib.crc32", lambda view: zlib.crc32(view)),
        ("zlib.adler32", lambda view: zlib.adler32(view)),
        ("hashlib.sha256", lambda view: hashlib.sha256(view).digest()),
        ("hashlib.sha1", lambda view: hashlib.sha1(view).digest()),
        ("hashlib.blake2b", lambda view: hashlib.blake2b(view).digest()),
    ]:
        function(data[: 1 << 20])
        start = time.perf_counter()
        function(data)
        rows.append((name, nbytes / (time.perf_counter() - start) / 1e9))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gb", type=float, default=1.0, help="checkpoint size (default 1)")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where to write the file")
    parser.add_argument("--no-torch", action="store_true", help="skip torch.save/torch.load")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run each save/load this many times and report the fastest")
    parser.add_argument("--formats", default="raw,fastoptim,pickle5,pickle4,torch,torchzip",
                        help="comma-separated subset of raw,fastoptim,pickle5,pickle4,torch,"
                             "torchzip")
    parser.add_argument("--warm", action="store_true",
                        help="load from the page cache (do not evict the file before loading)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        operation, path, total_bytes = args.child
        child(operation, path, int(total_bytes))
        return

    total_bytes = int(args.size_gb * 1e9)
    free = shutil.disk_usage(args.dir).free
    if free < 1.5 * total_bytes:
        sys.exit(f"only {free / 1e9:.1f} GB free in {args.dir}; need {1.5 * total_bytes / 1e9:.1f}")

    formats = [("raw disk (os.write+fsync / readinto)", "raw"),
               ("fastoptim.save / fastoptim.load", "fastoptim"),
               ("pickle protocol 5", "pickle5"),
               ("pickle protocol 4 (the default)", "pickle4")]
    if not args.no_torch and "torch" in args.formats.split(","):
        # Not imported here: a child inherits the peak RSS of the process it was forked from,
        # so this driver must stay small for the children's ru_maxrss to mean anything.
        if importlib.util.find_spec("torch") is not None:
            formats.append(("torch.save / torch.load(weights_only=True)", "torch"))
            formats.append(("torch.save / fastoptim.load (no torch)", "torchzip"))
        else:
            print("torch is not installed: skipping torch.save")
    formats = [(label, key) for label, key in formats if key in args.formats.split(",")]

    print(f"checkpoint: two-moment state for {total_bytes // 12 / 1e6:.0f}M float32 parameters "
          f"({3 * N_PARAMETERS} arrays, {total_bytes / 1e9:.2f} GB); files in {args.dir}")
    print(f"numpy {np.__version__}, python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
    header = f"{'format':45s} {'op':5s} {'seconds':>8s} {'GB/s':>6s} {'extra MiB':>10s}"
    print(header)
    print("-" * len(header))
    directory = tempfile.mkdtemp(prefix="bench-checkpoint-", dir=args.dir)
    try:
        for label, key in formats:
            path = os.path.join(directory, f"state.{key}")
            results = {"save": [], "load": []}
            for _ in range(args.repeat):
                results["save"].append(run_child(f"save-{key}", path, total_bytes))
                if not args.warm:
                    evict_from_page_cache(path)
                results["load"].append(run_child(f"load-{key}", path, total_bytes))
            os.unlink(path)
            for operation, runs in results.items():
                best = min(runs, key=lambda result: result["seconds"])
                extra = max(result["extra"] for result in runs)  # memory: the worst run
                rate = best["bytes"] / best["seconds"] / 1e9
                print(f"{label:45s} {operation:5s} {best['seconds']:8.2f} {rate:6.2f} "
                      f"{extra / 2**20:10.0f}", flush=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"\nseconds, GB/s: the fastest of {args.repeat} run(s); extra MiB: the largest peak "
          f"resident memory beyond the state itself (the state is {total_bytes / 2**20:.0f} MiB)")
    print("\nchecksum speed on 256 MiB in memory (fastoptim uses zlib.crc32):")
    for name, rate in checksum_speeds():
        print(f"  {name:16s} {rate:6.2f} GB/s")


if __name__ == "__main__":
    main()
