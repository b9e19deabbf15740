"""tests/distributed: ``test_mpi_*.py`` run only under an MPI launcher, on every rank::

    mpirun -n 2 python -m mpi4py -m pytest -q -p no:cacheprovider tests/distributed
    mpirun -n 3 --oversubscribe python -m mpi4py -m pytest -q -p no:cacheprovider tests/distributed

(``-m mpi4py`` aborts the whole job if one rank dies, instead of leaving the others waiting.)
A plain ``python -m pytest`` skips them without importing mpi4py, and runs ``test_launch.py``,
which starts mpirun itself where it is installed.
"""
import os

_LAUNCHED = any(os.environ.get(v) for v in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"))

# under a launcher every rank runs the MPI tests (test_launch.py starts mpirun itself: not there)
collect_ignore_glob = ["test_launch.py"] if _LAUNCHED else ["test_mpi_*.py"]

if _LAUNCHED:
    # several ranks share the cores: one OpenMP thread each, or the ranks' threads fight (and a
    # rank waiting in a collective spins on a core another rank's threads need)
    import fastoptim

    fastoptim.set_num_threads(1)
