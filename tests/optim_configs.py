"""The table of optimizer configurations that drives the optimizer tests (and the benchmarks).

Like torch's ``OptimizerInfo``/``optim_inputs_func``
(``torch/testing/_internal/common_optimizers.py``): every CPU configuration torch 2.13 tests SGD,
Adam and AdamW with, plus the nesterov/dampening/amsgrad/maximize/decoupled combinations torch's
table leaves out. As in torch's table, no entry sets ``foreach``/``fused``/``differentiable`` (the
"cliquey" flags, which choose an implementation, not an algorithm); tests add them separately.

Hyperparameters are plain Python values, except the "tensor lr" entry: there ``lr`` is a 0-d
float32 NumPy array, fastoptim's counterpart of torch's ``torch.tensor(0.001)``
(:meth:`OptimConfig.torch_kwargs` turns it back into a tensor).
"""
from dataclasses import dataclass, field

import numpy as np

import fastoptim as fo


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str  # "SGD", "Adam" or "AdamW": the class name in fastoptim and in torch.optim
    desc: str
    kwargs: dict = field(default_factory=dict)
    # Hyperparameters of a second param group, which must differ from the first group's.
    group_overrides: dict = field(default_factory=dict)

    @property
    def id(self):
        return f"{self.optimizer}-{self.desc.replace(' ', '_')}"

    @property
    def fastoptim_class(self):
        return getattr(fo, self.optimizer)

    def make(self, params, **extra):
        """The fastoptim optimizer of this configuration over ``params``."""
        return self.fastoptim_class(params, **{**self.kwargs, **extra})

    def torch_class(self):
        import torch

        return getattr(torch.optim, self.optimizer)

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


_SGD_GROUP = {"lr": 0.05}
_ADAM_GROUP = {"lr": 3e-3, "betas": (0.8, 0.99)}

SGD_CONFIGS = [
    # torch 2.13's optim_inputs_func_sgd, in its order
    OptimConfig("SGD", "default", {}, _SGD_GROUP),
    OptimConfig("SGD", "non-default lr", {"lr": 1e-2}, _SGD_GROUP),
    OptimConfig("SGD", "tensor lr", {"lr": np.array(0.001, dtype=np.float32)}, _SGD_GROUP),
    OptimConfig("SGD", "non-zero weight_decay", {"weight_decay": 0.5}, _SGD_GROUP),
    OptimConfig("SGD", "momentum", {"momentum": 0.9}, _SGD_GROUP),
    OptimConfig("SGD", "maximize", {"weight_decay": 0.1, "maximize": True}, _SGD_GROUP),
    OptimConfig("SGD", "dampening", {"momentum": 0.9, "dampening": 0.5}, _SGD_GROUP),
    OptimConfig("SGD", "weight_decay w/ momentum", {"momentum": 0.9, "weight_decay": 0.1},
                _SGD_GROUP),
    OptimConfig("SGD", "nesterov", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
                _SGD_GROUP),
    # combinations torch's table does not have
    OptimConfig("SGD", "nesterov maximize", {"lr": 0.01, "momentum": 0.5, "nesterov": True,
                                             "maximize": True}, {"lr": 0.02, "momentum": 0.9}),
    OptimConfig("SGD", "dampening maximize weight_decay",
                {"lr": 0.01, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.05,
                 "maximize": True}, {"dampening": 0.0, "weight_decay": 0.0}),
    OptimConfig("SGD", "momentum above one", {"lr": 1e-3, "momentum": 1.2, "dampening": 0.9},
                {"momentum": 0.2}),
]

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

ADAM_CONFIGS = [OptimConfig("Adam", desc, kwargs, _ADAM_GROUP) for desc, kwargs in _ADAM_TABLE] + [
    OptimConfig("Adam", "decoupled weight_decay", {"weight_decay": 0.1,
                                                   "decoupled_weight_decay": True}, _ADAM_GROUP),
    OptimConfig("Adam", "decoupled amsgrad maximize",
                {"lr": 0.01, "weight_decay": 0.05, "decoupled_weight_decay": True,
                 "amsgrad": True, "maximize": True}, _ADAM_GROUP),
]

ADAMW_CONFIGS = [OptimConfig("AdamW", desc, kwargs, _ADAM_GROUP) for desc, kwargs in _ADAM_TABLE]

ALL_CONFIGS = SGD_CONFIGS + ADAM_CONFIGS + ADAMW_CONFIGS

# The default configuration of each optimizer, for tests about the API rather than the numbers.
DEFAULT_CONFIGS = [SGD_CONFIGS[4], ADAM_CONFIGS[4], ADAMW_CONFIGS[4]]  # momentum / amsgrad

# torch's "cliquey" flags: accepted by fastoptim for drop-in compatibility, with no effect.
CLIQUEY_VARIANTS = [
    {"foreach": False},
    {"foreach": True},
    {"fused": False},
    {"fused": True},
    {"differentiable": False},
]
