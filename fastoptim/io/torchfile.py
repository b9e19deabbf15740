"""torch.save's zip format, read and written without torch.

What ``torch.save`` writes (``torch/serialization.py``, ``caffe2/serialize/inline_container.cc``)
is a zip archive of uncompressed entries under one directory (``archive/``):

* ``data.pkl``: a protocol 2 pickle of the object, in which each tensor is
  ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)``
  (``_rebuild_tensor_v3(..., dtype)`` for dtypes without a legacy storage class, such as uint16),
  and each storage a persistent id ``("storage", torch.FloatStorage, key, location, numel)``;
* ``data/<key>``: the bytes of each storage, the payload aligned to 64 bytes in the file;
* ``byteorder`` (``little`` or ``big``), ``version``, ``.format_version``,
  ``.storage_alignment`` and ``.data/serialization_id``: small records.

Reading: the zip directory (ZIP64 included) is parsed and checked first (names under one
directory without ``..``, no duplicates, no compressed entries, every entry inside the file and
none overlapping another); ``data.pkl`` is interpreted by :class:`~fastoptim.io.unpickler.
SafeUnpickler` with a table of globals that mirrors ``torch.load(weights_only=True)``'s allow-list
(``torch/_weights_only_unpickler.py``) as far as NumPy can represent it; every storage is read
once, straight into the memory of a NumPy buffer (in parallel pieces from a real file), and every
tensor is a view of its storage's buffer with torch's offset, shape and strides, checked against
the storage's size before the view exists. Tensors that share a storage therefore come back as
views of one buffer, as they were in torch. Every entry's CRC-32 is verified before anything is
returned, and a file can make the reader allocate at most about its own size (twice for
bfloat16 upcast to float32).

Writing (``fastoptim.save(obj, f, format="torch")``): the same layout, with each array stored
C-contiguous in a storage of its own (an array that appears twice is stored once), written with
data descriptors (the CRC follows each entry) and ZIP64 records where sizes or offsets need them.
"""

import collections
import concurrent.futures
import io
import math
import os
import struct
import zlib

import numpy as np

from fastoptim.io import encoder as _encoder
from fastoptim.io.errors import CorruptCheckpointError, UnsafeCheckpointError
from fastoptim.io.format import _READ_PIECE, _crc_workers, crc32_combine
from fastoptim.io.interop import steps_as_arrays, steps_as_ints
from fastoptim.io.unpickler import (
    ALLOWED_GLOBALS, MalformedContent, SafeUnpickler, UnsafeContent, _GlobalRef,
    _Marker, _describe, _items,
)

__all__ = ["load", "writer"]

# --------------------------------------------------------------------------------------------
# dtypes
# --------------------------------------------------------------------------------------------


def _ml_dtype(name):
    try:
        import ml_dtypes  # noqa: PLC0415 - optional
    except ImportError:
        return None
    return np.dtype(getattr(ml_dtypes, name))


# torch dtype name -> NumPy dtype (None: NumPy has no such dtype).
_TORCH_DTYPES = {
    "bool": np.dtype("?"), "uint8": np.dtype("u1"), "int8": np.dtype("i1"),
    "int16": np.dtype("<i2"), "int32": np.dtype("<i4"), "int64": np.dtype("<i8"),
    "uint16": np.dtype("<u2"), "uint32": np.dtype("<u4"), "uint64": np.dtype("<u8"),
    "float16": np.dtype("<f2"), "float32": np.dtype("<f4"), "float64": np.dtype("<f8"),
    "complex64": np.dtype("<c8"), "complex128": np.dtype("<c16"),
}
_ML_DTYPES = ("bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz")
# Legacy storage classes (what torch.save names for these dtypes) -> torch dtype name.
_STORAGE_CLASSES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
}
_STORAGE_FOR_DTYPE = {dtype: name for name, dtype in _STORAGE_CLASSES.items()}


def _numpy_dtype(torch_name):
    """The NumPy dtype for a torch dtype; bfloat16 without ml_dtypes gives None (upcast)."""
    if torch_name in _TORCH_DTYPES:
        return _TORCH_DTYPES[torch_name]
    if torch_name in _ML_DTYPES:
        return _ml_dtype(torch_name)
    raise UnsafeContent(f"torch dtype torch.{torch_name} has no NumPy equivalent")


# --------------------------------------------------------------------------------------------
# Stack-only values of torch's pickle
# --------------------------------------------------------------------------------------------


class _StorageClass(_Marker):
    """``torch.FloatStorage`` and the like (or ``UntypedStorage``, ``dtype`` None)."""

    __slots__ = ("qualname", "dtype_name")
    _what = "the storage class '{self.qualname}'"


class _TorchDtype(_Marker):
    __slots__ = ("name",)
    _what = "the dtype 'torch.{self.name}'"


class _TensorType(_Marker):
    """``torch.Tensor`` or ``torch.nn.Parameter`` as the class of ``_rebuild_from_type_v2``."""

    __slots__ = ("qualname",)
    what = "a tensor class"


class _Storage(_Marker):
    """A storage: its bytes (a uint8 buffer) and the torch dtype its class names."""

    __slots__ = ("key", "data", "dtype_name", "views")
    what = "a torch storage (only usable by a tensor)"

    def __init__(self, key, data, dtype_name):
        self.key = key
        self.data = data
        self.dtype_name = dtype_name
        self.views = {}  # NumPy dtype -> the whole storage as an array of it


