"""The optimizer kernels as data: one :class:`KernelSpec` per elementwise optimizer.

Pure data (standard library only): setup.py reads it at build time, before anything is compiled, to
generate the kernels from ``kernels.pyx.tp`` (see ``generate.py``), and the optimizer registry
reads the per-parameter facts (state keys, which are optional, thread cost) from here instead of
restating them.

How one entry becomes code (``kernels.pyx.tp``):

* ``def <name>(params, grads, <lists...>, [state_steps,] *, <arguments>, check_overlap=True)`` is
  the entry point. It validates every array (``fastoptim/_kernels/_plan.pyx``: dtype, shape,
  contiguity, writeability, list lengths, steps, memory overlap) before touching any, computes the
  per-array scalars in double, calls the driver for the float32 and for the float64 arrays without
  the GIL, then stores new buffers and step counts.
* ``consts`` are cast once per call to the arrays' dtype (``floating``: the expression is written
  for both float and double; ``<floating>`` in it names the dtype being built). ``switches`` are C
  ints computed per call and dtype; ``flags`` are computed per segment from the switches and the
  segment ``seg`` (a ``Segment*``), and each combination of flag values gets its own specialised,
  vectorised copy of the element loop (``only_if``: the flag is pinned to its first value where the
  condition over the other flags is false, so no useless copy is compiled).
* ``per_array`` scalars are computed in double (C ``pow`` = CPython's ``**``), in order, per array
  from its new ``step`` (and anything the entry point's arguments hold for array ``i``), cached
  while consecutive arrays have the same step unless ``per_array_cache`` is false; the loop
  receives them cast to the dtype (names starting with ``_`` are temporaries, not passed). They
  may read 0-d scalar-state arrays of ``extra_lists`` with ``scalar_state`` (which validates
  them); ``finish`` then stores the new values with ``set_scalar_state`` after the kernels ran.
* ``body`` is the element loop body over index ``i``: the param ``p[i]``, the gradient ``g[i]``, each
  buffer under its ``pointers`` name, the consts, the per-array scalars and the flags (compile-time
  constants in each specialised copy). ``locals`` are declared ``floating``. Rounding is torch
  2.13's CPU single-tensor path op by op: ``_fma`` exactly where torch fuses, every other operation
  separately rounded in the dtype (the build uses ``-ffp-contract=off``).
* Low precision (docs/low_precision.rst) needs nothing here: ``generate.py`` rewrites the body's
  buffer reads and stores into widening loads and rounding stores (bfloat16/float16 state, float32
  math) and its param store into the float32 master plus the float16/bfloat16 param. A body must
  read each buffer only before storing it (every body does).
"""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Flag:
    """A compile-time specialisation of the element loop."""

    name: str
    values: tuple          # every value it can take; the loop is specialised for each
    expr: str = ""         # C expression (switches, ``seg``) evaluated per segment; default: the switch of that name
    only_if: str = ""      # Python condition over the other flags; where false the flag is pinned to values[0]


