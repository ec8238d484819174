"""Forward and backward passes of a stack of dense layers, with the optimiser fused in.

All parameters of the network live in one flat vector ``params``; layer ``l`` has weights
``params[w_off[l] : w_off[l] + n_in * n_out]`` viewed as ``(n_in, n_out)`` and biases
``params[b_off[l] : b_off[l] + n_out]``, with ``(n_in, n_out) = shapes[l]``. The gradient
``grads`` and the optimiser's state share that layout.

The backward pass of a layer runs over fixed blocks of its input units (rows of ``W``),
in parallel (see :mod:`skdae._kernels._dense`): a block computes its rows of the weight
gradient, its columns of the next delta from the *old* weights, and then applies the
optimiser step to its rows while they are in cache. Blocks touch disjoint memory, so the
result does not depend on the thread count.

Codes (defined in :mod:`skdae._kernels._codes`). Activation kinds: ``0`` logistic sigmoid, ``1`` identity. Loss kinds: ``0`` cross-entropy
(sigmoid outputs, targets in [0, 1]), ``1`` squared error. Losses are per-sample sums over
output units; the gradient is that of the batch mean (plus ``alpha / 2 * ||W||^2``).
Solvers: ``-1`` none (gradient only), ``0`` SGD with momentum, ``1`` Adam.
"""

import functools

import numpy as np
from numba import prange, types

from ._blas import block_gemm, gemm, gemm_problem
from ._dense import (
    GEMM_PROBLEM,
    LAYER_MISMATCH,
    OUTPUT_MISMATCH,
    block_bounds,
    dense_forward,
    dense_pointer,
    for_each_block,
    gather_csr_rows,
    gather_rows,
    n_blocks,
)
from ._jit import KernelPointer, as_readonly, block_signature, block_types, njit, unliteral, unpack_args
from ._math import sigmoid, softplus

from ._codes import (  # noqa: F401
    ACT_LINEAR,
    ACT_SIGMOID,
    LOSS_CROSS_ENTROPY,
    LOSS_SQUARED_ERROR,
    SOLVER_ADAM,
    SOLVER_NONE,
    SOLVER_SGD,
)

# The codec's quantizer and rate term, which batch_step applies to the code layer. A
# module, not names: _quantized's epoch kernel calls batch_step in turn, and each module
# is complete by the time a kernel compiles (Numba resolves module attributes then).
from . import _quantized


@njit(inline="always")
def layer_views(params, shapes, w_off, b_off, layer):
    """Weight ``(n_in, n_out)`` and bias ``(n_out,)`` views of one layer."""
    n_in = shapes[layer, 0]
    n_out = shapes[layer, 1]
    W = params[w_off[layer] : w_off[layer] + n_in * n_out].reshape((n_in, n_out))
    c = params[b_off[layer] : b_off[layer] + n_out]
    return W, c


@njit
def forward_layers(X, params, shapes, w_off, b_off, act_kind, first, stop, out, buf_a, buf_b, chunk,
                   dense_block):
    """Run layers ``first .. stop - 1`` on ``X``, ``chunk`` rows at a time, into ``out``.

    ``buf_a`` and ``buf_b`` are flat scratch buffers of at least ``chunk * max width``.
    ``dense_block`` is :func:`~skdae._kernels._dense.dense_pointer` of the dtype.
    """
    n = X.shape[0]
    for r0 in range(0, n, chunk):
        rows = n - r0 if n - r0 < chunk else chunk  # min(): see _jit.njit
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
            dense_forward(as_readonly(inp), W, unliteral(False), c,
                          act_kind[layer] == ACT_SIGMOID, dest, dense_block)
            inp = dest


