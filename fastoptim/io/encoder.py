"""The checkpoint encoder: Python objects to protocol 5 pickle opcodes, written as they are made.

The pickle uses only public, long-stable NumPy names so that any NumPy >= 1.25 unpickles it,
including NumPy 1.x, which cannot import the ``numpy._core`` paths that NumPy 2 writes itself:

* an array is ``numpy.ndarray(shape, numpy.dtype("<f4"), <bytearray>, 0, None, "C")``; the data is
  one BYTEARRAY8 opcode, streamed from the array's memory and, by :func:`fastoptim.load`, read
  straight into the memory of the array that is returned. F-contiguous arrays keep order "F";
  every other array is written in C order.
* a NumPy scalar is ``numpy.float32(<0-d array>)``, which is exact to the bit.
* OrderedDict and Counter are rebuilt with ``collections.OrderedDict`` / ``collections.Counter``;
  everything else is a plain pickle opcode.

Containers and arrays are memoized the way pickle does it, so an object that appears twice in the
checkpoint is written once and comes back as one object. :mod:`fastoptim.io.torchfile` derives
torch's protocol 2 encoder from the same class.
"""

import collections
import struct
import sys

import numpy as np

from fastoptim.io.format import (
    _BATCH, _IO_CHUNK, _WRITE_BLOCK, _Crc32, footer, header,
)
from fastoptim.io.unpickler import SCALAR_TYPE_NAMES

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


def _is_bfloat16(dtype):
    """ml_dtypes.bfloat16 (a NumPy user dtype of kind "V"), written as numpy.dtype("bfloat16")."""
    return dtype.kind == "V" and dtype.names is None and dtype.itemsize == 2 and dtype.name == "bfloat16"


def _check_dtype(dtype, what):
    if (dtype.kind not in _ALLOWED_KINDS and not _is_bfloat16(dtype)) or dtype.fields is not None:
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


class _CountingSink:
    """The sink of the validation pass: it checks everything, writes nothing, counts the bytes."""

    def __init__(self):
        self.size = 0

    def add(self, data):
        self.size += len(data)

    def write_buffer(self, view):
        self.size += len(view)

    def write_array(self, array, order):
        self.size += array.nbytes


class _Encoder:
    """Write ``obj`` as protocol 5 pickle opcodes to a sink.

    Run once with a :class:`_CountingSink` to validate and measure (nothing is written when an
    object cannot be stored), then with the real sink. The traversal is iterative, so nesting
    depth is limited only by memory: each container is a generator on an explicit stack that
    writes its own opcodes and yields ``(step, child)`` for the children.
    """

    def __init__(self, sink):
        self._sink = sink
        self._put = sink.add
        # Memo keys: id(obj) for containers and arrays (they stay alive in obj while it is
        # written), ("global", module, name) and ("dtype", str) for the shared constants.
        self._memo = {}
        self._active = set()  # ids of the containers being written: the way to find cycles

    def encode(self, obj, size=0):
        """Write the pickle of ``obj``, whose header declares ``size`` bytes (0 when measuring)."""
        self._put(self._header(size))
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

    def _header(self, size):
        return header(size)

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
            self._emit_str(obj)
        elif cls is int:
            self._emit_int(obj)
        elif cls is float:
            self._put(b"G" + struct.pack(">d", obj))
        elif obj is None:
            self._put(b"N")
        elif cls is bool:
            self._put(b"\x88" if obj else b"\x89")
        elif cls is bytes:
            self._emit_bytes(obj)
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

    def _emit_str(self, text):
        data = text.encode("utf-8", "surrogatepass")
        self._put_payload(_sized_header(len(data), b"\x8c", b"X", b"\x8d"), data)

    def _emit_int(self, value):
        self._put(_encode_int(value))

    def _emit_bytes(self, data):
        self._put_payload(_sized_header(len(data), b"C", b"B", b"\x8e"), data)

    def _put_payload(self, header, data):
        self._put(header)
        self._sink.write_buffer(memoryview(data))

    def _emit_shape(self, shape):
        if len(shape) > 3:
            self._put(b"(")
        self._put(b"".join(_encode_int(dim) for dim in shape))
        self._put(_TUPLE_OPCODES.get(len(shape), b"t"))

    def _emit_dtype(self, dtype):
        # bfloat16 (ml_dtypes; low-precision optimizer state) by its registered name
        spec = "bfloat16" if _is_bfloat16(dtype) else dtype.str
        key = ("dtype", spec)
        index = self._memo.get(key)
        if index is not None:
            self._put_get(index)
            return
        self._global("numpy", "dtype")
        self._put(_encode_str_small(spec) + b"\x85R")
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


def validate(obj):
    """Check that ``obj`` can be stored (TypeError/ValueError naming where it is, if not) and
    return the size of its pickle, header included."""
    sink = _CountingSink()
    _Encoder(sink).encode(obj)
    return sink.size


def write_checkpoint(obj, file, size):
    """Write the pickle and the footer to ``file``; ``obj`` has been validated already."""
    sink = _Sink(file)
    try:
        _Encoder(sink).encode(obj, size)
        sink.flush()
        crc = sink.crc.value()
    finally:
        sink.crc.close()
    # Written outside the sink: the footer is not part of the data its CRC covers.
    if sink.size != size:
        raise RuntimeError(
            f"the object changed while it was being saved ({size} bytes measured, {sink.size} "
            "written); the file is incomplete"
        )
    _write_all(file, memoryview(footer(sink.size, crc)))
