"""fo.save / fo.load: round trips, pickle compatibility, errors for unsupported objects.

Safety, integrity and atomicity have their own files (test_checkpoint_safety.py,
test_checkpoint_integrity.py, test_checkpoint_atomic.py).
"""

import collections
import copy
import io
import math
import os
import pickle
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastoptim as fo
from fastoptim.io import format as ck


def assert_same(expected, actual, where="obj"):
    """Exact equality: types, dtypes (byte order included), shapes, bits, key order and key types.

    Iterative, so that deeply nested objects can be compared too.
    """
    work = [(expected, actual, where)]
    while work:
        x, y, path = work.pop()
        assert type(x) is type(y), f"{path}: {type(x).__name__} != {type(y).__name__}"
        if isinstance(x, np.ndarray):
            assert x.dtype.str == y.dtype.str and x.dtype == y.dtype, f"{path}: dtype"
            assert x.shape == y.shape, f"{path}: shape"
            assert _value_bytes(x) == _value_bytes(y), f"{path}: data"
        elif isinstance(x, np.generic):
            assert x.dtype == y.dtype, f"{path}: scalar dtype"
            assert _value_bytes(np.asarray(x)) == _value_bytes(np.asarray(y)), f"{path}: scalar"
        elif isinstance(x, dict):
            assert list(map(type, x)) == list(map(type, y)), f"{path}: key types"
            assert list(x) == list(y) or _same_floats(list(x), list(y)), f"{path}: keys"
            for (key, value), other in zip(x.items(), y.values()):
                work.append((value, other, f"{path}[{key!r}]"))
        elif isinstance(x, (list, tuple)):
            assert len(x) == len(y), f"{path}: length"
            work.extend((a, b, f"{path}[{i}]") for i, (a, b) in enumerate(zip(x, y)))
        elif isinstance(x, float):
            assert struct.pack("<d", x) == struct.pack("<d", y), f"{path}: {x!r} != {y!r}"
        else:
            assert x == y, f"{path}: {x!r} != {y!r}"


def _value_bytes(array):
    """The bytes of an array, without the undefined padding of x87 80-bit long doubles."""
    data = np.ascontiguousarray(array).view(np.uint8)
    if array.dtype.char in "gG" and np.finfo(np.longdouble).nmant == 63:
        data = data.reshape(-1, np.dtype(np.longdouble).itemsize)[:, :10]
    return data.tobytes()


def _same_floats(a, b):
    return [struct.pack("<d", v) if isinstance(v, float) else v for v in a] == [
        struct.pack("<d", v) if isinstance(v, float) else v for v in b
    ]


def roundtrip(obj, tmp_path, name="ckpt"):
    """Save to a path; return (fo.load result, pickle.load result)."""
    path = tmp_path / name
    fo.save(obj, path)
    loaded = fo.load(path)
    with open(path, "rb") as file:
        plain = pickle.load(file)
    return loaded, plain


def training_checkpoint():
    rng = np.random.default_rng(1)
    weights = rng.standard_normal((64, 32)).astype(np.float32)
    return {
        "model": {"fc.weight": weights, "fc.bias": np.zeros(32, np.float32)},
        "optimizer": {
            "state": {
                0: {"step": 7, "exp_avg": np.ones_like(weights), "exp_avg_sq": weights**2},
                1: {"step": 7, "exp_avg": np.zeros(32, np.float32),
                    "exp_avg_sq": np.zeros(32, np.float32)},
            },
            "param_groups": [
                {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                 "amsgrad": False, "maximize": False, "foreach": None, "params": [0, 1]}
            ],
        },
        "scheduler": {"step_size": 30, "gamma": 0.1, "base_lrs": [1e-3], "last_epoch": 7,
                      "_last_lr": [1e-3], "_step_count": 8},
        "epoch": 3,
        "rng": np.random.default_rng(0).bit_generator.state,
        "mt_rng": np.random.Generator(np.random.MT19937(5)).bit_generator.state,
        "counter": collections.Counter("the quick brown fox jumps over the lazy dog".split()),
        "history": collections.OrderedDict([(1, 0.5), (2, 0.25)]),
    }