@njit(inline="always")
def _update_range(params, grads, state_a, state_b, start, stop, solver, lr, momentum, beta1, beta2, eps):
    """Optimiser step on ``params[start:stop]`` (``lr`` already bias-corrected for Adam)."""
    # Slices and 0-based loops: they vectorise (see _dense).
    p = params[start:stop]
    g = grads[start:stop]
    if solver == SOLVER_SGD:
        vel = state_a[start:stop]
        for i in range(p.shape[0]):
            v = momentum * vel[i] - lr * g[i]
            vel[i] = v
            p[i] += v
    elif solver == SOLVER_ADAM:
        one = params.dtype.type(1.0)
        m1 = state_a[start:stop]
        m2 = state_b[start:stop]
        for i in range(p.shape[0]):
            gi = g[i]
            m = beta1 * m1[i] + (one - beta1) * gi
            v = beta2 * m2[i] + (one - beta2) * gi * gi
            m1[i] = m
            m2[i] = v
            p[i] -= lr * m / (np.sqrt(v) + eps)


# Inlined into batch_step: it only packs its arguments for for_each_block, which would
# cost more compiled alone (see _jit.njit). So is _weight_step.
@njit(inline="always")
def _output_layer(inp, W, c, Xb, out_sigmoid, cross_entropy, inv_b, Z, delta, loss_cols, accumulate,
                  block):
    """Output pre-activation, loss and delta, fused per block of output units.

    With ``accumulate``, ``Z`` already holds a term of the pre-activation (the linear
    path's reconstruction) and the layer's product is added to it.

    The cross-entropy is ``softplus(z) - x z``, exact from the pre-activation (no log 0).
    Losses are summed per output unit into ``loss_cols`` (float64): per-column sums have
    no cross-lane reduction, so the loops vectorise. Slices and 0-based loops throughout,
    for the same reason (see _dense). ``block`` is :func:`_output_block` (see
    :func:`layer_pointers`).
    """
    # The block's argument types, fixed (see layer_pointers).
    for_each_block(block, (as_readonly(inp), as_readonly(W), as_readonly(c), as_readonly(Xb),
                           unliteral(out_sigmoid), unliteral(cross_entropy), inv_b, Z, delta,
                           loss_cols, unliteral(accumulate)))


@njit
def _output_block(args, blocks, blk):
    """Output block ``blk`` of ``blocks`` of :func:`_output_layer` (``blk`` -1: the check,
    see :func:`~skdae._kernels._dense.for_each_block`)."""
    (inp, W, c, Xb, out_sigmoid, cross_entropy, inv_b, Z, delta, loss_cols,
     accumulate) = unpack_args(args)
    b, n_in = inp.shape
    m = Z.shape[1]
    if blk < 0:
        found = gemm_problem(unliteral(False), unliteral(False), b, m, n_in, inp.shape,
                             inp.strides, n_in, W.shape, W.strides, m, Z.shape, Z.strides, m,
                             Z.itemsize)
        if found != 0:
            return -(GEMM_PROBLEM + found)
        if (c.shape[0] != m or loss_cols.shape[0] != m or Xb.shape[0] < b
                or Xb.shape[1] != m or delta.shape[0] < b or delta.shape[1] != m):
            return -OUTPUT_MISMATCH
        return n_blocks(m)
    one = Z.dtype.type(1.0)
    two = Z.dtype.type(2.0)
    j0, j1 = block_bounds(m, blocks, blk)
    if j1 > j0:
        block_gemm(False, False, b, j1 - j0, n_in, 1.0, inp, n_in, W[:, j0:], m,
                   1.0 if accumulate else 0.0, Z[:, j0:], m)
        width = j1 - j0
        bias = c[j0:j1]
        lc = loss_cols[j0:j1]
        for j in range(width):
            lc[j] = 0.0
        for i in range(b):
            z = Z[i, j0:j1]
            x = Xb[i, j0:j1]
            d = delta[i, j0:j1]
            if out_sigmoid and cross_entropy:
                for j in range(width):
                    zj = z[j] + bias[j]
                    d[j] = softplus(zj) - x[j] * zj  # the loss, until the next loop
                    z[j] = sigmoid(zj)
                for j in range(width):
                    lc[j] += d[j]
                    d[j] = (z[j] - x[j]) * inv_b
            elif out_sigmoid:
                for j in range(width):
                    a = sigmoid(z[j] + bias[j])
                    e = a - x[j]
                    d[j] = two * e * a * (one - a) * inv_b
                    z[j] = a
                    lc[j] += e * e
            else:
                for j in range(width):
                    a = z[j] + bias[j]
                    e = a - x[j]
                    d[j] = two * e * inv_b
                    z[j] = a
                    lc[j] += e * e
    return 0


