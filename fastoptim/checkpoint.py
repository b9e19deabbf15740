"""``fastoptim.checkpoint``: the module that held :func:`save` and :func:`load` before the
:mod:`fastoptim.io` subpackage; kept so that existing imports keep working."""

from fastoptim.io import (
    CheckpointError, CorruptCheckpointError, UnsafeCheckpointError, load, save,
)

__all__ = ["save", "load", "CheckpointError", "UnsafeCheckpointError", "CorruptCheckpointError"]
