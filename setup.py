"""Build script for fastoptim's compiled kernels.

Everything that is not plain metadata lives here:

* OpenMP is probed by compiling, linking and running a tiny program with ``-fopenmp``; without it the
  build warns and the kernels run on one thread (Cython turns ``prange`` into a plain loop).
* Extensions are discovered, not listed: every ``fastoptim/**/*.pyx`` is compiled once with the base
  flags and OpenMP, plus the generated kernel modules below.
* The element loops are generated and compiled several times: ``fastoptim/_kernels/generate.py``
  renders ``fastoptim/_kernels/kernels.pyx.tp`` with every optimizer of ``fastoptim/_kernels/spec.py``
  into ``fastoptim/_kernels_<variant>.pyx`` (and the benchmark's bandwidth kernel into
  ``fastoptim/_stream_kernels_<variant>.pyx``; both untracked): a portable baseline and, on x86-64,
  an AVX2+FMA (``x86-64-v3``) and an AVX-512 (``x86-64-v4``) variant. Validation, the work plan and
  the thread policy (``fastoptim/_kernels/_plan.pyx``) are compiled once. The best variant for the
  running CPU is picked at import time (``fastoptim/_dispatch.py``), as NumPy and torch do, so one
  wheel runs everywhere and never executes an instruction the CPU lacks.
* Cython directives are set once, here, for every module. ``FASTOPTIM_BOUNDSCHECK=1`` turns bounds and
  initialisation checks back on to hunt a memory error.
* Floating-point flags: ``-ffp-contract=off`` so the compiler fuses nothing on its own (the kernels
  call ``fma`` exactly where torch fuses), and ``-fno-math-errno`` so loops with ``sqrt`` vectorise
  (the results are the same IEEE bits). No ``-ffast-math``: it would change results.
* ``fastoptim/_build_config.py`` records what was decided (compiler, flags, OpenMP) for
  ``fastoptim.show_config()``.
"""

import glob
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import warnings

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
PKG = os.path.join(HERE, "fastoptim")

BASE_CFLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math"]

# (module suffix, extra flags, alternative flags for older compilers)
X86_VARIANTS = [
    ("x86_64_v3", ["-march=x86-64-v3", "-mtune=generic"], ["-mavx2", "-mfma", "-mbmi2", "-mtune=generic"]),
    ("x86_64_v4", ["-march=x86-64-v4", "-mtune=generic"],
     ["-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mavx2", "-mfma", "-mtune=generic"]),
]


def _compiler_directives():
    debug = os.environ.get("FASTOPTIM_BOUNDSCHECK", "0") not in ("", "0")
    return {
        "language_level": 3,
        "boundscheck": debug,
        "wraparound": debug,
        "initializedcheck": debug,
        "cdivision": True,
        "embedsignature": True,
    }


def _try_compile(compiler, code, extra_cflags=(), extra_ldflags=(), run=False):
    """Compile (and optionally link and run) ``code``; True on success."""
    tmp = tempfile.mkdtemp(prefix="fastoptim-probe-")
    src = os.path.join(tmp, "probe.c")
    with open(src, "w") as f:
        f.write(textwrap.dedent(code))
    try:
        objs = compiler.compile([src], output_dir=tmp, extra_postargs=list(extra_cflags))
        if not run:
            return True
        exe = os.path.join(tmp, "probe")
        compiler.link_executable(objs, exe, extra_postargs=list(extra_ldflags))
        out = subprocess.run([exe], capture_output=True, text=True, timeout=60)
        return out.returncode == 0 and out.stdout.strip().startswith("ok")
    except Exception:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


OPENMP_PROBE = r"""
#include <omp.h>
#include <stdio.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    printf("ok %d\n", n);
    return n >= 1 ? 0 : 1;
}
"""

EMPTY_PROBE = "int fastoptim_probe(void) { return 0; }\n"


def _jobs():
    """Parallel jobs of the build (``FASTOPTIM_BUILD_JOBS``, default every core): pip passes no
    ``-j``, and the kernels are compiled once per instruction-set level."""
    return max(1, int(os.environ.get("FASTOPTIM_BUILD_JOBS") or os.cpu_count() or 1))


