"""Files: fastoptim's checkpoints, and torch.save's zip archives read and written without torch.

The subpackage's modules, one job each:

* :mod:`~fastoptim.io.api`: :func:`save` and :func:`load`, the public entry points;
* :mod:`~fastoptim.io.format`: the checkpoint format (header, footer, CRC-32);
* :mod:`~fastoptim.io.encoder`: Python objects to pickle opcodes, streamed to the file;
* :mod:`~fastoptim.io.atomic`: the atomic, durable write of a path;
* :mod:`~fastoptim.io.reader`: what a file is, and reading it (files and streams);
* :mod:`~fastoptim.io.unpickler`: the restricted pickle interpreter (runs nothing it reads);
* :mod:`~fastoptim.io.torchfile`: torch.save's zip format, both ways;
* :mod:`~fastoptim.io.interop`: optimizer state dicts between torch tensors and NumPy arrays.
"""

from fastoptim.io.api import load, save
from fastoptim.io.errors import CheckpointError, CorruptCheckpointError, UnsafeCheckpointError

__all__ = ["save", "load", "CheckpointError", "UnsafeCheckpointError", "CorruptCheckpointError"]
