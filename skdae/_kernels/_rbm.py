"""Contrastive-divergence kernels for one RBM.

Weights are ``W`` of shape ``(n_hidden, n_visible)`` (scikit-learn's ``components_``).
Matrix products go through BLAS (``np.dot`` with an output buffer, which Numba lowers to
``?gemm``); bias, activation, sampling, statistics and the momentum update are fused into
single passes over the buffers they touch. Every array of one call shares one float dtype,
and scalars are cast to it on entry, so float32 work stays float32.

Unit kinds are small ints so one compiled kernel serves every unit-type pair:
visible ``0`` Bernoulli (sigmoid means) / ``1`` Gaussian (unit variance, linear means);
hidden ``0`` Bernoulli / ``1`` linear (unit-variance Gaussian noise, Hinton's code layer).
Visible units are mean-field: the negative phase uses visible means, never samples
(Hinton & Salakhutdinov's practice); hidden units are sampled whenever they drive the
visible layer.
"""

import numpy as np

from ._jit import njit
from ._math import add_bias_activate, softplus
from ._random import derive_key, standard_normal, uniform

VISIBLE_BERNOULLI = 0
VISIBLE_GAUSSIAN = 1
HIDDEN_BERNOULLI = 0
HIDDEN_LINEAR = 1


@njit
def sample_units(means, out, bernoulli, key):
    """Draw unit states: Bernoulli(``means``), or ``means`` + N(0, 1) noise.

    Element ``(i, j)`` uses counter ``i * m + j`` of stream ``key``.
    """
    n, m = means.shape
    one = means.dtype.type(1.0)
    zero = means.dtype.type(0.0)
    for i in range(n):
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
def hidden_means(V, W, b_hid, hidden_kind, out):
    """Hidden means ``f(V W^T + b_hid)`` into ``out`` of shape ``(n, n_hidden)``."""
    np.dot(V, W.T, out)
    add_bias_activate(out, b_hid, hidden_kind == HIDDEN_BERNOULLI)


@njit
def visible_means(H, W, b_vis, visible_kind, out):
    """Visible means ``f(H W + b_vis)`` into ``out`` of shape ``(n, n_visible)``."""
    np.dot(H, W, out)
    add_bias_activate(out, b_vis, visible_kind == VISIBLE_BERNOULLI)


@njit
def free_energy(V, W, b_vis, b_hid, visible_kind, hidden_kind, H, out):
    """Free energy ``F(v)`` of each row of ``V`` into ``out`` (float64).

    ``-F(v)`` is the log of the unnormalised marginal probability of ``v``. Hidden units are
    summed out exactly: Bernoulli units give ``-softplus(x)``, unit-variance linear units
    ``-x**2 / 2`` (constants dropped). ``H`` is a scratch buffer ``(n, n_hidden)``.
    """
    np.dot(V, W.T, H)
    n, n_vis = V.shape
    n_hid = H.shape[1]
    for i in range(n):
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
                acc -= softplus(np.float64(h[k] + b_hid[k]))
        else:
            for k in range(n_hid):
                x = np.float64(h[k] + b_hid[k])
                acc -= 0.5 * x * x
        out[i] = acc


@njit
def gibbs_step(V, W, b_vis, b_hid, visible_kind, hidden_kind, seed, H, out):
    """One Gibbs sweep v -> h -> v' with sampled hidden and visible states.

    ``H`` is scratch ``(n, n_hidden)``; the visible sample is written to ``out``.
    """
    hidden_means(V, W, b_hid, hidden_kind, H)
    sample_units(H, H, hidden_kind == HIDDEN_BERNOULLI, derive_key(seed, 0))
    visible_means(H, W, b_vis, visible_kind, out)
    sample_units(out, out, visible_kind == VISIBLE_BERNOULLI, derive_key(seed, 1))


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
    G,
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
    G : ndarray of shape (n_hidden, n_visible)
        Scratch for the weight gradient.

    Returns
    -------
    squared_error : float
        Sum over the epoch of the squared one-step reconstruction error.
    """
    dtype_one = W.dtype.type(1.0)
    lr = W.dtype.type(learning_rate)
    mom = W.dtype.type(momentum)
    decay = W.dtype.type(learning_rate * weight_decay)
    n = order.shape[0]
    n_hid, n_vis = W.shape
    hidden_bernoulli = hidden_kind == HIDDEN_BERNOULLI
    visible_bernoulli = visible_kind == VISIBLE_BERNOULLI
    squared_error = 0.0
    n_batches = (n + batch_size - 1) // batch_size
    for batch in range(n_batches):
        start = batch * batch_size
        b = min(batch_size, n - start)
        V_pos = V_stack[:b]
        V_neg = V_stack[b : 2 * b]
        H_pos = H_stack[:b]
        H_neg = H_stack[b : 2 * b]
        H_s = H_sample[:b]
        for i in range(b):
            V_pos[i] = X[order[start + i]]

        hidden_means(V_pos, W, b_hid, hidden_kind, H_pos)
        if persistent:
            H_s[:] = chain[:b]
        else:
            sample_units(H_pos, H_s, hidden_bernoulli, derive_key(seed, batch * (cd_steps + 1)))
        for step in range(cd_steps):
            visible_means(H_s, W, b_vis, visible_kind, V_neg)
            if step == 0:
                for i in range(b):
                    for j in range(n_vis):
                        d = V_pos[i, j] - V_neg[i, j]
                        squared_error += d * d
            hidden_means(V_neg, W, b_hid, hidden_kind, H_neg)
            if persistent or step < cd_steps - 1:
                key = derive_key(seed, batch * (cd_steps + 1) + step + 1)
                sample_units(H_neg, H_s, hidden_bernoulli, key)
        if persistent:
            chain[:b] = H_s

        # Bias statistics, and negation of the negative hidden statistics for the GEMM.
        inv_b = dtype_one / W.dtype.type(b)
        for j in range(n_hid):
            vel_hid[j] *= mom
        for i in range(b):
            for j in range(n_hid):
                vel_hid[j] += lr * inv_b * (H_pos[i, j] - H_neg[i, j])
                H_neg[i, j] = -H_neg[i, j]
        for j in range(n_vis):
            vel_vis[j] *= mom
        for i in range(b):
            for j in range(n_vis):
                vel_vis[j] += lr * inv_b * (V_pos[i, j] - V_neg[i, j])

        np.dot(H_stack[: 2 * b].T, V_stack[: 2 * b], G)
        step_scale = lr * inv_b
        for i in range(n_hid):
            w = W[i]
            vw = vel_W[i]
            g = G[i]
            for j in range(n_vis):
                vw[j] = mom * vw[j] + step_scale * g[j] - decay * w[j]
                w[j] += vw[j]
        for j in range(n_hid):
            b_hid[j] += vel_hid[j]
        for j in range(n_vis):
            b_vis[j] += vel_vis[j]
    return squared_error
