"""``mpirun -n N python -m fastoptim bench --distributed``: data parallel step time and bandwidth.

Measured side by side in one job, on the transformer-like mix of the single-process benchmark
(float32), every rank holding the whole model and its own gradients:

* the averaged step: gradient averaging + optimizer step, for fastoptim's
  ``DistributedOptimizer(Adam)``, ``ZeroRedundancyOptimizer(Adam, average_gradients=True)`` and
  ``allreduce_gradients`` + ``ZeroRedundancyOptimizer(Adam)``, against torch.distributed (gloo
  backend on the same ranks): ``all_reduce`` of the gradients in DDP's buckets (25 MiB, the first
  1 MiB, in reverse parameter order, each divided by the world size and copied back) followed by
  ``torch.distributed.optim.ZeroRedundancyOptimizer(Adam, fused=True)``, or by a full
  ``Adam(fused=True)`` step on every rank (DDP);
* the gradient allreduce alone: fastoptim's ``allreduce_gradients`` against a raw
  ``MPI.Allreduce`` of the same bytes (one buffer, and one call per array) and against gloo's.

Each time is the slowest rank's mean over ``--steps`` steps, the median of ``--repeats``
rounds, the peers interleaved round by round.
"""
import argparse
import json
import os
import socket
import statistics
import sys
import time

import numpy as np

import fastoptim as fo

try:  # the benchmark's home moves to fastoptim.tools
    from fastoptim.tools import bench as _bench
except ImportError:  # pragma: no cover - depends on the layout of this checkout
    from fastoptim import bench as _bench

PROG = "mpirun -n N python -m fastoptim bench --distributed"
DDP_BUCKET_BYTES = 25 << 20
DDP_FIRST_BUCKET_BYTES = 1 << 20
LR = 1e-3
# The optimizer stepped: the single-process benchmark's second configuration (the two-moment
# optimizer of the original three, with its defaults), at learning rate LR.
CONFIG = _bench.OPTIMIZERS[list(_bench.OPTIMIZERS)[1]]
OPT = CONFIG.info.name


def _mean_step(fn, steps, comm):
    comm.Barrier()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    elapsed = (time.perf_counter() - start) / steps
    return comm.allreduce(elapsed, op=_max_op())


def _max_op():
    from fastoptim.distributed._mpi import MPI

    return MPI.MAX


def _kwargs():
    return {**CONFIG.hyperparameters, "lr": LR}


def _make(params):
    return CONFIG.info.cls(params, **_kwargs())


class _FastoptimPeer:
    def __init__(self, kind, shapes, rank, comm):
        import fastoptim.distributed as fd

        rng = np.random.default_rng(0)
        self.params = [fo.Parameter(rng.standard_normal(s).astype(np.float32)) for s in shapes]
        grng = np.random.default_rng(1 + rank)
        self.grads = [grng.standard_normal(s).astype(np.float32) for s in shapes]
        for p, g in zip(self.params, self.grads):
            p.grad = g
        self.fd = fd
        self.kind = kind
        if kind == "dp":
            self.opt = fd.DistributedOptimizer(_make(self.params), comm=comm)
        elif kind == "zero-rs":
            self.opt = fd.ZeroRedundancyOptimizer(self.params, CONFIG.info.cls, comm=comm,
                                                  average_gradients=True, **_kwargs())
        else:
            self.opt = fd.ZeroRedundancyOptimizer(self.params, CONFIG.info.cls, comm=comm,
                                                  **_kwargs())
        self.comm = comm

    def step(self):
        if self.kind == "zero-ar":
            self.fd.allreduce_gradients(self.params, comm=self.comm)
        self.opt.step()