@njit(inline="always")
def _weight_step(layer_in, delta, W, gW, w_start, b_start, new_delta, propagate, sigmoid_below,
                 alpha, params, grads, state_a, state_b, solver, lr, momentum, beta1, beta2, eps,
                 block):
    """Per block of input units ``[i0, i1)``: weight gradient rows, delta columns for the
    layer below (from the old weights), then the optimiser step on those rows; block 0
    also the bias gradient (column sums of ``delta``) and its step. ``block`` is
    :func:`_weight_block` (see :func:`layer_pointers`)."""
    # The block's argument types, fixed (see layer_pointers).
    for_each_block(block, (as_readonly(layer_in), as_readonly(delta), as_readonly(W), gW,
                           unliteral(w_start), unliteral(b_start), new_delta,
                           unliteral(propagate), unliteral(sigmoid_below), alpha, params, grads,
                           state_a, state_b, unliteral(solver), lr, momentum, beta1, beta2, eps))


@njit
def _weight_block(args, blocks, blk):
    """Input block ``blk`` of ``blocks`` of :func:`_weight_step` (``blk`` -1: the check,
    see :func:`~skdae._kernels._dense.for_each_block`)."""
    (layer_in, delta, W, gW, w_start, b_start, new_delta, propagate, sigmoid_below, alpha,
     params, grads, state_a, state_b, solver, lr, momentum, beta1, beta2,
     eps) = unpack_args(args)
    b, n_in = layer_in.shape
    n_out = delta.shape[1]
    if blk < 0:
        found = gemm_problem(unliteral(True), unliteral(False), n_in, n_out, b, layer_in.shape,
                             layer_in.strides, n_in, delta.shape, delta.strides, n_out, gW.shape,
                             gW.strides, n_out, gW.itemsize)
        if found == 0 and propagate:
            found = gemm_problem(unliteral(False), unliteral(True), b, n_in, n_out, delta.shape,
                                 delta.strides, n_out, W.shape, W.strides, n_out,
                                 new_delta.shape, new_delta.strides, n_in, new_delta.itemsize)
        if found != 0:
            return -(GEMM_PROBLEM + found)
        n_params = params.shape[0]
        if (W.shape[0] != n_in or W.shape[1] != n_out or w_start < 0
                or w_start + n_in * n_out > n_params or b_start < 0
                or b_start + n_out > n_params or grads.shape[0] != n_params
                or (solver != SOLVER_NONE and state_a.shape[0] != n_params)
                or (solver == SOLVER_ADAM and state_b.shape[0] != n_params)):
            return -LAYER_MISMATCH
        return n_blocks(n_in)
    one = W.dtype.type(1.0)
    i0, i1 = block_bounds(n_in, blocks, blk)
    if i1 > i0:
        block_gemm(True, False, i1 - i0, n_out, b, 1.0, layer_in[:, i0:], n_in, delta, n_out, 0.0,
                   gW[i0:], n_out)
        if alpha != 0.0:
            for i in range(i1 - i0):
                g_row = gW[i0 + i]
                w_row = W[i0 + i]
                for j in range(n_out):
                    g_row[j] += alpha * w_row[j]
        if propagate:
            block_gemm(False, True, b, i1 - i0, n_out, 1.0, delta, n_out, W[i0:], n_out, 0.0,
                       new_delta[:, i0:], n_in)
            if sigmoid_below:
                for r in range(b):
                    a_seg = layer_in[r, i0:i1]
                    d_seg = new_delta[r, i0:i1]
                    for i in range(i1 - i0):
                        d_seg[i] *= a_seg[i] * (one - a_seg[i])
        _update_range(params, grads, state_a, state_b, w_start + i0 * n_out, w_start + i1 * n_out,
                      solver, lr, momentum, beta1, beta2, eps)
    if blk == 0:
        # The bias gradient (column sums of delta) and its step: a few microseconds of
        # work, here rather than in a kernel of its own (a third of a second of a cold
        # start). A call site of its own: one site for both ranges, in a loop, made
        # Adam's warm epoch 4 % slower.
        g = grads[b_start : b_start + n_out]
        for j in range(n_out):
            g[j] = 0.0
        for i in range(b):
            d = delta[i]
            for j in range(n_out):
                g[j] += d[j]
        _update_range(params, grads, state_a, state_b, b_start, b_start + n_out, solver, lr,
                      momentum, beta1, beta2, eps)
    return 0


