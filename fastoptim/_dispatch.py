"""Pick the compiled kernel variant for the running CPU.

The element loops are compiled once per instruction-set level (setup.py). A binary that uses
AVX2/FMA instructions dies with an illegal instruction on a CPU without them, so the variant is
chosen here, at import time, from what the CPU reports, as NumPy and torch do. Every variant
computes the same bits with the IEEE square root: ``fma`` is an exact operation whether the CPU
fuses it in hardware or the C library computes it in software (the baseline variant is just
slower). The square root is the one choice made here: on an Intel CPU with AVX-512 torch's
``Tensor.sqrt`` is MKL's vector routine, not the IEEE root, and the AVX-512 variant reproduces it
(``_kernels/_fmath.pxi``), so that the optimizers with a square root give torch's bits there.

``FASTOPTIM_KERNELS=baseline|x86_64_v3|x86_64_v4`` forces a variant (tests use it to check that all
variants agree); ``FASTOPTIM_SQRT=ieee`` keeps the IEEE square root everywhere (``torch``, the
default, takes torch's where this CPU and variant can reproduce it). ``FASTOPTIM_PREFETCH=off``
switches off the element loops' software prefetch (``_kernels/_prefetch.pxi``; ``on`` is the
default), which changes speed only, never a result.
"""
import contextlib
import importlib
import os
import sys

from fastoptim import _runtime

_V3 = ("avx2", "fma", "bmi2")
_V4 = _V3 + ("avx512f", "avx512dq", "avx512bw", "avx512vl")
_VARIANTS = ("x86_64_v4", "x86_64_v3", "baseline")


def _supported(level, features):
    # gcc >= 12 answers for the whole ISA level (which also needs movbe, lzcnt, f16c, ...); with an
    # older compiler, fall back to the features the kernels' instructions come from.
    answer = _runtime.cpu_supports(level.replace("_", "-"))
    if answer is not None:
        return answer
    return all(_runtime.cpu_supports(f) for f in features)


def _candidates():
    forced = os.environ.get("FASTOPTIM_KERNELS", "").strip()
    if forced:
        return [forced]
    names = []
    if _supported("x86_64_v4", _V4):
        names.append("x86_64_v4")
    if _supported("x86_64_v3", _V3):
        names.append("x86_64_v3")
    names.append("baseline")
    return names


def _load():
    errors = []
    for name in _candidates():
        try:
            return name, importlib.import_module(f"fastoptim._kernels_{name}")
        except ImportError as exc:  # variant not built on this platform
            errors.append(f"{name}: {exc}")
    raise ImportError(
        "no fastoptim kernel variant could be imported (" + "; ".join(errors) + "). "
        "The compiled extensions are missing: reinstall with `pip install .` from a source "
        "checkout, or unset FASTOPTIM_KERNELS.")


def _env_choice(name, choices):
    """The value of the environment variable ``name``, lowercased: one of ``choices`` (``{value:
    what it means}``, the first the default); any other value is refused, naming the variable."""
    default = next(iter(choices))
    mode = os.environ.get(name, "").strip().lower() or default
    if mode not in choices:
        spelled = " or ".join(f"{value!r} ({meaning})" for value, meaning in choices.items())
        raise ValueError(f"{name} must be {spelled}, got {mode!r}")
    return mode


VARIANT, kernels = _load()
#: whether the element loops prefetch ahead (every compiled module alike; ``set_prefetch``)
PREFETCH = kernels._set_prefetch(_env_choice("FASTOPTIM_PREFETCH", {
    "on": "the default: software prefetch in the element loops", "off": "no software prefetch"}) == "on")
_PREFETCH_MODULES = ("fastoptim._kernels_", "fastoptim._train_kernels_", "fastoptim._stream_kernels_")


def set_prefetch(on):
    """Software prefetch on or off in the element loops of every loaded compiled module (the
    optimizer kernels, the training utilities and the benchmark's bound, which must prefetch
    alike); the modules loaded later follow ``PREFETCH``. Returns the previous setting."""
    global PREFETCH
    previous, PREFETCH = PREFETCH, bool(on)
    for prefix in _PREFETCH_MODULES:
        for variant in _VARIANTS:
            module = sys.modules.get(prefix + variant)
            if module is not None:
                module._set_prefetch(PREFETCH)
    return previous


#: whether the element loops take torch's (MKL's) square root rather than the IEEE one
TORCH_SQRT = kernels._set_torch_sqrt(_env_choice("FASTOPTIM_SQRT", {
    "torch": "the default: torch's square root where this CPU can reproduce it",
    "ieee": "the correctly rounded one"}) == "torch" and kernels._torch_sqrt_available())


@contextlib.contextmanager
def ieee_sqrt():
    """The IEEE square root in the element loops inside the block, whatever ``TORCH_SQRT`` says
    (the tests' NumPy references and golden data, and the parity report, compare with it)."""
    global TORCH_SQRT
    saved = TORCH_SQRT
    TORCH_SQRT = kernels._set_torch_sqrt(False)
    try:
        yield
    finally:
        TORCH_SQRT = kernels._set_torch_sqrt(saved)
