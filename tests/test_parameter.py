"""fo.Parameter: construction rules, the validated grad, identity hashing, what NumPy operations
return, and pickling/copying."""
import copy
import pickle

import numpy as np
import pytest

import fastoptim as fo


# ---------------------------------------------------------------------------- construction


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_qualifying_array_is_adopted_not_copied(dtype):
    a = np.arange(6, dtype=dtype).reshape(2, 3)
    p = fo.Parameter(a)
    assert isinstance(p, np.ndarray) and type(p) is fo.Parameter
    assert np.shares_memory(p, a) and p.dtype == dtype and p.shape == (2, 3)
    p -= 1  # an in-place update through the Parameter is visible through the array
    assert a[0, 0] == -1
    assert p.grad is None


def test_zero_dimensional_and_empty_arrays():
    assert fo.Parameter(np.array(2.5)).shape == ()
    assert fo.Parameter(np.zeros((0, 3), np.float32)).shape == (0, 3)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, bool, np.complex128, object,
                                   np.longdouble, ">f2" if np.little_endian else "<f2"])
def test_other_dtypes_are_refused(dtype):
    with pytest.raises(TypeError, match="float32 and float64"):
        fo.Parameter(np.zeros(3, dtype=dtype))


def test_float16_and_bfloat16_are_accepted():
    """Updated through a float32 master copy in the optimizer state (docs/low_precision.rst)."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    for dtype in (np.float16, ml_dtypes.bfloat16):
        a = np.zeros(3, dtype=dtype)
        p = fo.Parameter(a)
        assert p.dtype == dtype and np.shares_memory(p, a)


def test_byteswapped_float_is_refused():
    with pytest.raises(TypeError, match="native byte order"):
        fo.Parameter(np.zeros(3, dtype=">f8" if np.little_endian else "<f8"))


def test_non_contiguous_array_is_refused_with_a_fix():
    a = np.zeros((4, 4))
    for view in (a[:, ::2], a.T):
        with pytest.raises(ValueError, match=r"not C-contiguous.*np\.ascontiguousarray"):
            fo.Parameter(view)


def test_read_only_array_is_refused_with_a_fix():
    a = np.zeros(3)
    a.flags.writeable = False
    with pytest.raises(ValueError, match=r"read-only.*a\.copy\(\)"):
        fo.Parameter(a)
    with pytest.raises(ValueError, match="read-only"):
        fo.Parameter(np.frombuffer(bytes(24), dtype=np.float64))  # immutable memory


def test_masked_array_is_refused():
    with pytest.raises(TypeError, match="MaskedArray"):
        fo.Parameter(np.ma.masked_array(np.zeros(3), mask=[0, 1, 0]))


def test_non_arrays_are_converted_into_new_arrays():
    p = fo.Parameter([1.0, 2.5])
    assert p.dtype == np.float64 and p.tolist() == [1.0, 2.5]
    assert fo.Parameter(3.0).dtype == np.float64
    assert fo.Parameter(np.float32(1.5)).dtype == np.float32
    assert fo.Parameter([[1.0], [2.0]]).shape == (2, 1)


def test_objects_exposing_their_memory_are_copied():
    backing = np.zeros(3)

    class ArrayLike:
        def __array__(self, dtype=None, copy=None):
            return backing

    p = fo.Parameter(ArrayLike())
    assert not np.shares_memory(p, backing)


@pytest.mark.parametrize("data", [[1, 2], [True, False], 3, ["a"], [1 + 2j]])
def test_converted_non_float_data_is_refused(data):
    with pytest.raises(TypeError, match=r"write floats"):
        fo.Parameter(data)


def test_parameter_of_a_parameter_shares_memory_without_the_grad():
    p = fo.Parameter(np.zeros(3))
    p.grad = np.ones(3)
    q = fo.Parameter(p)
    assert q is not p and np.shares_memory(p, q) and q.grad is None


# ---------------------------------------------------------------------------- grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grad_accepts_arrays_of_exactly_the_shape_and_dtype(dtype):
    p = fo.Parameter(np.zeros((2, 3), dtype))
    g = np.ones((2, 3), dtype)
    p.grad = g
    assert p.grad is g  # stored as is, not copied
    p.grad = None
    assert p.grad is None
    p.grad = g
    del p.grad
    assert p.grad is None


def test_grad_accepts_read_only_and_non_contiguous_arrays():
    p = fo.Parameter(np.zeros((2, 3)))
    p.grad = np.broadcast_to(np.ones(3), (2, 3))  # read-only, zero strides
    assert not p.grad.flags.writeable
    p.grad = np.ones((3, 2)).T  # non-contiguous
    assert not p.grad.flags.c_contiguous


def test_grad_with_wrong_shape_raises_value_error():
    p = fo.Parameter(np.zeros((2, 3)))
    for bad in (np.zeros((3, 2)), np.zeros(6), np.zeros((1, 2, 3)), np.zeros(())):
        with pytest.raises(ValueError, match=r"has shape .* but the parameter has shape \(2, 3\)"):
            p.grad = bad
    assert p.grad is None


def test_grad_with_wrong_dtype_raises_type_error():
    p = fo.Parameter(np.zeros(3, np.float32))
    for bad in (np.zeros(3), np.zeros(3, np.int32), np.zeros(3, ">f4" if np.little_endian else "<f4")):
        with pytest.raises(TypeError, match=r"grad\.astype\(np\.float32\)"):
            p.grad = bad
    assert p.grad is None


def test_grad_must_be_an_ndarray():
    p = fo.Parameter(np.zeros(3))
    with pytest.raises(TypeError, match="must be None or a numpy.ndarray, got list"):
        p.grad = [0.0, 0.0, 0.0]
    with pytest.raises(TypeError, match="got float"):
        p.grad = 0.0


# ---------------------------------------------------------------------------- hashing and ==


def test_hash_is_identity_and_eq_stays_elementwise():
    p, q = fo.Parameter(np.zeros(3)), fo.Parameter(np.zeros(3))
    d = {p: "p", q: "q"}
    assert d[p] == "p" and d[q] == "q" and len({p, q, p}) == 2
    assert hash(p) == hash(p) and hash(p) != hash(q)
    eq = p == q
    assert type(eq) is np.ndarray and eq.dtype == bool and eq.all()


# ---------------------------------------------------------------------------- derived arrays


def test_arithmetic_and_ufuncs_return_plain_arrays():
    p = fo.Parameter(np.arange(1.0, 5.0))
    q = fo.Parameter(np.ones(4))
    for result in (p * 2, 2 * p, p + q, -p, p / q, np.sin(p), p > 1, p @ np.eye(4), np.eye(4) @ p,
                   np.maximum(p, q), abs(p), p ** 2):
        assert type(result) is np.ndarray
    for scalar in (p.sum(), p.mean(), p.max(), np.dot(p, q), p @ q):
        assert type(scalar) is np.float64


def test_in_place_operations_keep_the_parameter():
    a = np.zeros(3)
    p = fo.Parameter(a)
    p.grad = np.ones(3)
    original = p
    p -= 1
    p *= 3
    assert p is original and type(p) is fo.Parameter and p.grad is not None
    assert np.add(p, 1, out=p) is p
    np.testing.assert_array_equal(a, [-2.0, -2.0, -2.0])


def test_views_slices_and_copies_never_carry_the_grad():
    p = fo.Parameter(np.arange(12.0).reshape(3, 4))
    p.grad = np.ones((3, 4))
    for derived in (p[1:], p[0], p.T, p.reshape(4, 3), p.ravel(), p[:, ::2], p.copy(),
                    p.astype(np.float32), p.view()):
        assert isinstance(derived, fo.Parameter)
        assert derived.grad is None
    assert type(np.copy(p)) is np.ndarray and type(np.asarray(p)) is np.ndarray
    assert p.grad is not None


def test_user_attributes_are_allowed():
    p = fo.Parameter(np.zeros(2))
    p.name = "weight"
    assert p.name == "weight"


# ---------------------------------------------------------------------------- pickle and copy


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pickle_keeps_data_grad_and_attributes(protocol, dtype):
    p = fo.Parameter(np.arange(6, dtype=dtype).reshape(2, 3))
    p.grad = np.full((2, 3), 0.5, dtype)
    p.name = "w"
    q = pickle.loads(pickle.dumps(p, protocol=protocol))
    assert type(q) is fo.Parameter and q.dtype == dtype and q.flags.c_contiguous
    assert q.flags.writeable
    np.testing.assert_array_equal(q, p)
    np.testing.assert_array_equal(q.grad, p.grad)
    assert q.grad.dtype == dtype and q.name == "w"


def test_pickle_without_grad_and_identity_within_one_pickle():
    p = fo.Parameter(np.ones(2))
    a, b = pickle.loads(pickle.dumps([p, p]))
    assert a is b and a.grad is None


def test_pickle_of_a_non_contiguous_derived_parameter():
    p = fo.Parameter(np.arange(6.0).reshape(2, 3))
    t = pickle.loads(pickle.dumps(p.T))
    np.testing.assert_array_equal(t, p.T)


def test_deepcopy_copies_data_and_grad():
    p = fo.Parameter(np.arange(3.0))
    p.grad = np.ones(3)
    p.name = "b"
    q = copy.deepcopy(p)
    assert type(q) is fo.Parameter and not np.shares_memory(p, q)
    assert not np.shares_memory(p.grad, q.grad) and q.name == "b"
    np.testing.assert_array_equal(q.grad, p.grad)
    q.grad[0] = 7
    assert p.grad[0] == 1


def test_deepcopy_keeps_sharing_inside_the_copied_object():
    p = fo.Parameter(np.arange(3.0))
    g = np.ones(3)
    p.grad = g
    p2, g2 = copy.deepcopy([p, g])
    assert p2.grad is g2


def test_copy_copies_data_and_shares_the_grad():
    p = fo.Parameter(np.arange(3.0))
    p.grad = np.ones(3)
    q = copy.copy(p)
    assert type(q) is fo.Parameter and not np.shares_memory(p, q) and q.grad is p.grad


def test_pickle_and_deepcopy_of_a_parameter_that_refers_to_itself():
    p = fo.Parameter(np.arange(3.0))
    p.grad = p  # legal: same shape and dtype
    p.owner = [p]
    for q in (pickle.loads(pickle.dumps(p)), copy.deepcopy(p)):
        assert q.grad is q and q.owner[0] is q and not np.shares_memory(p, q)
