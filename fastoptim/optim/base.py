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

import _signal
import functools
import os
import threading
import types
import weakref
from _thread import get_ident
from collections import OrderedDict, defaultdict
from copy import deepcopy
from itertools import chain

import numpy as np

from fastoptim import _state_gather
from fastoptim.optim import _low_precision
from fastoptim.optim import _fused
from fastoptim.optim._docs import fill_docstring
from fastoptim.optim._validation import (
    _SCALAR_STATE_LOADERS,
    _check_bool_options,
    _check_group_arrays,
    _check_no_duplicates,
    _check_no_shared_memory,
    _check_pairs,
    _check_param,
    _check_state_not_shared,
    _check_unsupported_flags,
    _describe,
    _diagnose_failed_call,
    _load_array,
    _load_scalar_array,
    _snapshot,
    _to_float,
)

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
    """Wrap a ``step`` implementation with the optimizer's lock, Ctrl-C deferral, the step hooks
    and the ``_step_count`` bookkeeping.

    Applied once, at class creation, to every ``step`` that an Optimizer subclass defines, so the
    class attribute ``step`` stays a plain function: an instance attribute ``step`` (a user's or a
    scheduler's wrapper) is therefore easy to tell apart. A subclass whose ``step`` calls
    ``super().step()`` runs the hooks and counts the step once: the nested call goes straight to
    the implementation.
    """

    @functools.wraps(func)
    def step(*args, **kwargs):
        self = args[0]
        # The lock first: waiting for another thread's step stays interruptible by Ctrl-C.
        with self._lock:
            if self._in_step:
                return func(*args, **kwargs)
            self._in_step = True
            handler = _defer_interrupt()
            try:
                return _run_step(self, func, args, kwargs)
            finally:
                self._in_step = False
                if handler is not None:
                    _deliver_interrupt(handler)

    step._fastoptim_hooked = True
    return step


def _run_step(self, func, args, kwargs):
    """The step with its hooks and the ``_step_count`` bookkeeping (see ``_with_step_hooks``).

    "The step happened" means the update ran: ``_step_count`` (like every per-parameter ``step``
    in the state) is incremented before the post-hooks run, so a post-hook that raises leaves
    the bookkeeping consistent with the parameters, and its exception propagates. A step that
    raises before or during the update (a pre-hook, the closure, a bad gradient) has not
    happened: nothing changed and nothing is counted.
    """
    if _global_optimizer_pre_hooks or self._optimizer_step_pre_hooks:
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
    self._step_count += 1
    if self._optimizer_step_post_hooks or _global_optimizer_post_hooks:
        for post_hook in chain(
            self._optimizer_step_post_hooks.values(), _global_optimizer_post_hooks.values()
        ):
            post_hook(self, args, kwargs)
    return out


# Ctrl-C during a step. A step updates its param groups one kernel call after another, and then
# stores each parameter's new step count. A KeyboardInterrupt raised in between (Python raises it
# at the first bytecode after the signal, e.g. right after a long kernel call) would leave a step
# half applied: some groups or step counts updated and others not, which a ``except
# KeyboardInterrupt: save()`` would then checkpoint as if it were a real state. While a step runs,
# SIGINT therefore only records that it arrived; the original handler runs (and raises
# KeyboardInterrupt) right after the step, which is never more than one step late.
#
# Only the main thread receives Python signals, so other threads are not concerned; a handler
# that was not installed from Python (``signal.getsignal`` gives None) cannot be restored and is
# left alone; a step inside another step (an optimizer stepped from a hook) finds the recorder
# installed and leaves it to the outer step. The handler is swapped through ``_signal``, the C
# module under :mod:`signal`, whose wrappers convert handlers to enums at ten times the cost of the
# swap itself: the swap costs two ``sigaction`` calls, and ``signal.getsignal`` sees the user's
# handler again after every step, exactly as before it.

_SIGINT = _signal.SIGINT
_pending_interrupts = []  # SIGINTs recorded during the main thread's step
# The main thread's ident (only it may install a signal handler), refreshed in a child of fork, where
# the forking thread is the main thread (threading's own fork handler, registered before ours, has
# updated ``threading.main_thread()`` by then).
_main_thread_ident = [threading.main_thread().ident]


def _record_interrupt(signum, frame):
    _pending_interrupts.append((signum, frame))


