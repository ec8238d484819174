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
from llvmlite import binding, ir
from numba import types
from numba.core import cgutils
from numba.extending import get_cython_function_address, intrinsic, overload

from ._jit import CACHE, njit, unliteral

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


# What _gemm_problem finds wrong with an operand (0: nothing).
_TOO_SMALL = 1
_BAD_LD = 2
_ROWS_NOT_CONTIGUOUS = 3
_STRIDE_NOT_LD = 4
_BAD_SIZES = 5
_BAD_TYPES = 6


# Compiled once (its arguments are ints and int tuples), called three times by
# _gemm_problem: inlined, it would be typed and lowered at five call sites.
@njit(internal=True)
def _operand_problem(shape, strides, itemsize, rows, cols, ld):
    """Whether an array of ``shape`` and ``strides`` holds a ``rows x cols`` row-major block
    with row stride ``ld``: 0, or the code of the first problem found."""
    if shape[0] < rows or shape[1] < cols:
        return _TOO_SMALL
    if ld < 1 or ld < cols or ld > _INT32_MAX:
        return _BAD_LD
    # Strides matter only where BLAS steps by them: along a row of more than one element,
    # across more than one (non-empty) row.
    if cols > 1 and rows > 0 and strides[1] != itemsize:
        return _ROWS_NOT_CONTIGUOUS
    if rows > 1 and cols > 0 and strides[0] != ld * itemsize:
        return _STRIDE_NOT_LD
    return 0


# Compiled once for every kernel and operand type: it sees the operands' shapes and strides
# only (int tuples whatever the array's dtype, layout or mutability), so the checks are not
# compiled again for each combination of array types a kernel passes.
@njit(internal=True)
def _gemm_problem(trans_a, trans_b, m, n, k, a_shape, a_strides, lda, b_shape, b_strides, ldb,
                  c_shape, c_strides, ldc, itemsize):
    """``(problem, operand)``: the first problem found (0: none) and its operand (0 A, 1 B,
    2 C)."""
    if m < 0 or n < 0 or k < 0 or m > _INT32_MAX or n > _INT32_MAX or k > _INT32_MAX:
        return _BAD_SIZES, 0
    if trans_a:
        found = _operand_problem(a_shape, a_strides, itemsize, k, m, lda)
    else:
        found = _operand_problem(a_shape, a_strides, itemsize, m, k, lda)
    if found:
        return found, 0
    if trans_b:
        found = _operand_problem(b_shape, b_strides, itemsize, n, k, ldb)
    else:
        found = _operand_problem(b_shape, b_strides, itemsize, k, n, ldb)
    if found:
        return found, 1
    return _operand_problem(c_shape, c_strides, itemsize, m, n, ldc), 2


@njit(inline="always")
def _problem_of(trans_a, trans_b, m, n, k, A, lda, B, ldb, C, ldc):
    """:func:`_gemm_problem` of these operands, its arguments cast to one signature (no
    literal flags or sizes, which would each compile it again)."""
    return _gemm_problem(unliteral(trans_a), unliteral(trans_b), np.int64(m), np.int64(n),
                         np.int64(k), A.shape, A.strides, np.int64(lda), B.shape, B.strides,
                         np.int64(ldb), C.shape, C.strides, np.int64(ldc), C.itemsize)


@njit(internal=True)
def _raise_gemm_problem(problem, operand):
    """Raise the error of ``problem`` for operand 0 (A), 1 (B) or 2 (C).

    Every message is a constant: a message built at run time (string concatenation,
    formatting) would compile Numba's string machinery into every kernel, seconds of a
    cold start. Compiled once, for every kernel.
    """
    if problem == _BAD_SIZES:
        raise ValueError("gemm: m, n and k must be non-negative 32-bit ints")
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
    if problem == _BAD_TYPES:
        raise ValueError("gemm: A, B and C must be 2-D arrays of one float dtype, C writable")
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


