"""A restricted pickle interpreter: the reader behind ``fastoptim.load`` (``weights_only=True``).

``pickle.Unpickler`` runs whatever callables a file names, so no allow-list placed in front of it
can bound what a crafted file does with the callables it is allowed (``numpy.dtype`` with odd
arguments, ``ndarray`` reconstruction with a header that claims 2**60 bytes, ...). This module
interprets the opcodes itself instead. It never imports a module, never looks a name up in one
and never calls anything the file names: every global the file may mention is an entry in a
fixed table whose handler checks the arguments and builds the object with known-safe NumPy and
``collections`` calls. Every byte count is checked against the bytes left in the file before
anything is allocated.

It understands the opcodes that :func:`fastoptim.save` writes and those that ``pickle.dump``
(protocols 0 to 5, under NumPy 1.x and 2.x) writes for the allowed types: dict, OrderedDict,
Counter, list, tuple, str, bytes, int, float, bool, None, and NumPy arrays and scalars of numeric
dtypes. Everything else is refused with :class:`UnsafeContent` (a global, opcode or type that is
not allowed) or :class:`MalformedContent` (bytes that are not a well-formed pickle of those
types); :mod:`fastoptim.io.reader` turns both into its public exceptions, after it has checked
the file's checksum. :mod:`fastoptim.io.torchfile` runs the same interpreter over torch's
``data.pkl`` with its own table of globals (torch's ``weights_only`` allow-list) and a handler for
persistent ids (torch's storages).

Values that a pickle needs while it builds an object but that must never reach the caller (the
class ``numpy.ndarray``, a dtype, a raw data buffer, an array waiting for its ``BUILD``) live on
the stack as ``_Marker`` objects. Containers and the final result only ever receive plain values;
a marker that would land in one is refused, so no other type can leak out.
"""

import _compat_pickle
import collections
import pickletools
import re
import struct

import numpy as np

from fastoptim._bfloat16 import bfloat16

__all__ = [
    "MalformedContent", "UnsafeContent", "SafeUnpickler", "ALLOWED_GLOBALS", "SCALAR_TYPE_NAMES",
    "MAX_PROTOCOL",
]

MAX_PROTOCOL = 5


class UnsafeContent(Exception):
    """The pickle is well formed but asks for a global, opcode or type that is not allowed."""


class MalformedContent(Exception):
    """The bytes are not a well-formed pickle of the allowed types."""


# --------------------------------------------------------------------------------------------
# Stack-only values
# --------------------------------------------------------------------------------------------


class _Marker:
    """Base class of the values that may sit on the stack but never in the result.

    A subclass names its attributes in ``__slots__`` (the constructor's arguments, in order) and
    says what it is in messages with ``what``, or with ``_what``, a template over its attributes.
    """

    __slots__ = ()
    _what = "an internal value"

    def __init__(self, *values):
        for name, value in zip(self.__slots__, values):
            setattr(self, name, value)

    @property
    def what(self):
        return self._what.format(self=self)


class _GlobalRef(_Marker):
    """A global from the allow-list; ``reduce`` builds the object from REDUCE's arguments."""

    __slots__ = ("qualname", "reduce")
    _what = "the global '{self.qualname}'"


class _DtypeRef(_Marker):
    """A numeric NumPy dtype; ``pending`` while NumPy's own ``dtype(...)`` waits for its BUILD."""

    __slots__ = ("dtype", "pending")
    what = "a numpy.dtype object"

    def __init__(self, dtype, pending=False):
        self.dtype = dtype
        self.pending = pending


class _BufferRef(_Marker):
    """The payload of a BYTEARRAY8 opcode, read straight into a uint8 array of its own."""

    __slots__ = ("data", "used")
    what = "a bytearray (only allowed as the data of a NumPy array)"

    def __init__(self, data):
        self.data = data
        self.used = False


class _PendingArray(_Marker):
    """The empty array ``numpy...._reconstruct`` returns; its BUILD supplies shape, dtype, data."""

    __slots__ = ("array",)
    what = "a NumPy array whose data never arrived (a _reconstruct without BUILD)"

    def __init__(self):
        self.array = None


