r"""Functional optimizer steps over lists of NumPy arrays.

These are torch's functional forms (``torch.optim._functional``) for NumPy: they take lists of
arrays, update them in place, and run one compiled call over all arrays, parallelised with OpenMP.
Each is defined next to its optimizer class (``fastoptim/optim/<name>.py``) and runs the same
kernel as the class's step; use them directly to drive your own state. This module is their public
home: like the public ``__init__``, it only lists them.

Every function validates all of its inputs (list lengths, shapes, dtypes, contiguity, writeability,
hyperparameter types) before it modifies anything: when it raises, every array, list and step
count is exactly as it was.

Arrays
    ``params`` and the state buffers must be C-contiguous, writeable float32 or float64 arrays in
    native byte order. Each gradient must have exactly its parameter's shape and dtype (no silent
    casts); gradients may be read-only or non-contiguous. One call may mix float32 and float64
    parameters. Parameters and state buffers must not share memory with one another.
"""
from fastoptim.optim.sgd import sgd
from fastoptim.optim.adam import adam, adamw
from fastoptim.optim.rmsprop import rmsprop
from fastoptim.optim.adagrad import adagrad
from fastoptim.optim.adadelta import adadelta
from fastoptim.optim.adamax import adamax
from fastoptim.optim.rprop import rprop
from fastoptim.optim.lion import lion
from fastoptim.optim.radam import radam
from fastoptim.optim.nadam import nadam
from fastoptim.optim.asgd import asgd
from fastoptim.optim.adafactor import adafactor  # reductions: numpy/BLAS + compiled means
from fastoptim.optim.muon import muon

__all__ = ["sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "adamax", "rprop", "lion", "radam",
           "nadam", "asgd"]
