"""torch.save files read by fo.load without torch, and fo.save(format="torch") read by torch.load:
round trips against live torch, resumed optimizer runs, ZIP64, and hostile torch files."""
import io
import os
import struct
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import fastoptim as fo
from fastoptim.io import torchfile
from test_checkpoint import assert_same

torch = pytest.importorskip("torch")

from optim_configs import ADAM_CONFIGS, ADAMW_CONFIGS, OPTIMIZERS, SGD_CONFIGS  # noqa: E402
from test_optimizer_parity import ADAM_MAX_ULP, Lockstep  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fo.__file__)))


def torch_bytes(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def model_like():
    """Tensors of every common dtype, with shared storages, offsets, strides and 0-d tensors."""
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(6, 8, generator=gen)
    return {
        "f32": torch.randn(3, 4, generator=gen),
        "f16": torch.randn(5, generator=gen).half(),
        "f64": torch.randn(2, 3, generator=gen, dtype=torch.float64),
        "i64": torch.arange(-3, 9),
        "i32": torch.arange(7, dtype=torch.int32).reshape(7, 1),
        "u8": torch.arange(200, 206, dtype=torch.uint8),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "bool": torch.tensor([[True, False], [False, True]]),
        "base": base,
        "transposed": base.t(),                 # non-contiguous view of the same storage
        "column": base[:, 3],                   # strided, with a storage offset
        "window": base[2:5, 1:7:2],             # offset and two strides
        "scalar": torch.tensor(2.5),            # 0-d
        "scalar_view": base[4, 5],              # 0-d view with an offset
        "expanded": torch.tensor([1.0, 2.0]).expand(3, 2),  # stride 0
        "empty": torch.empty(0, 4),
        "c64": torch.randn(3, dtype=torch.complex64, generator=gen),
        "nested": [torch.ones(2), {"deep": (torch.zeros(1, dtype=torch.int16),)}],
    }


def assert_tensors_equal(tensor, array):
    expected = tensor.detach().numpy()
    assert isinstance(array, np.ndarray), type(array)
    assert array.dtype == expected.dtype and array.shape == expected.shape
    np.testing.assert_array_equal(array, expected)


def walk_pairs(theirs, ours):
    if isinstance(theirs, torch.Tensor):
        yield theirs, ours
    elif isinstance(theirs, dict):
        assert list(theirs) == list(ours)
        for key in theirs:
            yield from walk_pairs(theirs[key], ours[key])
    elif isinstance(theirs, (list, tuple)):
        assert type(theirs) is type(ours) and len(theirs) == len(ours)
        for a, b in zip(theirs, ours):
            yield from walk_pairs(a, b)
    else:
        assert theirs == ours


# ---- torch.save -> fo.load --------------------------------------------------------------------


def test_model_like_dict_loads_without_torch_values_and_layout():
    obj = model_like()
    loaded = fo.load(io.BytesIO(torch_bytes(obj)))
    for tensor, array in walk_pairs(obj, loaded):
        assert_tensors_equal(tensor, array)
    # Views of one torch storage are views of one NumPy buffer, with torch's strides.
    for key in ("transposed", "column", "window", "scalar_view"):
        assert np.shares_memory(loaded[key], loaded["base"]), key
    assert loaded["transposed"].strides == (4, 32)
    assert loaded["scalar"].shape == () and loaded["scalar_view"].shape == ()
    loaded["base"][2, 3] = 100.0  # writes show through the views, as they would in torch
    assert loaded["transposed"][3, 2] == 100.0 and loaded["column"][2] == 100.0


def test_module_state_dict_is_an_ordered_dict_with_metadata(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    loaded = fo.load(path)
    assert type(loaded).__name__ == "OrderedDict"
    assert loaded._metadata == model.state_dict()._metadata
    for tensor, array in walk_pairs(dict(model.state_dict()), dict(loaded)):
        assert_tensors_equal(tensor, array)


def test_parameters_and_other_allowed_globals():
    obj = {"p": torch.nn.Parameter(torch.ones(3)), "size": torch.Size([2, 3]),
           "device": torch.device("cpu"), "bytes": b"\x00\xff", "complex": 1 + 2j,
           "counter": __import__("collections").Counter(a=2)}
    loaded = fo.load(io.BytesIO(torch_bytes(obj)))
    assert_tensors_equal(obj["p"], loaded["p"])
    assert loaded["size"] == (2, 3) and loaded["device"] == "cpu"
    assert loaded["bytes"] == b"\x00\xff" and loaded["complex"] == 1 + 2j
    assert loaded["counter"] == {"a": 2}


def test_new_dtypes_and_bfloat16():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    obj = {"u16": torch.tensor([1, 65535], dtype=torch.uint16),
           "u64": torch.tensor([2**63], dtype=torch.uint64),
           "bf16": torch.tensor([1.5, -2.25, 3e38], dtype=torch.bfloat16)}
    loaded = fo.load(io.BytesIO(torch_bytes(obj)))
    assert loaded["u16"].dtype == np.uint16 and loaded["u16"].tolist() == [1, 65535]
    assert loaded["u64"].dtype == np.uint64 and loaded["u64"].tolist() == [2**63]
    assert loaded["bf16"].dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(loaded["bf16"].astype(np.float32),
                                  obj["bf16"].float().numpy())


def test_bfloat16_without_ml_dtypes_is_upcast_to_float32(monkeypatch):
    monkeypatch.setattr(torchfile, "_ml_dtype", lambda name: None)
    tensor = torch.tensor([[1.5, -2.25], [3e38, 7.0]], dtype=torch.bfloat16)
    loaded = fo.load(io.BytesIO(torch_bytes({"w": tensor, "t": tensor.t()})))
    assert loaded["w"].dtype == np.float32
    np.testing.assert_array_equal(loaded["w"], tensor.float().numpy())
    np.testing.assert_array_equal(loaded["t"], tensor.float().numpy().T)
    assert np.shares_memory(loaded["w"], loaded["t"])


def test_big_endian_file():
    data = torch_bytes({"w": torch.arange(4, dtype=torch.float32), "i": torch.arange(3)})
    swapped = rewrite(data, byteorder=b"big", transform=lambda name, body: (
        np.frombuffer(body, "<f4").astype(">f4").tobytes() if name.endswith("data/0") else
        np.frombuffer(body, "<i8").astype(">i8").tobytes() if name.endswith("data/1") else body))
    loaded = fo.load(io.BytesIO(swapped))
    assert loaded["w"].tolist() == [0, 1, 2, 3] and loaded["i"].tolist() == [0, 1, 2]
    assert loaded["w"].dtype.isnative


# ---- fo.save(format="torch") -> torch.load ----------------------------------------------------


def test_torch_loads_what_fastoptim_writes(tmp_path):
    rng = np.random.default_rng(1)
    shared = rng.standard_normal((3, 4)).astype(np.float32)
    obj = {
        "f32": shared, "again": shared, "f16": rng.standard_normal(5).astype(np.float16),
        "f64": rng.standard_normal((2, 3)), "i64": np.arange(5), "i32": np.arange(3, dtype=np.int32),
        "u8": np.arange(4, dtype=np.uint8), "u16": np.arange(3, dtype=np.uint16),
        "bool": np.array([True, False]), "c128": np.array([1 + 2j]),
        "strided": np.arange(20.0).reshape(4, 5)[:, ::2], "fortran": np.asfortranarray(shared),
        "big_endian": np.arange(3, dtype=">f4"), "zero_d": np.array(3.5), "scalar": np.float32(1.25),
        "empty": np.zeros((0, 3)), "plain": [1, -2**70, 2.5, "text", b"\x00bytes", None, True, (1, 2)],
    }
    path = tmp_path / "out.pt"
    fo.save(obj, path, format="torch")
    back = torch.load(path, weights_only=True)
    for key, value in obj.items():
        if key == "plain":
            assert back[key] == value
            continue
        expected = np.asarray(value)
        assert back[key].numpy().dtype == expected.dtype.newbyteorder("=")
        np.testing.assert_array_equal(back[key].numpy(), expected)
    assert back["f32"].data_ptr() == back["again"].data_ptr()  # an array saved twice is shared
    # fastoptim reads its own torch files too, and every entry is 64-byte aligned.
    native = {k: np.asarray(v) for k, v in obj.items() if k != "plain"}
    native = {k: v.astype(v.dtype.newbyteorder("=")) for k, v in native.items()}
    assert_same(native,
                {k: v for k, v in fo.load(path).items() if k != "plain"})
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        for info in archive.infolist():
            if "/data/" in info.filename:
                assert (info.header_offset + 30 + len(info.filename) + len(info.extra)) % 64 == 0 \
                    or _data_offset(path, info) % 64 == 0


def _data_offset(path, info):
    with open(path, "rb") as file:
        file.seek(info.header_offset)
        header = file.read(30)
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len


def test_zip64_records(tmp_path, monkeypatch):
    monkeypatch.setattr(torchfile, "_ZIP64_LIMIT", 0)  # every size and offset through ZIP64
    obj = {"w": np.arange(1000, dtype=np.float32), "b": np.ones(3)}
    path = tmp_path / "zip64.pt"
    fo.save(obj, path, format="torch")
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
    back = torch.load(path, weights_only=True)
    np.testing.assert_array_equal(back["w"].numpy(), obj["w"])
    assert_same(obj, fo.load(path))


def test_unsupported_objects_are_refused_before_writing(tmp_path):
    path = tmp_path / "x.pt"
    path.write_bytes(b"old")
    for bad, match in [({"s": np.array(["a"])}, "dtype"), ({"f": lambda: 0}, "function"),
                       ({"g": np.float128(1) if hasattr(np, "float128") else object()}, None)]:
        with pytest.raises((TypeError, ValueError), match=match):
            fo.save(bad, path, format="torch")
    assert path.read_bytes() == b"old"
    with pytest.raises(ValueError, match="format"):
        fo.save({}, path, format="pickle")


# ---- resuming optimizer runs across the libraries ----------------------------------------------

RESUME_CONFIGS = SGD_CONFIGS[:3] + SGD_CONFIGS[4:] + ADAM_CONFIGS + ADAMW_CONFIGS


def _check(lock, config):
    if config.make.__name__ == "SGD" or "SGD" in config.id:
        lock.assert_bitwise_equal()
    else:
        assert lock.max_ulp() <= ADAM_MAX_ULP
        lock.assert_adam_state_matches()


def _copy_params(source, target):
    for s, t in zip(source, target):
        np.copyto(np.asarray(t) if isinstance(t, np.ndarray) else t.data.numpy(),
                  np.asarray(s) if isinstance(s, np.ndarray) else s.detach().numpy())


@pytest.mark.parametrize("config", RESUME_CONFIGS, ids=lambda c: c.id)
def test_torch_run_resumes_in_fastoptim_from_a_torch_file(config, tmp_path):
    lock = Lockstep(config, "float32", seed=3)
    for _ in range(7):
        lock.step()
    path = tmp_path / "optimizer.pt"
    torch.save(lock.topt.state_dict(), path)
    # fastoptim takes over torch's state (and parameters) from the file, read without torch.
    _copy_params(lock.tparams, lock.params)
    sd = fo.load(path)
    for state in sd["state"].values():
        assert type(state.get("step", 0)) is int
    lock.opt.load_state_dict(sd)
    for _ in range(7):
        lock.step()
        _check(lock, config)


@pytest.mark.parametrize("config", RESUME_CONFIGS, ids=lambda c: c.id)
def test_fastoptim_run_resumes_in_torch_from_a_torch_format_file(config, tmp_path):
    lock = Lockstep(config, "float32", seed=4)
    for _ in range(7):
        lock.step()
    path = tmp_path / "optimizer.pt"
    fo.save(lock.opt.state_dict(), path, format="torch")
    _copy_params(lock.params, lock.tparams)
    sd = torch.load(path, weights_only=True)
    for state in sd["state"].values():
        if "step" in state:
            assert state["step"].dtype == torch.float32 and state["step"].shape == ()
    lock.topt.load_state_dict(sd)
    for _ in range(7):
        lock.step()
        _check(lock, config)


def test_interop_and_file_conversions_agree():
    lock = Lockstep(ADAM_CONFIGS[0], "float64", seed=5)
    for _ in range(3):
        lock.step()
    from_file = fo.load(io.BytesIO(torch_bytes(lock.topt.state_dict())))
    converted = fo.interop.from_torch(lock.topt.state_dict())
    assert_same(converted, from_file)


# ---- hostile torch files ------------------------------------------------------------------------

SMALL = torch_bytes({"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "n": 3})


def entries(data):
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def make_zip(items, compress=zipfile.ZIP_STORED):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compress) as archive:
        for name, body in items:
            info = zipfile.ZipInfo(name)
            info.compress_type = compress
            archive.writestr(info, body)
    return buffer.getvalue()


def rewrite(data, byteorder=None, pickle_bytes=None, transform=None, extra=()):
    items = []
    for name, body in entries(data):
        if name.endswith("/byteorder") and byteorder is not None:
            body = byteorder
        if name.endswith("/data.pkl") and pickle_bytes is not None:
            body = pickle_bytes
        if transform is not None:
            body = transform(name, body)
        items.append((name, body))
    return make_zip(items + list(extra))


def outcome(data):
    try:
        fo.load(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - the type is what is checked
        return exc
    return None


def assert_refused(data, kind=None, match=None):
    exc = outcome(data)
    assert type(exc) in (fo.CorruptCheckpointError, fo.UnsafeCheckpointError), repr(exc)
    if kind is not None:
        assert type(exc) is kind, repr(exc)
    if match is not None:
        assert match in str(exc), str(exc)
    assert_no_pickle_advice(exc)
    return exc


def assert_no_pickle_advice(exc):
    message = str(exc).replace("global 'pickle.loads'", "").replace("global 'pickle.load'", "")
    assert "pickle.load" not in message and "weights_only=False" not in message, message


def small_pickle():
    return dict(entries(SMALL))["archive/data.pkl"]


def test_rewritten_small_file_still_loads():
    assert fo.load(io.BytesIO(rewrite(SMALL)))["w"].tolist() == [[0, 1, 2], [3, 4, 5]]


@pytest.mark.parametrize("module, name", [
    ("os", "system"), ("posix", "system"), ("subprocess", "Popen"), ("builtins", "eval"),
    ("importlib", "import_module"), ("pickle", "loads"), ("numpy", "load"),
    ("torch", "load"), ("torch._utils", "_rebuild_qtensor"), ("numpy", "ndarray"),
])
def test_disallowed_globals_in_a_torch_file_are_named(module, name, tmp_path):
    marker = tmp_path / "ran"
    payload = (b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n"
               + b"X" + struct.pack("<I", len(f"touch {marker}")) + f"touch {marker}".encode()
               + b"\x85R.")
    exc = assert_refused(rewrite(SMALL, pickle_bytes=payload), fo.UnsafeCheckpointError)
    assert f"{module}.{name}" in str(exc)
    assert not marker.exists()


def test_persistent_id_to_a_missing_storage():
    data = small_pickle().replace(b"X\x01\x00\x00\x000", b"X\x01\x00\x00\x007")
    assert_refused(rewrite(SMALL, pickle_bytes=data), fo.CorruptCheckpointError, "no entry")


def test_storage_smaller_than_the_tensor_needs():
    short = rewrite(SMALL, transform=lambda n, b: b[:16] if n.endswith("data/0") else b)
    assert_refused(short, fo.CorruptCheckpointError, "entry holds 16 bytes")
    # numel consistent with the entry, but the size/stride reach past it.
    obj = torch.arange(6, dtype=torch.float32)
    data = torch_bytes({"w": obj})
    pkl = dict(entries(data))["archive/data.pkl"]
    bigger = pkl.replace(b"K\x06\x85", b"K\x07\x85", 1)  # size (7,) on a 6-element storage
    assert bigger != pkl
    assert_refused(rewrite(data, pickle_bytes=bigger), fo.CorruptCheckpointError, "needs 7")


def test_negative_and_huge_sizes_are_refused_quickly_without_allocating(tmp_path):
    data = torch_bytes({"w": torch.arange(6, dtype=torch.float32)})
    pkl = dict(entries(data))["archive/data.pkl"]
    cases = {
        "negative": pkl.replace(b"K\x06\x85", b"J\xff\xff\xff\xff\x85", 1),
        "huge": pkl.replace(b"K\x06\x85", b"\x8a\x08" + (2**62).to_bytes(8, "little") + b"\x85", 1),
        "huge_stride": pkl.replace(b"K\x01\x85", b"\x8a\x08" + (2**62).to_bytes(8, "little")
                                   + b"\x85", 1),
        "huge_numel": pkl.replace(b"K\x06t", b"\x8a\x08" + (2**62).to_bytes(8, "little") + b"t", 1),
        "huge_offset": pkl.replace(b"QK\x00", b"Q\x8a\x08" + (2**62).to_bytes(8, "little"), 1),
    }
    paths = []
    for name, body in cases.items():
        assert body != pkl, name
        path = tmp_path / f"{name}.pt"
        path.write_bytes(rewrite(data, pickle_bytes=body))
        paths.append(str(path))
    code = textwrap.dedent(f"""
        import resource, time, fastoptim as fo
        resource.setrlimit(resource.RLIMIT_AS, (1 << 31, 1 << 31))
        for path in {paths!r}:
            start = time.perf_counter()
            try:
                fo.load(path)
            except (fo.CorruptCheckpointError, fo.UnsafeCheckpointError) as exc:
                assert time.perf_counter() - start < 1.0, (path, time.perf_counter() - start)
                print(type(exc).__name__, exc)
            else:
                raise AssertionError(path)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": ROOT}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("CorruptCheckpointError") == len(cases), result.stdout


def test_dotdot_names_duplicates_and_foreign_directories():
    items = entries(SMALL)
    assert_refused(make_zip(items + [("archive/../evil", b"x")]), match="not a relative path")
    assert_refused(make_zip(items + [("/abs/x", b"x")]), match="not a relative path")
    assert_refused(make_zip(items + [("other/data.pkl", b"x")]), match="outside the archive")
    with pytest.warns(UserWarning):  # zipfile warns about the duplicate name it writes
        duplicate = make_zip(items + [items[0]])
    assert_refused(duplicate, match="appears twice")


def test_crc_flips_in_every_entry():
    data = bytearray(SMALL)
    with zipfile.ZipFile(io.BytesIO(SMALL)) as archive:
        infos = archive.infolist()
    for info in infos:
        offset = _data_offset_bytes(SMALL, info)
        for position in {offset, offset + info.file_size - 1}:
            flipped = bytearray(data)
            flipped[position] ^= 0x10
            exc = assert_refused(bytes(flipped), fo.CorruptCheckpointError)
            assert "CRC-32" in str(exc), (info.filename, str(exc))


def _data_offset_bytes(data, info):
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    return info.header_offset + 30 + name_len + extra_len


def test_truncation_at_every_97th_byte():
    data = torch_bytes(model_like())
    for size in range(0, len(data), 97):
        assert_refused(data[:size])


def test_compressed_entries_are_refused_not_expanded():
    items = [(name, b"\0" * (1 << 24) if name.endswith("data/0") else body)
             for name, body in entries(SMALL)]
    bomb = make_zip(items, compress=zipfile.ZIP_DEFLATED)
    assert len(bomb) < 100_000
    assert_refused(bomb, fo.CorruptCheckpointError, "compressed")


def test_wrong_byteorder_record():
    assert_refused(rewrite(SMALL, byteorder=b"middle"), fo.CorruptCheckpointError, "byteorder")


def test_legacy_torch_format_is_refused_clearly():
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buffer, _use_new_zipfile_serialization=False)
    exc = assert_refused(buffer.getvalue(), fo.CorruptCheckpointError)
    assert "legacy" in str(exc)


def test_zip_from_a_stream_is_refused_at_once():
    read_fd, write_fd = os.pipe()
    os.write(write_fd, SMALL[:4096])
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as stream:
        with pytest.raises(fo.CorruptCheckpointError, match="seek"):
            fo.load(stream)


def test_torch_format_save_is_atomic(tmp_path, monkeypatch):
    from fastoptim.io import encoder

    path = tmp_path / "model.pt"
    fo.save({"w": np.zeros(3)}, path, format="torch")
    before = path.read_bytes()
    original = encoder._write_all
    written = [0]

    def failing(file, view):
        written[0] += len(view)
        if written[0] > 5000:
            raise OSError(28, "No space left on device")
        original(file, view)

    monkeypatch.setattr(encoder, "_write_all", failing)
    with pytest.raises(OSError, match="No space left") as info:
        fo.save({"w": np.ones(100_000)}, path, format="torch")
    assert str(path) in str(info.value)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.pt"]
    fo.save({"w": np.ones(100_000)}, path, format="torch")
    assert torch.load(path, weights_only=True)["w"].sum().item() == 100_000


def test_torch_format_save_into_a_file_object(tmp_path):
    buffer = io.BytesIO()
    fo.save({"w": np.arange(3.0)}, buffer, format="torch")
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True)["w"].tolist() == [0.0, 1.0, 2.0]


def test_other_zip_files_are_named():
    buffer = io.BytesIO()
    np.savez(buffer, w=np.ones(3))
    assert_refused(buffer.getvalue(), fo.CorruptCheckpointError, "not one written by torch.save")
    assert_refused(make_zip([("archive/other", b"x")]), fo.CorruptCheckpointError, "data.pkl")


def test_unknown_format_version_record():
    newer = rewrite(SMALL, transform=lambda n, b: b"99\n" if n.endswith("/version") else b)
    assert_refused(newer, fo.CorruptCheckpointError, "versions 1 to 10")


def test_peak_memory_of_loading_is_the_data_itself(tmp_path):
    # Each storage is read once, straight into the buffer that is returned: no second copy.
    path = tmp_path / "big.pt"
    data = {f"w{i}": torch.full((5_000_000,), float(i)) for i in range(4)}  # 80 MB
    data["view"] = data["w1"][::2]
    torch.save(data, path)
    nbytes = 4 * 5_000_000 * 4
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import resource, fastoptim as fo, sys
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        loaded = fo.load({str(path)!r})
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert "torch" not in sys.modules
        assert float(loaded["w3"][-1]) == 3.0 and float(loaded["view"][1]) == 1.0
        print((after - before) * 1024)
    """)], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT}, timeout=120)
    assert result.returncode == 0, result.stderr
    extra = int(result.stdout.split()[-1])
    assert extra <= 1.1 * nbytes, (extra, nbytes)


# Every optimizer torch has (the registry's default configuration of each): a torch run's state goes
# torch.save -> fo.load -> fastoptim's load_state_dict -> state_dict -> fo.save(format="torch") ->
# torch.load -> a second torch optimizer, which then continues bit for bit like the first. The files
# carry every state key (0-d scalar state and float step tensors included) both ways.
TORCH_DEFAULT_CONFIGS = [info.default for info in OPTIMIZERS.values() if info.in_torch]


@pytest.mark.parametrize("config", TORCH_DEFAULT_CONFIGS, ids=lambda c: c.id)
def test_every_optimizer_state_crosses_torch_files_both_ways(config, tmp_path):
    rng = np.random.default_rng(11)
    shapes = [(5, 3), (7,), (2, 2, 2)]
    start = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(9)]

    def torch_run():
        params = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in start]
        return params, config.make_torch(params)

    def torch_step(params, opt, k):
        for p, g in zip(params, grads[k]):
            p.grad = torch.from_numpy(g.copy())
        opt.step()

    tparams, topt = torch_run()
    for k in range(5):
        torch_step(tparams, topt, k)
    torch.save(topt.state_dict(), tmp_path / "from_torch.pt")

    params = [fo.Parameter(p.detach().numpy().copy()) for p in tparams]
    opt = config.make(params)
    opt.load_state_dict(fo.load(tmp_path / "from_torch.pt"))
    for i, p in enumerate(tparams):
        for key, value in topt.state[p].items():
            ours = opt.state[params[i]][key]
            if key == "step":
                assert type(ours) is int and ours == int(value)
            else:
                assert np.array_equal(np.asarray(ours), value.numpy()), (key, i)
    fo.save(opt.state_dict(), tmp_path / "from_fastoptim.pt", format="torch")

    tparams2, topt2 = torch_run()
    with torch.no_grad():
        for p2, p in zip(tparams2, tparams):
            p2.copy_(p)
    topt2.load_state_dict(torch.load(tmp_path / "from_fastoptim.pt", weights_only=True))
    for k in range(5, 9):
        torch_step(tparams, topt, k)
        torch_step(tparams2, topt2, k)
        for p, p2 in zip(tparams, tparams2):
            assert torch.equal(p, p2), (config.id, k)
