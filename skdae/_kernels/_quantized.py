"""Quantization-aware fine-tuning: the codec's quantizer and rate term as the network sees
them, and the epoch kernel that trains through them.

The fine-tuning step itself is :func:`skdae._kernels._backprop.batch_step`, which runs
:func:`quantize_code_layer` on the code layer and adds :func:`code_rate_gradient` to the
code's delta when given a quantizer; :func:`finetune_epoch_quantized` is
:func:`~skdae._kernels._backprop.finetune_epoch` with one. The two modules refer to each
other as modules (attributes resolved when a kernel compiles, after both are imported).
"""

import numpy as np

from . import _backprop
from ._codes import SOLVER_ADAM
from ._dense import gather_rows
from ._jit import njit


@njit
def quantize_code_layer(codes, lo, step, n_levels, noise, side):
    """The codec's quantizer on a batch of codes, in place, as fine-tuning sees it.

    Unit ``j`` has ``n_levels[j]`` bins of width ``step[j]`` from ``lo[j]``. With an empty
    ``noise`` (0 rows), each value is rounded to its bin centre (clipped to the range), as
    the codec decodes it: straight-through rounding. Otherwise the value is clipped to the
    range and ``noise[i, j] * step[j]`` is added, ``noise`` uniform on [-0.5, 0.5): the
    additive-noise stand-in for rounding. A unit with one bin (or none wide) is its centre.
    ``side[i, j]`` (int8, same shape as ``codes``) records the clipping: 1 above the
    range, -1 below, 0 inside (and for a one-bin unit).
    """
    b, n_units = codes.shape
    half = codes.dtype.type(0.5)
    use_noise = noise.shape[0] > 0
    for i in range(b):
        for j in range(n_units):
            side[i, j] = 0
            s = step[j]
            m = n_levels[j]
            if s <= 0 or m <= 1:
                codes[i, j] = lo[j] + half * s
                continue
            y = codes[i, j]
            top = lo[j] + m * s
            if y < lo[j]:
                y = lo[j]
                side[i, j] = -1
            elif y > top:
                y = top
                side[i, j] = 1
            if use_noise:
                codes[i, j] = y + noise[i, j] * s
            else:
                k = np.floor((y - lo[j]) / s)
                if k > m - 1:
                    k = m - 1
                codes[i, j] = lo[j] + (k + half) * s


@njit
def drop_outward_gradient(delta, side):
    """Zero the code deltas that would move a clipped code further out of its range.

    The quantizer's output does not depend on a code beyond its range, so passing that
    code's gradient straight through lets it drift ever further out (measured on a
    converged 784-1000-500-250-64 MNIST autoencoder at 3 bits per unit: 1 % of held-out
    codes clipped after one epoch, 6.5 % after three, the quantized error rising). The
    gradient that moves it back in is kept, so a clipped code can return (a gradient
    step moves a code against its delta: ``side`` 1 with a negative delta points out).
    """
    b, n_units = side.shape
    for i in range(b):
        for j in range(n_units):
            if (side[i, j] > 0 and delta[i, j] < 0) or (side[i, j] < 0 and delta[i, j] > 0):
                delta[i, j] = 0


@njit(inline="always")
def _logistic(t):
    """The logistic CDF at ``t`` and its density ``F(t) (1 - F(t))``, in float64 (0 or 1
    and 0 far out, never NaN)."""
    e = np.exp(-abs(t))
    inv = 1.0 / (1.0 + e)
    cdf = inv if t >= 0.0 else e * inv
    return cdf, e * inv * inv


