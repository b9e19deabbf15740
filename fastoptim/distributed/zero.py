"""ZeRO stage 1: optimizer state sharded over the ranks (torch's ZeroRedundancyOptimizer)."""
from copy import deepcopy

import numpy as np

from fastoptim.optimizer import Optimizer
from fastoptim.optim import registry as _registry
from fastoptim.distributed._collectives import (
    _Scratch, hash_layout, mpi_type, reduce_scatter,
)
from fastoptim.distributed._partition import partition_parameters
from fastoptim.distributed._mpi import (
    MPI, agree, apply_everywhere, check_root, resolve_comm, signature_hash,
)

__all__ = ["ZeroRedundancyOptimizer"]

_HYPER_SKIP = ("params", "param_names")


def _sync_param_groups(src_groups, dst_groups):
    """Copy every hyperparameter (not the parameters) from ``src_groups`` to ``dst_groups``."""
    for src, dst in zip(src_groups, dst_groups):
        for key, value in src.items():
            if key not in _HYPER_SKIP:
                dst[key] = value


class _PackedLayout:
    """Per dtype, the arrays of every rank laid out rank after rank in one buffer."""

    def __init__(self, per_rank, n, extra=0):
        # per_rank[r]: list of (param, size) of rank r, for one dtype; ``extra`` more elements
        # at the end of every rank's segment (the step's failure flag)
        self.per_rank = per_rank
        self.counts = [sum(size for _, size in entries) + extra for entries in per_rank]
        self.displs = [0] * n
        for r in range(1, n):
            self.displs[r] = self.displs[r - 1] + self.counts[r - 1]
        self.total = sum(self.counts)

    def views(self, buffer, rank):
        offset = self.displs[rank]
        for param, size in self.per_rank[rank]:
            yield param, buffer[offset:offset + size].reshape(param.shape)
            offset += size



def _couples_parameters(optimizer_class):
    """Whether ``optimizer_class`` updates all parameters in one coupled step (its class says
    ``_couples_parameters``), or bears the name of a fastoptim optimizer that does."""
    import fastoptim.optim as optim

    coupled = [name for name in optim.__all__
               if getattr(getattr(optim, name), "_couples_parameters", False)]
    return getattr(optimizer_class, "_couples_parameters", False) or optimizer_class.__name__ in coupled

