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

__all__ = ["Case", "PEERS", "Unsupported", "available_peers", "make_peer"]


class Unsupported(ValueError):
    """The peer has no implementation of this optimizer or configuration: it is not run (a
    ``-`` in the tables), which is not a problem of the run."""


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

def _state_lists(config, params):
    """The functional form's state lists over ``params`` for a fresh optimizer of ``config``, in
    the kernel's argument order (buffer lists, further lists, ``state_steps``), built as the class
    builds them: its initial arrays (``_new_buffer``), ``None`` for the buffers the first step
    creates, an empty list for a buffer the configuration switches off."""
    info = config.info
    spec = info.kernel_spec
    template = info.cls([fastoptim.Parameter(np.zeros(1))], **config.kwargs)
    group = template.param_groups[0]
    active = info.active_buffers(group)
    lists = []
    for key in info.buffers + spec.extra_keys:
        if key in info.lazy_buffers:
            lists.append([None] * len(params))
        elif key in active or key in spec.extra_keys:
            lists.append([template._new_buffer(key, p, group) for p in params])
        else:
            lists.append([])
    if spec.steps:
        lists.append([0] * len(params))
    return lists, template._kernel_kwargs(group)


class FastoptimFunctional(Peer):
    """The optimizer's form in :mod:`fastoptim.functional`: one compiled call over all arrays."""

    name = "fastoptim"
    label = "fastoptim (functional)"

    def __init__(self, case):
        import inspect

        self.params = case.param_copies()
        self.grads = list(case.grads)
        self.function = case.config.info.functional
        self.lists, kwargs = _state_lists(case.config, self.params)
        accepted = inspect.signature(self.function).parameters
        # the kernel's per-step scalars and flags, less those the functional form fixes itself
        self.kwargs = {key: value for key, value in kwargs.items() if key in accepted}

    def step(self):
        self.function(self.params, self.grads, *self.lists, **self.kwargs)


def _has_classes():
    return hasattr(fastoptim, "Parameter")