class _ArgTuple(_Marker):
    """A tuple holding markers: only usable as the arguments of REDUCE or the state of BUILD."""

    __slots__ = ("items",)
    what = "a tuple holding a NumPy dtype, class or raw buffer"

    def __init__(self, items):
        self.items = items


def _value(obj):
    """Return ``obj`` as a value that may go into a container or the result, or refuse it."""
    if isinstance(obj, _Marker):
        if type(obj) is _PendingArray and obj.array is not None:
            return obj.array
        if type(obj) is _PendingArray:
            raise MalformedContent(f"{obj.what} is used as a value")
        raise UnsafeContent(f"{obj.what} is not an allowed value in a checkpoint")
    return obj


def _items(args, qualname, min_len, max_len):
    """The items of REDUCE's argument tuple, checked for count."""
    if type(args) is _ArgTuple:
        items = args.items
    elif type(args) is tuple:
        items = args
    else:
        raise MalformedContent(f"the arguments of '{qualname}' are not a tuple")
    if not min_len <= len(items) <= max_len:
        expected = str(min_len) if min_len == max_len else f"{min_len} to {max_len}"
        raise MalformedContent(
            f"'{qualname}' was given {len(items)} arguments, expected {expected}"
        )
    return items


# --------------------------------------------------------------------------------------------
# NumPy types: dtypes, arrays and scalars
# --------------------------------------------------------------------------------------------

# Numeric dtypes only, as written by ``dtype.str`` ("<f4", "|b1") or by NumPy's own pickles
# ("f4", "b1", with the byte order set by a later BUILD). Object ("O8"), string, void,
# structured, datetime and user dtypes are refused: an object array can hold anything.
_DTYPE_RE = re.compile(r"[<>|=]?(?:b1|[iu][1248]|f(?:2|4|8|12|16)|c(?:8|16|24|32))")

# The scalar types a checkpoint may hold, by their NumPy attribute name. fastoptim writes these
# names; they exist under the same name in NumPy 1.25+ and 2.x. Platform aliases (``longlong``)
# are written under the name of the canonical type of their dtype.
SCALAR_TYPE_NAMES = (
    "bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "longdouble", "complex64", "complex128", "clongdouble",
)

# NumPy refuses more dimensions than this (32 before NumPy 2.0); checked before any allocation.
_MAX_NDIM = 64


def _parse_dtype(spec):
    if type(spec) is not str:
        raise MalformedContent(f"numpy.dtype was given a {type(spec).__name__}, not a str")
    if spec == "bfloat16":
        # low-precision optimizer state (docs/low_precision.rst): ml_dtypes' bfloat16 by name
        try:
            return bfloat16("a checkpoint that holds bfloat16 arrays")
        except ImportError as e:
            raise MalformedContent(str(e)) from None
    if not _DTYPE_RE.fullmatch(spec):
        raise UnsafeContent(
            f"dtype {spec!r} is not allowed: only numeric dtypes (bool, signed and unsigned "
            "integers, floats, complex) can be loaded; object arrays are refused because they "
            "can hold arbitrary Python objects"
        )
    try:
        dtype = np.dtype(spec)
    except TypeError as exc:
        raise MalformedContent(f"dtype {spec!r} does not exist on this platform") from exc
    return dtype


def _reduce_dtype(args):
    items = _items(args, "numpy.dtype", 1, 3)
    if len(items) == 1:
        # fastoptim's form: numpy.dtype("<f4"), byte order included.
        return _DtypeRef(_parse_dtype(items[0]))
    if len(items) != 3 or items[1] is not False or items[2] is not True:
        raise MalformedContent(
            "numpy.dtype must be called as dtype(str) or dtype(str, False, True)"
        )
    # NumPy's own form: dtype("f4", False, True) followed by BUILD with the byte order.
    if type(items[0]) is str and items[0][:1] in "<>|=":
        raise MalformedContent(f"numpy.dtype({items[0]!r}, False, True) has a byte order")
    return _DtypeRef(_parse_dtype(items[0]), pending=True)


