"""Counter-based random numbers for the kernels.

A random number is a pure function of a 64-bit key and a counter (the splitmix64 finaliser
of ``key + counter * golden``), so the value drawn for an element depends only on which
element it is, never on the order in which threads visit elements. That is what makes a fit
identical for any thread count, and what lets LLVM vectorise the draws (no sequential state).
Keys are derived from one seed per epoch, drawn in ``fit`` from ``random_state``.
"""

import numpy as np

from ._jit import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_SHIFT30 = np.uint64(30)
_SHIFT27 = np.uint64(27)
_SHIFT31 = np.uint64(31)
_SHIFT40 = np.uint64(40)
# 24 random bits scaled to [0, 1): exact in float32, and fine-grained enough for float64 use.
_INV_2_24 = np.float32(1.0 / (1 << 24))
_TWO_PI = np.float32(2.0 * np.pi)


@njit(inline="always")
def mix64(z):
    """Splitmix64 finaliser: a bijective, well-avalanching hash of a uint64."""
    z = (z ^ (z >> _SHIFT30)) * _MIX1
    z = (z ^ (z >> _SHIFT27)) * _MIX2
    return z ^ (z >> _SHIFT31)


@njit(inline="always")
def derive_key(seed, stream):
    """Key of an independent stream ``stream`` (int) under ``seed`` (int)."""
    return mix64(np.uint64(seed) ^ mix64(np.uint64(stream) * _GOLDEN + _GOLDEN))


@njit(inline="always")
def uniform(key, counter):
    """Uniform float32 in [0, 1) for element ``counter`` of the stream ``key``."""
    z = mix64(key + np.uint64(counter) * _GOLDEN)
    return np.float32(z >> _SHIFT40) * _INV_2_24


@njit(inline="always")
def standard_normal(key, counter):
    """Standard normal float32 (Box-Muller) for element ``counter`` of stream ``key``."""
    u1 = np.float32(1.0) - uniform(key, 2 * counter)  # in (0, 1]: log stays finite
    u2 = uniform(key, 2 * counter + 1)
    return np.sqrt(np.float32(-2.0) * np.log(u1)) * np.cos(_TWO_PI * u2)
