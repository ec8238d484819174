"""BLAS ``?gemm`` callable from Numba kernels, with alpha, beta and strided blocks.

Numba's ``np.dot(a, b, out)`` covers ``out = a @ b`` only. Calling BLAS through function
pointers adds what the fused kernels need: accumulation into an existing array (``beta``),
scaling (``alpha``) and sub-blocks of a larger row-major array (leading dimensions), so
updates such as ``velocity = momentum * velocity + lr * H^T V`` need no temporary.

The wrappers take row-major (C-order) operands and translate to BLAS's column-major
convention by computing ``C^T = op(B)^T op(A)^T``.

Which BLAS
----------
Two OpenBLAS builds are loaded in every process that imports NumPy and SciPy: SciPy's
(32-bit ints, "LP64", exported by ``scipy.linalg.cython_blas``) and the one in NumPy's
wheel (64-bit ints, "ILP64", symbols ``scipy_sgemm_64_``). Single-threaded on the
kernels' block shapes (AMD EPYC Zen 4, OpenBLAS 0.3.30 vs 0.3.31, README "Performance"),
NumPy's build is 4-10 % faster on products with an untransposed ``B`` and SciPy's 5-10 %
faster with a transposed ``B``; so :func:`gemm` calls NumPy's build for the first and
SciPy's for the second. The rule is fixed (it depends on the call's transposition only),
so results never depend on timing or on the thread count.

Kernels name the two libraries by symbol, ``skdae_?gemm`` (LP64) and ``skdae_?gemm_ilp64``
(ILP64), each with one fixed ABI, bound to addresses when this module is imported. A
cached kernel therefore can never call a library with the wrong integer width: whatever a
process finds, the ILP64 name is bound to a function taking 64-bit ints. Without NumPy's
build (another platform, another wheel, or ``SKDAE_BLAS=scipy``), it is bound to a small
adapter that narrows the ints and calls SciPy's build, so everything works as before.
"""

import ctypes
import glob
import os

import numpy as np
from llvmlite import binding
from numba import types
from numba.extending import get_cython_function_address, overload

from ._jit import CACHE, njit

# Kernels refer to BLAS by symbol name, registered with LLVM at import, so that compiled
# kernels can be cached on disk (a ctypes function pointer is a "dynamic global" that
# Numba refuses to cache). Every process imports this module before running a kernel.
_GEMM_SIG = types.void(*([types.voidptr] * 13))
_LP64 = {name: get_cython_function_address("scipy.linalg.cython_blas", name)
         for name in ("sgemm", "dgemm")}
for _name, _address in _LP64.items():
    binding.add_symbol(f"skdae_{_name}", _address)
_sgemm = types.ExternalFunction("skdae_sgemm", _GEMM_SIG)
_dgemm = types.ExternalFunction("skdae_dgemm", _GEMM_SIG)
_sgemm_ilp64 = types.ExternalFunction("skdae_sgemm_ilp64", _GEMM_SIG)
_dgemm_ilp64 = types.ExternalFunction("skdae_dgemm_ilp64", _GEMM_SIG)


def _numpy_ilp64_gemm():
    """Addresses of ``sgemm`` and ``dgemm`` in the ILP64 OpenBLAS of NumPy's wheel, or None.

    The library is the one NumPy has already loaded (``numpy.libs``, next to the package,
    in the Linux wheels); ``SKDAE_BLAS=scipy`` skips it.
    """
    if os.environ.get("SKDAE_BLAS", "").strip().lower() == "scipy":
        return None
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "libscipy_openblas64_*.so*"))):
        try:
            lib = ctypes.CDLL(path)
            return {name: ctypes.cast(getattr(lib, f"scipy_{name}_64_"), ctypes.c_void_p).value
                    for name in ("sgemm", "dgemm")}
        except (OSError, AttributeError):
            continue
    return None


def _lp64_adapters():
    """Native functions with the ILP64 ``?gemm`` ABI that call SciPy's LP64 build.

    Compiled (a fraction of a second, not cached) only in a process without NumPy's ILP64
    build. The kernels check every size against 32-bit ints before calling BLAS, so the
    narrowing is exact.
    """
    from numba import cfunc

    i64 = types.CPointer(types.int64)
    sig = types.void(types.voidptr, types.voidptr, i64, i64, i64, types.voidptr, types.voidptr,
                     i64, types.voidptr, i64, types.voidptr, types.voidptr, i64)

    def narrowed(m, n, k, lda, ldb, ldc):
        ints = np.empty(6, np.int32)
        ints[0] = m[0]
        ints[1] = n[0]
        ints[2] = k[0]
        ints[3] = lda[0]
        ints[4] = ldb[0]
        ints[5] = ldc[0]
        return ints

    narrowed = njit(cache=False)(narrowed)

    @cfunc(sig, nopython=True)
    def sgemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
        ints = narrowed(m, n, k, lda, ldb, ldc)
        _sgemm(ta, tb, ints[0:].ctypes, ints[1:].ctypes, ints[2:].ctypes, alpha, A,
               ints[3:].ctypes, B, ints[4:].ctypes, beta, C, ints[5:].ctypes)

    @cfunc(sig, nopython=True)
    def dgemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
        ints = narrowed(m, n, k, lda, ldb, ldc)
        _dgemm(ta, tb, ints[0:].ctypes, ints[1:].ctypes, ints[2:].ctypes, alpha, A,
               ints[3:].ctypes, B, ints[4:].ctypes, beta, C, ints[5:].ctypes)

    # Kept alive with the module: LLVM holds only the addresses.
    return {"sgemm": sgemm, "dgemm": dgemm}


