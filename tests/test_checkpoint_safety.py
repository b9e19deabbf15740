"""fo.load(weights_only=True) never runs code from the file and refuses what is not allowed.

Every malicious payload here is wrapped in a *valid* footer (correct length and CRC), so it passes
the integrity check and reaches the restricted reader, which must refuse it as unsafe. Payloads
that would run code create a marker file when they run; the tests assert that the marker does not
exist after fo.load, and that it does exist after pickle.loads / weights_only=False, which proves
the payload is live.
"""

import builtins
import collections
import importlib
import io
import os
import pickle
import pickletools
import struct
import subprocess
import tracemalloc
import zlib

import numpy as np
import pytest

import fastoptim as fo
from fastoptim.io import format as ck
from test_checkpoint import assert_same


def wrap(payload):
    """A checkpoint file around any pickle bytes: correct length and CRC-32 in the footer."""
    return payload + ck.footer(len(payload), zlib.crc32(payload))


def load_bytes(data, **kwargs):
    return fo.load(io.BytesIO(data), **kwargs)


def sgl(module, name):
    """Protocol 4 STACK_GLOBAL for module.name."""
    return _short_str(module) + _short_str(name) + b"\x93"


def _frame(body):
    return b"\x95" + struct.pack("<Q", len(body)) + body


def _short_str(text):
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


def test_error_classes():
    assert issubclass(fo.UnsafeCheckpointError, fo.CheckpointError)
    assert issubclass(fo.UnsafeCheckpointError, pickle.UnpicklingError)
    assert issubclass(fo.CorruptCheckpointError, fo.CheckpointError)
    assert issubclass(fo.CorruptCheckpointError, ValueError)
    assert not issubclass(fo.CorruptCheckpointError, pickle.UnpicklingError)


# ---- payloads that run code through __reduce__ --------------------------------------------------


