"""Checkpoint files: :func:`save` and :func:`load`.

A checkpoint is a pickle (protocol 5) followed by a 32-byte footer. The pickle is what plain
``pickle.load`` reads, and it stops at the STOP opcode without looking at the footer. The footer
records the length of the pickle and its CRC-32, so truncation and flipped bits are found before
anything is returned::

    offset  size  field
    0       n     pickle, protocol 5, ending with STOP ('.')
    n+0     8     n, little-endian uint64
    n+8     4     CRC-32 (zlib.crc32) of the n pickle bytes
    n+12    2     format version (1)
    n+14    2     checksum kind (1: CRC-32)
    n+16    4     reserved, 0
    n+20    4     CRC-32 of footer bytes n+0 .. n+20
    n+24    8     magic b"\\x89FOCKPT\\n"

The pickle uses only public, long-stable NumPy names so that any NumPy >= 1.25 unpickles it,
including NumPy 1.x, which cannot import the ``numpy._core`` paths that NumPy 2 writes itself:

* an array is ``numpy.ndarray(shape, numpy.dtype("<f4"), <bytearray>, 0, None, "C")``; the data is
  one BYTEARRAY8 opcode, streamed from the array's memory and, by :func:`load`, read straight
  into the memory of the array that is returned. F-contiguous arrays keep order "F"; every other
  array is written in C order.
* a NumPy scalar is ``numpy.float32(<0-d array>)``, which is exact to the bit.
* OrderedDict and Counter are rebuilt with ``collections.OrderedDict`` / ``collections.Counter``;
  everything else is a plain pickle opcode.

Containers and arrays are memoized the way pickle does it, so an object that appears twice in the
checkpoint is written once and comes back as one object.
"""

import collections
import concurrent.futures
import errno
import io
import os
import pickle
import secrets
import stat
import struct
import sys
import zlib

import numpy as np

from fastoptim._safe_unpickle import (
    SCALAR_TYPE_NAMES,
    MalformedContent,
    SafeUnpickler,
    UnsafeContent,
)

__all__ = ["save", "load", "CheckpointError", "UnsafeCheckpointError", "CorruptCheckpointError"]


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
    """The checkpoint asks for a global, opcode or type that ``weights_only=True`` does not allow.

    The message names it (for example ``global 'os.system' is not allowed``). The file's checksum
    was correct, so this is how the file was written, not damage.
    """


class CorruptCheckpointError(CheckpointError, ValueError):
    """The file is truncated, damaged, not a fastoptim checkpoint, or malformed."""


MAGIC = b"\x89FOCKPT\n"
FORMAT_VERSION = 1
_CHECKSUM_CRC32 = 1
_FOOTER = struct.Struct("<QIHHII8s")
FOOTER_SIZE = _FOOTER.size  # 32
_FOOTER_CHECKED = 20  # the footer's own CRC covers the bytes before it

# Large payloads are written in pieces of this size (also the most a strided view is copied at a
# time): big enough that the per-call overhead vanishes.
_IO_CHUNK = 4 << 20
# Array data is read in larger pieces, straight into the array: a cold read from disk runs at up
# to twice the speed with 32 MiB requests than with 4 MiB ones (measured on a virtio disk), and
# the pieces cost no memory since they are parts of the array itself.
_READ_PIECE = 32 << 20
# Small opcodes are collected in memory and written out in blocks of at least this size; the
# reader fetches the file in blocks of _READ_BLOCK for them (array data bypasses both).
_WRITE_BLOCK = 64 << 10
_READ_BLOCK = 256 << 10
# Batch size of APPENDS/SETITEMS, as pickle uses: keeps the reader's mark stack short.
_BATCH = 1000

_TEMP_MARKER = ".fastoptim-tmp-"