# --------------------------------------------------------------------------------------------
# Rebuilding tensors
# --------------------------------------------------------------------------------------------

_MAX_NDIM = 64


def _int_tuple(value, what):
    if type(value) is not tuple or len(value) > _MAX_NDIM or any(
        type(item) is not int for item in value
    ):
        raise MalformedContent(f"a tensor's {what} must be a tuple of at most {_MAX_NDIM} ints, "
                               f"got {_describe(value)}")
    if any(item < 0 for item in value):
        raise MalformedContent(f"a tensor's {what} {value} has a negative entry")
    return value


class _Reader:
    """The state of one torch file being read: its entries, storages and byte order."""

    def __init__(self, archive, byteorder):
        self.archive = archive
        self.big_endian = byteorder == "big"
        self.storages = {}

    # ---- persistent ids: storages ---------------------------------------------------------------

    def persistent_load(self, pid):
        if len(pid) != 5:
            raise MalformedContent(f"a persistent id must have 5 items, got {len(pid)}")
        kind, storage_class, key, location, numel = pid
        if kind != "storage":
            raise UnsafeContent(f"persistent id of kind {kind!r} is not allowed (only storages)")
        if type(storage_class) is not _StorageClass:
            raise UnsafeContent(
                f"a storage persistent id names {_describe(storage_class)}, not a storage class"
            )
        if type(key) is not str or type(location) is not str or type(numel) is not int:
            raise MalformedContent("a storage persistent id must be (str, class, str, str, int)")
        storage = self.storages.get(key)
        if storage is not None:
            if storage.dtype_name != storage_class.dtype_name:
                raise MalformedContent(f"storage {key!r} is named with two different classes")
            return storage
        name = f"data/{key}"
        itemsize = 1 if storage_class.dtype_name is None else np.dtype(
            _TORCH_DTYPES.get(storage_class.dtype_name, "u2")).itemsize
        entry = self.archive.entry(name)
        if entry is None:
            raise MalformedContent(
                f"the pickle refers to storage {key!r}, but the archive has no entry {name!r}"
            )
        if numel < 0 or numel * itemsize != entry.size:
            raise MalformedContent(
                f"storage {key!r} declares {numel} elements of {itemsize} bytes, but its entry "
                f"holds {entry.size} bytes"
            )
        data = self.archive.read_entry(entry)
        storage = self.storages[key] = _Storage(key, data, storage_class.dtype_name)
        return storage

    def storage_array(self, storage, dtype_name):
        """The whole storage as a 1-d array of ``dtype_name``'s NumPy dtype (cached)."""
        dtype = _numpy_dtype(dtype_name)
        view = storage.views.get(dtype_name)
        if view is not None:
            return view
        data = storage.data
        upcast = dtype is None  # bfloat16 without ml_dtypes
        itemsize = 2 if upcast else dtype.itemsize
        if data.nbytes % itemsize:
            raise MalformedContent(
                f"storage {storage.key!r} holds {data.nbytes} bytes, not a whole number of "
                f"{itemsize}-byte torch.{dtype_name} elements"
            )
        if upcast:
            bits = data.view(">u2" if self.big_endian else "<u2").astype(np.uint32)
            self.archive.charge(bits.nbytes, f"storage {storage.key!r} upcast to float32")
            bits <<= 16
            view = bits.view(np.float32)
        elif self.big_endian and itemsize > 1:
            view = data.view(dtype.newbyteorder(">")).astype(dtype.newbyteorder("="))
        else:
            view = data.view(dtype.newbyteorder("=") if itemsize > 1 else dtype)
        storage.views[dtype_name] = view
        return view

    def tensor(self, storage, offset, size, stride, dtype_name=None, metadata=None):
        if type(storage) is not _Storage:
            raise MalformedContent(f"a tensor needs a storage, got {_describe(storage)}")
        if type(offset) is not int or offset < 0:
            raise MalformedContent(f"a tensor's storage offset must be an int >= 0, got {offset!r}")
        size = _int_tuple(size, "size")
        stride = _int_tuple(stride, "stride")
        if len(size) != len(stride):
            raise MalformedContent(f"a tensor's size {size} and stride {stride} differ in length")
        if dtype_name is None:
            dtype_name = storage.dtype_name
            if dtype_name is None:
                raise MalformedContent("a tensor on an untyped storage needs a dtype")
        elif storage.dtype_name is not None and storage.dtype_name != dtype_name:
            raise MalformedContent(
                f"a torch.{dtype_name} tensor on a torch.{storage.dtype_name} storage"
            )
        base = self.storage_array(storage, dtype_name)
        count = math.prod(size)
        if count == 0:
            if offset > len(base):
                raise MalformedContent(f"storage offset {offset} is past the end of the storage")
            return np.empty(size, base.dtype)
        # The last element the view reaches, checked before the view exists.
        extent = offset + sum((dim - 1) * step for dim, step in zip(size, stride)) + 1
        if extent > len(base):
            raise MalformedContent(
                f"a tensor of size {size}, stride {stride} and offset {offset} needs "
                f"{extent} elements, but its storage {storage.key!r} has {len(base)}"
            )
        itemsize = base.dtype.itemsize
        strides = tuple(step * itemsize if dim > 1 else 0 for dim, step in zip(size, stride))
        array = np.lib.stride_tricks.as_strided(
            base[offset:], shape=size, strides=strides, writeable=True
        )
        if metadata:
            array = _apply_metadata(array, metadata)
        return array