@dataclass(frozen=True)
class KernelSpec:
    name: str
    title: str                         # the optimizer(s) it steps, for the entry point's docstring
    state: tuple                       # ((torch's state key, list argument, name in the body), ...)
                                       # of each per-parameter state array, in kernel argument order
    work_per_element: int              # thread cost of one element, in SGD elements
    arguments: str                     # keyword-only arguments of the entry point (Cython)
    consts: tuple                      # ((name, expression), ...) cast once per call to the dtype
    switches: tuple                    # ((name, C int expression), ...) per call and dtype
    flags: tuple                       # Flag, ... (order of the specialisation tree)
    locals: str                        # floating locals of the element loop
    body: str                          # the element loop body (Cython), index ``i``
    notes: str = ""                    # the rest of the entry point's docstring (see ``doc``)
    optional: dict = field(default_factory=dict)   # {buffer key: group option that enables it}
    when: dict = field(default_factory=dict)       # {buffer key: C condition over the arguments under which it is used}
    per_array: tuple = ()              # ((name, double expression of step, i and arguments), ...)
    per_array_cache: bool = True       # per_array depends on the step only (else computed per array)
    finish: str = ""                   # code run per array ``i`` after the kernels (scalar state updates)
    steps: bool = False                # takes ``state_steps`` (counts before the step; incremented in place)
    lazy: tuple = ()                   # buffers whose ``None`` entries get a new array filled by this step
    extra_lists: tuple = ()            # further list arguments (before state_steps), read by per_array
    scalar_keys: tuple = ()            # torch's state keys of the extra lists (0-d scalar state; list
                                       # "<key>s"), in the order torch creates them
    max_buffers: int = field(default=4, repr=False)

    def __post_init__(self):
        n = len(self.state)
        if sorted(self.extra_keys) != sorted(self.scalar_keys):
            raise ValueError(f"{self.name}: one scalar_keys entry per extra list (list '<key>s')")
        if any(len(entry) != 3 for entry in self.state) or n > self.max_buffers:
            raise ValueError(f"{self.name}: state holds (key, list, pointer) triples (at most {self.max_buffers})")
        if len([name for name, _ in self.per_array if not name.startswith("_")]) > 4:
            raise ValueError(f"{self.name}: at most 4 stored per-array scalars (Segment.s)")

    @property
    def buffers(self):
        """torch's per-parameter state-array keys, in kernel argument order."""
        return tuple(key for key, _, _ in self.state)

    @property
    def lists(self):
        """The entry point's argument name of each buffer's list."""
        return tuple(name for _, name, _ in self.state)

    @property
    def pointers(self):
        """Each buffer's name in the element body."""
        return tuple(name for _, _, name in self.state)

    @property
    def doc(self):
        """The entry point's docstring (generate.py adds what every entry shares)."""
        return (f"{self.title} step over all arrays in one compiled call (see "
                f"``fastoptim.functional.{self.name}``).{self.notes}")

    @property
    def extra_keys(self):
        """The state key of each extra list, in the kernel's argument order."""
        return tuple(name[:-1] for name in self.extra_lists)


_SIGN = ("sign", "-1.0 if maximize else 1.0")   # maximize: the gradient negated exactly


SGD = KernelSpec(
    name="sgd", title="SGD", work_per_element=1,
    state=(("momentum_buffer", "momentum_buffer_list", "buf"),),
    optional={"momentum_buffer": "momentum"},
    when={"momentum_buffer": "momentum != 0.0"},
    lazy=("momentum_buffer",),
    arguments="double lr, double weight_decay, double momentum, double dampening, bint nesterov, "
              "bint maximize",
    consts=(_SIGN, ("neg_lr", "-lr"), ("wd", "weight_decay"), ("momentum", "momentum"),
            ("one_minus_dampening", "1.0 - dampening")),
    switches=(
        ("has_wd", "weight_decay != 0.0"),
        ("use_momentum", "momentum != 0.0"),
        ("nesterov", "nesterov"),
    ),
    flags=(
        Flag("has_wd", (True, False)),
        # 0: no momentum, 1: first momentum step (the buffer was created by this call), 2: later steps
        Flag("mode", (0, 1, 2), "(1 if seg.fresh & 1 else 2) if use_momentum else 0"),
        Flag("nesterov", (False, True), only_if="mode != 0"),
    ),
    locals="d, b = 0",
    body="""\
d = g[i] * sign                                   # maximize: sign = -1 (exact negation)
if has_wd:
    d = _fma(p[i], wd, d)                         # grad.add(param, alpha=wd)
if mode == 1:
    b = d                                         # buf = grad.clone(): no dampening
    buf[i] = b
elif mode == 2:
    b = _fma(d, one_minus_dampening, buf[i] * momentum)   # buf.mul_(m).add_(grad, alpha=1-damp)
    buf[i] = b
if mode != 0:
    if nesterov:
        d = _fma(b, momentum, d)                  # grad.add(buf, alpha=momentum)
    else:
        d = b
p[i] = _fma(d, neg_lr, p[i])                      # param.add_(grad, alpha=-lr)
""",
    notes="""

    ``momentum_buffer_list`` entries that are ``None`` get a new buffer (stored into the list)
    holding the first momentum step.""",
)