class _TorchPeer:
    def __init__(self, kind, shapes, rank, world):
        import torch
        import torch.distributed as dist
        from torch.distributed.optim import ZeroRedundancyOptimizer

        self.torch, self.dist, self.world = torch, dist, world
        rng = np.random.default_rng(0)
        self.params = [torch.nn.Parameter(torch.from_numpy(
            rng.standard_normal(s).astype(np.float32))) for s in shapes]
        grng = np.random.default_rng(1 + rank)
        for p, s in zip(self.params, shapes):
            p.grad = torch.from_numpy(grng.standard_normal(s).astype(np.float32))
        torch_class = getattr(torch.optim, CONFIG.info.torch_name)
        if kind == "zero":
            self.opt = ZeroRedundancyOptimizer(self.params, optimizer_class=torch_class,
                                               fused=True, **_kwargs())
        else:
            self.opt = torch_class(self.params, fused=True, **_kwargs())
        # DDP's buckets: reverse parameter order, the first one 1 MiB, then 25 MiB
        self.buckets = []
        current, size, cap = [], 0, DDP_FIRST_BUCKET_BYTES
        for p in reversed(self.params):
            current.append(p)
            size += p.numel() * 4
            if size >= cap:
                self.buckets.append(current)
                current, size, cap = [], 0, DDP_BUCKET_BYTES
        if current:
            self.buckets.append(current)
        self.flat = [torch.empty(sum(p.numel() for p in b)) for b in self.buckets]

    def allreduce(self):
        torch, dist = self.torch, self.dist
        works = []
        for bucket, flat in zip(self.buckets, self.flat):
            torch.cat([p.grad.reshape(-1) for p in bucket], out=flat)
            works.append(dist.all_reduce(flat, async_op=True))
        for bucket, flat, work in zip(self.buckets, self.flat, works):
            work.wait()
            flat.div_(self.world)
            offset = 0
            for p in bucket:
                n = p.numel()
                p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
                offset += n

    def step(self):
        self.allreduce()
        self.opt.step()


def _zero_collectives(zero):
    """Reductions of one ZeroRedundancyOptimizer(average_gradients=True) step, counted like a
    bucket of data parallel (about 2 (n-1) messages per rank each)."""
    dtypes = len({p.dtype for g in zero.param_groups for p in g["params"]})
    # layout check + per dtype: reduce-scatter (n-1 messages) and allgather (n-1 messages)
    return 1 + dtypes


def _init_gloo(comm):
    import torch.distributed as dist

    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", comm.Get_rank()))
    world = int(os.environ.get("OMPI_COMM_WORLD_SIZE", comm.Get_size()))
    port = None
    if comm.Get_rank() == 0:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    port = comm.bcast(port, root=0)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    return dist