def _apply_metadata(array, metadata):
    if type(metadata) is not dict or not set(metadata) <= {"conj", "neg"} or any(
        type(value) is not bool for value in metadata.values()
    ):
        raise MalformedContent(f"unsupported tensor metadata {metadata!r}")
    # torch's lazy conjugate and negative bits: the values are the storage's, transformed.
    if metadata.get("conj"):
        array = np.conj(array)
    if metadata.get("neg"):
        array = np.negative(array)
    return array


def _check_grad_args(requires_grad, hooks):
    if type(requires_grad) is not bool:
        raise MalformedContent(f"requires_grad must be a bool, got {_describe(requires_grad)}")
    if type(hooks) not in (dict, collections.OrderedDict) or hooks:
        raise MalformedContent("a tensor's backward hooks must be an empty OrderedDict")


def _metadata_arg(items, index):
    return items[index] if len(items) > index else None


def _globals(reader):
    """The allow-list, as torch.load(weights_only=True) has it, for what NumPy can represent."""
    table = {key: ALLOWED_GLOBALS[key] for key in (
        ("collections", "OrderedDict"), ("collections", "Counter"), ("_codecs", "encode"),
    )}

    def add(module, name, reduce):
        table[module, name] = _GlobalRef(f"{module}.{name}", reduce)

    def rebuild_v2(args):
        items = _items(args, "_rebuild_tensor_v2", 6, 7)
        _check_grad_args(items[4], items[5])
        return reader.tensor(*items[:4], metadata=_metadata_arg(items, 6))

    def rebuild_v3(args):
        items = _items(args, "_rebuild_tensor_v3", 7, 8)
        _check_grad_args(items[4], items[5])
        if type(items[6]) is not _TorchDtype:
            raise MalformedContent(f"_rebuild_tensor_v3 needs a dtype, got {_describe(items[6])}")
        return reader.tensor(*items[:4], items[6].name, metadata=_metadata_arg(items, 7))

    def rebuild_v1(args):
        return reader.tensor(*_items(args, "_rebuild_tensor", 4, 4))

    def parameter_data(items, name):
        if type(items[0]) is not np.ndarray:
            raise MalformedContent(f"{name} needs a tensor, got {_describe(items[0])}")
        _check_grad_args(items[1], items[2])
        return items[0]

    def rebuild_parameter(args):
        return parameter_data(_items(args, "_rebuild_parameter", 3, 3), "_rebuild_parameter")

    def rebuild_parameter_with_state(args):
        items = _items(args, "_rebuild_parameter_with_state", 4, 4)
        if items[3] not in (None, {}, (None, None), ({}, {}), (None, {}), ({}, None)):
            raise UnsafeContent("a Parameter with Python attributes (a subclass's state) is not "
                                "supported")
        return parameter_data(items, "_rebuild_parameter_with_state")

    rebuilds = {"_rebuild_tensor_v2": rebuild_v2, "_rebuild_tensor_v3": rebuild_v3,
                "_rebuild_tensor": rebuild_v1, "_rebuild_parameter": rebuild_parameter,
                "_rebuild_parameter_with_state": rebuild_parameter_with_state}
    for name, reduce in rebuilds.items():
        add("torch._utils", name, reduce)

    def rebuild_from_type(args):
        func, new_type, func_args, state = _items(args, "_rebuild_from_type_v2", 4, 4)
        if type(func) is not _GlobalRef or func.reduce not in rebuilds.values():
            raise UnsafeContent(f"_rebuild_from_type_v2 of {_describe(func)} is not allowed")
        if type(new_type) is not _TensorType:
            raise UnsafeContent(f"_rebuild_from_type_v2 to {_describe(new_type)} is not allowed "
                                "(only torch.Tensor and torch.nn.Parameter)")
        if state not in (None, {}):
            raise UnsafeContent("a tensor subclass with Python attributes is not supported")
        return func.reduce(func_args)

    add("torch._tensor", "_rebuild_from_type_v2", rebuild_from_type)

    def size(args):
        (dims,) = _items(args, "torch.Size", 1, 1)
        return _int_tuple(dims, "torch.Size")

    def device(args):
        items = _items(args, "torch.device", 1, 2)
        if type(items[0]) is not str or (len(items) == 2 and type(items[1]) is not int):
            raise MalformedContent("torch.device takes a str and an optional int")
        return items[0] if len(items) == 1 else f"{items[0]}:{items[1]}"

    def complex_(args):
        items = _items(args, "builtins.complex", 1, 2)
        if any(type(item) not in (int, float) for item in items):
            raise MalformedContent("builtins.complex takes real numbers")
        return complex(*items)

    add("torch", "Size", size)
    add("torch", "device", device)
    add("builtins", "complex", complex_)
    for module in ("torch", "torch.cuda"):
        for name, dtype_name in _STORAGE_CLASSES.items():
            table[module, name] = _StorageClass(f"{module}.{name}", dtype_name)
    table["torch.storage", "UntypedStorage"] = _StorageClass("torch.storage.UntypedStorage", None)
    table["torch", "UntypedStorage"] = _StorageClass("torch.UntypedStorage", None)
    for name in (*_TORCH_DTYPES, *_ML_DTYPES):
        table["torch", name] = _TorchDtype(name)
    table["torch", "Tensor"] = _TensorType("torch.Tensor")
    table["torch.nn.parameter", "Parameter"] = _TensorType("torch.nn.parameter.Parameter")
    return table


