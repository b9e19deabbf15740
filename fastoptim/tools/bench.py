"""The benchmark suite: ``python -m fastoptim bench``.

An optimizer step is memory-bound: Adam in float32 reads params, grads and both moments and writes
three of them back, 28 bytes per element. This suite times fastoptim against its peers on the same
arrays, in the same process, and against a *bandwidth bound* measured in the same run: a compiled
STREAM-style kernel (``fastoptim._stream``) that moves exactly the bytes the optimizer must move
over the same shapes with the same threads. Every result is reported as time per step, elements
and bytes per second, percent of that bound, and how many times faster fastoptim is.

How a cell is measured (one workload x optimizer x dtype):

1. Every peer copies the same initial parameters and shares the same fixed gradients; it runs two
   steps, and its parameters are compared with fastoptim's (:func:`check_agreement`), so a peer that
   skips work cannot look fast. A mismatch is reported and makes the command exit with status 1.
2. For each thread count: the thread count is set for fastoptim and torch, every peer is warmed
   up, and the number of steps per repetition is calibrated so one repetition takes about
   ``--min-time`` seconds.
3. Repetitions are interleaved (bound, A, B, C, bound, A, B, C, ...) so that a drift in machine
   load hits every peer alike; each repetition is ``time.perf_counter`` around N steps, with the
   garbage collector off. The median over repetitions is reported, with the interquartile range.

The workload and optimizer tables (:data:`WORKLOADS`, :data:`OPTIMIZERS`) are shared with the asv
benchmarks in ``benchmarks/tracking/benchmarks.py`` (in the repository, not the package).
"""
import argparse
import datetime
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np

import fastoptim
from fastoptim.optim import registry as _registry
from fastoptim.tools import peers as _bench_peers
from fastoptim.tools.peers import Case, make_peer, unavailable_reason

__all__ = ["Workload", "OptimizerConfig", "WORKLOADS", "OPTIMIZERS", "DTYPES", "run", "main",
           "check_agreement", "measure_overhead", "StreamBound"]


# ----------------------------------------------------------------------------------------------
# what is measured
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Workload:
    """A list of parameter shapes, at full size and at ``--quick`` size.

    ``name`` identifies the workload (``--workloads``, the JSON output); ``quick_name`` is what the
    tables call its ``--quick`` shapes, which are far smaller than ``name`` says.
    """

    name: str
    description: str
    shapes: tuple
    quick_shapes: tuple
    quick_name: str

    def get_shapes(self, quick=False):
        return list(self.quick_shapes if quick else self.shapes)

    def label(self, quick=False):
        return self.quick_name if quick else self.name


def _repeat(*groups):
    return tuple(shape for count, shape in groups for _ in range(count))


WORKLOADS = {
    w.name: w for w in (
        Workload("10M", "one array of 10M elements", ((10_000_000,),), ((65_536,),), "64k"),
        Workload("mix", "transformer-like: 20x(1024,1024) 2x(1024,4096) 20x(4096,) 108x(1024,)",
                 _repeat((20, (1024, 1024)), (2, (1024, 4096)), (20, (4096,)), (108, (1024,))),
                 _repeat((20, (32, 32)), (2, (32, 128)), (20, (128,)), (108, (32,))), "mix-35k"),
        Workload("1000x1k", "1000 arrays of 1024 elements", _repeat((1000, (1024,))),
                 _repeat((200, (16,))), "200x16"),
        Workload("100M", "one array of 100M elements (larger than the cache: DRAM-bound)",
                 ((100_000_000,),), ((262_144,),), "256k"),
    )
}
# 100M is opt-in: with every peer it needs ~10 GB in float32 (each peer holds its own params and
# state) and minutes per cell on a 2-core machine.
DEFAULT_WORKLOADS = ("10M", "mix", "1000x1k")


@dataclass(frozen=True)
class OptimizerConfig:
    """One optimizer of the registry with fixed hyperparameters, and the bytes its step must move.

    ``optimizer`` is the key of the optimizer in :data:`fastoptim.optim.registry.OPTIMIZERS`,
    ``hyperparameters`` the class's keyword arguments besides ``lr``. The learning rate is small so
    that parameters drift slowly over the many thousands of timed steps. ``n_read`` arrays are
    read per element (params, grads and the state arrays the step uses) and ``n_write`` written
    back (params and that state); the grads are only read.
    """

    name: str
    description: str
    optimizer: str
    hyperparameters: dict = field(default_factory=dict)
    lr: float = 1e-4

    @property
    def info(self):
        """The optimizer's :class:`~fastoptim.optim.registry.OptimizerInfo`."""
        return _registry.OPTIMIZERS[self.optimizer]

    @property
    def kwargs(self):
        """The class's keyword arguments."""
        return {**self.hyperparameters, "lr": self.lr}

    @cached_property
    def group(self):
        """The full param group the class makes of :attr:`kwargs` (its defaults filled in)."""
        group = self.info.cls([fastoptim.Parameter(np.zeros(1))], **self.kwargs).param_groups[0]
        return {key: value for key, value in group.items() if key != "params"}

    @property
    def n_read(self):
        return 2 + len(self.info.active_buffers(self.group))

    @property
    def n_write(self):
        return 1 + len(self.info.active_buffers(self.group))

    def bytes_per_element(self, dtype):
        return self.info.bytes_per_element(np.dtype(dtype).itemsize, self.group)


def _class_available(info):
    try:
        info.cls
    except (ImportError, AttributeError):
        return False
    return True


def _describe(info, hyperparameters):
    return ", ".join([info.name] + [f"{key}={value!r}" for key, value in hyperparameters.items()])


# Every optimizer of the registry whose class exists in this build, with the configurations its
# entry names (``bench_configs``; by default one with the class defaults).
OPTIMIZERS = {
    key: OptimizerConfig(key, _describe(info, hyperparameters), info.name, hyperparameters)
    for info in _registry.OPTIMIZERS.values() if _class_available(info)
    for key, hyperparameters in (info.bench_configs or ((info.name.lower(), {}),))
}

# The step() overhead is measured for the first configurations of the registry's first two
# optimizers (the one-buffer and the two-buffer optimizer of the original three): the fixed and
# per-array costs are those of the step template, shared by every optimizer.
OVERHEAD_OPTIMIZERS = tuple(OPTIMIZERS)[:2]

