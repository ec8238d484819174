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
from numba import types
from numba.extending import intrinsic

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