def _build_dtype(ref, state):
    """Apply the state tuple of NumPy's ``dtype.__reduce__`` to a pending dtype."""
    if not ref.pending:
        raise MalformedContent("BUILD applied twice to a numpy.dtype")
    if type(state) is not tuple or len(state) != 8 or state[0] != 3 or type(state[0]) is not int:
        raise UnsafeContent(
            "a numpy.dtype state other than version 3 of a plain numeric dtype (no fields, "
            "subarray or metadata) is not allowed"
        )
    _, byteorder, subarray, names, fields, elsize, alignment, flags = state
    if (subarray, names, fields) != (None, None, None) or elsize != -1 or alignment != -1:
        raise UnsafeContent("structured, subarray and flexible dtypes are not allowed")
    if byteorder not in ("<", ">", "|", "=") or flags != ref.dtype.flags or type(flags) is not int:
        raise MalformedContent(f"invalid numpy.dtype state {state!r}")
    if byteorder in "<>":
        ref.dtype = ref.dtype.newbyteorder(byteorder)
    ref.pending = False


def _dtype_arg(obj, qualname):
    if type(obj) is not _DtypeRef:
        raise MalformedContent(f"'{qualname}' needs a numpy.dtype, got {_describe(obj)}")
    return obj.dtype


def _shape_arg(obj, qualname):
    if type(obj) is not tuple or len(obj) > _MAX_NDIM:
        raise MalformedContent(f"'{qualname}' needs a shape tuple of at most {_MAX_NDIM} ints")
    for dim in obj:
        if type(dim) is not int or not 0 <= dim < 2**63:
            raise MalformedContent(f"'{qualname}' got an invalid shape {obj!r}")
    return obj


def _nbytes(shape, dtype):
    count = 1
    for dim in shape:
        count *= dim  # Python ints: a product that overflows int64 is caught by the caller
    return count * dtype.itemsize


def _array_from_buffer(buffer, dtype, shape, order, qualname):
    """Wrap a data buffer as an array of ``shape``, without copying what BYTEARRAY8 read."""
    if order not in ("C", "F"):
        raise MalformedContent(f"'{qualname}' got order {order!r}, expected 'C' or 'F'")
    if type(buffer) is _BufferRef:
        if buffer.used:
            raise MalformedContent("one data buffer is used by two arrays")
        buffer.used = True
        data = buffer.data
    elif type(buffer) is bytes:
        # pickle.dump's readonly in-band buffers arrive as bytes; the result must be writeable.
        data = np.frombuffer(buffer, dtype=np.uint8).copy()
    else:
        raise MalformedContent(f"'{qualname}' needs a data buffer, got {_describe(buffer)}")
    expected = _nbytes(shape, dtype)
    if data.nbytes != expected:
        raise MalformedContent(
            f"'{qualname}' declares shape {shape} of dtype {dtype.str} ({expected} bytes) but "
            f"carries {data.nbytes} bytes"
        )
    return data.view(dtype).reshape(shape, order=order)


def _reduce_ndarray(args):
    # fastoptim's form: numpy.ndarray(shape, dtype, buffer, 0, None, order).
    items = _items(args, "numpy.ndarray", 3, 6)
    shape = _shape_arg(items[0], "numpy.ndarray")
    dtype = _dtype_arg(items[1], "numpy.ndarray")
    offset = items[3] if len(items) > 3 else 0
    strides = items[4] if len(items) > 4 else None
    order = items[5] if len(items) > 5 else "C"
    if type(offset) is not int or offset != 0 or strides is not None:
        raise MalformedContent("numpy.ndarray with an offset or strides is not supported")
    return _array_from_buffer(items[2], dtype, shape, order, "numpy.ndarray")


def _reduce_frombuffer(args):
    # NumPy's protocol 5 form: numpy._core.numeric._frombuffer(buffer, dtype, shape, order).
    items = _items(args, "_frombuffer", 4, 4)
    dtype = _dtype_arg(items[1], "_frombuffer")
    shape = _shape_arg(items[2], "_frombuffer")
    return _array_from_buffer(items[0], dtype, shape, items[3], "_frombuffer")