# ---- round trips ------------------------------------------------------------------------------

NUMERIC_DTYPES = [
    "?", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8", "g", "c8", "c16", "G",
]


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("code", NUMERIC_DTYPES)
def test_array_dtypes_roundtrip_exactly(tmp_path, code, byteorder):
    dtype = np.dtype(code).newbyteorder(byteorder)
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, size=5 * 3 * dtype.itemsize, dtype=np.uint8)
    if dtype.kind == "b":
        raw = raw % 2
    array = raw.view(dtype).reshape(5, 3)
    loaded, plain = roundtrip({"a": array}, tmp_path)
    for result in (loaded["a"], plain["a"]):
        assert result.dtype == dtype and result.dtype.str == dtype.str
        assert result.tobytes() == array.tobytes()
        assert result.flags.writeable


@pytest.mark.parametrize(
    "shape", [(), (0,), (1,), (7,), (2, 3), (2, 0, 4), (0, 0), (1, 1, 1, 1, 1), (2, 1, 3, 1, 2)]
)
def test_array_shapes_roundtrip(tmp_path, shape):
    array = np.arange(math.prod(shape), dtype=np.float64).reshape(shape)
    loaded, plain = roundtrip(array, tmp_path)
    for result in (loaded, plain):
        assert type(result) is np.ndarray
        assert result.shape == shape and result.dtype == np.float64
        np.testing.assert_array_equal(result, array)
        assert result.flags.writeable and result.flags.c_contiguous


def test_memory_order_is_kept_for_fortran_arrays_and_views_become_c_contiguous(tmp_path):
    base = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    arrays = {
        "fortran": np.asfortranarray(base),
        "transposed": base.T,  # F-contiguous view
        "strided": base[:, ::2, 1:],
        "reversed": base[::-1],
        "broadcast": np.broadcast_to(np.arange(5.0), (4, 5)),
        "readonly": np.frombuffer(b"\x01\x02\x03\x04", np.uint8),
    }
    loaded, plain = roundtrip(arrays, tmp_path)
    for result in (loaded, plain):
        for key, array in arrays.items():
            np.testing.assert_array_equal(result[key], array)
            assert result[key].flags.writeable, key
        assert result["fortran"].flags.f_contiguous and not result["fortran"].flags.c_contiguous
        assert result["transposed"].flags.f_contiguous
        for key in ("strided", "reversed", "broadcast"):
            assert result[key].flags.c_contiguous, key


def test_loaded_arrays_are_aligned_and_independent(tmp_path):
    obj = {"a": np.arange(10, dtype=np.complex128), "b": np.arange(3, dtype=np.float32)}
    loaded = fo.load(_saved(obj, tmp_path))
    for array in loaded.values():
        assert array.flags.aligned and array.flags.writeable
    loaded["a"][0] = 99
    assert obj["a"][0] == 0


def test_non_contiguous_array_larger_than_a_write_chunk(tmp_path):
    # A strided view of more than one _IO_CHUNK is written slab by slab, not copied whole.
    base = np.arange(2 * (ck._IO_CHUNK // 8 + 10) * 3, dtype=np.float64).reshape(-1, 3)
    view = base[::2, ::2]
    loaded, plain = roundtrip(view, tmp_path)
    np.testing.assert_array_equal(loaded, view)
    np.testing.assert_array_equal(plain, view)
    rows = base.reshape(3, -1)[:, ::2]  # rows longer than the chunk: split inside each row
    loaded, _ = roundtrip(rows, tmp_path, "rows")
    np.testing.assert_array_equal(loaded, rows)


@pytest.mark.parametrize(
    "value",
    [
        0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, -2**31, 2**31, -2**31 - 1, 2**63, -2**63,
        2**64 + 1, 10**600, -(10**600), 2**(8 * 300), -(2**(8 * 300)),
    ],
)
def test_python_ints_of_any_size(tmp_path, value):
    loaded, plain = roundtrip([value], tmp_path)
    assert loaded == [value] and plain == [value]
    assert type(loaded[0]) is int


def test_floats_are_bit_exact(tmp_path):
    payload_nan = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_DEAD_BEEF))[0]
    values = [0.0, -0.0, float("inf"), float("-inf"), float("nan"), payload_nan, 5e-324,
              1.7976931348623157e308, 0.1]
    loaded, plain = roundtrip(values, tmp_path)
    assert_same(values, loaded)
    assert_same(values, plain)


