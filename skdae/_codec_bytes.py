"""How a :class:`~skdae.codec.Codec` turns quantized levels into payload bytes, and back.

Plain functions over the codec's fitted arrays (each unit's bits, the concatenated
frequency tables) and a coder name: rANS under the tables (:mod:`skdae._kernels._rans`),
or deflate / LZMA on the bit-packed levels (:mod:`skdae._archive`). ``"auto"`` tries each
candidate coder and keeps the smallest payload. The archive's header is written and
parsed in :mod:`skdae._archive`; the codec (:mod:`skdae.codec`) checks its fitted state
and matches a header against itself before any payload reaches these functions, so the
arrays given here are already consistent: ``frequencies`` sums to ``2**16`` per unit with
no zero entry, and the header's count, units and bits are the codec's.

The rANS kernels are imported only when called, so that importing skdae compiles nothing.
"""

import numpy as np

from . import _archive, _rate
from ._archive import CorruptArchiveError


def rans_tables(unit_bits, frequencies):
    """The kernels' view of the tables: levels, offsets, frequencies, cumulative."""
    offsets, _ = _rate.table_offsets(unit_bits)
    freq = np.ascontiguousarray(frequencies)
    return np.left_shift(1, unit_bits), offsets, freq, _rate.cumulative(freq, unit_bits)


def candidate_coders(coder, frequencies):
    """The coders an archive is tried with: ``coder`` itself, or for ``"auto"`` rANS (when
    the tables exist) and deflate."""
    if coder != "auto":
        return [coder]
    return (["rans"] if frequencies is not None else []) + ["zlib"]


def encode_levels(levels, unit_bits, frequencies, coder):
    """``(coder, payload)``: the levels coded by each candidate coder, the smallest."""
    best = None
    for candidate in candidate_coders(coder, frequencies):
        if candidate == "rans":
            from ._kernels._rans import rans_encode

            n_coded = int(np.count_nonzero(unit_bits))
            out = np.empty(2 * levels.shape[0] * n_coded + 16, np.uint8)
            start = rans_encode(np.ascontiguousarray(levels, np.uint16),
                                *rans_tables(unit_bits, frequencies), out)
            if start < 0:
                raise ValueError("levels outside the codec's tables")
            payload = out[start:].tobytes()
        else:
            payload = _archive.encode_bytes(_archive.pack(levels, unit_bits), candidate)
        if best is None or len(payload) < len(best[1]):
            best = (candidate, payload)
    return best


def decode_levels(payload, info, unit_bits, frequencies):
    """Undo :func:`encode_levels`: the ``(info.count, n_units)`` levels of an archive whose
    header ``info`` the codec has matched against itself."""
    if info.coder == "rans":
        return _decode_rans(payload, info.count, unit_bits, frequencies)
    raw = _archive.decode_bytes(payload, info.coder, info.raw_code_bytes)
    return _archive.unpack(raw, info.count, unit_bits)


def _decode_rans(payload, count, unit_bits, frequencies):
    from ._kernels._rans import DECODE_OK, DECODE_TRUNCATED, rans_decode

    n_levels, offsets, freq, cum = rans_tables(unit_bits, frequencies)
    # No sample costs fewer bits than its units' likeliest levels: a header declaring
    # more samples than the bytes can hold is refused before anything is allocated.
    max_f = np.maximum.reduceat(freq, offsets).astype(np.float64)
    min_bits = float(np.sum(_rate.PROB_BITS - np.log2(max_f)))
    if count * min_bits > 8 * len(payload) + 64:
        raise CorruptArchiveError(
            f"archive declares {count} samples, more than its {len(payload)} bytes "
            "of rans data can hold"
        )
    levels = np.empty((count, len(unit_bits)), np.uint16)
    status = rans_decode(np.frombuffer(payload, np.uint8), n_levels, offsets, freq, cum,
                         levels)
    if status != DECODE_OK:
        what = "ends early" if status == DECODE_TRUNCATED else "does not end where it must"
        raise CorruptArchiveError(f"corrupt rans data: the stream {what}")
    return levels