class Reduces:
    """Pickles as ``func(*args)``: what an attacker's pickle.dumps produces."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _code_payloads(marker):
    touch = f"open({str(marker)!r}, 'w').close()"
    return {
        "os.system": (Reduces(os.system, f"touch {marker}"), "posix.system"),
        "subprocess.Popen": (Reduces(subprocess.Popen, ["touch", str(marker)]),
                             "subprocess.Popen"),
        "eval": (Reduces(eval, touch), "builtins.eval"),
        "exec": (Reduces(exec, touch), "builtins.exec"),
        "importlib": (Reduces(importlib.import_module, "this"), "importlib.import_module"),
        "open": (Reduces(builtins.open, str(marker), "w"), "io.open"),
        "nested in a checkpoint": (
            {"model": {"w": np.zeros(3)}, "optimizer": {"state": {0: Reduces(exec, touch)}}},
            "builtins.exec",
        ),
    }


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("case", list(_code_payloads("m")))
def test_reduce_payloads_are_refused_and_never_run(tmp_path, case, protocol):
    marker = tmp_path / "marker"
    obj, global_name = _code_payloads(marker)[case]
    data = wrap(pickle.dumps(obj, protocol=protocol))
    path = tmp_path / "evil.ckpt"
    path.write_bytes(data)
    with pytest.raises(fo.UnsafeCheckpointError) as info:
        fo.load(path)
    assert f"global '{global_name}' is not allowed" in str(info.value)
    assert str(path) in str(info.value) and info.value.path == str(path)
    assert not marker.exists()
    with pytest.raises(fo.UnsafeCheckpointError):
        load_bytes(data)
    assert not marker.exists()


def test_the_payloads_are_live_under_plain_pickle(tmp_path):
    # Without this, the test above could pass with payloads that would not run anyway.
    marker = tmp_path / "marker"
    obj, _ = _code_payloads(marker)["exec"]
    data = wrap(pickle.dumps(obj, protocol=2))
    load_bytes(data, weights_only=False)  # the explicit unsafe path does run it
    assert marker.exists()
    marker.unlink()
    pickle.loads(data)
    assert marker.exists()


# ---- hand-assembled streams ----------------------------------------------------------------------

HAND_ASSEMBLED = {
    # protocol 0 text opcodes: GLOBAL, then INST
    "GLOBAL os.system": (b"cos\nsystem\n(Vtouch m\ntR.", "global 'os.system' is not allowed"),
    "GLOBAL nt.system": (b"cnt\nsystem\n(Vtouch m\ntR.", "global 'nt.system' is not allowed"),
    "GLOBAL posix.system": (b"\x80\x02cposix\nsystem\nX\x01\x00\x00\x00x\x85R.",
                            "global 'posix.system' is not allowed"),
    "INST os.system": (b"(Vtouch m\nios\nsystem\n.", "INST (instance of global 'os.system')"),
    "GLOBAL builtins.getattr": (b"\x80\x02cbuiltins\ngetattr\n(cnumpy\ndtype\nVmro\ntR.",
                                "global 'builtins.getattr' is not allowed"),
    "GLOBAL __builtin__.eval": (b"c__builtin__\neval\n(V1\ntR.",
                                "global 'builtins.eval' is not allowed"),
    "GLOBAL importlib": (b"cimportlib\nimport_module\n(Vos\ntR.",
                         "global 'importlib.import_module' is not allowed"),
    "GLOBAL numpy.load": (b"cnumpy\nload\n(Vx\ntR.", "global 'numpy.load' is not allowed"),
    "GLOBAL copyreg._reconstructor": (b"ccopyreg\n_reconstructor\n.",
                                      "global 'copyreg._reconstructor' is not allowed"),
    "GLOBAL numpy.core.multiarray.scalar via getattr-like name": (
        b"cnumpy\ncore.multiarray.scalar\n.",
        "global 'numpy.core.multiarray.scalar' is not allowed"),
    # protocol 4/5: FRAME + STACK_GLOBAL
    "STACK_GLOBAL os.system in a FRAME": (
        b"\x80\x04" + _frame(sgl("os", "system") + _short_str("touch m") + b"\x85R."),
        "global 'os.system' is not allowed"),
    "STACK_GLOBAL subprocess.Popen": (
        b"\x80\x05" + sgl("subprocess", "Popen") + b"]\x85R.", "global 'subprocess.Popen'"),
    "STACK_GLOBAL builtins.exec": (
        b"\x80\x05" + sgl("builtins", "exec") + _short_str("1") + b"\x85R.", "'builtins.exec'"),
    # instance-creating opcodes, even with an allowed class
    "OBJ": (b"(cnumpy\nndarray\no.", "opcode OBJ"),
    "NEWOBJ": (b"\x80\x02cnumpy\nndarray\n)\x81.", "opcode NEWOBJ"),
    "NEWOBJ_EX": (b"\x80\x04" + sgl("collections", "OrderedDict") + b")}\x92.", "opcode NEWOBJ_EX"),
    "REDUCE on a non-global": (b"\x80\x02])R.", "REDUCE on a list"),
    "BUILD on a dict": (b"\x80\x02}}b.", "BUILD"),
    "BUILD on an OrderedDict": (b"\x80\x02ccollections\nOrderedDict\n)R}b.", "BUILD"),
    "BUILD on an array": (
        b"\x80\x05" + sgl("numpy", "ndarray") + b"(K\x01\x85" + sgl("numpy", "dtype")
        + _short_str("|u1") + b"\x85R\x96" + struct.pack("<Q", 1) + b"\x00K\x00N"
        + _short_str("C") + b"tR}b.",
        "BUILD"),
    # registries and persistent ids
    "EXT1": (b"\x80\x02\x82\x01.", "opcode EXT1"),
    "EXT2": (b"\x80\x02\x83\x01\x00.", "opcode EXT2"),
    "EXT4": (b"\x80\x02\x84\x01\x00\x00\x00.", "opcode EXT4"),
    "PERSID": (b"Pfoo\n.", "opcode PERSID"),
    "BINPERSID": (b"\x80\x02X\x01\x00\x00\x00xQ.", "opcode BINPERSID"),
    # protocol 5 buffers
    "NEXT_BUFFER": (b"\x80\x05\x97.", "opcode NEXT_BUFFER"),
    "READONLY_BUFFER": (b"\x80\x05\x96" + struct.pack("<Q", 2) + b"ab\x98.", "READONLY_BUFFER"),
    "bare BYTEARRAY8": (b"\x80\x05\x96" + struct.pack("<Q", 2) + b"ab.", "bytearray"),
    "BYTEARRAY8 in a dict": (b"\x80\x05}(Vk\n\x96" + struct.pack("<Q", 0) + b"u.", "bytearray"),
    # sets and other types that are not allowed
    "EMPTY_SET": (b"\x80\x04\x8f.", "opcode EMPTY_SET"),
    "FROZENSET": (b"\x80\x04(K\x01\x91.", "opcode FROZENSET"),
    "Python 2 STRING": (b"S'abc'\n.", "opcode STRING"),
    "a bare dtype": (b"\x80\x02cnumpy\ndtype\nV<f4\n\x85R.", "numpy.dtype object"),
    "the class ndarray as a value": (b"\x80\x02]cnumpy\nndarray\na.", "'numpy.ndarray'"),
    "_codecs.encode with another codec": (b"c_codecs\nencode\n(Vx\nVrot13\ntR.", "_codecs.encode"),
    "object dtype": (b"cnumpy\ndtype\n(V|O\ntR.", "dtype '|O' is not allowed"),
    "numpy-style object dtype": (b"\x80\x02cnumpy\ndtype\nVO8\n\x89\x88\x87R.", "'O8'"),
    "structured dtype state": (
        b"\x80\x02cnumpy\ndtype\nVf4\n\x89\x88\x87R(K\x03V<\n(t}NK\x08K\x04K\x00tb.",
        "structured, subarray and flexible dtypes are not allowed"),
    "datetime dtype": (b"cnumpy\ndtype\n(V<M8[s]\ntR.", "dtype '<M8[s]' is not allowed"),
    "_reconstruct of another class": (
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\n(cnumpy\ndtype\nK\x00\x85C\x01bt"
        b"R.", "_reconstruct of the global 'numpy.dtype'"),
}


@pytest.mark.parametrize("name", list(HAND_ASSEMBLED))
def test_hand_assembled_streams_are_unsafe(tmp_path, name):
    payload, message = HAND_ASSEMBLED[name]
    if name not in _NOT_DISASSEMBLABLE:
        pickletools.dis(payload, out=io.StringIO())  # the stream itself is well formed
    path = tmp_path / "evil.ckpt"
    path.write_bytes(wrap(payload))
    with pytest.raises(fo.UnsafeCheckpointError) as info:
        fo.load(path)
    assert message in str(info.value), str(info.value)
    assert str(path) in str(info.value)
    assert "weights_only=False" in str(info.value)  # says how to proceed if trusted


# pickletools refuses some of these itself (it checks the stack/memo of complete streams).
_NOT_DISASSEMBLABLE = {"NEXT_BUFFER", "READONLY_BUFFER", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4"}


def test_a_damaged_malicious_file_is_corrupt_not_unsafe(tmp_path):
    data = bytearray(wrap(HAND_ASSEMBLED["GLOBAL os.system"][0]))
    data[3] ^= 0x01  # "os" -> "ps" with the footer's CRC unchanged
    with pytest.raises(fo.CorruptCheckpointError, match="CRC-32"):
        load_bytes(bytes(data))


def test_unsafe_with_weights_only_false_still_checks_integrity(tmp_path):
    marker = tmp_path / "marker"
    obj, _ = _code_payloads(marker)["exec"]
    data = bytearray(wrap(pickle.dumps(obj, protocol=2)))
    data[-40] ^= 0x10  # damage the payload: it must not run
    with pytest.raises(fo.CorruptCheckpointError):
        load_bytes(bytes(data), weights_only=False)
    assert not marker.exists()


# ---- object arrays and other numpy content -------------------------------------------------------


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_object_arrays_are_refused(tmp_path, protocol):
    marker = tmp_path / "marker"
    evil = np.array([1, Reduces(exec, f"open({str(marker)!r}, 'w').close()")], dtype=object)
    for obj in (np.array([1, "a", None], dtype=object), evil, {"x": [evil]}):
        with pytest.raises(fo.UnsafeCheckpointError, match="object arrays|not allowed"):
            load_bytes(wrap(pickle.dumps(obj, protocol=protocol)))
    assert not marker.exists()


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_plain_pickles_of_allowed_types_load_when_wrapped(protocol):
    # The reader handles what pickle.dump writes for the allowed types under NumPy's own
    # reduce functions (_reconstruct, _frombuffer, scalar), for every protocol.
    obj = {
        "arrays": [np.arange(6, dtype=">i4").reshape(2, 3), np.asfortranarray(np.ones((2, 3))),
                   np.arange(4.0)[::2], np.zeros((0, 2), np.complex64), np.array(3.5),
                   np.array([True, False])],
        "scalars": [np.float32(1.5), np.int64(-3), np.bool_(True), np.complex128(1j)],
        "counter": collections.Counter("aab"), "ordered": collections.OrderedDict(a=1),
        "bytes": [b"", b"\x00\xff"], "big": 2**80, "t": (1, (2,)), "f": -0.0, 3: None,
    }
    loaded = load_bytes(wrap(pickle.dumps(obj, protocol=protocol)))
    assert_same(obj, loaded)
    for array in loaded["arrays"]:
        assert array.flags.writeable
    assert loaded["arrays"][1].flags.f_contiguous


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_structured_and_string_arrays_are_refused(protocol):
    for obj in (np.zeros(2, dtype=[("a", "<f4")]), np.array(["ab"]), np.array([b"ab"]),
                np.zeros(2, "M8[s]"), np.zeros(2, "V4")):
        with pytest.raises(fo.UnsafeCheckpointError):
            load_bytes(wrap(pickle.dumps(obj, protocol=protocol)))


# ---- sizes are checked before anything is allocated ----------------------------------------------


def _our_array(shape_ops, dtype, nbytes, data):
    return (b"\x80\x05" + sgl("numpy", "ndarray") + b"(" + shape_ops + sgl("numpy", "dtype")
            + _short_str(dtype) + b"\x85R\x96" + struct.pack("<Q", nbytes) + data + b"K\x00N"
            + _short_str("C") + b"tR.")


OVERSIZED = {
    "BYTEARRAY8 of 2**60 bytes": _our_array(b"\x8a\x08" + (2**57).to_bytes(8, "little") + b"\x85",
                                            "<f8", 2**60, b"\x00" * 64),
    "BYTEARRAY8 of 2**64-1 bytes": _our_array(b"K\x01\x85", "<f8", 2**64 - 1, b""),
    "shape of 2**40 with 8 bytes": _our_array(b"\x8a\x06" + (2**40).to_bytes(6, "little")
                                              + b"\x85", "<f8", 8, b"\x00" * 8),
    "shape product past int64": _our_array(b"(" + b"\x8a\x08" + (2**62).to_bytes(8, "little") * 4
                                           + b"t", "<f8", 0, b""),
    "zero dimension times 2**63": _our_array(b"K\x00\x8a\x09" + (2**63).to_bytes(9, "little")
                                             + b"\x86", "<f8", 0, b""),
    "negative dimension": _our_array(b"J\xff\xff\xff\xff\x85", "<f8", 0, b""),
    "BINUNICODE8 of 2**60": b"\x80\x04\x8d" + struct.pack("<Q", 2**60) + b"abc.",
    "BINBYTES8 of 2**60": b"\x80\x04\x8e" + struct.pack("<Q", 2**60) + b"abc.",
    "BINUNICODE of 2**32-1": b"\x80\x02X\xff\xff\xff\xffabc.",
    "LONG4 of 2**31-1": b"\x80\x02\x8b\xff\xff\xff\x7f\x01.",
    "LONG4 negative": b"\x80\x02\x8b\xff\xff\xff\xff\x01.",
    "FRAME of 2**60": b"\x80\x04\x95" + struct.pack("<Q", 2**60) + b"N.",
    "_reconstruct claiming 2**40 elements": (
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"
        b"(K\x01\x8a\x06" + (2**40).to_bytes(6, "little") + b"\x85cnumpy\ndtype\nVf8\n\x89\x88\x87R"
        b"(K\x03V<\nNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89C\x08" + b"\x00" * 8 + b"tb."),
    "scalar with too few bytes": (
        b"\x80\x02cnumpy._core.multiarray\nscalar\ncnumpy\ndtype\nVf8\n\x89\x88\x87R"
        b"(K\x03V<\nNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tbC\x02ab\x86R."),
    "huge text integer": b"I" + b"9" * 100_000 + b"\n.",
}


@pytest.mark.parametrize("name", list(OVERSIZED))
def test_oversized_headers_are_refused_without_allocating(name):
    data = wrap(OVERSIZED[name])
    tracemalloc.start()
    try:
        with pytest.raises(fo.CorruptCheckpointError) as info:
            load_bytes(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * len(data) + (1 << 20), peak
    assert "malformed" in str(info.value)


def test_reader_handles_memo_and_stack_opcodes():
    # PUT/GET/DUP/POP/POP_MARK in text and binary forms, as protocol 0-2 pickles use them.
    payload = b"(lp0\nI1\naI01\naI00\naL5L\naF0.5\nag0\na(I9\n1N20a."
    loaded = load_bytes(wrap(payload))
    assert loaded[:5] == [1, True, False, 5, 0.5]
    assert loaded[5] is loaded and loaded[6] is None


def test_protocol_above_5_is_malformed():
    with pytest.raises(fo.CorruptCheckpointError, match="protocol 6"):
        load_bytes(wrap(b"\x80\x06N."))


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"\x80\x05", "data ends"),
        (b"\x80\x05N", "data ends"),
        (b"\x80\x05NN.N", "pickle ends at byte"),
        (b"\x80\x05\xff.", "invalid pickle opcode 0xff"),
        (b"\x80\x05a.", "stack underflow"),
        (b"\x80\x05t.", "MARK"),
        (b"\x80\x05h\x07.", "memo entry 7"),
        (b"\x80\x05}(]K\x01u.", "unusable dict key"),
        (b"\x80\x05N]u.", "MARK"),
        (b"\x80\x05K\x01K\x02a.", "APPEND applied to a int"),
        (b"\x80\x02X\x02\x00\x00\x00\xff\xfe.", "utf-8"),
        (b"\x80\x02\x95\x00\x00", "data ends"),
    ],
)
def test_malformed_streams_with_valid_checksum_are_corrupt(payload, message):
    with pytest.raises(fo.CorruptCheckpointError, match="malformed") as info:
        load_bytes(wrap(payload))
    assert message in str(info.value)


def test_recursive_structures_from_a_crafted_file_are_returned_not_looped():
    # A file may build a list that contains itself (pickle allows it); loading must terminate.
    loaded = load_bytes(wrap(b"\x80\x02]q\x00h\x00a."))
    assert loaded[0] is loaded