@njit
def code_rate_gradient(codes, lo, step, n_levels, density, weight, sigmoid_code, delta, stats):
    """Bits of a batch of quantized codes under per-unit discretised logistics; adds
    ``weight`` times their gradient to ``delta`` and the codes' sums to ``stats``.

    Unit ``j``'s bins (the codec's quantizer: ``n_levels[j]`` bins of width ``step[j]``
    from ``lo[j]``) get the mass of a logistic of location ``density[0, j]`` and scale
    ``density[1, j]``, the outer bins its tails as well, so the bins' probabilities sum
    to 1: a value ``v`` costs ``-log2(F(v + step / 2) - F(v - step / 2))`` bits, with
    ``F(v - step / 2) = 0`` in the first bin and ``F(v + step / 2) = 1`` in the last (the
    factorized entropy model of Ballé et al., 2017, on the codec's grid). At a bin centre
    (straight-through rounding) that is the bin's probability; a noisy value (the
    additive-noise stand-in) gets the mass of the bin-wide interval around it.

    ``delta[i, j]`` gains ``weight * d bits / d v`` (times ``v (1 - v)`` for a sigmoid
    code: ``delta`` is taken before the activation). A unit with one bin costs nothing.
    ``stats[0, j]`` and ``stats[1, j]`` gain the sum and the sum of squares of unit
    ``j``'s values. Returns the batch's bits (float64).

    The arithmetic is float64 whatever the codes' dtype: a few scalar exp/log per code
    value (nothing next to the layers' GEMMs), and tail masses that float32 would round
    to 0 or 1.
    """
    b, n_units = codes.shape
    if (lo.shape[0] != n_units or step.shape[0] != n_units or n_levels.shape[0] != n_units
            or density.shape[0] != 2 or density.shape[1] != n_units or stats.shape[0] != 2
            or stats.shape[1] != n_units or delta.shape[0] != b or delta.shape[1] != n_units):
        raise ValueError("rate arrays do not match the codes")
    inv_ln2 = 1.0 / np.log(2.0)
    total = 0.0
    for i in range(b):
        for j in range(n_units):
            v = np.float64(codes[i, j])
            stats[0, j] += v
            stats[1, j] += v * v
            s = np.float64(step[j])
            m = n_levels[j]
            if s <= 0.0 or m <= 1:
                continue
            loc = density[0, j]
            scale = density[1, j]
            pos = (v - lo[j]) / s
            t_lo = (v - 0.5 * s - loc) / scale
            t_hi = (v + 0.5 * s - loc) / scale
            f_lo, d_lo = _logistic(t_lo)
            f_hi, d_hi = _logistic(t_hi)
            if pos < 1.0:
                # First bin: the lower tail is its own.
                p = f_hi
                d_lo = 0.0
            elif pos > m - 1.0:
                # Last bin: the upper tail too.
                p = _logistic(-t_lo)[0]
                d_hi = 0.0
            elif t_lo > 0.0:
                # Both ends in the upper half: the difference of the upper tails keeps
                # its precision.
                p = _logistic(-t_lo)[0] - _logistic(-t_hi)[0]
            else:
                p = f_hi - f_lo
            p = max(p, 1e-300)
            total -= np.log(p) * inv_ln2
            g = -inv_ln2 * (d_hi - d_lo) / (scale * p)
            if sigmoid_code:
                g *= v * (1.0 - v)
            delta[i, j] += weight * g
    return total


@njit
def finetune_epoch_quantized(X, order, params, grads, state_a, state_b, step, solver, learning_rate,
                             momentum, beta1, beta2, epsilon, alpha, batch_size, shapes, w_off,
                             b_off, act_kind, loss_kind, Xb, acts, act_off, delta_a, delta_b,
                             lin, code_layer, q_lo, q_step, q_levels, q_noise, q_density,
                             q_rate_weight, q_stats, dense_block, output_block, weight_block):
    """:func:`~skdae._kernels._backprop.finetune_epoch` with the code layer quantized
    (:func:`quantize_code_layer`).

    ``q_noise`` holds one row of uniform noise per row of ``order`` (in that order), or
    no rows for straight-through rounding. With ``q_rate_weight`` above 0 the objective
    gains that weight times the bits of the quantized codes under ``q_density``
    (float64, ``(2, n_units)``: each unit's logistic location and scale), and the codes
    are summed into ``q_stats`` (float64, ``(2, n_units)``: sums and sums of squares),
    from which the caller re-estimates the densities (see :func:`code_rate_gradient`).
    ``dense_block``, ``output_block`` and ``weight_block`` are
    :func:`~skdae._kernels._backprop.layer_pointers` of the dtype.
    """
    n_params = params.shape[0]
    if state_a.shape[0] != n_params or (solver == SOLVER_ADAM and state_b.shape[0] != n_params):
        raise ValueError("optimiser state does not match the parameters")
    n = order.shape[0]
    n_units = shapes[code_layer, 1]
    if (q_lo.shape[0] != n_units or q_step.shape[0] != n_units or q_levels.shape[0] != n_units
            or q_noise.shape[1] != n_units or (q_noise.shape[0] != 0 and q_noise.shape[0] < n)
            or q_density.shape[0] != 2 or q_density.shape[1] != n_units
            or q_stats.shape[0] != 2 or q_stats.shape[1] != n_units):
        raise ValueError("quantizer arrays do not match the code layer")
    total = 0.0
    side = np.zeros((batch_size, n_units), np.int8)
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        batch = Xb[:b]
        gather_rows(X, order, start, batch)
        step += 1
        total += _backprop.batch_step(
            batch, params, grads, shapes, w_off, b_off, act_kind, loss_kind, alpha, acts,
            act_off, delta_a, delta_b, state_a, state_b, step, solver, learning_rate, momentum,
            beta1, beta2, epsilon, lin, dense_block, output_block, weight_block, code_layer,
            (q_lo, q_step, q_levels, q_noise[start : start + b], q_density, q_rate_weight,
             q_stats, side[:b]))
    return total, step
