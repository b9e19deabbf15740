"""The exceptions :func:`fastoptim.load` raises for the contents of a file."""

import pickle

__all__ = ["CheckpointError", "UnsafeCheckpointError", "CorruptCheckpointError"]


class CheckpointError(Exception):
    """Base class of the errors :func:`load` raises for the contents of a checkpoint.

    Attributes
    ----------
    path : str
        The file's path, or for a file object its ``name`` or ``repr``.
    """

    def __init__(self, message, path=None):
        super().__init__(message)
        self.path = path


class UnsafeCheckpointError(CheckpointError, pickle.UnpicklingError):
    """The file asks for a global, opcode or type that the restricted reader does not allow.

    The message names it (for example ``global 'os.system' is not allowed``). Nothing the file
    names was imported or run. For a fastoptim checkpoint or a torch file, the checksums were
    correct, so this is how the file was written, not damage; a file without a checksum (a plain
    pickle) is refused this way too, whatever else is wrong with it.
    """


class CorruptCheckpointError(CheckpointError, ValueError):
    """The file is truncated, damaged, malformed, or in no format :func:`fastoptim.load` reads."""

