"""The optimizer table: one :class:`OptimizerInfo` per optimizer, the single place that says which
optimizers exist and what each one is made of.

Modelled on torch's ``OptimizerInfo`` (``torch/testing/_internal/common_optimizers.py``). The class
layer reads its step template and state schema from here (:class:`fastoptim.optim.base.Optimizer`),
and the tests, the torch-parity checks and the golden data iterate :data:`OPTIMIZERS`. The facts
about the compiled kernel (its state arrays, which of them a group option switches on, its thread
cost) are not restated: they come from the kernel spec, ``fastoptim._kernels.spec.KERNELS``.

Adding an elementwise optimizer ``Foo`` takes: a kernel spec entry and element body (kernel room),
one entry in :data:`OPTIMIZERS` below, a thin class file ``fastoptim/optim/foo.py`` (signature,
docstring, torch's hyperparameter checks) and its test configurations in the entry.

This module imports no optimizer class (the classes import it): :attr:`OptimizerInfo.cls` and
:attr:`OptimizerInfo.functional` resolve lazily.
"""
import importlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from fastoptim._kernels.spec import KERNELS
from fastoptim.optim._validation import _to_float

__all__ = ["OptimConfig", "OptimizerInfo", "OPTIMIZERS", "CLIQUEY_VARIANTS", "all_configs"]


@dataclass(frozen=True)
class OptimConfig:
    """One test configuration of an optimizer (torch's ``OptimizerInput``).

    Hyperparameters are plain Python values, except a "tensor lr" entry: there ``lr`` is a 0-d
    float32 NumPy array, fastoptim's counterpart of torch's ``torch.tensor(0.001)``
    (:meth:`torch_kwargs` turns it back into a tensor).
    """

    optimizer: str  # the class name in fastoptim and in torch.optim
    desc: str
    kwargs: dict = field(default_factory=dict)
    # Hyperparameters of a second param group, which must differ from the first group's.
    group_overrides: dict = field(default_factory=dict)

    @property
    def id(self):
        return f"{self.optimizer}-{self.desc.replace(' ', '_')}"

    @property
    def fastoptim_class(self):
        return OPTIMIZERS[self.optimizer].cls

    def make(self, params, **extra):
        """The fastoptim optimizer of this configuration over ``params``."""
        return self.fastoptim_class(params, **{**self.kwargs, **extra})

    def torch_class(self):
        import torch

        return getattr(torch.optim, OPTIMIZERS[self.optimizer].torch_name)

    def torch_kwargs(self, kwargs=None):
        """``kwargs`` (default: this configuration's) with NumPy arrays turned into tensors."""
        import torch

        converted = {}
        for key, value in (self.kwargs if kwargs is None else kwargs).items():
            if isinstance(value, np.ndarray):
                value = torch.from_numpy(value.copy())
            converted[key] = value
        return converted

    def make_torch(self, params, **extra):
        return self.torch_class()(params, **self.torch_kwargs({**self.kwargs, **extra}))


