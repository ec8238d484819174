"""Dense-layer building blocks split into fixed blocks of output columns.

Parallelism model (one for every kernel): BLAS runs single-threaded, and Numba's
``prange`` runs independent blocks on the cores. The blocks are fixed by the problem's
shape only — never by the number of threads — and every output element is written by
exactly one block, with any sum over blocks taken afterwards in block order. So a result
is bitwise the same for any thread count, and each block's GEMM and the fused pass after
it touch the same cache-resident memory. Threads are set by the caller
(:func:`skdae._base.thread_limits`), which also pins BLAS to one thread.
"""

from numba import prange

from ._blas import gemm
from ._jit import njit
from ._math import sigmoid

# Target width of a column block. Even block counts balance two cores, and blocks this
# wide keep single-threaded GEMMs efficient.
BLOCK_WIDTH = 128


@njit
def n_blocks(m):
    """Number of column blocks for ``m`` columns: even, about ``BLOCK_WIDTH`` wide."""
    if m <= 1:
        return 1
    return max(2, 2 * ((m + 2 * BLOCK_WIDTH - 1) // (2 * BLOCK_WIDTH)))


@njit
def block_bounds(m, blocks, block):
    """``[start, stop)`` of column block ``block`` out of ``blocks`` over ``m`` columns."""
    width = (m + blocks - 1) // blocks
    start = min(m, block * width)
    return start, min(m, start + width)


@njit(parallel=True)
def dense_forward(A, W, w_transposed, bias, sigmoid_units, out):
    """``out = f(A @ op(W) + bias)``, ``f`` sigmoid or identity, in column blocks.

    ``A`` is ``(n, k)``; ``W`` is ``(k, m)``, or ``(m, k)`` with ``w_transposed``.
    """
    n, k = A.shape
    m = out.shape[1]
    blocks = n_blocks(m)
    for blk in prange(blocks):
        j0, j1 = block_bounds(m, blocks, blk)
        if j1 > j0:
            if w_transposed:
                gemm(False, True, n, j1 - j0, k, 1.0, A, k, W[j0:], k, 0.0, out[:, j0:], m)
            else:
                gemm(False, False, n, j1 - j0, k, 1.0, A, k, W[:, j0:], m, 0.0, out[:, j0:], m)
            for i in range(n):
                row = out[i]
                if sigmoid_units:
                    for j in range(j0, j1):
                        row[j] = sigmoid(row[j] + bias[j])
                else:
                    for j in range(j0, j1):
                        row[j] += bias[j]


@njit(parallel=True)
def gather_rows(X, order, start, out):
    """``out[i] = X[order[start + i]]`` for every row of ``out``."""
    for i in prange(out.shape[0]):
        out[i] = X[order[start + i]]