_ALLOWED = (
    "what torch.load(weights_only=True) allows and NumPy can represent: tensors (dense, of "
    "NumPy's dtypes), torch.Size, torch.device, collections.OrderedDict/Counter, bytes and "
    "complex"
)


def _build(target, state):
    """BUILD on an OrderedDict: torch's module state dicts carry ``_metadata`` this way."""
    if type(target) is not collections.OrderedDict:
        return False
    if type(state) is not dict or any(type(key) is not str for key in state):
        raise MalformedContent("the state of an OrderedDict must be a dict of str keys")
    target.__dict__.update(state)
    return True


# --------------------------------------------------------------------------------------------
# The zip archive
# --------------------------------------------------------------------------------------------

_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # 30 bytes
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")  # 46 bytes
_EOCD = struct.Struct("<4sHHHHIIH")  # 22 bytes
_ZIP64_LOCATOR = struct.Struct("<4sIQI")  # 20 bytes
_ZIP64_EOCD = struct.Struct("<4sQHHIIQQQQ")  # 56 bytes
_DESCRIPTOR32 = struct.Struct("<4sIII")
_DESCRIPTOR64 = struct.Struct("<4sIQQ")
_ALIGNMENT = 64
_MAX_COMMENT = 0xFFFF


class _Entry:
    __slots__ = ("name", "crc", "size", "header_offset", "data_offset", "verified")

    def __init__(self, name, crc, size, header_offset):
        self.name = name
        self.crc = crc
        self.size = size
        self.header_offset = header_offset
        self.data_offset = None
        self.verified = False


