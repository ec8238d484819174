"""Contrastive-divergence kernels for one RBM.

Weights are ``W`` of shape ``(n_hidden, n_visible)`` (scikit-learn's ``components_``).
Matrix products go through BLAS; bias, activation, sampling, statistics and the momentum
update are fused around them, block by block (see :mod:`skdae._kernels._dense` for the
parallelism model: results do not depend on the thread count). Every array of one call
shares one float dtype, and scalars are cast to it on entry, so float32 stays float32.

Unit kinds are small ints (defined in :mod:`skdae._kernels._codes`) so one compiled
kernel serves every unit-type pair:
visible ``0`` Bernoulli (sigmoid means) / ``1`` Gaussian (unit variance, linear means);
hidden ``0`` Bernoulli / ``1`` linear (unit-variance Gaussian noise, Hinton's code layer).
Visible units are mean-field: the negative phase uses visible means, never samples
(Hinton & Salakhutdinov's practice); hidden units are sampled whenever they drive the
visible layer.
"""

import functools

import numpy as np
from numba import prange, types

from ._blas import block_gemm, gemm_problem
from ._dense import (
    GEMM_PROBLEM,
    UPDATE_MISMATCH,
    block_bounds,
    copy_rows,
    dense_forward,
    dense_pointer,
    for_each_block,
    gather_csr_rows,
    gather_rows,
    n_blocks,
)
from ._jit import KernelPointer, as_readonly, block_signature, block_types, njit, unliteral, unpack_args
from ._math import softplus
from ._random import derive_key, standard_normal, uniform

from ._codes import HIDDEN_BERNOULLI, HIDDEN_LINEAR, VISIBLE_BERNOULLI, VISIBLE_GAUSSIAN  # noqa: F401


@njit(parallel=True)
def sample_units(means, out, bernoulli, key):
    """Draw unit states: Bernoulli(``means``), or ``means`` + N(0, 1) noise.

    Element ``(i, j)`` uses counter ``i * m + j`` of stream ``key``.
    """
    n, m = means.shape
    one = means.dtype.type(1.0)
    zero = means.dtype.type(0.0)
    for i in prange(n):
        src = means[i]
        dst = out[i]
        base = i * m
        if bernoulli:
            for j in range(m):
                dst[j] = one if uniform(key, base + j) < src[j] else zero
        else:
            for j in range(m):
                dst[j] = src[j] + standard_normal(key, base + j)


@njit
def hidden_means(V, W, b_hid, hidden_kind, out, hidden_block):
    """Hidden means ``f(V W^T + b_hid)`` into ``out`` of shape ``(n, n_hidden)``.

    The same compiled phase as CD's positive phase (nothing sampled), so a fit compiles
    it once for both. ``hidden_block`` is :func:`hidden_pointer` of the dtype.
    """
    _hidden_phase(as_readonly(V), as_readonly(W), as_readonly(b_hid), hidden_kind, out, out,
                  unliteral(False), np.uint64(0), hidden_block)


@njit
def visible_means(H, W, b_vis, visible_kind, out, dense_block):
    """Visible means ``f(H W + b_vis)`` into ``out`` of shape ``(n, n_visible)``.

    ``dense_block`` is :func:`~skdae._kernels._dense.dense_pointer` of the dtype.
    """
    dense_forward(H, W, False, b_vis, visible_kind == VISIBLE_BERNOULLI, out, dense_block)


@njit(parallel=True)
def free_energy(V, W, b_vis, b_hid, visible_kind, hidden_kind, H, out, dense_block):
    """Free energy ``F(v)`` of each row of ``V`` into ``out`` (float64).

    ``-F(v)`` is the log of the unnormalised marginal probability of ``v``. Hidden units are
    summed out exactly: Bernoulli units give ``-softplus(x)``, unit-variance linear units
    ``-x**2 / 2`` (constants dropped). ``H`` is a scratch buffer ``(n, n_hidden)``.
    ``dense_block`` is :func:`~skdae._kernels._dense.dense_pointer` of the dtype.
    """
    dense_forward(V, W, True, b_hid, False, H, dense_block)
    n, n_vis = V.shape
    n_hid = H.shape[1]
    for i in prange(n):
        acc = 0.0
        v = V[i]
        if visible_kind == VISIBLE_BERNOULLI:
            for j in range(n_vis):
                acc -= v[j] * b_vis[j]
        else:
            for j in range(n_vis):
                d = v[j] - b_vis[j]
                acc += 0.5 * d * d
        h = H[i]
        if hidden_kind == HIDDEN_BERNOULLI:
            for k in range(n_hid):
                acc -= softplus(np.float64(h[k]))
        else:
            for k in range(n_hid):
                x = np.float64(h[k])
                acc -= 0.5 * x * x
        out[i] = acc