# Compiled once for every caller: it sees ints and int tuples only, whatever the arrays'
# types. A block function's check (see skdae._kernels._dense.for_each_block) calls it
# directly: an inlined check costs a cold start a tenth of a second per call site.
@njit(internal=True)
def gemm_problem(trans_a, trans_b, m, n, k, a_shape, a_strides, lda, b_shape, b_strides, ldb,
                 c_shape, c_strides, ldc, itemsize):
    """The checks of :func:`check_gemm`, without raising, on operands given by their shapes
    and strides (bytes; ``itemsize`` bytes per element): 0 when :func:`gemm` may be called
    with them, else a positive code for :func:`raise_gemm_problem`. Flags and sizes must
    be run-time values (see :func:`~skdae._kernels._jit.unliteral`), as for every kernel
    compiled once."""
    problem, operand = _gemm_problem(trans_a, trans_b, m, n, k, a_shape, a_strides, lda,
                                     b_shape, b_strides, ldb, c_shape, c_strides, ldc, itemsize)
    if problem == 0:
        return 0
    return problem * 3 + operand


@njit(inline="always")
def raise_gemm_problem(code):
    """Raise the error of a nonzero :func:`gemm_problem` code."""
    _raise_gemm_problem(code // 3, code % 3)


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


@overload(check_gemm, jit_options={"cache": CACHE}, inline="always")
def _check_gemm_overload(trans_a, trans_b, m, n, k, A, lda, B, ldb, C, ldc):
    problem = _type_problem(A, B, C)
    if problem is not None:

        def raise_problem(trans_a, trans_b, m, n, k, A, lda, B, ldb, C, ldc):
            raise ValueError(problem)

        return raise_problem

    def check(trans_a, trans_b, m, n, k, A, lda, B, ldb, C, ldc):
        found = _problem_of(trans_a, trans_b, m, n, k, A, lda, B, ldb, C, ldc)
        if found[0] != 0:
            _raise_gemm_problem(found[0], found[1])

    return check


def gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
    """Row-major ``C = alpha * op(A) @ op(B) + beta * C``.

    ``op(A)`` is ``m x k`` and ``op(B)`` is ``k x n``; ``A``, ``B``, ``C`` are 2-D arrays
    whose first element is the block's top-left corner, with row strides ``lda``, ``ldb``,
    ``ldc`` (in elements). All three must share one dtype, float32 or float64.

    Inside a ``prange`` loop, call :func:`block_gemm` instead. Callable from compiled code
    only (it is implemented by an overload).

    Raises
    ------
    ValueError
        If the operands do not hold the blocks (see :func:`check_gemm`), which is checked
        on every call.
    """
    raise NotImplementedError("gemm is callable from Numba-compiled code only")


@overload(gemm, jit_options={"cache": CACHE})
def _gemm_overload(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
    problem = _type_problem(A, B, C)
    if problem is not None:

        def raise_problem(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
            raise ValueError(problem)

        return raise_problem

    def call(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
        check_gemm(trans_a, trans_b, m, n, k, A, lda, B, ldb, C, ldc)
        _gemm_call(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)

    return call


@njit(inline="always")
def block_gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
    """:func:`gemm` on a block of a problem already checked whole, inside a ``prange`` loop.

    The kernel checks the whole problem with :func:`check_gemm` before its parallel loop,
    where an error can be raised. Here the block's operands are checked again and the
    product is skipped (it cannot raise: a ``raise`` in a ``prange`` body would make
    Numba run the loop serially), so a block that did not fit its operands, which only a
    bug in a kernel's block arithmetic could cause, never makes BLAS touch memory the
    kernel was not given.
    """
    if _problem_of(trans_a, trans_b, m, n, k, A, lda, B, ldb, C, ldc)[0] == 0:
        _gemm_call(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)


@intrinsic
def _gemm_call(typingctx, trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
    """The BLAS call of :func:`gemm`, operands unchecked.

    Written as LLVM IR: the arguments BLAS takes by reference live in stack slots, and
    only the routine of the operands' dtype is named (``sgemm`` or ``dgemm``), so each
    call site compiles to a few stores and two calls (the library chosen by ``trans_b``,
    see the module docstring) instead of Numba-typed code with four small arrays.
    """
    if _type_problem(A, B, C) is not None:
        return None
    flags = (trans_a, trans_b)
    ints = (m, n, k, lda, ldb, ldc)
    if not all(isinstance(t, types.Boolean) or t == types.boolean for t in map(types.unliteral, flags)):
        return None
    if not all(isinstance(types.unliteral(t), types.Integer) for t in ints):
        return None
    if not all(isinstance(types.unliteral(t), (types.Integer, types.Float)) for t in (alpha, beta)):
        return None
    sig = types.void(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
    prefix = "skdae_sgemm" if C.dtype == types.float32 else "skdae_dgemm"

    def codegen(context, builder, signature, args):
        tys = signature.args
        ta_v, tb_v, m_v, n_v, k_v, alpha_v, A_v, lda_v, B_v, ldb_v, beta_v, C_v, ldc_v = args
        i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
        ptr = ir.PointerType(i8)
        ta = context.cast(builder, ta_v, tys[0], types.boolean)
        tb = context.cast(builder, tb_v, tys[1], types.boolean)
        sizes = [context.cast(builder, v, t, types.int64)
                 for v, t in ((m_v, tys[2]), (n_v, tys[3]), (k_v, tys[4]), (lda_v, tys[7]),
                              (ldb_v, tys[9]), (ldc_v, tys[12]))]
        m64, n64, k64, lda64, ldb64, ldc64 = sizes
        zero = ir.Constant(i64, 0)
        nonempty = builder.and_(builder.icmp_signed("!=", m64, zero),
                                builder.icmp_signed("!=", n64, zero))
        with builder.if_then(nonempty):
            # Column-major view: C^T (n x m) = op(B)^T (n x k) @ op(A)^T (k x m).
            chars = [builder.select(t, ir.Constant(i8, _CHAR_T), ir.Constant(i8, _CHAR_N))
                     for t in (tb, ta)]
            char_slots = [cgutils.alloca_once_value(builder, c) for c in chars]
            scalar_slots = [cgutils.alloca_once_value(builder, context.cast(builder, v, t, C.dtype))
                            for v, t in ((alpha_v, tys[5]), (beta_v, tys[10]))]
            data = [builder.bitcast(context.make_array(t)(context, builder, v).data, ptr)
                    for v, t in ((A_v, tys[6]), (B_v, tys[8]), (C_v, tys[11]))]
            a_data, b_data, c_data = data
            fnty = ir.FunctionType(ir.VoidType(), [ptr] * 13)

            def call(name, int_type):
                order = (n64, m64, k64, ldb64, lda64, ldc64)
                slots = [builder.bitcast(cgutils.alloca_once_value(
                    builder, v if int_type is i64 else builder.trunc(v, i32)), ptr) for v in order]
                fn = cgutils.get_or_insert_function(builder.module, fnty, name)
                c0, c1 = (builder.bitcast(s, ptr) for s in char_slots)
                al, be = (builder.bitcast(s, ptr) for s in scalar_slots)
                builder.call(fn, [c0, c1, slots[0], slots[1], slots[2], al, b_data, slots[3],
                                  a_data, slots[4], be, c_data, slots[5]])

            with builder.if_else(tb) as (transposed_b, plain_b):
                with transposed_b:
                    # SciPy's build (LP64): faster with a transposed B (module docstring).
                    call(prefix, i32)
                with plain_b:
                    # NumPy's build (ILP64), or the adapter to SciPy's where it is missing.
                    call(prefix + "_ilp64", i64)
        return context.get_dummy_value()

    return sig, codegen