DTYPES = ("float32", "float64")

# Peer order in the tables; "fastoptim" (functional) and the bound always run.
PEER_ORDER = ("bound", "fastoptim", "fastoptim-class", "numpy", "numpy-blocked",
              "torch-forloop", "torch-foreach", "torch-fused", "optax")
OPTIONAL_PEERS = PEER_ORDER[2:]


class BenchError(Exception):
    """A problem with the request or the environment, reported as a message and exit status 2."""


# ----------------------------------------------------------------------------------------------
# the bandwidth bound
# ----------------------------------------------------------------------------------------------

class StreamBound(_bench_peers.Peer):
    """The bandwidth bound: ``fastoptim._stream`` moving the optimizer's bytes over the same shapes.

    For an optimizer that reads ``k`` arrays and writes ``k - 1`` back, it holds ``k`` arrays per
    workload shape and each step reads all of them and writes ``k - 1`` in place (see
    ``_stream_impl.pxi``), split over the threads exactly as the optimizer kernels split their work.
    """

    name = "bound"
    label = "bound (stream)"

    def __init__(self, case):
        from fastoptim._stream import StreamPlan

        rng = np.random.default_rng(1)
        groups = []
        for shape in case.shapes:
            arrays = []
            for _ in range(case.config.n_read):
                a = rng.random(shape, dtype=case.dtype)
                a += 1.0                         # values in [1, 2): no subnormals, see _stream_impl.pxi
                arrays.append(a)
            groups.append(tuple(arrays))
        self.plan = StreamPlan(groups)
        self.threads = 1
        self.params = []

    def step(self):
        self.plan.run(self.threads)


# ----------------------------------------------------------------------------------------------
# measuring
# ----------------------------------------------------------------------------------------------

def check_agreement(params, reference, initial):
    """How far ``params`` are from ``reference``, in units of the allowed error (<= 1 agrees).

    The allowed error per element is 2 ulps of the reference value plus 0.1% of the reference
    update (``reference - initial``): tight enough that a peer that skips or mangles the update
    (of size ``lr``, thousands of ulps) fails, loose enough for a different but correct rounding
    order (NumPy has no fused multiply-add; optax bias-corrects in another order).

    Returns
    -------
    float
        The largest error divided by its allowance; ``inf`` for a shape mismatch or a NaN.
    """
    worst = 0.0
    if len(params) != len(reference):
        return math.inf
    for p, r, p0 in zip(params, reference, initial):
        p = np.asarray(p)
        if p.shape != r.shape:
            return math.inf
        r64 = r.astype(np.float64)
        allowed = (2.0 * np.spacing(np.abs(r)).astype(np.float64)
                   + 1e-3 * np.abs(r64 - p0.astype(np.float64)))
        err = np.abs(p.astype(np.float64) - r64)
        if np.isnan(err).any():
            return math.inf
        if err.size:
            worst = max(worst, float(np.max(err / allowed)))
    return worst


def _set_threads(n):
    fastoptim.set_num_threads(n)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)


def _time_steps(peer, n_steps):
    step = peer.step
    start = time.perf_counter()
    for _ in range(n_steps):
        step()
    peer.sync()
    return (time.perf_counter() - start) / n_steps


def _calibrate(peer, min_time, max_steps=1_000_000):
    """Steps per repetition so that one repetition lasts about ``min_time`` seconds."""
    one = min(_time_steps(peer, 1), _time_steps(peer, 1))
    if one <= 0:
        return max_steps
    return int(min(max_steps, max(1, math.ceil(min_time / one))))


def _summary(times):
    times = sorted(times)
    if len(times) >= 2:
        q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive")
    else:
        q1 = q3 = times[0]
    return {"median_s": statistics.median(times), "q1_s": q1, "q3_s": q3,
            "min_s": times[0], "max_s": times[-1]}


def _estimate_bytes(case_elements, itemsize, config, peer_names):
    """A generous estimate of the memory one cell holds (to refuse a run that cannot fit)."""
    per_peer = {
        "fastoptim": config.n_write, "fastoptim-class": config.n_write,
        "numpy": config.n_write + 1 + (config.group.get("weight_decay", 0) != 0),
        "numpy-blocked": config.n_write,
        "torch-forloop": config.n_write + 1, "torch-foreach": config.n_write + 3,
        "torch-fused": config.n_write, "optax": 2 * config.n_write + 1,
    }
    arrays = 2 + config.n_read                  # initial params, grads, the bound's arrays
    arrays += sum(per_peer[name] for name in peer_names)
    return case_elements * itemsize * arrays


def _available_memory():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _log(message, quiet):
    if not quiet:
        print(f"bench: {message}", file=sys.stderr, flush=True)


def _progress(done, total, label, quiet, width=30):
    """A progress bar on stderr: redrawn in place on a terminal, one line per step otherwise."""
    if quiet:
        return
    filled = round(width * done / total) if total else width
    bar = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label}"
    if sys.stderr.isatty():
        end = "\n" if done == total else ""
        print(f"\r{bar:<79}", end=end, file=sys.stderr, flush=True)
    else:
        print(f"bench: {bar}", file=sys.stderr, flush=True)