def run(args, comm):
    from fastoptim.distributed._mpi import MPI
    import fastoptim.distributed as fd

    rank, n = comm.Get_rank(), comm.Get_size()
    local = int(os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE", n))
    threads = args.threads or max(1, (os.cpu_count() or 1) // max(1, local))
    fo.set_num_threads(threads)
    workload = _bench.WORKLOADS["mix"]
    shapes = workload.get_shapes(quick=args.quick)
    elements = sum(int(np.prod(s)) for s in shapes)
    nbytes = elements * 4

    peers = {
        f"fastoptim DistributedOptimizer({OPT})": _FastoptimPeer("dp", shapes, rank, comm),
        f"fastoptim ZeRO({OPT}, average_gradients=True)": _FastoptimPeer("zero-rs", shapes, rank,
                                                                       comm),
        f"fastoptim allreduce_gradients + ZeRO({OPT})": _FastoptimPeer("zero-ar", shapes, rank,
                                                                     comm),
    }
    torch_note = None
    if not args.no_torch:
        try:
            import torch

            torch.set_num_threads(threads)
            dist = _init_gloo(comm)
            peers[f"torch gloo all_reduce (DDP buckets) + ZeRO({OPT}, fused)"] = _TorchPeer(
                "zero", shapes, rank, n)
            peers[f"torch gloo all_reduce (DDP buckets) + {OPT}(fused)"] = _TorchPeer(
                "ddp", shapes, rank, n)
        except ImportError as exc:
            torch_note = f"torch peers skipped: {exc}"
    # the gradient allreduce alone, on the same bytes
    rng = np.random.default_rng(2 + rank)
    one = rng.standard_normal(elements).astype(np.float32)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads_only = [fo.Parameter(np.zeros(s, np.float32)) for s in shapes]
    for p, a in zip(grads_only, arrays):
        p.grad = a
    tiny = np.zeros(2, np.int64)
    copies = [np.empty_like(a) for a in arrays]

    def one_pass():  # one read + write pass over the gradients, no communication
        for dst, src in zip(copies, arrays):
            np.copyto(dst, src)
    local_opt = _make(peers[f"fastoptim DistributedOptimizer({OPT})"].params)
    peers[f"fastoptim {OPT} step alone (no communication)"] = type(
        "_Local", (), {"step": staticmethod(lambda: local_opt.step())})()
    transfers = {
        "raw MPI.Allreduce, 16 bytes (latency)": lambda: comm.Allreduce(MPI.IN_PLACE, tiny,
                                                                        op=MPI.MAX),
        "one copy pass over the gradients (no communication)": one_pass,
        "raw MPI.Allreduce, one buffer": lambda: comm.Allreduce(MPI.IN_PLACE, one, op=MPI.SUM),
        "raw MPI.Allreduce, one call per array": lambda: [
            comm.Allreduce(MPI.IN_PLACE, a, op=MPI.SUM) for a in arrays],
        "fastoptim allreduce_gradients(average=False)": lambda: fd.allreduce_gradients(
            grads_only, average=False, comm=comm),
        "fastoptim allreduce_gradients (average)": lambda: fd.allreduce_gradients(
            grads_only, comm=comm),
    }
    if f"torch gloo all_reduce (DDP buckets) + {OPT}(fused)" in peers:
        transfers["torch gloo all_reduce, DDP buckets (average)"] = peers[
            f"torch gloo all_reduce (DDP buckets) + {OPT}(fused)"].allreduce

    for fn in list(peers.values()) + list(transfers.values()):  # warm-up: buffers, first touch
        (fn.step if hasattr(fn, "step") else fn)()
    step_times = {name: [] for name in peers}
    transfer_times = {name: [] for name in transfers}
    for _ in range(args.repeats):
        for name, peer in peers.items():
            step_times[name].append(_mean_step(peer.step, args.steps, comm))
        for name, fn in transfers.items():
            transfer_times[name].append(_mean_step(fn, args.steps, comm))
    if not args.no_torch and torch_note is None:
        dist.destroy_process_group()

    collectives = {
        "dp": len(peers[f"fastoptim DistributedOptimizer({OPT})"].opt._fo_distributed.averager
                  ._plans.popitem()[1].units) + 1,
        "zero": _zero_collectives(peers[f"fastoptim ZeRO({OPT}, average_gradients=True)"].opt),
    }
    report = {"ranks": n, "collectives": collectives, "threads_per_rank": threads, "elements": elements, "bytes": nbytes,
              "quick": args.quick, "steps": args.steps, "repeats": args.repeats,
              "step_ms": {k: 1e3 * statistics.median(v) for k, v in step_times.items()},
              "allreduce_ms": {k: 1e3 * statistics.median(v) for k, v in transfer_times.items()}}
    report["projection"] = project(report)
    if rank == 0:
        print(format_report(report, torch_note))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=2)
    comm.Barrier()
    return 0


def format_report(report, note=None):
    lines = [f"fastoptim {fo.__version__}: {report['ranks']} ranks, {report['threads_per_rank']} "
             f"thread(s) per rank; transformer mix{' (quick)' if report['quick'] else ''}: "
             f"{report['elements']:,} float32 parameters ({report['bytes'] / 1e6:.1f} MB of "
             "gradients per rank)", "", f"averaged step (gradient averaging + {OPT} step):"]
    torch_zero = report["step_ms"].get(f"torch gloo all_reduce (DDP buckets) + ZeRO({OPT}, fused)")
    for name, ms in report["step_ms"].items():
        ratio = f"  {torch_zero / ms:5.2f}x torch gloo + ZeRO" if torch_zero else ""
        lines.append(f"  {name:58s} {ms:9.2f} ms{ratio}")
    lines += ["", "gradient allreduce alone (algorithm bandwidth = bytes / time):"]
    raw = report["allreduce_ms"]["raw MPI.Allreduce, one buffer"]
    for name, ms in report["allreduce_ms"].items():
        if "16 bytes" in name:
            lines.append(f"  {name:58s} {ms * 1e3:9.1f} us")
            continue
        if "no communication" in name:
            lines.append(f"  {name:58s} {ms:9.2f} ms {2 * report['bytes'] / ms / 1e6:7.2f} GB/s "
                         "(memory)")
            continue
        lines.append(f"  {name:58s} {ms:9.2f} ms {report['bytes'] / ms / 1e6:7.2f} GB/s "
                     f"{100 * raw / ms:6.1f}% of raw MPI")
    lines += ["", "projection (the model of docs 'Scaling out'; link speed and latency assumed, "
              f"the {OPT} step and copy costs measured above):",
              f"  {'ranks':>5s} {'link':>9s} {'DP step':>10s} {'eff.':>6s} {'ZeRO step':>10s} "
              f"{'eff.':>6s}  ZeRO's largest term"]
    for row in report["projection"]:
        lines.append(f"  {row['ranks']:5d} {row['gbps']:6.0f} Gb/s {row['dp_ms']:8.1f} ms "
                     f"{100 * row['dp_eff']:5.1f}% {row['zero_ms']:8.1f} ms "
                     f"{100 * row['zero_eff']:5.1f}%  {row['bottleneck']}")
    if note:
        lines += ["", note]
    return "\n".join(lines)


# assumed per-message latencies (not measured here): TCP over 25 Gb/s Ethernet, RDMA at 100 Gb/s
LINK_LATENCY_S = {25: 10e-6, 100: 2e-6}


def project(report, ranks=(8, 64, 512), links=(25, 100)):
    """Project the averaged step to ``ranks`` ranks, one per node, on links of ``links`` Gb/s.

    Model (bandwidth-optimal collectives; every rank holds the whole model):

    * data parallel: ``t = t_step + t_div + 2 (n-1)/n * B / W + c_dp * 2 (n-1) * alpha``
    * ZeRO, reduce-scatter + parameter exchange:
      ``t = t_step / n + t_copy + 2 (n-1)/n * B / W + c_zero * 2 (n-1) * alpha``, with
      ``t_copy`` four passes over the gradients (pack and unpack, gradients and parameters)

    ``B`` is the gradient bytes, ``W`` the link bandwidth, ``alpha`` the per-message latency,
    ``c`` the reductions per step (buckets, and the layout check), each an ``Alltoallv`` and an
    ``Allgatherv`` of ``n-1`` messages per rank; ``t_step`` (the optimizer step on all parameters) and ``t_div``
    (one pass over the gradients) come from this run's measurements.
    Efficiency is ``t_step / t``: the single-process step against the averaged one, for the
    same per-rank work (weak scaling), forward and backward passes excluded.
    """
    step = report["step_ms"]
    transfer = report["allreduce_ms"]
    t_step = step[f"fastoptim {OPT} step alone (no communication)"] / 1e3
    # one pass over the gradients, measured: the division by n is one, packing and unpacking
    # the gradients for the reduce-scatter and the parameters for the allgather are four
    t_div = transfer["one copy pass over the gradients (no communication)"] / 1e3
    t_copy = 4 * t_div
    nbytes = report["bytes"]
    rows = []
    for gbps in links:
        bandwidth = gbps / 8 * 1e9
        alpha = LINK_LATENCY_S[gbps]
        for n in ranks:
            wire = 2 * (n - 1) / n * nbytes / bandwidth
            latency = 2 * (n - 1) * alpha
            dp = t_step + t_div + wire + report["collectives"]["dp"] * latency
            zero = t_step / n + t_copy + wire + report["collectives"]["zero"] * latency
            parts = {"link bandwidth": wire, "message latency":
                     report["collectives"]["zero"] * latency, "optimizer step": t_step / n}
            rows.append({"ranks": n, "gbps": gbps, "dp_ms": 1e3 * dp, "dp_eff": t_step / dp,
                         "zero_ms": 1e3 * zero, "zero_eff": t_step / zero,
                         "bottleneck": max(parts, key=parts.get)})
    return rows


def build_parser():
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes (a smoke test)")
    parser.add_argument("--steps", type=int, default=5, help="steps per round (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads per rank (default: cores / ranks on this node)")
    parser.add_argument("--no-torch", action="store_true", help="leave out the torch peers")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    return parser


def main(argv=None):
    """Entry point of ``python -m fastoptim bench --distributed`` (under mpirun)."""
    args = build_parser().parse_args(argv)
    if args.steps < 1 or args.repeats < 1:
        print(f"{PROG}: error: --steps and --repeats must be at least 1", file=sys.stderr)
        return 2
    from fastoptim.distributed._mpi import MPI

    comm = MPI.COMM_WORLD
    try:
        return run(args, comm)
    except Exception:
        if comm.Get_size() == 1:
            raise
        import traceback

        traceback.print_exc()
        comm.Abort(1)
