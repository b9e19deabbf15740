"""Writing a file atomically and durably, the way :func:`fastoptim.save` writes a path.

The bytes go to a temporary file beside the target, are flushed and fsynced, and the temporary
file is renamed onto the target, after which the directory is fsynced: until the rename the path
keeps its old contents, and after it the new contents survive a power cut. Both checkpoint
formats (fastoptim's and torch's zip) are written through :func:`write_path`.

A path that exists and is not a regular file is never replaced by the rename: a character device
(``/dev/null``) or a FIFO is written directly, without truncation or fsync; a block device, a
socket or anything else is refused.
"""

import errno
import io
import os
import secrets
import stat

__all__ = ["write_path", "open_without_blocking"]

_TEMP_MARKER = ".fastoptim-tmp-"


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


def write_path(path, write):
    """Call ``write(file)`` with a binary file whose contents then replace ``path`` atomically.

    ``write`` must write everything; if it raises, ``path`` keeps its old contents and the
    temporary file is removed.
    """
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
        if not stat.S_ISREG(info.st_mode):
            _write_special(target, path, info, write)
            return
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
            write(file)
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



_SPECIAL_KINDS = (
    (stat.S_ISCHR, "a character device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
)


def _write_special(target, path, info, write):
    """Write to an existing non-regular file in place: the rename would destroy the node."""
    kind = next((name for test, name in _SPECIAL_KINDS if test(info.st_mode)), "not a regular file")
    if not (stat.S_ISCHR(info.st_mode) or stat.S_ISFIFO(info.st_mode)):
        raise OSError(
            errno.EINVAL,
            f"{path!r} is {kind}: fastoptim.save writes regular files (atomically), character "
            "devices and FIFOs (directly), and never replaces a device node or socket; save to a "
            "regular file instead",
            path,
        )
    # Opening a FIFO for writing with no reader would block forever; without blocking it fails
    # with ENXIO instead.
    try:
        fd = open_without_blocking(target, os.O_WRONLY)
    except OSError as exc:
        if exc.errno == errno.ENXIO and stat.S_ISFIFO(info.st_mode):
            raise OSError(
                exc.errno,
                f"no process has the FIFO {path!r} open for reading (fastoptim.save writes a "
                "FIFO directly and does not wait for a reader); start the reader first",
                path,
            ) from exc
        _raise_os_error(exc, path, f"opening {kind} for writing")
    doing = f"writing to {kind}"
    try:
        file = io.FileIO(fd, "wb", closefd=True)
    except BaseException:
        os.close(fd)
        raise
    try:
        with file:
            write(file)
    except OSError as exc:
        _raise_os_error(exc, path, doing)


def open_without_blocking(path, flags):
    """``os.open`` with O_NONBLOCK, so that a FIFO or terminal never blocks the open itself; the
    descriptor is returned in blocking mode, for ordinary reads and writes."""
    flags |= getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags)
    if hasattr(os, "set_blocking"):
        try:
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
    return fd
