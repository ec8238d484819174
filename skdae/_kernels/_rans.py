"""rANS entropy coding of quantized codes under a static factorized (per-unit) model.

Byte-wise rANS with a 32-bit state (Duda 2013; the layout of F. Giesen's ``rans_byte``):
the state ``x`` stays in ``[RANS_L, 256 * RANS_L)``, each unit's integer frequencies sum to
``2**PROB_BITS``, and encoding runs backwards so that decoding runs forwards. The state is
held in uint64, so no intermediate value can overflow whatever the input bytes are.

Symbols are ordered sample by sample (all units of sample 0, then sample 1, ...); units
with no bits (a single level) cost nothing and are skipped. For unit ``j`` with ``2**b``
levels, ``freq[offsets[j] : offsets[j] + 2**b]`` are its frequencies and ``cum`` (same
layout) their exclusive prefix sums. The tables are checked by the caller (every
frequency >= 1, each unit summing to ``2**PROB_BITS``) before they reach a kernel.
"""

import numpy as np

from .._rate import PROB_BITS
from ._jit import njit

RANS_L = 1 << 23
# Status codes of rans_decode (the caller turns them into CorruptArchiveError).
DECODE_OK = 0
DECODE_TRUNCATED = 1
DECODE_TRAILING = 2


@njit
def rans_encode(levels, n_levels, offsets, freq, cum, out):
    """Encode ``levels`` (count, n_units) into the tail of ``out``; return the start index.

    ``out`` must hold at least ``2 * count * (units with n_levels > 1) + 4`` bytes (no
    symbol costs more than ``PROB_BITS`` bits). The coded bytes are ``out[start:]``.
    Returns -1 if a level is outside its unit's table or ``out`` is too short.
    """
    count, n_units = levels.shape
    x = np.uint64(RANS_L)
    pos = out.shape[0]
    # x_max = ((RANS_L >> PROB_BITS) << 8) * f: past it, encoding f would leave the range.
    scale = np.uint64((RANS_L >> PROB_BITS) << 8)
    for i in range(count - 1, -1, -1):
        for j in range(n_units - 1, -1, -1):
            if n_levels[j] <= 1:
                continue
            s = np.int64(levels[i, j])
            if s >= n_levels[j]:
                return -1
            f = np.uint64(freq[offsets[j] + s])
            c = np.uint64(cum[offsets[j] + s])
            x_max = scale * f
            while x >= x_max:
                if pos == 0:
                    return -1
                pos -= 1
                out[pos] = np.uint8(x & np.uint64(0xFF))
                x >>= np.uint64(8)
            x = ((x // f) << np.uint64(PROB_BITS)) + (x % f) + c
    if pos < 4:
        return -1
    for k in range(3, -1, -1):
        pos -= 1
        out[pos] = np.uint8((x >> np.uint64(8 * k)) & np.uint64(0xFF))
    return pos


@njit
def rans_decode(data, n_levels, offsets, freq, cum, levels):
    """Decode ``data`` into ``levels`` (count, n_units), zero for single-level units.

    Returns :data:`DECODE_OK`, :data:`DECODE_TRUNCATED` (the bytes ran out) or
    :data:`DECODE_TRAILING` (bytes left over, or a final state the encoder cannot have
    left): any byte string is safe to decode, only ``data`` and the tables are read.
    """
    count, n_units = levels.shape
    n = data.shape[0]
    if n < 4:
        return DECODE_TRUNCATED
    x = np.uint64(0)
    for k in range(4):
        x |= np.uint64(data[k]) << np.uint64(8 * k)
    ptr = 4
    mask = np.uint64((1 << PROB_BITS) - 1)
    low = np.uint64(RANS_L)
    for i in range(count):
        for j in range(n_units):
            m = n_levels[j]
            if m <= 1:
                levels[i, j] = 0
                continue
            base = offsets[j]
            slot = x & mask
            # Largest s with cum[base + s] <= slot: cum[base] == 0, so it exists.
            lo = 0
            hi = m
            while hi - lo > 1:
                mid = (lo + hi) >> 1
                if np.uint64(cum[base + mid]) <= slot:
                    lo = mid
                else:
                    hi = mid
            levels[i, j] = lo
            f = np.uint64(freq[base + lo])
            x = f * (x >> np.uint64(PROB_BITS)) + slot - np.uint64(cum[base + lo])
            while x < low:
                if ptr >= n:
                    return DECODE_TRUNCATED
                x = (x << np.uint64(8)) | np.uint64(data[ptr])
                ptr += 1
    if ptr != n or x != low:
        return DECODE_TRAILING
    return DECODE_OK