def run_cell(workload, config, dtype, threads, peer_names, *, quick=False, repeats=5,
             min_time=0.1):
    """Measure one workload x optimizer x dtype for every thread count.

    Returns
    -------
    results : list of dict
        One record per thread count and peer (the bound included), with the raw per-step times.
    problems : list of dict
        Peers that could not be built or run (``reason``) or that disagree with fastoptim
        (``mismatch``, the error in allowances).
    """
    case = Case(workload.get_shapes(quick), dtype, config)
    problems = []
    peers = [StreamBound(case), make_peer("fastoptim", case)]
    for name in peer_names:
        try:
            peers.append(make_peer(name, case))
        except _bench_peers.Unsupported as exc:  # the peer has no such optimizer or option
            problems.append({"peer": name, "kind": "unsupported", "reason": str(exc)})
        except Exception as exc:  # an optional library refusing a configuration (e.g. a dtype)
            problems.append({"peer": name, "kind": "skipped",
                             "reason": f"{type(exc).__name__}: {exc}"})

    # Two verification steps from the same start: they also warm every peer up.
    _set_threads(max(threads))
    peers[0].threads = max(threads)
    verified = {}
    alive = []
    for peer in peers:
        try:
            peer.step()
            peer.step()
            peer.sync()
        except Exception as exc:
            if peer.name in ("bound", "fastoptim"):
                raise
            problems.append({"peer": peer.name, "kind": "skipped",
                             "reason": f"{type(exc).__name__}: {exc}"})
            continue
        alive.append(peer)
    peers = alive
    reference = peers[1].numpy_params()
    for peer in peers[2:]:
        error = check_agreement(peer.numpy_params(), reference, case.init_params)
        verified[peer.name] = error
        if not error <= 1.0:
            problems.append({"peer": peer.name, "kind": "mismatch",
                             "error": error if math.isfinite(error) else None,
                             "reason": f"parameters after 2 steps differ from fastoptim's by "
                                       f"{error:.3g}x the allowed error"})

    bytes_per_element = config.bytes_per_element(dtype)
    results = []
    for n_threads in threads:
        _set_threads(n_threads)
        peers[0].threads = n_threads
        for peer in peers:
            peer.step()
            peer.sync()
        steps = [_calibrate(peer, min_time) for peer in peers]
        times = [[] for _ in peers]
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            for _ in range(repeats):
                for k, peer in enumerate(peers):
                    times[k].append(_time_steps(peer, steps[k]))
        finally:
            if gc_was_enabled:
                gc.enable()
        for k, peer in enumerate(peers):
            record = {
                "workload": workload.name, "optimizer": config.name, "dtype": np.dtype(dtype).name,
                "threads": n_threads, "peer": peer.name, "label": peer.label,
                "n_arrays": len(case.shapes), "n_elements": case.n_elements,
                "bytes_per_element": bytes_per_element,
                "steps_per_repeat": steps[k], "times_s": times[k],
            }
            record.update(_summary(times[k]))
            if peer.name != "bound":
                # error in allowances (None: shapes differ or NaN); fastoptim is the reference
                error = verified.get(peer.name, 0.0)
                record["agrees"] = error <= 1.0
                record["agreement_error"] = error if math.isfinite(error) else None
            results.append(record)
    del peers, case
    gc.collect()
    return results, problems


def _derive(results):
    """Add throughput, percent of bound and speedups to every record, in place."""
    cells = {}
    for r in results:
        cells.setdefault((r["workload"], r["optimizer"], r["dtype"], r["threads"]), {})[r["peer"]] = r
    for cell in cells.values():
        bound = cell.get("bound")
        fo = cell.get("fastoptim")
        cls = cell.get("fastoptim-class")
        for r in cell.values():
            t = r["median_s"]
            r["melem_per_s"] = r["n_elements"] / t / 1e6
            r["gb_per_s"] = r["n_elements"] * r["bytes_per_element"] / t / 1e9
            r["pct_of_bound"] = 100.0 * bound["median_s"] / t if bound else None
            r["iqr_pct"] = 100.0 * (r["q3_s"] - r["q1_s"]) / t
            # how many times faster fastoptim is than this peer (> 1: fastoptim wins)
            r["fastoptim_speedup"] = t / fo["median_s"] if fo else None
            r["class_speedup"] = t / cls["median_s"] if cls else None


# ----------------------------------------------------------------------------------------------
# Python overhead of opt.step()
# ----------------------------------------------------------------------------------------------

def measure_overhead(peer_names=("fastoptim-class", "fastoptim", "torch-fused"),
                     optimizers=None, counts=(1, 1000), repeats=5, min_time=0.05):
    """The fixed and per-array cost of one step on 1-element float32 params.

    A step over ``counts[-1]`` one-element arrays and over ``counts[0]`` of them moves almost no
    data, so their times are the Python and call overhead: the per-array cost is the slope between
    the two, the fixed cost the intercept. Each is the fastest of the interleaved repetitions (as
    ``timeit`` advises for pure CPU work: load from other processes only ever adds time). One
    thread. Peers that cannot run here are left out.

    Returns
    -------
    list of dict
        One record per optimizer and peer: ``fixed_us``, ``per_array_us`` and the raw times.
        ``optimizers`` defaults to :data:`OVERHEAD_OPTIMIZERS`.
    """
    if optimizers is None:
        optimizers = OVERHEAD_OPTIMIZERS
    records = []
    _set_threads(1)
    for opt_name in optimizers:
        config = OPTIMIZERS[opt_name]
        peers = []
        for name in peer_names:
            if name != "fastoptim" and unavailable_reason(name) is not None:
                continue
            built = []
            for count in counts:
                case = Case([(1,)] * count, np.float32, config)
                peer = make_peer(name, case)
                for _ in range(3):
                    peer.step()
                built.append(peer)
            peers.append((name, built))
        plan = [(name, count, peer, _calibrate(peer, min_time))
                for name, built in peers for count, peer in zip(counts, built)]
        times = {(name, count): [] for name, count, _, _ in plan}
        gc.disable()
        try:
            for _ in range(repeats):
                for name, count, peer, steps in plan:
                    times[name, count].append(_time_steps(peer, steps))
        finally:
            gc.enable()
        for name, built in peers:
            best = [min(times[name, c]) for c in counts]
            per_array = (best[-1] - best[0]) / (counts[-1] - counts[0])
            fixed = best[0] - per_array * counts[0]
            record = {"optimizer": opt_name, "peer": name, "counts": list(counts),
                      "min_step_s": best,
                      "median_step_s": [statistics.median(times[name, c]) for c in counts],
                      "times_s": [times[name, c] for c in counts],
                      "fixed_us": fixed * 1e6, "per_array_us": per_array * 1e6}
            records.append(record)
    return records


# ----------------------------------------------------------------------------------------------
# the machine
# ----------------------------------------------------------------------------------------------

def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _cpu_model():
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _l3_cache():
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return None
    for entry in entries:
        if _read(os.path.join(base, entry, "level")) == "3":
            return _read(os.path.join(base, entry, "size"))
    return None


