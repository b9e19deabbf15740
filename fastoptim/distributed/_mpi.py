"""mpi4py, imported on first use, and the small helpers every collective here shares."""
import sys
import zlib

import numpy as np

INSTALL_HINT = 'pip install "fastoptim[distributed]"'


def import_mpi():
    """Return ``mpi4py.MPI``, or raise an ImportError that says how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(
            "fastoptim.distributed needs mpi4py and an MPI runtime, which are not installed "
            f"({exc}); install them with: {INSTALL_HINT}"
        ) from exc
    return MPI


MPI = import_mpi()


def resolve_comm(comm):
    """``comm``, or ``MPI.COMM_WORLD`` when it is None; anything else is refused clearly."""
    if comm is None:
        return MPI.COMM_WORLD
    if not isinstance(comm, MPI.Intracomm):
        raise TypeError(
            f"comm must be an mpi4py intracommunicator (e.g. MPI.COMM_WORLD or one made with "
            f"comm.Split), got {type(comm).__name__}"
        )
    return comm


def check_root(root, comm):
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)) or not (
        0 <= root < comm.Get_size()
    ):
        raise ValueError(f"root must be a rank of the communicator (0..{comm.Get_size() - 1}), "
                         f"got {root!r}")
    return int(root)


def signature_hash(items):
    """A 63-bit checksum of a sequence of ints/strs that is the same in every process (Python's
    own ``hash`` of a str is salted per process, so it cannot be compared across ranks)."""
    text = repr(tuple(items)).encode()
    return (zlib.crc32(text) << 31) ^ zlib.adler32(text)


def agree(comm, value, what):
    """Raise on every rank unless ``value`` (an int) is the same on every rank of ``comm``.

    One 16-byte allreduce. It runs before any collective whose message sizes depend on per-rank
    data (shapes, which parameters have gradients), so that a mismatch is an error on every rank
    instead of a hang or a truncated message on some.
    """
    if comm.Get_size() == 1:
        return
    pair = np.array([value, -value], dtype=np.int64)
    comm.Allreduce(MPI.IN_PLACE, pair, op=MPI.MAX)
    if pair[0] != value or -pair[1] != value:
        raise ValueError(
            f"{what} differ between the ranks of the communicator; every rank must pass the same "
            "parameters (same order, shapes and dtypes) and have gradients for the same "
            "parameters. Nothing was communicated."
        )


def abort_on_exception(exc_type, exc, tb, *, comm=None):
    """An ``excepthook`` body: print the traceback, then abort the whole MPI job (exit 1)."""
    sys.__excepthook__(exc_type, exc, tb)
    sys.stderr.flush()
    (comm or MPI.COMM_WORLD).Abort(1)


def apply_everywhere(comm, apply, rollback, what):
    """Run ``apply()`` on every rank, all-or-nothing across the ranks.

    If it raises on any rank, the ranks where it succeeded call ``rollback()``, the failing
    ranks re-raise their own error and the others raise a RuntimeError naming the failing ranks,
    so the ranks never disagree about whether ``what`` happened. One small allgather.
    """
    error = None
    try:
        apply()
    except Exception as exc:  # re-raised below, on this rank, after the others are told
        error = exc
    failed = comm.allgather(None if error is None else f"{type(error).__name__}: {error}")
    bad = [r for r, message in enumerate(failed) if message is not None]
    if not bad:
        return
    if error is not None:
        raise error
    rollback()
    first = failed[bad[0]]
    raise RuntimeError(
        f"{what} failed on rank(s) {bad} (rank {bad[0]}: {first}); it was undone on this rank, "
        "so every rank is as it was before the call"
    )