# The Adam family's first half (Adam, RAdam, NAdam): gradient, L2 or decoupled weight decay,
# both moments. Consts sign, wd, decay, w, w_minus_1, beta2, one_minus_beta2; flags wd_mode, small_w.
_ADAM_MOMENTS = """\
d = g[i] * sign                                   # maximize: sign = -1 (exact negation)
x = p[i]
if wd_mode == 1:
    d = _fma(x, wd, d)                            # grad.add(param, alpha=wd)
elif wd_mode == 2:
    x = x * decay                                 # param.mul_(1 - lr*wd)
# exp_avg.lerp_(grad, 1 - beta1), ATen's two-sided lerp
if small_w:
    mi = _fma(w, d - m[i], m[i])
else:
    mi = _fma(w_minus_1, d - m[i], d)
m[i] = mi
vi = _fma(one_minus_beta2 * d, d, v[i] * beta2)   # exp_avg_sq.mul_(b2).addcmul_(g, g, 1-b2)
v[i] = vi
"""
_ADAM_WD_MODE = ("wd_mode", "0 if weight_decay == 0.0 else (2 if decoupled_weight_decay else 1)")


ADAM = KernelSpec(
    # an Adam element does two divisions and a square root: a second thread pays off on half as
    # many elements as for SGD (docs/threads.rst)
    name="adam", title="Adam/AdamW", work_per_element=2, steps=True,
    state=(("exp_avg", "exp_avgs", "m"), ("exp_avg_sq", "exp_avg_sqs", "v"),
           ("max_exp_avg_sq", "max_exp_avg_sqs", "vmax")),
    optional={"max_exp_avg_sq": "amsgrad"},
    when={"max_exp_avg_sq": "amsgrad"},
    arguments="bint amsgrad, double beta1, double beta2, double lr, double weight_decay, double eps, "
              "bint maximize, bint decoupled_weight_decay=False",
    consts=(
        _SIGN,
        ("eps", "eps"),
        ("wd", "weight_decay"),
        ("decay", "1.0 - lr * weight_decay"),
        ("w", "1.0 - beta1"),
        ("w_minus_1", "<floating>(1.0 - beta1) - 1"),     # computed in the dtype from the cast w
        ("beta2", "beta2"),
        ("one_minus_beta2", "1.0 - beta2"),
    ),
    switches=(
        # 0: no weight decay, 1: L2 (Adam), 2: decoupled (AdamW)
        _ADAM_WD_MODE,
        ("small_w", "fabs(<floating>(1.0 - beta1)) < 0.5"),
        ("amsgrad", "amsgrad"),
    ),
    flags=(
        Flag("amsgrad", (True, False)),
        Flag("small_w", (True, False)),
        Flag("wd_mode", (0, 1, 2)),
    ),
    per_array=(
        # torch: bias_correction1 = 1 - beta1 ** step; step_size = lr / bias_correction1;
        # bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5, all Python doubles, libm pow.
        ("neg_step_size", "-(lr / (1.0 - pow(beta1, <double>step)))"),
        ("bc2_sqrt", "pow(1.0 - pow(beta2, <double>step), 0.5)"),
    ),
    locals="d, x, mi, vi, vm, s",
    body=_ADAM_MOMENTS + """\
if amsgrad:
    vm = vmax[i]
    # torch.maximum(max_exp_avg_sq, exp_avg_sq): NaN-propagating, as two selects (they vectorise;
    # the short-circuit ``or`` did not)
    s = vm if vm > vi else vi
    vm = vm if vm != vm else s
    vmax[i] = vm
    s = _sqrt(vm)
else:
    s = _sqrt(vi)
s = s / bc2_sqrt + eps                            # (v.sqrt() / bc2_sqrt).add_(eps)
p[i] = x + (neg_step_size * mi) / s               # param.addcdiv_(exp_avg, denom, -step_size)
""",
)


# The lerp of torch's ``exp_avg.lerp_(grad, weight)`` with a scalar weight (ATen's two-sided formula,
# exact at both ends): consts ``w`` (the weight in the dtype) and ``w_minus_1``, flag ``small_w``.
def _lerp_consts(weight):
    return (("w", weight), ("w_minus_1", f"<floating>({weight}) - 1"))


def _lerp_switch(weight):
    return ("small_w", f"fabs(<floating>({weight})) < 0.5")


# The gradient of a body that starts with _GRAD: negated for maximize, plus L2 weight decay.
_GRAD = """\
d = g[i] * sign                                   # grad = -grad if maximize (exact negation)
if has_wd:
    d = _fma(p[i], wd, d)                         # grad.add(param, alpha=wd)
"""