@njit
def gibbs_step(V, W, b_vis, b_hid, visible_kind, hidden_kind, seed, H, out, hidden_block,
               dense_block):
    """One Gibbs sweep v -> h -> v' with sampled hidden and visible states.

    ``H`` is scratch ``(n, n_hidden)``; the visible sample is written to ``out``.
    ``hidden_block`` is :func:`hidden_pointer` and ``dense_block``
    :func:`~skdae._kernels._dense.dense_pointer` of the dtype.
    """
    hidden_means(V, W, b_hid, hidden_kind, H, hidden_block)
    sample_units(H, H, hidden_kind == HIDDEN_BERNOULLI, derive_key(seed, 0))
    visible_means(H, W, b_vis, visible_kind, out, dense_block)
    sample_units(out, out, visible_kind == VISIBLE_BERNOULLI, derive_key(seed, 1))


# The three phases are inlined into their callers: each only packs its arguments for
# for_each_block, which would cost more compiled alone (see _jit.njit).
@njit(inline="always")
def _hidden_phase(V, W, b_hid, hidden_kind, H, H_sample, sample, key, block):
    """``H = f(V W^T + b_hid)`` and, if ``sample``, ``H_sample`` drawn from it.

    ``sample`` must be a run-time value, never a constant: one compiled block function
    serves training and encoding. ``block`` is
    :func:`~skdae._kernels._dense.dense_pointer`'s block (see :func:`cd_pointers`).
    """
    zero = H.dtype.type(0.0)
    # The block's error and bias-update terms are off (see _dense._dense_block).
    for_each_block(block, (as_readonly(V), as_readonly(W), unliteral(True), as_readonly(b_hid),
                           hidden_kind == HIDDEN_BERNOULLI, H, as_readonly(H),
                           np.empty(0, np.float64), unliteral(False), np.empty(0, H.dtype),
                           unliteral(False), zero, zero, H_sample, sample, key))


@njit(inline="always")
def _visible_phase(H_sample, W, b_vis, visible_kind, V_neg, V_pos, error_cols, record_error,
                   vel_vis, update_bias, lr_b, mom, block):
    """``V_neg = f(H_sample W + b_vis)``; optionally the squared error against ``V_pos``
    (accumulated per visible unit into ``error_cols``) and the visible-bias update.
    ``block`` is :func:`~skdae._kernels._dense.dense_pointer`'s block, which
    :func:`~skdae._kernels._dense.dense_forward` shares."""
    # No sampling here: visible units are mean-field (module docstring).
    for_each_block(block, (as_readonly(H_sample), as_readonly(W), unliteral(False),
                           as_readonly(b_vis), visible_kind == VISIBLE_BERNOULLI, V_neg,
                           as_readonly(V_pos), error_cols, record_error, vel_vis, update_bias,
                           lr_b, mom, V_neg, unliteral(False), np.uint64(0)))


@njit(inline="always")
def _update_weights(H_stack, V_stack, b, W, vel_W, b_hid, vel_hid, lr_b, mom, decay, block):
    """Momentum update of weights and hidden biases, one block of hidden units at a time.

    Rows ``[0, b)`` of ``H_stack`` hold the positive and ``[b, 2b)`` the negative hidden
    statistics. Each block negates its negative columns, then one GEMM accumulates
    ``vel_W = mom * vel_W + lr / b * (pos - neg)`` in place (BLAS's beta), and the same
    block of ``W`` is updated while it is in cache. ``block`` is :func:`_update_block`.
    """
    for_each_block(block, (H_stack, V_stack, b, W, vel_W, b_hid, vel_hid, lr_b, mom, decay))


@njit
def _update_block(args, blocks, blk):
    """Block ``blk`` of ``blocks`` of :func:`_update_weights`'s hidden units (``blk`` -1:
    the check, see :func:`~skdae._kernels._dense.for_each_block`)."""
    H_stack, V_stack, b, W, vel_W, b_hid, vel_hid, lr_b, mom, decay = unpack_args(args)
    n_hid, n_vis = W.shape
    if blk < 0:
        found = gemm_problem(unliteral(True), unliteral(False), n_hid, n_vis, 2 * b,
                             H_stack.shape, H_stack.strides, n_hid, V_stack.shape,
                             V_stack.strides, n_vis, vel_W.shape, vel_W.strides, n_vis,
                             vel_W.itemsize)
        if found != 0:
            return -(GEMM_PROBLEM + found)
        if b_hid.shape[0] != n_hid or vel_hid.shape[0] != n_hid:
            return -UPDATE_MISMATCH
        return n_blocks(n_hid)
    j0, j1 = block_bounds(n_hid, blocks, blk)
    if j1 > j0:
        width = j1 - j0
        vel = vel_hid[j0:j1]
        for j in range(width):
            vel[j] *= mom
        for i in range(b):
            pos = H_stack[i, j0:j1]
            neg = H_stack[b + i, j0:j1]
            for j in range(width):
                vel[j] += lr_b * (pos[j] - neg[j])
                neg[j] = -neg[j]
        block_gemm(True, False, width, n_vis, 2 * b, lr_b, H_stack[:, j0:], n_hid, V_stack, n_vis,
                   mom, vel_W[j0:], n_vis)
        bias = b_hid[j0:j1]
        for j in range(width):
            w = W[j0 + j]
            vw = vel_W[j0 + j]
            for k in range(n_vis):
                vw[k] -= decay * w[k]
                w[k] += vw[k]
            bias[j] += vel[j]
    return 0


