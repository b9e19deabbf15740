"""The fused training step of the elementwise optimizers (docs/fused.rst).

One pass over memory does what ``clip_grad_norm_``'s scaling, ``opt.step()`` and an EMA update
(``AveragedModel`` with ``get_ema_multi_avg_fn``) do in three: every kernel loads the gradient
once, scaled where the call asks for it (``(g / grad_scale) * grad_mul``), and updates the EMA
target from the new parameter in the same element loop (``fastoptim/_kernels/generate.py``,
``FUSED_*``). This module is the class side: what ``clip_grad_norm_(..., fused_with=opt)`` and
``AveragedModel(..., fused_with=opt)`` attach to an optimizer, and the per-group keyword arguments
of the kernel call that :meth:`Optimizer._update` adds. Results are bitwise those of the separate
calls.
"""
from fastoptim import _train_kernels
from fastoptim._kernels._plan import check_fused_arguments


class FusedEMA:
    """An :class:`~fastoptim.swa_utils.AveragedModel` updated by its optimizer's steps."""

    def __init__(self, model, sources, targets, weight):
        self.model = model
        self.sources = sources                                   # the optimizer's params
        self.targets = {id(s): t for s, t in zip(sources, targets)}
        self.weight = weight                                     # 1 - decay (the lerp weight)


class ArmedClip:
    """A clip coefficient waiting for the next step: ``grads`` maps id(param) -> the gradient array
    the coefficient was computed from."""

    def __init__(self, coef, grads):
        self.coef = coef
        self.grads = grads


def _param_ids(opt):
    return {id(p) for group in opt.param_groups for p in group["params"]}


def attach_ema(opt, model, sources, targets, weight):
    """Attach ``model`` (its averaged ``targets`` of the arrays ``sources``) to ``opt``."""
    if getattr(opt, "_info", None) is None or not hasattr(opt, "_update"):
        raise TypeError(f"fused_with must be an elementwise fastoptim optimizer (a class of "
                        f"fastoptim.optim.registry.OPTIMIZERS), got {type(opt).__name__}")
    if opt.__dict__.get("_fused_ema") is not None:
        raise ValueError(f"this {type(opt).__name__} already updates an AveragedModel in its steps; "
                         f"one EMA per optimizer")
    ids = _param_ids(opt)
    for i, s in enumerate(sources):
        if id(s) not in ids:
            raise ValueError(f"params[{i}] is not a parameter of the optimizer given as fused_with: "
                             f"the fused EMA is updated from the optimizer's parameters in its step, "
                             f"so every averaged array must be one of them (pass the optimizer's "
                             f"Parameter objects)")
    if len({id(s) for s in sources}) != len(sources):
        raise ValueError("params holds the same array twice; average each parameter once")
    opt._fused_ema = FusedEMA(model, list(sources), list(targets), weight)


def detach_ema(opt, model):
    ema = opt.__dict__.get("_fused_ema")
    if ema is not None and ema.model is model:
        opt._fused_ema = None


def arm_clip(opt, params, coef, scale):
    """Arm ``opt``'s next step with the clip coefficient for the gradients of ``params`` that it
    optimizes, and ``scale(grads, coef)`` the gradients of the others in memory (holding the
    optimizer's lock, as a step does). Nothing is armed or scaled if this raises."""
    if getattr(opt, "_info", None) is None or not hasattr(opt, "_update"):
        raise TypeError(f"fused_with must be an elementwise fastoptim optimizer (a class of "
                        f"fastoptim.optim.registry.OPTIMIZERS), got {type(opt).__name__}")
    with opt._lock:
        covered, rest = _covered(opt, params)
        if rest:
            scale(rest, coef)
        opt._armed_clip = ArmedClip(coef, covered)


