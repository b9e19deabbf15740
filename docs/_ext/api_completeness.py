"""Sphinx extension: fail the build when a public name of fastoptim is not documented.

The public API is what the ``__all__`` lists say it is: ``fastoptim.__all__``, and the ``__all__``
of every submodule that ``fastoptim.__all__`` names (``functional``, ``optimizer``, ``interop``,
``lr_scheduler``). For each public name this extension requires a description in the Python
domain, under its canonical name: ``fastoptim.SGD`` rather than ``fastoptim.sgd.SGD`` when the
top-level package re-exports the object, ``fastoptim.lr_scheduler.StepLR`` otherwise; a public
module needs a ``py:module`` entry. For each public class it also requires every public method and
property, under the name of the public class that defines it (``fastoptim.Optimizer.zero_grad``
serves ``SGD`` too), or under the documented class itself when the defining class is private (a
mixin's ``state_dict``).

"Documented" means what the Sphinx inventory holds after all documents are read: an object
rendered with ``:no-index:``, or whose docstring autodoc could not import, does not count.

The check runs at ``env-check-consistency`` (after reading, before writing), so every builder
(html, doctest, ...) fails the same way: one error that lists the missing names, and a non-zero
exit status whether or not ``-W`` is given.

Configuration (``conf.py``)
    ``api_completeness_package``: the package to check (default ``"fastoptim"``).
    ``api_completeness_ignore``: dotted names exempted from the check (default empty).
"""

import importlib
import inspect
import types

from sphinx.errors import SphinxError
from sphinx.util import logging

logger = logging.getLogger(__name__)


class UndocumentedAPIError(SphinxError):
    category = "API completeness check failed"


def _public_modules(package):
    """The package and the submodules its ``__all__`` names, in that order."""
    modules = [package]
    for name in getattr(package, "__all__", ()):
        value = getattr(package, name)
        if isinstance(value, types.ModuleType):
            modules.append(value)
    return modules


def _public_names(package_name):
    """``{canonical dotted name: (kind, object)}`` for every public name of the package.

    kind is ``"module"``, ``"class"`` or ``"object"`` (functions, data).
    """
    package = importlib.import_module(package_name)
    names = {}
    for module in _public_modules(package):
        names.setdefault(module.__name__, ("module", module))
        exported = getattr(module, "__all__", None)
        if exported is None:
            raise UndocumentedAPIError(
                f"{module.__name__} is public (named in {package_name}.__all__) but has no "
                "__all__, so its public names are unknown; give it an __all__"
            )
        for name in exported:
            value = getattr(module, name)
            if isinstance(value, types.ModuleType):
                names.setdefault(value.__name__, ("module", value))
                continue
            # The shortest spelling wins: fastoptim.save rather than fastoptim.checkpoint.save.
            if module is not package and getattr(package, name, None) is value:
                canonical = f"{package_name}.{name}"
            else:
                canonical = f"{module.__name__}.{name}"
            names.setdefault(canonical, ("class" if inspect.isclass(value) else "object", value))
    return names


def _public_members(cls_name, cls, public_classes, package_name):
    """Canonical names of the public methods/properties a public class offers.

    A member that ``cls`` inherits from a *public* class of the package is that class's to
    document; one defined by ``cls`` itself or by a private helper class (a mixin) must be
    documented on ``cls``. Members that come from outside the package (``ndarray``,
    ``Exception``, ``object``) are not the package's API.
    """
    members = set()
    for name in dir(cls):
        if name.startswith("_"):
            continue
        for owner in cls.__mro__:
            if name in vars(owner):
                break
        else:
            continue
        if not (owner.__module__ or "").startswith(package_name):
            continue
        raw = vars(owner)[name]
        if not (inspect.isfunction(raw) or isinstance(raw, (staticmethod, classmethod, property))):
            continue  # class-level data (constants, validator tables) is not API
        owner_name = public_classes.get(owner)
        members.add(f"{owner_name or cls_name}.{name}")
    return members


def required_names(package_name):
    """Every dotted name the documentation must describe, with the kind it is expected as."""
    names = _public_names(package_name)
    public_classes = {obj: name for name, (kind, obj) in names.items() if kind == "class"}
    required = dict((name, kind) for name, (kind, _) in names.items())
    for cls, cls_name in public_classes.items():
        for member in _public_members(cls_name, cls, public_classes, package_name):
            required.setdefault(member, "member")
    return required


def documented_names(env):
    domain = env.get_domain("py")
    documented = {name for name, entry in domain.objects.items()}
    documented.update(domain.modules)
    return documented


def check_completeness(app, env):
    package_name = app.config.api_completeness_package
    required = required_names(package_name)
    ignored = set(app.config.api_completeness_ignore)
    documented = documented_names(env)
    missing = sorted(name for name in required if name not in documented and name not in ignored)
    if missing:
        lines = "\n".join(f"  {name} ({required[name]})" for name in missing)
        # One message with the whole list (with -W and without --keep-going the first message
        # ends the build), logged as an error so that it counts as a warning for -W, and a
        # non-zero exit status even without -W.
        logger.error(
            f"{len(missing)} public name(s) of {package_name} are not documented:\n{lines}\n"
            "Add each to an autosummary table in docs/api.rst (classes document their methods "
            "through docs/_templates/autosummary/class.rst), give undocumented methods a "
            "docstring, or list a name in api_completeness_ignore in docs/conf.py with a reason.",
            type="api_completeness",
            subtype="undocumented",
        )
        app.statuscode = 1
        return
    logger.info(
        f"api_completeness: all {len(required)} public names of {package_name} are documented"
    )


def setup(app):
    app.add_config_value("api_completeness_package", "fastoptim", "env")
    app.add_config_value("api_completeness_ignore", [], "env")
    app.connect("env-check-consistency", check_completeness)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
