"""Sphinx configuration for the fastoptim documentation (built in CI with warnings as errors).

Two builds, both run by ``.ci/run``::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
    python -m sphinx -W -b doctest docs docs/_build/doctest

Every build first draws the scheduler plots (``docs/plot_schedulers.py``, git-ignored outputs)
and, once all pages are read, checks that every public name is documented
(``docs/_ext/api_completeness.py``).
"""
import os
import sys
from pathlib import Path

HERE = os.path.abspath(os.path.dirname(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "_ext"))

import fastoptim  # noqa: E402  (the installed, compiled package)

project = "fastoptim"
author = "the fastoptim developers"
copyright = "2026, the fastoptim developers"
version = release = fastoptim.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",   # MathJax 3 copied into the build: math renders without a network
    "sphinx.ext.intersphinx",
    "numpydoc",
    "api_completeness",
]

# API reference: docs/api.rst lists every public name in autosummary tables; the stub pages are
# generated into docs/generated/ (git-ignored) with the templates in docs/_templates/autosummary/.
# They are the canonical descriptions: guide pages that show a docstring again use :no-index:.
autosummary_generate = True
autosummary_ignore_module_all = False
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"  # numpydoc sections carry the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# Doctests: every ``>>>`` block, in the guides and in the docstrings, runs in the doctest build.
# Each document gets a fresh namespace with numpy and fastoptim, and runs in a scratch directory
# so that examples can write checkpoint files without leaving anything behind. ``torch`` is None
# when torch is not installed, and the torch examples (``:skipif: torch is None``) are skipped;
# CI installs torch 2.13 before the docs step, so there they run.
doctest_global_setup = """
import os as _os
import tempfile as _tempfile
import numpy as np
import fastoptim as fo
try:
    import torch
except ImportError:
    torch = None
_doctest_cwd = _os.getcwd()
_doctest_dir = _tempfile.TemporaryDirectory()
_os.chdir(_doctest_dir.name)
"""
doctest_global_cleanup = """
_os.chdir(_doctest_cwd)
_doctest_dir.cleanup()
"""

# The public API that must be documented (checked by _ext/api_completeness.py).
api_completeness_package = "fastoptim"
api_completeness_ignore = []

intersphinx_mapping = {}  # no network on the build machines
templates_path = ["_templates"]
exclude_patterns = ["_build", "generated/*.rst.txt", "_templates"]

# Math: MathJax is served from the build's own _static/mathjax (sphinx-mathjax-offline), so the
# pages render their update rules opened from disk, without a network. textmacros lets \text{}
# contain \_ (``\text{decoupled\_weight\_decay}``).
mathjax3_config = {
    "loader": {"load": ["[tex]/textmacros"]},
    "tex": {"packages": {"[+]": ["textmacros"]}},
}

# The theme of NumPy, SciPy and pandas: search, light/dark switch, a responsive layout whose code
# blocks and tables scroll instead of being cut off. Everything it needs ships with the package
# (no fonts or scripts from a CDN).
html_theme = "pydata_sphinx_theme"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_title = f"fastoptim {release}"
html_short_title = "fastoptim"
html_theme_options = {
    "logo": {"text": f"fastoptim {release}"},
    "navbar_end": ["theme-switcher", "navbar-icon-links"],
    "navbar_persistent": ["search-button"],
    # the API pages' own structure (signature, parameters, methods) needs the width more than a
    # table of contents
    "secondary_sidebar_items": {"[!g]*": ["page-toc"], "guide/*": ["page-toc"], "generated/*": []},
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_theme_options["navbar_center"] = []          # the site navigation is in the left sidebar
html_sidebars = {"**": ["global-nav"]}
html_show_sourcelink = False
nitpicky = False


def _draw_scheduler_plots(app):
    """Draw docs/_static/schedulers/*.png (git-ignored) unless they are newer than their inputs."""
    import plot_schedulers

    out_dir = plot_schedulers.OUT_DIR
    inputs = [plot_schedulers.__file__, *Path(fastoptim.lr_scheduler.__file__).parent.glob("*.py")]
    newest_input = max(os.path.getmtime(path) for path in inputs)
    images = [out_dir / f"{schedule.name}.png" for schedule in plot_schedulers.SCHEDULES]
    if all(image.exists() and image.stat().st_mtime >= newest_input for image in images):
        return
    import matplotlib

    matplotlib.use("Agg")
    out_dir.mkdir(parents=True, exist_ok=True)
    for schedule in plot_schedulers.SCHEDULES:
        plot_schedulers.draw(schedule, out_dir)


def _draw_bench_figures(app):
    """The performance page's plots and summary tables, from docs/_static/bench/results.csv."""
    import matplotlib

    matplotlib.use("Agg")
    import bench_figures

    bench_figures.draw()


def _hide_private_bases(app, name, obj, options, bases):
    """Show ``Bases: LRScheduler`` rather than the private mixins a scheduler also derives from."""
    bases[:] = [base for base in bases if not base.__name__.startswith("_")] or bases[-1:]


def setup(app):
    app.connect("builder-inited", _draw_scheduler_plots)
    app.connect("builder-inited", _draw_bench_figures)
    app.connect("autodoc-process-bases", _hide_private_bases)
