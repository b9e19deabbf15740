"""The optimizer table (fastoptim/optim/registry.py) against what it describes: each entry's class,
functional form, torch counterpart, state keys, flags and test configurations; and the house
rule that an elementwise optimizer is one entry plus a thin class."""
import inspect
import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import numpy as np
import pytest

import fastoptim as fo
from fastoptim._kernels.spec import KERNELS
from fastoptim.optim.base import Optimizer
from fastoptim.optim.registry import OPTIMIZERS, OptimizerInfo

INFOS = list(OPTIMIZERS.values())
ids = [info.name for info in INFOS]


@pytest.mark.parametrize("info", INFOS, ids=ids)
def test_entry_names_real_things(info):
    assert getattr(fo, info.name) is info.cls and info.cls._info is info
    assert info.functional is getattr(fo.functional, info.functional_name)
    assert info.kernel in KERNELS
    assert set(info.optional) <= set(info.buffers)
    assert set(info.lazy_buffers) <= set(info.buffers)
    assert not info.state_order or sorted(info.state_order) == sorted(info.buffers)
    defaults = info.cls([fo.Parameter(np.zeros(2))]).defaults
    for key in (*info.flags, *info.group_defaults, *info.group_forced, *info.optional.values()):
        assert key in defaults or key in info.group_forced, key
    for _, key, _ in info.scalar_access:
        assert key in defaults
    torch = pytest.importorskip("torch")
    assert hasattr(torch.optim, info.torch_name) == info.in_torch


@pytest.mark.parametrize("info", INFOS, ids=ids)
def test_state_keys_are_what_a_step_creates(info):
    for config in info.configs:
        p = fo.Parameter(np.ones(3))
        p.grad = np.full(3, 0.5)
        opt = config.make([p])
        opt.step()
        group = opt.param_groups[0]
        expected = info.scalar_state + info.scalar_arrays + tuple(
            k for k in info.active_buffers(group)
            if not (k in info.optional and not group[info.optional[k]]))
        assert tuple(opt.state.get(p, {})) == expected, config.id
        n = len(info.active_buffers(group))
        assert info.bytes_per_element(4, group) == 4 * (3 + 2 * n)


@pytest.mark.parametrize("info", [i for i in INFOS if i.kernel_configs], ids=lambda i: i.name)
def test_kernel_configs_fit_the_functional_form(info):
    names = set(inspect.signature(info.functional).parameters)
    for cfg in info.kernel_configs:
        assert set(cfg) <= names


def test_configs_ids_are_unique_and_cliquey_free():
    configs = [c for info in INFOS for c in info.configs]
    assert len({c.id for c in configs}) == len(configs)
    assert all(not {"foreach", "fused", "differentiable"} & set(c.kwargs) for c in configs)


def test_an_elementwise_optimizer_is_one_entry_and_a_thin_class():
    """A throwaway optimizer on the SGD kernel: its entry and a class with only a signature and
    its checks get the whole step, state handling, loading and group defaults."""
    info = OptimizerInfo(
        name="HeavyBall", module=__name__, kernel="sgd", functional_name="sgd",
        family="HeavyBall", scalars=("lr", "weight_decay", "momentum", "dampening"),
        flags=("nesterov", "maximize"), lazy_buffers=("momentum_buffer",),
        group_defaults={"maximize": False, "nesterov": False},
    )

    class HeavyBall(Optimizer):
        _info = info

        def __init__(self, params, lr=0.1, momentum=0.9):
            super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": 0.0,
                                      "weight_decay": 0.0, "nesterov": False,
                                      "maximize": False, "differentiable": False})

    p, q = fo.Parameter(np.ones(4)), fo.Parameter(np.ones(4))
    p.grad, q.grad = np.full(4, 0.5), np.full(4, 0.5)
    ours, sgd = HeavyBall([p]), fo.SGD([q], lr=0.1, momentum=0.9)
    for _ in range(3):
        ours.step()
        sgd.step()
    assert np.array_equal(p, q) and ours._step_count == 3
    assert HeavyBall.step.__qualname__.endswith("HeavyBall.step")
    sd = ours.state_dict()
    assert set(sd["state"][0]) == {"momentum_buffer"}
    fresh = HeavyBall([fo.Parameter(np.ones(4))])
    fresh.load_state_dict(sd)
    assert np.array_equal(fresh.state[fresh.param_groups[0]["params"][0]]["momentum_buffer"],
                          ours.state[p]["momentum_buffer"])
    with pytest.raises(ValueError, match=r"unexpected key\(s\) \['exp_avg'\]; HeavyBall state "
                                         r"has only 'momentum_buffer'"):
        fresh.load_state_dict({**sd, "state": {0: {"exp_avg": np.zeros(4)}}})