def test_numpy_scalars_keep_type_and_bits(tmp_path):
    signalling = np.frombuffer(struct.pack("<I", 0x7F800001), np.float32)[0]
    scalars = [
        np.bool_(True), np.bool_(False), np.int8(-5), np.uint8(250), np.int16(-300),
        np.uint16(60000), np.int32(-(2**31)), np.uint32(2**32 - 1), np.int64(-(2**63)),
        np.uint64(2**64 - 1), np.float16(1.5), np.float32(0.1), np.float64(-0.0),
        np.longdouble(1) / 3, np.complex64(1 - 2j), np.complex128(complex("nan+infj")),
        np.clongdouble(1) / 3, signalling,
    ]
    loaded, plain = roundtrip(scalars, tmp_path)
    assert_same(scalars, loaded)
    assert_same(scalars, plain)


def test_platform_alias_scalars_come_back_as_the_canonical_type(tmp_path):
    # np.longlong is a distinct type from np.int64 on Linux but has the same dtype ("<i8").
    loaded, plain = roundtrip([np.longlong(7), np.intc(3)], tmp_path)
    for result in (loaded, plain):
        assert result == [7, 3]
        assert type(result[0]) is np.dtype("<i8").type
        assert type(result[1]) is np.dtype("<i4").type


def test_strings_and_bytes(tmp_path):
    values = ["", "ascii", "h\u00e9llo w\u00f6rld \u2603 \U0001f600", "lone \ud800 surrogate",
              "x" * 300, "y" * 70_000, b"", b"\x00\xff" * 10, b"z" * 300, bytes(range(256)) * 300,
              b"b" * (ck._IO_CHUNK + 17)]
    loaded, plain = roundtrip(values, tmp_path)
    assert loaded == values and plain == values
    assert [type(v) for v in loaded] == [type(v) for v in values]


def test_containers_keep_types_order_and_key_types(tmp_path):
    obj = {
        3: "int key", "3": "str key", 2.5: "float key", None: "none key", True: "bool key",
        b"k": "bytes key", (1, "a"): "tuple key", np.int64(9): "numpy key", -1: "negative",
        "nested": ((), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), [[], [[]]], {}),
        "ordered": collections.OrderedDict([("z", 1), ("a", 2), (0, 3)]),
        "counter": collections.Counter({"b": 2, "a": 5, 7: -1, "f": 0.5}),
        "empty": (collections.OrderedDict(), collections.Counter(), [], {}, ()),
    }
    loaded, plain = roundtrip(obj, tmp_path)
    assert_same(obj, loaded)
    assert_same(obj, plain)
    assert list(loaded["counter"].items()) == list(obj["counter"].items())


def test_large_containers_cross_batch_boundaries(tmp_path):
    obj = {"list": list(range(2500)), "dict": {i: str(i) for i in range(2500)},
           "tuple": tuple(range(1001)), "counter": collections.Counter(range(1500))}
    loaded, plain = roundtrip(obj, tmp_path)
    assert_same(obj, loaded)
    assert_same(obj, plain)


def test_whole_training_checkpoint(tmp_path):
    obj = training_checkpoint()
    loaded, plain = roundtrip(obj, tmp_path)
    assert_same(obj, loaded)
    assert_same(obj, plain)
    # The restored generator state continues the same stream.
    gen = np.random.default_rng(0)
    gen.bit_generator.state = loaded["rng"]
    assert gen.random() == np.random.default_rng(0).random()


