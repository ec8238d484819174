"""The one place that decides how skdae's kernels are compiled.

Environment variables
---------------------
SKDAE_NUMBA_CACHE
    ``"1"`` (default) caches compiled kernels on disk, so a new process skips the seconds a
    cold compile costs per kernel and dtype; ``"0"`` turns the cache off. Where the cache
    lives is Numba's own ``NUMBA_CACHE_DIR``. Numba's cache only checks the file that
    defines a kernel, so a changed helper in another file can leave a stale entry: CI uses a
    fresh ``NUMBA_CACHE_DIR``.
"""

import os

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic, typeof_impl

_FALSE = {"0", "false", "no", "off"}

CACHE = os.environ.get("SKDAE_NUMBA_CACHE", "1").strip().lower() not in _FALSE


def njit(*args, internal=False, **kwargs):
    """``numba.njit`` with skdae's settings: on-disk cache, no GIL, NumPy error model.

    ``error_model="numpy"`` makes ``a / b`` follow IEEE 754 (inf/NaN) instead of raising
    ``ZeroDivisionError``: the check Python semantics need is a branch in every division,
    which stops LLVM from vectorising the fused loops. Divergence is detected where it
    matters, on the losses and weights after each epoch.

    ``fastmath`` is left off by default: it allows reassociation that changes float32
    results between builds, and lets NaN checks be optimised away. Kernels that want it
    (the contractions only) pass ``fastmath={"contract"}``.

    What a cold start costs: Numba builds every compiled function as its own LLVM module,
    optimises it, emits machine code and Python and C entry points for it, then links it
    into each caller and optimises and emits it again there. So the kernels keep few,
    shallow layers of compiled functions: small helpers are ``inline="always"`` (typed
    into their caller, never built alone), and ``internal=True`` marks a kernel called
    only from other kernels, which then gets no Python or C entry point. Builtins such as
    ``min`` and ``max`` are overloads that Numba compiles as functions of their own, once
    per tuple of argument types and again for every set of compiler flags (a parallel
    kernel's differ from a serial one's): the kernels write ``b if b < a else a`` instead,
    the compare and select Numba emits for ``min(a, b)``.
    """
    if internal:
        kwargs.setdefault("no_cpython_wrapper", True)
        kwargs.setdefault("no_cfunc_wrapper", True)
    kwargs.setdefault("cache", CACHE)
    kwargs.setdefault("nogil", True)
    kwargs.setdefault("error_model", "numpy")
    if args and callable(args[0]):
        return numba.njit(**kwargs)(args[0])
    return numba.njit(*args, **kwargs)


@intrinsic
def as_readonly(typingctx, array):
    """``array`` typed as read-only: the same view, under one type for every caller.

    Numba compiles a kernel again for each combination of argument types, and a read-only
    array is a type of its own. Kernels that only read an input take it read-only, so
    the data a caller passes as read-only and the buffers it passes writable share one
    compiled kernel.
    """
    if not isinstance(array, types.Array):
        return None
    sig = array.copy(readonly=True)(array)

    def codegen(context, builder, signature, args):
        # A new reference to the same array structure (the two types share a layout).
        context.nrt.incref(builder, signature.args[0], args[0])
        return args[0]

    return sig, codegen


@intrinsic
def unliteral(typingctx, value):
    """``value`` with its literal type dropped: one compiled kernel for every value.

    A constant argument (``True``, ``0``) reaches a called kernel as a literal type, and
    Numba compiles that kernel once per constant. Passing ``unliteral(True)`` makes the
    flag an ordinary run-time value.
    """
    sig = types.unliteral(value)(value)

    def codegen(context, builder, signature, args):
        return context.cast(builder, args[0], signature.args[0], signature.return_type)

    return sig, codegen


class KernelPointer:
    """A kernel compiled for one signature, passed to other kernels as a function pointer.

    Why: Numba builds a ``prange`` loop as four libraries (the loop body, two wrappers, the
    kernel), each linking the one below and optimising and emitting all of it again, and
    every caller of the kernel once more. A loop body that is a call through a pointer is
    a few instructions in each of them, while the body itself is compiled once, serially:
    a parallel phase compiles in about a third of the time. Kernels take the pointer as an
    argument (typed :class:`numba.types.FunctionType` of ``signature``), never as a global,
    so a kernel cached on disk holds no address: each call unboxes the pointer from this
    object, compiling or loading the target for exactly the signature the calling kernel
    was compiled with.

    The target is called through its C entry point, which cannot raise: targets check
    nothing and never raise (their callers check the whole problem first). An exception
    in a target (the bounds-checked test run's ``IndexError``) is printed as "Exception
    ignored" and swallowed; the test suite turns that into a failure (``filterwarnings``
    in ``pyproject.toml``), so the bounds-checked run still covers the targets.

    Parameters
    ----------
    dispatcher : numba dispatcher
        The target kernel (compiled with its C entry point, so not ``internal``).
    signature : numba signature
        The one signature the target is compiled and called with.
    """

    def __init__(self, dispatcher, signature):
        self.dispatcher = dispatcher
        self.signature = signature

    def __wrapper_address__(self):
        # Numba's protocol for first-class functions (numba.experimental.function_type):
        # the address of the C entry point compiled for the signature.
        result = self.dispatcher.get_compile_result(self.signature)
        return result.library.get_pointer_to_function(result.fndesc.llvm_cfunc_wrapper_name)


def block_types(dtype):
    """The Numba types a block function's signature (see :class:`KernelPointer`) is written
    in, for arrays of ``dtype``: ``(f, ro2, ro1, a2, a1)``, the scalar type, read-only C
    arrays of 2 and 1 dimensions, and writable ones."""
    f = numba.from_dtype(np.dtype(dtype))
    return (f, types.Array(f, 2, "C", readonly=True), types.Array(f, 1, "C", readonly=True),
            types.Array(f, 2, "C"), types.Array(f, 1, "C"))


@typeof_impl.register(KernelPointer)
def _typeof_kernel_pointer(value, context):
    return types.FunctionType(value.signature)
