"""fastoptim: torch.optim's optimizers and schedulers for NumPy arrays.

The optimizer steps run as compiled Cython loops over all of a parameter group's arrays at once,
parallelised with OpenMP; the Python classes give the ``torch.optim`` API (param groups, state,
hooks, ``state_dict``) and the same numbers (SGD bit for bit; Adam/AdamW too on Intel CPUs with
AVX-512, elsewhere to the last bit of sqrt).
"""
from fastoptim._version import __version__
from fastoptim._config import get_num_threads, set_num_threads, show_config
from fastoptim import functional
from fastoptim.parameter import Parameter
from fastoptim import optim
from fastoptim.optim import Optimizer, SGD, Adam, AdamW, Adafactor, LBFGS, Muon
from fastoptim.optim import RMSprop, Adagrad, Adadelta, Adamax, Lion, NAdam, RAdam, ASGD, Rprop
from fastoptim import optimizer, interop
from fastoptim import lr_scheduler
from fastoptim import swa_utils
from fastoptim.clip_grad import clip_grad_norm_, clip_grad_value_, clip_grads_with_norm_, get_total_norm
from fastoptim.io import save, load, CheckpointError, UnsafeCheckpointError, CorruptCheckpointError

__all__ = [
    "__version__",
    "functional",
    "get_num_threads",
    "set_num_threads",
    "show_config",
    "Parameter",
    "Optimizer",
    *optim._OPTIMIZER_CLASSES,
    "optimizer",
    "interop",
    "lr_scheduler",
    "swa_utils",
    "save",
    "load",
    "CheckpointError",
    "UnsafeCheckpointError",
    "CorruptCheckpointError",
    "clip_grad_norm_",
    "clip_grad_value_",
    "clip_grads_with_norm_",
    "get_total_norm",
]