@functools.cache
def layer_pointers(dtype):
    """The blocks of :func:`~skdae._kernels._dense.dense_forward`, :func:`_output_layer`
    and :func:`_weight_step` for ``dtype``: the ``dense_block``, ``output_block`` and
    ``weight_block`` arguments of the kernels here (separate arguments: Numba warns on a
    tuple of function pointers).

    A tuple of :class:`~skdae._kernels._jit.KernelPointer` (see there why), each block
    compiled once per dtype, for the exact argument types the kernels pass.
    """
    f, ro2, ro1, a2, a1 = block_types(dtype)
    cols = types.Array(types.float64, 1, "C")
    i8, flag = types.int64, types.boolean
    return (
        dense_pointer(dtype),
        KernelPointer(_output_block, block_signature(ro2, ro2, ro1, ro2, flag, flag, f, a2, a2,
                                                     cols, flag)),
        KernelPointer(_weight_block, block_signature(ro2, ro2, ro2, a2, i8, i8, a2, flag, flag,
                                                     f, a1, a1, a1, a1, i8, f, f, f, f, f)),
    )


# Inlined into its callers: as a compiled function of its own, its module (with every
# layer's kernels linked in) would be optimised and emitted once more (see _jit.njit).
@njit(inline="always")
def batch_step(Xb, params, grads, shapes, w_off, b_off, act_kind, loss_kind, alpha, acts, act_off,
               delta_a, delta_b, state_a, state_b, step, solver, learning_rate, momentum, beta1,
               beta2, epsilon, lin, dense_block, output_block, weight_block, code_layer=-1,
               quantizer=None):
    """Forward, backward and (unless ``solver`` is -1) one optimiser step on one batch.

    ``Xb`` (b, n_features) is both the input and the target. ``acts`` is a flat buffer
    holding every layer's activations (layer ``l`` at ``act_off[l]``, ``b * n_out`` values);
    ``delta_a`` / ``delta_b`` are flat scratch of at least ``b * max width``. ``step`` is the
    1-based index of this update (Adam's bias correction). ``grads`` receives the gradient.

    With ``quantizer`` given (``(lo, step, n_levels, noise, density, rate_weight,
    stats, side)``, one tuple: a call with more than 30 arguments compiles to one with
    ``*args``, which Numba cannot inline), the activations of layer ``code_layer`` go
    through :func:`~skdae._kernels._quantized.quantize_code_layer` before the decoder
    sees them (quantization-aware fine-tuning); the backward pass treats that step as the
    identity (straight through) inside the range, and for a code the quantizer clipped
    keeps only a gradient that moves it back towards the range
    (:func:`~skdae._kernels._quantized.drop_outward_gradient`; ``side``, int8
    ``(b, n_units)``, is scratch for the clipped side). With ``rate_weight`` above 0, the
    objective gains ``rate_weight`` times the bits of the quantized codes under the
    per-unit densities ``density``, whose gradient is added to the code's delta
    (:func:`~skdae._kernels._quantized.code_rate_gradient`, which also sums the codes
    into ``stats``); the returned loss includes that term.

    ``lin`` (``(n_codes, n_features)``, orthonormal rows; None or no rows without one)
    is a fixed linear path around the non-linear layers: the code (layer
    ``n_layers // 2 - 1``, linear) gains ``Xb @ lin.T`` and the output's pre-activation
    gains ``code @ lin``, so with
    the code and output layers' weights at zero the network is PCA with components
    ``lin``. ``lin`` is not trained; its decoder term adds ``delta_out @ lin.T`` to the
    code's delta.

    ``dense_block``, ``output_block`` and ``weight_block`` are :func:`layer_pointers`
    of the dtype.

    Returns the summed (not averaged) loss of the batch, without the L2 term.
    """
    dtype = params.dtype.type
    b, n_features = Xb.shape
    n_layers = shapes.shape[0]
    inv_b = dtype(1.0) / dtype(b)
    if solver == SOLVER_ADAM:
        lr = dtype(learning_rate * np.sqrt(1.0 - beta2**step) / (1.0 - beta1**step))
    else:
        lr = dtype(learning_rate)
    mom = dtype(momentum)
    b1 = dtype(beta1)
    b2 = dtype(beta2)
    eps = dtype(epsilon)
    alpha_ = dtype(alpha)

    # Every use of ``lin`` sits under ``lin is not None``: a kernel called with None is
    # compiled without the linear path's code (see finetune_epoch).
    lin_layer = n_layers // 2 - 1
    n_lin = 0
    if lin is not None:
        n_lin = lin.shape[0]
        if n_lin > 0 and (n_lin != shapes[lin_layer, 1] or lin.shape[1] != n_features):
            raise ValueError("the linear path does not match the code layer and the features")
    inp = Xb
    for layer in range(n_layers - 1):
        W, c = layer_views(params, shapes, w_off, b_off, layer)
        n_out = shapes[layer, 1]
        dest = acts[act_off[layer] : act_off[layer] + b * n_out].reshape((b, n_out))
        # The argument types of every dense_forward call (the encoding of the data between
        # RBMs, skdae._stream.bernoulli_hidden_means, too): one compiled kernel for all.
        dense_forward(as_readonly(inp), W, unliteral(False), c, act_kind[layer] == ACT_SIGMOID,
                      dest, dense_block)
        if lin is not None:
            if n_lin > 0 and layer == lin_layer:
                gemm(False, True, b, n_lin, n_features, 1.0, Xb, n_features, lin, n_features,
                     1.0, dest, n_lin)
        if quantizer is not None:
            if layer == code_layer:
                _quantized.quantize_code_layer(dest, quantizer[0], quantizer[1], quantizer[2],
                                               quantizer[3], quantizer[7])
        inp = dest

    last = n_layers - 1
    W, c = layer_views(params, shapes, w_off, b_off, last)
    Z = acts[act_off[last] : act_off[last] + b * n_features].reshape((b, n_features))
    delta = delta_a[: b * n_features].reshape((b, n_features))
    loss_cols = np.empty(n_features, np.float64)
    if lin is not None:
        if n_lin > 0:
            code = acts[act_off[lin_layer] : act_off[lin_layer] + b * n_lin].reshape((b, n_lin))
            gemm(False, False, b, n_features, n_lin, 1.0, code, n_lin, lin, n_features, 0.0, Z,
                 n_features)
    _output_layer(inp, W, c, Xb, act_kind[last] == ACT_SIGMOID, loss_kind == LOSS_CROSS_ENTROPY,
                  inv_b, Z, delta, loss_cols, n_lin > 0, output_block)
    loss = 0.0
    for j in range(n_features):
        loss += loss_cols[j]
    if lin is not None:
        lin_delta = np.empty((b, n_lin), params.dtype)
        if n_lin > 0:
            gemm(False, True, b, n_lin, n_features, 1.0, delta, n_features, lin, n_features,
                 0.0, lin_delta, n_lin)

    for layer in range(last, -1, -1):
        n_in = shapes[layer, 0]
        if layer == 0:
            layer_in = Xb
        else:
            layer_in = acts[act_off[layer - 1] : act_off[layer - 1] + b * n_in].reshape((b, n_in))
        W, _ = layer_views(params, shapes, w_off, b_off, layer)
        gW, _ = layer_views(grads, shapes, w_off, b_off, layer)
        buf = delta_b if (last - layer) % 2 == 0 else delta_a
        new_delta = buf[: b * n_in].reshape((b, n_in))
        _weight_step(layer_in, delta, W, gW, w_off[layer], b_off[layer], new_delta, layer > 0,
                     layer > 0 and act_kind[layer - 1] == ACT_SIGMOID, alpha_, params, grads,
                     state_a, state_b, solver, lr, mom, b1, b2, eps, weight_block)
        if lin is not None:
            if n_lin > 0 and layer == lin_layer + 1:
                # The code's delta from the linear path's decoder term (the code is linear).
                for r in range(b):
                    d_row = new_delta[r]
                    l_row = lin_delta[r]
                    for j in range(n_lin):
                        d_row[j] += l_row[j]
        if quantizer is not None:
            if layer == code_layer + 1:
                _quantized.drop_outward_gradient(new_delta, quantizer[7])
            rate_weight = quantizer[5]
            if layer == code_layer + 1 and rate_weight > 0.0:
                n_code = shapes[code_layer, 1]
                code = acts[act_off[code_layer] : act_off[code_layer] + b * n_code].reshape(
                    (b, n_code))
                bits = _quantized.code_rate_gradient(
                    code, quantizer[0], quantizer[1], quantizer[2], quantizer[4], rate_weight / b,
                    act_kind[code_layer] == ACT_SIGMOID, new_delta, quantizer[6])
                loss += rate_weight * bits
        delta = new_delta
    return loss