def _reduce_reconstruct(args):
    # NumPy's protocol 2-4 form: _reconstruct(ndarray, (0,), b"b") and then BUILD(state).
    items = _items(args, "_reconstruct", 3, 3)
    cls = items[0]
    if type(cls) is not _GlobalRef or cls.reduce is not _reduce_ndarray:
        raise UnsafeContent(f"_reconstruct of {_describe(cls)} is not allowed (only numpy.ndarray)")
    if type(items[1]) is not tuple or type(items[2]) is not bytes:
        raise MalformedContent("invalid arguments to numpy's _reconstruct")
    return _PendingArray()


def _build_array(pending, state):
    """Apply ``ndarray.__setstate__``'s state (version, shape, dtype, is_fortran, data)."""
    if pending.array is not None:
        raise MalformedContent("BUILD applied twice to a NumPy array")
    items = state.items if type(state) is _ArgTuple else state
    if type(items) is not tuple or len(items) != 5 or items[0] != 1 or type(items[0]) is not int:
        raise MalformedContent("invalid NumPy array state (expected version 1, 5 items)")
    _, shape, dtype, is_fortran, data = items
    shape = _shape_arg(shape, "ndarray.__setstate__")
    dtype = _dtype_arg(dtype, "ndarray.__setstate__")
    if type(data) is list:
        raise UnsafeContent("object arrays are not allowed (their items can be any Python object)")
    if type(data) is not bytes or type(is_fortran) not in (bool, int):
        raise MalformedContent("invalid NumPy array state")
    expected = _nbytes(shape, dtype)
    if len(data) != expected:
        raise MalformedContent(
            f"a NumPy array declares shape {shape} of dtype {dtype.str} ({expected} bytes) but "
            f"carries {len(data)} bytes"
        )
    order = "F" if is_fortran else "C"
    pending.array = np.frombuffer(data, dtype=dtype).reshape(shape, order=order).copy(order=order)


def _reduce_scalar(args):
    # NumPy's form for scalars: numpy._core.multiarray.scalar(dtype, bytes).
    items = _items(args, "scalar", 2, 2)
    dtype = _dtype_arg(items[0], "scalar")
    if type(items[1]) is not bytes or len(items[1]) != dtype.itemsize:
        raise MalformedContent(f"a NumPy scalar of dtype {dtype.str} needs {dtype.itemsize} bytes")
    return np.frombuffer(items[1], dtype=dtype)[0]


def _scalar_type_reducer(name):
    scalar_type = getattr(np, name)

    def reduce(args):
        # fastoptim's form: numpy.float32(<0-d array>), exact to the bit (NaN payloads included).
        (array,) = _items(args, f"numpy.{name}", 1, 1)
        array = _value(array)
        if type(array) is not np.ndarray or array.ndim != 0:
            raise MalformedContent(f"numpy.{name} needs a 0-d array")
        value = array[()]
        if type(value) is not scalar_type:
            raise MalformedContent(f"numpy.{name} was given an array of dtype {array.dtype.str}")
        return value

    return reduce


def _reduce_ordered_dict(args):
    _items(args, "collections.OrderedDict", 0, 0)
    return collections.OrderedDict()


def _reduce_counter(args):
    items = _items(args, "collections.Counter", 0, 1)
    if not items:
        return collections.Counter()
    if type(items[0]) is not dict:
        raise MalformedContent("collections.Counter needs a dict")
    counter = collections.Counter()
    # dict.update keeps the values as they are, like Counter(dict) on an empty Counter.
    dict.update(counter, items[0])
    return counter


def _reduce_codecs_encode(args):
    # Protocols 0-2 write bytes as _codecs.encode(str, "latin1").
    text, encoding = _items(args, "_codecs.encode", 2, 2)
    if type(text) is not str or encoding not in ("latin1", "latin-1"):
        raise UnsafeContent("_codecs.encode is only allowed as encode(str, 'latin1')")
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise MalformedContent("_codecs.encode got a str that is not latin-1") from exc