def _l2_grad(consts=(), switches=(), flags=()):
    """The ``consts``, ``switches`` and ``flags`` of a body that starts with ``_GRAD`` (its sign,
    ``wd`` and the ``has_wd`` specialisation first), followed by the body's own."""
    return {"consts": (_SIGN, ("wd", "weight_decay")) + consts,
            "switches": (("has_wd", "weight_decay != 0.0"),) + switches,
            "flags": (Flag("has_wd", (True, False)),) + flags}


RMSPROP = KernelSpec(
    name="rmsprop", title="RMSprop", work_per_element=2, steps=True,
    state=(("square_avg", "square_avgs", "sq"), ("grad_avg", "grad_avgs", "ga"),
           ("momentum_buffer", "momentum_buffer_list", "buf")),
    optional={"grad_avg": "centered", "momentum_buffer": "momentum"},
    when={"grad_avg": "centered", "momentum_buffer": "momentum > 0.0"},
    arguments="double lr, double alpha, double eps, double weight_decay, double momentum, bint centered, "
              "bint maximize=False",
    **_l2_grad(
        consts=(("alpha", "alpha"), ("one_minus_alpha", "1.0 - alpha")) + _lerp_consts("1.0 - alpha")
        + (("eps", "eps"), ("momentum", "momentum"), ("neg_lr", "-lr")),
        switches=(("centered", "centered"), _lerp_switch("1.0 - alpha"), ("use_momentum", "momentum > 0.0")),
        flags=(Flag("centered", (True, False)), Flag("small_w", (True, False), only_if="centered"),
               Flag("use_momentum", (True, False)))),
    locals="d, sa, ma, av, b",
    body=_GRAD + """\
sa = _fma(one_minus_alpha * d, d, sq[i] * alpha)  # square_avg.mul_(alpha).addcmul_(grad, grad, 1-alpha)
sq[i] = sa
if centered:
    if small_w:                                   # grad_avg.lerp_(grad, 1 - alpha)
        ma = _fma(w, d - ga[i], ga[i])
    else:
        ma = _fma(w_minus_1, d - ga[i], d)
    ga[i] = ma
    av = _sqrt(_fma(-ma, ma, sa))                 # square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
else:
    av = _sqrt(sa)                                # square_avg.sqrt()
av = av + eps                                     # avg.add_(eps)
if use_momentum:
    b = buf[i] * momentum + d / av                # buf.mul_(momentum).addcdiv_(grad, avg)
    buf[i] = b
    p[i] = _fma(b, neg_lr, p[i])                  # param.add_(buf, alpha=-lr)
else:
    p[i] = p[i] + (neg_lr * d) / av               # param.addcdiv_(grad, avg, value=-lr)
""",
    notes="""

    ``grad_avgs`` is used when ``centered``, ``momentum_buffer_list`` when ``momentum > 0``.""",
)



ADAGRAD = KernelSpec(
    name="adagrad", title="Adagrad", work_per_element=2, steps=True,
    state=(("sum", "state_sums", "ss"),),
    arguments="double lr, double weight_decay, double lr_decay, double eps, bint maximize=False",
    **_l2_grad(consts=(("eps", "eps"),)),
    # torch: clr = lr / (1 + (step - 1) * lr_decay), a Python float
    per_array=(("neg_clr", "-(lr / (1.0 + (<double>step - 1.0) * lr_decay))"),),
    locals="d, s",
    body=_GRAD + """\
s = _fma(d, d, ss[i])                             # state_sum.addcmul_(grad, grad, value=1)
ss[i] = s
s = _sqrt(s) + eps                                # std = state_sum.sqrt().add_(eps)
p[i] = p[i] + (neg_clr * d) / s                   # param.addcdiv_(grad, std, value=-clr)
""",
)


ADADELTA = KernelSpec(
    name="adadelta", title="Adadelta", work_per_element=3, steps=True,
    state=(("square_avg", "square_avgs", "sq"), ("acc_delta", "acc_deltas", "ad")),
    arguments="double lr, double rho, double eps, double weight_decay, bint maximize=False",
    **_l2_grad(consts=(("rho", "rho"), ("one_minus_rho", "1.0 - rho"), ("eps", "eps"), ("neg_lr", "-lr"))),
    locals="d, sa, std, de",
    body=_GRAD + """\
sa = _fma(one_minus_rho * d, d, sq[i] * rho)      # square_avg.mul_(rho).addcmul_(grad, grad, 1-rho)
sq[i] = sa
std = _sqrt(sa + eps)                             # square_avg.add(eps).sqrt_()
de = _sqrt(ad[i] + eps)                           # delta = acc_delta.add(eps).sqrt_()
de = (de / std) * d                               # delta.div_(std).mul_(grad)
ad[i] = _fma(one_minus_rho * de, de, ad[i] * rho) # acc_delta.mul_(rho).addcmul_(delta, delta, 1-rho)
p[i] = _fma(de, neg_lr, p[i])                     # param.add_(delta, alpha=-lr)
""",
)