def _memory_total():
    text = _read("/proc/meminfo") or ""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def _usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def machine_info():
    """CPU, cores, caches, memory, load and library versions, for the JSON output."""
    from fastoptim._config import config_dict

    info = {
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": _usable_cores(),
        "l3_cache": _l3_cache(),
        "memory_total_bytes": _memory_total(),
        "memory_available_bytes": _available_memory(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "fastoptim": config_dict(),
    }
    # versions from the installed metadata: no import of a library the run does not use
    from importlib import metadata

    for module in ("torch", "jax", "optax"):
        try:
            info[module] = metadata.version(module)
        except metadata.PackageNotFoundError:
            info[module] = None
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch_parallel_info"] = torch.__config__.parallel_info()
    info["environment"] = {k: os.environ[k] for k in sorted(os.environ)
                           if k.startswith(("OMP_", "GOMP_", "KMP_", "MKL_", "XLA_"))}
    return info


# ----------------------------------------------------------------------------------------------
# output
# ----------------------------------------------------------------------------------------------

TABLE_HEADERS = ("workload", "optimizer", "dtype", "threads", "peer", "ms/step", "IQR %",
                 "Melem/s", "GB/s", "% bound", "fo speedup", "class speedup")


def _fmt(value, digits=3):
    if value is None:
        return "-"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:,.{decimals}f}"


def table_rows(results):
    """The table's rows (strings), in PEER_ORDER within each cell."""
    order = {name: k for k, name in enumerate(PEER_ORDER)}
    has_class = any(r["peer"] == "fastoptim-class" for r in results)
    rows = []
    for r in sorted(results, key=lambda r: (list(WORKLOADS).index(r["workload"]),
                                            list(OPTIMIZERS).index(r["optimizer"]),
                                            r["dtype"], r["threads"], order[r["peer"]])):
        peer = r["peer"] + ("" if r.get("agrees", True) else " (MISMATCH)")
        row = [r["workload"], r["optimizer"], r["dtype"], str(r["threads"]), peer,
               _fmt(r["median_s"] * 1e3), f"{r['iqr_pct']:.1f}", _fmt(r["melem_per_s"]),
               _fmt(r["gb_per_s"]),
               "-" if r["pct_of_bound"] is None else f"{r['pct_of_bound']:.0f}",
               "-" if r["peer"] == "bound" else _fmt(r["fastoptim_speedup"]),
               "-" if r["peer"] == "bound" else _fmt(r["class_speedup"])]
        rows.append(row if has_class else row[:-1])
    headers = list(TABLE_HEADERS if has_class else TABLE_HEADERS[:-1])
    return headers, rows


def format_table(results, fmt="text"):
    """The results table as plain text or as a reStructuredText simple table."""
    headers, rows = table_rows(results)
    return _format_rows(headers, rows, numeric_from=5, group=4, fmt=fmt)


def _format_rows(headers, rows, *, numeric_from, group, text_peer_column=None, fmt="text"):
    """Align ``rows`` (lists of strings) under ``headers``; in text, a blank line wherever the
    first ``group`` columns change."""
    widths = [max(len(h), *(len(row[k]) for row in rows)) if rows else len(h)
              for k, h in enumerate(headers)]
    numeric = [(k >= numeric_from or k == 3) and k != text_peer_column
               for k in range(len(headers))]

    def line(cells):
        return "  ".join(c.rjust(w) if num else c.ljust(w)
                         for c, w, num in zip(cells, widths, numeric)).rstrip()

    if fmt == "rst":
        rule = "  ".join("=" * w for w in widths)
        return "\n".join([rule, line(headers), rule, *(line(r) for r in rows), rule])
    out = [line(headers), "  ".join("-" * w for w in widths)]
    previous = None
    for row in rows:
        cell = tuple(row[:group])
        if previous is not None and cell != previous:
            out.append("")
        out.append(line(row))
        previous = cell
    return "\n".join(out)


def _ours(cell):
    """fastoptim's row of a cell: ``opt.step()`` when it was measured, else the functional step."""
    return cell.get("fastoptim-class") or cell.get("fastoptim")


def summary(results):
    """One record per workload x optimizer x dtype x threads: fastoptim against the fastest peer.

    fastoptim's time is ``opt.step()`` (``fastoptim-class``) when it was measured, else the
    functional step; the peers are every other implementation (not the bound). ``ratio`` is the
    peer's time over fastoptim's: above 1 fastoptim is faster, below 1 the peer is.
    """
    cells = {}
    for r in results:
        cells.setdefault((r["workload"], r["optimizer"], r["dtype"], r["threads"]), {})[r["peer"]] = r
    order = {name: k for k, name in enumerate(PEER_ORDER)}
    rows = []
    for key in sorted(cells, key=lambda k: (list(WORKLOADS).index(k[0]),
                                            list(OPTIMIZERS).index(k[1]), k[2], k[3])):
        cell = cells[key]
        ours = _ours(cell)
        others = [r for name, r in sorted(cell.items(), key=lambda item: order[item[0]])
                  if name not in ("bound", "fastoptim", "fastoptim-class") and r.get("agrees", True)]
        best = min(others, key=lambda r: r["median_s"], default=None)
        rows.append({
            "workload": key[0], "optimizer": key[1], "dtype": key[2], "threads": key[3],
            "fastoptim_peer": ours["peer"], "fastoptim_ms": ours["median_s"] * 1e3,
            "fastoptim_pct_of_bound": ours["pct_of_bound"],
            "best_peer": best["peer"] if best else None,
            "best_peer_ms": best["median_s"] * 1e3 if best else None,
            "best_peer_pct_of_bound": best["pct_of_bound"] if best else None,
            "ratio": best["median_s"] / ours["median_s"] if best else None,
        })
    return rows


SUMMARY_HEADERS = ("workload", "optimizer", "dtype", "threads", "fastoptim ms", "% bound",
                   "fastest peer", "peer ms", "% bound", "speedup")