def _reduce_bytes(args):
    # Protocols 0-2 write b"" as bytes().
    _items(args, "builtins.bytes", 0, 0)
    return b""


def _allowed_globals():
    table = {}

    def add(modules, name, reduce):
        for module in modules:
            table[module, name] = _GlobalRef(f"{module}.{name}", reduce)

    add(["numpy"], "ndarray", _reduce_ndarray)
    add(["numpy"], "dtype", _reduce_dtype)
    for name in SCALAR_TYPE_NAMES:
        add(["numpy"], name, _scalar_type_reducer(name))
    # NumPy 2 writes numpy._core..., NumPy 1.x numpy.core...; both name the same functions.
    multiarray = [
        "numpy.core.multiarray", "numpy._core.multiarray",
        "numpy.core._multiarray_umath", "numpy._core._multiarray_umath",
    ]
    add(multiarray, "_reconstruct", _reduce_reconstruct)
    add(multiarray, "scalar", _reduce_scalar)
    add(["numpy.core.numeric", "numpy._core.numeric"], "_frombuffer", _reduce_frombuffer)
    add(["collections"], "OrderedDict", _reduce_ordered_dict)
    add(["collections"], "Counter", _reduce_counter)
    add(["_codecs"], "encode", _reduce_codecs_encode)
    add(["builtins"], "bytes", _reduce_bytes)
    return table


ALLOWED_GLOBALS = _allowed_globals()


def _describe(obj):
    if isinstance(obj, _Marker):
        return obj.what
    return f"a {type(obj).__name__}"


# --------------------------------------------------------------------------------------------
# The interpreter
# --------------------------------------------------------------------------------------------

_DICT_TYPES = (dict, collections.OrderedDict, collections.Counter)

# Opcodes that are well-formed pickle but never needed for the allowed types; the file is
# refused as unsafe with the opcode's name (and for INST, the global it names).
_REFUSED_OPCODES = {
    op.code.encode("latin-1")[0]: f"{op.name} ({why})"
    for names, why in [
        (("PERSID", "BINPERSID"), "persistent id"),
        (("OBJ", "NEWOBJ", "NEWOBJ_EX"), "instance creation"),
        (("EXT1", "EXT2", "EXT4"), "extension registry"),
        (("EMPTY_SET", "ADDITEMS"), "sets are not an allowed type"),
        (("FROZENSET",), "frozensets are not an allowed type"),
        (("NEXT_BUFFER", "READONLY_BUFFER"), "out-of-band buffer"),
        (("STRING", "BINSTRING", "SHORT_BINSTRING"), "Python 2 str"),
    ]
    for op in pickletools.opcodes if op.name in names
}

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_F64 = struct.Struct(">d")