def test_generator_state_with_advanced_streams(tmp_path):
    generators = [np.random.Generator(cls(123)) for cls in
                  (np.random.PCG64, np.random.PCG64DXSM, np.random.MT19937, np.random.Philox,
                   np.random.SFC64)]
    for gen in generators:
        gen.random(17)
    states = [gen.bit_generator.state for gen in generators]
    loaded, _ = roundtrip(states, tmp_path)
    assert_same(states, loaded)
    for gen, state in zip(generators, loaded):
        fresh = np.random.Generator(type(gen.bit_generator)())
        fresh.bit_generator.state = state
        assert fresh.random(5).tolist() == gen.random(5).tolist()


def test_shared_objects_are_stored_once_and_stay_shared(tmp_path):
    weight = np.ones((256, 256), np.float32)
    group = {"lr": 0.1}
    obj = {"a": weight, "b": weight, "groups": [group, group]}
    path = _saved(obj, tmp_path)
    assert path.stat().st_size < weight.nbytes * 1.1
    loaded = fo.load(path)
    with open(path, "rb") as file:
        plain = pickle.load(file)
    for result in (loaded, plain):
        assert result["a"] is result["b"]
        assert result["groups"][0] is result["groups"][1]


def test_deeply_nested_structures(tmp_path):
    depth = 50_000  # far past the interpreter's recursion limit: save and load are iterative
    obj = leaf = []
    for _ in range(depth):
        child = []
        leaf.append(child)
        leaf = child
    leaf.append(np.arange(3))
    loaded = fo.load(_saved(obj, tmp_path))
    for _ in range(depth):
        (loaded,) = loaded
    np.testing.assert_array_equal(loaded[0], np.arange(3))


def test_parameters_and_memmaps_are_saved_as_plain_arrays(tmp_path):
    mapped = np.memmap(tmp_path / "mm", dtype=np.float32, mode="w+", shape=(4,))
    mapped[:] = 3
    obj = {"mm": mapped}
    if hasattr(fo, "Parameter"):
        obj["param"] = fo.Parameter(np.arange(4, dtype=np.float32))
    loaded, plain = roundtrip(obj, tmp_path)
    for result in (loaded, plain):
        for key, array in obj.items():
            assert type(result[key]) is np.ndarray
            np.testing.assert_array_equal(result[key], array)


def test_save_does_not_change_the_object(tmp_path):
    obj = training_checkpoint()
    snapshot = copy.deepcopy(obj)
    fo.save(obj, tmp_path / "ckpt")
    fo.save(obj, io.BytesIO())
    assert_same(snapshot, obj)


# ---- pickle compatibility -------------------------------------------------------------------


