"""The ``Optimizer`` base class: parameter groups, per-parameter state, hooks and state dicts.

This module is the class layer of fastoptim. It knows about param groups, state dicts and hooks,
and nothing about the update arithmetic, which lives in :mod:`fastoptim.functional` (and below it,
in the compiled kernels). The behaviour mirrors ``torch.optim.Optimizer`` of torch 2.13: the same
constructor order, group keys, error messages, hook order and ``state_dict`` layout, so that a
torch training loop ports by swapping tensors for :class:`fastoptim.Parameter` arrays.

Where fastoptim is deliberately stricter than torch it says so in the docstrings (look for
"Stricter than torch"): parameters must be writeable, C-contiguous and must not share memory;
``step()`` validates every gradient before it changes anything; ``load_state_dict`` validates
everything before it changes anything and copies what it loads.
"""

import functools
import math
import numbers
import signal
import threading
import types
import warnings
import weakref
from collections import OrderedDict, defaultdict
from copy import deepcopy
from itertools import chain

import numpy as np

from fastoptim import _state_gather
from fastoptim.parameter import Parameter, _describe

__all__ = [
    "Optimizer",
    "register_optimizer_step_pre_hook",
    "register_optimizer_step_post_hook",
    "required",
]


class _RequiredParameter:
    """Singleton default meaning "this hyperparameter must be given by every param group"."""

    def __repr__(self):
        return "<required parameter>"

    def __reduce__(self):
        # Pickle by reference, so that ``default is required`` still holds after unpickling.
        return "required"


required = _RequiredParameter()


class RemovableHandle:
    """Handle returned by the ``register_*_hook`` functions; ``handle.remove()`` unregisters.

    It can also be used as a context manager: the hook is removed when the ``with`` block ends.
    The handle keeps only a weak reference to the hook dictionary, so it never keeps an
    optimizer alive.
    """

    next_id = 0

    def __init__(self, hooks_dict):
        self.hooks_dict_ref = weakref.ref(hooks_dict)
        self.id = RemovableHandle.next_id
        RemovableHandle.next_id += 1

    def remove(self):
        """Unregister the hook (a no-op if it was already removed)."""
        hooks_dict = self.hooks_dict_ref()
        if hooks_dict is not None and self.id in hooks_dict:
            del hooks_dict[self.id]

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.remove()


_global_optimizer_pre_hooks = OrderedDict()
_global_optimizer_post_hooks = OrderedDict()

_HOOK_DICTS = (
    "_optimizer_step_pre_hooks",
    "_optimizer_step_post_hooks",
    "_optimizer_state_dict_pre_hooks",
    "_optimizer_state_dict_post_hooks",
    "_optimizer_load_state_dict_pre_hooks",
    "_optimizer_load_state_dict_post_hooks",
)


def register_optimizer_step_pre_hook(hook):
    """Register a step pre-hook that runs for every optimizer, before its own pre-hooks.

    Parameters
    ----------
    hook : callable
        ``hook(optimizer, args, kwargs) -> None or (new_args, new_kwargs)``. ``args`` holds the
        positional arguments of ``step`` including the optimizer itself as ``args[0]``. A returned
        pair replaces the arguments ``step`` is called with.

    Returns
    -------
    RemovableHandle
        ``handle.remove()`` unregisters the hook.
    """
    handle = RemovableHandle(_global_optimizer_pre_hooks)
    _global_optimizer_pre_hooks[handle.id] = hook
    return handle


def register_optimizer_step_post_hook(hook):
    """Register a step post-hook that runs for every optimizer, after its own post-hooks.

    Parameters
    ----------
    hook : callable
        ``hook(optimizer, args, kwargs) -> None``; the return value is ignored.

    Returns
    -------
    RemovableHandle
        ``handle.remove()`` unregisters the hook.
    """
    handle = RemovableHandle(_global_optimizer_post_hooks)
    _global_optimizer_post_hooks[handle.id] = hook
    return handle


def _with_step_hooks(func):
    """Wrap a ``step`` implementation with the step hooks and the ``_step_count`` bookkeeping.

    Applied once, at class creation, to every ``step`` that an Optimizer subclass defines, so the
    class attribute ``step`` stays a plain function: an instance attribute ``step`` (a user's or a
    scheduler's wrapper) is therefore easy to tell apart. A subclass whose ``step`` calls
    ``super().step()`` runs the hooks and counts the step once: the nested call goes straight to
    the implementation.
    """

    @functools.wraps(func)
    def step(*args, **kwargs):
        self = args[0]
        if self._in_step:
            return func(*args, **kwargs)
        self._in_step = True
        try:
            with _DeferredInterrupt():
                return _run_step(self, func, args, kwargs)
        finally:
            self._in_step = False

    step._fastoptim_hooked = True
    return step


