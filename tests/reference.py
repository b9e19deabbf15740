"""A plain NumPy model of torch 2.13's CPU optimizer arithmetic, op by op.

Used by the tests as the bitwise oracle for the compiled kernels (and, with torch's own sqrt
plugged in, it reproduces torch bit for bit, which shows that the kernels differ from torch only
through torch's not-correctly-rounded sqrt).

NumPy has no fused multiply-add, so :func:`fma` computes a correctly rounded ``a*b + c`` from
error-free transformations:

* float32: the product of two float32 is exact in float64; the sum is computed in float64 with
  *round-to-odd*, which makes the final rounding to float32 correct (53 >= 24 + 2 bits).
* float64: Boldo & Melquiond, "Emulation of FMA and correctly rounded sums: proved algorithms
  using rounding to odd" (IEEE TC 2008): ``(uh, ul) = a*b`` exactly (Veltkamp/Dekker),
  ``(th, tl) = TwoSum(c, uh)``, ``v = RO(tl + ul)``, ``fma = RN(th + v)``.

Both are exact for the normal-range values the tests use (no overflow, no underflow into
subnormals in the intermediate products).
"""
import numpy as np

_SPLIT = np.float64(134217729.0)  # 2**27 + 1


def _two_sum(a, b):
    s = a + b
    bb = s - a
    err = (a - (s - bb)) + (b - bb)
    return s, err


def _two_prod(a, b):
    p = a * b
    t = _SPLIT * a
    ah = t - (t - a)
    al = a - ah
    t = _SPLIT * b
    bh = t - (t - b)
    bl = b - bh
    err = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, err


def _add_round_to_odd(a, b):
    """a + b in float64 rounded to odd: exact, or the neighbour whose last mantissa bit is 1."""
    s, err = _two_sum(a, b)
    bits = s.view(np.int64)
    even = (bits & 1) == 0
    fix = (err != 0) & even & np.isfinite(s)
    if np.any(fix):
        toward = np.where(err > 0, np.inf, -np.inf)
        s = np.where(fix, np.nextafter(s, toward), s)
    return s


def fma(a, b, c):
    """Correctly rounded ``a*b + c`` elementwise, in the dtype of the (common) inputs."""
    a, b, c = np.broadcast_arrays(np.asarray(a), np.asarray(b), np.asarray(c))
    dtype = np.result_type(a, b, c)
    if dtype == np.float32:
        with np.errstate(over="ignore", invalid="ignore"):
            p = a.astype(np.float64) * b.astype(np.float64)  # exact
            s = _add_round_to_odd(p, c.astype(np.float64))
            return s.astype(np.float32)
    if dtype == np.float64:
        with np.errstate(over="ignore", invalid="ignore"):
            uh, ul = _two_prod(a, b)
            th, tl = _two_sum(c, uh)
            v = _add_round_to_odd(tl, ul)
            out = th + v
            # Where the product or the sum is not finite the EFTs are meaningless, and the plain
            # expression gives the IEEE result (inf/nan propagate the same way).
            plain = a * b + c
        return np.where(np.isfinite(out) & np.isfinite(plain), out, plain)
    raise TypeError(f"fma: unsupported dtype {dtype}")


def sgd_step(param, grad, buf, *, lr, weight_decay, momentum, dampening, nesterov, maximize):
    """torch's ``_single_tensor_sgd`` for one array; returns (new_param, new_buf)."""
    T = param.dtype.type
    g = -grad if maximize else grad.copy()
    if weight_decay != 0:
        g = fma(param, T(weight_decay), g)
    if momentum != 0:
        if buf is None:
            buf = g.copy()
        else:
            buf = fma(g, T(1 - dampening), buf * T(momentum))
        g = fma(buf, T(momentum), g) if nesterov else buf
    return fma(g, T(-lr), param), buf


def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, *, lr, beta1, beta2, eps,
              weight_decay, amsgrad, maximize, decoupled_weight_decay, sqrt=np.sqrt):
    """torch's ``_single_tensor_adam`` for one array (``step`` is the count before this step).

    Returns ``(param, exp_avg, exp_avg_sq, max_exp_avg_sq, step)``, all new objects.
    """
    T = param.dtype.type
    step = step + 1
    g = -grad if maximize else grad.copy()
    param = param.copy()
    if weight_decay != 0:
        if decoupled_weight_decay:
            param = param * T(1 - lr * weight_decay)
        else:
            g = fma(param, T(weight_decay), g)
    w = T(1 - beta1)
    if abs(w) < 0.5:
        exp_avg = fma(w, g - exp_avg, exp_avg)
    else:
        exp_avg = fma(w - T(1), g - exp_avg, g)
    exp_avg_sq = fma(T(1 - beta2) * g, g, exp_avg_sq * T(beta2))
    bias_correction1 = 1 - beta1 ** float(step)
    bias_correction2 = 1 - beta2 ** float(step)
    step_size = lr / bias_correction1
    bias_correction2_sqrt = bias_correction2 ** 0.5
    if amsgrad:
        max_exp_avg_sq = np.maximum(max_exp_avg_sq, exp_avg_sq)
        denom = sqrt(max_exp_avg_sq) / T(bias_correction2_sqrt) + T(eps)
    else:
        denom = sqrt(exp_avg_sq) / T(bias_correction2_sqrt) + T(eps)
    param = param + (T(-step_size) * exp_avg) / denom
    return param, exp_avg, exp_avg_sq, max_exp_avg_sq, step


def bits(a):
    """The IEEE bit patterns of a float array, for bitwise comparisons."""
    a = np.ascontiguousarray(a)
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def ulp_distance(a, b):
    """Elementwise distance in units in the last place (0 means identical bits)."""
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    itype = np.int32 if a.dtype == np.float32 else np.int64
    ia, ib = a.view(itype).astype(np.int64), b.view(itype).astype(np.int64)
    # map the sign-magnitude encoding onto a monotonic integer line
    top = np.int64(-(2**31)) if a.dtype == np.float32 else np.int64(-(2**63))
    ia = np.where(ia < 0, top - ia, ia)
    ib = np.where(ib < 0, top - ib, ib)
    return np.abs(ia - ib)
