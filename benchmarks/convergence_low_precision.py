"""Convergence of float32, bfloat16 state and bfloat16 params + float32 master, side by side
(docs/low_precision.rst: the table and docs/_static/low_precision/convergence.png come from here).

    PYTHONPATH=$PWD nice -n 19 python benchmarks/convergence_low_precision.py

Two problems, each trained in every mode from the same initialisations and batches, with the demo's
default optimizer (AdamW) and the demo's settings (warm-up and cosine schedule, weight decay on the
weight matrices):

* ``spiral``: the demo's problem (``fastoptim.tools.demo``: five-armed spiral, MLP 2-32-32-5).
* ``tiny-lm``: a small transformer-like MLP in NumPy with its own backprop: next-token prediction
  on a synthetic second-order Markov text (vocabulary 32), token embeddings of the 4 previous
  tokens, two pre-LayerNorm residual MLP blocks (width 64, hidden 256, GELU), a final LayerNorm
  and a linear head.

Modes: ``f32`` (float32 params and state), ``bf16-state`` (float32 params, bfloat16 state,
rounded to nearest), ``bf16-state-sr`` (the same with stochastic rounding), ``bf16-params`` (bfloat16 params with the float32 master copy in the optimizer state, float32
state; the forward and backward passes compute in float32 from the bfloat16 weights and the
gradients are rounded to bfloat16, as a bfloat16 model's would be). Reported: the final training
loss (mean of the last 5% of the steps' batch losses) and the final validation loss, averaged over
seeds (initialisation and batch order; the spiral's final loss varies from seed to seed by more
than the precision changes it, so it is run with several).
"""
import argparse
import math
import os

# one BLAS thread: the products are small, and a shared machine makes a BLAS thread pool spin
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import fastoptim as fo  # noqa: E402
from fastoptim.optim.registry import OPTIMIZERS  # noqa: E402
from fastoptim.tools import demo  # noqa: E402

MODES = ("f32", "bf16-state", "bf16-state-sr", "bf16-params")
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "docs", "_static", "low_precision")


def _bf16():
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)


def _params_for(mode, arrays):
    """fastoptim Parameters for the float32 initial ``arrays`` in this mode."""
    dtype = _bf16() if mode == "bf16-params" else np.float32
    return [fo.Parameter(np.asarray(a, np.float32).astype(dtype)) for a in arrays]


def _f32(p):
    return np.asarray(p, dtype=np.float32)


# the demo's default optimizer (a registry entry), with the demo's settings
INFO = {info.name.lower(): info for info in OPTIMIZERS.values()}[demo.DEFAULT_OPTIMIZER]


def _optimizer(mode, weights, others, lr, weight_decay, steps):
    kwargs = {"bf16-state": {"state_dtype": "bfloat16"},
              "bf16-state-sr": {"state_dtype": "bfloat16", "stochastic_rounding": True}}.get(mode, {})
    opt = INFO.cls([{"params": weights, "weight_decay": weight_decay},
                    {"params": others, "weight_decay": 0.0}], lr=lr, **INFO.demo.get("kwargs", {}), **kwargs)
    return opt, demo.make_scheduler(opt, steps)


def _set_grads(params, grads):
    for p, g in zip(params, grads):
        p.grad = np.asarray(g, np.float32).astype(p.dtype)


# ------------------------------------------------------------------------------ the spiral


