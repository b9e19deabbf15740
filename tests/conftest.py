import os
import sys

import pytest

# tests import their helpers (reference.py, optim_configs.py, golden/make_lr_golden.py) as
# top-level modules
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "golden"))

import make_lr_golden  # noqa: E402


@pytest.fixture(scope="module")
def fo_backend():
    """The scheduler-comparison backend that runs fastoptim's optimizers and schedulers."""
    return make_lr_golden.fastoptim_backend()


@pytest.fixture(scope="module")
def torch_backend():
    """The same backend for torch 2.13 (skips without torch)."""
    pytest.importorskip("torch")
    return make_lr_golden.torch_backend()


@pytest.fixture
def threads():
    """Restores fastoptim's thread count after a test that changes it."""
    import fastoptim as fo

    old = fo.get_num_threads()
    yield
    fo.set_num_threads(old)