def format_summary(rows, fmt="text", columns=SUMMARY_HEADERS):
    """The summary as plain text or as a reStructuredText simple table.

    ``columns``: the headers of :data:`SUMMARY_HEADERS` to show, in that order (the docs leave out
    dtype and threads, which their tables state once).
    """
    body = []
    for r in rows:
        ratio = r["ratio"]
        body.append([r["workload"], r["optimizer"], r["dtype"], str(r["threads"]),
                     _fmt(r["fastoptim_ms"]), _pct(r["fastoptim_pct_of_bound"]),
                     r["best_peer"] or "-", _fmt(r["best_peer_ms"]),
                     _pct(r["best_peer_pct_of_bound"]),
                     "-" if ratio is None else f"{ratio:.2f}x"])
    keep = [k for k, header in enumerate(SUMMARY_HEADERS) if header in columns]
    headers = [SUMMARY_HEADERS[k] for k in keep]
    body = [[row[k] for k in keep] for row in body]
    return _format_rows(headers, body, numeric_from=headers.index("fastoptim ms"), group=1,
                        text_peer_column=headers.index("fastest peer"), fmt=fmt)


def _pct(value):
    return "-" if value is None else f"{value:.0f}"


def _machine_lines(report):
    m = report["machine"]
    cfg = m["fastoptim"]
    return [
        f"fastoptim {cfg['fastoptim']} ({cfg['kernel_variant']} kernels, OpenMP "
        f"{'on' if cfg['openmp'] else 'off'}), numpy {m['numpy']}, torch {m['torch'] or '-'}, "
        f"optax {m['optax'] or '-'}",
        f"{m['cpu_model']}, {m['usable_cpus']} usable CPUs, L3 {m['l3_cache'] or '?'}, "
        f"{(m['memory_total_bytes'] or 0) / 2**30:.0f} GiB; load average at start "
        f"{', '.join(f'{x:.2f}' for x in report['load_average_start'] or [])}, at end "
        f"{', '.join(f'{x:.2f}' for x in report['load_average_end'] or [])}",
    ]


def format_quick(report):
    """The ``--quick`` report: one compact line per optimizer configuration, times only, no ratios.

    Quick shapes are tiny (tens of kilobytes), so a step takes microseconds and its time is mostly
    call overhead and noise: percentages of the bandwidth bound and speedups computed from them
    would be meaningless, and are not shown. A cell is the sum over the workloads, dtypes and
    thread counts of the median step time (``MISMATCH`` if any of them disagrees with fastoptim),
    so that the table stays one line per optimizer however many the registry holds.
    """
    results = report["results"]
    peers = [p for p in PEER_ORDER if any(r["peer"] == p for r in results)]
    cells = {}
    for r in results:
        cells.setdefault(r["optimizer"], {}).setdefault(r["peer"], []).append(r)
    headers = ["optimizer", *peers]
    rows = []
    for name in sorted(cells, key=list(OPTIMIZERS).index):
        row = [name]
        for peer in peers:
            runs = cells[name].get(peer)
            if not runs:
                row.append("-")
            elif not all(r.get("agrees", True) for r in runs):
                row.append("MISMATCH")
            else:
                row.append(_fmt(sum(r["median_s"] for r in runs) * 1e6))
        rows.append(row)
    n_ok = sum(1 for r in results if r["peer"] != "bound" and r.get("agrees", True))

    def present(key, order, label=str):
        return ", ".join(label(x) for x in order if any(r[key] == x for r in results))

    lines = [
        *_machine_lines(report),
        f"QUICK CHECK on tiny arrays: {n_ok} of {sum(1 for r in results if r['peer'] != 'bound')} "
        "peer results agree with fastoptim after two steps.",
        "Microseconds per step summed over the quick shapes ("
        + present("workload", WORKLOADS, lambda w: WORKLOADS[w].label(quick=True)) + "), dtypes ("
        + present("dtype", DTYPES) + ") and thread counts;",
        "mostly call overhead at these sizes: not a speed comparison, so no ratios are shown.",
        "Run without --quick to measure speed.",
        "",
        _format_rows(headers, rows, numeric_from=1, group=0),
    ]
    return "\n".join(lines + _problem_lines(report))


def _problem_lines(report):
    """The problems, and one line per peer that has no implementation of some optimizers."""
    problems = [p for p in report["problems"] if p["kind"] != "unsupported"]
    missing = {}
    for p in report["problems"]:
        if p["kind"] == "unsupported":
            missing.setdefault(p["peer"], {})[p["optimizer"]] = None
    lines = []
    if problems:
        lines += ["", "Problems:"]
        for p in problems:
            where = f"{p['workload']} {p['optimizer']} {p['dtype']}"
            lines.append(f"  {p['peer']} ({where}): {p['kind']}: {p['reason']}")
    if missing:
        lines += ["", "Not run (no implementation in that peer):"]
        for peer, names in missing.items():
            lines.append(f"  {peer}: {', '.join(names)}")
    return lines


def format_report(report, fmt="text"):
    """Everything the command prints: machine, results, summary, step overhead, problems."""
    if report["settings"].get("quick"):
        return format_quick(report)
    lines = [
        *_machine_lines(report),
        f"{report['settings']['repeats']} interleaved repetitions of >= "
        f"{report['settings']['min_time_s']} s each; median, IQR as % of it. "
        "speedup: peer time / fastoptim time (above 1: fastoptim is faster).",
        "",
        format_table(report["results"], fmt),
    ]
    rows = summary(report["results"])
    if any(r["best_peer"] for r in rows):
        lines += ["", f"Summary: fastoptim ({rows[0]['fastoptim_peer']}) against the fastest other "
                      "peer of each row (speedup: peer time / fastoptim time; below 1 the peer is "
                      "faster):", "", format_summary(rows, fmt)]
    if report["overhead"]:
        lines += ["", "step() overhead on 1-element float32 params, 1 thread, fastest repetition "
                      "(fixed cost + cost per array):"]
        for o in report["overhead"]:
            lines.append(f"  {o['optimizer']:5} {o['peer']:16} {o['fixed_us']:8.1f} us + "
                         f"{o['per_array_us']:6.3f} us/array  (1 array: "
                         f"{o['min_step_s'][0] * 1e6:.1f} us, {o['counts'][-1]} arrays: "
                         f"{o['min_step_s'][-1] * 1e6:.0f} us)")
    return "\n".join(lines + _problem_lines(report))


CSV_COLUMNS = ("workload", "optimizer", "dtype", "threads", "peer", "ms_per_step", "iqr_pct",
               "melem_per_s", "gb_per_s", "pct_of_bound", "fastoptim_speedup", "class_speedup",
               "agrees")