def _zip64_values(extra, wanted):
    """Read the ZIP64 extended information field: the 8-byte values for ``wanted`` fields."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4:pos + 4 + length]
        if len(body) != length:
            break
        if tag == 1:
            if length < 8 * wanted:
                raise MalformedContent("a ZIP64 extra field is too short")
            return struct.unpack_from(f"<{wanted}Q", body)
        pos += 4 + length
    raise MalformedContent("an entry's sizes need a ZIP64 extra field that is not there")


class _Archive:
    """The checked directory of a zip file, and reads of its entries with their CRC-32."""

    def __init__(self, file, start, size, budget):
        self._file = file
        self._start = start
        self._size = size
        self._budget = budget  # bytes this file may still make the reader allocate
        self._fd = _real_fd(file)
        self._pool = None
        self.entries = {}
        self.prefix = None
        self._parse()

    # ---- reading bytes ---------------------------------------------------------------------------

    def _pread(self, offset, size):
        if offset < 0 or offset + size > self._size:
            raise MalformedContent(f"{size} bytes at offset {offset} run past the end of the file")
        self._file.seek(self._start + offset)
        data = self._file.read(size) or b""
        while len(data) < size:
            more = self._file.read(size - len(data))
            if not more:
                raise MalformedContent("the file ended early: it was truncated while being read")
            data += more
        return data

    def charge(self, nbytes, what):
        if nbytes > self._budget:
            raise MalformedContent(
                f"{what} would need {nbytes} bytes, more than a file of {self._size} bytes may "
                "make the reader allocate"
            )
        self._budget -= nbytes

    # ---- the directory ------------------------------------------------------------------------

    def _parse(self):
        tail_size = min(self._size, _EOCD.size + _MAX_COMMENT)
        tail = self._pread(self._size - tail_size, tail_size)
        at = tail.rfind(b"PK\x05\x06")
        while at >= 0 and at + _EOCD.size > len(tail):
            at = tail.rfind(b"PK\x05\x06", 0, at)
        if at < 0:
            raise MalformedContent("it starts like a zip archive but has no end of central "
                                   "directory record (truncated?)")
        eocd_offset = self._size - tail_size + at
        (_, disk, cd_disk, _, count, cd_size, cd_offset, comment) = _EOCD.unpack_from(tail, at)
        if disk or cd_disk:
            raise MalformedContent("multi-volume zip archives are not supported")
        if 0xFFFFFFFF in (cd_size, cd_offset) or count == 0xFFFF:
            if eocd_offset < _ZIP64_LOCATOR.size:
                raise MalformedContent("the ZIP64 end of central directory locator is missing")
            sig, _, zip64_offset, _ = _ZIP64_LOCATOR.unpack(
                self._pread(eocd_offset - _ZIP64_LOCATOR.size, _ZIP64_LOCATOR.size)
            )
            if sig != b"PK\x06\x07":
                raise MalformedContent("the ZIP64 end of central directory locator is missing")
            if zip64_offset + _ZIP64_EOCD.size > eocd_offset:
                raise MalformedContent("the ZIP64 end of central directory record is misplaced")
            record = _ZIP64_EOCD.unpack(self._pread(zip64_offset, _ZIP64_EOCD.size))
            if record[0] != b"PK\x06\x06":
                raise MalformedContent("the ZIP64 end of central directory record is damaged")
            count, cd_size, cd_offset = record[7], record[8], record[9]
            directory_end = zip64_offset
        else:
            directory_end = eocd_offset
        if cd_offset + cd_size > directory_end or count * _CENTRAL.size > cd_size:
            raise MalformedContent(
                f"the central directory ({count} entries, {cd_size} bytes at {cd_offset}) does "
                "not fit in the file"
            )
        self.charge(cd_size, "the central directory")
        directory = self._pread(cd_offset, cd_size)
        pos = 0
        for _ in range(count):
            self._parse_central(directory, pos, cd_offset)
            pos = self._next_central
        self._check_layout(cd_offset)

    def _parse_central(self, directory, pos, cd_offset):
        if pos + _CENTRAL.size > len(directory):
            raise MalformedContent("the central directory is truncated")
        (sig, _, _, flags, method, _, _, crc, csize, usize, name_len, extra_len, comment_len,
         disk, _, _, offset) = _CENTRAL.unpack_from(directory, pos)
        if sig != b"PK\x01\x02":
            raise MalformedContent("a central directory entry is damaged (bad signature)")
        body = pos + _CENTRAL.size
        end = body + name_len + extra_len + comment_len
        if end > len(directory):
            raise MalformedContent("the central directory is truncated")
        self._next_central = end
        raw_name = directory[body:body + name_len]
        extra = directory[body + name_len:body + name_len + extra_len]
        wanted = [usize == 0xFFFFFFFF, csize == 0xFFFFFFFF, offset == 0xFFFFFFFF]
        if any(wanted):
            values = list(_zip64_values(extra, sum(wanted)))
            if wanted[0]:
                usize = values.pop(0)
            if wanted[1]:
                csize = values.pop(0)
            if wanted[2]:
                offset = values.pop(0)
        try:
            name = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedContent(f"entry name {raw_name!r} is not UTF-8") from None
        if flags & 1:
            raise MalformedContent(f"entry {name!r} is encrypted")
        if method != 0 or csize != usize:
            raise MalformedContent(
                f"entry {name!r} is compressed (method {method}, {csize} bytes expanding to "
                f"{usize}); torch.save stores entries uncompressed, and compressed entries are "
                "refused rather than expanded"
            )
        parts = name.split("/")
        if len(parts) < 2 and self.prefix is None and ".." not in name and "\\" not in name:
            raise MalformedContent(
                f"entry {name!r} is not inside a directory: a zip archive, but not one written by "
                "torch.save (which puts every entry under one directory; an .npz file?)"
            )
        if (len(parts) < 2 or "\\" in name or "\0" in name or any(
            part in ("", ".", "..") for part in parts
        )):
            raise MalformedContent(f"entry name {name!r} is not a relative path inside the archive")
        if self.prefix is None:
            self.prefix = parts[0]
        elif parts[0] != self.prefix:
            raise MalformedContent(
                f"entry {name!r} is outside the archive's directory {self.prefix!r}"
            )
        key = "/".join(parts[1:])
        if key in self.entries:
            raise MalformedContent(f"entry {name!r} appears twice in the archive")
        if offset + _LOCAL.size > cd_offset:
            raise MalformedContent(f"entry {name!r} starts outside the archive's data")
        self.entries[key] = _Entry(name, crc, usize, offset)

    def _check_layout(self, cd_offset):
        """Local headers: where each entry's data is; no entry may overlap another."""
        previous_end, previous = 0, None
        for entry in sorted(self.entries.values(), key=lambda item: item.header_offset):
            if entry.header_offset < previous_end:
                raise MalformedContent(f"entries {previous!r} and {entry.name!r} overlap")
            header = self._pread(entry.header_offset, _LOCAL.size)
            (sig, _, _, _, _, _, _, _, _, name_len, extra_len) = _LOCAL.unpack(header)
            if sig != b"PK\x03\x04":
                raise MalformedContent(f"the local header of entry {entry.name!r} is damaged")
            name = self._pread(entry.header_offset + _LOCAL.size, name_len)
            if name != entry.name.encode("utf-8"):
                raise MalformedContent(
                    f"entry {entry.name!r} has the name {name!r} in its local header"
                )
            entry.data_offset = entry.header_offset + _LOCAL.size + name_len + extra_len
            previous_end = entry.data_offset + entry.size
            previous = entry.name
            if previous_end > cd_offset:
                raise MalformedContent(f"entry {entry.name!r} runs past the archive's data")

    def entry(self, key):
        return self.entries.get(key)

    # ---- entry data -----------------------------------------------------------------------------

    def read_small(self, key):
        entry = self.entries[key]
        self.charge(entry.size, f"entry {entry.name!r}")
        data = self._pread(entry.data_offset, entry.size)
        self._verify(entry, zlib.crc32(data))
        return data

    def read_entry(self, entry):
        """The entry's bytes in a new uint8 array, read straight into it, CRC verified."""
        self.charge(entry.size, f"entry {entry.name!r}")
        out = np.empty(entry.size, dtype=np.uint8)
        self._verify(entry, self._read_into(memoryview(out), entry.data_offset))
        return out

    def _read_into(self, view, offset):
        """Fill ``view`` from ``offset``; return its CRC-32. A real file is read in parallel
        pieces (``os.preadv`` and ``zlib.crc32`` release the GIL), each summed where it landed."""
        if len(view) <= _PARALLEL_PIECE or self._fd is None:
            self._file.seek(self._start + offset)
            crc = 0
            for begin in range(0, len(view), _READ_PIECE):
                piece = view[begin:begin + _READ_PIECE]
                _readinto_exact(self._file, piece)
                crc = zlib.crc32(piece, crc)
            return crc

        def work(begin):
            piece = view[begin:begin + _PARALLEL_PIECE]
            filled = 0
            while filled < len(piece):
                count = os.preadv(self._fd, [piece[filled:]], self._start + offset + begin + filled)
                if not count:
                    raise MalformedContent("the file ended early: it was truncated while being "
                                           "read")
                filled += count
            return zlib.crc32(piece)

        starts = range(0, len(view), _PARALLEL_PIECE)
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(_crc_workers())
        crcs = list(self._pool.map(work, starts))
        crc = crcs[0]
        for begin, piece_crc in zip(starts[1:], crcs[1:]):
            crc = crc32_combine(crc, piece_crc, min(_PARALLEL_PIECE, len(view) - begin))
        return crc

    def close(self):
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _verify(self, entry, crc):
        if crc != entry.crc:
            raise _Damaged(
                f"entry {entry.name!r} does not match its CRC-32 (stored 0x{entry.crc:08x}, "
                f"computed 0x{crc:08x}): the file was damaged after it was written"
            )
        entry.verified = True

    def verify_rest(self):
        """Check the CRC-32 of every entry not read yet, in pieces (nothing is kept)."""
        unverified = [entry for entry in self.entries.values() if not entry.verified]
        if not unverified:
            return
        largest = max(1, *(item.size for item in unverified))
        scratch = memoryview(bytearray(min(_READ_PIECE, largest)))
        for entry in unverified:
            crc = 0
            self._file.seek(self._start + entry.data_offset)
            for begin in range(0, entry.size, len(scratch)):
                piece = scratch[:min(len(scratch), entry.size - begin)]
                _readinto_exact(self._file, piece)
                crc = zlib.crc32(piece, crc)
            self._verify(entry, crc)


