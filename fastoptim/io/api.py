"""The public entry points :func:`save` and :func:`load` (``fastoptim.save``/``fastoptim.load``)."""

import io
import os

from fastoptim.io import atomic, encoder, reader
from fastoptim.io.reader import _file_label

__all__ = ["save", "load"]

FORMATS = ("fastoptim", "torch")


def save(obj, f, *, format="fastoptim"):
    """Save ``obj`` (a checkpoint) to a path or a binary file object.

    Parameters
    ----------
    obj : object
        Any nesting of dict (including OrderedDict and Counter), list, tuple, str, bytes, int,
        float, bool, None, NumPy arrays and NumPy scalars of bool, integer, float or complex
        dtype, for example ``{"model": {...}, "optimizer": opt.state_dict(), "scheduler":
        sched.state_dict(), "epoch": 3}``. ``fastoptim.Parameter`` and ``numpy.memmap`` arrays
        are saved as plain arrays (a Parameter's ``grad`` is not saved). An object that appears
        more than once is stored once and loads as one object.
    f : str, bytes, os.PathLike or binary file object
        A path is written atomically and durably: the checkpoint goes to a temporary file
        ``.{name}.fastoptim-tmp-XXXXXXXX`` in the same directory, is flushed and fsynced, and is
        then renamed onto the path, after which the directory is fsynced. Until the rename the
        path keeps its old contents; a symbolic link is followed and its target replaced. A new
        file gets the mode ``open()`` would give it (0o666 minus the umask); an existing file's
        permission bits are kept. A path that is a character device (``/dev/null``) or a FIFO is
        written directly, never replaced (a FIFO must have a reader); a block device or socket
        is refused. A file object is written in place at its current position, without fsync:
        not atomic.
    format : {"fastoptim", "torch"}, default "fastoptim"
        ``"fastoptim"``: fastoptim's checkpoint, a pickle with a checksummed footer (see
        :doc:`/checkpoints`). ``"torch"``: the zip archive ``torch.save`` writes, which
        ``torch.load(f, weights_only=True)`` reads back with tensors for the arrays (shared
        arrays stay shared, each array is stored contiguous; NumPy scalars become 0-d tensors;
        an optimizer state dict's integer ``step`` counts become torch's float32 step tensors so
        that ``torch.optim`` optimizers load it). Written without importing torch. Strings,
        bytes and ints up to 255 bytes long; ``OrderedDict``/``Counter`` as themselves.

    Raises
    ------
    TypeError
        If ``obj`` contains an object of an unsupported type (a lambda, a custom class, an object
        array, ...). The message names where it is, e.g. ``obj['optimizer']['state'][0]['foo']``.
        Nothing is written.
    ValueError
        If ``obj`` contains itself, or ``format`` is unknown. Nothing is written.
    OSError
        If the file cannot be written. The error keeps its errno and subclass
        (``PermissionError``, ``FileNotFoundError``, ...) and names the path; an existing
        checkpoint at the path is left as it was and the temporary file is removed.

    See Also
    --------
    load : Read a checkpoint back.

    Examples
    --------
    >>> import numpy as np, fastoptim as fo
    >>> fo.save({"w": np.zeros(3, np.float32), "epoch": 3}, "run.ckpt")  # doctest: +SKIP
    >>> fo.load("run.ckpt")  # doctest: +SKIP
    {'w': array([0., 0., 0.], dtype=float32), 'epoch': 3}
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    is_path = isinstance(f, (str, bytes, os.PathLike))
    if not is_path and isinstance(f, io.TextIOBase):
        raise TypeError(
            "fastoptim.save needs a binary file: the file object is open in text mode; open it "
            "with mode 'wb'"
        )
    if not is_path and not callable(getattr(f, "write", None)):
        raise TypeError(
            f"fastoptim.save needs a path or a binary file object with a write() method, "
            f"got {type(f).__name__}"
        )
    # Validate the whole object before the first byte is written, so that an unsupported object
    # leaves the file (or file object) untouched.
    if format == "torch":
        from fastoptim.io import torchfile  # noqa: PLC0415

        write = torchfile.writer(obj)
    else:
        size = encoder.validate(obj)

        def write(file):
            encoder.write_checkpoint(obj, file, size)

    if is_path:
        atomic.write_path(os.fsdecode(os.fspath(f)), write)
        return
    write(f)
    flush = getattr(f, "flush", None)
    if callable(flush):
        flush()


def load(f, *, weights_only=True, allow_plain_pickle=False):
    """Load a checkpoint written by :func:`save`, or a file written by ``torch.save``.

    Parameters
    ----------
    f : str, os.PathLike or binary file object
        A path, or a readable binary file object positioned at the start of the checkpoint; the
        checkpoint runs to the end of the file. A path that is a FIFO or a device, and a file
        object that cannot seek (a pipe), are read as a stream: only as far as the checkpoint
        declares (a torch file cannot be read this way). ``bytes`` are refused: wrap checkpoint
        data in ``io.BytesIO``, and pass a bytes path as ``os.fsdecode(path)``.
    weights_only : bool, default True
        With True (the default), the file is read by fastoptim's own restricted reader: only
        the types :func:`save` writes come back (arrays writeable, F-contiguous arrays as
        F-contiguous, all others C-contiguous), nothing named in the file is imported or
        called, and every size is checked against the file before memory is allocated.
        ``weights_only=False`` is the explicit unsafe path for fastoptim checkpoints in a
        seekable file: after the checksum has been verified, the data is passed to
        :func:`pickle.load`, which runs whatever code the file names. Use it only for files you
        wrote yourself, never for files downloaded or received. Files without fastoptim's
        checksum (torch files, plain pickles) are always read by the restricted reader.
    allow_plain_pickle : bool, default False
        A plain pickle (from ``pickle.dump``, without fastoptim's footer) carries no checksum, so
        truncation or damage cannot be told from an intact file; by default it is refused with
        :class:`CorruptCheckpointError` (or, if it names a global or opcode that is not allowed,
        :class:`UnsafeCheckpointError`). With True, a plain pickle of the allowed types is read
        through the restricted reader and returned. A fastoptim checkpoint that was cut short is
        refused either way.

    Returns
    -------
    object
        The saved object. From a torch file: tensors as NumPy arrays of the same dtype, shape
        and strides (see :doc:`/torch_interop`).

    Raises
    ------
    CorruptCheckpointError
        If the file is truncated, has a flipped bit anywhere, is malformed, or is in none of the
        formats :func:`load` reads. Also a :class:`ValueError`.
    UnsafeCheckpointError
        If the file names a global, opcode or type that is not allowed, such as ``os.system``
        (with ``weights_only=True``, and always for a file without fastoptim's checksum). Also a
        :class:`pickle.UnpicklingError`.
    OSError
        If the file cannot be opened or read.
    """
    if type(weights_only) is not bool:
        raise TypeError(f"weights_only must be True or False, got {weights_only!r}")
    if type(allow_plain_pickle) is not bool:
        raise TypeError(f"allow_plain_pickle must be True or False, got {allow_plain_pickle!r}")
    if isinstance(f, (bytes, bytearray, memoryview)):
        raise TypeError(
            "fastoptim.load got bytes, which it takes neither as a path nor as data: wrap "
            "checkpoint data in io.BytesIO(data), and pass a bytes path as os.fsdecode(path)"
        )
    if isinstance(f, (str, os.PathLike)):
        label = os.fspath(f)
        label = os.fsdecode(label)
        with reader.open_source(label) as file:
            return reader.load_file(file, label, weights_only, allow_plain_pickle)
    if isinstance(f, io.TextIOBase):
        raise TypeError(
            "fastoptim.load needs a binary file: the file object is open in text mode; open it "
            "with mode 'rb'"
        )
    if not callable(getattr(f, "read", None)):
        raise TypeError(
            f"fastoptim.load needs a path or a binary file object with a read() method, "
            f"got {type(f).__name__}"
        )
    return reader.load_file(f, _file_label(f), weights_only, allow_plain_pickle)
