r"""``mpirun -n N python -m fastoptim demo --distributed``: the demo, data parallel with ZeRO.

The same network, data, optimizer and schedule as ``python -m fastoptim demo``; every rank holds
the model, and each step every rank draws the same global batch (the sampler is seeded alike on
every rank), computes the gradient of its shard of it (``numpy.array_split(batch, n)[rank]``),
and a :class:`~fastoptim.distributed.ZeroRedundancyOptimizer` (``average_gradients=True``)
averages the gradients by a reduce-scatter, steps each rank's share of the parameters and sends
them to every rank. A shard's loss is its mean, scaled by ``len(shard) * n / len(batch)``, so the
average over the ranks is the gradient of the mean over the global batch, as in the
single-process demo.

Checkpoints are the single-process demo's files: rank 0 writes the consolidated state with
:func:`fastoptim.save` (atomic), and ``--resume`` loads it on every rank, on any number of ranks
(or in the single-process demo, and the other way round).
"""
import argparse
import os
import sys
import time
import traceback

import numpy as np

import fastoptim as fo

try:  # the demo's home moves to fastoptim.tools
    from fastoptim.tools import demo as _demo
except ImportError:  # pragma: no cover - depends on the layout of this checkout
    from fastoptim import demo as _demo

PROG = "mpirun -n N python -m fastoptim demo --distributed"
# The demo's optimizers (its registry settings): class and further hyperparameters.
OPTIMIZERS = {name: (info.cls, info.demo.get("kwargs", {})) for name, info in _demo._DEMO.items()}


class ShardedTraining(_demo.Training):
    """The demo's :class:`Training`, data parallel over ``comm`` with a ZeRO optimizer."""

    def __init__(self, config, dataset, comm):
        super().__init__(config, dataset)
        from fastoptim.distributed import ZeroRedundancyOptimizer

        self.comm = comm
        cls, extra = OPTIMIZERS[config["optimizer"]]
        groups = [
            {"params": self.model.weights(), "weight_decay": config["weight_decay"]},
            {"params": self.model.biases(), "weight_decay": 0.0},
        ]
        self.optimizer = ZeroRedundancyOptimizer(groups, cls, comm=comm, average_gradients=True,
                                                 lr=config["lr"], **extra)
        self.scheduler = _demo.make_scheduler(self.optimizer, config["steps"])

    def train_step(self):
        """One step: this rank's shard of the global batch, gradients averaged by ZeRO."""
        n, rank = self.comm.Get_size(), self.comm.Get_rank()
        batch = self.sampler.next()
        shard = np.array_split(batch, n)[rank]
        x, y = self.train_x[shard], self.train_y[shard]
        self.optimizer.zero_grad()
        logits, cache = self.model.forward(x)
        loss, dlogits = _demo.softmax_cross_entropy(logits, y)
        if len(shard) * n != len(batch):          # unequal shards: weight by shard size
            dlogits *= dlogits.dtype.type(len(shard) * n / len(batch))
        self.model.backward(cache, dlogits)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return loss

    def save(self, path):
        """Rank 0 writes the consolidated checkpoint atomically (call on every rank)."""
        self.optimizer.consolidate_state_dict(to=0)
        if self.comm.Get_rank() == 0:
            fo.save(self.checkpoint(), path)


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG, description="Train the demo's network data parallel, with ZeRO sharding of "
        "the optimizer state, checkpoints and resume on any number of ranks.")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--weight-decay", type=float, default=None)
    parser.add_argument("--steps", type=int, default=None,
                        help=f"total steps (default {_demo.DEFAULT_STEPS})")
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"global batch, split over the ranks (default {_demo.DEFAULT_BATCH})")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", default="fastoptim-demo-distributed", metavar="DIR")
    parser.add_argument("--resume", action="store_true",
                        help="continue from DIR/checkpoint.fo (on any number of ranks)")
    parser.add_argument("--checkpoint-every", type=int, default=1000, metavar="N")
    parser.add_argument("--log-every", type=int, default=None, metavar="N")
    parser.add_argument("--threads", type=int, default=None,
                        help="fastoptim threads per rank (default: cores / ranks on this node)")
    parser.add_argument("--stop-after", type=int, default=None, metavar="N",
                        help="stop after step N with a checkpoint (then --resume, on any ranks)")
    parser.add_argument("--compare", action="store_true",
                        help="also train the single-process demo on rank 0 and compare")
    return parser