ADAMAX = KernelSpec(
    name="adamax", title="Adamax", work_per_element=2, steps=True,
    state=(("exp_avg", "exp_avgs", "m"), ("exp_inf", "exp_infs", "u")),
    arguments="double eps, double beta1, double beta2, double lr, double weight_decay, bint maximize=False",
    **_l2_grad(consts=_lerp_consts("1.0 - beta1") + (("beta2", "beta2"), ("eps", "eps")),
               switches=(_lerp_switch("1.0 - beta1"),), flags=(Flag("small_w", (True, False)),)),
    # torch: clr = lr / (1 - beta1 ** step), Python floats
    per_array=(("neg_clr", "-(lr / (1.0 - pow(beta1, <double>step)))"),),
    locals="d, mi, ui, e",
    body=_GRAD + """\
if small_w:                                       # exp_avg.lerp_(grad, 1 - beta1)
    mi = _fma(w, d - m[i], m[i])
else:
    mi = _fma(w_minus_1, d - m[i], d)
m[i] = mi
ui = u[i] * beta2                                 # exp_inf.mul_(beta2)
e = _abs(d) + eps                                 # grad.abs().add_(eps)
# torch.maximum(exp_inf, ..., out=exp_inf): NaN-propagating, as two selects (they vectorise)
e = ui if ui > e else e
ui = ui if ui != ui else e
u[i] = ui
p[i] = p[i] + (neg_clr * mi) / ui                 # param.addcdiv_(exp_avg, exp_inf, value=-clr)
""",
)


RPROP = KernelSpec(
    name="rprop", title="Rprop", work_per_element=1, steps=True,
    state=(("prev", "prevs", "prev"), ("step_size", "step_sizes", "ss")),
    arguments="double step_size_min, double step_size_max, double etaminus, double etaplus, "
              "bint maximize=False",
    consts=(_SIGN, ("etaplus", "etaplus"), ("etaminus", "etaminus"), ("lo", "step_size_min"),
            ("hi", "step_size_max")),
    switches=(),
    flags=(),
    locals="d, x, f, s, sg",
    body="""\
d = g[i] * sign                                   # grad = -grad if maximize (exact negation)
x = d * prev[i]                                   # grad.mul(prev).sign(), then
if x > 0:
    f = etaplus                                   # sign[sign.gt(0)] = etaplus
elif x < 0:
    f = etaminus                                  # sign[sign.lt(0)] = etaminus
else:
    f = 1                                         # sign[sign.eq(0)] = 1 (torch.sign(nan) is 0)
s = ss[i] * f                                     # step_size.mul_(sign)
if s == s:                                        # .clamp_(min, max) as ATen's vector path: NaN stays
    s = s if s > lo else lo
    s = s if s < hi else hi
ss[i] = s
if f == etaminus:
    d = 0                                         # grad[sign.eq(etaminus)] = 0
sg = <floating>((d > 0) - (d < 0))                # grad.sign() (0 for 0 and NaN)
p[i] = _fma(-sg, s, p[i])                         # param.addcmul_(grad.sign(), step_size, value=-1)
prev[i] = d                                       # prev.copy_(grad)
""",
)