class _Crc32:
    """The running CRC-32 of a byte stream, computed beside the file I/O.

    ``zlib.crc32`` and file reads and writes all release the GIL, so the pieces are summed on one
    helper thread, in order, while the caller goes on writing (or reading) the file: on two or
    more cores the checksum then costs next to nothing. The caller only waits when more than
    ``_MAX_IN_FLIGHT`` bytes are still to be summed, which bounds the memory that pending pieces
    keep alive (on the save side, a piece may be a temporary copy of a strided view). A small
    piece with nothing in flight is summed at once, which is cheaper than handing it over.

    A piece must not change until it has been summed: :meth:`update` returns its future (None
    when it was summed at once), and :meth:`value` waits for all of them.
    """

    _THREAD_MIN = 1 << 20
    _MAX_IN_FLIGHT = 64 << 20

    def __init__(self):
        self._value = 0
        self._executor = None
        self._in_flight = collections.deque()  # (future, size), oldest first
        self._in_flight_bytes = 0

    def _sum(self, view):
        self._value = zlib.crc32(view, self._value)

    def _retire(self, block):
        """Forget finished pieces; with ``block``, wait until the backlog is under the limit."""
        while self._in_flight and (
            self._in_flight[0][0].done() or (block and self._in_flight_bytes > self._MAX_IN_FLIGHT)
        ):
            future, size = self._in_flight.popleft()
            future.result()  # re-raises anything the worker raised
            self._in_flight_bytes -= size

    def update(self, view):
        self._retire(block=False)
        if not self._in_flight and len(view) < self._THREAD_MIN:
            self._sum(view)
            return None
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="fastoptim-crc32"
            )
        future = self._executor.submit(self._sum, view)
        self._in_flight.append((future, len(view)))
        self._in_flight_bytes += len(view)
        self._retire(block=True)
        return future

    def value(self):
        while self._in_flight:
            self._in_flight.popleft()[0].result()
        self._in_flight_bytes = 0
        return self._value

    def close(self):
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


# ============================================================================================
# Writing
# ============================================================================================

_TUPLE_OPCODES = {0: b")", 1: b"\x85", 2: b"\x86", 3: b"\x87"}
_ALLOWED_KINDS = "biufc"
_SCALAR_NAME = {}
for _name in SCALAR_TYPE_NAMES:
    _SCALAR_NAME.setdefault(getattr(np, _name), _name)
del _name

_SUPPORTED = (
    "a checkpoint may hold dict (also OrderedDict and Counter), list, tuple, str, bytes, int, "
    "float, bool, None, and NumPy arrays and scalars of bool, integer, float and complex dtypes"
)


class _Unsupported(Exception):
    """Raised inside the encoder; :func:`save` adds the path and raises TypeError/ValueError."""

    def __init__(self, message, error_type=TypeError):
        super().__init__(message)
        self.error_type = error_type


def _encode_int(value):
    if 0 <= value < 0x100:
        return b"K" + bytes((value,))
    if 0 <= value < 0x10000:
        return b"M" + value.to_bytes(2, "little")
    if -0x80000000 <= value < 0x80000000:
        return b"J" + value.to_bytes(4, "little", signed=True)
    # Two's complement, little-endian, shortest form: what pickle's encode_long writes.
    nbytes = (value.bit_length() >> 3) + 1
    data = value.to_bytes(nbytes, "little", signed=True)
    if value < 0 and nbytes > 1 and data[-1] == 0xFF and data[-2] & 0x80:
        data = data[:-1]
    if len(data) < 0x100:
        return b"\x8a" + bytes((len(data),)) + data
    return b"\x8b" + len(data).to_bytes(4, "little") + data


def _sized_header(size, small, medium, large):
    if size < 0x100:
        return small + bytes((size,))
    if size < 0x100000000:
        return medium + size.to_bytes(4, "little")
    return large + size.to_bytes(8, "little")


def _array_class(obj):
    """Return True for the ndarray types that are saved as plain arrays."""
    cls = type(obj)
    if cls is np.ndarray or cls is np.memmap:
        return True
    # fastoptim.Parameter: saved as a plain array (its .grad is not part of a checkpoint). Looked
    # up lazily so that this module does not import the rest of the package.
    parameter_module = sys.modules.get("fastoptim.parameter")
    return parameter_module is not None and cls is getattr(parameter_module, "Parameter", None)


def _check_dtype(dtype, what):
    if dtype.kind not in _ALLOWED_KINDS or dtype.fields is not None:
        hint = (
            "object arrays can hold arbitrary Python objects and are never loaded safely; "
            "convert it to a numeric dtype or to a list"
            if dtype.kind == "O"
            else "convert it to a numeric dtype, or store strings as a list of str"
        )
        raise _Unsupported(f"{what} of dtype {dtype} is not supported ({hint})")
    if dtype.metadata:
        raise _Unsupported(
            f"{what} has a dtype with metadata {dtype.metadata!r}, which a checkpoint does not "
            "store; drop it with arr.view(np.dtype(arr.dtype.str))"
        )


def _describe_unsupported(obj):
    cls = type(obj)
    name = cls.__qualname__
    if cls.__module__ != "builtins":
        name = f"{cls.__module__}.{name}"
    if isinstance(obj, np.ndarray):
        hint = "an ndarray subclass; store np.asarray(x) (and any extra attributes separately)"
    elif isinstance(obj, np.dtype):
        hint = "store its name, str(dtype), instead"
    elif isinstance(obj, (set, frozenset)):
        hint = "store a list instead, e.g. sorted(x)"
    elif cls is complex:
        hint = "store numpy.complex128(z) or the pair (z.real, z.imag) instead"
    elif isinstance(obj, (dict, list, tuple, str, bytes, int, float)):
        base = next(b for b in (dict, list, tuple, str, bytes, int, float) if isinstance(obj, b))
        hint = f"a subclass of {base.__name__}; convert it to a plain {base.__name__}"
    else:
        hint = "convert it to one of the supported types, or save it separately"
    return f"an object of type '{name}' is not supported ({hint}); {_SUPPORTED}"


