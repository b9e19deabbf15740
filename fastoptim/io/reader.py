"""Reading a file given to :func:`fastoptim.load`: what it is, and its contents, safely.

Every source ends up here, opened without blocking (a FIFO with no writer reads as empty, never
hangs in ``open``). The first bytes and the last 32 decide what the file is:

* a fastoptim checkpoint (the footer): its checksum is verified and its pickle read by the
  restricted interpreter of :mod:`fastoptim.io.unpickler` (or, with ``weights_only=False``, by
  ``pickle`` after the checksum matched);
* a torch.save zip archive: read by :mod:`fastoptim.io.torchfile`;
* a checkpoint's header without its footer: a truncated checkpoint;
* anything else is parsed (never executed) by the restricted interpreter to say what it is: a
  pickle naming a global or opcode that is not allowed is an :class:`UnsafeCheckpointError` naming
  it; a well-formed plain pickle of allowed types is returned only when the caller asked for
  unverified pickles; everything else is a :class:`CorruptCheckpointError`.

A source that cannot seek (a pipe, a FIFO, a socket, a character device) is read as a stream: no
more than the pickle needs, in pieces, with the length the header declares as its bound, so an
endless or oversized stream fails as soon as its bytes stop making sense.
"""

import errno
import io
import os
import pickle
import stat
import sys
import zlib

import numpy as np

from fastoptim.io.atomic import open_without_blocking
from fastoptim.io.errors import CorruptCheckpointError, UnsafeCheckpointError
from fastoptim.io.format import (
    _IO_CHUNK, _READ_BLOCK, _READ_PIECE, _Crc32, _CHECKSUM_CRC32, FOOTER_SIZE, FORMAT_VERSION,
    HEADER_SIZE, parse_header, starts_like_checkpoint, unpack_footer,
)
from fastoptim.io.unpickler import MalformedContent, SafeUnpickler, UnsafeContent

__all__ = ["open_source", "load_file"]

# The pickle that starts torch's legacy (non-zip) format: PROTO 2, LONG1 of torch's magic number.
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
# A stream without a declared length may not make a pickle text line longer than this.
_MAX_STREAM_LINE = 16 << 20


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


class _StreamReader:
    """The pickle bytes of a stream that cannot seek, read only as far as they are needed.

    ``limit`` is the pickle's length as its header declares it (None for a pickle without a
    header: as far as the stream goes). Reads come in pieces, so the memory used follows the
    bytes that actually arrived, never a length the stream merely claims; nothing is read past
    ``limit``, so a stream that goes on after the checkpoint stays there for the next reader.
    """

    def __init__(self, file, prefix, limit):
        self._file = file
        self._limit = sys.maxsize if limit is None else limit
        self._bounded = limit is not None
        self._buffer = bytes(prefix)
        self._pos = 0
        self._base = 0  # stream offset of self._buffer[0]
        self.crc = 0

    def tell(self):
        return self._base + self._pos

    def remaining(self):
        return self._limit - self.tell()

    def _read_some(self, want):
        data = self._file.read(want)
        if not data:
            raise MalformedContent(
                f"the stream ended at byte {self._base + len(self._buffer)}, in the middle of "
                "the pickle"
            )
        return data

    def _ensure(self, size):
        have = len(self._buffer) - self._pos
        if have >= size:
            return
        if size > self.remaining():
            raise MalformedContent(
                f"{size} bytes are needed at byte {self.tell()}, but the checkpoint declares "
                f"{self._limit} bytes"
            )
        parts = [self._buffer[self._pos:]]
        self._base += self._pos
        while have < size:
            want = min(max(size - have, _READ_BLOCK), self._limit - self._base - have)
            data = self._read_some(want)
            parts.append(data)
            have += len(data)
        self._buffer, self._pos = b"".join(parts), 0

    def _take(self, size):
        data = self._buffer[self._pos:self._pos + size]
        self._pos += size
        self.crc = zlib.crc32(data, self.crc)
        return data

    def read(self, size):
        self._ensure(size)
        return self._take(size)

    def readline(self):
        while True:
            end = self._buffer.find(b"\n", self._pos)
            if end >= 0:
                return self._take(end - self._pos + 1)[:-1]
            have = len(self._buffer) - self._pos
            if have > _MAX_STREAM_LINE and not self._bounded:
                raise MalformedContent(
                    f"a text opcode's line is longer than {_MAX_STREAM_LINE} bytes"
                )
            self._ensure(have + 1)

    def read_array(self, size):
        if size > self.remaining():
            raise MalformedContent(
                f"{size} bytes are needed at byte {self.tell()}, but the checkpoint declares "
                f"{self._limit} bytes"
            )
        have = min(size, len(self._buffer) - self._pos)
        out = bytearray(self._take(have))
        if have < size:
            # The buffer is used up: the rest goes from the stream into the array's memory.
            self._base += len(self._buffer)
            self._buffer, self._pos = b"", 0
            while len(out) < size:
                data = self._read_some(min(_IO_CHUNK, size - len(out)))
                self.crc = zlib.crc32(data, self.crc)
                self._base += len(data)
                out += data
        return np.frombuffer(out, dtype=np.uint8)

    def trailer(self, size):
        """Up to ``size`` bytes after the pickle (fewer at the end of the stream), unchecked."""
        parts = [self._buffer[self._pos:self._pos + size]]
        self._pos += len(parts[0])
        have = len(parts[0])
        while have < size:
            data = self._file.read(size - have)
            if not data:
                break
            parts.append(data)
            have += len(data)
        return b"".join(parts)