def spiral_run(mode, steps, seed=0):
    train_x, train_y, val_x, val_y = demo.make_dataset()
    init_seed, shuffle_seed = np.random.SeedSequence(seed).spawn(2)
    ref = demo.MLP((2, demo.HIDDEN, demo.HIDDEN, demo.N_CLASSES), np.random.default_rng(init_seed))
    layers = [(w, b) for w, b in ref.layers]
    ws = _params_for(mode, [w for w, _ in layers])
    bs = _params_for(mode, [b for _, b in layers])
    lr, wd = INFO.demo["lr"], INFO.demo["weight_decay"]
    opt, sched = _optimizer(mode, ws, bs, lr, wd, steps)
    sampler = demo.BatchSampler(len(train_x), 128, np.random.default_rng(shuffle_seed))

    def forward(x):
        cache, h = [x], x
        for i, (w, b) in enumerate(zip(ws, bs)):
            h = h @ _f32(w) + _f32(b)
            if i < len(ws) - 1:
                h = np.maximum(h, 0)
                cache.append(h)
        return h, cache

    losses = []
    for _ in range(steps):
        batch = sampler.next()
        logits, cache = forward(train_x[batch])
        loss, grad = demo.softmax_cross_entropy(logits, train_y[batch])
        gw, gb = [None] * len(ws), [None] * len(ws)
        for i in reversed(range(len(cache))):
            gw[i], gb[i] = cache[i].T @ grad, grad.sum(axis=0)
            if i > 0:
                grad = (grad @ _f32(ws[i]).T) * (cache[i] > 0)
        _set_grads(ws + bs, gw + gb)
        opt.step()
        sched.step()
        losses.append(loss)
    val = np.concatenate([forward(val_x[i:i + 128])[0] for i in range(0, len(val_x), 128)])
    val_loss, _ = demo.softmax_cross_entropy(val, val_y)
    return losses, val_loss


# ------------------------------------------------------------------------------ the tiny LM

VOCAB, CONTEXT, WIDTH, HIDDEN_LM, BLOCKS = 32, 4, 64, 256, 2


