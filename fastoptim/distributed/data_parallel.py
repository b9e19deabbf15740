"""Data parallel training (Horovod style): broadcasts, gradient averaging, DistributedOptimizer."""
import threading

import numpy as np

from fastoptim.optimizer import Optimizer
from fastoptim.distributed._collectives import GradientAverager
from fastoptim.distributed._mpi import (
    agree, apply_everywhere, check_root, resolve_comm, signature_hash,
)

__all__ = [
    "allreduce_gradients",
    "broadcast_parameters",
    "broadcast_optimizer_state",
    "DistributedOptimizer",
]

_averagers = {}
_averagers_lock = threading.Lock()


def _unique_params(params, what="params"):
    """The distinct parameters of ``params`` (a Parameter or an iterable of them), in order."""
    if isinstance(params, np.ndarray):
        params = [params]
    if isinstance(params, (dict, set)):
        raise TypeError(f"{what} must be an ordered iterable of fastoptim.Parameter (a list), "
                        f"got a {type(params).__name__}")
    unique, seen = [], set()
    for index, p in enumerate(params):
        if not hasattr(p, "grad") or not isinstance(p, np.ndarray):
            raise TypeError(
                f"{what}[{index}] is a {type(p).__name__}, not a fastoptim.Parameter; gradients "
                "live in Parameter.grad, so wrap arrays as fastoptim.Parameter(a)"
            )
        if id(p) not in seen:
            seen.add(id(p))
            unique.append(p)
    return unique


def allreduce_gradients(params, average=True, comm=None, bucket_cap_mb=25):
    r"""Average (or sum) the gradients of ``params`` over all ranks, in place.

    After the call every rank holds, in ``p.grad``,

    .. math:: \bar g = \Big(\big((g_0 + g_1) + g_2\big) + \dots + g_{n-1}\Big) \,/\, n

    computed in the gradient's dtype: the ranks' gradients summed in rank order, then divided by
    the number of ranks ``n`` (with ``average=False``, the sum alone). The result has the same
    bits on every rank and equals what one process computes with that expression, for any
    number of ranks (MPI's own reductions do not fix the order of the sum beyond two ranks, so
    fastoptim orders it itself, see :doc:`/scaling`).

    Parameters
    ----------
    params : iterable of fastoptim.Parameter
        The parameters whose ``.grad`` is averaged, in the same order on every rank. Parameters
        whose ``grad`` is None are skipped; they must be the same on every rank.
    average : bool, default True
        Divide the sum by the number of ranks.
    comm : mpi4py.MPI.Intracomm, optional
        The ranks to average over; default ``MPI.COMM_WORLD``.
    bucket_cap_mb : float, default 25
        Gradients are packed, per dtype and in order, into buckets of at most this many MiB
        (as in torch's DDP), one reduction per bucket, so a model with many small arrays needs
        few collectives; a gradient of at least this size is reduced in place, without a copy.
        Larger buckets mean fewer collectives (what matters on a busy machine or with many
        ranks) for more memory: up to one extra copy of the gradients.

    Raises
    ------
    ValueError
        The ranks disagree on the parameters (their number, shapes, dtypes) or on which of them
        have a gradient: checked with one 16-byte collective before anything is sent, so every
        rank raises instead of hanging. Nothing was changed.
    TypeError
        An element of ``params`` is not a :class:`fastoptim.Parameter`.

    Notes
    -----
    Gradients are updated in place (a read-only gradient is replaced by a new array). The bucket
    buffers are allocated once per gradient layout and reused at every later call.
    """
    comm = resolve_comm(comm)
    params = _unique_params(params)
    key = (comm.py2f(), comm.Get_size(), comm.Get_rank(), float(bucket_cap_mb)
           if isinstance(bucket_cap_mb, (int, float)) and not isinstance(bucket_cap_mb, bool)
           else None)
    with _averagers_lock:
        averager = _averagers.get(key)
        if averager is None or averager.comm is not comm:
            averager = GradientAverager(comm, bucket_cap_mb)
            if len(_averagers) >= 16:
                _averagers.clear()
            _averagers[key] = averager
    if not isinstance(average, (bool, np.bool_)):
        raise TypeError(f"average must be True or False, got {average!r}")
    averager(params, bool(average))