def _file_label(file):
    name = getattr(file, "name", None)
    if isinstance(name, str):
        return name
    if isinstance(name, bytes):
        return os.fsdecode(name)
    return repr(file)


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
            f"{label}: {problem}. fastoptim.load(weights_only=True) refused it without importing "
            "or running anything it names; weights_only=False, which runs what the file names, "
            "is only for checkpoints you wrote yourself",
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


# --------------------------------------------------------------------------------------------
# What the file is
# --------------------------------------------------------------------------------------------


def _corrupt(label, message):
    return CorruptCheckpointError(f"{label}: {message}", label)


def _unsafe_unverified(label, problem, what):
    return UnsafeCheckpointError(
        f"{label}: {problem}. It is {what}; fastoptim.load refused it without importing or "
        "running anything it names",
        label,
    )


def _foreign_message(head):
    """What a file without fastoptim's footer is, from its first bytes (None: parse it)."""
    if starts_like_checkpoint(head):
        declared = parse_header(head)
        size = f" of {declared} bytes" if declared is not None else ""
        return (
            f"a fastoptim checkpoint{size} that was truncated or damaged: it starts with the "
            "checkpoint header but does not end with the footer"
        )
    if head.startswith(_TORCH_LEGACY_MAGIC):
        return (
            "a file in torch's legacy (non-zip) format, written with "
            "_use_new_zipfile_serialization=False, which fastoptim does not read; re-save it "
            "with torch.save in the default zip format"
        )
    return None


def _plain_pickle_error(label):
    return _corrupt(
        label,
        "not a fastoptim checkpoint: a plain pickle without fastoptim's footer, so it carries no "
        "checksum that could show truncation or damage. Its contents are of the allowed types; "
        "to read it anyway through the restricted reader, pass allow_plain_pickle=True",
    )


def _classify_pickle(reader, label, size, allow_plain_pickle,
                     what="not a fastoptim checkpoint (it has no footer)"):
    """Parse a file without fastoptim's footer with the restricted interpreter: it runs nothing,
    so it may look at anything. Return the object only if unverified pickles were allowed."""
    try:
        result = SafeUnpickler(reader).load()
    except UnsafeContent as exc:
        raise _unsafe_unverified(label, exc, what) from None
    except MemoryError:
        raise _corrupt(label, "not a fastoptim checkpoint: it asks for more memory than there "
                       "is") from None
    except Exception as exc:  # noqa: BLE001 - bytes that are no pickle of the allowed types
        raise _corrupt(
            label,
            f"not a fastoptim checkpoint, a torch.save file or a pickle of the types a "
            f"checkpoint holds, or truncated ({exc})",
        ) from None
    end = reader.tell()
    if size is not None and end != size:
        raise _corrupt(
            label,
            f"not a fastoptim checkpoint: it holds a pickle of {end} bytes followed by "
            f"{size - end} bytes that are neither fastoptim's footer nor anything else it reads",
        )
    if not allow_plain_pickle:
        raise _plain_pickle_error(label)
    return result


