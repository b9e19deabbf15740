"""The optimizer classes' per-parameter bookkeeping, compiled.

``step()`` must, for every parameter of a group, read its gradient, find its state dict and the
arrays in it, and afterwards store the new step counts. Written as Python loops this costs about
0.25 us per parameter, more than the kernels spend on a small array; these C loops do the same
lookups (the same dict and attribute semantics, no copies) in well under half of that. They also
tell, by comparing object identities, whether the parameters and state arrays are the ones that
were checked for shared memory at the last step, so the check only runs again when something
changed. They belong to the class layer: they know about ``Parameter._grad`` and state dicts,
nothing about arithmetic.
"""
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem, PyDict_Check
from cpython.list cimport PyList_New, PyList_SET_ITEM, PyList_GET_ITEM, PyList_GET_SIZE
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE, PyTuple_New, PyTuple_SET_ITEM
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF


def with_grads(list group_params):
    """``(params, grads)`` for the parameters of a group whose ``_grad`` is not None.

    Raises AttributeError for an entry without ``_grad`` (not a Parameter), like ``p._grad``.
    """
    cdef list params = [], grads = []
    cdef object p, g
    for p in group_params:
        g = p._grad
        if g is not None:
            params.append(p)
            grads.append(g)
    return params, grads


cdef inline list _new_list(Py_ssize_t n):
    return PyList_New(n) if n > 0 else []


cdef inline bint _take(object d, object key, list out, Py_ssize_t i):
    """out[i] = d[key] (a new reference into a fresh list); False when the key is missing."""
    cdef PyObject* v = PyDict_GetItem(d, key)
    if v == NULL:
        return False
    Py_INCREF(<object>v)
    PyList_SET_ITEM(out, i, <object>v)
    return True


def gather(list params, object state, tuple keys, bint with_step):
    """``(param_states, steps, lists)`` for parameters that all have a complete state in the dict
    ``state``: ``lists[k][i] = state[params[i]][keys[k]]``, and ``steps[i]`` its ``"step"`` (an
    empty list when ``with_step`` is false). None when one parameter lacks its state or a key (the
    caller then takes its general path, which creates or diagnoses the missing state)."""
    cdef Py_ssize_t n = len(params), nk = len(keys), i, k
    cdef PyObject* s
    cdef list states, steps, out
    cdef list lists = [_new_list(n) for k in range(nk)]
    cdef object key_step = "step"
    if not PyDict_Check(state):
        return None
    states = _new_list(n)
    steps = _new_list(n) if with_step else []
    for i in range(n):
        s = PyDict_GetItem(state, params[i])      # state.get(p): no defaultdict insertion
        if s == NULL or not PyDict_Check(<object>s):
            # The partly filled lists (NULL entries) are dropped unread (list_dealloc skips NULLs).
            return None
        Py_INCREF(<object>s)
        PyList_SET_ITEM(states, i, <object>s)
        if with_step and not _take(<object>s, key_step, steps, i):
            return None
        for k in range(nk):
            out = <list>PyList_GET_ITEM(lists, k)
            if not _take(<object>s, <object>PyTuple_GET_ITEM(keys, k), out, i):
                return None
    return states, steps, lists


def store_steps(list param_states, list steps):
    """``param_states[i]["step"] = steps[i]`` for every i (the dicts of :func:`gather`)."""
    cdef Py_ssize_t i
    cdef object key = "step"
    for i in range(len(param_states)):
        PyDict_SetItem(param_states[i], key, steps[i])


cdef inline bint _same_items(list a, list b):
    cdef Py_ssize_t n = PyList_GET_SIZE(a), i
    if PyList_GET_SIZE(b) != n:
        return False
    for i in range(n):
        if PyList_GET_ITEM(a, i) != PyList_GET_ITEM(b, i):
            return False
    return True


def same_lists(list a, list b):
    """Whether the lists ``a`` and ``b`` (of lists) hold the very same objects, position by
    position (an identity comparison: no ``__eq__`` runs)."""
    cdef Py_ssize_t n = PyList_GET_SIZE(a), i
    if PyList_GET_SIZE(b) != n:
        return False
    for i in range(n):
        if not _same_items(<list>PyList_GET_ITEM(a, i), <list>PyList_GET_ITEM(b, i)):
            return False
    return True


def groups_unchanged(list groups, list snapshot):
    """Whether ``groups`` (param_groups) are the very dicts of ``snapshot``, a list of
    ``(group, params_copy)`` pairs, each with a ``"params"`` list holding the same objects as
    its copy: then the parameters are the ones that were checked when the snapshot was taken."""
    cdef Py_ssize_t n = PyList_GET_SIZE(groups), i
    cdef tuple entry
    cdef PyObject* params
    if PyList_GET_SIZE(snapshot) != n:
        return False
    for i in range(n):
        entry = <tuple>PyList_GET_ITEM(snapshot, i)
        if PyList_GET_ITEM(groups, i) != PyTuple_GET_ITEM(entry, 0):
            return False
        if not PyDict_Check(<object>PyList_GET_ITEM(groups, i)):
            return False
        params = PyDict_GetItem(<object>PyList_GET_ITEM(groups, i), "params")
        if params == NULL or type(<object>params) is not list:
            return False
        if not _same_items(<list>params, <list>PyTuple_GET_ITEM(entry, 1)):
            return False
    return True


def group_arguments(object group, tuple options, tuple scalar_access, tuple flags, object to_float):
    """``(switch, kwargs)`` of one param group: ``switch[j] = not group[options[j]]`` (the key of
    the kernel's state layout, ``OptimizerInfo.kernel_layout``), and the kernel's keyword
    arguments: ``check_overlap=False``, each per-step scalar ``(argument, group key, index or
    None)`` as a Python float (``to_float`` converts what is neither float nor int: NumPy scalars,
    1-element arrays) and each flag as a bool. The loop of ``Optimizer._kernel_kwargs`` in C."""
    cdef dict kwargs = {"check_overlap": False}
    cdef object name, key, index, value, access
    cdef Py_ssize_t j, n = PyTuple_GET_SIZE(options)
    cdef tuple switch = PyTuple_New(n) if n > 0 else ()
    for j in range(n):
        value = not group[<object>PyTuple_GET_ITEM(options, j)]
        Py_INCREF(value)
        PyTuple_SET_ITEM(switch, j, value)
    for access in scalar_access:
        name, key, index = access
        value = group[key]
        if index is not None:
            value = value[index]
        if type(value) is not float:
            value = float(value) if type(value) is int else to_float(value)
        kwargs[name] = value
    for name in flags:
        kwargs[name] = bool(group[name])
    return switch, kwargs