class _Damaged(Exception):
    """A CRC-32 mismatch: damage, whatever else the reader tripped over."""


def _readinto_exact(file, view):
    filled = 0
    readinto = getattr(file, "readinto", None)
    while filled < len(view):
        if readinto is not None:
            count = readinto(view[filled:])
        else:
            data = file.read(len(view) - filled)
            count = len(data) if data else 0
            view[filled:filled + count] = data
        if not count:
            raise MalformedContent("the file ended early: it was truncated while being read")
        filled += count


def _real_fd(file):
    """The file descriptor of a regular file, for parallel positional reads, else None."""
    if not isinstance(file, io.FileIO) or not hasattr(os, "preadv"):
        return None
    try:
        return file.fileno()
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

_LEGACY_HINT = "torch.save's zip archive"
# The versions of the zip layout (the "version" record; torch 2.x writes 3) that torch's own
# reader accepts (caffe2/serialize/versions.h: kMaxSupportedFileFormatVersion).
_MAX_FORMAT_VERSION = 10


def load(file, label, start, size):
    """Read a torch.save zip archive from a seekable file; raise the public errors."""
    try:
        return _load(file, start, size)
    except _Damaged as exc:
        raise CorruptCheckpointError(f"{label}: torch file is corrupt: {exc}", label) from None
    except UnsafeContent as exc:
        raise UnsafeCheckpointError(
            f"{label}: {exc}. fastoptim.load reads torch files under torch.load("
            "weights_only=True)'s allow-list and refused this one without importing or running "
            "anything it names",
            label,
        ) from None
    except MalformedContent as exc:
        raise CorruptCheckpointError(f"{label}: torch file is corrupt or malformed: {exc}",
                                     label) from None
    except MemoryError:
        raise CorruptCheckpointError(
            f"{label}: torch file needs more memory than there is", label
        ) from None


def _load(file, start, size):
    # What a file may make the reader allocate: its own size, plus its size again for
    # bfloat16 storages upcast to float32, plus a little for small records.
    archive = _Archive(file, start, size, budget=2 * size + (1 << 20))
    try:
        return _load_archive(archive)
    finally:
        archive.close()


def _load_archive(archive):
    if "data.pkl" not in archive.entries:
        raise MalformedContent(f"{_LEGACY_HINT} without data.pkl: not a torch.save file")
    byteorder = "little"
    if "byteorder" in archive.entries:
        raw = archive.read_small("byteorder")
        if raw not in (b"little", b"big"):
            raise MalformedContent(f"the byteorder record is {raw[:20]!r}, not little or big")
        byteorder = raw.decode()
    for key in ("version", ".data/version"):
        if key in archive.entries:
            raw = archive.read_small(key).strip()
            if not raw.isdigit() or not 1 <= int(raw) <= _MAX_FORMAT_VERSION:
                raise MalformedContent(
                    f"the {key} record is {raw[:20]!r}; this reader knows torch's zip format "
                    f"versions 1 to {_MAX_FORMAT_VERSION}"
                )
    data = archive.read_small("data.pkl")
    reader = _Reader(archive, byteorder)
    problem = None
    try:
        result = SafeUnpickler(
            _BytesSource(data), globals=_globals(reader), allowed=_ALLOWED,
            persistent_load=reader.persistent_load, build=_build,
        ).load()
    except (UnsafeContent, MalformedContent) as exc:
        problem = exc
    # Damage anywhere in the file is reported as damage, whatever the pickle tripped over.
    archive.verify_rest()
    if problem is not None:
        raise problem
    return steps_as_ints(result)


