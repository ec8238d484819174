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
from numba.extending import get_cython_function_address

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


@njit
def gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
    """Row-major ``C = alpha * op(A) @ op(B) + beta * C``.

    ``op(A)`` is ``m x k`` and ``op(B)`` is ``k x n``; ``A``, ``B``, ``C`` are arrays whose
    first element is the block's top-left corner, with row strides ``lda``, ``ldb``,
    ``ldc`` (in elements). All three must share one dtype, float32 or float64.
    """
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