@dataclass(frozen=True)
class OptimizerInfo:
    """Everything the library and its tests need to know about one optimizer.

    Attributes
    ----------
    name : str
        The class name, in ``fastoptim`` and (``torch_name``) in ``torch.optim``.
    module : str, default ``fastoptim.optim.<name in lowercase>``
        The module that defines the class (and its functional form).
    kernel : str, default the name in lowercase
        The key of its compiled kernel in ``KERNELS`` (and the name of the kernel entry point in
        ``fastoptim._dispatch.kernels``); several optimizers may share one (Adam and AdamW).
    functional_name : str, default the name in lowercase
        Its list-based form in :mod:`fastoptim.functional`.
    family : str, default the name
        The name error messages give its state ("the Adam state of param 0 ...": AdamW's too).
    scalar_state : tuple of str, default ``("step",)`` for a kernel that counts steps, else ``()``
        Per-parameter state that is a number, not an array: ``"step"`` (an exact Python int,
        passed to the kernel as the ``state_steps`` list after the buffer lists, incremented by it).
    lazy_buffers : tuple of str
        State arrays the kernel allocates itself at a parameter's first use (their list holds
        ``None`` for it): SGD's momentum buffer, which torch creates as a copy of the gradient.
        Every other state array starts as zeros, allocated by the step template.
    scalars : tuple
        Per-step hyperparameters passed to the kernel as floats: the name of a group key (which
        the kernel argument shares), or ``(kernel argument, group key, index)`` for an entry
        of a tuple-valued key (Adam's ``beta1`` is ``betas[0]``).
    flags : tuple of str
        Group options passed to the kernel as bools; they choose a specialisation of the element
        loop (no flag is tested per element).
    group_defaults : dict
        Keys that state dicts of older torch versions may lack, with the value torch's
        ``__setstate__`` fills in.
    group_forced : dict
        Keys every group is forced to (AdamW: ``decoupled_weight_decay=True``).
    configs : tuple of OptimConfig
        The class-level test configurations: every CPU configuration torch 2.13's table tests, plus
        combinations it leaves out; no entry sets the "cliquey" flags (``foreach``/``fused``/
        ``differentiable``), which choose an implementation, not an algorithm.
    default_config : int
        The index in ``configs`` of the configuration API tests use (one that creates state).
    kernel_configs : tuple of dict
        Keyword arguments of the functional form, for the kernel tests and the golden data
        (``tests/golden/kernels.npz`` names them ``<kernel><index>``; append, never reorder).
    state_order : tuple of str
        The state arrays in the order torch creates them, where it differs from the kernel's
        argument order (RMSprop: ``momentum_buffer`` before ``grad_avg``); a new state dict has
        its keys in this order.
    in_torch : bool
        Whether ``torch.optim`` has it (False for Lion): the torch-parity tests skip the others.
    bench_configs : tuple of (str, dict)
        The benchmark's configurations (:mod:`fastoptim.tools.bench`): its key and the class's
        hyperparameters besides ``lr``; empty: one configuration with the class defaults, keyed
        by the lowercase name.
    demo : dict or None
        The demo's settings (:mod:`fastoptim.tools.demo`): ``lr``, ``weight_decay`` (of the weight
        matrices), optional ``kwargs`` (further hyperparameters) and ``default`` (the demo's
        default optimizer); None: the demo does not offer it.
    peers : tuple of str
        The benchmark peers (:mod:`fastoptim.tools.peers`) with an update rule of their own for
        it: ``"numpy"`` (the class's module defines ``_numpy_rule(peer, group)``, torch's step in
        NumPy ufuncs) and ``"optax"`` (``_optax_rule(optax, group)``, the optax transformation;
        it raises NotImplementedError for a configuration optax does not have); for an optimizer
        torch does not have, ``"reference"`` (``_reference_rule(torch, groups, **kwargs)``: its
        reference formula in torch ops, the torch side of ``benchmarks/parity_report.py``). The
        generic peers (fastoptim, torch) need nothing here.
    """

    name: str
    scalars: tuple
    flags: tuple
    module: str = ""
    kernel: str = ""
    functional_name: str = ""
    family: str = ""
    scalar_state: tuple = None
    lazy_buffers: tuple = ()
    group_defaults: dict = field(default_factory=dict)
    group_forced: dict = field(default_factory=dict)
    configs: tuple = ()
    default_config: int = 0
    kernel_configs: tuple = ()
    state_order: tuple = ()
    in_torch: bool = True
    bench_configs: tuple = ()
    demo: dict = None
    peers: tuple = ()

    def __post_init__(self):
        lower = self.name.lower()
        for key, default in (("module", f"fastoptim.optim.{lower}"), ("kernel", lower),
                             ("functional_name", lower), ("family", self.name)):
            if not getattr(self, key):
                object.__setattr__(self, key, default)
        if self.scalar_state is None:
            object.__setattr__(self, "scalar_state", ("step",) if KERNELS[self.kernel].steps else ())
        object.__setattr__(self, "configs", tuple(
            c if isinstance(c, OptimConfig) else OptimConfig(self.name, *c) for c in self.configs))

    @property
    def torch_name(self):
        return self.name

    @property
    def cls(self):
        return getattr(importlib.import_module(self.module), self.name)

    @property
    def functional(self):
        return getattr(importlib.import_module("fastoptim.functional"), self.functional_name)

    @property
    def kernel_spec(self):
        return KERNELS[self.kernel]

    @property
    def buffers(self):
        """The per-parameter state arrays, in the kernel's argument order."""
        return KERNELS[self.kernel].buffers

    @property
    def optional(self):
        """``{buffer: group option}`` for the buffers that exist only when the option is on."""
        return KERNELS[self.kernel].optional

    @property
    def scalar_arrays(self):
        """Per-parameter state that torch keeps as a 0-d tensor (NAdam's ``mu_product``, ASGD's
        ``eta`` and ``mu``), in torch's state order: the kernel's ``scalar_keys``, 0-d arrays it
        updates in place; the class's ``_new_buffer`` gives their initial values."""
        return KERNELS[self.kernel].scalar_keys

    @property
    def state_keys(self):
        """Every per-parameter state key, in the order a new state dict has them."""
        return self.scalar_state + self.scalar_arrays + (self.state_order or self.buffers)

    @property
    def work_per_element(self):
        return KERNELS[self.kernel].work_per_element

    def active_buffers(self, group):
        """The state arrays a step of ``group`` uses (optional ones only when switched on)."""
        return self.kernel_layout(group)[0][len(self.scalar_arrays):]

    def kernel_layout(self, group, switch=None):
        """``(active keys, slots)``: the 0-d :attr:`scalar_arrays` and the active buffers, in
        torch's state order; ``slots[j]`` is the position in the active keys of the kernel's j-th
        list argument, or -1 for a buffer that is off (its list is empty). ``switch``: the
        group's ``not group[option]`` for each optional buffer's option, when already read
        (``_state_gather.group_arguments``)."""
        if switch is None:
            switch = tuple([not group[option] for option in self._options])
        try:
            return self._layouts[switch]
        except KeyError:
            pass
        optional = KERNELS[self.kernel].optional
        active = self.scalar_arrays + tuple(
            b for b in self.state_order or self.buffers if b not in optional or group[optional[b]])
        kernel_lists = self.buffers + KERNELS[self.kernel].extra_keys
        slots = tuple(active.index(b) if b in active else -1 for b in kernel_lists)
        self._layouts[switch] = (active, slots)
        return active, slots

    @cached_property
    def _options(self):
        return tuple(KERNELS[self.kernel].optional.values())

    @cached_property
    def _layouts(self):
        return {}

    @cached_property
    def group_access(self):
        """What ``_state_gather.group_arguments`` reads from a group: the layout options, the
        scalars, the flags and the conversion of a scalar that is neither float nor int."""
        return self._options, self.scalar_access, tuple(self.flags), _to_float

    @cached_property
    def scalar_access(self):
        """``(kernel argument, group key, index or None)`` for each of :attr:`scalars`."""
        return tuple((s, s, None) if isinstance(s, str) else s for s in self.scalars)

    def peer_rule(self, peer):
        """The update rule of benchmark peer ``peer`` (see :attr:`peers`), or None."""
        if peer not in self.peers:
            return None
        return getattr(importlib.import_module(self.module), f"_{peer}_rule")

    @cached_property
    def kernel_function(self):
        """The compiled kernel entry point (imports the extension on first use)."""
        return getattr(importlib.import_module("fastoptim._dispatch").kernels, self.kernel)

    def bytes_per_element(self, itemsize, group):
        """Memory traffic of one element of one step of ``group``: the bandwidth bound.

        The parameter is read and written, the gradient read, and every active state array read
        and written: ``itemsize * 3 + state itemsize * 2 * active buffers``, the state arrays in
        the group's ``state_dtype`` (default: the param's dtype). A 2-byte (float16/bfloat16)
        param is updated through its float32 master copy (default state dtype float32): the
        gradient read and the param written in 2 bytes, the master read and written in 4
        (docs/low_precision.rst).
        """
        n = len(self.active_buffers(group))
        name = group.get("state_dtype")
        if itemsize == 2:
            return 2 + 2 + 2 * 4 + 2 * _STATE_ITEMSIZE.get(name, 4) * n
        return itemsize * 3 + 2 * _STATE_ITEMSIZE.get(name, itemsize) * n

    @property
    def default(self):
        """The configuration API tests use."""
        return self.configs[self.default_config]


