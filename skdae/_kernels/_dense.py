"""Dense-layer building blocks split into fixed blocks of output columns.

Parallelism model (one for every kernel): BLAS runs single-threaded, and Numba's
``prange`` runs independent blocks on the cores. The blocks are fixed by the problem's
shape only — never by the number of threads — and every output element is written by
exactly one block, with any sum over blocks taken afterwards in block order. So a result
is bitwise the same for any thread count, and each block's GEMM and the fused pass after
it touch the same cache-resident memory. Threads are set by the caller
(:func:`skdae._base.thread_limits`), which also pins BLAS to one thread.

A kernel hands its arguments and its block function (``_dense_block`` here), compiled
once, serially, and passed in as a function pointer
(:class:`~skdae._kernels._jit.KernelPointer`), to :func:`for_each_block`: the one
``prange`` loop of the blocked kernels, compiled once for all of them, which has the
block function check the whole problem (raising what it finds) before any block runs.
That keeps a cold start from compiling a parallel loop, four libraries each, per kernel.
"""

import functools

import numpy as np
from numba import prange, types

from ._blas import block_gemm, gemm_problem, raise_gemm_problem
from ._jit import (
    KernelPointer,
    as_readonly,
    block_signature,
    block_types,
    erase_block,
    keep_alive,
    njit,
    unliteral,
    unpack_args,
)
from ._math import sigmoid
from ._random import standard_normal, uniform

# Columns per block, at most. Blocks are few and wide: a single-threaded GEMM split into
# narrow strided blocks loses a third of its speed, while two blocks already keep two
# cores busy. The count depends on the shape only, never on the thread count.
BLOCK_WIDTH = 1024