_ILP64 = _numpy_ilp64_gemm()
if _ILP64 is None:
    _ADAPTERS = _lp64_adapters()
    _ILP64 = {name: fn.address for name, fn in _ADAPTERS.items()}
    BLAS = "scipy"  # what gemm calls: SciPy's build only,
else:
    BLAS = "numpy+scipy"  # or NumPy's and SciPy's, by transposition (module docstring)
for _name, _address in _ILP64.items():
    binding.add_symbol(f"skdae_{_name}_ilp64", _address)
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


# What _operand_problem finds wrong with an operand (0: nothing).
_TOO_SMALL = 1
_BAD_LD = 2
_ROWS_NOT_CONTIGUOUS = 3
_STRIDE_NOT_LD = 4
_BAD_SIZES = 5
_BAD_TYPES = 6


@njit(inline="always")
def _operand_problem(X, rows, cols, ld):
    """Whether ``X`` holds a ``rows x cols`` row-major block with row stride ``ld``: 0, or
    the code of the first problem found."""
    if X.shape[0] < rows or X.shape[1] < cols:
        return _TOO_SMALL
    if ld < max(1, cols) or ld > _INT32_MAX:
        return _BAD_LD
    # Strides matter only where BLAS steps by them: along a row of more than one element,
    # across more than one (non-empty) row.
    if cols > 1 and rows > 0 and X.strides[1] != X.itemsize:
        return _ROWS_NOT_CONTIGUOUS
    if rows > 1 and cols > 0 and X.strides[0] != ld * X.itemsize:
        return _STRIDE_NOT_LD
    return 0


@njit(inline="always")
def _raise_operand_problem(problem, operand):
    """Raise the error of ``problem`` for operand 0 (A), 1 (B) or 2 (C).

    Every message is a constant: a message built at run time (string concatenation,
    formatting) would compile Numba's string machinery into every kernel, seconds of a
    cold start.
    """
    if problem == _TOO_SMALL:
        if operand == 0:
            raise ValueError("gemm: operand A is smaller than the block it must hold")
        if operand == 1:
            raise ValueError("gemm: operand B is smaller than the block it must hold")
        raise ValueError("gemm: operand C is smaller than the block it must hold")
    if problem == _BAD_LD:
        if operand == 0:
            raise ValueError("gemm: the leading dimension of A is out of range")
        if operand == 1:
            raise ValueError("gemm: the leading dimension of B is out of range")
        raise ValueError("gemm: the leading dimension of C is out of range")
    if problem == _ROWS_NOT_CONTIGUOUS:
        if operand == 0:
            raise ValueError("gemm: operand A has non-contiguous rows")
        if operand == 1:
            raise ValueError("gemm: operand B has non-contiguous rows")
        raise ValueError("gemm: operand C has non-contiguous rows")
    if operand == 0:
        raise ValueError("gemm: the row stride of A is not its leading dimension")
    if operand == 1:
        raise ValueError("gemm: the row stride of B is not its leading dimension")
    raise ValueError("gemm: the row stride of C is not its leading dimension")


def gemm_problem(trans_a, trans_b, m, n, k, A, lda, B, ldb, C, ldc):
    """0 when :func:`gemm` may be called with these arguments, else a nonzero code.

    The checks of :func:`check_gemm`, without raising. Callable from compiled code only.
    """
    raise NotImplementedError("gemm_problem is callable from Numba-compiled code only")