LION = KernelSpec(
    name="lion", title="Lion", work_per_element=1,
    state=(("exp_avg", "exp_avgs", "m"),),
    arguments="double lr, double beta1, double beta2, double weight_decay, bint maximize=False",
    consts=(_SIGN, ("decay", "1.0 - lr * weight_decay"), ("beta1", "beta1"), ("one_minus_beta1", "1.0 - beta1"),
            ("beta2", "beta2"), ("one_minus_beta2", "1.0 - beta2"), ("neg_lr", "-lr")),
    switches=(("has_wd", "weight_decay != 0.0"),),
    flags=(Flag("has_wd", (True, False)),),
    locals="d, x, c, sg",
    # Not in torch: written as the reference implementation (lucidrains/lion-pytorch) in torch ops.
    body="""\
d = g[i] * sign                                   # grad = -grad if maximize (exact negation)
x = p[i]
if has_wd:
    x = x * decay                                 # param.mul_(1 - lr*wd)
c = _fma(d, one_minus_beta1, m[i] * beta1)        # update = exp_avg.mul(beta1).add(grad, alpha=1-beta1)
sg = <floating>((c > 0) - (c < 0))                # update.sign_() (sign(0) = 0)
p[i] = _fma(sg, neg_lr, x)                        # param.add_(update, alpha=-lr)
m[i] = _fma(d, one_minus_beta2, m[i] * beta2)     # exp_avg.mul_(beta2).add_(grad, alpha=1-beta2)
""",
)


_RHO_INF = "(2.0 / (1.0 - beta2) - 1.0)"

RADAM = KernelSpec(
    name="radam", title="RAdam", work_per_element=2, steps=True,
    state=(("exp_avg", "exp_avgs", "m"), ("exp_avg_sq", "exp_avg_sqs", "v")),
    arguments="double beta1, double beta2, double lr, double weight_decay, double eps, "
              "bint decoupled_weight_decay=False, bint maximize=False",
    consts=(_SIGN, ("wd", "weight_decay"), ("decay", "1.0 - lr * weight_decay")) + _lerp_consts("1.0 - beta1")
    + (("beta2", "beta2"), ("one_minus_beta2", "1.0 - beta2"), ("eps", "eps"), ("lr", "lr")),
    switches=(_ADAM_WD_MODE, _lerp_switch("1.0 - beta1")),
    flags=(Flag("wd_mode", (0, 1, 2)), Flag("small_w", (True, False)),
           # torch: the rectified update when rho_t > 5, else the un-adapted one (per array: its step)
           Flag("rectify", (True, False), "seg.s[2] > 5.0")),
    # torch, in Python floats: bias_correction1 = 1 - beta1**step; bias_correction2 = 1 - beta2**step;
    # rho_inf = 2 / (1 - beta2) - 1; rho_t = rho_inf - 2 * step * (beta2**step) / bias_correction2;
    # rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
    per_array=(
        ("bc1", "1.0 - pow(beta1, <double>step)"),
        ("bc2_sqrt", "pow(1.0 - pow(beta2, <double>step), 0.5)"),
        ("rho_t", f"{_RHO_INF} - 2.0 * <double>step * pow(beta2, <double>step) / (1.0 - pow(beta2, <double>step))"),
        ("rect", f"pow((rho_t - 4.0) * (rho_t - 2.0) * {_RHO_INF} / "
                 f"(({_RHO_INF} - 4.0) * ({_RHO_INF} - 2.0) * rho_t), 0.5)"),
    ),
    locals="d, x, mi, vi, u",
    body=_ADAM_MOMENTS + """\
u = (mi / bc1) * lr                               # bias_corrected_exp_avg = exp_avg / bc1; (...) * lr
if rectify:
    # adaptive_lr = bc2**0.5 / exp_avg_sq.sqrt().add_(eps), a Tensor.__rtruediv__: reciprocal() * bc2**0.5
    u = (u * ((<floating>1 / (_sqrt(vi) + eps)) * bc2_sqrt)) * rect
p[i] = x - u                                      # param.add_(..., alpha=-1.0)
""",
)


