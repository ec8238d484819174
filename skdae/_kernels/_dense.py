"""Dense-layer building blocks split into fixed blocks of output columns.

Parallelism model (one for every kernel): BLAS runs single-threaded, and Numba's
``prange`` runs independent blocks on the cores. The blocks are fixed by the problem's
shape only — never by the number of threads — and every output element is written by
exactly one block, with any sum over blocks taken afterwards in block order. So a result
is bitwise the same for any thread count, and each block's GEMM and the fused pass after
it touch the same cache-resident memory. Threads are set by the caller
(:func:`skdae._base.thread_limits`), which also pins BLAS to one thread.

A parallel kernel checks the whole problem, then its ``prange`` body only calls the
block's function (``_dense_block`` here), compiled once, serially, and passed in as a
function pointer (:class:`~skdae._kernels._jit.KernelPointer`): that keeps a cold start
from compiling every loop body four times over.
"""

import functools

import numpy as np
from numba import prange, types

from ._blas import block_gemm, check_gemm
from ._jit import KernelPointer, as_readonly, block_types, njit, unliteral
from ._math import sigmoid

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


@njit(parallel=True)
def dense_forward(A, W, w_transposed, bias, sigmoid_units, out, block):
    """``out = f(A @ op(W) + bias)``, ``f`` sigmoid or identity, in column blocks.

    ``A`` is ``(n, k)``; ``W`` is ``(k, m)``, or ``(m, k)`` with ``w_transposed``; all
    C-contiguous. ``block`` is :func:`dense_pointer` of the dtype.
    """
    n, k = A.shape
    m = out.shape[1]
    # The blocks' GEMM operands are views of these: checked whole, before the parallel
    # loop, where an exception would be lost (see check_gemm).
    if w_transposed:
        check_gemm(False, True, n, m, k, A, k, W, k, out, m)
    else:
        check_gemm(False, False, n, m, k, A, k, W, m, out, m)
    A_in = as_readonly(A)
    W_in = as_readonly(W)
    bias_in = as_readonly(bias)
    transposed = unliteral(w_transposed)
    sigmoid_out = unliteral(sigmoid_units)
    blocks = n_blocks(m)
    for blk in prange(blocks):
        block(A_in, W_in, transposed, bias_in, sigmoid_out, out, blocks, np.int64(blk))


@njit
def _dense_block(A, W, w_transposed, bias, sigmoid_units, out, blocks, blk):
    """Column block ``blk`` of ``blocks`` of :func:`dense_forward`."""
    n, k = A.shape
    m = out.shape[1]
    j0, j1 = block_bounds(m, blocks, blk)
    if j1 > j0:
        if w_transposed:
            block_gemm(False, True, n, j1 - j0, k, 1.0, A, k, W[j0:], k, 0.0, out[:, j0:], m)
        else:
            block_gemm(False, False, n, j1 - j0, k, 1.0, A, k, W[:, j0:], m, 0.0, out[:, j0:], m)
        # Loops over slices from 0: with an index that could be negative, Numba's
        # wraparound check keeps LLVM from vectorising (7x slower here).
        b_seg = bias[j0:j1]
        for i in range(n):
            seg = out[i, j0:j1]
            if sigmoid_units:
                for j in range(seg.shape[0]):
                    seg[j] = sigmoid(seg[j] + b_seg[j])
            else:
                for j in range(seg.shape[0]):
                    seg[j] += b_seg[j]


@functools.cache
def dense_pointer(dtype):
    """:func:`_dense_block` for ``dtype``, the ``block`` argument of :func:`dense_forward`
    (a :class:`~skdae._kernels._jit.KernelPointer`, see there why)."""
    f, ro2, ro1, a2, _ = block_types(dtype)
    i8, flag = types.int64, types.boolean
    return KernelPointer(_dense_block, types.none(ro2, ro2, flag, ro1, flag, a2, i8, i8))


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