class _NullSink:
    """The sink of the validation pass: it checks everything and writes nothing."""

    def add(self, data):
        pass

    def write_buffer(self, view):
        pass

    def write_array(self, array, order):
        pass


class _Sink:
    """Write to a binary file, counting the bytes and computing their CRC-32 as they go."""

    def __init__(self, file):
        self._file = file
        self._pending = bytearray()
        self.size = 0
        self.crc = _Crc32()

    def add(self, data):
        self._pending += data
        if len(self._pending) >= _WRITE_BLOCK:
            self.flush()

    def flush(self):
        if self._pending:
            # A new bytearray rather than clearing: a file object may still hold the old one.
            data, self._pending = self._pending, bytearray()
            self._write(memoryview(data))

    def write_buffer(self, view):
        """Write a bytes-like object; a large one goes to the file without being copied."""
        if len(view) < _WRITE_BLOCK:
            self.add(view)
            return
        self.flush()
        for start in range(0, len(view), _IO_CHUNK):
            self._write(view[start:start + _IO_CHUNK])

    def write_array(self, array, order):
        """Write the bytes of ``array`` in ``order`` ("C" or "F").

        From the array's own memory when it is laid out that way, else in C-contiguous slabs of
        at most ``_IO_CHUNK`` bytes, so that a strided view is never copied whole.
        """
        in_order = array.flags.c_contiguous if order == "C" else array.flags.f_contiguous
        if in_order:
            # ravel in the memory's own order is a view; uint8 makes the memoryview format-free.
            self.write_buffer(memoryview(array.ravel(order=order).view(np.uint8)))
            return
        for slab in _c_order_slabs(array, _IO_CHUNK):
            self.write_buffer(memoryview(slab.ravel().view(np.uint8)))

    def _write(self, view):
        self.crc.update(view)
        self.size += len(view)
        _write_all(self._file, view)


def _write_all(file, view):
    while len(view):
        written = file.write(view)
        # A raw file may write less than asked (a signal, a nearly full disk): write the rest.
        # None means "all of it" for file-like objects that do not count.
        if written is None or written >= len(view):
            return
        view = view[written:]


