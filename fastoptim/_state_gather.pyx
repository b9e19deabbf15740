"""The optimizer classes' per-parameter bookkeeping, compiled.

``step()`` must, for every parameter of a group, read its gradient, find its state dict and the
arrays in it, and afterwards store Adam's new step count. Written as Python loops this costs about
0.25 us per parameter, more than the kernels spend on a small array; these C loops do the same
lookups (the same dict and attribute semantics, no copies) in well under half of that. They belong
to the class layer: they know about ``Parameter._grad`` and state dicts, nothing about arithmetic.
"""
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem, PyDict_Check
from cpython.list cimport PyList_New, PyList_SET_ITEM
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


def adam_state(list params, object state, bint amsgrad):
    """``(param_states, steps, exp_avgs, exp_avg_sqs, max_exp_avg_sqs)`` for parameters that all
    have a complete Adam state in the dict ``state``, or None when one does not (the caller then
    takes its general path, which creates or diagnoses the missing state)."""
    cdef Py_ssize_t n = len(params), i
    cdef PyObject* s
    cdef list states, steps, exp_avgs, exp_avg_sqs, maxes
    cdef object key_step = "step", key_m = "exp_avg", key_v = "exp_avg_sq", key_x = "max_exp_avg_sq"
    if not PyDict_Check(state):
        return None
    states, steps = _new_list(n), _new_list(n)
    exp_avgs, exp_avg_sqs = _new_list(n), _new_list(n)
    maxes = _new_list(n) if amsgrad else []
    for i in range(n):
        s = PyDict_GetItem(state, params[i])      # state.get(p): no defaultdict insertion
        if s == NULL or not PyDict_Check(<object>s):
            return None
        Py_INCREF(<object>s)
        PyList_SET_ITEM(states, i, <object>s)
        if not (_take(<object>s, key_step, steps, i) and _take(<object>s, key_m, exp_avgs, i)
                and _take(<object>s, key_v, exp_avg_sqs, i)):
            return None
        if amsgrad and not _take(<object>s, key_x, maxes, i):
            return None
    return states, steps, exp_avgs, exp_avg_sqs, maxes


def store_steps(list param_states, list steps):
    """``param_states[i]["step"] = steps[i]`` for every i (the dicts of :func:`adam_state`)."""
    cdef Py_ssize_t i
    cdef object key = "step"
    for i in range(len(param_states)):
        PyDict_SetItem(param_states[i], key, steps[i])