# bytes per element of a state_dtype (fastoptim.optim._low_precision.STATE_DTYPES)
_STATE_ITEMSIZE = {"float32": 4, "bfloat16": 2, "float16": 2}


# ---------------------------------------------------------------------------------- the table

def _configs(group, table):
    """Test configurations: ``(desc, kwargs)`` rows, or ``(desc, kwargs, group)`` rows that bring
    their own, with ``group`` as the second param group's hyperparameters. The entry turns them
    into :class:`OptimConfig` of its optimizer."""
    return tuple(row if len(row) == 3 else (*row, group) for row in table)


_SGD_GROUP = {"lr": 0.05}
_ADAM_GROUP = {"lr": 3e-3, "betas": (0.8, 0.99)}
_ADAM_TABLE = [
    # torch 2.13's optim_inputs_func_adam (CPU entries), in its order; AdamW uses the same
    ("default", {}),
    ("non-default lr", {"lr": 0.01}),
    ("nonzero weight_decay", {"weight_decay": 0.1}),
    ("maximize", {"weight_decay": 0.1, "maximize": True}),
    ("amsgrad", {"weight_decay": 0.1, "amsgrad": True}),
    # combinations torch's table does not have
    ("amsgrad maximize", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True, "maximize": True}),
    ("betas eps", {"lr": 0.01, "betas": (0.5, 0.9), "eps": 1e-6}),
    ("beta1 zero", {"lr": 0.01, "betas": (0.0, 0.99)}),
]
_ADAM_FLAGS = ("amsgrad", "maximize", "decoupled_weight_decay")
_ADAM_SCALARS = (("beta1", "betas", 0), ("beta2", "betas", 1), "lr", "weight_decay", "eps")
# torch 2.13's Adam.__setstate__ defaults
_ADAM_GROUP_DEFAULTS = {"amsgrad": False, "maximize": False, "foreach": None, "capturable": False,
                        "differentiable": False, "decoupled_weight_decay": False, "fused": None}
