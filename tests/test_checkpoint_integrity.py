"""Truncated, bit-flipped, random and foreign files: always CorruptCheckpointError, naming the path.

fo.load promises that no other exception type escapes for bad file contents, so these tests catch
*everything* and check the type, rather than using pytest.raises (which would let a stray
KeyError or MemoryError through as a test error instead of a clear failure).
"""

import collections
import io
import pickle
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastoptim as fo
from fastoptim.io import format as ck
from test_checkpoint import assert_same


def small_checkpoint():
    # Exercises every opcode family fo.save writes: arrays (C, F), scalars, big ints, floats,
    # str/bytes, tuples, lists, dicts with int keys, OrderedDict, Counter, shared references.
    weight = np.arange(6, dtype=np.float32).reshape(2, 3)
    return {
        "model": {"w": weight, "b": np.asfortranarray(np.ones((2, 2), ">f8"))},
        "optimizer": {"state": {0: {"step": 3, "exp_avg": weight}},
                      "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0]}]},
        "epoch": 2**70, "nan": float("nan"), "s": np.int16(-2), "t": "x\u00e9", "by": b"\x00\x01",
        "od": collections.OrderedDict(a=1), "c": collections.Counter("aab"),
    }


def saved_bytes(obj):
    buffer = io.BytesIO()
    fo.save(obj, buffer)
    return buffer.getvalue()


def load_outcome(data, label="ckpt"):
    """Return the exception fo.load raises for ``data`` (a BytesIO named ``label``), or None."""
    stream = io.BytesIO(data)
    stream.name = label
    try:
        fo.load(stream)
    except Exception as exc:  # noqa: BLE001 - the type is what is under test
        return exc
    return None


def assert_corrupt(data, label="ckpt"):
    exc = load_outcome(data, label)
    assert type(exc) is fo.CorruptCheckpointError, f"{type(exc).__name__}: {exc}"
    assert str(exc).startswith(f"{label}: ")
    assert exc.path == label
    return exc


DATA = saved_bytes(small_checkpoint())


def test_small_checkpoint_loads():
    assert_same(small_checkpoint(), fo.load(io.BytesIO(DATA)))


def test_truncation_at_every_byte():
    messages = collections.Counter()
    for size in range(len(DATA)):
        exc = assert_corrupt(DATA[:size])
        messages[str(exc).split(":")[1].strip()] += 1
    # The header makes every cut recognisable as a truncated checkpoint from the first byte on.
    assert set(messages) == {
        "the file is empty",
        "a fastoptim checkpoint that was truncated or damaged",  # a cut inside the header
        f"a fastoptim checkpoint of {len(DATA) - ck.FOOTER_SIZE} bytes that was truncated or damaged",
    }, messages
    assert messages["the file is empty"] == 1


def test_a_cut_anywhere_never_passes_as_a_plain_pickle():
    # Cut exactly before the footer, the file is a complete pickle of allowed types; the header
    # still marks it as a checkpoint, so even allow_plain_pickle=True does not take it.
    for size in range(1, len(DATA)):
        with pytest.raises(fo.CorruptCheckpointError, match="truncated"):
            fo.load(io.BytesIO(DATA[:size]), allow_plain_pickle=True)
    assert_same(small_checkpoint(), pickle.loads(DATA[: len(DATA) - ck.FOOTER_SIZE]))


def test_truncation_of_a_file_on_disk(tmp_path):
    path = tmp_path / "ckpt"
    for size in (0, 1, len(DATA) // 3, len(DATA) - ck.FOOTER_SIZE, len(DATA) - 1):
        path.write_bytes(DATA[:size])
        with pytest.raises(fo.CorruptCheckpointError) as info:
            fo.load(path)
        assert info.value.path == str(path) and str(path) in str(info.value)


def test_every_single_bit_flip_is_detected():
    data = bytearray(DATA)
    undetected = []
    for bit in range(len(data) * 8):
        data[bit // 8] ^= 1 << (bit % 8)
        exc = load_outcome(bytes(data))
        if type(exc) is not fo.CorruptCheckpointError:
            undetected.append((bit, exc))
        data[bit // 8] ^= 1 << (bit % 8)
    assert not undetected, undetected[:5]


def test_flips_in_big_array_data_are_detected():
    # Array data is read straight into place, chunk by chunk: flips in any chunk are found.
    data = bytearray(saved_bytes({"w": np.zeros(3 * ck._IO_CHUNK // 4 + 123, np.float32)}))
    rng = np.random.default_rng(0)
    for position in [40, ck._IO_CHUNK, ck._IO_CHUNK + 7, 2 * ck._IO_CHUNK + 99,
                     *rng.integers(0, len(data) - ck.FOOTER_SIZE, 8)]:
        data[position] ^= 0x40
        assert "CRC-32" in str(assert_corrupt(bytes(data)))
        data[position] ^= 0x40


def test_damage_that_keeps_the_pickle_valid_is_still_caught():
    # Changing one array value keeps a perfectly valid pickle: only the checksum can see it.
    data = bytearray(saved_bytes({"w": np.arange(4, dtype=np.float32)}))
    offset = data.index(np.float32(3).tobytes())
    data[offset + 3] ^= 0x01
    assert pickle.loads(bytes(data)) is not None  # plain pickle loads the damaged value silently
    assert "CRC-32" in str(assert_corrupt(bytes(data)))


def test_swapped_or_appended_bytes():
    assert_corrupt(DATA + b"\x00")
    assert_corrupt(b"\x00" + DATA)
    assert_corrupt(DATA[:100] + DATA[101:102] + DATA[100:101] + DATA[102:])
    assert_corrupt(DATA + DATA)


def test_footer_fields():
    payload, footer = DATA[: -ck.FOOTER_SIZE], DATA[-ck.FOOTER_SIZE:]
    length, crc, version, kind, reserved, footer_crc, magic = ck._FOOTER.unpack(footer)

    def rebuilt(**fields):
        values = dict(length=length, crc=crc, version=version, kind=kind, reserved=reserved)
        values.update(fields)
        head = struct.pack("<QIHHI", *values.values())
        return payload + head + struct.pack("<I", zlib.crc32(head)) + magic

    assert "format version 2" in str(assert_corrupt(rebuilt(version=2)))
    assert "upgrade" in str(assert_corrupt(rebuilt(kind=2)))
    assert_corrupt(rebuilt(reserved=1))
    assert "records" in str(assert_corrupt(rebuilt(length=length - 1)))
    assert "CRC-32" in str(assert_corrupt(rebuilt(crc=crc ^ 1)))
    assert "footer is damaged" in str(assert_corrupt(payload + footer[:20] + b"\0\0\0\0" + magic))


def test_foreign_files(tmp_path):
    assert "empty" in str(assert_corrupt(b""))
    plain = pickle.dumps({"w": np.zeros(100)}, protocol=5)
    message = str(assert_corrupt(plain))
    assert "plain pickle" in message and "no checksum" in message
    assert "allow_plain_pickle=True" in message and "pickle.load" not in message
    # And weights_only=False does not fall back to pickle for them.
    with pytest.raises(fo.CorruptCheckpointError):
        fo.load(io.BytesIO(plain), weights_only=False)
    # Asked for explicitly, the restricted reader reads it (weights_only=False changes nothing).
    for weights_only in (True, False):
        loaded = fo.load(io.BytesIO(plain), allow_plain_pickle=True, weights_only=weights_only)
        assert_same({"w": np.zeros(100)}, loaded)
    # A pickle followed by other bytes is not taken as a plain pickle.
    with pytest.raises(fo.CorruptCheckpointError, match="followed by"):
        fo.load(io.BytesIO(plain + b"junk"), allow_plain_pickle=True)
    assert_corrupt(b"\x00" * 4096)
    assert_corrupt(b"not a checkpoint at all, but long enough to have a footer")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_are_corrupt_or_unsafe(data):
    assert_refused(data)


def assert_refused(data):
    # Bytes without a valid footer are parsed (never run) to classify them: a disallowed opcode or
    # global among them makes them unsafe, anything else is corrupt.
    exc = load_outcome(data)
    assert type(exc) in (fo.CorruptCheckpointError, fo.UnsafeCheckpointError), exc
    assert "pickle.load" not in str(exc) and "weights_only=False" not in str(exc)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=256))
def test_random_bytes_with_a_real_magic_are_corrupt_or_unsafe(data):
    assert_refused(data + ck.MAGIC)


# ---- fuzzing the restricted reader behind a *valid* footer -------------------------------------

ALLOWED_LEAVES = (type(None), bool, int, float, str, bytes, np.ndarray, np.generic)


def _only_allowed(obj):
    stack, seen = [obj], set()
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if type(item) in (dict, collections.OrderedDict, collections.Counter):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif type(item) in (list, tuple):
            stack.extend(item)
        elif isinstance(item, np.ndarray):
            assert type(item) is np.ndarray and item.dtype.kind in "biufc"
            assert item.flags.writeable
        elif isinstance(item, np.generic):
            assert item.dtype.kind in "biufc"
        else:
            assert type(item) in ALLOWED_LEAVES, type(item)


PAYLOAD = DATA[: -ck.FOOTER_SIZE]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.integers(0, len(PAYLOAD) - 1), st.integers(0, 255)), min_size=1,
             max_size=4),
    st.integers(0, len(PAYLOAD)),
)
def test_mutated_pickles_with_a_valid_footer(edits, cut):
    # The checksum is recomputed, so the reader sees the damage: it may load something (only of
    # the allowed types) or refuse it as Corrupt or Unsafe, but nothing else.
    payload = bytearray(PAYLOAD[:cut] if cut else PAYLOAD)
    for position, value in edits:
        if position < len(payload):
            payload[position] = value
    data = bytes(payload) + ck.footer(len(payload), zlib.crc32(payload))
    try:
        result = fo.load(io.BytesIO(data))
    except (fo.CorruptCheckpointError, fo.UnsafeCheckpointError):
        return
    _only_allowed(result)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_pickles_with_a_valid_footer(payload):
    data = payload + ck.footer(len(payload), zlib.crc32(payload))
    try:
        result = fo.load(io.BytesIO(data))
    except (fo.CorruptCheckpointError, fo.UnsafeCheckpointError):
        return
    _only_allowed(result)
