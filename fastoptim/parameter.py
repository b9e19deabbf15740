"""``Parameter``: the NumPy array type that fastoptim's optimizers update in place."""

import copy as _copy

import numpy as np

__all__ = ["Parameter"]

# The kernels are compiled for these two dtypes only; everything else is refused rather than cast,
# because a silent cast would make the optimizer update a copy instead of the user's array.
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _describe(obj):
    """Name the type of ``obj`` for an error message (``numpy.ndarray``, ``list``, ...)."""
    cls = type(obj)
    module = cls.__module__
    if module in ("builtins", ""):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


def _grad_mismatch(grad, dtype, shape):
    """What keeps ``grad`` from being the gradient of a parameter of ``dtype`` and ``shape``:
    ``"type"`` (not an ndarray), ``"dtype"``, ``"shape"``, or ``None``. The callers word the error
    for where they are (assignment to ``Parameter.grad``, or a step)."""
    if not isinstance(grad, np.ndarray):
        return "type"
    if grad.dtype != dtype:
        return "dtype"
    if grad.shape != shape:
        return "shape"
    return None


def _check_float_dtype(dtype, what, fix):
    # float16 and bfloat16 (ml_dtypes) too: the optimizers update them through a float32 master
    # copy in their state (docs/low_precision.rst)
    if (dtype not in _FLOAT_DTYPES or not dtype.isnative) and not (
            dtype.itemsize == 2 and dtype.name in ("float16", "bfloat16") and dtype.isnative):
        raise TypeError(
            f"{what} has dtype {dtype.str if not dtype.isnative else dtype}, but fastoptim "
            f"optimizes float32 and float64 arrays only (in native byte order; float16 and "
            f"bfloat16 ones through a float32 master copy); {fix}"
        )


def _rebuild_parameter(data):
    """Unpickle a Parameter: ``data`` is a fresh array owned by the unpickler, so it is adopted.

    The gradient and attributes follow as the pickle's state (``Parameter.__setstate__``), after
    the object exists, so that they may refer back to it (``p.grad = p`` is legal)."""
    return data.view(Parameter)