NADAM = KernelSpec(
    name="nadam", title="NAdam", work_per_element=2, steps=True,
    state=(("exp_avg", "exp_avgs", "m"), ("exp_avg_sq", "exp_avg_sqs", "v")),
    extra_lists=("mu_products",),
    scalar_keys=("mu_product",),
    arguments="double beta1, double beta2, double lr, double weight_decay, double momentum_decay, "
              "double eps, bint decoupled_weight_decay=False, bint maximize=False",
    consts=(_SIGN, ("wd", "weight_decay"), ("decay", "1.0 - lr * weight_decay")) + _lerp_consts("1.0 - beta1")
    + (("beta2", "beta2"), ("one_minus_beta2", "1.0 - beta2"), ("eps", "eps")),
    switches=(_ADAM_WD_MODE, _lerp_switch("1.0 - beta1")),
    flags=(Flag("wd_mode", (0, 1, 2)), Flag("small_w", (True, False))),
    # torch, in Python floats: mu = beta1 * (1 - 0.5 * 0.96 ** (step * momentum_decay)); mu_next the
    # same at step + 1; mu_product *= mu (a 0-d tensor: rounded to its dtype, float32 by default);
    # the two addcdiv values -lr * (1 - mu) / (1 - mu_product) and
    # (-lr * mu_next) / (1 - mu_product * mu_next); bias_correction2 = 1 - beta2 ** step.
    # mu_product differs per array (not cached); the three pow() of the step only are recomputed
    # only when the step differs from the previous array's (``_last``: that step; steps are >= 1)
    per_array=(
        ("_mu", "_mu if <double>step == _last else beta1 * (1.0 - 0.5 * pow(0.96, <double>step * momentum_decay))"),
        ("_mu_next", "_mu_next if <double>step == _last else "
                     "beta1 * (1.0 - 0.5 * pow(0.96, (<double>step + 1.0) * momentum_decay))"),
        ("_mu_product", "scalar_state(mu_products, i, 'mu_products')"),   # checks the array first
        # a product of two float32 values is exact in double: rounding it once is float32's product
        ("mu_product", "round_to(mu_products[i], _mu_product * round_to(mu_products[i], _mu))"),
        ("bc2", "bc2 if <double>step == _last else 1.0 - pow(beta2, <double>step)"),
        ("neg_a", "-lr * (1.0 - _mu) / (1.0 - mu_product)"),
        ("neg_b", "(-lr * _mu_next) / (1.0 - mu_product * _mu_next)"),
        ("_last", "<double>step"),
    ),
    per_array_cache=False,
    finish="set_scalar_state(mu_products[i], mu_product)\n",
    locals="d, x, mi, vi, den",
    body=_ADAM_MOMENTS + """\
den = _sqrt(vi / bc2) + eps                       # exp_avg_sq.div(bias_correction2).sqrt(); add_(eps)
x = x + (neg_a * d) / den                         # param.addcdiv_(grad, denom, value=neg_a)
p[i] = x + (neg_b * mi) / den                     # param.addcdiv_(exp_avg, denom, value=neg_b)
""",
    notes="""

    ``mu_products`` holds 0-d float arrays (torch's 0-d tensors), updated in place.""",
)


ASGD = KernelSpec(
    name="asgd", title="ASGD", work_per_element=1, steps=True,
    state=(("ax", "axs", "ax"),),
    extra_lists=("mus", "etas"),
    scalar_keys=("eta", "mu"),
    arguments="double lambd, double lr, double t0, double alpha, double weight_decay, bint maximize=False",
    # torch: ax.copy_(param) when mu is exactly 1, else ax.add_(param.sub(ax).mul_(mu))
    **_l2_grad(flags=(Flag("mu_one", (True, False), "seg.s[2] == 1.0"),)),
    # eta and mu are the 0-d tensors of the previous step (torch reads them before updating them)
    per_array=(
        ("_eta", "scalar_state(etas, i, 'etas')"),
        ("decay", "1.0 - lambd * _eta"),
        ("neg_eta", "-_eta"),
        ("mu", "scalar_state(mus, i, 'mus')"),
    ),
    per_array_cache=False,
    # torch, in Python floats, stored into the 0-d tensors: eta = lr / ((1 + lambd * lr * step) ** alpha);
    # mu = 1 / max(1, step - t0)
    finish="""\
set_scalar_state(etas[i], lr / pow(1.0 + lambd * lr * <double>step, alpha))
set_scalar_state(mus[i], 1.0 / (<double>step - t0 if <double>step - t0 > 1.0 else 1.0))
""",
    locals="d, x",
    body=_GRAD + """\
x = p[i] * decay                                  # param.mul_(1 - lambd * eta)
x = _fma(d, neg_eta, x)                           # param.add_(grad, alpha=-eta)
p[i] = x
if mu_one:
    ax[i] = x                                     # ax.copy_(param)
else:
    ax[i] = ax[i] + (x - ax[i]) * mu              # ax.add_(param.sub(ax).mul_(mu))
""",
    notes="""

    ``mus`` and ``etas`` hold 0-d float arrays (torch's 0-d tensors), updated in place.""",
)


KERNELS = {spec.name: spec for spec in (SGD, ADAM, RMSPROP, ADAGRAD, ADADELTA, ADAMAX, RPROP, LION, RADAM, NADAM, ASGD)}
