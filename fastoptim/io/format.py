"""fastoptim's checkpoint format: header, footer, sizes and the CRC-32 they rest on.

A checkpoint is a pickle (protocol 5) followed by a 32-byte footer. The pickle is what plain
``pickle.load`` reads, and it stops at the STOP opcode without looking at the footer. The pickle
opens with a header that plain pickle reads and drops (a 16-byte bytes object and a POP); the
footer records the length of the pickle and its CRC-32, so truncation and flipped bits are found
before anything is returned::

    offset  size  field
    0       2     PROTO 5 (b"\\x80\\x05")
    2       2     SHORT_BINBYTES of 16 bytes (b"C\\x10")
    4       8     magic b"\\x89FOCKPT\\n"
    12      8     n, the length of the whole pickle (header included), little-endian uint64
    20      1     POP (b"0"): the header leaves nothing on the pickle stack
    21      n-21  the object, ending with STOP ('.')
    n+0     8     n, little-endian uint64
    n+8     4     CRC-32 (zlib.crc32) of the n pickle bytes
    n+12    2     format version (1)
    n+14    2     checksum kind (1: CRC-32)
    n+16    4     reserved, 0
    n+20    4     CRC-32 of footer bytes n+0 .. n+20
    n+24    8     magic b"\\x89FOCKPT\\n"

The header makes a checkpoint recognisable from its first bytes: a checkpoint cut anywhere, even
exactly before its footer (which leaves a complete pickle), is reported as a truncated checkpoint
and never passes as a plain pickle; and a stream is read with the length it declares as its
bound. Checkpoints written before the header existed (fastoptim 0.1) have the same footer and
still load; the format version is unchanged because every reader of version 1 reads the header
as an ordinary pickled bytes object.
"""

import collections
import concurrent.futures
import os
import struct
import zlib

__all__ = ["MAGIC", "FORMAT_VERSION", "HEADER_SIZE", "FOOTER_SIZE", "header", "footer",
           "parse_header", "crc32_combine"]

MAGIC = b"\x89FOCKPT\n"
FORMAT_VERSION = 1
_CHECKSUM_CRC32 = 1
_FOOTER = struct.Struct("<QIHHII8s")
FOOTER_SIZE = _FOOTER.size  # 32
# The header: PROTO 5, SHORT_BINBYTES(magic + uint64 length), POP.
_HEADER_PREFIX = b"\x80\x05C\x10" + MAGIC
_HEADER = struct.Struct("<12sQc")
HEADER_SIZE = _HEADER.size  # 21
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



def header(size):
    """The header of a pickle of ``size`` bytes (header included)."""
    return _HEADER.pack(_HEADER_PREFIX, size, b"0")


def parse_header(data):
    """Return the length a header declares, or None if ``data`` does not start with one."""
    if len(data) < HEADER_SIZE or not data.startswith(_HEADER_PREFIX):
        return None
    prefix, size, pop = _HEADER.unpack_from(data)
    return size if pop == b"0" else None


def starts_like_checkpoint(data):
    """True if ``data`` begins like a checkpoint written with a header (it may be cut short)."""
    prefix = _HEADER_PREFIX[:len(data)]
    return bool(data) and data[:len(prefix)] == prefix


def footer(size, crc):
    """The footer that follows ``size`` bytes of pickle whose CRC-32 is ``crc``."""
    head = struct.pack("<QIHHI", size, crc, FORMAT_VERSION, _CHECKSUM_CRC32, 0)
    return head + struct.pack("<I", zlib.crc32(head)) + MAGIC


def unpack_footer(data):
    """Return ``(length, crc, version, checksum_kind, reserved, footer_crc_ok)`` or None when
    ``data`` does not end with the magic."""
    length, crc, version, kind, reserved, footer_crc, magic = _FOOTER.unpack(data)
    if magic != MAGIC:
        return None
    return length, crc, version, kind, reserved, zlib.crc32(data[:_FOOTER_CHECKED]) == footer_crc


# --------------------------------------------------------------------------------------------
# CRC-32 of pieces summed apart (zlib's crc32_combine, which Python's zlib does not expose)
# --------------------------------------------------------------------------------------------

_CRC_POLY = 0xEDB88320  # the reflected CRC-32 polynomial


def _multmodp(a, b):
    """Multiply ``a`` and ``b`` modulo the CRC polynomial (reflected bit order), as zlib does."""
    m = 1 << 31
    p = 0
    while True:
        if a & m:
            p ^= b
            if not a & (m - 1):
                return p
        m >>= 1
        b = (b >> 1) ^ _CRC_POLY if b & 1 else b >> 1


def _x2n_table():
    table = [1 << 30]  # x^1
    for _ in range(31):
        table.append(_multmodp(table[-1], table[-1]))
    return table


_X2N = _x2n_table()


def _x2nmodp(n, k):
    """x^(n * 2^k) modulo the CRC polynomial."""
    p = 1 << 31  # x^0
    while n:
        if n & 1:
            p = _multmodp(_X2N[k & 31], p)
        n >>= 1
        k += 1
    return p


def crc32_combine(crc1, crc2, length2):
    """The CRC-32 of ``a + b`` from ``crc1 = crc32(a)``, ``crc2 = crc32(b)`` and ``len(b)``."""
    return _multmodp(_x2nmodp(length2, 3), crc1) ^ crc2


def parallel_crc32(view, workers=None, piece=_READ_PIECE):
    """The CRC-32 of a large buffer, summed in pieces on a thread pool and combined."""
    if len(view) <= piece:
        return zlib.crc32(view)
    starts = range(0, len(view), piece)
    with concurrent.futures.ThreadPoolExecutor(workers or _crc_workers()) as pool:
        crcs = list(pool.map(lambda start: zlib.crc32(view[start:start + piece]), starts))
    value = crcs[0]
    for start, crc in zip(starts[1:], crcs[1:]):
        value = crc32_combine(value, crc, min(piece, len(view) - start))
    return value


def _crc_workers():
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else (os.cpu_count() or 1)))