def _defer_interrupt():
    """Install the recorder; return the handler to restore, or None if there is none."""
    if get_ident() != _main_thread_ident[0]:
        return None
    previous = _signal.getsignal(_SIGINT)
    if previous is None or previous is _record_interrupt:
        return None
    _signal.signal(_SIGINT, _record_interrupt)
    return previous


def _deliver_interrupt(previous):
    """Restore the previous handler and run it if SIGINT arrived during the step."""
    _signal.signal(_SIGINT, previous)  # runs a recorder call still pending first
    if _pending_interrupts:
        signum, frame = _pending_interrupts[0]
        _pending_interrupts.clear()
        if callable(previous):
            previous(signum, frame)  # default_int_handler raises KeyboardInterrupt here
        elif previous == _signal.SIG_DFL:
            raise KeyboardInterrupt


# Every optimizer's lock, so that a child of fork gets fresh ones: a lock held by another thread of
# the parent at the fork (a step in progress there) would otherwise stay held in the child forever.
_optimizers = weakref.WeakSet()


def _track_lock(optimizer):
    try:
        _optimizers.add(optimizer)
    except TypeError:  # a subclass made itself unhashable: it keeps the lock it has
        pass


def _new_locks_after_fork():
    _main_thread_ident[0] = threading.main_thread().ident
    for optimizer in list(_optimizers):
        optimizer._lock = threading.RLock()
        optimizer._in_step = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_locks_after_fork)


def _locked(method):
    """Run ``method`` holding the optimizer's lock (see :class:`Optimizer`, threads)."""

    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return locked