@njit(inline="always")
def n_blocks(m):
    """Number of column blocks for ``m`` columns: even, at most ``BLOCK_WIDTH`` wide."""
    if m <= 1:
        return 1
    return 2 * ((m + 2 * BLOCK_WIDTH - 1) // (2 * BLOCK_WIDTH))


@njit(inline="always")
def block_bounds(m, blocks, block):
    """``[start, stop)`` of column block ``block`` out of ``blocks`` over ``m`` columns."""
    width = (m + blocks - 1) // blocks
    # Comparisons, not min(): see _jit.njit on what builtins cost a cold start.
    start = block * width
    if start > m:
        start = m
    stop = start + width
    if stop > m:
        stop = m
    return start, stop


# What a block function's check finds wrong (see for_each_block), besides its GEMM
# operands' problems (gemm_problem's codes, offset by GEMM_PROBLEM): minus these codes.
BIAS_MISMATCH = 1
SAMPLES_MISMATCH = 2
TARGET_MISMATCH = 3
UPDATE_MISMATCH = 4
OUTPUT_MISMATCH = 5
LAYER_MISMATCH = 6
GEMM_PROBLEM = 16


@njit(internal=True)
def _raise_block_problem(code):
    """Raise the error of a block function's check code (constant messages: see
    :func:`skdae._kernels._blas._raise_gemm_problem` why)."""
    if code >= GEMM_PROBLEM:
        raise_gemm_problem(code - GEMM_PROBLEM)
    if code == BIAS_MISMATCH:
        raise ValueError("the biases do not match the output columns")
    if code == SAMPLES_MISMATCH:
        raise ValueError("the sample buffer does not match the output columns")
    if code == TARGET_MISMATCH:
        raise ValueError("the targets, error columns or bias velocities do not match the "
                         "output columns")
    if code == UPDATE_MISMATCH:
        raise ValueError("the hidden biases or their velocities do not match the weights")
    if code == OUTPUT_MISMATCH:
        raise ValueError("the output biases, targets, deltas or loss columns do not match the "
                         "output layer")
    raise ValueError("the layer's weights, gradient or optimiser state do not match the "
                     "parameters")


@njit(parallel=True, internal=True)
def _parallel_blocks(block, args):
    """Check, then run every block of ``block`` on ``args`` in parallel.

    ``block`` and ``args`` have the one type :func:`~skdae._kernels._jit.erase_block`
    gives every block function and its arguments, so this loop is compiled once.
    """
    blocks = block(args, 0, -1)
    if blocks < 0:
        _raise_block_problem(-blocks)
    for blk in prange(blocks):
        block(args, blocks, np.int64(blk))


@njit(inline="always")
def for_each_block(block, args):
    """Run block function ``block`` (a :class:`~skdae._kernels._jit.KernelPointer`) on
    the tuple ``args``: its check, then each of its blocks exactly once, in parallel.

    ``args`` must have exactly the types ``block`` was compiled for (checked while
    compiling). The block function, called with ``blk`` -1, checks the whole problem
    (every GEMM operand with :func:`~skdae._kernels._blas.gemm_problem`, every other array
    it indexes) and returns the number of blocks or a problem's negative code, raised here
    as a ValueError: an exception inside the parallel loop would be lost, and the block's
    C entry point cannot raise at all.
    """
    address, generic = erase_block(block, args)
    _parallel_blocks(generic, address)
    keep_alive(args)


@njit
def dense_forward(A, W, w_transposed, bias, sigmoid_units, out, block):
    """``out = f(A @ op(W) + bias)``, ``f`` sigmoid or identity, in column blocks.

    ``A`` is ``(n, k)``; ``W`` is ``(k, m)``, or ``(m, k)`` with ``w_transposed``; all
    C-contiguous. ``block`` is :func:`dense_pointer` of the dtype.
    """
    zero = out.dtype.type(0.0)
    # The block's error, bias-update and sampling terms are off (see _dense_block).
    for_each_block(block, (as_readonly(A), as_readonly(W), unliteral(w_transposed),
                           as_readonly(bias), unliteral(sigmoid_units), out, as_readonly(out),
                           np.empty(0, np.float64), unliteral(False), np.empty(0, out.dtype),
                           unliteral(False), zero, zero, out, unliteral(False), np.uint64(0)))


@njit
def _dense_block(args, blocks, blk):
    """Column block ``blk`` of ``blocks`` of :func:`dense_forward` and of CD's hidden and
    visible phases (``blk`` -1: the check, see :func:`for_each_block`).

    ``out = f(A @ op(W) + bias)``, ``f`` sigmoid or identity. With ``sample``, unit states
    drawn from ``out`` into ``samples``: Bernoulli(``out``) for sigmoid units, ``out`` +
    N(0, 1) noise otherwise, element ``(i, j)`` from counter ``i * m + j`` of stream
    ``key``. With ``record_error``, the squared error against ``target`` accumulated per
    column into ``error_cols`` (float64); with ``update_bias``, the momentum update
    ``vel = mom * vel + lr_b * (column sums of target - out)``. One block function for
    all three, so a cold start compiles it once.
    """
    (A, W, w_transposed, bias, sigmoid_units, out, target, error_cols, record_error, vel,
     update_bias, lr_b, mom, samples, sample, key) = unpack_args(args)
    n, k = A.shape
    m = out.shape[1]
    if blk < 0:
        found = gemm_problem(unliteral(False), w_transposed, n, m, k, A.shape, A.strides, k,
                             W.shape, W.strides, k if w_transposed else m, out.shape,
                             out.strides, m, out.itemsize)
        if found != 0:
            return -(GEMM_PROBLEM + found)
        if bias.shape[0] != m:
            return -BIAS_MISMATCH
        if sample and (samples.shape[0] < n or samples.shape[1] != m):
            return -SAMPLES_MISMATCH
        if (record_error or update_bias) and (target.shape[0] < n or target.shape[1] != m):
            return -TARGET_MISMATCH
        if (record_error and error_cols.shape[0] != m) or (update_bias and vel.shape[0] != m):
            return -TARGET_MISMATCH
        return n_blocks(m)
    one = out.dtype.type(1.0)
    zero = out.dtype.type(0.0)
    j0, j1 = block_bounds(m, blocks, blk)
    if j1 > j0:
        if w_transposed:
            block_gemm(False, True, n, j1 - j0, k, 1.0, A, k, W[j0:], k, 0.0, out[:, j0:], m)
        else:
            block_gemm(False, False, n, j1 - j0, k, 1.0, A, k, W[:, j0:], m, 0.0, out[:, j0:], m)
        # Loops over slices from 0: with an index that could be negative, Numba's
        # wraparound check keeps LLVM from vectorising (7x slower here).
        b_seg = bias[j0:j1]
        width = j1 - j0
        for i in range(n):
            seg = out[i, j0:j1]
            # Each row sampled right after its activation, while it is in cache.
            s = samples[i, j0:j1]
            base = i * m + j0
            if sigmoid_units:
                for j in range(width):
                    seg[j] = sigmoid(seg[j] + b_seg[j])
                if sample:
                    for j in range(width):
                        s[j] = one if uniform(key, base + j) < seg[j] else zero
            else:
                for j in range(width):
                    seg[j] += b_seg[j]
                if sample:
                    for j in range(width):
                        s[j] = seg[j] + standard_normal(key, base + j)
        if record_error:
            # Per-column float64 sums: no cross-lane reduction, so this vectorises.
            err = error_cols[j0:j1]
            for i in range(n):
                p = target[i, j0:j1]
                v = out[i, j0:j1]
                for j in range(width):
                    d = p[j] - v[j]
                    err[j] += d * d
        if update_bias:
            vel_seg = vel[j0:j1]
            for j in range(width):
                vel_seg[j] *= mom
            for i in range(n):
                p = target[i, j0:j1]
                v = out[i, j0:j1]
                for j in range(width):
                    vel_seg[j] += lr_b * (p[j] - v[j])
    return 0


@functools.cache
def dense_pointer(dtype):
    """:func:`_dense_block` for ``dtype``, the ``block`` argument of :func:`dense_forward`
    (a :class:`~skdae._kernels._jit.KernelPointer`, see there why)."""
    f, ro2, ro1, a2, a1 = block_types(dtype)
    flag = types.boolean
    return KernelPointer(_dense_block, block_signature(
        ro2, ro2, flag, ro1, flag, a2, ro2, types.Array(types.float64, 1, "C"), flag, a1, flag,
        f, f, a2, flag, types.uint64))


@njit
def gather_rows(X, order, start, out):
    """``out[i] = X[order[start + i]]`` for every row of ``out``.

    Serial: a batch is a few hundred kB, copied in microseconds, about what starting the
    threads would cost, while a parallel loop costs seconds of compile. Element loops, not
    row assignment: a row assignment compiles Numba's string formatting for its shape
    error.
    """
    n_features = out.shape[1]
    for i in range(out.shape[0]):
        src = X[order[start + i]]
        dst = out[i]
        for j in range(n_features):
            dst[j] = src[j]


@njit(inline="always")
def copy_rows(src, dst):
    """``dst[:] = src`` for 2-D arrays of one shape, element by element (see gather_rows)."""
    for i in range(dst.shape[0]):
        s = src[i]
        d = dst[i]
        for j in range(dst.shape[1]):
            d[j] = s[j]


@njit(parallel=True)
def gather_csr_rows(data, indices, indptr, order, start, mean, scale, standardize, out):
    """Densify rows ``order[start:start + len(out)]`` of a CSR matrix into ``out``.

    With ``standardize``, each value becomes ``(x - mean) / scale`` (zeros included), the
    same float operations the dense path applies to a whole chunk, so a sparse and a dense
    copy of the same data train the same model. Only one minibatch is ever dense.
    """
    n_features = out.shape[1]
    zero = out.dtype.type(0.0)
    for i in prange(out.shape[0]):
        row = order[start + i]
        dst = out[i]
        for j in range(n_features):
            dst[j] = zero
        for p in range(indptr[row], indptr[row + 1]):
            dst[indices[p]] = data[p]
        if standardize:
            for j in range(n_features):
                dst[j] = (dst[j] - mean[j]) / scale[j]