def open_source(path):
    """Open ``path`` for reading without blocking (a FIFO without a writer, a terminal)."""
    # Reads block again (a FIFO's writer may be slow); a FIFO that no process writes reads as
    # empty, which is reported as such.
    fd = open_without_blocking(path, os.O_RDONLY)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        # Unbuffered: the readers do their own buffering and read arrays straight into place.
        return io.FileIO(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise


def _seekable_span(file):
    """``(start, end)`` of a seekable file from its current position, or None for a stream."""
    try:
        if not file.seekable():
            return None
    except (AttributeError, OSError, ValueError):
        pass
    try:
        start = file.tell()
        end = file.seek(0, os.SEEK_END)
        file.seek(start)
    except (AttributeError, OSError, ValueError):
        return None
    if end is None or start is None:
        return None
    return start, end


def load_file(file, label, weights_only, allow_plain_pickle):
    """Load from an open binary file (a path's, or the caller's)."""
    span = _seekable_span(file)
    if span is None:
        return _load_stream(file, label, weights_only, allow_plain_pickle)
    start, end = span
    size = end - start
    head = _read_exact(file, 64)
    if size >= FOOTER_SIZE:
        file.seek(end - FOOTER_SIZE)
        tail = _read_exact(file, FOOTER_SIZE)
        if len(tail) != FOOTER_SIZE:
            raise _corrupt(label, "the file was truncated while being read")
        footer = unpack_footer(tail)
        if footer is not None:
            file.seek(start)
            result = _load_checkpoint(file, label, size, head, footer, weights_only)
            # Leave the file after the checkpoint, footer included, as reading it whole would.
            file.seek(end)
            return result
    if head.startswith(_ZIP_MAGICS):
        from fastoptim.io import torchfile  # noqa: PLC0415 - only for torch files

        file.seek(start)
        result = torchfile.load(file, label, start, size)
        file.seek(end)
        return result
    if not head:
        raise _corrupt(label, "the file is empty: not a fastoptim checkpoint")
    message = _foreign_message(head)
    if message is not None:
        raise _corrupt(label, message)
    file.seek(start)
    reader = _PayloadReader(file, size)
    try:
        result = _classify_pickle(reader, label, size, allow_plain_pickle)
    finally:
        reader.close()
    file.seek(end)
    return result


def _load_checkpoint(file, label, size, head, footer, weights_only):
    length, crc, version, checksum_kind, reserved, footer_ok = footer
    if not footer_ok:
        raise _corrupt(label, "checkpoint is corrupt: its footer is damaged (footer checksum "
                       "mismatch)")
    if version != FORMAT_VERSION or checksum_kind != _CHECKSUM_CRC32 or reserved:
        raise _corrupt(
            label,
            f"checkpoint format version {version} (checksum kind {checksum_kind}) is not "
            f"supported by this fastoptim, which reads version {FORMAT_VERSION}; it was written "
            "by a newer fastoptim: upgrade to load it",
        )
    if length != size - FOOTER_SIZE:
        raise _corrupt(
            label,
            f"checkpoint is corrupt or truncated: the footer records {length} bytes of data, but "
            f"{size - FOOTER_SIZE} bytes precede the footer",
        )
    declared = parse_header(head)
    if declared is not None and declared != length:
        raise _corrupt(
            label,
            f"checkpoint is corrupt: its header declares {declared} bytes of data and its footer "
            f"{length}",
        )
    if weights_only:
        return _load_safe(file, label, length, crc)
    if not isinstance(file, io.FileIO):
        return _load_unsafe(file, label, length, crc)
    # pickle reads opcode by opcode; give it a buffer, detached (not closed) afterwards.
    buffered = io.BufferedReader(file, _IO_CHUNK)
    try:
        return _load_unsafe(buffered, label, length, crc)
    finally:
        position = buffered.tell()
        buffered.detach()
        file.seek(position)


def _load_stream(file, label, weights_only, allow_plain_pickle):
    """Load from a source that cannot seek, reading no more than it declares."""
    head = _read_exact(file, HEADER_SIZE)
    if not head:
        raise _corrupt(label, "the stream is empty: not a fastoptim checkpoint")
    if head.startswith(_ZIP_MAGICS):
        raise _corrupt(
            label,
            "a zip archive (a torch.save file?) read from a stream that cannot seek; a zip "
            "archive's directory is at its end, so fastoptim reads it only from a file: save the "
            "stream to a file, or read it into io.BytesIO if it is small",
        )
    declared = parse_header(head)
    if declared is None:
        message = _foreign_message(head)
        if message is not None:
            raise _corrupt(label, message)
    elif declared < HEADER_SIZE + 1:
        raise _corrupt(label, f"checkpoint is corrupt: its header declares {declared} bytes")
    reader = _StreamReader(file, head, declared)
    try:
        if declared is None:
            return _load_headerless_stream(reader, label, allow_plain_pickle)
        return _load_declared_stream(reader, label, declared, weights_only)
    except MemoryError:
        raise _corrupt(label, "the stream holds or declares more data than fits in memory: not "
                       "a checkpoint that can be loaded here") from None


def _load_declared_stream(reader, label, declared, weights_only):
    if not weights_only:
        raise ValueError(
            f"{label}: weights_only=False needs a seekable file (the checksum is verified before "
            "pickle sees any byte); save the stream to a file first"
        )
    problem = None
    try:
        result = SafeUnpickler(reader).load()
        if reader.tell() != declared:
            raise MalformedContent(
                f"the pickle ends at byte {reader.tell()}, but the header declares {declared}"
            )
    except UnsafeContent as exc:
        raise _unsafe_unverified(
            label, exc, "a fastoptim checkpoint read from a stream, whose checksum was not yet "
            "verified"
        ) from None
    except MalformedContent as exc:
        problem = exc
    if problem is not None:
        raise _corrupt(label, f"checkpoint is corrupt or truncated: {problem}")
    footer = unpack_footer(reader.trailer(FOOTER_SIZE).rjust(FOOTER_SIZE, b"\0"))
    if footer is None or not footer[5]:
        raise _corrupt(label, "checkpoint is truncated or damaged: its footer is missing or "
                       "damaged")
    length, crc = footer[0], footer[1]
    if length != declared:
        raise _corrupt(label, f"checkpoint is corrupt: its header declares {declared} bytes "
                       f"and its footer {length}")
    if crc != reader.crc:
        raise _checksum_error(label, crc, reader.crc)
    return result


def _load_headerless_stream(reader, label, allow_plain_pickle):
    """A pickle without fastoptim's header: an older checkpoint (footer after STOP) or a plain
    pickle, told apart after the restricted interpreter has read it."""
    result = _classify_pickle(
        reader, label, None, allow_plain_pickle=True,
        what="a pickle read from a stream, whose checksum (if it has one) was not verified",
    )
    length, crc = reader.tell(), reader.crc
    trailer = reader.trailer(FOOTER_SIZE)
    if len(trailer) == FOOTER_SIZE:
        footer = unpack_footer(trailer)
        if footer is not None and footer[5] and footer[0] == length:
            if footer[1] != crc:
                raise _checksum_error(label, footer[1], crc)
            return result
    if trailer:
        raise _corrupt(label, "not a fastoptim checkpoint: a pickle followed by bytes that are "
                       "not fastoptim's footer")
    if not allow_plain_pickle:
        raise _plain_pickle_error(label)
    return result