def _cast_copy(value, param):
    """A deep copy of a saved state value, floating arrays cast to the parameter's dtype."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            return np.array(value, dtype=param.dtype, copy=True)
        return np.array(value, copy=True)
    if isinstance(value, dict):
        return {k: _cast_copy(v, param) for k, v in value.items()}
    return deepcopy(value)


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
        The number of ``step()`` calls since construction whose update ran (a step that raised
        before or during the update does not count; one whose post-hook raised does, see
        :doc:`/guide/stricter`). torch 2.13 has no such attribute: it tracks "scheduler stepped before optimizer"
        by wrapping ``optimizer.step``; fastoptim's schedulers read this counter instead. It is
        not part of ``state_dict()`` (which keeps torch's layout) but survives pickling and
        :func:`copy.deepcopy`.

    Notes
    -----
    Stricter than torch:

    * Every parameter must be a :class:`fastoptim.Parameter` that is float32/float64,
      C-contiguous and writeable, no two parameters may share memory (two views of one
      buffer would be updated twice per step), and no parameter may be listed twice. A plain
      ndarray is refused with a hint to wrap it. These checks run wherever parameters enter
      (construction, :meth:`add_param_group`, and ``step()`` when ``param_groups`` was edited
      since the last check); state arrays shared with each other or with a parameter are
      refused by ``step()`` before it changes anything.
    * Subclasses validate hyperparameter ranges of every param group (torch validates only the
      constructor's arguments), so anything the optimizer holds can be saved and loaded back.
    * ``state_dict()`` returns a snapshot: the arrays are copies, so the dict does not change as
      training continues (torch returns live tensors).
    * ``load_state_dict`` checks everything before changing anything and copies what it loads.

    One optimizer may be used from several Python threads: a per-optimizer lock serialises
    ``step``, ``zero_grad``, ``state_dict``, ``load_state_dict`` and ``add_param_group``, so
    concurrent steps are applied one after the other, none lost. Two optimizers in two threads
    run in parallel (the kernels release the GIL). The child of a ``fork`` gets a fresh lock, so a
    step that another thread of the parent had in progress cannot block the child.

    Subclasses: an elementwise optimizer sets ``_info`` to its entry of
    :data:`fastoptim.optim.registry.OPTIMIZERS` and implements ``__init__`` (torch's signature)
    and ``_check_hyperparameters`` (torch's checks); the step (gather the state, create missing
    state once every group is checked, one kernel call per group, store the state), the group
    checks, the loading of saved state and the group defaults follow from the entry. A class without ``_info`` implements
    ``step`` itself (and, if it keeps state, ``_load_param_state``).
    """

    _info = None  # the registry entry of an elementwise optimizer (see "Subclasses")

    def __init__(self, params, defaults):
        if self._info is not None:  # as torch, the hyperparameters before the params
            self._check_hyperparameters(defaults)
        self.defaults = defaults
        self._optimizer_step_pre_hooks = OrderedDict()
        self._optimizer_step_post_hooks = OrderedDict()
        self._optimizer_state_dict_pre_hooks = OrderedDict()
        self._optimizer_state_dict_post_hooks = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks = OrderedDict()
        self._optimizer_load_state_dict_post_hooks = OrderedDict()
        self._step_count = 0
        self._in_step = False
        self._lock = threading.RLock()
        _track_lock(self)
        self._checked_params = []
        self._checked_state = {}
        self._low_precision_params = False  # whether a float16/bfloat16 param was ever added
        self._fused_ema = None      # the AveragedModel updated in the steps (optim/_fused.py)
        self._armed_clip = None     # clip_grad_norm_(..., fused_with=self) for the next step

        if isinstance(params, np.ndarray):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Tensors or "
                f"dicts, but got {_describe(params)} (put the Parameter in a list: [p])"
            )

        self.state = defaultdict(dict)
        self.param_groups = []
        # state_dtype / stochastic_rounding given to an elementwise optimizer's constructor
        defaults.update(_low_precision.defaults_of(self))

        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]

        for param_group in param_groups:
            self.add_param_group(param_group)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "_info" in cls.__dict__:
            cls.__doc__ = fill_docstring(cls.__doc__, cls._info.torch_name)
        if "_info" in cls.__dict__ and "step" not in cls.__dict__ and cls.step is Optimizer.step:
            # The step template, as a function of this class (named ``<cls>.step`` in messages).
            template = Optimizer._template_step
            step = types.FunctionType(template.__code__, template.__globals__, "step",
                                      template.__defaults__, template.__closure__)
            step.__kwdefaults__ = template.__kwdefaults__
            step.__qualname__ = f"{cls.__qualname__}.step"
            step.__doc__ = template.__doc__
            step.__module__ = cls.__module__
            cls.step = step
        init = cls.__dict__.get("__init__")
        if "_info" in cls.__dict__ and init is not None and not hasattr(init, "_fastoptim_low_precision"):
            cls.__init__ = _low_precision.wrap_init(init)  # state_dtype=, stochastic_rounding=
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
        if "_lock" not in self.__dict__:  # not pickled: a new one after unpickling or deepcopy
            self._lock = threading.RLock()
            _track_lock(self)
        # Parameters and state are checked for shared memory again at the next step.
        self._checked_params = []
        self._checked_state = {}
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
    # ``_check_hyperparameters`` is the subclass's; the others follow from ``_info`` (the registry entry).

    def _check_group(self, group):
        """Validate the hyperparameters of a complete group (same rules as the constructor): the
        entry's tuple-valued ones are pairs, the class's torch checks, then the flags."""
        info = self._info
        if info is not None:
            _check_pairs(group, info)
            self._check_hyperparameters(group)
            _check_unsupported_flags(group)
            _check_bool_options(group, info.flags)

    def _check_hyperparameters(self, group):
        """torch's checks of the hyperparameters in ``group`` (a group or the constructor's
        defaults), in torch's order and with its messages: the subclass's."""

    def _fill_group_defaults(self, group):
        """Fill keys that older state dicts may lack (torch's ``__setstate__`` defaults), and
        force the keys the optimizer fixes (AdamW's ``decoupled_weight_decay``)."""
        info = self._info
        if info is not None:
            for key, value in info.group_defaults.items():
                group.setdefault(key, value)
            group.update(info.group_forced)

    def _load_param_state(self, param, saved, where, group):
        """Return a validated copy of one parameter's saved state, cast to the param's dtype.

        With a registry entry, the state schema is its ``scalar_state`` and ``buffers``: unknown
        keys are refused, the scalars and the buffers the group needs must all be there (or the
        state must be empty), arrays must have the parameter's shape. Without one, any dict of
        values is copied, floating arrays cast to the parameter's dtype.
        """
        if not isinstance(saved, dict):
            raise TypeError(f"{where} must be a dict, got {_describe(saved)}")
        info = self._info
        if info is None:
            return _cast_copy(saved, param)
        keys = info.state_keys
        master = _low_precision.is_low_precision(param.dtype)
        unknown = [k for k in saved if k not in keys and not (master and k == _low_precision.MASTER_KEY)]
        if unknown:
            has = f"only {keys[0]!r}" if len(keys) == 1 else f"{list(keys)}"
            raise ValueError(
                f"{where} has unexpected key(s) {unknown}; {type(self).__name__} state has {has}"
            )
        # Older torch versions stored ``momentum_buffer: None`` for a buffer not yet created.
        saved = {k: v for k, v in saved.items() if not (v is None and k in info.lazy_buffers)}
        if not saved:
            return {}
        needed = info.scalar_state + info.scalar_arrays + tuple(
            k for k in info.active_buffers(group) if k not in info.lazy_buffers
        )
        missing = [k for k in needed if k not in saved]
        if missing:
            notes = "".join(
                f" (the group has {info.optional[k]}=True)" for k in missing if k in info.optional
            )
            raise ValueError(f"{where} lacks {missing}{notes}")
        loaded = {}
        for key in info.scalar_state:
            loaded[key] = _SCALAR_STATE_LOADERS[key](saved[key], f"{where}[{key!r}]")
        for key in info.scalar_arrays:
            loaded[key] = _load_scalar_array(saved[key], f"{where}[{key!r}]")
        for key in info.buffers:
            if key in saved:
                loaded[key] = _low_precision.load_state_array(
                    saved[key], param, group, f"{where}[{key!r}]", _load_array)
        if master and _low_precision.MASTER_KEY in saved:
            loaded[_low_precision.MASTER_KEY] = _low_precision.load_master(
                saved[_low_precision.MASTER_KEY], param, f"{where}[{_low_precision.MASTER_KEY!r}]",
                _load_array)
        return loaded

    def _kernel_kwargs(self, group):
        """The keyword arguments of this group's kernel call: its per-step scalars as floats, its
        flags as bools, and ``check_overlap=False``."""
        return self._add_low_precision_kwargs(
            group, _state_gather.group_arguments(group, *self._info.group_access)[1])

    def _add_low_precision_kwargs(self, group, kwargs):
        """``kwargs`` with the group's ``state_dtype``/``stochastic_rounding`` arguments added
        (the keys are in a group only when the user gave them)."""
        if "state_dtype" in group or "stochastic_rounding" in group:
            kwargs.update(_low_precision.kernel_kwargs(group, self._step_count,
                                                       bool(self._info.scalar_state)))
        return kwargs

    def _new_state(self, key, param, group):
        """A new state array ``key`` of ``param``: ``_new_buffer``'s value, computed for a float32
        param where ``param`` is float16/bfloat16 (master weights), and a buffer rounded to the
        group's ``state_dtype`` (as the float32 optimizer's state rounded; docs/low_precision.rst)."""
        compute = np.dtype(np.float32) if _low_precision.is_low_precision(param.dtype) else param.dtype
        value = self._new_buffer(key, _low_precision.stand_in(param, compute), group)
        if key in self._info.buffers:
            target = _low_precision.state_dtype(group, param)
            if value.dtype != target:
                value = value.astype(target)
        return value

    def _new_buffer(self, key, param, group):
        """The initial value of the state array ``key`` of ``param`` (zeros, as in torch)."""
        return np.zeros(param.shape, dtype=param.dtype)

    # ------------------------------------------------------------------ param groups

    @_locked
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
            parameter is read-only or not C-contiguous, shares memory with another parameter,
            or is listed twice in the group (stricter than torch, which warns about a duplicate
            and then applies its update once per occurrence).
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
            if _low_precision.is_low_precision(param.dtype):
                if self._info is None:
                    raise TypeError(
                        f"param {index} of param group {len(self.param_groups)} has dtype "
                        f"{param.dtype.name}; {type(self).__name__} updates float32 and float64 "
                        "Parameters only (float16/bfloat16 ones, through a float32 master copy, "
                        "are for the elementwise optimizers of fastoptim.optim.registry.OPTIMIZERS)")
                self._low_precision_params = True  # the step looks for master copies

        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError(
                    "parameter group didn't specify a value of required optimization "
                    f"parameter {name}"
                )
            param_group.setdefault(name, default)
        self._check_group(param_group)
        if self._info is not None:
            _low_precision.check_group(param_group)

        params = param_group["params"]
        _check_no_duplicates(params, len(self.param_groups))

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
        # If the groups are still the ones checked before, the snapshot covers the new one too;
        # otherwise it stays stale and the next step checks all groups again.
        up_to_date = _state_gather.groups_unchanged(self.param_groups, self._checked_params)
        self.param_groups.append(param_group)
        if up_to_date:
            self._checked_params.append((param_group, list(params)))

    # ------------------------------------------------------------------ gradients and steps

    @_locked
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
        self._armed_clip = None  # a clip coefficient armed for these gradients is dropped with them
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

    def _template_step(self, closure=None, *, grad_scale=None, found_inf=None):
        """Perform one optimization step.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model, sets the gradients and returns the loss; it is called first.
        grad_scale : float or 0-d ndarray, optional
            Keyword-only (torch's fused optimizers take it from ``GradScaler``): every gradient
            is divided by it inside the kernel, the gradients in memory are not modified. A
            positive finite number.
        found_inf : bool, number or 0-d ndarray, optional
            Keyword-only: non-zero skips the step, which then changes no parameter, state or
            step count (torch's fused semantics). See "One pass: clip, step and EMA" in the
            docs (``fused.rst``) for these two, ``clip_grad_norm_(..., fused_with=opt)`` and
            ``AveragedModel(..., fused_with=opt)``.

        Returns
        -------
        loss : object or None
            The closure's return value, or None without a closure.
        """
        loss = None
        if closure is not None:
            loss = closure()
        self._update(grad_scale, found_inf)
        return loss

    def _update(self, grad_scale=None, found_inf=None):
        """The update of every group, all or nothing: check and gather everything, then create
        missing state, then one kernel call per group, then store the state."""
        info = self._info
        attrs = self.__dict__
        fused = None
        if (grad_scale is not None or found_inf is not None
                or attrs.get("_fused_ema") is not None or attrs.get("_armed_clip") is not None):
            fused = _fused.FusedStep(self, grad_scale, found_inf)
        low_precision = attrs.get("_low_precision_params", True)  # a float16/bfloat16 param was added
        kernel = info.kernel_function
        with_step = bool(info.scalar_state)
        state = self.state
        if not _state_gather.groups_unchanged(self.param_groups, self._checked_params):
            self._check_params()
        work = []
        for group_index, group, params, grads in self._grouped_grads():
            switch, kwargs = _state_gather.group_arguments(group, *info.group_access)
            keys, slots = info.kernel_layout(group, switch)
            if not (keys or with_step):  # a stateless step (SGD without momentum)
                gathered = (None, None, [])
            else:
                gathered = _state_gather.gather(params, state, keys, with_step)
            if gathered is not None:  # every parameter has its state: gathered in C
                param_states, steps, lists = gathered
                fresh = ()
            else:
                param_states, steps, lists, fresh = self._gather_state(
                    group_index, group, params, keys, with_step
                )
            self._add_low_precision_kwargs(group, kwargs)
            masters, new_masters = None, ()
            if low_precision:
                masters, new_masters = _low_precision.master_params(params, state)
                if masters is not None:
                    kwargs["master_params"] = masters
            if fused is not None:
                fused_kwargs = fused.kwargs(group_index, params, grads)
                if fused_kwargs and (masters is not None
                                     or group.get("state_dtype") not in (None, "float32")):
                    raise ValueError(
                        f"param group {group_index} has float16/bfloat16 state or params: "
                        "grad_scale, clip_grad_norm_(..., fused_with=opt) and "
                        "AveragedModel(..., fused_with=opt) work on float32/float64 groups "
                        "with state of their own dtype (docs/low_precision.rst); use the "
                        "separate calls. Nothing was updated.")
                kwargs.update(fused_kwargs)
            work.append((group_index, group, params, grads, keys, slots, param_states, steps,
                         lists, fresh, kwargs, new_masters))

        checked = self._checked_state
        for item in work:
            previous = checked.get(item[0])
            if previous is None or not _state_gather.same_lists(item[8], previous):
                _check_state_not_shared(self.param_groups, state, info.family)
                break

        for (group_index, group, params, grads, keys, slots, param_states, steps, lists, fresh,
             kwargs, new_masters) in work:
            # New state is allocated only now that every group has been checked, and stored
            # only once the step succeeded, so a step that raises leaves no state behind.
            if fresh:
                for key, values in zip(keys, lists):
                    if key not in info.lazy_buffers:
                        for i in fresh:
                            if values[i] is None:
                                values[i] = self._new_state(key, params[i], group)
            arguments = [lists[slot] if slot >= 0 else [] for slot in slots]
            if with_step:
                arguments.append(steps)  # incremented in place by the kernel
            try:
                # Changes nothing if it raises.
                kernel(params, grads, *arguments, **kwargs)
            except Exception as exc:
                _diagnose_failed_call(exc, group_index, group, params, grads)
                raise
            if fused is not None:
                if fused.skip:  # found_inf: the kernel checked everything and changed nothing
                    continue
                fused.done(params)
            if fresh:
                for i in fresh:
                    param_state = state[params[i]]
                    if with_step:
                        param_state["step"] = steps[i]
                    for key, values in zip(keys, lists):
                        param_state[key] = values[i]
                if with_step:
                    for param_state, step in zip(param_states, steps):
                        if param_state:
                            param_state["step"] = step
            elif with_step:
                _state_gather.store_steps(param_states, steps)
            for i, master in new_masters:
                state[params[i]][_low_precision.MASTER_KEY] = master
            # These arrays are now known not to share memory: the next step skips the check
            # while it gathers the very same ones.
            checked[group_index] = lists
        if fused is not None:
            fused.finish(self)

    def _gather_state(self, group_index, group, params, keys, with_step):
        """The state lists of a group in which some parameters lack state (``None`` placeholders
        and a step count of 0 for those, whose indices are returned in ``fresh``); refuses a
        state that has some of its keys but not all."""
        info = self._info
        lazy = info.lazy_buffers
        needed = info.scalar_state + tuple(k for k in keys if k not in lazy)
        state = self.state
        param_states, steps, lists, fresh = [], [], [[] for _ in keys], []
        for i, p in enumerate(params):
            param_state = state.get(p)
            param_states.append(param_state)
            if param_state:
                missing = [k for k in needed if k not in param_state]
                if missing:
                    index = next(j for j, q in enumerate(group["params"]) if q is p)
                    option = info.optional.get(missing[0]) if len(missing) == 1 else None
                    reason = (
                        f" ({option} was switched on after this parameter's state was created; "
                        f"set group['{option}'] back to False, or add state['{missing[0]}'] "
                        "yourself)" if option else ""
                    )
                    raise ValueError(
                        f"the {info.family} state of param {index} of param group {group_index} "
                        f"has no {missing}{reason}; nothing was updated"
                    )
            if not param_state or any(k not in param_state for k in keys):
                fresh.append(i)
            if with_step:
                steps.append(param_state["step"] if param_state else 0)
            for key, values in zip(keys, lists):
                values.append(param_state.get(key) if param_state else None)
        return param_states, steps, lists, fresh

    def _check_params(self):
        """Check every parameter of every group, as :meth:`add_param_group` does, after
        ``param_groups`` was edited directly; remember what was checked."""
        groups = self.param_groups
        seen = set()
        for group_index, group in enumerate(groups):
            params = group["params"]
            for index, p in enumerate(params):
                _check_param(p, index, group_index)
                if _low_precision.is_low_precision(p.dtype):
                    self._low_precision_params = True
            _check_no_duplicates(params, group_index)
            if not seen.isdisjoint(params):
                raise ValueError("some parameters appear in more than one parameter group")
            seen.update(params)
        _check_no_shared_memory(groups)
        self._checked_params = [(g, list(g["params"])) for g in groups]
        self._checked_state = {}

    def _grouped_grads(self):
        """Collect, for every group, the parameters that have a gradient, and validate them.

        Returns a list of ``(group_index, group, params, grads)`` for the groups with at least
        one gradient. Nothing may change if any gradient is bad, even in the last group
        (stricter than torch, which updates groups one after another and fails half way): the
        functional layer checks all of one call's arrays before it changes any, which covers the
        first group, and the groups after it are checked here, before the first kernel runs.
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
            if params:
                collected.append((group_index, group, params, grads))
        for group_index, group, params, grads in collected[1:]:
            _check_group_arrays(group_index, group, params, grads)
        return collected

    # ------------------------------------------------------------------ state dicts

    @_locked
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

    @_locked
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
            ``"state"`` or ``"param_groups"`` is missing (the message names both and what to
            pass instead).

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

        missing = [key for key in ("state", "param_groups") if key not in state_dict]
        if missing:
            raise KeyError(
                f"the state dict has no {' and no '.join(repr(k) for k in missing)} entry: "
                "load_state_dict expects the dict returned by optimizer.state_dict(), "
                "{'state': {...}, 'param_groups': [...]} (for a whole training checkpoint, pass "
                "its optimizer entry, e.g. checkpoint['optimizer']). Nothing was changed."
            )
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
                if self._info is not None:
                    _low_precision.check_group(new_group)
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