class Parameter(np.ndarray):
    """A NumPy array that an optimizer updates in place, with an attached gradient.

    ``Parameter`` is a subclass of :class:`numpy.ndarray`: everything that works on an array works
    on a Parameter. What it adds is the :attr:`grad` attribute that optimizers read, an identity
    hash (so a Parameter can key ``optimizer.state``), and the guarantees the compiled kernels rely
    on: the dtype is float32 or float64 and the memory is C-contiguous, aligned and writeable.

    Parameters
    ----------
    data : array_like
        A :class:`numpy.ndarray` that is C-contiguous, aligned, writeable and of dtype float32 or float64 is
        *adopted*: the Parameter shares its memory, so optimizer updates are visible through
        ``data``. An ndarray that does not qualify is refused with an error that says how to fix it;
        it is never copied silently, because the optimizer would then update the copy while the
        caller keeps reading the original. Anything else (lists, tuples, Python or NumPy scalars,
        objects with ``__array__``) is copied into a new array with :func:`numpy.array`, which
        must come out as float32 or float64: Python floats give float64, while a list of Python
        ints gives an integer array and is refused (write ``[1.0, 2.0]`` or pass ``dtype``-explicit
        data such as ``np.asarray(x, dtype=np.float32)``).

    Raises
    ------
    TypeError
        If the dtype is not float32 or float64 (integer, bool, complex, object, float16,
        byte-swapped), or ``data`` is a masked array (the mask would be ignored).
    ValueError
        If ``data`` is an ndarray that is not C-contiguous, not aligned (a view into a byte buffer
        at an offset that is not a multiple of the element size) or not writeable.

    Notes
    -----
    * ``p.grad`` is ``None`` or an :class:`numpy.ndarray` of exactly ``p.shape`` and ``p.dtype``;
      assigning another shape raises ``ValueError``, another dtype ``TypeError``, and anything that
      is not an ndarray ``TypeError``. Read-only and non-contiguous gradients are accepted (the
      optimizers only read them). ``del p.grad`` sets it to ``None``.
    * ``hash(p)`` is ``id``-based and ``p == q`` stays elementwise, as for any array.
    * Arithmetic, comparisons, ufuncs and reductions return plain ndarrays or NumPy scalars
      (``type(p * 2) is np.ndarray``), so model code never produces stray Parameters. In-place
      operations (``p -= 1``, ``np.add(p, 1, out=p)``) return ``p`` itself.
    * Views, slices and method copies (``p[1:]``, ``p.T``, ``p.reshape(...)``, ``p.copy()``,
      ``p.astype(...)``) are also instances of ``Parameter``, because NumPy keeps the subclass of the
      array they come from, but they never carry a gradient (their ``grad`` is ``None``) and they
      do not necessarily satisfy the guarantees above (``p.T`` is not C-contiguous), which is why the
      optimizers check every parameter they are given again.
    * ``pickle`` and :func:`copy.deepcopy` keep the data, the gradient and any attributes set on the
      Parameter. :func:`copy.copy` copies the data and shares the gradient object.

    Examples
    --------
    >>> import numpy as np
    >>> import fastoptim as fo
    >>> w = np.zeros(3, dtype=np.float32)
    >>> p = fo.Parameter(w)            # shares memory with w
    >>> p.grad = np.ones(3, dtype=np.float32)
    >>> p -= 0.5                       # in place: w sees it, p stays a Parameter
    >>> w
    array([-0.5, -0.5, -0.5], dtype=float32)
    >>> type(p * 2) is np.ndarray
    True
    """

    # ``_grad`` is a slot so that the optimizers' per-step read of every gradient is a plain slot
    # load; ``__dict__`` keeps Parameters open to user attributes (names, tags), like torch's.
    __slots__ = ("_grad", "__dict__")

    # ndarray sets __hash__ to None because == is elementwise; identity hashing is what lets a
    # Parameter key a dict (``optimizer.state[p]``) while == keeps its NumPy meaning.
    __hash__ = object.__hash__

    def __new__(cls, data):
        if isinstance(data, np.ndarray):
            if isinstance(data, np.ma.MaskedArray):
                raise TypeError(
                    "Parameter got a numpy.ma.MaskedArray; the optimizers would update masked "
                    "entries too. Pass the unmasked data (np.ma.getdata(a)) or a filled copy "
                    "(a.filled(...))."
                )
            _check_float_dtype(
                data.dtype,
                "the array given to Parameter",
                "convert it explicitly, e.g. Parameter(a.astype(np.float32)), knowing that "
                "updates then go to the converted copy, not to `a`.",
            )
            if not data.flags.c_contiguous:
                raise ValueError(
                    "the array given to Parameter is not C-contiguous, and a Parameter must be "
                    "(the kernels update it in place as one flat block). Pass "
                    "np.ascontiguousarray(a) (a copy: updates then go to the copy, not to `a`)."
                )
            if not data.flags.aligned:
                raise ValueError(
                    f"the array given to Parameter is not aligned (its data address is not a "
                    f"multiple of {data.dtype.itemsize}, the size of a {data.dtype} element, as "
                    f"happens with a view into a byte buffer at an odd offset), and the kernels "
                    f"update aligned memory only. Pass an aligned copy, Parameter(a.copy()) "
                    f"(updates then go to the copy, not to `a`; np.ascontiguousarray(a) does not "
                    f"copy a contiguous array, so it does not help)."
                )
            if not data.flags.writeable:
                raise ValueError(
                    "the array given to Parameter is read-only, and a Parameter is updated in "
                    "place. Pass a writeable copy, Parameter(a.copy()), or make the array "
                    "writeable if you own its memory."
                )
            return data.view(cls)
        # Not an ndarray: build a new, owned array. The explicit copy after np.asarray also covers
        # objects whose __array__ hands out their own memory even when asked for a copy, so an
        # object exposing its memory (e.g. a torch tensor) is never updated behind its back.
        array = np.array(np.asarray(data), copy=True)
        _check_float_dtype(
            array.dtype,
            f"the {_describe(data)} given to Parameter (converted with numpy.array)",
            "write floats (e.g. [1.0, 2.0]) or pass np.asarray(data, dtype=np.float32).",
        )
        return array.view(cls)

    def __array_finalize__(self, obj):
        # Runs for every array NumPy creates with this class: the constructor's view, but also
        # views, slices and method copies of an existing Parameter. None of them inherits the grad.
        self._grad = None

    def __array_wrap__(self, array, context=None, return_scalar=False):
        # Ufunc results (arithmetic, comparisons, math, reductions) are plain arrays or scalars.
        # With ``out=`` (in-place operators) ``array`` is the output itself and is returned as is,
        # so ``p -= 1`` keeps ``p`` a Parameter.
        if return_scalar:
            return array[()]
        return array

    @property
    def grad(self):
        """The gradient: ``None`` or an ndarray of exactly this Parameter's shape and dtype."""
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is None:
            self._grad = None
            return
        problem = _grad_mismatch(value, self.dtype, self.shape)
        if problem == "type":
            raise TypeError(
                f"Parameter.grad must be None or a numpy.ndarray, got {_describe(value)}; "
                f"convert it with np.asarray(value, dtype=np.{self.dtype.name})."
            )
        if problem == "dtype":
            raise TypeError(
                f"Parameter.grad has dtype {value.dtype.str if not value.dtype.isnative else value.dtype}, "
                f"but the parameter has dtype {self.dtype}; assign "
                f"grad.astype(np.{self.dtype.name}) instead (the optimizers never cast)."
            )
        if problem == "shape":
            raise ValueError(
                f"Parameter.grad has shape {value.shape}, but the parameter has shape "
                f"{self.shape}; a gradient must have exactly the parameter's shape (reshape it, "
                f"or reduce over broadcast axes, before assigning)."
            )
        self._grad = value

    @grad.deleter
    def grad(self):
        self._grad = None

    def __reduce_ex__(self, protocol):
        # ndarray's own __reduce_ex__ would drop the gradient and the attributes.
        return (
            _rebuild_parameter,
            (self.view(np.ndarray),),
            (self._grad, self.__dict__ if self.__dict__ else None),
        )

    def __reduce__(self):
        return self.__reduce_ex__(2)

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (grad, attributes): our pickles
            self._grad, attributes = state
            if attributes:
                self.__dict__.update(attributes)
        else:  # ndarray's own state tuple (5 items)
            super().__setstate__(state)

    def __copy__(self):
        new = np.ndarray.copy(self)
        new._grad = self._grad
        if self.__dict__:
            new.__dict__.update(self.__dict__)
        return new

    def __deepcopy__(self, memo):
        new = np.ndarray.copy(self)
        memo[id(self)] = new
        new._grad = _copy.deepcopy(self._grad, memo)
        if self.__dict__:
            new.__dict__.update(_copy.deepcopy(self.__dict__, memo))
        return new
