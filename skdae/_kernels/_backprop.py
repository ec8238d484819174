"""Forward and backward passes of a stack of dense layers, and in-place optimisers.

All parameters of the network live in one flat vector ``params``; layer ``l`` has weights
``params[w_off[l] : w_off[l] + n_in * n_out]`` viewed as ``(n_in, n_out)`` and biases
``params[b_off[l] : b_off[l] + n_out]``, with ``(n_in, n_out) = shapes[l]``. The gradient
``grads`` has the same layout, so an optimiser step is one fused pass over flat arrays.
Matrix products go through BLAS (``np.dot`` with an output buffer); bias, activation, loss
and activation derivatives are fused around them.

Activation kinds: ``0`` logistic sigmoid, ``1`` identity. Loss kinds: ``0`` cross-entropy
(sigmoid outputs, targets in [0, 1]), ``1`` squared error. Losses are per-sample sums over
output units; the gradient is that of the batch mean (plus ``alpha / 2 * ||W||^2``).
"""

import numpy as np

from ._jit import njit
from ._math import add_bias_activate, sigmoid, softplus

ACT_SIGMOID = 0
ACT_LINEAR = 1
LOSS_CROSS_ENTROPY = 0
LOSS_SQUARED_ERROR = 1


@njit
def layer_views(params, shapes, w_off, b_off, layer):
    """Weight ``(n_in, n_out)`` and bias ``(n_out,)`` views of one layer."""
    n_in = shapes[layer, 0]
    n_out = shapes[layer, 1]
    W = params[w_off[layer] : w_off[layer] + n_in * n_out].reshape((n_in, n_out))
    c = params[b_off[layer] : b_off[layer] + n_out]
    return W, c


@njit
def forward_layers(X, params, shapes, w_off, b_off, act_kind, first, stop, out, buf_a, buf_b, chunk):
    """Run layers ``first .. stop - 1`` on ``X``, ``chunk`` rows at a time, into ``out``.

    ``buf_a`` and ``buf_b`` are flat scratch buffers of at least ``chunk * max width``.
    """
    n = X.shape[0]
    for r0 in range(0, n, chunk):
        rows = min(chunk, n - r0)
        inp = X[r0 : r0 + rows]
        for layer in range(first, stop):
            W, c = layer_views(params, shapes, w_off, b_off, layer)
            n_out = shapes[layer, 1]
            if layer == stop - 1:
                dest = out[r0 : r0 + rows]
            elif (layer - first) % 2 == 0:
                dest = buf_a[: rows * n_out].reshape((rows, n_out))
            else:
                dest = buf_b[: rows * n_out].reshape((rows, n_out))
            np.dot(inp, W, dest)
            add_bias_activate(dest, c, act_kind[layer] == ACT_SIGMOID)
            inp = dest