@functools.cache
def cd_pointers(dtype):
    """The blocks of the three CD phases for ``dtype``: the ``hidden_block``,
    ``visible_block`` and ``update_block`` arguments of :func:`cd_epoch` and
    :func:`cd_epoch_csr`.

    Each a :class:`~skdae._kernels._jit.KernelPointer` (see there why): the bodies of
    :func:`_hidden_phase` and :func:`_visible_phase` (both the block of
    :func:`~skdae._kernels._dense.dense_forward`) and of :func:`_update_weights`, each
    compiled once per dtype, for the exact argument types the phases pass. Passed as
    separate arguments: Numba warns on a tuple of function pointers.
    """
    f, ro2, ro1, a2, a1 = block_types(dtype)
    i8 = types.int64
    dense = dense_pointer(dtype)
    return (
        dense,
        dense,
        KernelPointer(_update_block, block_signature(a2, a2, i8, a2, a2, a1, a1, f, f, f)),
    )


def hidden_pointer(dtype):
    """The ``hidden_block`` argument of :func:`hidden_means` and :func:`gibbs_step`."""
    return cd_pointers(dtype)[0]


# Inlined into the two epoch kernels: as a compiled function of its own, its module (with
# every phase linked in) would be optimised and emitted once more (see _jit.njit).
@njit(inline="always")
def _cd_batch(V_stack, H_stack, H_sample, b, W, b_vis, b_hid, vel_W, vel_vis, vel_hid,
              visible_kind, hidden_kind, cd_steps, persistent, chain, lr, mom, decay, seed,
              batch, error_cols, hidden_block, visible_block, update_block):
    """One CD-k update on the batch already gathered into ``V_stack[:b]``."""
    dtype = W.dtype.type
    n_vis = W.shape[1]
    V_pos = V_stack[:b]
    V_neg = V_stack[b : 2 * b]
    H_pos = H_stack[:b]
    H_neg = H_stack[b : 2 * b]
    H_s = H_sample[:b]
    lr_b = lr / dtype(b)
    key = derive_key(seed, batch * (cd_steps + 1))
    W_in = as_readonly(W)
    b_hid_in = as_readonly(b_hid)
    _hidden_phase(as_readonly(V_pos), W_in, b_hid_in, hidden_kind, H_pos, H_s, not persistent,
                  key, hidden_block)
    if persistent:
        copy_rows(chain[:b], H_s)
    for step in range(cd_steps):
        last = step == cd_steps - 1
        _visible_phase(H_s, W, b_vis, visible_kind, V_neg, V_pos, error_cols, step == 0,
                       vel_vis, last, lr_b, mom, visible_block)
        key = derive_key(seed, batch * (cd_steps + 1) + step + 1)
        _hidden_phase(as_readonly(V_neg), W_in, b_hid_in, hidden_kind, H_neg, H_s,
                      persistent or not last, key, hidden_block)
    if persistent:
        copy_rows(H_s, chain[:b])
    _update_weights(H_stack, V_stack, b, W, vel_W, b_hid, vel_hid, lr_b, mom, decay, update_block)
    for j in range(n_vis):
        b_vis[j] += vel_vis[j]


