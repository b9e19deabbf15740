"""docs/schedulers.rst, docs/plot_schedulers.py and fastoptim.lr_scheduler stay in step."""
import importlib.util
import re
import sys
from pathlib import Path

import pytest

from fastoptim import lr_scheduler

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture(scope="module")
def plot_script():
    spec = importlib.util.spec_from_file_location("plot_schedulers", DOCS / "plot_schedulers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("plot_schedulers", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def page():
    return (DOCS / "schedulers.rst").read_text()


def _squash(text):
    return re.sub(r"\s+", " ", text)


def test_every_scheduler_is_drawn_and_shown(plot_script, page):
    drawn = [schedule.name for schedule in plot_script.SCHEDULES]
    assert sorted(drawn) == sorted(set(lr_scheduler.__all__) - {"LRScheduler"})
    images = re.findall(r"^\.\. image:: _static/schedulers/(\w+)\.png$", page, flags=re.MULTILINE)
    assert sorted(images) == sorted(drawn)
    for schedule in plot_script.SCHEDULES:
        # the code printed under each plot is the code that drew it
        assert f"``{schedule.code}``" in _squash(page), schedule.name


def test_every_scheduler_is_documented_on_the_page(page):
    for name in lr_scheduler.__all__:
        assert f":class:`{name}`" in page, name


def test_traces_are_real_schedules(plot_script):
    by_name = {schedule.name: schedule for schedule in plot_script.SCHEDULES}
    lrs, _ = plot_script.trace(by_name["StepLR"])
    assert len(lrs) == plot_script.STEPS + 1
    assert lrs[29] == 0.1 and lrs[30] == 0.05 and lrs[60] == 0.025
    lrs, betas = plot_script.trace(by_name["OneCycleLR"])
    # 30% of 101 steps does not fall on a step: the peak is just below max_lr
    assert 0.0999 < max(lrs) <= 0.1 and abs(lrs[0] - 0.1 / 25) < 1e-15 and abs(lrs[-1] - 0.1 / 25 / 1e4) < 1e-15
    assert betas[0] == 0.95 and 0.85 <= min(betas) < 0.8501


def test_plot_script_writes_pngs(plot_script, tmp_path):
    pytest.importorskip("matplotlib")
    # one plain plot, one with the momentum axis, one with the metric axis (all 15 take seconds)
    names = ["StepLR", "OneCycleLR", "ReduceLROnPlateau"]
    assert plot_script.main([*names, "--out", str(tmp_path)]) == 0
    assert sorted(path.stem for path in tmp_path.glob("*.png")) == sorted(names)
    for path in tmp_path.glob("*.png"):
        assert path.read_bytes().startswith(b"\x89PNG") and 2_000 < path.stat().st_size < 60_000


def test_plot_script_refuses_unknown_names(plot_script, tmp_path, capsys):
    with pytest.raises(SystemExit):
        plot_script.main(["StepLr", "--out", str(tmp_path)])
    assert "unknown scheduler(s) StepLr" in capsys.readouterr().err
