"""The contestants of the benchmark suite (``python -m fastoptim bench``, see :mod:`fastoptim.tools.bench`).

Every peer takes one :class:`Case` (the workload's shapes, a dtype, an optimizer configuration,
initial parameters and fixed gradients), copies the parameters, allocates its own state and
exposes ``step()`` (one optimizer step over all arrays), ``sync()`` (wait for asynchronous work:
only JAX has any) and ``numpy_params()`` (the current parameters as NumPy arrays, to check that the
peer computes what fastoptim computes). Gradients are set once and shared read-only by all peers:
what is timed is the step, not the making of gradients.

Optional libraries (torch, jax/optax) are imported only when their peer is built, never when
fastoptim is imported.
"""
import numpy as np

import fastoptim
from fastoptim import functional as _functional

__all__ = ["Case", "PEERS", "available_peers", "make_peer"]


class Case:
    """One benchmark cell's inputs, shared by every peer.

    Parameters
    ----------
    shapes : sequence of tuple of int
        Shape of each parameter array.
    dtype : numpy dtype
        float32 or float64.
    config : fastoptim.tools.bench.OptimizerConfig
        The optimizer and its hyperparameters.
    seed : int, default 0
        Seed of the initial parameters and the gradients (standard normal).
    """

    def __init__(self, shapes, dtype, config, seed=0):
        self.shapes = [tuple(s) for s in shapes]
        self.dtype = np.dtype(dtype)
        self.config = config
        rng = np.random.default_rng(seed)
        self.init_params = [rng.standard_normal(s, dtype=self.dtype) for s in self.shapes]
        # The peers get read-only views, so that none can change the gradients between steps;
        # torch.from_numpy warns on read-only arrays (it cannot enforce it), so the torch peers
        # wrap the writeable owners of the same memory.
        self.writeable_grads = [rng.standard_normal(s, dtype=self.dtype) for s in self.shapes]
        self.grads = []
        for g in self.writeable_grads:
            view = g.view()
            view.flags.writeable = False
            self.grads.append(view)
        self.n_elements = int(sum(int(np.prod(s)) for s in self.shapes))

    def param_copies(self):
        return [p.copy() for p in self.init_params]


class Peer:
    """Base class: a named optimizer implementation over one :class:`Case`."""

    name = ""
    label = ""

    def step(self):
        raise NotImplementedError

    def sync(self):
        """Block until the last step's results exist (only asynchronous peers need this)."""

    def numpy_params(self):
        """The current parameters, as NumPy arrays (views where possible)."""
        return self.params


# ----------------------------------------------------------------------------------------------
# fastoptim
# ----------------------------------------------------------------------------------------------

class FastoptimFunctional(Peer):
    """``fastoptim.functional.sgd/adam/adamw``: one compiled call over the whole list."""

    name = "fastoptim"
    label = "fastoptim (functional)"

    def __init__(self, case):
        cfg = case.config
        self.params = case.param_copies()
        self.grads = list(case.grads)
        n = len(self.params)
        if cfg.family == "sgd":
            # None entries: the first step creates the buffers, as in torch.
            self.momentum_buffers = [None] * n
            self.kwargs = dict(weight_decay=cfg.weight_decay, momentum=cfg.momentum, lr=cfg.lr,
                               dampening=cfg.dampening, nesterov=cfg.nesterov, maximize=False)
        else:
            self.exp_avgs = [np.zeros_like(p) for p in self.params]
            self.exp_avg_sqs = [np.zeros_like(p) for p in self.params]
            self.max_exp_avg_sqs = [np.zeros_like(p) for p in self.params] if cfg.amsgrad else []
            self.state_steps = [0] * n
            self.kwargs = dict(amsgrad=cfg.amsgrad, beta1=cfg.betas[0], beta2=cfg.betas[1],
                               lr=cfg.lr, weight_decay=cfg.weight_decay, eps=cfg.eps,
                               maximize=False)
        self.family = cfg.family
        self.adam = _functional.adamw if cfg.decoupled_weight_decay else _functional.adam

    def step(self):
        if self.family == "sgd":
            _functional.sgd(self.params, self.grads, self.momentum_buffers, **self.kwargs)
        else:
            self.adam(self.params, self.grads, self.exp_avgs, self.exp_avg_sqs,
                      self.max_exp_avg_sqs, self.state_steps, **self.kwargs)