def _arrays_to_broadcast(params):
    if isinstance(params, dict):
        items = [(f"params[{k!r}]", params[k]) for k in sorted(params, key=str)]
    else:
        if isinstance(params, np.ndarray):
            params = [params]
        items = [(f"params[{i}]", p) for i, p in enumerate(params)]
    for where, array in items:
        if not isinstance(array, np.ndarray):
            raise TypeError(f"{where} is a {type(array).__name__}, not a numpy array")
        if not (array.flags.c_contiguous and array.flags.writeable):
            raise ValueError(f"{where} must be C-contiguous and writeable: it is overwritten in "
                             "place with the root's values")
        if array.dtype.kind not in "fiub" or not array.dtype.isnative:
            raise TypeError(f"{where} has dtype {array.dtype}; only native numeric arrays can be "
                            "broadcast")
    return [a for _, a in items]


def broadcast_parameters(params, root=0, comm=None):
    """Overwrite ``params`` on every rank with the root rank's values, in place.

    Call it once after building the model, so every rank starts from the same parameters
    (Horovod's ``broadcast_parameters``).

    Parameters
    ----------
    params : iterable of numpy.ndarray, or dict of them
        Parameters (C-contiguous, writeable arrays such as :class:`fastoptim.Parameter`), in the
        same order on every rank; a dict is broadcast in the order of its sorted keys.
    root : int, default 0
        The rank whose values are sent.
    comm : mpi4py.MPI.Intracomm, optional
        Default ``MPI.COMM_WORLD``.

    Raises
    ------
    ValueError
        The ranks disagree on the number, shapes or dtypes of the arrays (checked before
        anything is sent: every rank raises); an array is not C-contiguous and writeable.
    """
    comm = resolve_comm(comm)
    root = check_root(root, comm)
    arrays = _arrays_to_broadcast(params)
    items = [root]
    for a in arrays:
        items.extend((a.dtype.str, *a.shape, -1))
    agree(comm, signature_hash(items), "the arrays to broadcast (their number, shapes, dtypes)")
    if comm.Get_size() == 1:
        return
    for a in arrays:
        if a.size:
            comm.Bcast(a.reshape(-1).view(np.uint8), root=root)


def broadcast_optimizer_state(optimizer, root=0, comm=None):
    """Give every rank's optimizer the root's state and hyperparameters.

    The root's ``optimizer.state_dict()`` is sent to every rank and loaded there with
    ``load_state_dict`` (all-or-nothing on every rank: if loading fails on one rank, the others
    undo it and raise too). Use it after :func:`broadcast_parameters` when resuming on rank 0
    only, or to make sure every rank starts with identical hyperparameters.

    Parameters
    ----------
    optimizer : fastoptim.Optimizer or DistributedOptimizer
        Constructed identically on every rank.
    root : int, default 0
    comm : mpi4py.MPI.Intracomm, optional

    Raises
    ------
    TypeError
        ``optimizer`` is a :class:`ZeroRedundancyOptimizer`: its ranks hold different shards;
        load a consolidated state dict on every rank instead.
    """
    from fastoptim.distributed.zero import ZeroRedundancyOptimizer

    if isinstance(optimizer, ZeroRedundancyOptimizer):
        raise TypeError(
            "broadcast_optimizer_state does not apply to a ZeroRedundancyOptimizer (each rank "
            "holds a different shard); call load_state_dict(full_state_dict) on every rank"
        )
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a fastoptim.Optimizer, got {type(optimizer).__name__}")
    comm = resolve_comm(comm)
    root = check_root(root, comm)
    if comm.Get_size() == 1:
        return
    state_dict = comm.bcast(optimizer.state_dict() if comm.Get_rank() == root else None,
                            root=root)
    if comm.Get_rank() == root:
        apply_everywhere(comm, lambda: None, lambda: None, "broadcast_optimizer_state")
        return
    previous = optimizer.state_dict()
    apply_everywhere(comm, lambda: optimizer.load_state_dict(state_dict),
                     lambda: optimizer.load_state_dict(previous), "broadcast_optimizer_state")