# ------------------------------------------------------------------ which optimizers exist: one place

_REPO = Path(__file__).resolve().parent.parent
# The public modules that list every optimizer, and the two tables that describe them.
_EVERYONE_S = ("fastoptim/__init__.py", "fastoptim/optim/__init__.py", "fastoptim/functional.py",
               "fastoptim/optim/registry.py", "fastoptim/_kernels/spec.py")
# The optimizers with a step of their own (not in the registry: Adafactor, LBFGS, Muon) keep their
# compiled loops (their element bodies) and their benchmark in these files.
_OWN_STEP_HOMES = ("fastoptim/_train_kernels.py", "fastoptim/_train_kernels_impl.pxi",
                   "benchmarks/bench_train.py")
# torch's API spells these with another optimizer's name (Muon's adjust_lr_fn value).
_TORCH_WORDS = ("match_rms_adamw",)


def _module_file(module):
    return module.replace(".", "/") + ".py"


def _optimizer_names():
    """``{lowercase name: files allowed to name it}``: every optimizer class :mod:`fastoptim.optim`
    exports (its class file), and each registry entry's functional form and benchmark keys."""
    owners = {}
    for export in fo.optim.__all__:
        cls = getattr(fo.optim, export)
        if isinstance(cls, type) and issubclass(cls, Optimizer) and cls is not Optimizer:
            owners.setdefault(export.lower(), set()).add(_module_file(cls.__module__))
            if cls._info is None:
                owners[export.lower()].update(_OWN_STEP_HOMES)
    for info in INFOS:
        names = [info.name, info.torch_name, info.functional_name]
        names += [key for key, _ in info.bench_configs]
        for name in names:
            owners.setdefault(name.lower(), set()).add(_module_file(info.module))
    return owners


def _code_words(path):
    """``(line, text)`` of every identifier and string literal of a Python, Cython or Tempita
    source that is code: comments and bare string statements (docstrings) are prose, not
    facts. For a Markdown file, the lines of its code blocks (the command examples)."""
    text = (_REPO / path).read_text()
    if path.endswith(".md"):
        fenced = False
        for number, line in enumerate(text.splitlines(), 1):
            if line.lstrip().startswith("```"):
                fenced = not fenced
            elif fenced:
                yield number, line
        return
    statement = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
            if not all(t.type == tokenize.STRING for t in statement):
                for t in statement:
                    if t.type in (tokenize.NAME, tokenize.STRING):
                        yield t.start[0], t.string
            statement = []
        elif tok.type not in (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT):
            statement.append(tok)


def _tracked_files():
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard",
                              "fastoptim", "benchmarks"], cwd=_REPO, capture_output=True,
                             text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [f for f in out.split() if f.endswith((".py", ".pyx", ".pxd", ".pxi", ".tp", ".md"))]


def test_optimizer_names_only_in_their_places():
    """Each optimizer is named (in code: identifiers and string literals; in the Markdown's
    command examples) only in its class file, the two tables and the public modules that list
    them: nowhere else in the library or the benchmarks. Whatever else needs to know about one
    optimizer reads the registry."""
    owners = _optimizer_names()
    pattern = re.compile(r"(?<![A-Za-z0-9])(%s)(?![A-Za-z0-9])" % "|".join(sorted(owners)), re.I)
    files = _tracked_files()
    assert "fastoptim/optim/registry.py" in files and len(files) > 50
    leaks = []
    for path in files:
        if path in _EVERYONE_S:
            continue
        for line, word in _code_words(path):
            for torch_word in _TORCH_WORDS:
                word = word.replace(torch_word, "")
            for name in pattern.findall(word):
                if path not in owners[name.lower()]:
                    leaks.append(f"{path}:{line}: {name} in {word.strip()[:80]}")
    assert not leaks, "optimizer names outside their places:\n" + "\n".join(leaks)


def test_the_name_scan_sees_code_and_skips_prose(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "_REPO", tmp_path)
    (tmp_path / "m.py").write_text('"""Adam in a docstring."""\n# SGD in a comment\n'
                                   'x = fo.Adam\ny = {"sgd": 1}\ndef f():\n    """RMSprop."""\n')
    words = [w for _, w in _code_words("m.py")]
    assert "Adam" in words and '"sgd"' in words
    assert not any("docstring" in w or "RMSprop" in w or "comment" in w for w in words)
    (tmp_path / "r.md").write_text("Run sgd here\n```sh\nbench --optimizers adam\n```\n")
    assert [w for _, w in _code_words("r.md")] == ["bench --optimizers adam"]