@overload(gemm_problem, jit_options={"cache": CACHE})
def _gemm_problem_overload(trans_a, trans_b, m, n, k, A, lda, B, ldb, C, ldc):
    if _type_problem(A, B, C) is not None:
        return lambda trans_a, trans_b, m, n, k, A, lda, B, ldb, C, ldc: _BAD_TYPES

    def problem(trans_a, trans_b, m, n, k, A, lda, B, ldb, C, ldc):
        if min(m, n, k) < 0 or max(m, n, k) > _INT32_MAX:
            return _BAD_SIZES
        if trans_a:
            found = _operand_problem(A, k, m, lda)
        else:
            found = _operand_problem(A, m, k, lda)
        if found == 0:
            if trans_b:
                found = _operand_problem(B, n, k, ldb)
            else:
                found = _operand_problem(B, k, n, ldb)
        if found == 0:
            found = _operand_problem(C, m, n, ldc)
        return found

    return problem


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
    it), so kernels that call :func:`block_gemm` on blocks in parallel call this once, for the
    whole problem, before the parallel loop.

    Callable from compiled code only (it is implemented by an overload).
    """
    raise NotImplementedError("check_gemm is callable from Numba-compiled code only")


# Not inlined: Numba's inliner of overloads loses track of variables assigned in branches
# (NumbaIRAssumptionWarning); a small function compiled per operand types instead.
@overload(check_gemm, jit_options={"cache": CACHE})
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
            problem = _operand_problem(A, k, m, lda)
        else:
            problem = _operand_problem(A, m, k, lda)
        if problem:
            _raise_operand_problem(problem, 0)
        if trans_b:
            problem = _operand_problem(B, n, k, ldb)
        else:
            problem = _operand_problem(B, k, n, ldb)
        if problem:
            _raise_operand_problem(problem, 1)
        problem = _operand_problem(C, m, n, ldc)
        if problem:
            _raise_operand_problem(problem, 2)

    return check


@njit(inline="always")
def _blas_ints(dtype, n, m, k, ldb, lda, ldc):
    """The six integer arguments of a column-major ``?gemm`` call, in BLAS's int type."""
    ints = np.empty(6, dtype)
    ints[0] = n
    ints[1] = m
    ints[2] = k
    ints[3] = ldb
    ints[4] = lda
    ints[5] = ldc
    return ints


@njit
def gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
    """Row-major ``C = alpha * op(A) @ op(B) + beta * C``.

    ``op(A)`` is ``m x k`` and ``op(B)`` is ``k x n``; ``A``, ``B``, ``C`` are 2-D arrays
    whose first element is the block's top-left corner, with row strides ``lda``, ``ldb``,
    ``ldc`` (in elements). All three must share one dtype, float32 or float64.

    Inside a ``prange`` loop, call :func:`block_gemm` instead.

    Raises
    ------
    ValueError
        If the operands do not hold the blocks (see :func:`check_gemm`), which is checked
        on every call.
    """
    check_gemm(trans_a, trans_b, m, n, k, A, lda, B, ldb, C, ldc)
    _gemm_call(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)


@njit(inline="always")
def block_gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
    """:func:`gemm` on a block of a problem already checked whole, inside a ``prange`` loop.

    The kernel checks the whole problem with :func:`check_gemm` before its parallel loop,
    where an error can be raised. Here the block's operands are checked again and the
    product is skipped (it cannot raise: a ``raise`` in a ``prange`` body would make
    Numba run the loop serially), so a block that did not fit its operands, which only a
    bug in a kernel's block arithmetic could cause, never makes BLAS touch memory the
    kernel was not given. Inlined: no compiled function of its own per operand type.
    """
    if gemm_problem(trans_a, trans_b, m, n, k, A, lda, B, ldb, C, ldc) == 0:
        _gemm_call(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)


@njit(inline="always")
def _gemm_call(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
    """The BLAS call of :func:`gemm`, operands unchecked."""
    if m == 0 or n == 0:
        return
    flags = np.empty(2, np.uint8)
    # Column-major view: C^T (n x m) = op(B)^T (n x k) @ op(A)^T (k x m).
    flags[0] = _CHAR_T if trans_b else _CHAR_N
    flags[1] = _CHAR_T if trans_a else _CHAR_N
    scalars = np.empty(2, C.dtype)
    scalars[0] = alpha
    scalars[1] = beta
    f0 = flags[0:].ctypes
    f1 = flags[1:].ctypes
    a = scalars[0:].ctypes
    b = scalars[1:].ctypes
    if trans_b:
        # SciPy's build (LP64): faster with a transposed B (module docstring).
        i32 = _blas_ints(np.int32, n, m, k, ldb, lda, ldc)
        if C.itemsize == 4:
            _sgemm(f0, f1, i32[0:].ctypes, i32[1:].ctypes, i32[2:].ctypes, a, B.ctypes,
                   i32[3:].ctypes, A.ctypes, i32[4:].ctypes, b, C.ctypes, i32[5:].ctypes)
        else:
            _dgemm(f0, f1, i32[0:].ctypes, i32[1:].ctypes, i32[2:].ctypes, a, B.ctypes,
                   i32[3:].ctypes, A.ctypes, i32[4:].ctypes, b, C.ctypes, i32[5:].ctypes)
    else:
        # NumPy's build (ILP64), or the adapter to SciPy's where it is missing.
        i64 = _blas_ints(np.int64, n, m, k, ldb, lda, ldc)
        if C.itemsize == 4:
            _sgemm_ilp64(f0, f1, i64[0:].ctypes, i64[1:].ctypes, i64[2:].ctypes, a, B.ctypes,
                         i64[3:].ctypes, A.ctypes, i64[4:].ctypes, b, C.ctypes, i64[5:].ctypes)
        else:
            _dgemm_ilp64(f0, f1, i64[0:].ctypes, i64[1:].ctypes, i64[2:].ctypes, a, B.ctypes,
                         i64[3:].ctypes, A.ctypes, i64[4:].ctypes, b, C.ctypes, i64[5:].ctypes)