class BuildExt(build_ext):
    """build_ext that probes OpenMP and per-variant flags before compiling."""

    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:  # compile the extensions side by side
            self.parallel = _jobs()

    def build_extensions(self):
        compiler = self.compiler
        cc = getattr(compiler, "compiler_so", ["cc"])
        is_msvc = compiler.compiler_type == "msvc"
        config = {
            "compiler": " ".join(cc[:1]) if cc else compiler.compiler_type,
            "compiler_version": _compiler_version(cc[0] if cc else None),
            "platform": f"{sys.platform}-{platform.machine()}",
            "python": platform.python_version(),
        }

        base = [] if is_msvc else [f for f in BASE_CFLAGS if _try_compile(compiler, EMPTY_PROBE, [f])]
        openmp_c, openmp_l = (["/openmp"], []) if is_msvc else (["-fopenmp"], ["-fopenmp"])
        if os.environ.get("FASTOPTIM_DISABLE_OPENMP", "0") not in ("", "0"):
            has_openmp = False
        else:
            has_openmp = _try_compile(compiler, OPENMP_PROBE, openmp_c, openmp_l, run=True)
        if not has_openmp:
            warnings.warn(
                "fastoptim: OpenMP is not available with this compiler; the kernels are built "
                "without it and every step runs on one thread. Install an OpenMP-capable compiler "
                "(gcc, or clang with libomp) and rebuild to use several cores.",
                stacklevel=1,
            )
            openmp_c, openmp_l = [], []

        variants = {}
        for ext in self.extensions:
            suffix = VARIANT_OF.get(ext.name)
            flags = list(base)
            if suffix and suffix != "baseline":
                chosen = None
                for candidate in [v for v in X86_VARIANTS if v[0] == suffix][0][1:]:
                    if _try_compile(compiler, EMPTY_PROBE, candidate):
                        chosen = candidate
                        break
                if chosen is None:
                    raise RuntimeError(f"compiler cannot target {suffix}")
                flags += chosen
            if suffix:
                variants[suffix] = " ".join(flags + openmp_c)
            ext.extra_compile_args = flags + openmp_c + list(ext.extra_compile_args)
            ext.extra_link_args = openmp_l + list(ext.extra_link_args)

        config["openmp"] = has_openmp
        config["cflags"] = " ".join(base + openmp_c)
        config["kernel_variants"] = variants
        config["boundscheck"] = _compiler_directives()["boundscheck"]
        self._write_build_config(config)
        super().build_extensions()

    def _write_build_config(self, config):
        text = (
            '"""What the build decided (written by setup.py; not tracked by git)."""\n\n'
            f"BUILD_CONFIG = {config!r}\n"
        )
        targets = [os.path.join(PKG, "_build_config.py")]
        if not self.inplace:
            targets.append(os.path.join(self.build_lib, "fastoptim", "_build_config.py"))
        for path in targets:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)

    def get_outputs(self):
        outputs = super().get_outputs()
        if not self.inplace:
            outputs.append(os.path.join(self.build_lib, "fastoptim", "_build_config.py"))
        return outputs


def _compiler_version(cc):
    if not cc:
        return "unknown"
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.splitlines()[0].strip()
    except Exception:
        return "unknown"


def _generator():
    """``fastoptim/_kernels/generate.py``, loaded by path (the package is not built yet)."""
    loader = importlib.util.spec_from_file_location("_fastoptim_generate",
                                                    os.path.join(PKG, "_kernels", "generate.py"))
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module


# extension name -> ISA variant, for the generated per-variant modules (flags in BuildExt)
VARIANT_OF = {}


def _extensions():
    import numpy as np

    include = [np.get_include()]
    macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
    variants = ["baseline"]
    machine = platform.machine().lower()
    is_x86_64 = machine in ("x86_64", "amd64") and sysconfig.get_platform().endswith(("x86_64", "amd64"))
    if is_x86_64 and os.environ.get("FASTOPTIM_BASELINE_ONLY", "0") in ("", "0"):
        variants += [suffix for suffix, _, _ in X86_VARIANTS]
    generator = _generator()
    every_variant = set(generator.generated_modules(["baseline"] + [v[0] for v in X86_VARIANTS]).values())
    sources = {}
    for path in sorted(glob.glob(os.path.join(PKG, "**", "*.pyx"), recursive=True)):
        if path not in every_variant:      # a stale generated module of a variant not built now
            rel = os.path.relpath(path, HERE)
            sources[os.path.splitext(rel)[0].replace(os.sep, ".")] = rel
    for variant in variants:
        for name, path in generator.generate([variant]).items():
            sources[name] = os.path.relpath(path, HERE)
            VARIANT_OF[name] = variant
    return [Extension(name, [src], include_dirs=include, define_macros=macros)
            for name, src in sorted(sources.items())]


def _cythonize(exts):
    from Cython.Build import cythonize

    return cythonize(exts, compiler_directives=_compiler_directives(), quiet=True,
                     nthreads=_jobs() if _jobs() > 1 else 0, force=os.environ.get("FASTOPTIM_BOUNDSCHECK") is not None)


setup(ext_modules=_cythonize(_extensions()), cmdclass={"build_ext": BuildExt})
