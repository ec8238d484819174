"""BLAS ``?gemm`` callable from Numba kernels, with alpha, beta and strided blocks.

Numba's ``np.dot(a, b, out)`` covers ``out = a @ b`` only. Calling SciPy's BLAS through
the function pointers that ``scipy.linalg.cython_blas`` exports adds what the fused
kernels need: accumulation into an existing array (``beta``), scaling (``alpha``) and
sub-blocks of a larger row-major array (leading dimensions), so updates such as
``velocity = momentum * velocity + lr * H^T V`` need no temporary.

The wrappers take row-major (C-order) operands and translate to BLAS's column-major
convention by computing ``C^T = op(B)^T op(A)^T``.
"""

import numpy as np
from llvmlite import binding
from numba import types
from numba.extending import get_cython_function_address, overload

from ._jit import njit

# Kernels refer to BLAS by symbol name, registered with LLVM at import, so that compiled
# kernels can be cached on disk (a ctypes function pointer is a "dynamic global" that
# Numba refuses to cache). Every process imports this module before running a kernel.
for _name in ("sgemm", "dgemm"):
    binding.add_symbol(
        f"skdae_{_name}", get_cython_function_address("scipy.linalg.cython_blas", _name)
    )
_GEMM_SIG = types.void(*([types.voidptr] * 13))
_sgemm = types.ExternalFunction("skdae_sgemm", _GEMM_SIG)
_dgemm = types.ExternalFunction("skdae_dgemm", _GEMM_SIG)

_CHAR_N = 78  # ord("N")
_CHAR_T = 84  # ord("T")
_INT32_MAX = 2**31 - 1


def _type_problem(A, B, C):
    """What is wrong with the operands' Numba types, or None."""
    if not all(isinstance(X, types.Array) for X in (A, B, C)):
        return "gemm: A, B and C must be arrays"
    if not all(X.ndim == 2 for X in (A, B, C)):
        return "gemm: A, B and C must be 2-D arrays (views of the blocks)"
    if C.dtype not in (types.float32, types.float64) or not A.dtype == B.dtype == C.dtype:
        return "gemm: A, B and C must share one dtype, float32 or float64"
    if not C.mutable:
        return "gemm: C is read-only"
    return None


@njit
def _check_operand(X, rows, cols, ld, name):
    """``X`` holds a ``rows x cols`` row-major block with row stride ``ld``."""
    if X.shape[0] < rows or X.shape[1] < cols:
        raise ValueError("gemm: operand " + name + " is smaller than the block it must hold")
    if ld < max(1, cols) or ld > _INT32_MAX:
        raise ValueError("gemm: the leading dimension of " + name + " is out of range")
    # Strides matter only where BLAS steps by them: along a row of more than one element,
    # across more than one (non-empty) row.
    if cols > 1 and rows > 0 and X.strides[1] != X.itemsize:
        raise ValueError("gemm: operand " + name + " has non-contiguous rows")
    if rows > 1 and cols > 0 and X.strides[0] != ld * X.itemsize:
        raise ValueError("gemm: the row stride of " + name + " is not its leading dimension")


def check_gemm(trans_a, trans_b, m, n, k, A, lda, B, ldb, C, ldc):
    """Raise ValueError unless :func:`gemm` may be called with these arguments.

    BLAS gets raw pointers, which Numba's bounds checking cannot follow: this is the
    check instead. Each operand must be a 2-D array (a view whose first element is the
    block's top-left corner) at least as large as the block BLAS reads or writes (``A``
    ``m x k``, or ``k x m`` with ``trans_a``; ``B`` ``k x n``, or ``n x k`` with
    ``trans_b``; ``C`` ``m x n``), with unit stride along its rows and a row stride equal
    to the leading dimension passed; all three share one dtype (float32 or float64), ``C``
    is writable, and every size fits BLAS's 32-bit ints. It costs a few integer
    comparisons and allocates nothing. Wrong types (a 1-D or read-only array, mixed
    dtypes) are found when the caller is compiled, and raise the same way at run time.

    An exception raised inside a ``prange`` body does not reach the caller (Numba drops
    it), so kernels that call :func:`gemm` on blocks in parallel call this once, for the
    whole problem, before the parallel loop.

    Callable from compiled code only (it is implemented by an overload).
    """
    raise NotImplementedError("check_gemm is callable from Numba-compiled code only")


@overload(check_gemm)
def _check_gemm_overload(trans_a, trans_b, m, n, k, A, lda, B, ldb, C, ldc):
    problem = _type_problem(A, B, C)
    if problem is not None:

        def raise_problem(trans_a, trans_b, m, n, k, A, lda, B, ldb, C, ldc):
            raise ValueError(problem)

        return raise_problem

    def check(trans_a, trans_b, m, n, k, A, lda, B, ldb, C, ldc):
        if min(m, n, k) < 0 or max(m, n, k) > _INT32_MAX:
            raise ValueError("gemm: m, n and k must be non-negative 32-bit ints")
        if trans_a:
            _check_operand(A, k, m, lda, "A")
        else:
            _check_operand(A, m, k, lda, "A")
        if trans_b:
            _check_operand(B, n, k, ldb, "B")
        else:
            _check_operand(B, k, n, ldb, "B")
        _check_operand(C, m, n, ldc, "C")

    return check


@njit
def gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
    """Row-major ``C = alpha * op(A) @ op(B) + beta * C``.

    ``op(A)`` is ``m x k`` and ``op(B)`` is ``k x n``; ``A``, ``B``, ``C`` are 2-D arrays
    whose first element is the block's top-left corner, with row strides ``lda``, ``ldb``,
    ``ldc`` (in elements). All three must share one dtype, float32 or float64.

    Raises
    ------
    ValueError
        If the operands do not hold the blocks (see :func:`check_gemm`), which is checked
        on every call.
    """
    check_gemm(trans_a, trans_b, m, n, k, A, lda, B, ldb, C, ldc)
    if m == 0 or n == 0:
        return
    flags = np.empty(2, np.uint8)
    # Column-major view: C^T (n x m) = op(B)^T (n x k) @ op(A)^T (k x m).
    flags[0] = _CHAR_T if trans_b else _CHAR_N
    flags[1] = _CHAR_T if trans_a else _CHAR_N
    ints = np.empty(6, np.int32)
    ints[0] = n
    ints[1] = m
    ints[2] = k
    ints[3] = ldb
    ints[4] = lda
    ints[5] = ldc
    scalars = np.empty(2, C.dtype)
    scalars[0] = alpha
    scalars[1] = beta
    if C.itemsize == 4:
        _sgemm(flags[0:].ctypes, flags[1:].ctypes, ints[0:].ctypes, ints[1:].ctypes, ints[2:].ctypes,
               scalars[0:].ctypes, B.ctypes, ints[3:].ctypes, A.ctypes, ints[4:].ctypes,
               scalars[1:].ctypes, C.ctypes, ints[5:].ctypes)
    else:
        _dgemm(flags[0:].ctypes, flags[1:].ctypes, ints[0:].ctypes, ints[1:].ctypes, ints[2:].ctypes,
               scalars[0:].ctypes, B.ctypes, ints[3:].ctypes, A.ctypes, ints[4:].ctypes,
               scalars[1:].ctypes, C.ctypes, ints[5:].ctypes)