@njit
def batch_loss_grad(Xb, params, grads, shapes, w_off, b_off, act_kind, loss_kind, alpha, acts, act_off,
                    delta_a, delta_b, lin, dense_block, output_block, weight_block):
    """Loss of one batch and the gradient of its mean into ``grads`` (no update).

    ``lin``: the linear path (see :func:`batch_step`), or None.
    ``dense_block``, ``output_block`` and ``weight_block`` are :func:`layer_pointers` of
    the dtype.

    Returns the summed (not averaged) loss of the batch, without the L2 term.
    """
    empty = np.empty(0, params.dtype)
    return batch_step(Xb, params, grads, shapes, w_off, b_off, act_kind, loss_kind, alpha, acts,
                      act_off, delta_a, delta_b, empty, empty, 1, SOLVER_NONE, 0.0, 0.0, 0.0, 0.0, 1.0,
                      lin, dense_block, output_block, weight_block)


@njit(parallel=True)
def sgd_step(params, grads, velocity, learning_rate, momentum):
    """Classical momentum on whole arrays: ``v = momentum * v - lr * g``; ``params += v``."""
    lr = params.dtype.type(learning_rate)
    mom = params.dtype.type(momentum)
    n = params.shape[0]
    blocks = 2 * (n // 65536 + 1)  # elementwise: any fixed split gives the same result
    for blk in prange(blocks):
        s, e = block_bounds(n, blocks, blk)
        _update_range(params, grads, velocity, velocity, s, e, SOLVER_SGD, lr, mom, mom, mom, mom)


@njit(parallel=True)
def adam_step(params, grads, m, v, step, learning_rate, beta1, beta2, epsilon):
    """Adam (Kingma & Ba) on whole arrays, bias correction folded into the step size.

    ``step`` is the 1-based index of this update.
    """
    dtype = params.dtype.type
    lr_t = dtype(learning_rate * np.sqrt(1.0 - beta2**step) / (1.0 - beta1**step))
    n = params.shape[0]
    blocks = 2 * (n // 65536 + 1)  # elementwise: any fixed split gives the same result
    for blk in prange(blocks):
        s, e = block_bounds(n, blocks, blk)
        _update_range(params, grads, m, v, s, e, SOLVER_ADAM, lr_t, dtype(0.0), dtype(beta1),
                      dtype(beta2), dtype(epsilon))


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
    lin,
    dense_block,
    output_block,
    weight_block,
):
    """One epoch of minibatch backprop over the rows ``order`` of ``X``.

    ``solver`` 0 is SGD with momentum (``state_a`` the velocity), 1 is Adam (``state_a``,
    ``state_b`` the moment estimates). ``step`` is the number of updates made so far.
    ``Xb`` is a ``(batch_size, n_features)`` gather buffer. ``lin`` is the linear path
    (see :func:`batch_step`), or None: the kernel is then compiled without the linear
    path's code (three checked GEMM calls, a tenth of its compile). ``dense_block``,
    ``output_block`` and ``weight_block`` are :func:`layer_pointers` of the dtype.

    Returns
    -------
    loss_sum : float
        Summed per-sample loss over the epoch (without the L2 term).
    step : int
        Updated number of optimiser steps.
    """
    n_params = params.shape[0]
    if state_a.shape[0] != n_params or (solver == SOLVER_ADAM and state_b.shape[0] != n_params):
        raise ValueError("optimiser state does not match the parameters")
    n = order.shape[0]
    total = 0.0
    for start in range(0, n, batch_size):
        b = n - start if n - start < batch_size else batch_size  # min(): see _jit.njit
        batch = Xb[:b]
        gather_rows(X, order, start, batch)
        step += 1
        total += batch_step(batch, params, grads, shapes, w_off, b_off, act_kind, loss_kind, alpha,
                            acts, act_off, delta_a, delta_b, state_a, state_b, step, solver,
                            learning_rate, momentum, beta1, beta2, epsilon, lin, dense_block,
                            output_block, weight_block)
    return total, step


@njit
def finetune_epoch_csr(data, indices, indptr, mean, scale, standardize, order, params, grads,
                       state_a, state_b, step, solver, learning_rate, momentum, beta1, beta2,
                       epsilon, alpha, batch_size, shapes, w_off, b_off, act_kind, loss_kind, Xb,
                       acts, act_off, delta_a, delta_b, lin, dense_block, output_block,
                       weight_block):
    """:func:`finetune_epoch` over the rows of a CSR matrix ``(data, indices, indptr)``.

    Each minibatch is densified into ``Xb`` (standardised with ``mean`` and ``scale`` when
    ``standardize``) just before its step; the matrix itself stays sparse.
    """
    n_params = params.shape[0]
    if state_a.shape[0] != n_params or (solver == SOLVER_ADAM and state_b.shape[0] != n_params):
        raise ValueError("optimiser state does not match the parameters")
    n = order.shape[0]
    total = 0.0
    for start in range(0, n, batch_size):
        b = n - start if n - start < batch_size else batch_size  # min(): see _jit.njit
        batch = Xb[:b]
        gather_csr_rows(data, indices, indptr, order, start, mean, scale, standardize, batch)
        step += 1
        total += batch_step(batch, params, grads, shapes, w_off, b_off, act_kind, loss_kind, alpha,
                            acts, act_off, delta_a, delta_b, state_a, state_b, step, solver,
                            learning_rate, momentum, beta1, beta2, epsilon, lin, dense_block,
                            output_block, weight_block)
    return total, step