def _config(args, ckpt):
    given = {k: getattr(args, k) for k in ("optimizer", "lr", "weight_decay", "steps",
                                            "batch_size", "seed") if getattr(args, k) is not None}
    if ckpt is not None:
        config = dict(ckpt["config"])
        for key, value in given.items():
            if value != config[key]:
                raise ValueError(f"--{key.replace('_', '-')} {value} does not match the "
                                 f"checkpoint's {config[key]}: a resumed run keeps its settings")
        return config
    name = given.get("optimizer", _demo.DEFAULT_OPTIMIZER)
    lr, weight_decay = _demo.DEFAULT_HPARAMS[name]
    return {"optimizer": name, "lr": float(given.get("lr", lr)),
            "weight_decay": float(given.get("weight_decay", weight_decay)),
            "steps": given.get("steps", _demo.DEFAULT_STEPS),
            "batch_size": given.get("batch_size", _demo.DEFAULT_BATCH),
            "seed": given.get("seed", _demo.DEFAULT_SEED)}


def _threads(args, comm):
    if args.threads is not None:
        return args.threads
    local = int(os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE", comm.Get_size()))
    return max(1, (os.cpu_count() or 1) // max(1, local))


def run(args, comm):
    rank, n = comm.Get_rank(), comm.Get_size()
    say = print if rank == 0 else (lambda *a, **k: None)
    path = os.path.join(args.out, _demo.CHECKPOINT_NAME)
    ckpt = None
    if args.resume:
        if not os.path.exists(path):
            raise ValueError(f"--resume: {path} does not exist")
        ckpt = fo.load(path)
    config = _config(args, ckpt)
    if not 1 <= n <= config["batch_size"] <= _demo.N_TRAIN:
        raise ValueError(f"the batch of {config['batch_size']} must be split over {n} ranks "
                         f"(and be at most {_demo.N_TRAIN})")
    if rank == 0:
        os.makedirs(args.out, exist_ok=True)
    fo.set_num_threads(_threads(args, comm))
    dataset = _demo.make_dataset()
    training = ShardedTraining(config, dataset, comm)
    if ckpt is not None:
        training.load_checkpoint(ckpt)
        say(f"resumed from {path} at step {training.step}/{config['steps']} on {n} ranks")
    log_every = args.log_every or training.intervals["log_every"]
    shards = [len(s) for s in np.array_split(np.arange(config["batch_size"]), n)]
    say(f"fastoptim {fo.__version__} distributed demo: {n} ranks, global batch "
        f"{config['batch_size']} (shards {shards}), {config['optimizer']} sharded by "
        f"ZeroRedundancyOptimizer, {fo.get_num_threads()} thread(s) per rank")
    sys.stdout.flush()
    start = training.step
    timer = time.perf_counter()
    stop = config["steps"] if args.stop_after is None else min(args.stop_after, config["steps"])
    while training.step < stop:
        training.train_step()
        step = training.step
        if rank == 0 and (step % log_every == 0 or step == config["steps"]):
            m = training.evaluate()
            say(f"step {step:6d}  lr {m['lr']:.2e}  train loss {m['train_loss']:.4f}  "
                f"val acc {100 * m['val_acc']:.2f}%", flush=True)
        if args.checkpoint_every and step % args.checkpoint_every == 0:
            training.save(path)
    elapsed = time.perf_counter() - timer
    training.save(path)
    digest = _demo.params_digest(training.model.params)
    digests = comm.allgather(digest)
    if len(set(digests)) != 1:
        raise RuntimeError(f"the ranks' parameters differ: {digests}")
    say(f"done: {training.step - start} steps in {elapsed:.1f} s on {n} ranks; every rank's "
        f"params sha256: {digest}")
    say(f"checkpoint: {path} (resume with --resume, on any number of ranks)")
    if args.compare and rank == 0 and training.step == config["steps"]:
        reference = _demo.Training(config, dataset)
        while reference.step < config["steps"]:
            reference.train_step()
        diffs = [np.max(np.abs(training.model.params[k].astype(np.float64) - p)) /
                 max(np.max(np.abs(p)), 1e-30) for k, p in reference.model.params.items()]
        ours = training._loss_acc(training.val_x, training.val_y)[1]
        theirs = reference._loss_acc(reference.val_x, reference.val_y)[1]
        say(f"single-process demo, same global batches: largest relative parameter difference "
            f"{max(diffs):.2e}; validation accuracy {100 * ours:.2f}% here, "
            f"{100 * theirs:.2f}% single-process; params sha256 "
            f"{'equal' if _demo.params_digest(reference.model.params) == digest else 'differ'}")
    comm.Barrier()
    return 0


def main(argv=None):
    """Entry point of ``python -m fastoptim demo --distributed`` (under mpirun)."""
    args = build_parser().parse_args(argv)
    from fastoptim.distributed._mpi import MPI

    comm = MPI.COMM_WORLD
    try:
        return run(args, comm)
    except Exception as exc:
        if comm.Get_size() == 1:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 2
        # one rank failing must not leave the others waiting in a collective: end the job
        traceback.print_exc()
        print(f"{PROG}: error on rank {comm.Get_rank()}: {exc}; aborting all ranks",
              file=sys.stderr, flush=True)
        comm.Abort(1)
