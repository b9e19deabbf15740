"""A full training loop with fastoptim: gradient accumulation, clipping, EMA weights, SWA at the
end, and a checkpoint that resumes every piece of it bit for bit.

Run it (``python docs/examples/training_loop.py``) or import it: ``run(stop_at=k, ckpt=...)``
trains up to step ``k`` and saves a checkpoint, ``run(resume=...)`` continues from one, and both
end exactly where an uninterrupted ``run()`` ends (tests/test_training_loop.py checks it).
"""
import numpy as np

import fastoptim as fo
from fastoptim.lr_scheduler import CosineAnnealingLR
from fastoptim.swa_utils import SWALR, AveragedModel, get_ema_multi_avg_fn

STEPS = 60        # optimizer steps
SWA_START = 40    # from this step on: constant SWA learning rate and weight averaging
ACCUM = 4         # micro-batches accumulated into each optimizer step
MICRO = 16        # examples per micro-batch
MAX_NORM = 1.0    # gradient clipping threshold


def make_data():
    """A 3-class problem in 10 dimensions (fixed seed)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((512, 10)).astype(np.float32)
    y = np.argmax(X @ rng.standard_normal((10, 3)), axis=1)
    return X, y


def forward_backward(w, X, y):
    """Cross-entropy of a one-hidden-layer tanh network, and its gradients."""
    h = np.tanh(X @ w["W1"] + w["b1"])
    logits = h @ w["W2"] + w["b2"]
    logits = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(p[np.arange(len(y)), y]))
    d = p
    d[np.arange(len(y)), y] -= 1
    d /= len(y)
    dh = (d @ w["W2"].T) * (1 - h * h)
    grads = {"W2": h.T @ d, "b2": d.sum(axis=0), "W1": X.T @ dh, "b1": dh.sum(axis=0)}
    return float(loss), {k: np.asarray(g, dtype=np.float32) for k, g in grads.items()}


def accuracy(w, X, y):
    h = np.tanh(X @ w["W1"] + w["b1"])
    return float(np.mean(np.argmax(h @ w["W2"] + w["b2"], axis=1) == y))


def build():
    """Everything a run needs, created the same way for a fresh run and a resumed one."""
    rng = np.random.default_rng(1)
    params = {
        "W1": fo.Parameter((rng.standard_normal((10, 32)) * 0.3).astype(np.float32)),
        "b1": fo.Parameter(np.zeros(32, np.float32)),
        "W2": fo.Parameter((rng.standard_normal((32, 3)) * 0.3).astype(np.float32)),
        "b2": fo.Parameter(np.zeros(3, np.float32)),
    }
    opt = fo.AdamW([{"params": [params["W1"], params["W2"]]},
                    {"params": [params["b1"], params["b2"]], "weight_decay": 0.0}],
                   lr=3e-2, weight_decay=1e-2)
    run = {
        "params": params,
        "opt": opt,
        "sched": CosineAnnealingLR(opt, T_max=SWA_START),
        "swa_sched": SWALR(opt, swa_lr=5e-3, anneal_epochs=5),
        "ema": AveragedModel(params, multi_avg_fn=get_ema_multi_avg_fn(0.95)),
        "swa": AveragedModel(params),
        "data_rng": np.random.default_rng(2),   # mini-batch order
        "step": 0,
    }
    return run


def save(run, path):
    fo.save({
        "params": {k: np.array(p) for k, p in run["params"].items()},
        "opt": run["opt"].state_dict(),
        "sched": run["sched"].state_dict(),
        "swa_sched": run["swa_sched"].state_dict(),
        "ema": run["ema"].state_dict(),
        "swa": run["swa"].state_dict(),
        "data_rng": run["data_rng"].bit_generator.state,
        "step": run["step"],
    }, path)


def load(run, path):
    ckpt = fo.load(path)
    for k, p in run["params"].items():
        p[...] = ckpt["params"][k]
    run["opt"].load_state_dict(ckpt["opt"])
    run["sched"].load_state_dict(ckpt["sched"])
    run["swa_sched"].load_state_dict(ckpt["swa_sched"])
    run["ema"].load_state_dict(ckpt["ema"])
    run["swa"].load_state_dict(ckpt["swa"])
    run["data_rng"].bit_generator.state = ckpt["data_rng"]
    run["step"] = ckpt["step"]


def train_step(run, X, y):
    params, opt = run["params"], run["opt"]
    for p in params.values():
        p.grad = None
    for _ in range(ACCUM):                         # accumulate the mean gradient of ACCUM batches
        idx = run["data_rng"].integers(0, len(X), MICRO)
        _, grads = forward_backward(params, X[idx], y[idx])
        for k, p in params.items():
            g = grads[k] / np.float32(ACCUM)
            p.grad = g if p.grad is None else p.grad + g
    fo.clip_grad_norm_(params.values(), MAX_NORM)
    opt.step()
    run["ema"].update_parameters(params)
    if run["step"] >= SWA_START:
        run["swa"].update_parameters(params)
        run["swa_sched"].step()
    else:
        run["sched"].step()
    run["step"] += 1


def run(stop_at=None, ckpt=None, resume=None):
    """Train to STEPS (or save at ``stop_at`` into ``ckpt`` and stop); returns the run."""
    X, y = make_data()
    state = build()
    if resume is not None:
        load(state, resume)
    while state["step"] < STEPS:
        if state["step"] == stop_at:
            save(state, ckpt)
            return state
        train_step(state, X, y)
    return state


if __name__ == "__main__":
    X, y = make_data()
    final = run()
    print(f"accuracy: last weights {accuracy(final['params'], X, y):.3f}, "
          f"EMA {accuracy(final['ema'].averaged, X, y):.3f}, "
          f"SWA {accuracy(final['swa'].averaged, X, y):.3f}")
