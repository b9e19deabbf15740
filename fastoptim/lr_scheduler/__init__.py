r"""Learning-rate schedulers: every scheduler of ``torch.optim.lr_scheduler`` for fastoptim optimizers.

Each class has the signature, validation messages, warnings, ``state_dict`` keys and, above all,
the *numbers* of its counterpart in torch 2.13: the learning rates are computed with the same
double-precision arithmetic in the same order, so a schedule gives exactly the same Python floats
as torch's, step for step, including the recursive ("chainable") forms that multiply the current
``group["lr"]`` and so accumulate rounding exactly as torch does.

Learning rates are Python floats
--------------------------------
torch allows a group's ``lr`` to be a 0-dim ``Tensor`` that schedulers update in place. The NumPy
counterpart is a 0-d ``numpy.ndarray``: when a group's value is one, the schedulers write into it in
place (``arr[()] = value``) and store copies of it, as torch does with tensors. Everything else is
treated as a Python number, and the parity with torch is tested for Python floats.

Differences from torch (all deliberate)
---------------------------------------
* torch detects ``scheduler.step()`` before ``optimizer.step()`` by replacing ``optimizer.step``
  with a wrapper. fastoptim never patches the optimizer: it compares the optimizer's
  ``_step_count`` (completed ``optimizer.step()`` calls) at the scheduler's first ``step()`` with
  its value when the scheduler was built, and it detects a replaced ``optimizer.step`` by
  comparing what ``optimizer.step`` resolves to (instance attribute or class function) with what it
  resolved to at construction. The warning texts are torch's.
* ``state_dict()`` returns copies of the containers it holds (torch returns live references).
* ``load_state_dict()`` is strict and all-or-nothing: unknown or missing keys, wrongly typed values
  (a non-integer ``last_epoch``, a ``base_lrs`` of the wrong length or with non-numbers, ...) and
  values with which the next ``step()`` would fail (a :class:`StepLR` ``step_size`` of 0, a
  :class:`CyclicLR` ``total_size`` of 0, ...) raise an error that names the key, and nothing is
  changed.
* A :class:`StepLR` ``step_size`` or :class:`CosineAnnealingLR` ``T_max`` of 0 is refused by the
  constructor (torch accepts it and raises ``ZeroDivisionError`` at the first ``step()``).
* ``last_epoch`` and the deprecated ``epoch`` argument of ``step()`` must be integers (torch does
  not check); :class:`CosineAnnealingWarmRestarts` keeps accepting fractional epochs.
* Constructors validate everything before they write into the optimizer's param groups, so an
  invalid :class:`CyclicLR` or :class:`OneCycleLR` leaves the optimizer untouched.

Layout
------
One public module, ``fastoptim.lr_scheduler``, built from private modules by job: ``_state`` (the
``load_state_dict`` schema: one validator per key), ``_base`` (:class:`LRScheduler` and the shared
helpers), ``_simple`` (the one-formula schedulers), ``_plateau`` (:class:`ReduceLROnPlateau`),
``_cyclic`` (:class:`CyclicLR`, :class:`OneCycleLR`) and ``_composite`` (:class:`SequentialLR`,
:class:`ChainedScheduler`). Every class reports ``fastoptim.lr_scheduler`` as its module, so
pickles, checkpoints and the documentation name the public path.
"""
from fastoptim.lr_scheduler._base import (
    EPOCH_DEPRECATION_WARNING, GET_LR_OUTSIDE_STEP_WARNING, STEP_ORDER_WARNING,
    STEP_OVERRIDDEN_WARNING, LRScheduler, _LRScheduler,
)
from fastoptim.lr_scheduler._simple import (
    ConstantLR, CosineAnnealingLR, CosineAnnealingWarmRestarts, ExponentialLR, LambdaLR, LinearLR,
    MultiplicativeLR, MultiStepLR, PolynomialLR, StepLR,
)
from fastoptim.lr_scheduler._plateau import ReduceLROnPlateau
from fastoptim.lr_scheduler._cyclic import CyclicLR, OneCycleLR
from fastoptim.lr_scheduler._composite import ChainedScheduler, SequentialLR

__all__ = [
    "LambdaLR",
    "MultiplicativeLR",
    "StepLR",
    "MultiStepLR",
    "ConstantLR",
    "LinearLR",
    "ExponentialLR",
    "SequentialLR",
    "CosineAnnealingLR",
    "ChainedScheduler",
    "ReduceLROnPlateau",
    "CyclicLR",
    "CosineAnnealingWarmRestarts",
    "OneCycleLR",
    "PolynomialLR",
    "LRScheduler",
]

for _name in (*__all__, "_LRScheduler"):
    globals()[_name].__module__ = __name__
del _name