class SafeUnpickler:
    """Interpret one pickle from ``reader`` using only the allowed globals and opcodes.

    Parameters
    ----------
    reader : object
        Supplies the bytes: ``read(n)`` returns exactly ``n`` bytes, ``readline()`` returns the
        bytes up to (not including) the next newline, ``read_array(n)`` returns a new writeable
        ``uint8`` array of ``n`` bytes, ``remaining()`` counts the bytes left and ``tell()`` gives
        the offset for messages. Each read must raise :class:`MalformedContent` instead of reading
        past the end of the pickle's data, and must do so before allocating anything.

    globals : dict, optional
        ``{(module, name): marker}``: the globals the pickle may name, by default
        :data:`ALLOWED_GLOBALS`. A :class:`_GlobalRef` may be called by REDUCE; other markers are
        stack-only values that the table's own reducers understand.
    allowed : str, optional
        What the table allows, in words, for the message that refuses any other global.
    persistent_load : callable, optional
        Called with the items of a BINPERSID id (a tuple); returns the value to push. Without it,
        persistent ids are refused.
    build : callable, optional
        Called as ``build(target, state)`` for a BUILD on a value the interpreter does not rebuild
        itself; returns True if it handled it.
    """

    def __init__(self, reader, globals=None, allowed=None, persistent_load=None, build=None):
        self._reader = reader
        self._globals = ALLOWED_GLOBALS if globals is None else globals
        self._allowed = allowed or (
            "numpy.ndarray, numpy.dtype, NumPy scalar types, collections.OrderedDict and "
            "collections.Counter"
        )
        self._persistent_load = persistent_load
        self._build = build
        self._stack = []
        self._metastack = []
        self._memo = {}
        self._protocol = 0  # until a PROTO opcode says otherwise, as for pickle
        self._result = None
        self._dispatch = self._make_dispatch()

    def load(self):
        """Interpret opcodes up to STOP and return the object they build.

        Raises
        ------
        UnsafeContent
            For a global, opcode or type that is not allowed.
        MalformedContent
            For bytes that are not a well-formed pickle of the allowed types.
        """
        read = self._reader.read
        dispatch = self._dispatch
        while True:
            opcode = read(1)[0]
            handler = dispatch.get(opcode)
            if handler is None:
                name = _REFUSED_OPCODES.get(opcode)
                if name is None:
                    raise MalformedContent(
                        f"invalid pickle opcode 0x{opcode:02x} at byte {self._reader.tell() - 1}"
                    )
                raise UnsafeContent(f"opcode {name} is not allowed")
            if handler() is _STOP:
                return self._result

    # ---- stack helpers -----------------------------------------------------------------------

    def _pop(self):
        try:
            return self._stack.pop()
        except IndexError:
            raise MalformedContent("pickle stack underflow") from None

    def _top(self):
        try:
            return self._stack[-1]
        except IndexError:
            raise MalformedContent("pickle stack underflow") from None

    def _pop_mark(self):
        items = self._stack
        try:
            self._stack = self._metastack.pop()
        except IndexError:
            raise MalformedContent("pickle opcode needs a MARK that is not there") from None
        return items

    def _push(self, value):
        self._stack.append(value)

    def _readline(self):
        return self._reader.readline()

    def _read_sized(self, struct_):
        return struct_.unpack(self._reader.read(struct_.size))[0]

    def _text(self, data, encoding="utf-8", errors="strict"):
        try:
            return data.decode(encoding, errors)
        except UnicodeDecodeError as exc:
            raise MalformedContent(f"invalid {encoding} text in the pickle") from exc

    def _memo_index(self, text):
        try:
            index = int(text)
        except ValueError:
            raise MalformedContent(f"invalid memo index {text!r}") from None
        return index

    def _memo_get(self, index):
        try:
            return self._memo[index]
        except KeyError:
            raise MalformedContent(f"memo entry {index} is used before it is stored") from None

    def _memo_put(self, index):
        if index < 0:
            raise MalformedContent("negative memo index")
        self._memo[index] = self._top()

    def _global(self, module, name):
        if self._protocol < 3:
            # Protocols 0-2 use Python 2 names (__builtin__, commands, ...); map them as pickle
            # does, so that both the allow-list and the error message use today's names.
            module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        ref = self._globals.get((module, name))
        if ref is None:
            raise UnsafeContent(
                f"global '{module}.{name}' is not allowed: the restricted reader only allows "
                f"{self._allowed}"
            )
        return ref

    # ---- opcodes -------------------------------------------------------------------------------

    def _make_dispatch(self):
        o = self
        table = {
            b"\x80": o._op_proto, b".": o._op_stop, b"\x95": o._op_frame,
            b"(": o._op_mark, b"0": o._op_pop, b"1": o._op_pop_mark, b"2": o._op_dup,
            b"N": lambda: o._push(None),
            b"\x88": lambda: o._push(True), b"\x89": lambda: o._push(False),
            b"I": o._op_int, b"J": lambda: o._push(o._read_sized(_I32)),
            b"K": lambda: o._push(o._read_sized(_U8)), b"M": lambda: o._push(o._read_sized(_U16)),
            b"L": o._op_long, b"\x8a": lambda: o._op_long_binary(_U8),
            b"\x8b": lambda: o._op_long_binary(_I32),
            b"F": o._op_float, b"G": lambda: o._push(o._read_sized(_F64)),
            b"V": o._op_unicode,
            b"\x8c": lambda: o._op_binunicode(_U8), b"X": lambda: o._op_binunicode(_U32),
            b"\x8d": lambda: o._op_binunicode(_U64),
            b"C": lambda: o._op_binbytes(_U8), b"B": lambda: o._op_binbytes(_U32),
            b"\x8e": lambda: o._op_binbytes(_U64),
            b"\x96": o._op_bytearray8,
            b")": lambda: o._push(()), b"t": o._op_tuple,
            b"\x85": lambda: o._op_tuple_n(1), b"\x86": lambda: o._op_tuple_n(2),
            b"\x87": lambda: o._op_tuple_n(3),
            b"]": lambda: o._push([]), b"l": o._op_list, b"a": o._op_append, b"e": o._op_appends,
            b"}": lambda: o._push({}), b"d": o._op_dict, b"s": o._op_setitem, b"u": o._op_setitems,
            b"p": lambda: o._memo_put(o._memo_index(o._readline())),
            b"q": lambda: o._memo_put(o._read_sized(_U8)),
            b"r": lambda: o._memo_put(o._read_sized(_U32)),
            b"\x94": lambda: o._memo_put(len(o._memo)),
            b"g": lambda: o._push(o._memo_get(o._memo_index(o._readline()))),
            b"h": lambda: o._push(o._memo_get(o._read_sized(_U8))),
            b"j": lambda: o._push(o._memo_get(o._read_sized(_U32))),
            b"c": o._op_global, b"\x93": o._op_stack_global, b"i": o._op_inst,
            b"R": o._op_reduce, b"b": o._op_build,
        }
        if self._persistent_load is not None:
            table[b"Q"] = o._op_binpersid
        return {key[0]: handler for key, handler in table.items()}

    def _op_proto(self):
        protocol = self._read_sized(_U8)
        if protocol > MAX_PROTOCOL:
            raise MalformedContent(f"unsupported pickle protocol {protocol}")
        self._protocol = protocol

    def _op_stop(self):
        self._result = _value(self._pop())
        return _STOP

    def _op_frame(self):
        # A frame is only a read-ahead hint; its length still has to fit in the file.
        length = self._read_sized(_U64)
        if length > self._reader.remaining():
            raise MalformedContent(f"a frame of {length} bytes runs past the end of the data")

    def _op_mark(self):
        self._metastack.append(self._stack)
        self._stack = []

    def _op_pop(self):
        if self._stack:
            self._stack.pop()
        else:
            self._pop_mark()

    def _op_pop_mark(self):
        self._pop_mark()

    def _op_dup(self):
        self._push(self._top())

    def _op_int(self):
        line = self._readline()
        if line == b"00":
            self._push(False)
        elif line == b"01":
            self._push(True)
        else:
            self._push(self._parse_int(line))

    def _op_long(self):
        line = self._readline()
        if line.endswith(b"L"):
            line = line[:-1]
        self._push(self._parse_int(line))

    def _parse_int(self, line):
        try:
            return int(line)
        except ValueError as exc:  # includes the interpreter's limit on digits
            raise MalformedContent(f"invalid integer literal in the pickle: {exc}") from None

    def _op_long_binary(self, size_struct):
        size = self._read_sized(size_struct)
        if size < 0:
            raise MalformedContent("LONG4 with a negative byte count")
        self._push(int.from_bytes(self._reader.read(size), "little", signed=True))

    def _op_float(self):
        line = self._readline()
        try:
            self._push(float(line))
        except ValueError:
            raise MalformedContent(f"invalid float literal {line[:40]!r}") from None

    def _op_unicode(self):
        self._push(self._text(self._readline(), "raw-unicode-escape"))

    def _op_binunicode(self, size_struct):
        data = self._reader.read(self._read_sized(size_struct))
        self._push(self._text(data, "utf-8", "surrogatepass"))

    def _op_binbytes(self, size_struct):
        self._push(self._reader.read(self._read_sized(size_struct)))

    def _op_bytearray8(self):
        self._push(_BufferRef(self._reader.read_array(self._read_sized(_U64))))

    def _make_tuple(self, items):
        items = tuple(
            item.array if type(item) is _PendingArray and item.array is not None else item
            for item in items
        )
        if any(isinstance(item, _Marker) for item in items):
            return _ArgTuple(items)
        return items

    def _op_tuple(self):
        self._push(self._make_tuple(self._pop_mark()))

    def _op_tuple_n(self, count):
        if len(self._stack) < count:
            raise MalformedContent("pickle stack underflow")
        items = self._stack[-count:]
        del self._stack[-count:]
        self._push(self._make_tuple(items))

    def _op_list(self):
        self._push([_value(item) for item in self._pop_mark()])

    def _target(self, kinds, opcode):
        target = self._top()
        if type(target) not in kinds:
            raise MalformedContent(f"{opcode} applied to {_describe(target)}")
        return target

    def _op_append(self):
        value = _value(self._pop())
        self._target((list,), "APPEND").append(value)

    def _op_appends(self):
        items = [_value(item) for item in self._pop_mark()]
        self._target((list,), "APPENDS").extend(items)

    def _set_items(self, target, items):
        if len(items) % 2:
            raise MalformedContent("SETITEMS with an odd number of items")
        for index in range(0, len(items), 2):
            key = _value(items[index])
            try:
                target[key] = _value(items[index + 1])
            except TypeError as exc:  # an unhashable key: a list, dict or array
                raise MalformedContent(f"unusable dict key: {exc}") from None

    def _op_dict(self):
        result = {}
        self._set_items(result, self._pop_mark())
        self._push(result)

    def _op_setitem(self):
        value = self._pop()
        key = self._pop()
        self._set_items(self._target(_DICT_TYPES, "SETITEM"), [key, value])

    def _op_setitems(self):
        items = self._pop_mark()
        self._set_items(self._target(_DICT_TYPES, "SETITEMS"), items)

    def _op_global(self):
        module = self._text(self._readline())
        name = self._text(self._readline())
        self._push(self._global(module, name))

    def _op_stack_global(self):
        name = self._pop()
        module = self._pop()
        if type(module) is not str or type(name) is not str:
            raise MalformedContent("STACK_GLOBAL needs two str")
        self._push(self._global(module, name))

    def _op_inst(self):
        module = self._text(self._readline())
        name = self._text(self._readline())
        raise UnsafeContent(f"opcode INST (instance of global '{module}.{name}') is not allowed")

    def _op_binpersid(self):
        pid = self._pop()
        items = pid.items if type(pid) is _ArgTuple else pid
        if type(items) is not tuple:
            raise MalformedContent(f"a persistent id must be a tuple, got {_describe(pid)}")
        self._push(self._persistent_load(items))

    def _op_reduce(self):
        args = self._pop()
        func = self._pop()
        if type(func) is not _GlobalRef:
            raise UnsafeContent(f"REDUCE on {_describe(func)} is not allowed")
        if type(args) is not tuple and type(args) is not _ArgTuple:
            raise MalformedContent(
                f"REDUCE on '{func.qualname}' with {_describe(args)} as arguments"
            )
        try:
            self._push(func.reduce(args))
        except (ValueError, TypeError, OverflowError, MemoryError) as exc:
            # NumPy rejecting a shape or dtype combination that passed the checks above.
            raise MalformedContent(f"'{func.qualname}' refused its arguments: {exc}") from exc

    def _op_build(self):
        state = self._pop()
        target = self._top()
        if type(target) is _PendingArray:
            try:
                _build_array(target, state)
            except (ValueError, TypeError, OverflowError, MemoryError) as exc:
                raise MalformedContent(f"invalid NumPy array state: {exc}") from exc
        elif type(target) is _DtypeRef:
            _build_dtype(target, state)
        elif self._build is None or not self._build(target, state):
            raise UnsafeContent(
                f"opcode BUILD (setting the state of an object) on {_describe(target)} is not "
                "allowed: only NumPy arrays and dtypes are rebuilt this way"
            )


_STOP = object()
