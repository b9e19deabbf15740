"""Files that are not fastoptim checkpoints: plain pickles classified without running anything,
and special files (FIFOs, devices, sockets, endless streams, bytes) handled without harm."""
import io
import os
import pickle
import socket
import stat
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fastoptim as fo
from test_checkpoint import assert_same

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fo.__file__)))


def attack_pickle(module, name, protocol, marker):
    # Written by hand (GLOBAL/STACK_GLOBAL + REDUCE) so that nothing is imported here either.
    arg = f"touch {marker}"
    if protocol < 4:
        body = b"c" + module.encode() + b"\n" + name.encode() + b"\n"
    else:
        body = pickle.dumps(module, protocol)[2:-1] + pickle.dumps(name, protocol)[2:-1] + b"\x93"
    head = b"\x80" + bytes((protocol,)) if protocol >= 2 else b""
    return head + body + pickle.dumps((arg,), min(protocol, 2))[2 if protocol >= 2 else 0:-1] + b"R."


ATTACKS = [("os", "system"), ("posix", "system"), ("subprocess", "Popen"), ("builtins", "eval"),
           ("builtins", "exec"), ("importlib", "import_module"), ("pickle", "loads"),
           ("numpy", "load"), ("builtins", "getattr")]


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("module, name", ATTACKS)
def test_plain_pickle_attacks_are_unsafe_and_named(module, name, protocol, tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the full unpickler was called")

    marker = tmp_path / "ran"
    data = attack_pickle(module, name, protocol, marker)
    path = tmp_path / "attack.pkl"
    path.write_bytes(data)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    for source in (path, io.BytesIO(data)):
        for allow in (False, True):
            with pytest.raises(fo.UnsafeCheckpointError) as info:
                fo.load(source, allow_plain_pickle=allow)
            message = str(info.value)
            assert f"'{module}.{name}'" in message
            assert "use pickle.load" not in message and "weights_only=False" not in message
            if not isinstance(source, os.PathLike):
                source.seek(0)
    assert not marker.exists()


def test_nested_unsafe_content_in_a_plain_pickle(tmp_path):
    data = pickle.dumps({"ok": [1, 2], "obj": np.array([object()], dtype=object)})
    with pytest.raises(fo.UnsafeCheckpointError, match="object arrays"):
        fo.load(io.BytesIO(data))


def test_plain_pickle_of_allowed_types_needs_the_keyword():
    obj = {"w": np.arange(5.0), "steps": [1, 2], "name": "x", "t": (1.5, None)}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        data = pickle.dumps(obj, protocol)
        with pytest.raises(fo.CorruptCheckpointError, match="allow_plain_pickle=True"):
            fo.load(io.BytesIO(data))
        assert_same(obj, fo.load(io.BytesIO(data), allow_plain_pickle=True))
    with pytest.raises(TypeError, match="allow_plain_pickle"):
        fo.load(io.BytesIO(data), allow_plain_pickle=1)


def test_full_unpickler_is_never_called_by_default(tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the full unpickler was called")

    obj = {"w": np.arange(3.0)}
    fo.save(obj, tmp_path / "ok")
    plain = tmp_path / "plain"
    plain.write_bytes(pickle.dumps(obj))
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    assert_same(obj, fo.load(tmp_path / "ok"))
    assert_same(obj, fo.load(plain, allow_plain_pickle=True))
    assert_same(obj, fo.load(plain, allow_plain_pickle=True, weights_only=False))


def test_bytes_are_refused_with_advice():
    data = io.BytesIO()
    fo.save({"a": 1}, data)
    with pytest.raises(TypeError, match=r"io\.BytesIO"):
        fo.load(data.getvalue())
    with pytest.raises(TypeError, match="os.fsdecode"):
        fo.load(b"/some/path")


# ---- special files ---------------------------------------------------------------------------


def test_save_to_a_fifo_writes_into_it_and_keeps_the_fifo(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    obj = {"w": np.arange(100_000.0)}
    received = []
    reader = threading.Thread(target=lambda: received.append(open(fifo, "rb").read()))
    reader.start()
    try:
        for _ in range(200):  # wait for the reader to open its end
            try:
                fo.save(obj, fifo)
                break
            except OSError as exc:
                assert "no process" in str(exc)
                threading.Event().wait(0.01)
    finally:
        reader.join(10)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert_same(obj, fo.load(io.BytesIO(received[0])))
    assert os.listdir(tmp_path) == ["fifo"]


def test_save_to_a_fifo_without_reader_fails_at_once(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="no process has the FIFO"):
        fo.save({"a": 1}, fifo)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_save_to_a_character_device_writes_it_directly(tmp_path):
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot create a device node here: {exc}")
    fo.save({"w": np.ones(1000)}, node)
    assert stat.S_ISCHR(os.stat(node).st_mode)
    assert os.listdir(tmp_path) == ["null"]


def test_save_to_a_socket_is_refused(tmp_path):
    path = tmp_path / "sock"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
    except OSError as exc:  # a path too long for AF_UNIX
        pytest.skip(str(exc))
    try:
        with pytest.raises(OSError, match="is a socket"):
            fo.save({"a": 1}, path)
        assert stat.S_ISSOCK(os.stat(path).st_mode)
    finally:
        server.close()


def _run(code, timeout=60):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": ROOT}, timeout=timeout)


def test_load_from_a_fifo_without_writer_does_not_block(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    result = _run(f"""
        import fastoptim as fo
        try:
            fo.load({str(fifo)!r})
        except fo.CorruptCheckpointError as exc:
            print("refused:", exc)
    """, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "empty" in result.stdout


def test_load_from_a_fifo_with_a_writer_reads_the_stream(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    obj = {"w": np.arange(50_000.0), "n": 3}
    fo.save(obj, tmp_path / "ckpt")
    # O_RDWR: the writer holds the FIFO open (as a writer) before the test opens it to read.
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, sys
        fd = os.open({str(fifo)!r}, os.O_RDWR)
        print("ready", flush=True)
        os.write(fd, open({str(tmp_path / 'ckpt')!r}, "rb").read())
        sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "ready\n"
        assert_same(obj, fo.load(fifo))
    finally:
        writer.stdin.close()
        writer.wait(30)


@pytest.mark.parametrize("source", ["/dev/zero", "/dev/urandom", "yes"])
def test_endless_streams_fail_fast_with_bounded_memory(source):
    feed = f"open({source!r}, 'rb')" if source.startswith("/") else (
        "__import__('subprocess').Popen(['yes'], stdout=-1).stdout")
    result = _run(f"""
        import resource, time, fastoptim as fo
        resource.setrlimit(resource.RLIMIT_AS, (1 << 31, 1 << 31))
        stream = {feed}
        start = time.perf_counter()
        outcomes = []
        for _ in range(20):
            try:
                fo.load(stream)
            except (fo.CorruptCheckpointError, fo.UnsafeCheckpointError) as exc:
                outcomes.append(type(exc).__name__)
        assert time.perf_counter() - start < 20, time.perf_counter() - start
        print(sorted(set(outcomes)), len(outcomes))
    """, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("20"), result.stdout


def test_stream_declaring_more_than_it_has_and_then_endless(tmp_path):
    # A valid header declaring 2**60 bytes, then an array header claiming 2**59 bytes, then zeros
    # forever: the reader must fail when memory runs out, as CorruptCheckpointError.
    from fastoptim.io.format import header
    prefix = header(2**60) + b"\x96" + (2**59).to_bytes(8, "little")
    result = _run(f"""
        import io, resource, fastoptim as fo
        resource.setrlimit(resource.RLIMIT_AS, (1 << 31, 1 << 31))
        class Endless(io.RawIOBase):
            def __init__(self):
                self.prefix = {prefix!r}
            def readable(self):
                return True
            def readinto(self, view):
                n = len(view)
                if self.prefix:
                    n = min(n, len(self.prefix)); view[:n] = self.prefix[:n]
                    self.prefix = self.prefix[n:]
                else:
                    view[:n] = bytes(n)
                return n
        try:
            fo.load(io.BufferedReader(Endless()))
        except fo.CorruptCheckpointError as exc:
            print("refused:", exc)
    """, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "refused" in result.stdout


def test_old_checkpoints_without_header_still_load(tmp_path):
    # fastoptim 0.1 wrote the same footer after a pickle without the header.
    from fastoptim.io.format import HEADER_SIZE, footer
    import zlib
    buffer = io.BytesIO()
    obj = {"w": np.arange(4.0), "step": 3}
    fo.save(obj, buffer)
    data = buffer.getvalue()
    old_pickle = b"\x80\x05" + data[HEADER_SIZE:-32]
    old = old_pickle + footer(len(old_pickle), zlib.crc32(old_pickle))
    assert_same(obj, fo.load(io.BytesIO(old)))
    read_fd, write_fd = os.pipe()
    os.write(write_fd, old)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as stream:
        assert_same(obj, fo.load(stream))