@njit
def batch_loss_grad(
    Xb, params, grads, shapes, w_off, b_off, act_kind, loss_kind, alpha, acts, act_off, delta_a, delta_b
):
    """Loss of one batch and the gradient of its mean into ``grads``.

    ``Xb`` (b, n_features) is both the input and the target. ``acts`` is a flat buffer
    holding every layer's activations (layer ``l`` at ``act_off[l]``, ``b * n_out`` values);
    ``delta_a`` / ``delta_b`` are flat scratch of at least ``b * max width``.

    Returns the summed (not averaged) loss of the batch, without the L2 term.
    """
    b, n_features = Xb.shape
    n_layers = shapes.shape[0]
    one = Xb.dtype.type(1.0)
    two = Xb.dtype.type(2.0)
    inv_b = one / Xb.dtype.type(b)

    inp = Xb
    for layer in range(n_layers - 1):
        W, c = layer_views(params, shapes, w_off, b_off, layer)
        n_out = shapes[layer, 1]
        dest = acts[act_off[layer] : act_off[layer] + b * n_out].reshape((b, n_out))
        np.dot(inp, W, dest)
        add_bias_activate(dest, c, act_kind[layer] == ACT_SIGMOID)
        inp = dest

    # Output layer: pre-activation, loss and output delta in one pass, so the
    # cross-entropy is computed from the pre-activation (exact, no log(0)).
    last = n_layers - 1
    W, c = layer_views(params, shapes, w_off, b_off, last)
    Z = acts[act_off[last] : act_off[last] + b * n_features].reshape((b, n_features))
    np.dot(inp, W, Z)
    delta = delta_a[: b * n_features].reshape((b, n_features))
    # Per-element losses go to a scratch row and are summed apart: a float64 running sum
    # inside the fused loop would be a reduction, which LLVM does not vectorise.
    row_loss = delta_b[:n_features]
    loss = 0.0
    out_sigmoid = act_kind[last] == ACT_SIGMOID
    cross_entropy = loss_kind == LOSS_CROSS_ENTROPY
    for i in range(b):
        z_row = Z[i]
        x_row = Xb[i]
        d_row = delta[i]
        if out_sigmoid and cross_entropy:
            for j in range(n_features):
                z = z_row[j] + c[j]
                x = x_row[j]
                a = sigmoid(z)
                # -x log a - (1 - x) log(1 - a) = softplus(z) - x z: exact, no log(0)
                row_loss[j] = softplus(z) - x * z
                d_row[j] = (a - x) * inv_b
                z_row[j] = a
        elif out_sigmoid:
            for j in range(n_features):
                a = sigmoid(z_row[j] + c[j])
                e = a - x_row[j]
                row_loss[j] = e * e
                d_row[j] = two * e * a * (one - a) * inv_b
                z_row[j] = a
        else:
            for j in range(n_features):
                a = z_row[j] + c[j]
                e = a - x_row[j]
                row_loss[j] = e * e
                d_row[j] = two * e * inv_b
                z_row[j] = a
        for j in range(n_features):
            loss += row_loss[j]

    # Backward pass: gradients of every layer, deltas ping-ponging between two buffers.
    for layer in range(last, -1, -1):
        n_in = shapes[layer, 0]
        n_out = shapes[layer, 1]
        if layer == 0:
            layer_in = Xb
        else:
            layer_in = acts[act_off[layer - 1] : act_off[layer - 1] + b * n_in].reshape((b, n_in))
        gW, gc = layer_views(grads, shapes, w_off, b_off, layer)
        np.dot(layer_in.T, delta, gW)
        for j in range(n_out):
            gc[j] = 0.0
        for i in range(b):
            for j in range(n_out):
                gc[j] += delta[i, j]
        W, _ = layer_views(params, shapes, w_off, b_off, layer)
        if alpha != 0.0:
            a_ = Xb.dtype.type(alpha)
            for i in range(n_in):
                for j in range(n_out):
                    gW[i, j] += a_ * W[i, j]
        if layer > 0:
            buf = delta_b if (last - layer) % 2 == 0 else delta_a
            new_delta = buf[: b * n_in].reshape((b, n_in))
            np.dot(delta, W.T, new_delta)
            if act_kind[layer - 1] == ACT_SIGMOID:
                for i in range(b):
                    for j in range(n_in):
                        a = layer_in[i, j]
                        new_delta[i, j] *= a * (one - a)
            delta = new_delta
    return loss


@njit
def sgd_step(params, grads, velocity, learning_rate, momentum):
    """Classical momentum: ``v = momentum * v - lr * g``; ``params += v``."""
    lr = params.dtype.type(learning_rate)
    mom = params.dtype.type(momentum)
    for i in range(params.shape[0]):
        v = mom * velocity[i] - lr * grads[i]
        velocity[i] = v
        params[i] += v


@njit
def adam_step(params, grads, m, v, step, learning_rate, beta1, beta2, epsilon):
    """Adam (Kingma & Ba) with the bias correction folded into the step size.

    ``step`` is the 1-based index of this update.
    """
    dtype = params.dtype.type
    lr_t = dtype(learning_rate * np.sqrt(1.0 - beta2**step) / (1.0 - beta1**step))
    b1 = dtype(beta1)
    b2 = dtype(beta2)
    one = dtype(1.0)
    eps = dtype(epsilon)
    for i in range(params.shape[0]):
        g = grads[i]
        mi = b1 * m[i] + (one - b1) * g
        vi = b2 * v[i] + (one - b2) * g * g
        m[i] = mi
        v[i] = vi
        params[i] -= lr_t * mi / (np.sqrt(vi) + eps)


@njit
def finetune_epoch(
    X,
    order,
    params,
    grads,
    state_a,
    state_b,
    step,
    solver,
    learning_rate,
    momentum,
    beta1,
    beta2,
    epsilon,
    alpha,
    batch_size,
    shapes,
    w_off,
    b_off,
    act_kind,
    loss_kind,
    Xb,
    acts,
    act_off,
    delta_a,
    delta_b,
):
    """One epoch of minibatch backprop over the rows ``order`` of ``X``.

    ``solver`` 0 is SGD with momentum (``state_a`` the velocity), 1 is Adam (``state_a``,
    ``state_b`` the moment estimates). ``step`` is the number of updates made so far.
    ``Xb`` is a ``(batch_size, n_features)`` gather buffer.

    Returns
    -------
    loss_sum : float
        Summed per-sample loss over the epoch (without the L2 term).
    step : int
        Updated number of optimiser steps.
    """
    n = order.shape[0]
    total = 0.0
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        batch = Xb[:b]
        for i in range(b):
            batch[i] = X[order[start + i]]
        total += batch_loss_grad(
            batch, params, grads, shapes, w_off, b_off, act_kind, loss_kind, alpha, acts, act_off, delta_a, delta_b
        )
        step += 1
        if solver == 0:
            sgd_step(params, grads, state_a, learning_rate, momentum)
        else:
            adam_step(params, grads, state_a, state_b, step, learning_rate, beta1, beta2, epsilon)
    return total, step