def markov_text(n, seed=20240607):
    """A second-order Markov chain over VOCAB tokens with peaked random transitions."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((VOCAB, VOCAB, VOCAB)) * 2.5
    probs = np.exp(logits)
    probs /= probs.sum(axis=-1, keepdims=True)
    cdf = probs.cumsum(axis=-1)
    out = np.empty(n, np.int64)
    out[:2] = rng.integers(VOCAB, size=2)
    u = rng.random(n)
    for t in range(2, n):
        out[t] = min(int(np.searchsorted(cdf[out[t - 2], out[t - 1]], u[t])), VOCAB - 1)
    return out


def _windows(text):
    idx = np.arange(CONTEXT, len(text))
    x = np.stack([text[idx - CONTEXT + j] for j in range(CONTEXT)], axis=1)
    return x, text[idx]


def _layernorm(x, g, b, eps=1e-5):
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = xc * rstd
    return xhat * g + b, (xhat, rstd)


def _layernorm_back(dy, g, cache):
    xhat, rstd = cache
    dg = (dy * xhat).sum(axis=0)
    db = dy.sum(axis=0)
    dxhat = dy * g
    n = xhat.shape[-1]
    dx = rstd / n * (n * dxhat - dxhat.sum(axis=-1, keepdims=True)
                     - xhat * (dxhat * xhat).sum(axis=-1, keepdims=True))
    return dx, dg, db


_C = math.sqrt(2.0 / math.pi)


def _gelu(x):
    t = np.tanh(_C * (x + 0.044715 * x ** 3))
    return 0.5 * x * (1 + t), t


def _gelu_back(dy, x, t):
    return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _C * (1 + 3 * 0.044715 * x * x))


def lm_init(rng):
    """Named float32 arrays; weights (decayed) are the 2-d ones."""
    p = {"emb": rng.standard_normal((VOCAB, WIDTH // CONTEXT)) * 0.5}
    for k in range(BLOCKS):
        p[f"b{k}.ln_g"], p[f"b{k}.ln_b"] = np.ones(WIDTH), np.zeros(WIDTH)
        p[f"b{k}.w1"] = rng.standard_normal((WIDTH, HIDDEN_LM)) / math.sqrt(WIDTH)
        p[f"b{k}.b1"] = np.zeros(HIDDEN_LM)
        p[f"b{k}.w2"] = rng.standard_normal((HIDDEN_LM, WIDTH)) / math.sqrt(HIDDEN_LM) / math.sqrt(2 * BLOCKS)
        p[f"b{k}.b2"] = np.zeros(WIDTH)
    p["ln_g"], p["ln_b"] = np.ones(WIDTH), np.zeros(WIDTH)
    p["head"] = rng.standard_normal((WIDTH, VOCAB)) / math.sqrt(WIDTH)
    p["head_b"] = np.zeros(VOCAB)
    return {k: v.astype(np.float32) for k, v in p.items()}


def lm_forward_backward(P, x, y, need_grad=True):
    """Loss and (optionally) gradients of the tiny LM; ``P`` maps names to float32 arrays."""
    h = P["emb"][x].reshape(len(x), WIDTH)
    caches = []
    for k in range(BLOCKS):
        a, ln = _layernorm(h, P[f"b{k}.ln_g"], P[f"b{k}.ln_b"])
        z = a @ P[f"b{k}.w1"] + P[f"b{k}.b1"]
        u, t = _gelu(z)
        h2 = h + u @ P[f"b{k}.w2"] + P[f"b{k}.b2"]
        caches.append((h, a, ln, z, u, t))
        h = h2
    f, lnf = _layernorm(h, P["ln_g"], P["ln_b"])
    logits = f @ P["head"] + P["head_b"]
    loss, dlogits = demo.softmax_cross_entropy(logits, y)
    if not need_grad:
        return loss, None
    G = {"head": f.T @ dlogits, "head_b": dlogits.sum(axis=0)}
    dh, G["ln_g"], G["ln_b"] = _layernorm_back(dlogits @ P["head"].T, P["ln_g"], lnf)
    for k in reversed(range(BLOCKS)):
        h, a, ln, z, u, t = caches[k]
        G[f"b{k}.w2"], G[f"b{k}.b2"] = u.T @ dh, dh.sum(axis=0)
        dz = _gelu_back(dh @ P[f"b{k}.w2"].T, z, t)
        G[f"b{k}.w1"], G[f"b{k}.b1"] = a.T @ dz, dz.sum(axis=0)
        da, G[f"b{k}.ln_g"], G[f"b{k}.ln_b"] = _layernorm_back(dz @ P[f"b{k}.w1"].T,
                                                                 P[f"b{k}.ln_g"], ln)
        dh = dh + da
    demb = np.zeros_like(P["emb"])
    np.add.at(demb, x, dh.reshape(len(x), CONTEXT, WIDTH // CONTEXT))
    G["emb"] = demb
    return loss, G


def lm_run(mode, steps, seed=0):
    text = markov_text(60_000)
    x, y = _windows(text)
    n_train = 50_000
    init_seed, shuffle_seed = np.random.SeedSequence(seed).spawn(2)
    init = lm_init(np.random.default_rng(init_seed))
    names = list(init)
    params = dict(zip(names, _params_for(mode, [init[k] for k in names])))
    weights = [params[k] for k in names if init[k].ndim == 2]
    others = [params[k] for k in names if init[k].ndim != 2]
    opt, sched = _optimizer(mode, weights, others, 3e-3, 1e-2, steps)
    sampler = demo.BatchSampler(n_train, 128, np.random.default_rng(shuffle_seed))
    losses = []
    for _ in range(steps):
        batch = sampler.next()
        P = {k: _f32(v) for k, v in params.items()}
        loss, G = lm_forward_backward(P, x[batch], y[batch])
        _set_grads([params[k] for k in names], [G[k] for k in names])
        opt.step()
        sched.step()
        losses.append(loss)
    P = {k: _f32(v) for k, v in params.items()}
    val = [lm_forward_backward(P, x[i:i + 1000], y[i:i + 1000], need_grad=False)[0]
           for i in range(n_train, len(x) - 999, 1000)]
    return losses, float(np.mean(val))


def _gradcheck():
    """Finite differences on a few entries (float64): the hand-written backprop is right."""
    rng = np.random.default_rng(0)
    P = {k: v.astype(np.float64) for k, v in lm_init(rng).items()}
    for k in P:
        P[k] = P[k] + rng.standard_normal(P[k].shape) * 0.1
    x, y = rng.integers(VOCAB, size=(8, CONTEXT)), rng.integers(VOCAB, size=8)
    _, G = lm_forward_backward(P, x, y)
    worst = 0.0
    for k in P:
        for _ in range(3):
            i = tuple(rng.integers(s) for s in P[k].shape)
            old = P[k][i]
            P[k][i] = old + 1e-6
            up = lm_forward_backward(P, x, y, need_grad=False)[0]
            P[k][i] = old - 1e-6
            down = lm_forward_backward(P, x, y, need_grad=False)[0]
            P[k][i] = old
            num = (up - down) / 2e-6
            worst = max(worst, abs(num - G[k][i]) / max(1e-6, abs(num) + abs(G[k][i])))
    return worst


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spiral-steps", type=int, default=10_000)
    parser.add_argument("--lm-steps", type=int, default=2_000)
    parser.add_argument("--spiral-seeds", type=int, default=5)
    parser.add_argument("--lm-seeds", type=int, default=2)
    parser.add_argument("--plot", default=os.path.join(OUT, "convergence.png"))
    args = parser.parse_args(argv)
    fo.set_num_threads(1)
    print(f"backprop check (tiny-lm, float64 finite differences): worst relative error {_gradcheck():.1e}")
    results = {}
    runs = (("spiral", spiral_run, args.spiral_steps, args.spiral_seeds),
            ("tiny-lm", lm_run, args.lm_steps, args.lm_seeds))
    for problem, run, steps, seeds in runs:
        for mode in MODES:
            for seed in range(seeds):
                losses, val = run(mode, steps, seed)
                tail = max(1, steps // 20)
                results.setdefault((problem, mode), []).append(
                    (np.asarray(losses), float(np.mean(losses[-tail:])), val))
    print("final losses: training = mean batch loss of the last 5% of the steps; mean over seeds "
          "(min-max in brackets with several seeds)")
    print(f"{'problem':8s} {'mode':13s} {'seeds':>5s} {'train loss':>24s} {'val loss':>24s} "
          f"{'train vs f32':>13s} {'val vs f32':>11s}")

    def cell(values):
        text = f"{np.mean(values):.4f}"
        return text + (f" [{min(values):.4f}-{max(values):.4f}]" if len(values) > 1 else "")

    for (problem, mode), rows in results.items():
        train = [r[1] for r in rows]
        val = [r[2] for r in rows]
        t0 = np.mean([r[1] for r in results[problem, "f32"]])
        v0 = np.mean([r[2] for r in results[problem, "f32"]])
        print(f"{problem:8s} {mode:13s} {len(rows):5d} {cell(train):>24s} {cell(val):>24s} "
              f"{100 * (np.mean(train) / t0 - 1):+12.2f}% {100 * (np.mean(val) / v0 - 1):+10.2f}%")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for ax, problem in zip(axes, ("spiral", "tiny-lm")):
            for mode in MODES:
                losses = results[problem, mode][0][0]
                w = max(1, len(losses) // 100)
                smooth = np.convolve(losses, np.ones(w) / w, mode="valid")
                ax.plot(np.arange(len(smooth)) + w, smooth, label=mode, linewidth=1.2)
            ax.set_yscale("log")
            ax.set_title(f"{problem}: {INFO.name}, batch training loss (seed 0, moving mean)", fontsize=9)
            ax.set_xlabel("step")
            ax.legend()
        fig.tight_layout()
        os.makedirs(os.path.dirname(args.plot), exist_ok=True)
        fig.savefig(args.plot, dpi=100)
        print(f"plot: {os.path.relpath(args.plot)}")


if __name__ == "__main__":
    main()