def write_csv(results, path):
    """The results table as CSV (one row per workload x optimizer x dtype x threads x peer)."""
    import csv

    order = {name: k for k, name in enumerate(PEER_ORDER)}
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for r in sorted(results, key=lambda r: (list(WORKLOADS).index(r["workload"]),
                                                list(OPTIMIZERS).index(r["optimizer"]),
                                                r["dtype"], r["threads"], order[r["peer"]])):
            writer.writerow([
                r["workload"], r["optimizer"], r["dtype"], r["threads"], r["peer"],
                f"{r['median_s'] * 1e3:.4g}", f"{r['iqr_pct']:.1f}", f"{r['melem_per_s']:.4g}",
                f"{r['gb_per_s']:.4g}",
                "" if r["pct_of_bound"] is None else f"{r['pct_of_bound']:.0f}",
                "" if r["peer"] == "bound" or r["fastoptim_speedup"] is None
                else f"{r['fastoptim_speedup']:.3g}",
                "" if r["peer"] == "bound" or r["class_speedup"] is None
                else f"{r['class_speedup']:.3g}",
                "" if r["peer"] == "bound" else r.get("agrees", True)])


def read_csv(path):
    """Records from :func:`write_csv`'s file, with the keys :func:`summary` and :func:`plot` use."""
    import csv

    def number(text):
        return float(text) if text not in ("", None) else None

    records = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            records.append({
                "workload": row["workload"], "optimizer": row["optimizer"], "dtype": row["dtype"],
                "threads": int(row["threads"]), "peer": row["peer"],
                "median_s": float(row["ms_per_step"]) / 1e3, "iqr_pct": number(row["iqr_pct"]),
                "melem_per_s": float(row["melem_per_s"]), "gb_per_s": float(row["gb_per_s"]),
                "pct_of_bound": number(row["pct_of_bound"]),
                "fastoptim_speedup": number(row["fastoptim_speedup"]),
                "class_speedup": number(row["class_speedup"]),
                "agrees": row["agrees"] != "False"})
    return records


PLOT_COLORS = {"fastoptim": "#1f4e9a", "fastoptim-class": "#5b8fd9", "numpy": "#9c9c9c",
               "numpy-blocked": "#5f5f5f", "torch-forloop": "#f2b279", "torch-foreach": "#e8852d",
               "torch-fused": "#b34d00", "optax": "#3a9a5b"}


PLOT_LABELS = {"fastoptim": "fastoptim (functional)", "fastoptim-class": "fastoptim opt.step()",
               "optax": "optax (XLA: threads not matched)"}


def plot_paths(path, workloads):
    """The files :func:`plot` writes for ``path``: one per workload, ``NAME-<workload>.png``."""
    stem, ext = os.path.splitext(path)
    return {w: f"{stem}-{w}{ext or '.png'}" for w in workloads}