_MOMENT_SETSTATE = {"foreach": None, "maximize": False, "differentiable": False,
                    "capturable": False}

OPTIMIZERS = {info.name: info for info in [
    OptimizerInfo(
        name="SGD", scalars=("lr", "weight_decay", "momentum", "dampening"),
        flags=("nesterov", "maximize"), lazy_buffers=("momentum_buffer",),
        # torch 2.13's SGD.__setstate__ defaults
        group_defaults={"nesterov": False, "maximize": False, "foreach": None,
                        "differentiable": False, "fused": False},
        configs=_configs(_SGD_GROUP, [
            # torch 2.13's optim_inputs_func_sgd, in its order
            ("default", {}),
            ("non-default lr", {"lr": 1e-2}),
            ("tensor lr", {"lr": np.array(0.001, dtype=np.float32)}),
            ("non-zero weight_decay", {"weight_decay": 0.5}),
            ("momentum", {"momentum": 0.9}),
            ("maximize", {"weight_decay": 0.1, "maximize": True}),
            ("dampening", {"momentum": 0.9, "dampening": 0.5}),
            ("weight_decay w/ momentum", {"momentum": 0.9, "weight_decay": 0.1}),
            ("nesterov", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
            # combinations torch's table does not have
            ("nesterov maximize", {"lr": 0.01, "momentum": 0.5, "nesterov": True,
                                   "maximize": True}, {"lr": 0.02, "momentum": 0.9}),
            ("dampening maximize weight_decay",
             {"lr": 0.01, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.05, "maximize": True},
             {"dampening": 0.0, "weight_decay": 0.0}),
            ("momentum above one", {"lr": 1e-3, "momentum": 1.2, "dampening": 0.9},
             {"momentum": 0.2}),
        ]),
        default_config=4,  # momentum
        bench_configs=(("sgd", {"momentum": 0.9}),),
        peers=("numpy", "optax"),
        demo={"lr": 0.1, "weight_decay": 1e-4, "kwargs": {"momentum": 0.9, "nesterov": True}},
        kernel_configs=(
            dict(lr=1e-3, weight_decay=0.0, momentum=0.0, dampening=0.0, nesterov=False,
                 maximize=False),
            dict(lr=0.1, weight_decay=0.5, momentum=0.0, dampening=0.0, nesterov=False,
                 maximize=True),
            dict(lr=0.05, weight_decay=0.1, momentum=0.9, dampening=0.0, nesterov=False,
                 maximize=False),
            dict(lr=0.05, weight_decay=0.0, momentum=0.9, dampening=0.5, nesterov=False,
                 maximize=True),
            dict(lr=0.01, weight_decay=0.1, momentum=0.9, dampening=0.0, nesterov=True,
                 maximize=False),
        ),
    ),
    OptimizerInfo(
        name="Adam", scalars=_ADAM_SCALARS, flags=_ADAM_FLAGS,
        group_defaults=_ADAM_GROUP_DEFAULTS,
        configs=_configs(_ADAM_GROUP, _ADAM_TABLE + [
            ("decoupled weight_decay", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
            ("decoupled amsgrad maximize",
             {"lr": 0.01, "weight_decay": 0.05, "decoupled_weight_decay": True, "amsgrad": True,
              "maximize": True}),
        ]),
        default_config=4,  # amsgrad
        bench_configs=(("adam", {}), ("amsgrad", {"amsgrad": True})),
        peers=("numpy", "optax"),
        demo={"lr": 1e-2, "weight_decay": 1e-5},
        kernel_configs=(
            dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=False,
                 maximize=False, decoupled_weight_decay=False),
            dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, amsgrad=False,
                 maximize=True, decoupled_weight_decay=False),
            dict(lr=0.01, beta1=0.9, beta2=0.99, eps=1e-6, weight_decay=0.1, amsgrad=True,
                 maximize=False, decoupled_weight_decay=False),
            dict(lr=0.01, beta1=0.3, beta2=0.999, eps=1e-8, weight_decay=1e-2, amsgrad=False,
                 maximize=False, decoupled_weight_decay=True),
            dict(lr=0.02, beta1=0.0, beta2=0.9, eps=1e-8, weight_decay=0.05, amsgrad=True,
                 maximize=True, decoupled_weight_decay=True),
        ),
    ),
    OptimizerInfo(
        name="AdamW", module="fastoptim.optim.adam", kernel="adam", family="Adam",
        scalars=_ADAM_SCALARS, flags=_ADAM_FLAGS, group_defaults=_ADAM_GROUP_DEFAULTS,
        group_forced={"decoupled_weight_decay": True},
        configs=_configs(_ADAM_GROUP, _ADAM_TABLE),
        default_config=4,  # amsgrad
        bench_configs=(("adamw", {"weight_decay": 1e-2}),),
        peers=("numpy", "optax"),
        demo={"lr": 1e-2, "weight_decay": 1e-2, "default": True},
    ),
    OptimizerInfo(
        name="RMSprop", scalars=("lr", "alpha", "eps", "weight_decay", "momentum"),
        flags=("centered", "maximize"), state_order=("square_avg", "momentum_buffer", "grad_avg"),
        # torch 2.13's RMSprop.__setstate__ defaults
        group_defaults={"momentum": 0, "centered": False, "foreach": None, "maximize": False,
                        "differentiable": False, "capturable": False},
        configs=_configs({"lr": 1e-3, "alpha": 0.9}, [
            # torch 2.13's optim_inputs_func_rmsprop (CPU entries), in its order
            ("default", {}),
            ("non-default lr", {"lr": 1e-3}),
            ("nonzero weight_decay", {"weight_decay": 0.1}),
            ("maximize", {"maximize": True}),
            ("centered", {"weight_decay": 0.1, "centered": True}),
            ("maximize, weight_decay", {"maximize": True, "weight_decay": 0.1}),
            ("momentum", {"weight_decay": 0.1, "centered": True, "momentum": 0.1}),
            ("maximize, centered, weight_decay, w/ momentum",
             {"weight_decay": 0.1, "centered": True, "momentum": 0.1, "maximize": True}),
            # combinations torch's table does not have
            ("momentum not centered", {"lr": 1e-3, "momentum": 0.9}),
            ("alpha eps", {"lr": 1e-3, "alpha": 0.5, "eps": 1e-3, "centered": True}),
        ]),
        default_config=7,
        peers=("numpy",),
    ),
    OptimizerInfo(
        name="Adagrad", scalars=("lr", "weight_decay", "lr_decay", "eps"), flags=("maximize",),
        # torch 2.13's Adagrad.__setstate__ defaults
        group_defaults={"foreach": None, "maximize": False, "differentiable": False,
                        "fused": None},
        configs=_configs({"lr": 0.05, "lr_decay": 0.01}, [
            # torch 2.13's optim_inputs_func_adagrad, in its order
            ("default", {}),
            ("nonzero weight_decay", {"weight_decay": 0.1}),
            ("maximize", {"weight_decay": 0.1, "maximize": True}),
            ("non-default lr", {"lr": 0.1}),
            ("initial_accumulator_value", {"initial_accumulator_value": 0.1, "weight_decay": 0.1}),
            ("lr_decay", {"lr": 0.1, "lr_decay": 0.5, "weight_decay": 0.1}),
            ("tensor lr", {"lr": np.array(0.001, dtype=np.float32)}),
            # combinations torch's table does not have
            ("eps maximize initial_accumulator_value",
             {"lr": 0.1, "eps": 1e-3, "initial_accumulator_value": 0.5, "maximize": True}),
        ]),
        default_config=5,
        peers=("numpy",),
    ),
    OptimizerInfo(
        name="Adadelta", scalars=("lr", "rho", "eps", "weight_decay"), flags=("maximize",),
        group_defaults=_MOMENT_SETSTATE,  # torch 2.13's Adadelta.__setstate__ defaults
        configs=_configs({"lr": 0.5, "rho": 0.8}, [
            # torch 2.13's optim_inputs_func_adadelta (CPU entries), in its order
            ("default", {}),
            ("non-default lr", {"lr": 0.01}),
            ("nonzero weight_decay", {"weight_decay": 0.1}),
            ("maximize", {"maximize": True}),
            ("maximize, weight_decay", {"weight_decay": 0.1, "maximize": True}),
            ("rho", {"rho": 0.95, "weight_decay": 0.9}),
            # combinations torch's table does not have
            ("eps rho one", {"eps": 1e-3, "rho": 1.0}),
        ]),
        default_config=4,
        peers=("numpy",),
    ),
    OptimizerInfo(
        name="Adamax", scalars=_ADAM_SCALARS, flags=("maximize",),
        group_defaults=_MOMENT_SETSTATE,  # torch 2.13's Adamax.__setstate__ defaults
        configs=_configs(_ADAM_GROUP, [
            # torch 2.13's optim_inputs_func_adamax (CPU entries), in its order
            ("default", {}),
            ("non-default lr", {"lr": 0.1}),
            ("nonzero weight_decay", {"weight_decay": 0.1}),
            ("maximize", {"maximize": True}),
            ("maximize, weight_decay", {"weight_decay": 0.1, "maximize": True}),
            # combinations torch's table does not have
            ("betas eps", {"lr": 0.01, "betas": (0.5, 0.9), "eps": 1e-3}),
            ("beta1 zero", {"lr": 0.01, "betas": (0.0, 0.99)}),
        ]),
        default_config=4,
        peers=("numpy",),
    ),
    OptimizerInfo(
        name="Lion", scalars=("lr", ("beta1", "betas", 0), ("beta2", "betas", 1), "weight_decay"),
        flags=("maximize",), group_defaults={"maximize": False}, in_torch=False,
        peers=("reference", "numpy"),
        # Not in torch: configurations like the Adam family's
        configs=_configs({"lr": 3e-4, "betas": (0.8, 0.95)}, [
            ("default", {}),
            ("non-default lr", {"lr": 1e-3}),
            ("nonzero weight_decay", {"weight_decay": 0.1}),
            ("maximize", {"maximize": True}),
            ("maximize, weight_decay", {"lr": 1e-3, "weight_decay": 0.5, "maximize": True}),
            ("betas", {"betas": (0.95, 0.98)}),
            ("beta1 zero", {"betas": (0.0, 0.99)}),
        ]),
        default_config=4,
    ),
    OptimizerInfo(
        name="NAdam", scalars=_ADAM_SCALARS + ("momentum_decay",),
        flags=("decoupled_weight_decay", "maximize"),
        # torch 2.13's NAdam.__setstate__ defaults
        group_defaults={"maximize": False, "foreach": None, "capturable": False,
                        "differentiable": False, "decoupled_weight_decay": False},
        configs=_configs(_ADAM_GROUP, [
            # torch 2.13's optim_inputs_func_nadam (CPU entries), in its order
            ("default", {}),
            ("non-default lr", {"lr": 1e-3}),
            ("non-zero momentum_decay", {"momentum_decay": 6e-3}),
            ("weight_decay", {"weight_decay": 0.1}),
            ("weight_decay, momentum_decay", {"weight_decay": 0.1, "momentum_decay": 6e-3}),
            ("decoupled_weight_decay",
             {"weight_decay": 0.1, "momentum_decay": 6e-3, "decoupled_weight_decay": True}),
            ("maximize", {"weight_decay": 0.1, "maximize": True}),
            # combinations torch's table does not have
            ("decoupled maximize betas",
             {"lr": 0.01, "betas": (0.5, 0.9), "weight_decay": 0.05,
              "decoupled_weight_decay": True, "maximize": True}),
            ("beta1 zero", {"lr": 0.01, "betas": (0.0, 0.95), "momentum_decay": 0.0}),
        ]),
        default_config=5,  # decoupled_weight_decay
        peers=("numpy",),
    ),
    OptimizerInfo(
        name="RAdam", scalars=_ADAM_SCALARS, flags=("decoupled_weight_decay", "maximize"),
        # torch 2.13's RAdam.__setstate__ defaults
        group_defaults={**_MOMENT_SETSTATE, "decoupled_weight_decay": False},
        configs=_configs(_ADAM_GROUP, [
            # torch 2.13's optim_inputs_func_radam (CPU entries), in its order
            ("default", {}),
            ("non-default lr", {"lr": 2e-3}),
            ("non-default eps", {"eps": 1e-6}),
            ("nonzero weight_decay", {"weight_decay": 0.1}),
            ("decoupled_weight_decay", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
            ("maximize", {"weight_decay": 0.1, "maximize": True}),
            # combinations torch's table does not have (beta2 0.9: rectified from step 6)
            ("decoupled maximize short warmup",
             {"lr": 0.01, "betas": (0.5, 0.9), "weight_decay": 0.05,
              "decoupled_weight_decay": True, "maximize": True}),
            ("beta1 zero", {"lr": 0.01, "betas": (0.0, 0.95)}),
        ]),
        default_config=4,  # decoupled_weight_decay
        peers=("numpy",),
    ),
    OptimizerInfo(
        name="ASGD", scalars=("lambd", "lr", "t0", "alpha", "weight_decay"), flags=("maximize",),
        group_defaults=_MOMENT_SETSTATE,  # torch 2.13's ASGD.__setstate__ defaults
        configs=_configs({"lr": 0.05, "t0": 3}, [
            # torch 2.13's optim_inputs_func_asgd (CPU entries), in its order
            ("default", {}),
            ("non-default lambd", {"lambd": 0.1}),
            ("non-default lr", {"lr": 0.02}),
            ("t0", {"t0": 100}),
            ("maximize", {"maximize": True}),
            ("nonzero weight_decay", {"weight_decay": 0.1}),
            ("maximize, nonzero weight_decay", {"weight_decay": 0.1, "maximize": True}),
            # combinations torch's table does not have (averaging from the first steps)
            ("early averaging", {"lr": 0.03, "lambd": 0.01, "alpha": 0.5, "t0": 5,
                                 "weight_decay": 0.05, "maximize": True}),
        ]),
        default_config=7,  # early averaging
        peers=("numpy",),
    ),
    OptimizerInfo(
        name="Rprop", scalars=(("etaminus", "etas", 0), ("etaplus", "etas", 1),
                               ("step_size_min", "step_sizes", 0),
                               ("step_size_max", "step_sizes", 1)),
        flags=("maximize",),
        group_defaults=_MOMENT_SETSTATE,  # torch 2.13's Rprop.__setstate__ defaults
        configs=_configs({"lr": 0.05, "etas": (0.3, 1.1)}, [
            # torch 2.13's optim_inputs_func_rprop (CPU entries), in its order
            ("default", {}),
            ("non-default lr", {"lr": 2e-4}),
            ("non-default etas", {"etas": (0.5, 1.5)}),
            ("non-default step_sizes", {"step_sizes": (2e-6, 100)}),
            ("maximize", {"maximize": True}),
            # combinations torch's table does not have (clamped at both ends)
            ("narrow step_sizes maximize",
             {"lr": 0.1, "etas": (0.2, 1.9), "step_sizes": (0.05, 0.2), "maximize": True}),
        ]),
        default_config=4,  # maximize
        peers=("numpy",),
    ),
]}

# torch's "cliquey" flags: accepted by fastoptim for drop-in compatibility, with no effect.
CLIQUEY_VARIANTS = (
    {"foreach": False},
    {"foreach": True},
    {"fused": False},
    {"fused": True},
    {"differentiable": False},
)


def all_configs():
    """Every test configuration of every optimizer, in table order."""
    return [config for info in OPTIMIZERS.values() for config in info.configs]
