"""The optimizer classes of fastoptim, and the house they live in.

* :mod:`fastoptim.optim.base`: :class:`Optimizer` (param groups, state, hooks, state dicts, and
  the step template every elementwise optimizer uses);
* :mod:`fastoptim.optim.registry`: the optimizer table, one entry per optimizer;
* ``_validation``: the class layer's checks and conversions, each in one place;
* ``_functional``: what the functional forms share;
* one module per optimizer (``sgd``, ``adam``, ...): its functional form, then its class
  (signature, docstring and torch's checks);
  the reductions (``adafactor``, ``lbfgs``, ``muon``) implement their own ``step``.

Import the classes from the top level (``fastoptim.SGD``); ``fastoptim.optimizer`` is the public
home of the base class and the global hooks.
"""
from fastoptim.optim.base import (
    Optimizer,
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
    required,
)
from fastoptim.optim.sgd import SGD
from fastoptim.optim.adam import Adam, AdamW
from fastoptim.optim.rmsprop import RMSprop
from fastoptim.optim.adagrad import Adagrad
from fastoptim.optim.adadelta import Adadelta
from fastoptim.optim.adamax import Adamax
from fastoptim.optim.lion import Lion
from fastoptim.optim.nadam import NAdam
from fastoptim.optim.radam import RAdam
from fastoptim.optim.asgd import ASGD
from fastoptim.optim.rprop import Rprop
from fastoptim.optim.adafactor import Adafactor
from fastoptim.optim.lbfgs import LBFGS
from fastoptim.optim.muon import Muon

# Every optimizer class, in the order of the API reference (fastoptim's top level exports them).
_OPTIMIZER_CLASSES = ["SGD", "Adam", "AdamW", "Adafactor", "LBFGS", "Muon", "RMSprop", "Adagrad",
                     "Adadelta", "Adamax", "Lion", "NAdam", "RAdam", "ASGD", "Rprop"]

__all__ = ["Optimizer", *_OPTIMIZER_CLASSES, "register_optimizer_step_pre_hook",
           "register_optimizer_step_post_hook", "required"]
