"""What each compiled optimizer kernel reads and writes: pure data, importable without the compiled
extensions (setup.py may read it at build time, the optimizer registry reads it at import time).

Minimal version (the facts of ``fastoptim/_kernels_impl.pxi``'s ``sgd`` and ``adam`` entry points);
the kernel room's generator owns this file and may extend each entry.
"""
from dataclasses import dataclass, field

__all__ = ["KernelSpec", "KERNELS"]


@dataclass(frozen=True)
class KernelSpec:
    """One kernel entry point, ``fastoptim._dispatch.kernels.<name>``.

    Attributes
    ----------
    buffers : tuple of str
        The per-parameter state arrays the kernel reads and writes, under torch's state key names,
        in the kernel's argument order (one list argument each, after ``params`` and ``grads``).
    optional : dict
        ``{buffer: group option}``: the buffer exists only when that option is truthy/non-zero
        (its list may then be empty, or hold ``None`` entries, when it is not).
    work_per_element : int
        Thread-cost weight of one element, in SGD elements (the kernels' threading threshold).
    """

    buffers: tuple
    optional: dict = field(default_factory=dict)
    work_per_element: int = 1


KERNELS = {
    "sgd": KernelSpec(buffers=("momentum_buffer",), optional={"momentum_buffer": "momentum"},
                      work_per_element=1),
    "adam": KernelSpec(buffers=("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
                       optional={"max_exp_avg_sq": "amsgrad"}, work_per_element=2),
}