class _DistributedState:
    __slots__ = ("comm", "averager")

    def __init__(self, comm, averager):
        self.comm = comm
        self.averager = averager


class DistributedOptimizer:
    r"""Data parallel training: average the gradients over the ranks, then step (Horovod style).

    ``DistributedOptimizer(optimizer)`` returns an optimizer that *is* ``optimizer`` with a
    different ``step``: it shares its ``param_groups``, ``state``, ``defaults``, ``_step_count``,
    hooks and ``state_dict()``/``load_state_dict()`` (it is an instance of the wrapped class and
    of :class:`fastoptim.Optimizer`), so learning-rate schedulers and checkpoints work on it
    unchanged. ``step()`` first replaces every gradient by its average over the ranks (see
    :func:`allreduce_gradients`), then runs the wrapped optimizer's step:

    .. math:: \bar g = \Big(\big((g_0 + g_1) + \dots\big) + g_{n-1}\Big) / n, \qquad
              \theta \leftarrow \mathrm{step}(\theta, \bar g)

    so the parameters on every rank stay bitwise equal to one optimizer fed the averaged
    gradients (start every rank from the same parameters with :func:`broadcast_parameters`).

    Parameters
    ----------
    optimizer : fastoptim.Optimizer
        Any fastoptim optimizer, constructed on every rank with the same parameters.
    comm : mpi4py.MPI.Intracomm, optional
        Default ``MPI.COMM_WORLD``.
    bucket_cap_mb : float, default 25
        The bucket size of :func:`allreduce_gradients`.

    Notes
    -----
    With a closure (``step(closure)``, as LBFGS needs), the gradients are averaged after each
    evaluation of the closure, inside the step. The returned object cannot be pickled: save
    ``state_dict()`` (as with any optimizer) and wrap again after loading.
    """

    _classes = {}
    _classes_lock = threading.Lock()

    def __new__(cls, optimizer, comm=None, bucket_cap_mb=25):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"DistributedOptimizer wraps a fastoptim.Optimizer, got {type(optimizer).__name__}"
            )
        if isinstance(optimizer, DistributedOptimizer) or "_fo_distributed" in vars(optimizer):
            raise ValueError("this optimizer is already wrapped by a DistributedOptimizer")
        base = type(optimizer)
        with cls._classes_lock:
            sub = cls._classes.get(base)
            if sub is None:
                sub = type(base.__name__, (cls, base), {
                    "__module__": __name__,
                    "__qualname__": f"DistributedOptimizer[{base.__qualname__}]",
                    "__doc__": cls.__doc__,
                })
                cls._classes[base] = sub
        self = object.__new__(sub)
        self.__dict__ = optimizer.__dict__  # the same optimizer, seen through a different class
        return self

    def __init__(self, optimizer, comm=None, bucket_cap_mb=25):
        comm = resolve_comm(comm)
        self._fo_distributed = _DistributedState(comm, GradientAverager(comm, bucket_cap_mb))

    def _fo_params(self):
        return _unique_params(p for group in self.param_groups for p in group["params"])

    def step(self, closure=None):
        """Average the gradients over the ranks, then run the wrapped optimizer's step."""
        dist = self._fo_distributed
        if closure is None:
            dist.averager(self._fo_params())
            return super().step()

        def averaged_closure():
            loss = closure()
            dist.averager(self._fo_params())
            return loss

        return super().step(averaged_closure)

    @property
    def comm(self):
        """The communicator the gradients are averaged over."""
        return self._fo_distributed.comm

    def __reduce_ex__(self, protocol):
        raise TypeError(
            "a DistributedOptimizer cannot be pickled or deep-copied (it holds an MPI "
            "communicator); save optimizer.state_dict() instead and wrap a new optimizer that "
            "loaded it"
        )