def _has_classes():
    return all(hasattr(fastoptim, name) for name in ("Parameter", "SGD", "Adam", "AdamW"))


class FastoptimClass(Peer):
    """``fastoptim.SGD/Adam/AdamW(...).step()`` over ``fastoptim.Parameter`` params."""

    name = "fastoptim-class"
    label = "fastoptim opt.step()"

    def __init__(self, case):
        cfg = case.config
        self.params = [fastoptim.Parameter(p) for p in case.param_copies()]
        for p, g in zip(self.params, case.grads):
            p.grad = g
        if cfg.family == "sgd":
            self.opt = fastoptim.SGD(self.params, lr=cfg.lr, momentum=cfg.momentum,
                                     dampening=cfg.dampening, weight_decay=cfg.weight_decay,
                                     nesterov=cfg.nesterov)
        else:
            cls = fastoptim.AdamW if cfg.decoupled_weight_decay else fastoptim.Adam
            self.opt = cls(self.params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                           weight_decay=cfg.weight_decay, amsgrad=cfg.amsgrad)
        self.step = self.opt.step

    def numpy_params(self):
        return [p.view(np.ndarray) for p in self.params]


# ----------------------------------------------------------------------------------------------
# NumPy
# ----------------------------------------------------------------------------------------------

class NumpyPeer(Peer):
    """A careful NumPy implementation: in place, preallocated scratch, every ufunc with ``out=``.

    It follows torch's update rule op by op where NumPy can (NumPy has no fused multiply-add, so
    results may differ from fastoptim in the last bit of a parameter).

    With ``chunk_bytes`` set, arrays larger than the chunk are processed chunk by chunk, so that the
    dozen ufunc passes of one Adam step run over data that is still in the L2 cache instead of
    streaming every whole array from L3 or DRAM a dozen times: the best NumPy can do, at the cost
    of a loop in Python (a few microseconds per chunk).
    """

    name = "numpy"
    label = "NumPy"

    def __init__(self, case, chunk_bytes=None):
        cfg = case.config
        self.cfg = cfg
        self.params = case.param_copies()
        self.grads = list(case.grads)
        itemsize = case.dtype.itemsize
        chunk = None if chunk_bytes is None else max(16, chunk_bytes // itemsize)
        largest = max((p.size for p in self.params), default=1)
        scratch_size = largest if chunk is None else min(largest, chunk)
        self._scratch = np.empty(scratch_size, case.dtype)
        # A second scratch only where the rule needs a modified gradient (L2 weight decay).
        need_second = cfg.weight_decay != 0 and not cfg.decoupled_weight_decay
        self._scratch2 = np.empty(scratch_size, case.dtype) if need_second else None
        if cfg.family == "sgd":
            self.bufs = [np.zeros_like(p) for p in self.params]
        else:
            self.exp_avgs = [np.zeros_like(p) for p in self.params]
            self.exp_avg_sqs = [np.zeros_like(p) for p in self.params]
            self.max_exp_avg_sqs = ([np.zeros_like(p) for p in self.params] if cfg.amsgrad
                                    else [None] * len(self.params))
        self.step_count = 0
        # Flat views and (start, stop) pieces, computed once: the step only slices.
        self._pieces = []
        for i, p in enumerate(self.params):
            n = p.size
            step = n if chunk is None else chunk
            self._pieces.append([(a, min(a + step, n)) for a in range(0, n, step)])
        self._flat = [p.reshape(-1) for p in self.params]
        self._flat_grads = [g.reshape(-1) for g in self.grads]
        if cfg.family == "sgd":
            self._flat_state = [(b.reshape(-1),) for b in self.bufs]
        else:
            self._flat_state = [
                (m.reshape(-1), v.reshape(-1), None if vm is None else vm.reshape(-1))
                for m, v, vm in zip(self.exp_avgs, self.exp_avg_sqs, self.max_exp_avg_sqs)]

    def step(self):
        self.step_count += 1
        if self.cfg.family == "sgd":
            self._sgd()
        else:
            self._adam()

    def _sgd(self):
        cfg = self.cfg
        first = self.step_count == 1
        wd, momentum, lr = cfg.weight_decay, cfg.momentum, cfg.lr
        one_minus_dampening = 1.0 - cfg.dampening
        scratch, scratch2 = self._scratch, self._scratch2
        for p_all, g_all, (b_all,), pieces in zip(self._flat, self._flat_grads, self._flat_state,
                                                  self._pieces):
            for a, z in pieces:
                p, g, buf = p_all[a:z], g_all[a:z], b_all[a:z]
                s = scratch[:z - a]
                if wd != 0:
                    d = scratch2[:z - a]
                    np.multiply(p, wd, out=d)           # grad + wd * param
                    d += g
                else:
                    d = g
                if momentum != 0:
                    if first:
                        np.copyto(buf, d)               # torch: buf = grad.clone()
                    else:
                        buf *= momentum                 # buf.mul_(momentum).add_(grad, 1 - damp)
                        if one_minus_dampening == 1.0:
                            buf += d
                        else:
                            np.multiply(d, one_minus_dampening, out=s)
                            buf += s
                    if cfg.nesterov:
                        np.multiply(buf, momentum, out=s)   # grad.add(buf, alpha=momentum)
                        s += d
                        d = s
                    else:
                        d = buf
                np.multiply(d, -lr, out=s)              # param.add_(grad, alpha=-lr)
                p += s

    def _adam(self):
        cfg = self.cfg
        t = self.step_count
        beta1, beta2 = cfg.betas
        lr, wd, eps = cfg.lr, cfg.weight_decay, cfg.eps
        # Per-step scalars in double precision, as torch computes them.
        step_size = lr / (1.0 - beta1 ** t)
        bc2_sqrt = (1.0 - beta2 ** t) ** 0.5
        decay = 1.0 - lr * wd
        scratch, scratch2 = self._scratch, self._scratch2
        for p_all, g_all, (m_all, v_all, vm_all), pieces in zip(
                self._flat, self._flat_grads, self._flat_state, self._pieces):
            for a, z in pieces:
                p, g, m, v = p_all[a:z], g_all[a:z], m_all[a:z], v_all[a:z]
                s = scratch[:z - a]
                if wd != 0:
                    if cfg.decoupled_weight_decay:
                        p *= decay                      # param.mul_(1 - lr * wd)
                    else:
                        d = scratch2[:z - a]
                        np.multiply(p, wd, out=d)       # grad + wd * param
                        d += g
                        g = d
                np.subtract(g, m, out=s)                # exp_avg.lerp_(grad, 1 - beta1)
                s *= 1.0 - beta1
                m += s
                v *= beta2                              # exp_avg_sq.mul_(b2).addcmul_(g, g, 1 - b2)
                np.multiply(g, g, out=s)
                s *= 1.0 - beta2
                v += s
                if cfg.amsgrad:
                    vm = vm_all[a:z]
                    np.maximum(vm, v, out=vm)
                    np.sqrt(vm, out=s)
                else:
                    np.sqrt(v, out=s)
                s /= bc2_sqrt                           # denom = sqrt(v) / bc2_sqrt + eps
                s += eps
                np.divide(m, s, out=s)                  # param.addcdiv_(m, denom, -step_size)
                s *= -step_size
                p += s


class NumpyBlockedPeer(NumpyPeer):
    """:class:`NumpyPeer` processing large arrays in 256 KiB chunks (L2-resident scratch)."""

    name = "numpy-blocked"
    label = "NumPy, cache-blocked"

    def __init__(self, case):
        super().__init__(case, chunk_bytes=256 * 1024)


# ----------------------------------------------------------------------------------------------
# torch.optim
# ----------------------------------------------------------------------------------------------

class TorchPeer(Peer):
    """``torch.optim.SGD/Adam/AdamW`` on tensors that share memory with NumPy copies."""

    mode = None  # "forloop", "foreach" or "fused"

    def __init__(self, case):
        import torch

        cfg = case.config
        self.params = case.param_copies()
        tensors = [torch.nn.Parameter(torch.from_numpy(p)) for p in self.params]
        for t, g in zip(tensors, case.writeable_grads):
            t.grad = torch.from_numpy(g)        # the same memory as every peer's gradient
        flags = {"forloop": dict(foreach=False), "foreach": dict(foreach=True),
                 "fused": dict(fused=True)}[self.mode]
        if cfg.family == "sgd":
            self.opt = torch.optim.SGD(tensors, lr=cfg.lr, momentum=cfg.momentum,
                                       dampening=cfg.dampening, weight_decay=cfg.weight_decay,
                                       nesterov=cfg.nesterov, **flags)
        else:
            cls = torch.optim.AdamW if cfg.decoupled_weight_decay else torch.optim.Adam
            self.opt = cls(tensors, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                           weight_decay=cfg.weight_decay, amsgrad=cfg.amsgrad, **flags)
        self._tensors = tensors
        self.step = self.opt.step


class TorchForloop(TorchPeer):
    name, label, mode = "torch-forloop", "torch (for-loop)", "forloop"


class TorchForeach(TorchPeer):
    name, label, mode = "torch-foreach", "torch (foreach)", "foreach"


class TorchFused(TorchPeer):
    name, label, mode = "torch-fused", "torch (fused)", "fused"


# ----------------------------------------------------------------------------------------------
# optax
# ----------------------------------------------------------------------------------------------

class OptaxPeer(Peer):
    """optax under ``jax.jit`` with the parameters and state donated (updated in place by XLA).

    JAX fixes its thread pool when it starts, so the thread count is not matched: the JSON output
    says so. ``optax.amsgrad`` takes the running maximum of the *bias-corrected* second moment
    where torch takes it before bias correction; with the suite's fixed gradients the two agree
    (the agreement check runs two steps), the cost per step is the same.
    """

    name = "optax"
    label = "optax (jit, donated)"

    def __init__(self, case):
        import jax
        import jax.numpy as jnp
        import optax

        cfg = case.config
        if case.dtype == np.float64 and not jax.config.jax_enable_x64:
            jax.config.update("jax_enable_x64", True)
        if cfg.family == "sgd":
            if cfg.dampening != 0 or cfg.weight_decay != 0:
                raise ValueError("the optax peer models SGD with momentum only (no dampening or "
                                 "weight decay)")
            opt = optax.sgd(cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
        else:
            b1, b2 = cfg.betas
            if cfg.decoupled_weight_decay:
                opt = optax.adamw(cfg.lr, b1=b1, b2=b2, eps=cfg.eps, weight_decay=cfg.weight_decay)
            elif cfg.weight_decay != 0:
                raise ValueError("the optax peer has no L2 (coupled) weight decay")
            elif cfg.amsgrad:
                opt = optax.amsgrad(cfg.lr, b1=b1, b2=b2, eps=cfg.eps)
            else:
                opt = optax.adam(cfg.lr, b1=b1, b2=b2, eps=cfg.eps)
        self._jax = jax
        self._params = [jnp.asarray(p) for p in case.param_copies()]
        self._grads = [jnp.asarray(g) for g in case.grads]
        self._state = opt.init(self._params)

        def update(params, state, grads):
            updates, state = opt.update(grads, state, params)
            return optax.apply_updates(params, updates), state

        self._update = jax.jit(update, donate_argnums=(0, 1))

    def step(self):
        self._params, self._state = self._update(self._params, self._state, self._grads)

    def sync(self):
        self._jax.block_until_ready(self._params)

    def numpy_params(self):
        self.sync()
        return [np.asarray(p) for p in self._params]


PEERS = {cls.name: cls for cls in (FastoptimFunctional, FastoptimClass, NumpyPeer,
                                   NumpyBlockedPeer, TorchForloop, TorchForeach, TorchFused,
                                   OptaxPeer)}


def _importable(module):
    import importlib.util

    return importlib.util.find_spec(module) is not None


def unavailable_reason(name):
    """Why peer ``name`` cannot run here, or None when it can."""
    if name == "fastoptim-class" and not _has_classes():
        return "fastoptim.SGD/Adam/AdamW/Parameter are not available in this build"
    if name.startswith("torch-") and not _importable("torch"):
        return "torch is not installed (pip install torch)"
    if name == "optax" and not (_importable("jax") and _importable("optax")):
        return "jax and optax are not installed (pip install jax optax)"
    return None


def available_peers():
    """Names of the peers that can run in this environment, in table order."""
    return [name for name in PEERS if unavailable_reason(name) is None]


def make_peer(name, case):
    """Build peer ``name`` (a key of :data:`PEERS`) over ``case``."""
    return PEERS[name](case)
