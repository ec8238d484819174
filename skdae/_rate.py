"""The codec's rate model: per-unit bit allocation and integer frequency tables.

A unit ``j`` given ``b_j`` bits is quantized uniformly to ``2**b_j`` bins over its training
range; ``b_j = 0`` leaves one bin, whose centre every value decodes to, at no cost.

:func:`allocate_bits` gives bits where they lower the distortion most per coded bit, as
transform coding does (reverse water-filling): for every unit and every bit depth it
measures, on training codes, the squared error the quantizer leaves (weighted by how much
a unit's error moves the reconstruction, :func:`unit_weights`) and the rate of the levels
under the frequency table learned for that depth, then picks the depths minimising
``distortion + lambda * rate`` with ``lambda`` bisected to meet the rate budget.

:func:`frequency_tables` turns training level counts into integer frequencies summing to
``2**PROB_BITS`` per unit (every level at least 1, so any level can be coded), the static
factorized model that the rANS coder (:mod:`skdae._kernels._rans`) uses. Integer tables
make the coded bytes identical on every CPU and BLAS.
"""

import numpy as np

# Precision of the frequency tables: each unit's frequencies sum to 2**PROB_BITS. Defined
# here, with the tables, and read by the rANS kernels, so that the codec's modules import
# no kernel (and so not Numba) until a payload is coded.
PROB_BITS = 16
PROB_TOTAL = 1 << PROB_BITS
# Most levels a unit may have for table-driven coding: 4096 frequencies of at least 1 out
# of 65536 leave more than 93 % of the mass to the levels that occur.
MAX_TABLE_BITS = 12
# Training codes used to choose the allocation (all of them are used for the tables).
ALLOCATION_ROWS = 20000


def steps(lo, hi, unit_bits):
    """Bin width of each unit (zero for a unit constant on the training codes)."""
    return (hi - lo) / np.exp2(unit_bits)


def quantize(codes, lo, hi, unit_bits):
    """Levels ``0 .. 2**unit_bits - 1`` of float64 ``codes`` (clipped to the range)."""
    step = steps(lo, hi, unit_bits)
    inv_step = np.divide(1.0, step, out=np.zeros_like(step), where=step > 0)
    levels = np.floor((codes - lo) * inv_step)
    np.clip(levels, 0, np.exp2(unit_bits) - 1, out=levels)
    return levels


def dequantize(levels, lo, hi, unit_bits):
    """Bin centres of ``levels``; a constant unit decodes to its value."""
    step = steps(lo, hi, unit_bits)
    centres = lo + (levels + 0.5) * step
    return np.where(step > 0, centres, lo)


def table_offsets(unit_bits):
    """Start of each unit's table in the flat frequency array, and the total length."""
    sizes = np.left_shift(1, np.asarray(unit_bits, np.int64))
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    return offsets, int(sizes.sum())


def level_counts(levels, unit_bits):
    """Flat per-unit histogram of ``levels`` (count, n_units), laid out as the tables."""
    offsets, total = table_offsets(unit_bits)
    flat = (levels.astype(np.int64) + offsets).ravel()
    return np.bincount(flat, minlength=total).astype(np.int64)


def frequency_tables(counts, unit_bits):
    """Integer frequencies (uint32) from level counts: each unit's sum to ``2**PROB_BITS``.

    Every level gets 1, and the rest of the total is shared in proportion to the counts
    by the largest-remainder rule, so the table is as close to the counts as integers
    allow. A unit never seen (no counts) gets a uniform table.
    """
    offsets, _ = table_offsets(unit_bits)
    out = []
    for j, b in enumerate(np.asarray(unit_bits, np.int64)):
        n_levels = 1 << int(b)
        c = counts[offsets[j] : offsets[j] + n_levels].astype(np.float64)
        if c.sum() == 0:
            c = np.ones(n_levels)
        share = c / c.sum() * (PROB_TOTAL - n_levels)
        f = np.floor(share)
        rest = int(PROB_TOTAL - n_levels - f.sum())
        if rest:
            f[np.argsort(f - share, kind="stable")[:rest]] += 1
        out.append(1 + f)
    return np.concatenate(out).astype(np.uint32)


def cumulative(freq, unit_bits):
    """Exclusive prefix sums of each unit's frequencies, in the same flat layout."""
    offsets, _ = table_offsets(unit_bits)
    cum = np.empty_like(freq)
    for j, b in enumerate(np.asarray(unit_bits, np.int64)):
        f = freq[offsets[j] : offsets[j] + (1 << int(b))].astype(np.int64)
        cum[offsets[j] : offsets[j] + f.size] = np.concatenate([[0], np.cumsum(f)[:-1]])
    return cum


def ideal_bits(levels, freq, unit_bits):
    """Code length in bits of ``levels`` under the tables: the sum of ``-log2 p``."""
    offsets, _ = table_offsets(unit_bits)
    f = freq[(levels.astype(np.int64) + offsets)].astype(np.float64)
    return float(np.sum(PROB_BITS - np.log2(f)))