def test_plain_pickle_reads_the_file_with_numpy_public_names_only(tmp_path):
    path = _saved(training_checkpoint(), tmp_path)
    data = path.read_bytes()
    # Only public names that exist in NumPy 1.25+ and 2.x: no numpy.core / numpy._core paths.
    assert b"_core" not in data and b"numpy.core" not in data and b"_reconstruct" not in data
    import pickletools

    globals_used = set()
    ops = list(pickletools.genops(data))
    for index, (op, arg, _) in enumerate(ops):
        if op.name == "STACK_GLOBAL":
            globals_used.add((ops[index - 2][1], ops[index - 1][1]))
    assert globals_used <= {("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "Counter"),
                            ("collections", "OrderedDict")}
    assert ops[-1][0].name == "STOP" and ops[-1][2] == len(data) - ck.FOOTER_SIZE - 1


def test_pickle_load_from_file_object_and_loads(tmp_path):
    obj = training_checkpoint()
    buffer = io.BytesIO()
    fo.save(obj, buffer)
    assert_same(obj, pickle.loads(buffer.getvalue()))
    buffer.seek(0)
    assert_same(obj, pickle.load(buffer))


@pytest.mark.skipif(not hasattr(pickle, "PickleBuffer"), reason="needs protocol 5")
def test_plain_pickle_gives_writeable_arrays(tmp_path):
    plain = pickle.loads(_saved(np.arange(4.0), tmp_path).read_bytes())
    plain += 1
    np.testing.assert_array_equal(plain, np.arange(4.0) + 1)


# ---- file objects -------------------------------------------------------------------------------


def test_file_objects_at_an_offset(tmp_path):
    obj = {"x": np.arange(5)}
    path = tmp_path / "blob"
    with open(path, "wb") as file:
        file.write(b"header bytes")
        fo.save(obj, file)
    with open(path, "rb") as file:
        file.seek(len(b"header bytes"))
        assert_same(obj, fo.load(file))
        assert file.read() == b""


def test_non_seekable_stream(tmp_path):
    obj = training_checkpoint()
    data = _saved(obj, tmp_path).read_bytes()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(read_fd)
        os.write(write_fd, data)
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as stream:
        assert not stream.seekable()
        assert_same(obj, fo.load(stream))
    os.waitpid(pid, 0)


def test_text_mode_files_are_refused(tmp_path):
    with open(tmp_path / "t", "w") as file, pytest.raises(TypeError, match="text mode"):
        fo.save({}, file)
    (tmp_path / "t").write_bytes(b"")
    with open(tmp_path / "t") as file, pytest.raises(TypeError, match="text mode"):
        fo.load(file)
    with pytest.raises(TypeError, match="path or a binary file"):
        fo.save({}, 42)
    with pytest.raises(TypeError, match="path or a binary file"):
        fo.load(3.5)


def test_weights_only_must_be_a_bool(tmp_path):
    path = _saved({}, tmp_path)
    with pytest.raises(TypeError, match="weights_only"):
        fo.load(path, weights_only="False")
    with pytest.raises(TypeError):
        fo.load(path, False)  # keyword-only
    assert fo.load(path, weights_only=False) == {}


def test_weights_only_false_loads_the_same_objects(tmp_path):
    obj = training_checkpoint()
    path = _saved(obj, tmp_path)
    assert_same(obj, fo.load(path, weights_only=False))
    buffer = io.BytesIO(path.read_bytes())
    assert_same(obj, fo.load(buffer, weights_only=False))


def test_load_of_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        fo.load(tmp_path / "nope")
    assert info.value.filename == str(tmp_path / "nope")


# ---- what save refuses ----------------------------------------------------------------------


class Custom:
    pass


class MyDict(dict):
    pass


@pytest.mark.parametrize(
    "bad, where, what",
    [
        (lambda: 0, "obj['optimizer']['state'][0]['foo']", "function"),
        (Custom(), "obj['optimizer']['state'][0]['foo']", "Custom"),
        (np.array([1, None], dtype=object), "obj['optimizer']['state'][0]['foo']", "dtype object"),
        (np.array(["a"]), "obj['optimizer']['state'][0]['foo']", "dtype <U1"),
        (np.zeros(2, dtype=[("a", "f4")]), "obj['optimizer']['state'][0]['foo']", "dtype"),
        (np.datetime64("2020-01-01"), "obj['optimizer']['state'][0]['foo']",
         "a NumPy scalar of dtype datetime64[D]"),
        (np.str_("s"), "obj['optimizer']['state'][0]['foo']", "a NumPy scalar of dtype <U1"),
        ({1, 2}, "obj['optimizer']['state'][0]['foo']", "set"),
        (1 + 2j, "obj['optimizer']['state'][0]['foo']", "complex"),
        (bytearray(b"x"), "obj['optimizer']['state'][0]['foo']", "bytearray"),
        (MyDict(), "obj['optimizer']['state'][0]['foo']", "subclass of dict"),
        (np.dtype("f4"), "obj['optimizer']['state'][0]['foo']", "str(dtype)"),
        (np.ma.masked_array([1.0]), "obj['optimizer']['state'][0]['foo']", "ndarray subclass"),
        (np.zeros(2, np.dtype("f4", metadata={"m": 1})), "obj['optimizer']['state'][0]['foo']",
         "metadata"),
        (collections.defaultdict(list), "obj['optimizer']['state'][0]['foo']", "defaultdict"),
    ],
)
def test_unsupported_objects_name_their_path_and_write_nothing(tmp_path, bad, where, what):
    obj = {"optimizer": {"state": {0: {"step": 1, "foo": bad}}}}
    buffer = io.BytesIO()
    with pytest.raises(TypeError) as info:
        fo.save(obj, buffer)
    assert where in str(info.value) and what in str(info.value)
    assert buffer.getvalue() == b""
    path = tmp_path / "ckpt"
    with pytest.raises(TypeError):
        fo.save(obj, path)
    assert os.listdir(tmp_path) == []


def test_unsupported_dict_keys_and_nested_tuple_items_are_named(tmp_path):
    with pytest.raises(TypeError, match=r"the key frozenset\(\{1\}\) of obj\['a'\]"):
        fo.save({"a": {frozenset({1}): 1}}, io.BytesIO())
    with pytest.raises(TypeError, match=r"obj\[0\]\[2\]\[1\]"):
        fo.save([(1, 2, [3, Custom()])], io.BytesIO())


def test_recursive_structures_are_refused(tmp_path):
    looped = {"a": [1]}
    looped["a"].append(looped)
    with pytest.raises(ValueError, match=r"obj\['a'\]\[1\].*recursive"):
        fo.save(looped, tmp_path / "ckpt")
    assert os.listdir(tmp_path) == []
    through_tuple = [1]
    through_tuple.append((through_tuple,))
    with pytest.raises(ValueError, match="recursive"):
        fo.save(through_tuple, io.BytesIO())


# ---- hypothesis: any nesting of allowed types round-trips ----------------------------------------

_keys = st.one_of(st.text(max_size=8), st.integers(), st.booleans(), st.none(),
                  st.floats(allow_nan=False), st.binary(max_size=8))
_arrays = st.builds(
    lambda dtype, shape, seed, fortran: _random_array(dtype, shape, seed, fortran),
    st.sampled_from(NUMERIC_DTYPES),
    st.lists(st.integers(0, 4), max_size=3).map(tuple),
    st.integers(0, 2**32 - 1),
    st.booleans(),
)
_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(), st.binary(),
    _arrays, _arrays.filter(lambda a: a.ndim == 0).map(lambda a: a[()]),
)
_objects = st.recursive(
    _leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(_keys, children, max_size=4),
        st.dictionaries(_keys, children, max_size=4).map(collections.OrderedDict),
        st.dictionaries(st.text(max_size=4), st.integers(), max_size=4).map(collections.Counter),
    ),
    max_leaves=12,
)