class FastoptimClass(Peer):
    """The optimizer class's ``step()`` over ``fastoptim.Parameter`` params."""

    name = "fastoptim-class"
    label = "fastoptim opt.step()"

    def __init__(self, case):
        self.params = [fastoptim.Parameter(p) for p in case.param_copies()]
        for p, g in zip(self.params, case.grads):
            p.grad = g
        self.opt = case.config.info.cls(self.params, **case.config.kwargs)
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
        info = cfg.info
        self._rule = info.peer_rule("numpy")
        if self._rule is None:
            raise Unsupported(f"there is no NumPy peer for {info.name}")
        self.cfg = cfg
        self.params = case.param_copies()
        self.grads = list(case.grads)
        group = cfg.group
        if group.get("maximize"):
            raise Unsupported("the NumPy peers do not model maximize=True")
        itemsize = case.dtype.itemsize
        chunk = None if chunk_bytes is None else max(16, chunk_bytes // itemsize)
        largest = max((p.size for p in self.params), default=1)
        scratch_size = largest if chunk is None else min(largest, chunk)
        self._scratch = np.empty(scratch_size, case.dtype)
        # A second scratch only where the rule needs a modified gradient (L2 weight decay).
        need_second = (group.get("weight_decay", 0) != 0
                       and not group.get("decoupled_weight_decay", False))
        self._scratch2 = np.empty(scratch_size, case.dtype) if need_second else None
        self._extra_scratch = []     # further scratch arrays, made by the first step that asks
        self._bool_scratch = []      # boolean ones (masks), the same
        # The state arrays the step uses (zeros; a lazy buffer is filled by the first step).
        self.state = [[np.zeros_like(p) for p in self.params]
                      for _ in info.active_buffers(group)]
        self.step_count = 0
        # Flat views and (start, stop) pieces, computed once: the step only slices.
        self._pieces = []
        for i, p in enumerate(self.params):
            n = p.size
            step = n if chunk is None else chunk
            self._pieces.append([(a, min(a + step, n)) for a in range(0, n, step)])
        self._flat = [p.reshape(-1) for p in self.params]
        self._flat_grads = [g.reshape(-1) for g in self.grads]
        self._flat_state = [tuple(buffers[i].reshape(-1) for buffers in self.state)
                            for i in range(len(self.params))]

    def step(self):
        self.step_count += 1
        self._rule(self, self.cfg.group)

    def _pieces_of(self):
        """``(param, grad, state arrays, scratch)`` slices of every chunk of every array."""
        scratch = self._scratch
        for p_all, g_all, state, pieces in zip(self._flat, self._flat_grads, self._flat_state,
                                               self._pieces):
            for a, z in pieces:
                yield p_all[a:z], g_all[a:z], [b[a:z] for b in state], scratch[:z - a], a, z

    def _decayed_grad(self, p, g, wd, a, z):
        """``grad + wd * param`` (torch's L2 weight decay) in the second scratch."""
        d = self._scratch2[:z - a]
        np.multiply(p, wd, out=d)
        d += g
        return d

    def _two_moments(self, p, g, exp_avg, exp_avg_sq, s, a, z, *, beta1, beta2, wd, decoupled,
                     lr):
        """The weight decay and the two moments of torch's Adam family (Adam, NAdam, RAdam), in
        place; returns the gradient the rest of the step uses (the decayed one under L2 decay)."""
        if wd != 0:
            if decoupled:
                p *= 1 - lr * wd                        # param.mul_(1 - lr * wd)
            else:
                g = self._decayed_grad(p, g, wd, a, z)  # grad = grad.add(param, alpha=wd)
        self._lerp(exp_avg, g, 1 - beta1, s)            # exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq *= beta2                             # exp_avg_sq.mul_(beta2)
        np.multiply(g, g, out=s)                        #   .addcmul_(grad, grad, 1 - beta2)
        s *= 1 - beta2
        exp_avg_sq += s
        return g

    def _scratch_n(self, index, a, z):
        """The ``index``-th further scratch array (0, 1, ...) beyond ``_scratch`` and the
        weight-decay scratch, as large as ``_scratch`` and allocated once, at its first use
        (a rule whose step needs more than one intermediate array), sliced to ``a:z``."""
        while len(self._extra_scratch) <= index:
            self._extra_scratch.append(np.empty_like(self._scratch))
        return self._extra_scratch[index][:z - a]

    def _mask_n(self, index, a, z):
        """The ``index``-th boolean scratch array, made as :meth:`_scratch_n` makes its arrays.
        Indices 0 and 1 belong to :meth:`_sign`."""
        while len(self._bool_scratch) <= index:
            self._bool_scratch.append(np.empty(self._scratch.size, bool))
        return self._bool_scratch[index][:z - a]

    def _sign(self, x, out, a, z):
        """torch's ``sign``: 1, -1 or 0 (NaN and -0.0 give 0) into ``out``, as ``(x > 0) - (x < 0)``
        (``np.sign`` gives NaN for NaN, and is many times slower on float data)."""
        positive, negative = self._mask_n(0, a, z), self._mask_n(1, a, z)
        np.greater(x, 0, out=positive)
        np.less(x, 0, out=negative)
        np.subtract(positive, negative, out=out, dtype=out.dtype)

    @staticmethod
    def _lerp(start, end, weight, s):
        """``start.lerp_(end, weight)`` in place, rounded as torch's CPU kernel rounds it:
        ``start + weight * (end - start)`` for ``|weight| < 0.5``, else
        ``end - (end - start) * (1 - weight)``; ``s`` is scratch of the same size."""
        np.subtract(end, start, out=s)
        if abs(weight) < 0.5:
            s *= weight
            start += s
        else:
            s *= 1.0 - weight
            np.subtract(end, s, out=start)


class NumpyBlockedPeer(NumpyPeer):
    """:class:`NumpyPeer` processing large arrays in 256 KiB chunks (L2-resident scratch)."""

    name = "numpy-blocked"
    label = "NumPy, cache-blocked"

    def __init__(self, case):
        super().__init__(case, chunk_bytes=256 * 1024)


# ----------------------------------------------------------------------------------------------
# torch.optim
# ----------------------------------------------------------------------------------------------

def _torch_class(info):
    import torch

    return getattr(torch.optim, info.torch_name, None)


def _torch_supports(info, flag):
    """Whether ``torch.optim.<torch_name>`` takes ``flag`` (``foreach``/``fused``)."""
    import inspect

    cls = _torch_class(info)
    return cls is not None and flag in inspect.signature(cls).parameters


class TorchPeer(Peer):
    """``torch.optim.<torch_name>`` of the registry entry, with the configuration's keyword
    arguments, on tensors that share memory with NumPy copies."""

    mode = None  # "forloop", "foreach" or "fused"

    def __init__(self, case):
        import torch

        info = case.config.info
        flag = {"forloop": "foreach", "foreach": "foreach", "fused": "fused"}[self.mode]
        if _torch_class(info) is None:
            raise Unsupported(f"torch.optim has no {info.torch_name}")
        if not _torch_supports(info, flag):
            raise Unsupported(f"torch.optim.{info.torch_name} has no {flag} implementation")
        self.params = case.param_copies()
        tensors = [torch.nn.Parameter(torch.from_numpy(p)) for p in self.params]
        for t, g in zip(tensors, case.writeable_grads):
            t.grad = torch.from_numpy(g)        # the same memory as every peer's gradient
        flags = {flag: self.mode != "forloop"}
        self.opt = _torch_class(info)(tensors, **case.config.kwargs, **flags)
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
        rule = cfg.info.peer_rule("optax")
        if rule is None:
            raise Unsupported(f"there is no optax peer for {cfg.info.name}")
        if cfg.group.get("maximize"):
            raise Unsupported("the optax peer does not model maximize=True")
        if case.dtype == np.float64 and not jax.config.jax_enable_x64:
            jax.config.update("jax_enable_x64", True)
        try:
            opt = rule(optax, cfg.group)
        except NotImplementedError as exc:  # a configuration the rule does not model
            raise Unsupported(str(exc)) from None
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
        return "fastoptim.Parameter is not available in this build"
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