def check_tables(freq, unit_bits):
    """Return a problem with the tables (a str), or None if they can drive the coder."""
    _, total = table_offsets(unit_bits)
    if not isinstance(freq, np.ndarray) or freq.dtype != np.uint32 or freq.ndim != 1:
        return "frequency tables are not a 1-D uint32 array"
    if freq.size != total:
        return f"frequency tables hold {freq.size} values; the bit allocation needs {total}"
    if (freq == 0).any():
        return "a frequency table has a zero entry"
    offsets, _ = table_offsets(unit_bits)
    sums = np.add.reduceat(freq.astype(np.int64), offsets) if total else np.zeros(0)
    if not (sums == PROB_TOTAL).all():
        return f"a unit's frequencies do not sum to {PROB_TOTAL}"
    return None


def unit_weights(decode, codes, rel_step=0.05):
    """Squared reconstruction change per squared code change, unit by unit.

    ``decode`` maps codes to reconstructions (``inverse_transform``); the weight of unit
    ``j`` is the mean of ``||decode(y + d e_j) - decode(y)||^2 / d^2`` over the rows of
    ``codes`` (``d`` a small fraction of the unit's spread). An orthonormal model such as
    PCA gives 1 for every unit; an autoencoder's decoder gives its units different gains.
    """
    codes = np.asarray(codes, np.float64)
    base = np.asarray(decode(codes), np.float64)
    spread = codes.std(axis=0)
    weights = np.zeros(codes.shape[1])
    for j in range(codes.shape[1]):
        d = rel_step * spread[j]
        if d == 0:
            continue
        moved = codes.copy()
        moved[:, j] += d
        change = np.asarray(decode(moved), np.float64) - base
        weights[j] = np.mean(np.sum(change * change, axis=1)) / (d * d)
    return weights


def allocate_bits(codes, lo, hi, weights, budget, max_bits=MAX_TABLE_BITS):
    """Bits per unit (int64) minimising weighted distortion at a coded rate of ``budget``.

    ``choose_bits(*allocation_tables(codes, lo, hi, weights, max_bits), budget)``: the
    tables do not depend on the budget, so a caller allocating several budgets on the
    same codes builds them once (see :func:`skdae.codec.fit_codecs`).

    Parameters
    ----------
    codes : ndarray of shape (n_samples, n_units)
        Training codes (float64).
    lo, hi : ndarray of shape (n_units,)
        Quantization ranges.
    weights : ndarray of shape (n_units,)
        Distortion weight of each unit (:func:`unit_weights`).
    budget : float
        Coded bits per sample to aim at: the sum over units of the rate of their training
        levels under their learned tables stays at or below it (where any depth fits).
    max_bits : int
        Most bits one unit may get.

    Returns
    -------
    unit_bits : ndarray of shape (n_units,)
    """
    return choose_bits(*allocation_tables(codes, lo, hi, weights, max_bits), budget)


def allocation_tables(codes, lo, hi, weights, max_bits=MAX_TABLE_BITS):
    """Weighted distortion and coded rate of every unit at every depth ``0 .. max_bits``.

    Returns ``(dist, rate)``, each of shape ``(n_units, max_bits + 1)``: ``dist[j, b]`` is
    ``weights[j]`` times the mean squared quantization error of unit ``j`` at ``b`` bits
    on ``codes``, ``rate[j, b]`` the mean code length in bits of its levels under the
    frequency table learned from them.
    """
    n_units = codes.shape[1]
    depths = np.arange(max_bits + 1)
    rate = np.zeros((n_units, depths.size))
    dist = np.zeros((n_units, depths.size))
    for b in depths:
        bits = np.full(n_units, b)
        levels = quantize(codes, lo, hi, bits)
        err = codes - dequantize(levels, lo, hi, bits)
        dist[:, b] = weights * np.mean(err * err, axis=0)
        freq = frequency_tables(level_counts(levels, bits), bits)
        offsets, _ = table_offsets(bits)
        p = freq[levels.astype(np.int64) + offsets].astype(np.float64)
        rate[:, b] = np.mean(PROB_BITS - np.log2(p), axis=0)
    return dist, rate


def choose_bits(dist, rate, budget):
    """Depth of each unit (int64) minimising ``dist + lambda * rate`` (tables from
    :func:`allocation_tables`), with ``lambda`` bisected so the total rate meets ``budget``."""
    n_units, n_depths = dist.shape
    depths = np.arange(n_depths)

    def choose(lam):
        return np.argmin(dist + lam * rate, axis=1)

    def total_rate(choice):
        return rate[np.arange(n_units), choice].sum()

    if total_rate(choose(0.0)) <= budget:
        # Every unit at its best depth fits: ties broken towards fewer bits.
        return np.argmin(dist - 1e-12 * depths, axis=1).astype(np.int64)
    # Bisect lambda on a log scale: total rate falls as lambda grows.
    scale = max(float(dist.max()), 1e-300)
    lo_lam, hi_lam = 1e-12 * scale, 1e3 * scale
    for _ in range(100):
        mid = np.sqrt(lo_lam * hi_lam)
        if total_rate(choose(mid)) > budget:
            lo_lam = mid
        else:
            hi_lam = mid
    return choose(hi_lam).astype(np.int64)