class _BytesSource:
    """The reader interface :class:`SafeUnpickler` needs, over bytes in memory."""

    def __init__(self, data):
        self._data = data
        self._pos = 0

    def tell(self):
        return self._pos

    def remaining(self):
        return len(self._data) - self._pos

    def read(self, size):
        if size > self.remaining():
            raise MalformedContent(f"{size} bytes are needed at byte {self._pos} of data.pkl, "
                                   f"which has {len(self._data)}")
        data = self._data[self._pos:self._pos + size]
        self._pos += size
        return data

    def readline(self):
        end = self._data.find(b"\n", self._pos)
        if end < 0:
            raise MalformedContent("a text opcode's line has no end")
        line = self._data[self._pos:end]
        self._pos = end + 1
        return line

    def read_array(self, size):
        return np.frombuffer(self.read(size), dtype=np.uint8).copy()


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _torch_dtype_name(dtype):
    if dtype.names is None and dtype.kind in "biufc":
        name = dtype.newbyteorder("=").name if dtype.itemsize > 1 else dtype.name
        if name in _TORCH_DTYPES:
            return name
    if dtype.kind == "V" and dtype.names is None:
        for ml_name in _ML_DTYPES:
            ml = _ml_dtype(ml_name)
            if ml is not None and dtype == ml:
                return ml_name
    return None


class _TorchEncoder(_encoder._Encoder):
    """torch.save's protocol 2 pickle: only opcodes torch's weights_only unpickler knows, and
    each array as a tensor on a storage of its own, collected in ``self.storages``."""

    def __init__(self, sink):
        super().__init__(sink)
        self.storages = []  # (key, array), in the order of their keys

    def _header(self, size):
        return b"\x80\x02"

    def _memoize(self, key):
        index = len(self._memo)
        self._memo[key] = index
        self._put(b"q" + bytes((index,)) if index < 0x100 else b"r" + struct.pack("<I", index))

    def _global(self, module, name):
        index = self._memo.get(("global", module, name))
        if index is not None:
            self._put_get(index)
            return
        self._put(b"c" + module.encode() + b"\n" + name.encode() + b"\n")
        self._memoize(("global", module, name))

    def _emit_str(self, text):
        data = text.encode("utf-8", "surrogatepass")
        if len(data) >= 1 << 32:
            raise _encoder._Unsupported("a str of 4 GiB or more does not fit torch's pickle",
                                        ValueError)
        self._put(b"X" + struct.pack("<I", len(data)))
        self._sink.write_buffer(memoryview(data))

    def _emit_int(self, value):
        code = _encoder._encode_int(value)
        if code[:1] == b"\x8b":
            raise _encoder._Unsupported(
                "an int of more than 255 bytes does not fit torch's pickle (no LONG4)", ValueError
            )
        self._put(code)

    def _emit_bytes(self, data):
        # Protocol 2 has no bytes opcode: _codecs.encode(str, "latin1"), as pickle writes it.
        self._global("_codecs", "encode")
        self._emit_str(data.decode("latin-1"))
        self._emit_str("latin1")
        self._put(b"\x86R")

    def _emit_scalar(self, scalar):
        self._emit_array(np.asarray(scalar), memo_key=None)

    def _emit_array(self, array, memo_key):
        array = np.asarray(array)
        dtype_name = _torch_dtype_name(array.dtype)
        if dtype_name is None:
            raise _encoder._Unsupported(
                f"a NumPy array of dtype {array.dtype} has no torch dtype (torch has bool, "
                "integers, float16/32/64, complex64/128 and, through ml_dtypes, bfloat16)"
            )
        key = str(len(self.storages))
        self.storages.append((key, array))
        shape = array.shape
        strides, step = [], 1
        for dim in reversed(shape):
            strides.append(step)
            step *= max(dim, 1)
        legacy = _STORAGE_FOR_DTYPE.get(dtype_name)
        self._global("torch._utils", "_rebuild_tensor_v2" if legacy else "_rebuild_tensor_v3")
        self._put(b"((")
        self._emit_str("storage")
        if legacy:
            self._global("torch", legacy)
            numel = array.size
        else:
            self._global("torch.storage", "UntypedStorage")
            numel = array.nbytes
        self._emit_str(key)
        self._emit_str("cpu")
        self._emit_int(numel)
        self._put(b"tQ")
        self._emit_int(0)
        self._emit_shape(shape)
        self._emit_shape(tuple(reversed(strides)))
        self._put(b"\x89")  # requires_grad False
        self._global("collections", "OrderedDict")
        self._put(b")R")
        if not legacy:
            self._global("torch", dtype_name)
        self._put(b"tR")
        if memo_key is not None:
            self._memoize(memo_key)