def plot(results, path, quick=False):
    """One bar chart per workload: throughput of every peer, the bandwidth bound as a line.

    Bars are grouped by optimizer and thread count (one dtype per group); the y axis is linear and
    starts at zero, and it always reaches above the tallest bar and the bound, so nothing is
    clipped. Writes the files named by :func:`plot_paths` and returns them.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = [w for w in WORKLOADS if any(r["workload"] == w for r in results)]
    written = []
    for workload, out in plot_paths(path, workloads).items():
        rows = [r for r in results if r["workload"] == workload]
        groups = sorted({(r["optimizer"], r["dtype"], r["threads"]) for r in rows},
                        key=lambda g: (list(OPTIMIZERS).index(g[0]), g[1], g[2]))
        peers = [p for p in PEER_ORDER[1:] if any(r["peer"] == p for r in rows)]
        cell = {(r["optimizer"], r["dtype"], r["threads"], r["peer"]): r for r in rows}
        dtypes = {g[1] for g in groups}
        fig, ax = plt.subplots(figsize=(11, 5.6))
        width = 0.84 / max(1, len(peers))
        top = 0.0
        for k, peer in enumerate(peers):
            xs, ys = [], []
            for x, g in enumerate(groups):
                if (*g, peer) in cell:
                    xs.append(x - 0.42 + width * (k + 0.5))
                    ys.append(cell[(*g, peer)]["melem_per_s"])
            ax.bar(xs, ys, width * 0.92, color=PLOT_COLORS.get(peer),
                   label=PLOT_LABELS.get(peer, peer))
            top = max([top, *ys])
        for x, g in enumerate(groups):
            bound = cell.get((*g, "bound"))
            if bound:
                ax.hlines(bound["melem_per_s"], x - 0.46, x + 0.46, colors="black", linewidth=2,
                          label="bandwidth bound (measured)" if x == 0 else None)
                top = max(top, bound["melem_per_s"])
        ax.set_ylim(0, top * 1.12)
        ax.set_xlim(-0.55, len(groups) - 0.45)
        labels = [f"{o}, {t} thread{'s' if t > 1 else ''}" + (f", {d}" if len(dtypes) > 1 else "")
                  for o, d, t in groups]
        ax.set_xticks(range(len(groups)), labels, fontsize=11)
        ax.tick_params(axis="y", labelsize=10)
        ax.set_ylabel("million elements updated per second\n(higher is better)", fontsize=11)
        dtype_note = f", {next(iter(dtypes))}" if len(dtypes) == 1 else ""
        if quick:
            title = (f"{WORKLOADS[workload].label(quick=True)} (--quick shapes: times are not "
                     f"representative){dtype_note}")
        else:
            title = f"{workload}: {WORKLOADS[workload].description}{dtype_note}"
        ax.set_title(title, fontsize=12, loc="left")
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=10, frameon=False)
        fig.tight_layout()
        fig.savefig(out, dpi=100)
        plt.close(fig)
        written.append(out)
    return written


# ----------------------------------------------------------------------------------------------
# the command
# ----------------------------------------------------------------------------------------------

def default_threads():
    """1, 2 and all usable cores (when there are more than 2), never more than there are."""
    cores = _usable_cores()
    return sorted({1, min(2, cores), cores})


def run(workloads=DEFAULT_WORKLOADS, optimizers=tuple(OPTIMIZERS), dtypes=DTYPES, threads=None,
        peers=None, *, quick=False, repeats=5, min_time=0.1, overhead=True, quiet=False):
    """Run the suite and return the report (what ``--json`` writes).

    Parameters
    ----------
    workloads, optimizers, dtypes : sequence of str
        Keys of :data:`WORKLOADS`, :data:`OPTIMIZERS` and :data:`DTYPES`.
    threads : sequence of int, optional
        Thread counts; default :func:`default_threads`.
    peers : sequence of str, optional
        Peers besides fastoptim's functional API and the bound (which always run); default every
        peer whose library is installed. Naming one that cannot run here raises :class:`BenchError`.
    quick : bool
        Tiny shapes (for tests): the numbers mean nothing, the code paths are the same.
    repeats : int
        Interleaved repetitions per peer.
    min_time : float
        Seconds one repetition of one peer should last (the step count is calibrated to it).
    overhead : bool
        Also measure the per-step Python overhead (:func:`measure_overhead`).
    quiet : bool
        No progress on stderr.

    Returns
    -------
    dict
    """
    threads = list(threads) if threads else default_threads()
    if peers is None:
        peers = [p for p in OPTIONAL_PEERS if unavailable_reason(p) is None]
    else:
        peers = [p for p in OPTIONAL_PEERS if p in peers]   # table order, no duplicates
        for p in peers:
            reason = unavailable_reason(p)
            if reason is not None:
                raise BenchError(f"peer {p!r} cannot run here: {reason}")
    available = _available_memory()
    if available is not None:
        for w in workloads:
            n = sum(int(np.prod(s)) for s in WORKLOADS[w].get_shapes(quick))
            for o in optimizers:
                for d in dtypes:
                    need = _estimate_bytes(n, np.dtype(d).itemsize, OPTIMIZERS[o], peers)
                    if need > 0.9 * available:
                        raise BenchError(
                            f"workload {w} with {o} in {d} needs about {need / 2**30:.1f} GiB "
                            f"with these peers, but only {available / 2**30:.1f} GiB is available; "
                            f"pick fewer peers with --peers, float32, or a smaller workload")

    torch_threads = None
    if any(p.startswith("torch-") for p in peers):
        import torch

        torch_threads = torch.get_num_threads()
    fo_threads = fastoptim.get_num_threads()
    report = {
        "schema": 1,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {
            "workloads": {w: {"description": WORKLOADS[w].description,
                              "shapes": [list(s) for s in WORKLOADS[w].get_shapes(quick)]}
                          for w in workloads},
            "optimizers": {o: {**asdict(OPTIMIZERS[o]), "n_read": OPTIMIZERS[o].n_read,
                               "n_write": OPTIMIZERS[o].n_write} for o in optimizers},
            "dtypes": list(dtypes), "threads": threads, "peers": ["bound", "fastoptim", *peers],
            "repeats": repeats, "min_time_s": min_time, "quick": quick,
            "thread_control": {
                "fastoptim": "fastoptim.set_num_threads per thread count",
                "torch": "torch.set_num_threads per thread count" if torch_threads else None,
                "numpy": "single-threaded (elementwise ufuncs)",
                "optax": ("not matched: XLA fixes its thread pool at start-up"
                          if "optax" in peers else None),
                "bound": "num_threads of the prange, per thread count",
            },
            "initial_threads": {"fastoptim": fo_threads, "torch": torch_threads},
        },
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "results": [],
        "problems": [],
        "overhead": [],
    }
    cells = [(w, o, d) for w in workloads for o in optimizers for d in dtypes]
    total = len(cells) + bool(overhead)
    if not quick:
        estimate = estimate_seconds(workloads, optimizers, dtypes, threads, peers,
                                    repeats=repeats, min_time=min_time, overhead=overhead)
        _log(f"{len(cells)} workload x optimizer x dtype cells, {len(threads)} thread count(s), "
             f"{len(peers) + 2} peers with the bound: this takes about {_duration(estimate)} "
             "(python -m fastoptim bench --help shows how to run less)", quiet)
    try:
        for index, (w, o, d) in enumerate(cells):
            _progress(index, total, f"{WORKLOADS[w].label(quick)} {o} {d}", quiet)
            results, problems = run_cell(WORKLOADS[w], OPTIMIZERS[o], np.dtype(d), threads, peers,
                                         quick=quick, repeats=repeats, min_time=min_time)
            report["results"] += results
            for p in problems:
                p.update(workload=w, optimizer=o, dtype=d)
            report["problems"] += problems
        if overhead:
            _progress(len(cells), total, "step() overhead", quiet)
            names = [p for p in ("fastoptim-class", "fastoptim", "torch-fused")
                     if p == "fastoptim" or p in peers]
            report["overhead"] = measure_overhead(
                names,
                optimizers=[o for o in OVERHEAD_OPTIMIZERS if o in optimizers] or optimizers[:1],
                repeats=repeats, min_time=min_time / 2)
    finally:
        fastoptim.set_num_threads(fo_threads)
        if torch_threads is not None:
            sys.modules["torch"].set_num_threads(torch_threads)
    report["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    _progress(total, total, "done", quiet)
    _derive(report["results"])
    return report


# Rough step time of each peer relative to the bandwidth bound (Adam-like, 1 thread, measured on
# the development machine) and the bound's bandwidth: only for the estimate printed before a run.
_ESTIMATE_SLOWDOWN = {"bound": 1.0, "fastoptim": 1.2, "fastoptim-class": 1.2, "numpy": 7.0,
                      "numpy-blocked": 2.7, "torch-forloop": 6.0, "torch-foreach": 4.5,
                      "torch-fused": 1.2, "optax": 1.2}
_ESTIMATE_BOUND_BYTES_PER_S = 15e9


def estimate_seconds(workloads, optimizers, dtypes, threads, peers, *, repeats=5, min_time=0.1,
                     overhead=True, quick=False):
    """About how long :func:`run` takes with these arguments, in seconds (a rough model).

    Per cell and thread count, every peer runs a warm-up step, a two-step calibration and
    ``repeats`` repetitions of at least ``min_time`` seconds (at least one step each); per cell,
    every peer also runs two verification steps, and the arrays are created (about 20 ns per
    element and array). Step times are modelled from the bytes a step moves.
    """
    total = 0.0
    for w in workloads:
        n = sum(int(np.prod(shape)) for shape in WORKLOADS[w].get_shapes(quick))
        for o in optimizers:
            config = OPTIMIZERS[o]
            for d in dtypes:
                bound = n * config.bytes_per_element(d) / _ESTIMATE_BOUND_BYTES_PER_S
                for peer in ("bound", "fastoptim", *peers):
                    step = bound * _ESTIMATE_SLOWDOWN.get(peer, 5.0)
                    total += 2 * step + 20e-9 * n * (config.n_read + 2)
                    for n_threads in threads:
                        per_thread = step / min(n_threads, 2) if n_threads > 1 else step
                        total += 3 * per_thread + repeats * max(min_time, per_thread)
    if overhead:
        total += 2 * len(peers) * repeats * min_time + 10.0
    return total


def _duration(seconds):
    if seconds < 90:
        return f"{max(5, 5 * round(seconds / 5)):.0f} s"
    if seconds < 5400:
        return f"{round(seconds / 60):.0f} min"
    return f"{seconds / 3600:.1f} h"


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text}")
    return value


def _check_output_path(parser, option, path):
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        parser.error(f"{option} {path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        parser.error(f"{option} {path}: directory {directory} is not writeable")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m fastoptim bench",
        description="Time fastoptim's optimizer steps against NumPy, torch.optim and optax "
                    "(when installed) and against the memory-bandwidth bound, in one process.",
        epilog="Workloads: " + "; ".join(f"{w.name} = {w.description}" for w in WORKLOADS.values())
               + ". 100M is not in the default set (it needs ~10 GB with every peer).")
    parser.add_argument("--workloads", nargs="+", metavar="NAME",
                        choices=[*WORKLOADS, "all"],
                        help=f"any of {', '.join(WORKLOADS)}, or all "
                             f"(default: {' '.join(DEFAULT_WORKLOADS)}; all with --quick)")
    parser.add_argument("--optimizers", nargs="+", metavar="NAME", choices=list(OPTIMIZERS),
                        default=list(OPTIMIZERS),
                        help=f"any of {', '.join(OPTIMIZERS)} (default: all)")
    parser.add_argument("--dtypes", nargs="+", metavar="DTYPE", choices=list(DTYPES),
                        default=list(DTYPES), help="float32 and/or float64 (default: both)")
    parser.add_argument("--threads", nargs="+", metavar="N", type=_positive_int,
                        help="thread counts (default: 1, 2 and all cores when there are more: "
                             f"{' '.join(map(str, default_threads()))} here; with --quick only "
                             "the largest)")
    parser.add_argument("--repeats", type=_positive_int, default=None,
                        help="interleaved repetitions per peer (default 5; 3 with --quick)")
    parser.add_argument("--min-time", type=_positive_float, default=None, metavar="SECONDS",
                        help="duration of one repetition of one peer (default 0.1; 0.002 with "
                             "--quick)")
    parser.add_argument("--peers", nargs="+", metavar="NAME", choices=list(OPTIONAL_PEERS),
                        help=f"peers besides fastoptim and the bound, any of "
                             f"{', '.join(OPTIONAL_PEERS)} (default: all that are installed)")
    parser.add_argument("--json", metavar="PATH", help="write machine details and raw timings")
    parser.add_argument("--csv", metavar="PATH", help="write the results table as CSV")
    parser.add_argument("--plot", metavar="PATH",
                        help="write one PNG bar chart per workload, PATH with the workload's name "
                             "added (bench.png: bench-10M.png, ...; needs matplotlib)")
    parser.add_argument("--format", choices=("text", "rst"), default="text",
                        help="table format on stdout (rst: a reStructuredText simple table)")
    parser.add_argument("--no-overhead", action="store_true",
                        help="skip the step() overhead measurement")
    parser.add_argument("--quick", action="store_true",
                        help="a check in seconds that every peer runs and agrees with fastoptim: "
                             "tiny shapes, short repetitions, times only (no ratios, no step() "
                             "overhead)")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--load", metavar="PATH",
                        help="do not run: print the report (and write --csv, --plot) from a "
                             "file written by --json")
    return parser


def _write_outputs(report, args):
    if args.csv:
        write_csv(report["results"], args.csv)
    if args.plot:
        plot(report["results"], args.plot, quick=bool(report["settings"].get("quick")))


def main(argv=None):
    """``python -m fastoptim bench``; returns the exit status (1 when a peer disagrees)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workloads is None:
        # quick shapes are tiny: check every workload's code path
        workloads = list(WORKLOADS) if args.quick else list(DEFAULT_WORKLOADS)
    elif "all" in args.workloads:
        workloads = list(WORKLOADS)
    else:
        workloads = list(dict.fromkeys(args.workloads))
    for option, path in (("--json", args.json), ("--csv", args.csv), ("--plot", args.plot)):
        if path:
            _check_output_path(parser, option, path)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib: pip install matplotlib")
    repeats = args.repeats or (3 if args.quick else 5)
    min_time = args.min_time or (0.002 if args.quick else 0.1)
    if args.load:
        try:
            with open(args.load) as f:
                report = json.load(f)
        except (OSError, ValueError) as exc:
            parser.error(f"--load {args.load}: {exc}")
        if not isinstance(report, dict) or report.get("schema") != 1 or "results" not in report:
            parser.error(f"--load {args.load}: not a report written by --json")
        print(format_report(report, args.format))
        _write_outputs(report, args)
        return 0
    if args.threads:
        threads = list(dict.fromkeys(args.threads))
    else:
        # quick: one thread count, the largest, which takes the parallel code paths
        threads = default_threads()[-1:] if args.quick else None
    try:
        # the step() overhead is a full-size measurement of its own: not part of a quick check
        report = run(workloads, list(dict.fromkeys(args.optimizers)), list(dict.fromkeys(args.dtypes)),
                     threads, args.peers, quick=args.quick, repeats=repeats, min_time=min_time,
                     overhead=not (args.no_overhead or args.quick), quiet=args.quiet)
    except BenchError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    print(format_report(report, args.format))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
    _write_outputs(report, args)
    mismatches = [p for p in report["problems"] if p["kind"] == "mismatch"]
    if mismatches:
        print(f"{parser.prog}: {len(mismatches)} peer result(s) disagree with fastoptim "
              "(see Problems above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
