"""Saving to a path is atomic and durable; failures leave the old checkpoint and no temporary file.

Every failure test checks the same four things: the exception (type, errno, path), the old file's
bytes, the directory listing (no temporary file left) and the object that was being saved.
"""

import errno
import io
import os
import pickle
import random
import resource
import shutil
import signal
import stat
import tempfile
import time

import numpy as np
import pytest

import fastoptim as fo
from fastoptim.io import encoder as ck

from test_checkpoint import assert_same, training_checkpoint


@pytest.fixture
def old_checkpoint(tmp_path):
    """A directory holding one complete checkpoint; yields (path, its bytes)."""
    path = tmp_path / "run.ckpt"
    fo.save({"epoch": 1, "w": np.arange(10.0)}, path)
    return path, path.read_bytes()


def big_checkpoint():
    """A training checkpoint with an array of 1.5 I/O chunks: saving it takes several writes."""
    obj = training_checkpoint()
    obj["model"]["embedding"] = np.ones(3 * ck._IO_CHUNK // 8, np.float32)
    return obj


def assert_untouched(path, old_bytes, obj=None, snapshot=None):
    assert path.read_bytes() == old_bytes
    assert sorted(os.listdir(path.parent)) == [path.name], "a temporary file was left behind"
    assert fo.load(path)["epoch"] == 1
    if obj is not None:
        assert_same(snapshot, obj)


def run_in_child(func, *, uid=None):
    """Run ``func()`` in a forked child (optionally as another user); return its outcome.

    The outcome is ("ok", value) or ("raised", type name, errno, filename, message).
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(read_fd)
            if uid is not None:
                os.setgid(uid)
                os.setuid(uid)
            outcome = ("ok", func())
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            outcome = ("raised", type(exc).__name__, getattr(exc, "errno", None),
                       getattr(exc, "filename", None), str(exc))
        with os.fdopen(write_fd, "wb") as pipe:
            pickle.dump(outcome, pipe)
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return pickle.loads(data)


# ---- successful saves ----------------------------------------------------------------------------


def test_save_replaces_the_file_and_leaves_nothing_else(old_checkpoint):
    path, _ = old_checkpoint
    obj = training_checkpoint()
    fo.save(obj, path)
    assert os.listdir(path.parent) == [path.name]
    assert_same(obj, fo.load(path))
    fo.save(obj, str(path))  # str paths and PathLike both work
    fo.save(obj, os.fsencode(str(path)))
    assert_same(obj, fo.load(str(path)))


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_new_file_gets_the_permissions_open_would_give(tmp_path, umask):
    previous = os.umask(umask)
    try:
        fo.save({}, tmp_path / "new.ckpt")
        with open(tmp_path / "by_open", "wb"):
            pass
    finally:
        os.umask(previous)
    mode = stat.S_IMODE(os.stat(tmp_path / "new.ckpt").st_mode)
    assert mode == 0o666 & ~umask
    assert mode == stat.S_IMODE(os.stat(tmp_path / "by_open").st_mode)


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o444, 0o604])
def test_existing_file_keeps_its_permission_bits(tmp_path, mode):
    path = tmp_path / "ckpt"
    fo.save({}, path)
    os.chmod(path, mode)
    fo.save({"new": 1}, path)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    assert fo.load(path) == {"new": 1}


def test_symlink_is_followed_and_its_target_replaced(tmp_path):
    target = tmp_path / "ckpt_100"
    fo.save({"epoch": 100}, target)
    link = tmp_path / "latest"
    link.symlink_to(target.name)
    fo.save({"epoch": 101}, link)
    assert link.is_symlink()
    assert fo.load(target) == {"epoch": 101}
    assert sorted(os.listdir(tmp_path)) == ["ckpt_100", "latest"]


def test_temporary_file_is_beside_the_target_and_recognisable(tmp_path, monkeypatch):
    seen = []
    original = ck._write_all

    def spy(file, view):
        seen.extend(os.listdir(tmp_path))
        return original(file, view)

    monkeypatch.setattr(ck, "_write_all", spy)
    fo.save({"a": 1}, tmp_path / "model.ckpt")
    temps = {name for name in seen if name != "model.ckpt"}
    assert len(temps) == 1
    (temp,) = temps
    assert temp.startswith(".model.ckpt.fastoptim-tmp-") and len(temp) == len(".model.ckpt") + 23
    assert os.listdir(tmp_path) == ["model.ckpt"]


def test_very_long_names_still_get_a_valid_temporary_name(tmp_path):
    path = tmp_path / ("n" * 250)
    fo.save({"a": 1}, path)
    assert fo.load(path) == {"a": 1}


# ---- failures ------------------------------------------------------------------------------------


def test_missing_directory_is_file_not_found_naming_the_path(tmp_path):
    path = tmp_path / "missing" / "run.ckpt"
    with pytest.raises(FileNotFoundError) as info:
        fo.save({}, path)
    assert info.value.errno == errno.ENOENT and info.value.filename == str(path)
    assert os.listdir(tmp_path) == []


def test_directory_as_target_is_refused(tmp_path):
    with pytest.raises(IsADirectoryError) as info:
        fo.save({}, tmp_path)
    assert info.value.filename == str(tmp_path)
    assert os.listdir(tmp_path) == []


def test_read_only_directory(old_checkpoint):
    path, old_bytes = old_checkpoint
    obj = training_checkpoint()
    if os.geteuid() != 0:
        os.chmod(path.parent, 0o555)
        try:
            with pytest.raises(PermissionError) as info:
                fo.save(obj, path)
        finally:
            os.chmod(path.parent, 0o755)
        assert info.value.errno == errno.EACCES and info.value.filename == str(path)
        assert_untouched(path, old_bytes)
        return
    # root ignores directory permissions: run the save as 'nobody' in a directory it may read
    # but not write (tmp_path's parents are private to root, so use a world-readable one).
    directory = tempfile.mkdtemp(prefix="fastoptim-readonly-")
    try:
        os.chmod(directory, 0o755)
        shared = os.path.join(directory, "run.ckpt")
        shutil.copyfile(path, shared)
        os.chmod(directory, 0o555)
        outcome = run_in_child(lambda: fo.save(obj, shared), uid=65534)
        assert outcome[:4] == ("raised", "PermissionError", errno.EACCES, shared), outcome
        assert "temporary file" in outcome[4]
        with open(shared, "rb") as file:
            assert file.read() == old_bytes
        assert os.listdir(directory) == ["run.ckpt"]
    finally:
        os.chmod(directory, 0o755)
        shutil.rmtree(directory)


@pytest.mark.parametrize(
    "error",
    [PermissionError(errno.EACCES, "Permission denied"), OSError(errno.EXDEV, "Cross-device"),
     OSError(errno.EIO, "I/O error"), IsADirectoryError(errno.EISDIR, "Is a directory")],
)
def test_failing_rename(old_checkpoint, monkeypatch, error):
    path, old_bytes = old_checkpoint
    obj = training_checkpoint()

    def failing_replace(source, target):
        raise error

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError) as info:
        fo.save(obj, path)
    monkeypatch.undo()
    assert type(info.value) is type(error) and info.value.errno == error.errno
    assert info.value.filename == str(path) and "renaming" in str(info.value)
    assert info.value.__cause__ is error
    assert_untouched(path, old_bytes)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO])
def test_write_errors(old_checkpoint, monkeypatch, code):
    path, old_bytes = old_checkpoint
    obj = big_checkpoint()
    snapshot = pickle.loads(pickle.dumps(obj))
    calls = []
    original = ck._write_all

    def failing_write(file, view):
        calls.append(len(view))
        if len(calls) == 2:  # after some data has reached the temporary file
            raise OSError(code, os.strerror(code))
        return original(file, view)

    monkeypatch.setattr(ck, "_write_all", failing_write)
    with pytest.raises(OSError) as info:
        fo.save(obj, path)
    monkeypatch.undo()
    assert info.value.errno == code and info.value.filename == str(path)
    assert "writing" in str(info.value)
    assert_untouched(path, old_bytes, obj, snapshot)


def test_fsync_failure(old_checkpoint, monkeypatch):
    path, old_bytes = old_checkpoint

    def failing_fsync(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError) as info:
        fo.save({"epoch": 2}, path)
    monkeypatch.undo()
    assert info.value.errno == errno.EIO and "fsync" in str(info.value)
    assert_untouched(path, old_bytes)


def test_full_disk_in_a_child_with_a_file_size_limit(old_checkpoint):
    path, old_bytes = old_checkpoint
    big = {"w": np.ones(1 << 20, np.float32)}  # 4 MiB: far past the limit below

    def save_with_limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, 256 << 10))
        fo.save(big, path)

    outcome = run_in_child(save_with_limit)
    assert outcome[:4] == ("raised", "OSError", errno.EFBIG, str(path)), outcome
    assert_untouched(path, old_bytes)


def test_exception_in_the_middle_of_serialising(old_checkpoint, monkeypatch):
    path, old_bytes = old_checkpoint
    obj = big_checkpoint()
    snapshot = pickle.loads(pickle.dumps(obj))
    original = ck._Sink.write_array
    arrays = []

    def failing_write_array(self, array, order):
        arrays.append(array)
        if len(arrays) == 3:  # deep inside obj['optimizer']['state'][0]
            raise RuntimeError("dictionary changed size during iteration")
        return original(self, array, order)

    monkeypatch.setattr(ck._Sink, "write_array", failing_write_array)
    with pytest.raises(RuntimeError, match="dictionary changed size"):
        fo.save(obj, path)
    monkeypatch.undo()
    assert_untouched(path, old_bytes, obj, snapshot)


def test_keyboard_interrupt_during_write(old_checkpoint, monkeypatch):
    path, old_bytes = old_checkpoint
    obj = big_checkpoint()
    snapshot = pickle.loads(pickle.dumps(obj))
    calls = []
    original = ck._write_all

    def interrupted_write(file, view):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(file, view)

    monkeypatch.setattr(ck, "_write_all", interrupted_write)
    with pytest.raises(KeyboardInterrupt):
        fo.save(obj, path)
    monkeypatch.undo()
    assert_untouched(path, old_bytes, obj, snapshot)


def test_unsupported_object_leaves_the_old_file(old_checkpoint):
    path, old_bytes = old_checkpoint
    with pytest.raises(TypeError):
        fo.save({"epoch": 2, "bad": object()}, path)
    assert_untouched(path, old_bytes)


def test_saving_to_a_file_object_writes_in_place(tmp_path):
    # Documented: not atomic. A failure part-way leaves what was written so far.
    buffer = io.BytesIO(b"old contents")
    fo.save({"a": np.arange(3)}, buffer)
    buffer.seek(0)
    assert fo.load(buffer)["a"].tolist() == [0, 1, 2]


# ---- crashes and concurrency ---------------------------------------------------------------------


def _versions(count, size):
    return [{"version": index, "w": np.full(size + index * 1024, index, np.float32)}
            for index in range(count)]


def _check_version(loaded, versions):
    expected = versions[loaded["version"]]
    assert loaded["w"].shape == expected["w"].shape
    assert (loaded["w"] == loaded["version"]).all()


@pytest.mark.slow
def test_kill_9_during_a_save_loop(tmp_path):
    path = tmp_path / "run.ckpt"
    versions = _versions(3, 1 << 20)  # 4 MiB each
    fo.save(versions[0], path)
    rng = random.Random(0)
    stale_seen = 0
    for _ in range(20):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the saving child, killed by the parent
            try:
                index = 1
                while True:
                    fo.save(versions[index], path)
                    index = 1 + (index % 2)
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.005, 0.08))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        _check_version(fo.load(path), versions)
        stale = [name for name in os.listdir(tmp_path) if name != path.name]
        assert all(name.startswith(".run.ckpt.fastoptim-tmp-") for name in stale), stale
        stale_seen += bool(stale)
        for name in stale:  # what the docs tell users to do with leftovers after a kill
            os.unlink(tmp_path / name)
    assert stale_seen, "no kill landed during a write: the test did not exercise the window"


@pytest.mark.slow
def test_concurrent_writers_and_a_reader(tmp_path):
    path = tmp_path / "run.ckpt"
    versions = _versions(4, 1 << 18)  # 1 MiB each
    fo.save(versions[0], path)
    deadline = time.monotonic() + 2.0
    writers = []
    for index in (1, 2, 3):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - a writer
            code = 0
            try:
                while time.monotonic() < deadline:
                    fo.save(versions[index], path)
            except BaseException:  # noqa: BLE001
                code = 1
            os._exit(code)
        writers.append(pid)
    loads = {index: 0 for index in range(4)}
    while time.monotonic() < deadline:
        loaded = fo.load(path)  # must always be one complete checkpoint
        _check_version(loaded, versions)
        loads[loaded["version"]] += 1
    for pid in writers:
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert sum(loads.values()) > 10 and sum(loads[i] > 0 for i in (1, 2, 3)) >= 2, loads
    assert os.listdir(tmp_path) == [path.name]
    _check_version(fo.load(path), versions)
