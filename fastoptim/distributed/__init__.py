"""Scale-out on MPI: data parallel training and ZeRO optimizer-state sharding, via mpi4py.

Run a script with ``mpirun -n N python -m mpi4py train.py`` (``-m mpi4py`` makes an exception on
one rank abort the whole job instead of leaving the others waiting). ``import fastoptim`` never
needs MPI; this subpackage needs ``mpi4py`` and an MPI runtime::

    pip install "fastoptim[distributed]"

See the "Scaling out" page of the documentation.
"""
from fastoptim.distributed.data_parallel import (
    DistributedOptimizer,
    allreduce_gradients,
    broadcast_optimizer_state,
    broadcast_parameters,
)
from fastoptim.distributed.zero import ZeroRedundancyOptimizer

__all__ = [
    "allreduce_gradients",
    "broadcast_parameters",
    "broadcast_optimizer_state",
    "DistributedOptimizer",
    "ZeroRedundancyOptimizer",
]