class ZeroRedundancyOptimizer(Optimizer):
    r"""ZeRO stage 1: each rank keeps and updates the optimizer state of its share of parameters.

    The counterpart of ``torch.distributed.optim.ZeroRedundancyOptimizer``, with its
    partitioning: within each parameter group, in order of the groups, the parameters sorted by
    size (largest first, ties in their order) are each given to the rank holding the fewest
    elements so far (the lowest such rank). Each rank builds a local ``optimizer_class`` over
    its partition only (held as :attr:`optim`), so its state (Adam's two moments...) takes about
    ``1/n`` of the memory. :meth:`step` runs the local optimizer, then sends every updated
    parameter from the rank that owns it to all ranks:

    .. math:: \theta_p \leftarrow \mathrm{step}(\theta_p, g_p) \text{ on rank } \mathrm{owner}(p),
              \qquad \theta_p \xrightarrow{\text{broadcast}} \text{every rank}

    As in torch, the step uses the gradients as they are on each rank: average them first with
    :func:`allreduce_gradients`, or pass ``average_gradients=True``, which averages them
    itself with a reduce-scatter (each rank receives only the averaged gradients of its own
    partition, the rank-order average defined in :func:`allreduce_gradients`): half the traffic
    of an allreduce before the step, and the broadcast of the parameters after it is the other
    half. Either way the parameters on every rank are bitwise equal to one unsharded optimizer
    stepped on the averaged gradients.

    Parameters
    ----------
    params : iterable
        Parameters or parameter groups, as for any optimizer; the same (shapes, dtypes, order)
        on every rank.
    optimizer_class : type
        A fastoptim optimizer class whose update is per parameter (every one except
        :class:`~fastoptim.LBFGS`, whose step couples all parameters).
    comm : mpi4py.MPI.Intracomm, optional
        Default ``MPI.COMM_WORLD``.
    average_gradients : bool, default False
        Average the gradients over the ranks inside :meth:`step` (reduce-scatter). With
        ``True``, after a step the gradients of this rank's partition hold the averages and the
        other gradients are left as they were.
    **defaults
        Hyperparameters passed to ``optimizer_class`` (``lr=...``).

    Attributes
    ----------
    optim : fastoptim.Optimizer
        This rank's local optimizer, over its partition (its groups mirror :attr:`param_groups`,
        some possibly empty).
    param_groups : list of dict
        All parameters, with the hyperparameters of the local optimizer (schedulers change them
        here; each step passes them on to the local optimizer).
    defaults : dict
        The local optimizer's ``defaults`` (all of its hyperparameters; torch keeps only the
        keywords given, which hides e.g. ``betas`` from ``OneCycleLR``).

    Notes
    -----
    Checkpoints: :meth:`consolidate_state_dict` (on every rank) gathers the shards on one rank,
    where :meth:`state_dict` then returns the full torch-layout state dict that one unsharded
    optimizer would have; :meth:`load_state_dict` of such a full dict, on every rank, keeps each
    rank's shard, so a run resumes on any number of ranks. A step that fails on one rank (a bad
    gradient) raises on every rank instead of hanging.
    """

    def __init__(self, params, optimizer_class, comm=None, average_gradients=False, **defaults):
        if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, Optimizer)):
            raise TypeError(
                "optimizer_class must be a fastoptim optimizer class (e.g. "
                f"fastoptim.{next(iter(_registry.OPTIMIZERS))}), got {optimizer_class!r}"
            )
        if issubclass(optimizer_class, ZeroRedundancyOptimizer):
            raise TypeError("optimizer_class cannot itself be a ZeroRedundancyOptimizer")
        if _couples_parameters(optimizer_class):
            name = optimizer_class.__name__
            raise ValueError(
                f"ZeroRedundancyOptimizer shards per-parameter updates; {name} couples all "
                "parameters in one update, so it cannot be sharded. Use "
                f"DistributedOptimizer(fastoptim.{name}(...)) instead"
            )
        if not isinstance(average_gradients, (bool, np.bool_)):
            raise TypeError(f"average_gradients must be True or False, got {average_gradients!r}")
        self._zero_ready = False
        self.comm = resolve_comm(comm)
        self.world_size = self.comm.Get_size()
        self.rank = self.comm.Get_rank()
        self.average_gradients = bool(average_gradients)
        self._optimizer_class = optimizer_class
        self._optim_defaults = defaults
        self._consolidated = None
        self._scratch = _Scratch()
        self._grad_layouts = {}
        super().__init__(params, dict(defaults))
        self._check_same_params()
        self._partition = self._partition_parameters()
        self.optim = optimizer_class(self._partition[self.rank], **defaults)
        # all of the optimizer's defaults, not only the ones given (torch keeps only those), so
        # that e.g. OneCycleLR finds "betas" in them
        self.defaults = dict(self.optim.defaults)
        _sync_param_groups(self.optim.param_groups, self.param_groups)
        self._build_layouts()
        self._zero_ready = True

    # ------------------------------------------------------------------ partition

    def _check_same_params(self):
        items = []
        for group in self.param_groups:
            items.append(len(group["params"]))
            for p in group["params"]:
                items.extend((p.dtype.str, *p.shape, -1))
        agree(self.comm, signature_hash(items),
              "the parameters given to ZeroRedundancyOptimizer (groups, shapes, dtypes)")
        for index, group in enumerate(self.param_groups):
            if len(set(map(id, group["params"]))) != len(group["params"]):
                raise ValueError(
                    f"param group {index} lists a parameter more than once; "
                    "ZeroRedundancyOptimizer gives each parameter to one rank, so list it once"
                )

    def _partition_parameters(self):
        return partition_parameters(self.param_groups, self.world_size)

    def _build_layouts(self):
        """Who owns what, global indices, and the buffers of the parameter broadcast."""
        n = self.world_size
        self._owner = {}
        for rank, groups in enumerate(self._partition):
            for group in groups:
                for p in group["params"]:
                    self._owner[id(p)] = rank
        self._all_params = [p for group in self.param_groups for p in group["params"]]
        self._index = {id(p): i for i, p in enumerate(self._all_params)}
        # the updated parameters travel packed per dtype, rank after rank, in one Allgatherv per
        # dtype; the first buffer also carries each rank's "my step failed" flag. (One collective
        # per dtype instead of torch's broadcast per parameter: on a busy machine every collective
        # costs a scheduling round trip; in place, the copies cost about as much as the
        # broadcasts saved.)
        by_dtype = {}
        for rank, groups in enumerate(self._partition):
            for group in groups:
                for p in group["params"]:
                    if p.size:
                        by_dtype.setdefault(p.dtype.char, [[] for _ in range(n)])[rank].append(
                            (p, p.size))
        self._param_layouts = []
        for k, char in enumerate(sorted(by_dtype)):
            layout = _PackedLayout(by_dtype[char], n, extra=1 if k == 0 else 0)
            self._param_layouts.append((layout, np.empty(layout.total, dtype=np.dtype(char))))
        self._grad_layouts = {}

    def _local_params(self):
        return [p for group in self.optim.param_groups for p in group["params"]]

    # ------------------------------------------------------------------ param groups

    def add_param_group(self, param_group):
        """Add a parameter group (on every rank): its parameters are partitioned and this
        rank's share is added to the local optimizer; earlier parameters keep their ranks."""
        super().add_param_group(param_group)
        if not getattr(self, "_zero_ready", False):
            return
        self._check_same_params()
        self._partition = self._partition_parameters()
        self.optim.add_param_group(self._partition[self.rank][-1])
        _sync_param_groups(self.optim.param_groups, self.param_groups)
        self._build_layouts()

    # ------------------------------------------------------------------ step

    def step(self, closure=None):
        """Step this rank's partition, then send the updated parameters to every rank.

        With ``average_gradients=True`` the gradients are first averaged by a reduce-scatter
        (after the closure, if one is given). Returns the closure's value.
        """
        _sync_param_groups(self.param_groups, self.optim.param_groups)
        local_closure = closure
        if self.average_gradients:
            if closure is None:
                self._reduce_scatter_gradients()
            else:
                def local_closure():
                    loss = closure()
                    self._reduce_scatter_gradients()
                    return loss
        error = None
        loss = None
        try:
            loss = self.optim.step() if local_closure is None else self.optim.step(local_closure)
        except Exception as exc:  # raised below on this rank, after the others know
            error = exc
        failed = self._share_params(error is not None)
        if failed:
            if error is not None:
                raise error
            raise RuntimeError(
                f"the optimizer step failed on rank(s) {failed} (see their error); this rank's "
                "partition was stepped and theirs was not, so the ranks now disagree: reload "
                "the last checkpoint"
            )
        _sync_param_groups(self.optim.param_groups, self.param_groups)
        return loss

    def _share_params(self, failed):
        """Send this rank's updated parameters to every rank and receive theirs (one Allgatherv
        per dtype), with the ranks' failure flags; returns the ranks whose step failed (then no
        parameter is updated from the others)."""
        comm, n = self.comm, self.world_size
        if n == 1:
            return [0] if failed else []
        if not self._param_layouts:  # no parameter with elements: only the flags
            return [r for r, f in enumerate(comm.allgather(failed)) if f]
        for k, (layout, buffer) in enumerate(self._param_layouts):
            for param, view in layout.views(buffer, self.rank):
                np.copyto(view, param)
            if k == 0:
                buffer[layout.displs[self.rank] + layout.counts[self.rank] - 1] = failed
            comm.Allgatherv(MPI.IN_PLACE,
                            [buffer, (layout.counts, layout.displs), mpi_type(buffer.dtype)])
            if k == 0:
                bad = [r for r in range(n) if buffer[layout.displs[r] + layout.counts[r] - 1]]
                if bad:
                    return bad
            for rank in range(n):
                if rank != self.rank:
                    for param, view in layout.views(buffer, rank):
                        np.copyto(param, view)
        return []

    def _reduce_scatter_gradients(self):
        """Average the gradients over the ranks; this rank receives its partition's averages."""
        n = self.world_size
        entries = [(p, p.grad) for p in self._all_params]
        present = tuple((self._index[id(p)], g.dtype.char, g.shape) for p, g in entries
                        if g is not None and g.size)
        if n == 1:
            return
        agree(self.comm, hash_layout(present, 0),
              "the gradients to average (which parameters have one, their shapes and dtypes)")
        cached = self._grad_layouts.get(present)
        if cached is None:
            by_dtype = {}
            have = {i for i, _, _ in present}
            for rank, groups in enumerate(self._partition):
                for group in groups:
                    for p in group["params"]:
                        if self._index[id(p)] in have:
                            by_dtype.setdefault(p.dtype.char, [[] for _ in range(n)])[
                                rank].append((p, p.size))
            cached = []
            for char in sorted(by_dtype):
                layout = _PackedLayout(by_dtype[char], n)
                dtype = np.dtype(char)
                cached.append((layout, np.empty(layout.total, dtype=dtype),
                               np.empty(layout.counts[self.rank], dtype=dtype)))
            self._grad_layouts = {present: cached}  # one layout kept: gradients rarely change
        for layout, sendbuf, out in cached:
            for rank in range(n):
                for param, view in layout.views(sendbuf, rank):
                    np.copyto(view, param.grad)
            reduce_scatter(self.comm, sendbuf, layout.counts, layout.displs, out, True,
                           self._scratch)
            offset = 0
            for param, size in layout.per_rank[self.rank]:
                value = out[offset:offset + size].reshape(param.shape)
                offset += size
                grad = param.grad
                if grad.flags.writeable:
                    np.copyto(grad, value)
                else:
                    param.grad = value.copy()

    # ------------------------------------------------------------------ state dicts

    def consolidate_state_dict(self, to=0):
        """Gather every rank's shard of the optimizer state on rank ``to`` (call on every rank).

        Afterwards :meth:`state_dict` on rank ``to`` returns the full state dict; it is a
        snapshot of this moment (call again after further steps).
        """
        to = check_root(to, self.comm)
        _sync_param_groups(self.param_groups, self.optim.param_groups)
        local = self.optim.state_dict()
        local_params = self._local_params()
        shard = {self._index[id(local_params[i])]: value for i, value in local["state"].items()}
        shards = self.comm.gather(shard, root=to)
        if self.rank == to:
            merged = {}
            for part in shards:
                merged.update(part)
            self._consolidated = dict(sorted(merged.items()))
        else:
            self._consolidated = None

    def state_dict(self):
        """The full torch-layout state dict, on the rank that :meth:`consolidate_state_dict`
        gathered it to: what one unsharded optimizer over all parameters would return.

        Raises
        ------
        RuntimeError
            The state was not consolidated on this rank.
        """
        if self._consolidated is None:
            raise RuntimeError(
                "Optimizer state has not been consolidated on this rank. Please call "
                f"`consolidate_state_dict(to={self.rank})` on all ranks beforehand if you meant "
                "to save the global state."
            )
        state_dict = super().state_dict()
        state_dict["state"] = deepcopy(self._consolidated)
        return state_dict

    def load_state_dict(self, state_dict):
        """Load a full state dict (from :meth:`state_dict`, or from one unsharded optimizer) on
        every rank; each rank keeps the state of its own partition.

        The world size may differ from the run that saved it. All-or-nothing across the ranks:
        if the local load fails on one rank, every rank raises and none changed.
        """
        if not isinstance(state_dict, dict) or "state" not in state_dict or (
            "param_groups" not in state_dict
        ):
            raise TypeError("load_state_dict expects a full optimizer state dict "
                            "({'state': ..., 'param_groups': ...})")
        saved_groups = state_dict["param_groups"]
        saved_state = state_dict["state"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"])
               for g, s in zip(self.param_groups, saved_groups)):
            raise ValueError("loaded state dict contains a parameter group "
                             "that doesn't match the size of optimizer's group")
        known = {i for s in saved_groups for i in s["params"]}
        unknown = [k for k in saved_state if k not in known]
        if unknown:
            raise ValueError(
                f"state_dict['state'] has an entry {unknown[0]!r} that is not the index of any "
                "parameter in state_dict['param_groups']; the state dict is inconsistent"
            )
        local_groups, local_state, local_index = [], {}, 0
        for group, saved, mine in zip(self.param_groups, saved_groups, self._partition[self.rank]):
            saved_id = {id(p): i for p, i in zip(group["params"], saved["params"])}
            local = {k: v for k, v in saved.items() if k not in _HYPER_SKIP}
            local["params"] = []
            if "param_names" in saved:
                names = dict(zip(saved["params"], saved["param_names"]))
                local["param_names"] = [names[saved_id[id(p)]] for p in mine["params"]]
            for p in mine["params"]:
                if saved_id[id(p)] in saved_state:
                    local_state[local_index] = saved_state[saved_id[id(p)]]
                local["params"].append(local_index)
                local_index += 1
            local_groups.append(local)
        local_sd = {"state": local_state, "param_groups": local_groups}
        previous = self.optim.state_dict()
        apply_everywhere(self.comm, lambda: self.optim.load_state_dict(local_sd),
                         lambda: self.optim.load_state_dict(previous),
                         "ZeroRedundancyOptimizer.load_state_dict")
        _sync_param_groups(self.optim.param_groups, self.param_groups)
        self._consolidated = None

    def __reduce_ex__(self, protocol):
        raise TypeError(
            "a ZeroRedundancyOptimizer cannot be pickled or deep-copied (it holds an MPI "
            "communicator and one shard of the state); save the consolidated state_dict() instead"
        )
