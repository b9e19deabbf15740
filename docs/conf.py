"""Sphinx configuration for the fastoptim documentation (built in CI with warnings as errors)."""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.dirname(__file__)))

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
    "sphinx.ext.intersphinx",
    "numpydoc",
]

autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
doctest_global_setup = "import numpy as np\nimport fastoptim as fo"

intersphinx_mapping = {}  # no network on the build machines
templates_path = ["_templates"]
exclude_patterns = ["_build", "generated/*.rst.txt"]
html_theme = "alabaster"
html_static_path = ["_static"]
html_title = f"fastoptim {release}"
nitpicky = False