def _run_step(self, func, args, kwargs):
    """The step with its hooks and the ``_step_count`` bookkeeping (see ``_with_step_hooks``)."""
    for pre_hook in chain(
        _global_optimizer_pre_hooks.values(), self._optimizer_step_pre_hooks.values()
    ):
        result = pre_hook(self, args, kwargs)
        if result is not None:
            if isinstance(result, tuple) and len(result) == 2:
                args, kwargs = result
            else:
                raise RuntimeError(
                    f"{func} must return None or a tuple of (new_args, new_kwargs), "
                    f"but got {result}."
                )
    out = func(*args, **kwargs)
    for post_hook in chain(
        self._optimizer_step_post_hooks.values(), _global_optimizer_post_hooks.values()
    ):
        post_hook(self, args, kwargs)
    # Counted only once the step and its post-hooks completed: a step that raises
    # (a bad gradient, a failing closure or hook) has not happened.
    self._step_count += 1
    return out


class _DeferredInterrupt:
    """Hold Ctrl-C back while a step runs, and deliver it as soon as the step returns.

    A step updates its param groups one kernel call after another, and Adam then stores each
    parameter's new step count. A KeyboardInterrupt raised in between (Python raises it at the
    first bytecode after the signal, e.g. right after a long kernel call) would leave a step half
    applied: some groups or step counts updated and others not, which a ``except
    KeyboardInterrupt: save()`` would then checkpoint as if it were a real state. While a step
    runs, SIGINT therefore only records that it arrived; the original handler runs (and raises
    KeyboardInterrupt) right after the step, which is never more than one step late.

    Only the main thread receives Python signals, so other threads are not concerned; a handler
    that was not installed from Python (``signal.getsignal`` gives None) cannot be restored and is
    left alone.
    """

    __slots__ = ("previous", "pending")

    def __enter__(self):
        self.previous = None
        self.pending = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if previous is not None:
                signal.signal(signal.SIGINT, self._record)
                self.previous = previous
        return self

    def _record(self, signum, frame):
        self.pending = (signum, frame)

    def __exit__(self, *exc_info):
        previous = self.previous
        if previous is None:
            return False
        signal.signal(signal.SIGINT, previous)
        if self.pending is not None and callable(previous):
            previous(*self.pending)  # default_int_handler raises KeyboardInterrupt here
        elif self.pending is not None and previous == signal.SIG_DFL:
            raise KeyboardInterrupt
        return False


def _snapshot(value):
    """Copy arrays and containers of a state/group value, so a state dict is independent."""
    if isinstance(value, np.ndarray):
        return np.array(value, copy=True, subok=False)
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snapshot(v) for v in value]
    if type(value) is tuple:
        return tuple(_snapshot(v) for v in value)
    return value


def _is_torch_tensor(value):
    return type(value).__module__.startswith("torch")


def _to_float(value):
    """A hyperparameter as a Python float: Python numbers, NumPy scalars and 1-element arrays."""
    if isinstance(value, np.ndarray):
        return float(value.reshape(()).item())
    return float(value)