def _random_array(code, shape, seed, fortran):
    dtype = np.dtype(code)
    count = math.prod(shape)
    raw = np.random.default_rng(seed).integers(0, 256, count * dtype.itemsize, dtype=np.uint8)
    if dtype.kind == "b":
        raw %= 2
    array = raw.view(dtype).reshape(shape)
    return np.asfortranarray(array) if fortran else array


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_objects)
def test_hypothesis_roundtrip(obj):
    buffer = io.BytesIO()
    fo.save(obj, buffer)
    data = buffer.getvalue()
    assert_same(obj, fo.load(io.BytesIO(data)))
    assert_same(obj, pickle.loads(data))


# ---- memory: no extra copies ----------------------------------------------------------------


def test_save_and_load_do_not_copy_arrays(tmp_path):
    # 3 x 16 MiB of float32 state: save must stream from the arrays, load must read into the
    # arrays it returns. tracemalloc sees NumPy's allocations as well as Python's.
    state = {name: np.full(4 << 20, i, np.float32) for i, name in enumerate(("p", "m", "v"))}
    total = sum(a.nbytes for a in state.values())
    path = tmp_path / "big"
    tracemalloc.start()
    try:
        fo.save(state, path)
        _, save_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        loaded = fo.load(path)
        _, load_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Each array is 16 MiB: staying within one I/O chunk (4 MiB) of the minimum means no copy.
    assert save_peak < ck._IO_CHUNK, save_peak
    assert load_peak - before < total + ck._IO_CHUNK, (load_peak - before, total)
    for name, array in state.items():
        np.testing.assert_array_equal(loaded[name], array)


def _saved(obj, tmp_path, name="saved.ckpt"):
    path = tmp_path / name
    fo.save(obj, path)
    return path
