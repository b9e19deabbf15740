"""The public home of the ``Optimizer`` base class and the global step hooks.

The implementation lives in :mod:`fastoptim.optim` (``base``: the class layer; ``registry``: the
optimizer table; one module per optimizer). This module keeps the public import path
``fastoptim.optimizer`` of the API contract (``fo.optimizer.register_optimizer_step_pre_hook``,
``fo.optimizer.Optimizer``, ``fo.optimizer.required``), and the private helpers that code outside
``fastoptim.optim`` imports from here.
"""
from fastoptim.optim._validation import (  # noqa: F401  (re-exported for older import paths)
    _check_param,
    _describe,
    _load_array,
    _load_step,
    _snapshot,
    _to_float,
)
from fastoptim.optim.base import (
    Optimizer,
    RemovableHandle,
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
    required,
)

__all__ = [
    "Optimizer",
    "register_optimizer_step_pre_hook",
    "register_optimizer_step_post_hook",
    "required",
]
