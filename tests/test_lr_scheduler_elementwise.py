"""CyclicLR and OneCycleLR on RMSprop, Adagrad, Adadelta, Adamax and Lion, side by side with
torch 2.13 (skipped without torch, except Lion): the momentum that is cycled (RMSprop's
``momentum``, ``betas[0]`` of Adamax and Lion), and torch's refusal where there is none."""
import numpy as np
import pytest

import fastoptim as fo

torch = pytest.importorskip("torch")

SCHEDULERS = {
    "CyclicLR": lambda ls, opt: ls.CyclicLR(opt, 0.001, 0.01, step_size_up=4),
    "OneCycleLR": lambda ls, opt: ls.OneCycleLR(opt, 0.01, total_steps=20),
}
CYCLED = [("RMSprop", {"momentum": 0.5}, "momentum"), ("RMSprop", {}, "momentum"),
          ("Adamax", {}, "betas"), ("Lion", {}, "betas")]


def _run(library, name, kwargs, scheduler, steps=20):
    """The lr and the cycled value of every group at every step."""
    rng = np.random.default_rng(0)
    data = [rng.standard_normal(4), rng.standard_normal(3)]
    if library is fo:
        params = [fo.Parameter(x) for x in data]
        cls, lrs = getattr(fo, name), fo.lr_scheduler
    else:
        params = [torch.nn.Parameter(torch.from_numpy(x)) for x in data]
        cls, lrs = getattr(torch.optim, name), torch.optim.lr_scheduler
    opt = cls([{"params": params[:1]}, {"params": params[1:], "lr": 0.5}], **kwargs)
    sched = SCHEDULERS[scheduler](lrs, opt)
    seen = []
    for t in range(steps):
        for p in params:
            g = np.full(p.shape, 0.1 * (t + 1))
            p.grad = g if library is fo else torch.from_numpy(g)
        opt.step()
        sched.step()
        seen.append([(g["lr"], g.get("momentum"), g.get("betas")) for g in opt.param_groups])
    return seen, [np.asarray(p.detach() if library is torch else p) for p in params]


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
@pytest.mark.parametrize("name, kwargs, key", CYCLED, ids=lambda x: str(x))
def test_cycles_the_momentum_as_torch_does(name, kwargs, key, scheduler):
    ours, _ = _run(fo, name, kwargs, scheduler)
    values = [group[1 if key == "momentum" else 2] for step in ours for group in step]
    first = [v if key == "momentum" else v[0] for v in values]
    assert len(set(first)) > 2  # it does cycle
    if name == "Lion":  # not in torch: its betas[0] cycles like Adamax's
        theirs, _ = _run(torch, "Adamax", {}, scheduler)
        assert [[(g[0], g[2][0]) for g in s] for s in ours] == \
               [[(g[0], g[2][0]) for g in s] for s in theirs]
        return
    theirs, their_params = _run(torch, name, kwargs, scheduler)
    assert ours == theirs
    _, our_params = _run(fo, name, kwargs, scheduler)
    for a, b in zip(our_params, their_params):
        assert np.allclose(a, b, rtol=1e-12, atol=0)


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
@pytest.mark.parametrize("name", ["Adagrad", "Adadelta"])
def test_refused_without_momentum_or_betas_as_torch_refuses(name, scheduler):
    message = "optimizer must support momentum or beta1 with `cycle_momentum` option enabled"
    for library in (fo, torch):
        with pytest.raises(ValueError, match=message):
            _run(library, name, {}, scheduler)


@pytest.mark.parametrize("name", ["Adagrad", "Adadelta"])
def test_lr_alone_cycles_with_cycle_momentum_false(name):
    def lrs(library):
        p = fo.Parameter(np.ones(3)) if library is fo else torch.nn.Parameter(torch.ones(3))
        opt = getattr(library.optim if library is torch else fo, name)([p])
        sched = library.optim.lr_scheduler.OneCycleLR(opt, 0.01, total_steps=10,
                                                      cycle_momentum=False) \
            if library is torch else fo.lr_scheduler.OneCycleLR(opt, 0.01, total_steps=10,
                                                                 cycle_momentum=False)
        out = []
        for _ in range(10):
            opt.step()
            sched.step()
            out.append(opt.param_groups[0]["lr"])
        return out

    assert lrs(fo) == lrs(torch)