def _c_order_slabs(array, limit):
    """Yield C-contiguous copies of consecutive parts of ``array``, of at most ``limit`` bytes
    unless a single element is larger."""
    if array.flags.c_contiguous:
        yield array
        return
    if array.size == 0:
        return
    rows = array.shape[0]
    row_bytes = array.nbytes // rows
    if row_bytes > limit and array.ndim > 1:
        for index in range(rows):
            yield from _c_order_slabs(array[index], limit)
        return
    step = max(1, limit // max(row_bytes, 1))
    for start in range(0, rows, step):
        yield np.ascontiguousarray(array[start:start + step])


class _Encoder:
    """Write ``obj`` as protocol 5 pickle opcodes to a sink.

    Run once with a :class:`_NullSink` to validate (nothing is written when an object cannot be
    stored), then with the real sink. The traversal is iterative, so nesting depth is limited only
    by memory: each container is a generator on an explicit stack that writes its own opcodes and
    yields ``(step, child)`` for the children.
    """

    def __init__(self, sink):
        self._sink = sink
        self._put = sink.add
        # Memo keys: id(obj) for containers and arrays (they stay alive in obj while it is
        # written), ("global", module, name) and ("dtype", str) for the shared constants.
        self._memo = {}
        self._active = set()  # ids of the containers being written: the way to find cycles

    def encode(self, obj):
        self._put(b"\x80\x05")
        frames = [iter([(None, obj)])]
        frame_ids = [None]
        steps = [None]
        while frames:
            entry = next(frames[-1], None)
            if entry is None:
                frames.pop()
                steps.pop()
                self._active.discard(frame_ids.pop())
                continue
            steps[-1], child = entry
            try:
                parts = self._emit(child)
            except _Unsupported as exc:
                where = _render_path(steps)
                raise exc.error_type(f"fastoptim.save cannot store {where}: {exc}") from None
            if parts is not None:
                frames.append(parts)
                frame_ids.append(id(child))
                steps.append(None)
                self._active.add(id(child))
        self._put(b".")

    # ---- memo -----------------------------------------------------------------------------------

    def _memoize(self, key):
        self._memo[key] = len(self._memo)
        self._put(b"\x94")

    def _put_get(self, index):
        self._put(b"h" + bytes((index,)) if index < 0x100 else b"j" + index.to_bytes(4, "little"))

    def _global(self, module, name):
        index = self._memo.get(("global", module, name))
        if index is not None:
            self._put_get(index)
            return
        self._put(_encode_str_small(module) + _encode_str_small(name) + b"\x93")
        self._memoize(("global", module, name))

    # ---- values ---------------------------------------------------------------------------------

    def _emit(self, obj):
        """Write an atomic value, or return the generator that writes a container."""
        cls = type(obj)
        if cls is str:
            data = obj.encode("utf-8", "surrogatepass")
            self._put_payload(_sized_header(len(data), b"\x8c", b"X", b"\x8d"), data)
        elif cls is int:
            self._put(_encode_int(obj))
        elif cls is float:
            self._put(b"G" + struct.pack(">d", obj))
        elif obj is None:
            self._put(b"N")
        elif cls is bool:
            self._put(b"\x88" if obj else b"\x89")
        elif cls is bytes:
            self._put_payload(_sized_header(len(obj), b"C", b"B", b"\x8e"), obj)
        elif cls is tuple and not obj:
            self._put(b")")
        elif cls in (dict, list, tuple, collections.OrderedDict, collections.Counter):
            if id(obj) in self._active:
                raise _Unsupported(
                    "it contains itself (a recursive structure); a checkpoint must be a tree, "
                    "though the same object may appear more than once",
                    ValueError,
                )
            index = self._memo.get(id(obj))
            if index is not None:
                self._put_get(index)
                return None
            if cls is dict:
                return self._dict_parts(obj)
            if cls is list:
                return self._list_parts(obj)
            if cls is tuple:
                return self._tuple_parts(obj)
            if cls is collections.OrderedDict:
                return self._ordered_dict_parts(obj)
            return self._counter_parts(obj)
        elif _array_class(obj):
            index = self._memo.get(id(obj))
            if index is not None:
                self._put_get(index)
            else:
                self._emit_array(obj, memo_key=id(obj))
        elif isinstance(obj, np.generic) and cls.__module__ == "numpy":
            self._emit_scalar(obj)
        else:
            raise _Unsupported(_describe_unsupported(obj))
        return None

    def _put_payload(self, header, data):
        self._put(header)
        self._sink.write_buffer(memoryview(data))

    def _emit_shape(self, shape):
        if len(shape) > 3:
            self._put(b"(")
        self._put(b"".join(_encode_int(dim) for dim in shape))
        self._put(_TUPLE_OPCODES.get(len(shape), b"t"))

    def _emit_dtype(self, dtype):
        key = ("dtype", dtype.str)
        index = self._memo.get(key)
        if index is not None:
            self._put_get(index)
            return
        self._global("numpy", "dtype")
        self._put(_encode_str_small(dtype.str) + b"\x85R")
        self._memoize(key)

    def _emit_array(self, array, memo_key):
        # Subclasses (Parameter, memmap) are written as the plain ndarray they are a view of.
        array = np.asarray(array)
        _check_dtype(array.dtype, "a NumPy array")
        order = "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"
        self._global("numpy", "ndarray")
        self._put(b"(")
        self._emit_shape(array.shape)
        self._emit_dtype(array.dtype)
        self._put(b"\x96" + array.nbytes.to_bytes(8, "little"))
        self._sink.write_array(array, order)
        self._put(b"K\x00N\x8c\x01" + order.encode("ascii") + b"tR")
        if memo_key is not None:
            self._memoize(memo_key)

    def _emit_scalar(self, scalar):
        _check_dtype(scalar.dtype, "a NumPy scalar")
        name = _SCALAR_NAME[np.dtype(scalar.dtype.str).type]
        self._global("numpy", name)
        # A 0-d array of the same dtype carries the exact bits (NaN payloads included); it is
        # a temporary, so it must not be memoized: its id could be reused by the next one.
        self._emit_array(np.asarray(scalar), memo_key=None)
        self._put(b"\x85R")

    # ---- containers (generators: opcodes around the yielded children) ----------------------------

    def _list_parts(self, items):
        self._put(b"]")
        self._memoize(id(items))
        for start in range(0, len(items), _BATCH):
            self._put(b"(")
            for index, item in enumerate(items[start:start + _BATCH], start):
                yield ("item", index), item
            self._put(b"e")

    def _tuple_parts(self, items):
        if len(items) > 3:
            self._put(b"(")
        for index, item in enumerate(items):
            yield ("item", index), item
        self._put(_TUPLE_OPCODES.get(len(items), b"t"))
        self._memoize(id(items))

    def _dict_items(self, mapping):
        items = iter(mapping.items())
        while True:
            batch = [pair for _, pair in zip(range(_BATCH), items)]
            if not batch:
                return
            self._put(b"(")
            for key, value in batch:
                yield ("key", key), key
                yield ("item", key), value
            self._put(b"u")

    def _dict_parts(self, mapping):
        self._put(b"}")
        self._memoize(id(mapping))
        yield from self._dict_items(mapping)

    def _ordered_dict_parts(self, mapping):
        self._global("collections", "OrderedDict")
        self._put(b")R")
        self._memoize(id(mapping))
        yield from self._dict_items(mapping)

    def _counter_parts(self, counter):
        # Counter(dict) is how Counter pickles itself; the inner dict is not memoized (it is a
        # temporary in the reader too).
        self._global("collections", "Counter")
        self._put(b"}")
        yield from self._dict_items(counter)
        self._put(b"\x85R")
        self._memoize(id(counter))


def _encode_str_small(text):
    data = text.encode("utf-8")
    return b"\x8c" + bytes((len(data),)) + data


def _short_repr(obj):
    text = repr(obj)
    return text if len(text) <= 60 else text[:57] + "..."


def _render_path(steps):
    text = "obj"
    for step in steps:
        if step is None:
            continue
        kind, key = step
        if kind == "key":
            text = f"the key {_short_repr(key)} of {text}"
        else:
            text += f"[{_short_repr(key)}]"
    return text


def _footer(size, crc):
    """The footer that follows ``size`` bytes of pickle whose CRC-32 is ``crc``."""
    head = struct.pack("<QIHHI", size, crc, FORMAT_VERSION, _CHECKSUM_CRC32, 0)
    return head + struct.pack("<I", zlib.crc32(head)) + MAGIC


def _write_checkpoint(obj, file):
    """Write the pickle and the footer to ``file``; ``obj`` has been validated already."""
    sink = _Sink(file)
    try:
        _Encoder(sink).encode(obj)
        sink.flush()
        crc = sink.crc.value()
    finally:
        sink.crc.close()
    # Written outside the sink: the footer is not part of the data its CRC covers.
    _write_all(file, memoryview(_footer(sink.size, crc)))


def save(obj, f):
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
        permission bits are kept. A file object is written in place at its current position,
        without fsync: not atomic.

    Raises
    ------
    TypeError
        If ``obj`` contains an object of an unsupported type (a lambda, a custom class, an object
        array, ...). The message names where it is, e.g. ``obj['optimizer']['state'][0]['foo']``.
        Nothing is written.
    ValueError
        If ``obj`` contains itself. Nothing is written.
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
    _Encoder(_NullSink()).encode(obj)
    if is_path:
        _save_to_path(obj, os.fsdecode(os.fspath(f)))
        return
    _write_checkpoint(obj, f)
    flush = getattr(f, "flush", None)
    if callable(flush):
        flush()


def _raise_os_error(exc, path, doing):
    """Raise ``exc`` again as the same OSError (errno and subclass), naming the checkpoint's
    path and what was going on."""
    if exc.errno is None:
        raise exc
    message = f"{exc.strerror or os.strerror(exc.errno)} ({doing})"
    try:
        new = type(exc)(exc.errno, message, path)
    except Exception:  # an OSError subclass with a different constructor
        new = OSError(exc.errno, message, path)
    raise new from exc


def _remove_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        # The temporary file is already gone, or the directory forbids it: the original error
        # is the one to report, and the file's name marks it as safe to delete.
        pass


def _save_to_path(obj, path):
    # open() would follow a symbolic link and write its target; the atomic save replaces the
    # target too (renaming onto the link would replace the link by a regular file).
    target = os.path.realpath(path) if os.path.islink(path) else path
    directory, name = os.path.split(os.path.abspath(target))
    if not name:
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    mode = None
    try:
        info = os.stat(target)
    except FileNotFoundError:
        pass
    except OSError as exc:
        _raise_os_error(exc, path, "checking the existing checkpoint")
    else:
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        # Keep the permission bits of the checkpoint being replaced, as writing it in place
        # would; set-id and sticky bits are not carried over.
        mode = stat.S_IMODE(info.st_mode) & 0o777

    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        # The name stays under NAME_MAX (255) however long the checkpoint's name is.
        temp = os.path.join(directory, f".{name[:200]}{_TEMP_MARKER}{secrets.token_hex(4)}")
        try:
            # 0o666: the new file gets the umask's permissions, as open(path, "wb") would.
            fd = os.open(temp, flags, 0o666)
            break
        except FileExistsError:
            continue
        except OSError as exc:
            _raise_os_error(
                exc, path, f"creating a temporary file in {directory!r} for the atomic save"
            )

    doing = "writing the temporary file"
    try:
        try:
            file = io.FileIO(fd, "wb", closefd=True)
        except BaseException:
            os.close(fd)
            raise
        with file:
            if mode is not None:
                doing = "setting the permissions of the temporary file"
                os.fchmod(fd, mode)
            doing = "writing the temporary file"
            _write_checkpoint(obj, file)
            doing = "flushing the temporary file to disk (fsync)"
            os.fsync(fd)
            doing = "closing the temporary file"
        doing = "renaming the temporary file onto the checkpoint"
        os.replace(temp, target)
    except OSError as exc:
        _remove_quietly(temp)
        _raise_os_error(exc, path, doing)
    except BaseException:
        _remove_quietly(temp)
        raise
    _fsync_directory(directory, path)


def _fsync_directory(directory, path):
    """Make the rename durable: without this a power cut may bring back the old directory entry."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(directory, flags)
    except OSError:
        # A directory that cannot be opened for reading (mode -wx) or a platform without
        # directory file descriptors: the new checkpoint is in place, durability is up to the OS.
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EACCES):
            _raise_os_error(
                exc, path, "fsync of the directory after the rename; the new checkpoint is in "
                "place but may not survive a power failure"
            )
    finally:
        os.close(fd)


# ============================================================================================
# Reading
# ============================================================================================


class _PayloadReader:
    """Read the pickle part of a checkpoint, computing the CRC-32 of every byte it reads.

    Small reads are served from a buffer of ``_READ_BLOCK`` bytes; array data goes from the file
    straight into the array's memory. Nothing past the pickle is ever read, and no read asks for
    more than what is left of it, so a length field claiming 2**60 bytes fails before anything is
    allocated.
    """

    def __init__(self, file, length):
        self._file = file
        self._length = length
        self._unread = length  # pickle bytes not yet read from the file
        self._buffer = b""
        self._pos = 0
        self._crc = _Crc32()

    def tell(self):
        return self._length - self._unread - (len(self._buffer) - self._pos)

    def remaining(self):
        return self._unread + len(self._buffer) - self._pos

    def _check(self, size):
        if size > self.remaining():
            raise MalformedContent(
                f"{size} bytes are needed at byte {self.tell()}, but the data ends at byte "
                f"{self._length}"
            )

    def _fetch(self, size):
        data = _read_exact(self._file, size)
        if len(data) != size:
            # The footer said how long the file is; fewer bytes now means it changed under us.
            raise MalformedContent("the file ended early: it was truncated while being read")
        self._unread -= size
        self._crc.update(data)
        return data

    def _fetch_into(self, view):
        """Fill ``view`` from the file; return the checksum future of its last piece."""
        readinto = getattr(self._file, "readinto", None)
        future = None
        for start in range(0, len(view), _READ_PIECE):
            piece = view[start:start + _READ_PIECE]
            filled = 0
            while filled < len(piece):
                if readinto is not None:
                    count = readinto(piece[filled:])
                else:
                    data = self._file.read(len(piece) - filled)
                    count = len(data) if data is not None else 0
                    piece[filled:filled + count] = data
                if not count:
                    raise MalformedContent(
                        "the file ended early: it was truncated while being read"
                    )
                filled += count
            self._unread -= len(piece)
            future = self._crc.update(piece)
        return future

    def read(self, size):
        end = self._pos + size
        if end <= len(self._buffer):
            data = self._buffer[self._pos:end]
            self._pos = end
            return data
        self._check(size)
        have = self._buffer[self._pos:]
        need = size - len(have)
        if need >= _READ_BLOCK:
            self._buffer, self._pos = b"", 0
            return have + self._fetch(need)
        self._buffer = have + self._fetch(min(max(need, _READ_BLOCK), self._unread))
        self._pos = size
        return self._buffer[:size]

    def readline(self):
        end = self._buffer.find(b"\n", self._pos)
        if end >= 0:
            line = self._buffer[self._pos:end]
            self._pos = end + 1
            return line
        parts = [self._buffer[self._pos:]]
        self._buffer, self._pos = b"", 0
        while self._unread:
            chunk = self._fetch(min(_READ_BLOCK, self._unread))
            end = chunk.find(b"\n")
            if end >= 0:
                parts.append(chunk[:end])
                self._buffer, self._pos = chunk, end + 1
                return b"".join(parts)
            parts.append(chunk)
        raise MalformedContent("a text opcode's line has no end")

    def read_array(self, size):
        self._check(size)
        out = np.empty(size, dtype=np.uint8)
        view = memoryview(out)
        have = min(size, len(self._buffer) - self._pos)
        view[:have] = self._buffer[self._pos:self._pos + have]
        self._pos += have
        if have < size:
            self._buffer, self._pos = b"", 0
            self._fetch_into(view[have:])
        return out

    def finish(self):
        """Read (and checksum) whatever is left of the pickle; return the CRC of all of it."""
        # Two scratch buffers in turn: one is summed while the other is being filled.
        size = min(_IO_CHUNK, self._unread)
        scratch = [memoryview(bytearray(size)), memoryview(bytearray(size))]
        summing = [None, None]
        turn = 0
        while self._unread:
            if summing[turn] is not None:
                summing[turn].result()  # the buffer's previous contents must be summed first
            summing[turn] = self._fetch_into(scratch[turn][:min(size, self._unread)])
            turn ^= 1
        self._buffer, self._pos = b"", 0
        return self._crc.value()

    def close(self):
        self._crc.close()


def _file_label(file):
    name = getattr(file, "name", None)
    if isinstance(name, str):
        return name
    if isinstance(name, bytes):
        return os.fsdecode(name)
    return repr(file)


def _not_a_checkpoint(label, head, detail):
    if head.startswith(b"PK\x03\x04"):
        hint = (
            "; it looks like a torch.save zip archive: load it with torch.load(path, "
            "weights_only=True) and convert optimizer state with fastoptim.interop.from_torch"
        )
    elif head[:1] == b"\x80":
        hint = (
            "; it starts like a pickle, so it may be a fastoptim checkpoint that was cut short, "
            "or a file from pickle.dump, which fastoptim.load does not read because it carries no "
            "checksum (if you trust its source, use pickle.load)"
        )
    else:
        hint = ""
    return CorruptCheckpointError(
        f"{label}: not a fastoptim checkpoint, or truncated: {detail}{hint}", label
    )


def _read_exact(file, size):
    """Read ``size`` bytes, or fewer only at the end of the file."""
    data = file.read(size)
    if data is None:
        data = b""
    if len(data) == size:
        return data  # the usual case, without a copy
    parts = [data]
    size -= len(data)
    while size:
        data = file.read(size)
        if not data:
            break
        parts.append(data)
        size -= len(data)
    return b"".join(parts)


def _open_payload(file, label):
    """Check the footer; return (source, start, length, crc) with ``source`` at ``start``."""
    try:
        start = file.tell()
        end = file.seek(0, os.SEEK_END)
        file.seek(start)
    except (AttributeError, OSError):
        # A pipe or socket: the footer is at the end, which only reading everything can find.
        data = file.read()
        file, start, end = io.BytesIO(data), 0, len(data)
    size = end - start
    head = _read_exact(file, 4)
    if size < FOOTER_SIZE:
        raise _not_a_checkpoint(
            label, head, f"it has {size} bytes, fewer than the {FOOTER_SIZE}-byte footer"
        )
    file.seek(end - FOOTER_SIZE)
    footer = _read_exact(file, FOOTER_SIZE)
    if len(footer) != FOOTER_SIZE:
        raise CorruptCheckpointError(f"{label}: the file was truncated while being read", label)
    length, crc, version, checksum_kind, reserved, footer_crc, magic = _FOOTER.unpack(footer)
    if magic != MAGIC:
        raise _not_a_checkpoint(label, head, "it does not end with the fastoptim footer")
    if zlib.crc32(footer[:_FOOTER_CHECKED]) != footer_crc:
        raise CorruptCheckpointError(
            f"{label}: checkpoint is corrupt: its footer is damaged (footer checksum mismatch)",
            label,
        )
    if version != FORMAT_VERSION or checksum_kind != _CHECKSUM_CRC32 or reserved:
        raise CorruptCheckpointError(
            f"{label}: checkpoint format version {version} (checksum kind {checksum_kind}) is "
            f"not supported by this fastoptim, which reads version {FORMAT_VERSION}; it was "
            "written by a newer fastoptim: upgrade to load it",
            label,
        )
    if length != size - FOOTER_SIZE:
        raise CorruptCheckpointError(
            f"{label}: checkpoint is corrupt or truncated: the footer records {length} bytes of "
            f"data, but {size - FOOTER_SIZE} bytes precede the footer",
            label,
        )
    file.seek(start)
    return file, start, length, crc


def _checksum_error(label, stored, computed):
    return CorruptCheckpointError(
        f"{label}: checkpoint is corrupt: its data does not match the CRC-32 in its footer "
        f"(stored 0x{stored:08x}, computed 0x{computed:08x}); the file was damaged after it "
        "was written",
        label,
    )


def _load_safe(file, label, length, stored_crc):
    reader = _PayloadReader(file, length)
    try:
        return _interpret(reader, label, length, stored_crc)
    finally:
        reader.close()


def _interpret(reader, label, length, stored_crc):
    result = problem = None
    try:
        result = SafeUnpickler(reader).load()
        if reader.tell() != length:
            raise MalformedContent(
                f"the pickle ends at byte {reader.tell()}, but the data runs to byte {length}"
            )
    except OSError:
        raise  # a failing disk is not a malformed file
    except Exception as exc:  # noqa: BLE001 - every failure on bad bytes is reported below
        problem = exc
        result = None
    # The checksum decides what a failure means: a mismatch is damage, whatever the parser
    # tripped over first; a match means the file was written this way.
    try:
        computed = reader.finish()
    except MalformedContent as exc:
        raise CorruptCheckpointError(f"{label}: checkpoint is corrupt: {exc}", label) from problem
    if computed != stored_crc:
        raise _checksum_error(label, stored_crc, computed) from problem
    if problem is None:
        return result
    if isinstance(problem, UnsafeContent):
        raise UnsafeCheckpointError(
            f"{label}: {problem}. fastoptim.load(weights_only=True) refuses it without running "
            "anything; if you trust the file's source, load it with weights_only=False",
            label,
        ) from None
    if isinstance(problem, MemoryError):
        raise problem  # the file is intact and genuinely needs more memory than there is
    raise CorruptCheckpointError(
        f"{label}: checkpoint is malformed (its checksum is correct, so it was written this "
        f"way): {problem}",
        label,
    ) from problem


def _load_unsafe(file, label, length, stored_crc):
    start = file.tell()
    reader = _PayloadReader(file, length)
    try:
        computed = reader.finish()
    except MalformedContent as exc:
        raise CorruptCheckpointError(f"{label}: checkpoint is corrupt: {exc}", label) from None
    finally:
        reader.close()
    if computed != stored_crc:
        raise _checksum_error(label, stored_crc, computed)
    file.seek(start)
    try:
        return pickle.Unpickler(file).load()
    except (pickle.UnpicklingError, EOFError) as exc:
        raise CorruptCheckpointError(
            f"{label}: checkpoint is malformed (its checksum is correct): {exc}", label
        ) from exc


def load(f, *, weights_only=True):
    """Load a checkpoint written by :func:`save`.

    Parameters
    ----------
    f : str, bytes, os.PathLike or binary file object
        A path, or a readable binary file object positioned at the start of the checkpoint; the
        checkpoint runs to the end of the file. A file object that cannot seek (a pipe) is read
        into memory first.
    weights_only : bool, default True
        With True (the default), the file is read by fastoptim's own restricted reader: only
        the types :func:`save` writes come back (arrays writeable, F-contiguous arrays as
        F-contiguous, all others C-contiguous), nothing named in the file is imported or
        called, and every size is checked against the file before memory is allocated.
        ``weights_only=False`` is the explicit unsafe path: after the checksum has been verified,
        the data is passed to :func:`pickle.load`, which runs whatever code the file names. Use
        it only for files from a source you trust, never for files downloaded or received.

    Returns
    -------
    object
        The saved object.

    Raises
    ------
    CorruptCheckpointError
        If the file is truncated, has a flipped bit anywhere, is not a fastoptim checkpoint
        (a plain pickle or a torch.save file) or is malformed. Also a :class:`ValueError`.
    UnsafeCheckpointError
        With ``weights_only=True``, if the (undamaged) file names a global, opcode or type that is
        not allowed, such as ``os.system``. Also a :class:`pickle.UnpicklingError`.
    OSError
        If the file cannot be opened or read.
    """
    if type(weights_only) is not bool:
        raise TypeError(f"weights_only must be True or False, got {weights_only!r}")
    loader = _load_safe if weights_only else _load_unsafe
    if isinstance(f, (str, bytes, os.PathLike)):
        label = os.fsdecode(os.fspath(f))
        # Unbuffered: _PayloadReader does its own buffering and reads arrays straight into place.
        with open(label, "rb", buffering=0) as file:
            source, _, length, crc = _open_payload(file, label)
            if not weights_only:
                # pickle reads opcode by opcode; give it a buffer (the with block closes the file).
                source = io.BufferedReader(source, _IO_CHUNK)
            return loader(source, label, length, crc)
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
    label = _file_label(f)
    source, start, length, crc = _open_payload(f, label)
    result = loader(source, label, length, crc)
    # Leave the file after the checkpoint, footer included, as reading it whole would.
    source.seek(start + length + FOOTER_SIZE)
    return result
