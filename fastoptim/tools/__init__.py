"""Command-line tools that ship with fastoptim (``python -m fastoptim demo|bench``).

Not part of the library API: nothing in :mod:`fastoptim` imports this package.

:mod:`fastoptim.tools.demo`
    ``python -m fastoptim demo``: trains a small NumPy network with checkpoints and exact resume.
:mod:`fastoptim.tools.bench`
    ``python -m fastoptim bench``: times the optimizer steps against NumPy, torch.optim and optax
    and against the memory-bandwidth bound, in one process, on the user's machine.
:mod:`fastoptim.tools.peers`
    The benchmark's contestants, one class per implementation.

Tracking fastoptim's own speed across commits (asv) and the developers' stand-alone measurement
scripts live in the repository's ``benchmarks/`` folder, not in the package.
"""