class Optimizer:
    """Base class of all fastoptim optimizers (the counterpart of ``torch.optim.Optimizer``).

    Parameters
    ----------
    params : iterable
        An iterable of :class:`fastoptim.Parameter`, of ``(name, Parameter)`` pairs, or of dicts
        defining parameter groups (each with a ``"params"`` entry and optional per-group
        hyperparameters). A group's ``"params"`` may not be a set: its order changes between
        runs, and the state dict refers to parameters by position.
    defaults : dict
        Default hyperparameters, used for every group that does not set its own. A value of
        :data:`fastoptim.optimizer.required` means every group must give one.

    Attributes
    ----------
    defaults : dict
        The ``defaults`` given to the constructor (the same object).
    state : collections.defaultdict
        Per-parameter state, keyed by the Parameter itself. Entries are created lazily, at the
        first ``step()`` in which the parameter has a gradient. As with torch, *reading*
        ``optimizer.state[p]`` creates an empty entry.
    param_groups : list of dict
        The parameter groups; each has ``"params"`` (a list of Parameters), ``"param_names"``
        when names were given, and every key of ``defaults``.
    _step_count : int
        The number of completed ``step()`` calls since construction (a step that raised does not
        count). torch 2.13 has no such attribute: it tracks "scheduler stepped before optimizer"
        by wrapping ``optimizer.step``; fastoptim's schedulers read this counter instead. It is
        not part of ``state_dict()`` (which keeps torch's layout) but survives pickling and
        :func:`copy.deepcopy`.

    Notes
    -----
    Stricter than torch:

    * Every parameter must be a :class:`fastoptim.Parameter` that is float32/float64,
      C-contiguous and writeable, and no two parameters may share memory (two views of one
      buffer would be updated twice per step). A plain ndarray is refused with a hint to wrap it.
    * Subclasses validate hyperparameter ranges of every param group (torch validates only the
      constructor's arguments), so anything the optimizer holds can be saved and loaded back.
    * ``state_dict()`` returns a snapshot: the arrays are copies, so the dict does not change as
      training continues (torch returns live tensors).
    * ``load_state_dict`` checks everything before changing anything and copies what it loads.
    """

    def __init__(self, params, defaults):
        self.defaults = defaults
        self._optimizer_step_pre_hooks = OrderedDict()
        self._optimizer_step_post_hooks = OrderedDict()
        self._optimizer_state_dict_pre_hooks = OrderedDict()
        self._optimizer_state_dict_post_hooks = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks = OrderedDict()
        self._optimizer_load_state_dict_post_hooks = OrderedDict()
        self._step_count = 0
        self._in_step = False

        if isinstance(params, np.ndarray):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Tensors or "
                f"dicts, but got {_describe(params)} (put the Parameter in a list: [p])"
            )

        self.state = defaultdict(dict)
        self.param_groups = []

        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]

        for param_group in param_groups:
            self.add_param_group(param_group)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if isinstance(step, types.FunctionType) and not getattr(step, "_fastoptim_hooked", False):
            cls.step = _with_step_hooks(step)

    # ------------------------------------------------------------------ pickling and repr

    def __getstate__(self):
        return {
            "defaults": self.defaults,
            "state": self.state,
            "param_groups": self.param_groups,
            "_step_count": self._step_count,
        }

    def __setstate__(self, state):
        self.__dict__.update(state)
        for name in _HOOK_DICTS:
            if name not in self.__dict__:
                setattr(self, name, OrderedDict())
        if "_step_count" not in self.__dict__:
            self._step_count = 0
        if "_in_step" not in self.__dict__:
            self._in_step = False
        self.defaults.setdefault("differentiable", False)
        for group in self.param_groups:
            self._fill_group_defaults(group)

    def __repr__(self):
        format_string = self.__class__.__name__ + " ("
        for i, group in enumerate(self.param_groups):
            format_string += "\n"
            format_string += f"Parameter Group {i}\n"
            for key in sorted(group.keys()):
                if key != "params":
                    format_string += f"    {key}: {group[key]}\n"
        format_string += ")"
        return format_string

    # ------------------------------------------------------------------ hooks

    def register_step_pre_hook(self, hook):
        """Register a hook called before every ``step()`` of this optimizer.

        ``hook(optimizer, args, kwargs) -> None or (new_args, new_kwargs)``; ``args[0]`` is the
        optimizer. Global pre-hooks (:func:`~fastoptim.optimizer.register_optimizer_step_pre_hook`) run first.
        Returns a :class:`~fastoptim.optimizer.RemovableHandle`.
        """
        handle = RemovableHandle(self._optimizer_step_pre_hooks)
        self._optimizer_step_pre_hooks[handle.id] = hook
        return handle

    def register_step_post_hook(self, hook):
        """Register a hook called after every ``step()`` of this optimizer.

        ``hook(optimizer, args, kwargs) -> None``. Global post-hooks run after the instance's.
        Returns a :class:`~fastoptim.optimizer.RemovableHandle`.
        """
        handle = RemovableHandle(self._optimizer_step_post_hooks)
        self._optimizer_step_post_hooks[handle.id] = hook
        return handle

    def register_state_dict_pre_hook(self, hook, prepend=False):
        """Register ``hook(optimizer) -> None``, called at the start of :meth:`state_dict`.

        With ``prepend=True`` it runs before the hooks already registered.
        Returns a :class:`~fastoptim.optimizer.RemovableHandle`.
        """
        return self._register(self._optimizer_state_dict_pre_hooks, hook, prepend)

    def register_state_dict_post_hook(self, hook, prepend=False):
        """Register ``hook(optimizer, state_dict) -> state_dict or None``, run by :meth:`state_dict`.

        A returned dict replaces the state dict. Returns a :class:`~fastoptim.optimizer.RemovableHandle`.
        """
        return self._register(self._optimizer_state_dict_post_hooks, hook, prepend)

    def register_load_state_dict_pre_hook(self, hook, prepend=False):
        """Register ``hook(optimizer, state_dict) -> state_dict or None``, run before loading.

        The hook receives a shallow copy of the dict given to :meth:`load_state_dict`; a returned
        dict replaces it. Returns a :class:`~fastoptim.optimizer.RemovableHandle`.
        """
        return self._register(self._optimizer_load_state_dict_pre_hooks, hook, prepend)

    def register_load_state_dict_post_hook(self, hook, prepend=False):
        """Register ``hook(optimizer) -> None``, called after :meth:`load_state_dict` succeeded.

        Returns a :class:`~fastoptim.optimizer.RemovableHandle`.
        """
        return self._register(self._optimizer_load_state_dict_post_hooks, hook, prepend)

    @staticmethod
    def _register(hooks_dict, hook, prepend):
        handle = RemovableHandle(hooks_dict)
        hooks_dict[handle.id] = hook
        if prepend:
            hooks_dict.move_to_end(handle.id, last=False)
        return handle

    # ------------------------------------------------------------------ per-class policy
    # Subclasses override these four; the base versions suit an optimizer without rules.

    def _check_group(self, group):
        """Validate the hyperparameters of a complete group (same rules as the constructor)."""

    def _fill_group_defaults(self, group):
        """Fill keys that older state dicts may lack (torch's ``__setstate__`` defaults)."""

    def _load_param_state(self, param, saved, where, group):
        """Return a validated copy of one parameter's saved state, cast to the param's dtype."""
        def cast(value):
            if isinstance(value, np.ndarray):
                if value.dtype.kind == "f":
                    return np.array(value, dtype=param.dtype, copy=True)
                return np.array(value, copy=True)
            if isinstance(value, dict):
                return {k: cast(v) for k, v in value.items()}
            return deepcopy(value)

        if not isinstance(saved, dict):
            raise TypeError(f"{where} must be a dict, got {_describe(saved)}")
        return cast(saved)

    # ------------------------------------------------------------------ param groups

    def add_param_group(self, param_group):
        """Add a parameter group to :attr:`param_groups`.

        Useful when fine-tuning: layers that were frozen can be added to the optimizer as they
        are unfrozen. Missing hyperparameters are filled from :attr:`defaults`; the dict passed
        in is completed in place and stored (not copied), as in torch.

        Parameters
        ----------
        param_group : dict
            ``{"params": ..., <hyperparameter>: value, ...}``. ``"params"`` may be a single
            Parameter, a list/tuple/iterable of Parameters or of ``(name, Parameter)`` pairs.

        Raises
        ------
        TypeError
            ``param_group`` is not a dict; ``params`` is a set; a param is not a
            :class:`fastoptim.Parameter` (a plain ndarray gets a hint to wrap it) or not
            float32/float64.
        KeyError
            ``param_group`` has no ``"params"``.
        ValueError
            Named and unnamed params are mixed (within the group, or between groups); a
            required hyperparameter is missing; a hyperparameter is out of range (stricter than
            torch, which checks groups not at all); a parameter is already in another group; a
            parameter is read-only or not C-contiguous, or shares memory with another parameter
            (stricter than torch).

        Warns
        -----
        UserWarning
            The group contains the same Parameter more than once (torch warns too). fastoptim
            updates such a parameter once per step (torch applies the update once per occurrence).
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")

        params = param_group["params"]
        if isinstance(params, np.ndarray):
            param_group["params"] = [params]
        elif isinstance(params, set):
            raise TypeError(
                "optimizer parameters need to be organized in ordered collections, but the "
                "ordering of tensors in sets will change between runs. Please use a list instead."
            )
        else:
            param_group["params"] = list(params)

        extracted_params = []
        extracted_names = []
        for param in param_group["params"]:
            if isinstance(param, tuple):
                extracted_names.append(param[0])
                extracted_params.append(param[1])
            else:
                extracted_params.append(param)
        param_group["params"] = extracted_params
        if len(extracted_names) != 0:
            if len(extracted_names) == len(extracted_params):
                param_group["param_names"] = extracted_names
            else:
                raise ValueError(
                    "all optimizer params should be with/without names. Some param names are missing"
                )

        for index, param in enumerate(param_group["params"]):
            _check_param(param, index, len(self.param_groups))

        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError(
                    "parameter group didn't specify a value of required optimization "
                    f"parameter {name}"
                )
            param_group.setdefault(name, default)
        self._check_group(param_group)

        params = param_group["params"]
        if len(params) != len(set(params)):
            warnings.warn(
                "optimizer contains a parameter group with duplicate parameters; "
                "in future, this will cause an error; "
                "see github.com/pytorch/pytorch/issues/40967 for more information",
                stacklevel=3,
            )

        param_set = set()
        for group in self.param_groups:
            param_set.update(group["params"])
            if ("param_names" in param_group) != ("param_names" in group):
                current_group_txt = (
                    "with names" if "param_names" in param_group else "without names"
                )
                raise ValueError(
                    "all optimizer param groups should be with/without names. "
                    f"cannot add param group {current_group_txt} to the optimizer"
                )
        if not param_set.isdisjoint(params):
            raise ValueError("some parameters appear in more than one parameter group")

        _check_no_shared_memory(self.param_groups + [param_group])
        self.param_groups.append(param_group)

    # ------------------------------------------------------------------ gradients and steps

    def zero_grad(self, set_to_none=True):
        """Reset the gradients of all optimized parameters.

        Parameters
        ----------
        set_to_none : bool, default True
            ``True`` sets every ``p.grad`` to ``None`` (parameters without a gradient are then
            skipped by ``step()``, which is not the same as a zero gradient for momentum or
            Adam). ``False`` fills every gradient with zeros in place, keeping its memory. A
            read-only gradient (e.g. a broadcast view or a read-only memory map) cannot be
            zeroed in place; it is replaced by a new zero array, and the read-only array itself is
            left untouched.
        """
        for group in self.param_groups:
            for p in group["params"]:
                grad = p._grad
                if grad is None:
                    continue
                if set_to_none:
                    p._grad = None
                elif grad.flags.writeable:
                    grad.fill(0)
                else:
                    p._grad = np.zeros(p.shape, dtype=p.dtype)

    def step(self, closure=None):
        """Perform one optimization step (implemented by subclasses).

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model and returns the loss; its value is returned by ``step``.
        """
        raise NotImplementedError

    def _grouped_grads(self):
        """Collect, for every group, the parameters that have a gradient, and validate them.

        Returns a list of ``(group_index, group, params, grads)`` for the groups with at least
        one gradient. Nothing may change if any gradient is bad, even in the last group
        (stricter than torch, which updates groups one after another and fails half way): the
        functional layer checks all of one call's arrays before it changes any, which covers the
        first group, and the groups after it are checked here, before the first kernel runs.

        A Parameter listed twice in one group is updated once (torch applies the update once per
        occurrence; the compiled kernels update all of a group's arrays in one call, where a
        duplicate would race with itself).
        """
        collected = []
        for group_index, group in enumerate(self.param_groups):
            group_params = group["params"]
            if type(group_params) is not list:  # a user may have stored a tuple
                group_params = list(group_params)
            try:
                params, grads = _state_gather.with_grads(group_params)
            except AttributeError:
                for index, p in enumerate(group_params):
                    _check_param(p, index, group_index)
                raise
            if not params:
                continue
            if len(set(params)) != len(params):
                params, grads = _first_occurrences(params, grads)
            collected.append((group_index, group, params, grads))
        for group_index, group, params, grads in collected[1:]:
            _check_group_arrays(group_index, group, params, grads)
        return collected

    # ------------------------------------------------------------------ state dicts

    def state_dict(self):
        """Return the optimizer's state as a dict, in torch's exact layout.

        ``{"state": {index: {key: value}}, "param_groups": [{hyperparameters..., "params":
        [index, ...]}]}``: parameters are replaced by consecutive integer indices over all groups
        in order; ``state`` lists only parameters that have state, in the order their state was
        created; named groups keep ``"param_names"``. NumPy arrays stand where torch has tensors,
        and Adam's ``step`` is a Python int.

        Returns
        -------
        dict
            A snapshot: arrays are copies and every container is new, so continuing to train does
            not change a state dict taken earlier, and editing it does not change the optimizer.
            torch returns its live state tensors instead (fastoptim cannot: its ``step`` counters
            are immutable ints, and a live dict would pair a frozen ``step`` with moving buffers).
            The price is one copy of the optimizer state per call.
        """
        for pre_hook in self._optimizer_state_dict_pre_hooks.values():
            pre_hook(self)

        param_mappings = {}
        start_index = 0

        def pack_group(group):
            nonlocal start_index
            packed = {k: _snapshot(v) for k, v in group.items() if k != "params"}
            # torch's exact numbering, including its quirk for a parameter listed twice in one
            # group (both occurrences get the later index).
            param_mappings.update(
                {
                    id(p): i
                    for i, p in enumerate(group["params"], start_index)
                    if id(p) not in param_mappings
                }
            )
            packed["params"] = [param_mappings[id(p)] for p in group["params"]]
            start_index += len(packed["params"])
            return packed

        param_groups = [pack_group(g) for g in self.param_groups]
        packed_state = {}
        for param, param_state in self.state.items():
            if id(param) not in param_mappings:
                raise ValueError(
                    "optimizer.state has an entry for a parameter that is in no param group "
                    "(was it removed from group['params']?); delete it with "
                    "`del optimizer.state[p]` before calling state_dict()"
                )
            packed_state[param_mappings[id(param)]] = {
                k: _snapshot(v) for k, v in param_state.items()
            }

        state_dict = {"state": packed_state, "param_groups": param_groups}
        for post_hook in self._optimizer_state_dict_post_hooks.values():
            hook_result = post_hook(self, state_dict)
            if hook_result is not None:
                state_dict = hook_result
        return state_dict

    def load_state_dict(self, state_dict):
        """Load an optimizer state produced by :meth:`state_dict` (or converted from torch).

        Parameters are matched by position, as in torch: the i-th parameter of the saved
        groups gets the i-th parameter's state. All hyperparameters come from the saved groups
        (the constructor's values are replaced); keys that older versions did not save are
        filled with their defaults. Construct LR schedulers *before* loading, since a
        scheduler's construction overwrites ``lr``.

        Parameters
        ----------
        state_dict : dict
            ``{"state": ..., "param_groups": ...}``. Use :func:`fastoptim.interop.from_torch`
            first for a torch state dict (tensors must be converted to arrays).

        Raises
        ------
        ValueError
            The number of groups or of parameters in a group differs (torch's messages);
            or, stricter than torch: a state entry refers to no parameter; a state key is
            unknown or missing; an array's shape is not exactly the parameter's; a ``step`` is
            negative or not integral; a hyperparameter is missing or out of range.
        TypeError
            A state value has the wrong type (e.g. a torch tensor, or a non-floating array).
        KeyError
            ``"state"`` or ``"param_groups"`` is missing.

        Notes
        -----
        Stricter than torch: the load is all-or-nothing (everything is validated before the
        optimizer changes), every array is copied (the optimizer never aliases, and never
        mutates, the caller's dict; torch aliases tensors of matching dtype), floating state
        is cast to the parameter's dtype, and ``step`` becomes an exact Python int (a 0-d array
        or a float with an integral value, such as torch's ``tensor(3.)``, is accepted).
        """
        if not isinstance(state_dict, dict):
            raise TypeError(
                f"load_state_dict expects a dict (from state_dict()), got {_describe(state_dict)}"
            )
        state_dict = state_dict.copy()
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            hook_result = pre_hook(self, state_dict)
            if hook_result is not None:
                state_dict = hook_result

        groups = self.param_groups
        saved_groups = deepcopy(state_dict["param_groups"])
        saved_state = state_dict["state"]
        if not isinstance(saved_groups, (list, tuple)) or not all(
            isinstance(g, dict) and "params" in g for g in saved_groups
        ):
            raise ValueError(
                "state_dict['param_groups'] must be a list of dicts, each with a 'params' list"
            )
        if not isinstance(saved_state, dict):
            raise TypeError(f"state_dict['state'] must be a dict, got {_describe(saved_state)}")

        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"]) for g, s in zip(groups, saved_groups)):
            raise ValueError(
                "loaded state dict contains a parameter group "
                "that doesn't match the size of optimizer's group"
            )

        # Positional matching, as in torch: the i-th saved index names the i-th parameter.
        saved_ids = [list(saved["params"]) for saved in saved_groups]

        param_groups = []
        for index, (group, new_group) in enumerate(zip(groups, saved_groups)):
            new_group["params"] = group["params"]
            if "param_names" in group and "param_names" not in new_group:
                new_group["param_names"] = group["param_names"]
            self._fill_group_defaults(new_group)
            missing = [k for k in self.defaults if k not in new_group]
            if missing:
                raise ValueError(
                    f"loaded param group {index} lacks the hyperparameter(s) {missing} that "
                    f"{type(self).__name__} needs; was the state dict saved by another optimizer?"
                )
            try:
                self._check_group(new_group)
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"loaded param group {index}: {exc}") from None
            param_groups.append(new_group)

        id_map = {}
        for ids, new_group in zip(saved_ids, param_groups):
            for saved_id, param in zip(ids, new_group["params"]):
                try:
                    id_map[saved_id] = (param, new_group)
                except TypeError:
                    raise ValueError(
                        f"state_dict['param_groups'] lists {saved_id!r} as a parameter index; "
                        "indices must be ints"
                    ) from None

        state = defaultdict(dict)
        for key, value in saved_state.items():
            try:
                param, group = id_map[key]
            except (KeyError, TypeError):
                raise ValueError(
                    f"state_dict['state'] has an entry {key!r} that is not the index of any "
                    "parameter in state_dict['param_groups']; the state dict is inconsistent"
                ) from None
            state[param] = self._load_param_state(
                param, value, f"state_dict['state'][{key!r}]", group
            )

        self.__setstate__({"state": state, "param_groups": param_groups})
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)


# ---------------------------------------------------------------------- validation helpers


def _where(index, group_index=None):
    if group_index is None:
        return f"param {index}"
    return f"param {index} of param group {group_index}"


def _check_param(param, index, group_index=None):
    """Raise if ``param`` is not something the kernels can update in place."""
    if not isinstance(param, Parameter):
        if isinstance(param, np.ndarray):
            raise TypeError(
                "optimizer can only optimize Tensors, but one of the params is "
                f"{_describe(param)} ({_where(index, group_index)}): fastoptim optimizes "
                "fastoptim.Parameter arrays; wrap it as fastoptim.Parameter(a), which shares "
                "its memory, so `a` sees the updates"
            )
        raise TypeError(
            "optimizer can only optimize Tensors, but one of the params is "
            f"{_describe(param)} (fastoptim optimizes fastoptim.Parameter arrays)"
        )
    if param.dtype not in (np.float32, np.float64) or not param.dtype.isnative:
        raise TypeError(
            f"{_where(index, group_index)} has dtype {param.dtype.str}, but the optimizers "
            "update float32 and float64 Parameters only"
        )
    flags = param.flags
    if not flags.c_contiguous:
        raise ValueError(
            f"{_where(index, group_index)} is not C-contiguous (a view such as p.T or p[::2] of "
            "another Parameter?); the kernels update each parameter as one flat block. Optimize "
            "a contiguous Parameter, e.g. fastoptim.Parameter(np.ascontiguousarray(x))."
        )
    if not flags.writeable:
        raise ValueError(
            f"{_where(index, group_index)} is read-only, but the optimizer updates parameters "
            "in place; make it writeable (p.flags.writeable = True) or optimize a writeable copy"
        )


def _check_grad(param, grad, group_index, group):
    index = next(i for i, p in enumerate(group["params"]) if p is param)
    where = _where(index, group_index)
    if not isinstance(grad, np.ndarray):
        raise TypeError(
            f"the grad of {where} is a {_describe(grad)}, not a numpy.ndarray; assign an "
            "array to p.grad. Nothing was updated."
        )
    if grad.dtype != param.dtype:
        raise TypeError(
            f"the grad of {where} has dtype {grad.dtype}, but the parameter has dtype "
            f"{param.dtype} (was the dtype changed in place?); assign "
            f"p.grad = g.astype(np.{param.dtype.name}). Nothing was updated."
        )
    if grad.shape != param.shape:
        raise ValueError(
            f"the grad of {where} has shape {grad.shape}, but the parameter has shape "
            f"{param.shape} (was a shape changed in place?); a gradient must have exactly the "
            "parameter's shape. Nothing was updated."
        )


def _first_occurrences(params, grads):
    seen = set()
    kept_params, kept_grads = [], []
    for p, g in zip(params, grads):
        if id(p) not in seen:
            seen.add(id(p))
            kept_params.append(p)
            kept_grads.append(g)
    return kept_params, kept_grads


def _check_group_arrays(group_index, group, params, grads):
    """Check a group's parameters (they may have been changed in place since they were added)
    and gradients (whose shape or dtype may have been changed in place since assignment)."""
    for p, g in zip(params, grads):
        try:
            ok = g.dtype is p.dtype and g.shape == p.shape
        except AttributeError:
            ok = False
        if not ok:
            _check_grad(p, g, group_index, group)
        flags = p.flags
        if not (flags.writeable and flags.c_contiguous):
            index = next(i for i, q in enumerate(group["params"]) if q is p)
            _check_param(p, index, group_index)


def _diagnose_failed_call(exc, group_index, group, params, grads):
    """Re-raise a functional-layer error about ``params``/``grads`` naming the group and the
    parameter's position in it (the functional layer only knows list positions). Returns
    quietly if the error is about something else, so the caller re-raises the original."""
    if isinstance(exc, (TypeError, ValueError)):
        try:
            _check_group_arrays(group_index, group, params, grads)
        except (TypeError, ValueError) as clearer:
            raise clearer from exc


def _check_no_shared_memory(groups):
    """Refuse distinct parameters whose memory overlaps (e.g. two views of one buffer).

    Every parameter is C-contiguous, so it covers exactly the bytes [start, start + nbytes):
    two of them share memory exactly when these intervals overlap, which a sort finds in
    O(n log n) instead of calling np.shares_memory on every pair.
    """
    intervals = []
    seen = set()
    for group_index, group in enumerate(groups):
        for index, p in enumerate(group["params"]):
            if id(p) in seen or p.nbytes == 0:
                continue
            seen.add(id(p))
            start = p.__array_interface__["data"][0]
            intervals.append((start, start + p.nbytes, group_index, index))
    intervals.sort()
    furthest = None
    for interval in intervals:
        if furthest is not None and interval[0] < furthest[1]:
            first = _where(furthest[3], furthest[2])
            second = _where(interval[3], interval[2])
            raise ValueError(
                f"{first} and {second} share memory (views of one buffer?). Each parameter is "
                "updated in place, so overlapping parameters would be updated twice per step; "
                "give each parameter its own memory, e.g. fastoptim.Parameter(a.copy())."
            )
        if furthest is None or interval[1] > furthest[1]:
            furthest = interval


# ---------------------------------------------------------------------- state loading helpers


def _load_array(value, param, where):
    """A copy of a saved state array, validated against ``param`` and cast to its dtype."""
    if not isinstance(value, np.ndarray):
        if _is_torch_tensor(value):
            raise TypeError(
                f"{where} is a {_describe(value)}; convert torch state dicts with "
                "fastoptim.interop.from_torch(state_dict) before loading them"
            )
        raise TypeError(f"{where} must be a numpy.ndarray, got {_describe(value)}")
    if value.dtype.kind != "f":
        raise TypeError(
            f"{where} has dtype {value.dtype}, but optimizer state must be floating point"
        )
    if value.shape != param.shape:
        raise ValueError(
            f"{where} has shape {value.shape}, but its parameter has shape {param.shape}; the "
            "state dict belongs to a different model (or the parameters are in another order)"
        )
    return np.array(value, dtype=param.dtype, order="C", copy=True)


def _load_step(value, where):
    """A saved step count as an exact, non-negative Python int."""
    raw = value
    if isinstance(value, np.ndarray):
        if value.ndim != 0 or value.dtype.kind not in "iuf":
            raise TypeError(
                f"{where} must be an integer (or a 0-d integer/float array), got an array of "
                f"shape {value.shape} and dtype {value.dtype}"
            )
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.number)):
        if _is_torch_tensor(raw):
            raise TypeError(
                f"{where} is a {_describe(raw)}; convert torch state dicts with "
                "fastoptim.interop.from_torch(state_dict) before loading them"
            )
        raise TypeError(f"{where} must be an integer step count, got {_describe(raw)}")
    if isinstance(value, (numbers.Integral, np.integer)):
        step = int(value)
    else:
        value = float(value)
        if not math.isfinite(value) or value != math.floor(value):
            raise ValueError(f"{where} must be a whole number of steps, got {value!r}")
        step = int(value)
    if step < 0:
        raise ValueError(f"{where} must be non-negative, got {step}")
    return step