class _BytesSink(_encoder._Sink):
    """Collect the pickle in memory (it is small: array data goes to entries of their own)."""

    def __init__(self):
        self.buffer = io.BytesIO()
        super().__init__(self.buffer)


# Sizes and offsets from this value on need ZIP64 records (a module constant so that tests can
# lower it and exercise the ZIP64 path with small files).
_ZIP64_LIMIT = 0xFFFFFFFF

# A storage larger than this is read in pieces of this size by a thread pool (page faults,
# copies and CRC-32s in parallel; os.preadv and zlib.crc32 release the GIL).
_PARALLEL_PIECE = 8 << 20


class _ZipWriter:
    """Write stored, 64-byte aligned entries with data descriptors, as torch.save does."""

    def __init__(self, file, prefix="archive"):
        self._file = file
        self._prefix = prefix
        self._offset = 0
        self._central = []

    def _write(self, data):
        _encoder._write_all(self._file, memoryview(data))
        self._offset += len(data)

    def entry(self, key, size, fill):
        """Write entry ``key`` of ``size`` bytes; ``fill(sink)`` writes the data to the sink."""
        name = f"{self._prefix}/{key}".encode()
        header_offset = self._offset
        zip64 = size >= _ZIP64_LIMIT or header_offset >= _ZIP64_LIMIT
        extra = struct.pack("<HHQQ", 1, 16, size, size) if zip64 else b""
        unpadded = header_offset + _LOCAL.size + len(name) + len(extra)
        pad = -(unpadded + 4) % _ALIGNMENT
        extra += struct.pack("<HH", 0x4246, pad) + b"Z" * pad  # "FB": torch's alignment padding
        field = 0xFFFFFFFF if zip64 else size
        self._write(_LOCAL.pack(b"PK\x03\x04", 45 if zip64 else 20, 0x0808, 0, 0, 0, 0,
                                field, field, len(name), len(extra)) + name + extra)
        sink = _encoder._Sink(self._file)
        try:
            fill(sink)
            sink.flush()
            crc = sink.crc.value()
        finally:
            sink.crc.close()
        if sink.size != size:
            raise RuntimeError(f"entry {key!r} changed while it was being saved")
        self._offset += size
        if zip64:
            self._write(_DESCRIPTOR64.pack(b"PK\x07\x08", crc, size, size))
        else:
            self._write(_DESCRIPTOR32.pack(b"PK\x07\x08", crc, size, size))
        self._central.append((name, crc, size, header_offset))

    def finish(self):
        cd_offset = self._offset
        for name, crc, size, header_offset in self._central:
            values = []
            size_field = offset_field = None
            if size >= _ZIP64_LIMIT:
                values += [size, size]
                size_field = 0xFFFFFFFF
            if header_offset >= _ZIP64_LIMIT:
                values.append(header_offset)
                offset_field = 0xFFFFFFFF
            extra = (struct.pack(f"<HH{len(values)}Q", 1, 8 * len(values), *values)
                     if values else b"")
            version = 45 if values else 20
            self._write(_CENTRAL.pack(
                b"PK\x01\x02", version, version, 0x0808, 0, 0, 0, crc,
                size if size_field is None else size_field,
                size if size_field is None else size_field,
                len(name), len(extra), 0, 0, 0, 0,
                header_offset if offset_field is None else offset_field,
            ) + name + extra)
        cd_size = self._offset - cd_offset
        count = len(self._central)
        if cd_offset >= _ZIP64_LIMIT or cd_size >= _ZIP64_LIMIT or count >= 0xFFFF:
            zip64_offset = self._offset
            self._write(_ZIP64_EOCD.pack(b"PK\x06\x06", _ZIP64_EOCD.size - 12, 45, 45, 0, 0,
                                         count, count, cd_size, cd_offset))
            self._write(_ZIP64_LOCATOR.pack(b"PK\x06\x07", 0, zip64_offset, 1))
            self._write(_EOCD.pack(b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF,
                                   0xFFFFFFFF, 0))
        else:
            self._write(_EOCD.pack(b"PK\x05\x06", 0, 0, count, count, cd_size, cd_offset, 0))


def writer(obj):
    """Validate ``obj`` for torch's format; return ``write(file)`` that writes the archive."""
    obj = steps_as_arrays(obj)
    sink = _BytesSink()
    encoder = _TorchEncoder(sink)
    encoder.encode(obj)
    sink.flush()
    sink.crc.close()
    pickle_bytes = sink.buffer.getvalue()
    storages = encoder.storages

    def write(file):
        archive = _ZipWriter(file)

        def small(data):
            return lambda entry_sink: entry_sink.write_buffer(memoryview(data))

        archive.entry("data.pkl", len(pickle_bytes), small(pickle_bytes))
        for key, data in (("byteorder", b"little"), (".format_version", b"1"),
                          (".storage_alignment", str(_ALIGNMENT).encode())):
            archive.entry(key, len(data), small(data))
        for key, array in storages:
            native = array if array.dtype.isnative or array.dtype.itemsize == 1 else (
                array.astype(array.dtype.newbyteorder("=")))
            archive.entry(f"data/{key}", native.nbytes,
                          lambda entry_sink, native=native: entry_sink.write_array(native, "C"))
        archive.entry("version", 2, small(b"3\n"))
        archive.finish()

    return write