def _covered(opt, params):
    if opt.__dict__.get("_armed_clip") is not None:
        raise RuntimeError("clip_grad_norm_(..., fused_with=opt) was already called since the last "
                           "opt.step(): the armed coefficient is applied by the next step (call "
                           "opt.step() or opt.zero_grad() first)")
    with_grad = {id(p): p for p in params if getattr(p, "grad", None) is not None}
    covered, seen_grads = {}, set()
    for group_index, group in enumerate(opt.param_groups):
        inside = [p for p in group["params"] if p.grad is not None and id(p) in with_grad]
        outside = [p for p in group["params"] if p.grad is not None and id(p) not in with_grad]
        if inside and outside:
            raise ValueError(
                f"clip_grad_norm_(..., fused_with=opt): parameters is missing some of param group "
                f"{group_index}'s parameters that have a gradient; one kernel call scales a whole "
                f"group, so clip all of them or none (or call it without fused_with)")
        for p in inside:
            if id(p.grad) in seen_grads:
                raise ValueError("clip_grad_norm_(..., fused_with=opt): two parameters share one "
                                 "gradient array; call it without fused_with")
            seen_grads.add(id(p.grad))
            covered[id(p)] = p.grad
    rest = [p.grad for p in params if getattr(p, "grad", None) is not None and id(p) not in covered]
    return covered, rest


class FusedStep:
    """What one step adds to its kernel calls (``kwargs``) and does after them (``finish``)."""

    def __init__(self, opt, grad_scale, found_inf):
        self.skip = check_fused_arguments(grad_scale, found_inf)[1]   # errors before anything changes
        self.base = {}
        if grad_scale is not None:
            self.base["grad_scale"] = grad_scale
        if found_inf is not None:
            self.base["found_inf"] = found_inf
        self.clip = opt.__dict__.get("_armed_clip")
        if self.clip is not None and grad_scale is not None:
            raise ValueError("step(grad_scale=...) after clip_grad_norm_(..., fused_with=opt): the "
                             "norm was taken of the scaled gradients; unscale the gradients first "
                             "(divide them in memory) or clip without fused_with; nothing was updated")
        self.ema = opt.__dict__.get("_fused_ema")
        if self.ema is not None:
            ids = _param_ids(opt)
            for i, s in enumerate(self.ema.sources):
                if id(s) not in ids:
                    raise ValueError(f"the fused AveragedModel's array {i} is no longer a parameter "
                                     f"of this optimizer; nothing was updated")
        # the first EMA update copies (AveragedModel), after the step; a skipped step moves no
        # parameter, so its EMA update is the separate lerp of the unchanged ones
        self.in_kernel = self.ema is not None and self.ema.model.n_averaged > 0 and not self.skip
        self.updated = set()

    def kwargs(self, group_index, params, grads):
        out = dict(self.base)
        if self.clip is not None:
            armed = [id(p) in self.clip.grads for p in params]
            if any(armed):
                for i, p in enumerate(params):
                    if not armed[i] or self.clip.grads[id(p)] is not grads[i]:
                        raise RuntimeError(
                            f"param {i} of param group {group_index} has a gradient that "
                            f"clip_grad_norm_(..., fused_with=opt) did not see (it was replaced "
                            f"or added after clipping); nothing was updated")
                out["grad_mul"] = self.clip.coef
        if self.in_kernel:
            targets = self.ema.targets
            ema = [targets.get(id(p)) for p in params]
            if any(e is not None for e in ema):
                out["ema"] = ema
                out["ema_weight"] = self.ema.weight
        return out

    def done(self, params):
        """The kernel call of these params ran (and updated their EMA targets if it had them)."""
        if self.in_kernel:
            targets = self.ema.targets
            self.updated.update(id(p) for p in params if id(p) in targets)

    def finish(self, opt):
        """After every group: the EMA targets the kernels did not update, then the bookkeeping."""
        opt._armed_clip = None
        ema = self.ema
        if ema is None:
            return
        model = ema.model
        todo = [(t, s) for s, t in zip(ema.sources, (ema.targets[id(s)] for s in ema.sources))
                if id(s) not in self.updated]
        if todo:
            if model.n_averaged == 0:
                for t, s in todo:
                    t[...] = s
            else:
                _train_kernels.lerp([t for t, _ in todo], [s for _, s in todo], ema.weight, ema.weight)
        model.n_averaged += 1
