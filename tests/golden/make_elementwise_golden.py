"""Generate the round-2 elementwise optimizers' golden data from torch 2.13 (run:
python tests/golden/make_elementwise_golden.py).

``elementwise.npz``: for every case of tests/test_kernels_elementwise.py, float32 and float64, two
seeds: the params and state after ``GOLDEN`` steps of torch's single-tensor functional path (with
the IEEE square root where the update takes one, see ``ieee_sqrt`` there), from the seeded start
and gradients the test regenerates. Only torch's arrays are stored.

``elementwise_classes.npz``: for every test configuration of the registry of the nine optimizers
(RMSprop, Adagrad, Adadelta, Adamax, NAdam, RAdam, ASGD, Rprop, Lion), float32 and float64: the
params and the whole per-parameter state (``step`` an int, the 0-d state in torch's dtype) after
``CLASS_STEPS`` steps of torch's class with ``foreach=False`` over the three param groups and the
gradients of ``tests/test_golden.py`` (some ``None``), again with the IEEE square root where the
update takes one. Lion, which torch does not have, is its reference formula in torch ops
(``_torch_lion`` of tests/test_kernels_elementwise.py) applied per group as fastoptim's class does.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import test_golden as G  # noqa: E402
import test_kernels_elementwise as T  # noqa: E402
from fastoptim.optim.registry import OPTIMIZERS  # noqa: E402


def functional_golden():
    out = {}
    for name, case in sorted(T.CASES.items()):
        for dtype in (np.float32, np.float64):
            for seed in range(2):
                run = T.golden_runs(case)[0]
                arrays = T.run_case(case, seed, dtype, torch_runs=(run,), **T.GOLDEN)[0][run]
                for j, a in enumerate(arrays):
                    out[f"{name}/{np.dtype(dtype).name}/{seed}/{j}"] = a
    np.savez_compressed(T.GOLDEN_PATH, **out)
    print(T.GOLDEN_PATH, len(out), "arrays")


def _torch_state(state):
    return {key: int(value.item()) if key == "step" else value.numpy().copy() for key, value in state.items()}


def _lion_reference(config, start, grads):
    """Lion's reference formula in torch ops, per param group, skipping params without a grad."""
    import inspect

    import torch

    defaults = {k: v.default for k, v in inspect.signature(OPTIMIZERS["Lion"].cls).parameters.items()
                if k != "params"}
    params = [torch.from_numpy(x.copy()) for x in start]
    groups = [{**defaults, **config.kwargs, **g} for g in G.class_groups(config, params)]
    state = {}
    for step in grads:
        for group in groups:
            for p in group["params"]:
                j = next(i for i, q in enumerate(params) if q is p)
                if step[j] is None:
                    continue
                m = state.setdefault(j, {"exp_avg": torch.zeros_like(p)})["exp_avg"]
                beta1, beta2 = group["betas"]
                T._torch_lion([p], [torch.from_numpy(step[j])], [m], lr=group["lr"], beta1=beta1, beta2=beta2,
                              weight_decay=group["weight_decay"], maximize=group["maximize"])
    return [p.numpy() for p in params], lambda j: _torch_state(state.get(j, {}))


def torch_class_run(name, k, dtype):
    """torch's class (single-tensor path; IEEE square root where the update takes one) over the
    golden run of ``tests/test_golden.py``: the final parameters and state, flattened."""
    import torch

    config = OPTIMIZERS[name].configs[k]
    start, grads = G.class_inputs(name, k, dtype)
    if name == "Lion":
        params, state_of = _lion_reference(config, start, grads)
        return G.flatten_state(G.class_key(name, k, dtype), params, state_of)
    tparams = [torch.nn.Parameter(torch.from_numpy(x.copy())) for x in start]
    groups = [{**g, **config.torch_kwargs({key: v for key, v in g.items() if key != "params"})}
              for g in G.class_groups(config, tparams)]
    opt = config.make_torch(groups, foreach=False)
    sqrt = T.CASES[name.lower()].sqrt
    for step in grads:
        for tp, g in zip(tparams, step):
            tp.grad = None if g is None else torch.from_numpy(g.copy())
        with T.ieee_sqrt() if sqrt else T.contextlib.nullcontext():
            opt.step()
    params = [tp.detach().numpy() for tp in tparams]
    return G.flatten_state(G.class_key(name, k, dtype), params,
                           lambda j: _torch_state(opt.state.get(tparams[j], {})))


def class_golden():
    out = {}
    for name, k in G.CLASS_CASES:
        for dtype in (np.float32, np.float64):
            key = G.class_key(name, k, dtype)
            out[key + "/manifest"], out[key + "/data"] = G.pack(torch_class_run(name, k, dtype))
    np.savez_compressed(G.CLASS_GOLDEN_PATH, **out)
    print(G.CLASS_GOLDEN_PATH, len(out) // 2, "runs")


if __name__ == "__main__":
    if sys.argv[1:] != ["--classes-only"]:
        functional_golden()
    class_golden()
