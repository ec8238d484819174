"""Elementwise math that LLVM can vectorise, for the kernels' fused passes.

Numba lowers ``np.exp`` on a scalar to a libm call, which stops a loop from being
vectorised (llvmlite's wheels come without Intel's SVML). For float32 — the dtype that
matters for speed — ``exp`` here is the Cephes polynomial with the power of two built by
integer arithmetic on the exponent bits: every step is a plain SIMD instruction, and the
result is within 2 ulp of the correctly rounded value on [-80, 80] and saturates outside
it (no denormals). float64 keeps ``np.exp``.
"""

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from ._jit import CACHE, njit

_LOG2E = np.float32(1.44269504088896341)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
# Inputs are clamped to [-80, 80], where exp stays a normal float32 (1.8e-35 to 5.5e34):
# a denormal result would cost ~100 cycles per operation wherever it flows next (the
# sigmoid's division, then every GEMM that reads it). sigmoid and softplus only ever need
# exp in that range to float32 precision.
_EXP_MAX = np.float32(80.0)
_EXP_MIN = np.float32(-80.0)
_P0 = np.float32(1.9875691500e-4)
_P1 = np.float32(1.3981999507e-3)
_P2 = np.float32(8.3334519073e-3)
_P3 = np.float32(4.1665795894e-2)
_P4 = np.float32(1.6666665459e-1)
_P5 = np.float32(5.0000001201e-1)
_ONE = np.float32(1.0)
_HALF = np.float32(0.5)


@intrinsic
def _int32_as_float32(typingctx, bits):
    """Reinterpret the low 32 bits of an integer as a float32 (no conversion)."""
    if not isinstance(bits, types.Integer):
        return None
    sig = types.float32(bits)

    def codegen(context, builder, signature, args):
        value = args[0]
        if bits.bitwidth > 32:
            value = builder.trunc(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())

    return sig, codegen


@njit(inline="always")
def _exp_f32(x):
    # max(x, lo) then min(x, hi), written as Numba lowers them (one compare and select
    # each, NaN passing through), without compiling the builtins (see _jit.njit).
    x = _EXP_MIN if _EXP_MIN > x else x
    x = _EXP_MAX if _EXP_MAX < x else x
    n = np.floor(x * _LOG2E + _HALF)
    r = x - n * _LN2_HI - n * _LN2_LO
    r2 = r * r
    p = (((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5) * r2 + r + _ONE
    # 2**n from its IEEE-754 exponent field: (n + 127) << 23.
    return p * _int32_as_float32((np.int32(n) + 127) << 23)


def fast_exp(x):
    """``exp(x)``: vectorisable float32 polynomial, ``np.exp`` for float64."""
    return np.exp(x)


@overload(fast_exp, jit_options={"cache": CACHE}, inline="always")
def _fast_exp_overload(x):
    if x == types.float32:
        return lambda x: _exp_f32(x)
    return lambda x: np.exp(x)


# A compiled function (one per dtype), not inlined by Numba: its body (with the exp
# polynomial) would be typed and lowered again at every call site, about 0.4 s of a cold
# start each. LLVM still inlines and vectorises it in the kernels' loops.
@njit(internal=True)
def sigmoid(x):
    """Logistic function ``1 / (1 + exp(-x))`` in the dtype of ``x``."""
    one = type(x)(1.0)
    return one / (one + fast_exp(-x))


def softplus(x):
    """``log(1 + exp(x))``, stable for any ``x``, in the dtype of ``x``."""
    return np.logaddexp(0, x)


@overload(softplus, jit_options={"cache": CACHE}, inline="always")
def _softplus_overload(x):
    if x == types.float32:
        return lambda x: _softplus_f32(x)
    return lambda x: (0.0 if 0.0 > x else x) + np.log1p(np.exp(-abs(x)))


@njit(inline="always")
def _softplus_f32(x):
    """float32 ``log(1 + exp(x))`` that vectorises.

    ``log1p(u)`` for ``u = exp(-|x|)`` in (0, 1] is the atanh series
    ``2 s (1 + s^2/3 + s^4/5 + ...)`` with ``s = u / (2 + u) <= 1/3``; seven terms reach
    float32 precision and, unlike a libm ``log1p`` call, vectorise.
    """
    zero = type(x)(0.0)
    one = type(x)(1.0)
    two = type(x)(2.0)
    u = fast_exp(-abs(x))
    s = u / (two + u)
    s2 = s * s
    series = one + s2 * (
        type(x)(1.0 / 3.0)
        + s2 * (type(x)(0.2) + s2 * (type(x)(1.0 / 7.0) + s2 * (type(x)(1.0 / 9.0)
        + s2 * (type(x)(1.0 / 11.0) + s2 * (type(x)(1.0 / 13.0) + s2 * type(x)(1.0 / 15.0))))))
    )
    return (zero if zero > x else x) + two * s * series  # max(x, 0): see _exp_f32