@njit
def cd_epoch(
    X,
    order,
    W,
    b_vis,
    b_hid,
    vel_W,
    vel_vis,
    vel_hid,
    visible_kind,
    hidden_kind,
    cd_steps,
    persistent,
    chain,
    learning_rate,
    momentum,
    weight_decay,
    batch_size,
    seed,
    V_stack,
    H_stack,
    H_sample,
    first_batch,
    error_cols,
    hidden_block,
    visible_block,
    update_block,
):
    """One epoch of CD-k (or persistent CD) with momentum and L2 weight decay.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_visible)
        Training data (standardised for Gaussian visible units).
    order : ndarray of int64
        Rows of ``X`` in the order to visit them (a permutation or a subset).
    W, b_vis, b_hid : ndarray
        Parameters, updated in place.
    vel_W, vel_vis, vel_hid : ndarray
        Momentum buffers (same shapes as the parameters), updated in place.
    visible_kind, hidden_kind : int
        Unit kinds (module constants).
    cd_steps : int
        Gibbs steps in the negative phase (the k of CD-k).
    persistent : bool
        Start the negative chain from ``chain`` (PCD) instead of the data's hidden sample,
        and store its end state back into ``chain``.
    chain : ndarray of shape (batch_size, n_hidden)
        Persistent hidden states (unused when ``persistent`` is False).
    learning_rate, momentum, weight_decay : float
        Update ``vel = momentum * vel + lr * (grad / b - weight_decay * W)``; biases are
        not decayed.
    batch_size : int
    seed : int
        Seed of this epoch's random streams (one stream per batch and Gibbs step).
    V_stack : ndarray of shape (2 * batch_size, n_visible)
    H_stack : ndarray of shape (2 * batch_size, n_hidden)
        Positive statistics in the first ``b`` rows and negated negative statistics in the
        next ``b``, so one GEMM ``H_stack^T V_stack`` gives ``pos - neg``.
    H_sample : ndarray of shape (batch_size, n_hidden)
    first_batch : int
        Index of the first batch in the epoch's streams: an epoch may be run as several
        calls over consecutive pieces of its order (each a whole number of batches), and
        draws exactly what one call over the whole order would.
    error_cols : ndarray of float64 of shape (n_visible,)
        Per-visible-unit squared reconstruction error, accumulated across such calls
        (zeroed by the caller at the start of the epoch).
    hidden_block, visible_block, update_block : first-class functions
        :func:`cd_pointers` of the parameters' dtype.

    Returns
    -------
    squared_error : float
        Sum of ``error_cols``: the epoch's squared one-step reconstruction error so far.
    """
    dtype = W.dtype.type
    lr = dtype(learning_rate)
    mom = dtype(momentum)
    decay = dtype(learning_rate * weight_decay)
    n = order.shape[0]
    n_vis = W.shape[1]
    if error_cols.shape[0] != n_vis:
        raise ValueError("error_cols does not match the visible units")
    for start in range(0, n, batch_size):
        b = n - start if n - start < batch_size else batch_size  # min(): see _jit.njit
        gather_rows(X, order, start, V_stack[:b])
        _cd_batch(V_stack, H_stack, H_sample, b, W, b_vis, b_hid, vel_W, vel_vis, vel_hid,
                  visible_kind, hidden_kind, cd_steps, persistent, chain, lr, mom, decay, seed,
                  first_batch + start // batch_size, error_cols, hidden_block,
                  visible_block, update_block)
    squared_error = 0.0
    for j in range(n_vis):
        squared_error += error_cols[j]
    return squared_error


@njit
def cd_epoch_csr(data, indices, indptr, mean, scale, standardize, order, W, b_vis, b_hid,
                 vel_W, vel_vis, vel_hid, visible_kind, hidden_kind, cd_steps, persistent, chain,
                 learning_rate, momentum, weight_decay, batch_size, seed, V_stack, H_stack,
                 H_sample, first_batch, error_cols, hidden_block, visible_block, update_block):
    """:func:`cd_epoch` over the rows of a CSR matrix ``(data, indices, indptr)``.

    Each minibatch is densified into ``V_stack`` (standardised with ``mean`` and ``scale``
    when ``standardize``) just before its update; the matrix itself stays sparse. Same
    random streams as :func:`cd_epoch` (and the same ``first_batch`` and ``error_cols``),
    so dense and sparse copies of the same data train the same model.
    """
    dtype = W.dtype.type
    lr = dtype(learning_rate)
    mom = dtype(momentum)
    decay = dtype(learning_rate * weight_decay)
    n = order.shape[0]
    n_vis = W.shape[1]
    if error_cols.shape[0] != n_vis:
        raise ValueError("error_cols does not match the visible units")
    for start in range(0, n, batch_size):
        b = n - start if n - start < batch_size else batch_size  # min(): see _jit.njit
        gather_csr_rows(data, indices, indptr, order, start, mean, scale, standardize,
                        V_stack[:b])
        _cd_batch(V_stack, H_stack, H_sample, b, W, b_vis, b_hid, vel_W, vel_vis, vel_hid,
                  visible_kind, hidden_kind, cd_steps, persistent, chain, lr, mom, decay, seed,
                  first_batch + start // batch_size, error_cols, hidden_block,
                  visible_block, update_block)
    squared_error = 0.0
    for j in range(n_vis):
        squared_error += error_cols[j]
    return squared_error
