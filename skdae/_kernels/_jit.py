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

import gc
import os

import numba
import numpy as np
from numba import types
from numba.core import cgutils, errors, event
from numba.extending import intrinsic, typeof_impl

_FALSE = {"0", "false", "no", "off"}

CACHE = os.environ.get("SKDAE_NUMBA_CACHE", "1").strip().lower() not in _FALSE

# Python collects its youngest generation of objects every COMPILE_GC_THRESHOLD net
# allocations while Numba compiles one of skdae's kernels (700 by default): see
# _CompileGCThreshold.
COMPILE_GC_THRESHOLD = 10_000


class _CompileGCThreshold(event.Listener):
    """Raises Python's garbage-collection threshold while Numba compiles a skdae kernel.

    Numba's compiler allocates millions of short-lived objects and keeps hundreds of
    thousands alive (types, IR, LLVM modules). At CPython's default threshold the
    collector runs ~1,300 young and ten full collections during a first fit's compile,
    the full ones walking every live object: 1.5 s of a 9 s cold start (AMD EPYC Zen 4).
    Collecting the young generation every :data:`COMPILE_GC_THRESHOLD` allocations
    instead leaves 0.5 s of collection and costs a few MB of peak memory (garbage waits
    a little longer); nothing is left uncollected. The threshold is raised when the
    outermost compile of a skdae kernel starts (a compile it triggers in turn is nested
    in it) and restored when that compile ends, also on error. Numba compiles one
    function at a time under its global compiler lock, and its compile events (the
    documented ``numba.core.event`` API) are sent under that lock, so the events of two
    threads never interleave. A cache load is no compile and sends no event.
    """

    def __init__(self):
        self._owners = []  # per compile in progress: whether it raised the threshold
        self._saved = None

    def on_start(self, ev):
        owns = False
        if self._saved is None:
            func = getattr(ev.data.get("dispatcher"), "py_func", None)
            if (getattr(func, "__module__", None) or "").startswith("skdae."):
                self._saved = gc.get_threshold()
                if self._saved[0] < COMPILE_GC_THRESHOLD:
                    gc.set_threshold(COMPILE_GC_THRESHOLD, *self._saved[1:])
                owns = True
        self._owners.append(owns)

    def on_end(self, ev):
        if self._owners and self._owners.pop():
            gc.set_threshold(*self._saved)
            self._saved = None


event.register("numba:compile", _CompileGCThreshold())


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
    """A block function compiled for one signature, passed to kernels as a function pointer.

    Why: Numba builds a ``prange`` loop as four libraries (the loop body, two wrappers, the
    kernel), each linking the one below and optimising and emitting all of it again, and
    every caller of the kernel once more. So skdae has one ``prange`` loop,
    :func:`~skdae._kernels._dense.for_each_block`, compiled once for every kernel and
    dtype, whose body is a call through a pointer to the block function of the phase at
    hand. A block function is compiled once, serially, and takes its arguments packed in
    one tuple behind a pointer (see :func:`block_signature`), so that every block function
    has the same C signature and one compiled loop calls them all. Kernels take the
    pointer as an argument (typed :class:`numba.types.FunctionType` of ``signature``),
    never as a global, so a kernel cached on disk holds no address: each call unboxes the
    pointer from this object, compiling or loading the target for exactly the signature
    the calling kernel was compiled with.

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
        The one signature the target is compiled and called with, from
        :func:`block_signature`.
    """

    def __init__(self, dispatcher, signature):
        self.dispatcher = dispatcher
        self.signature = signature
        # Start Numba's threading layer, which binds the symbols of its parallel loops,
        # before any kernel that takes this pointer is loaded from the on-disk cache. A
        # cached kernel that links the parallel loop compiled in another process (loaded
        # from the cache while this kernel compiled) does not start it on load itself
        # (Numba passes a parallel function's reload hook on only from a fresh compile),
        # and calls a null address. get_num_threads starts the layer once per process.
        numba.get_num_threads()

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


def block_signature(*arg_types):
    """The signature of a block function whose arguments have types ``arg_types``:
    ``(args, blocks, blk) -> int64``, ``args`` a pointer to the tuple of those arguments
    (read with :func:`unpack_args`). With ``blk`` at least 0 the function computes block
    ``blk`` of ``blocks`` and returns 0; with ``blk`` -1 it checks the whole problem and
    returns the number of blocks, or minus the code of the problem found (see
    :func:`skdae._kernels._dense.for_each_block`)."""
    return types.int64(types.CPointer(types.Tuple(arg_types)), types.int64, types.int64)


# What the shared parallel loop sees of every block function: its pointer to the tuple
# of arguments is a plain address (the same machine type as the typed pointer).
GENERIC_BLOCK = types.FunctionType(types.int64(types.voidptr, types.int64, types.int64))


@intrinsic
def erase_block(typingctx, block, args):
    """``(address of a copy of args, block)``, typed for the shared parallel loop.

    Checks, while compiling, that ``args`` has exactly the types ``block`` was compiled
    for (literal constants aside): the loop passes the address on untyped, so a mismatch
    would otherwise be read as the wrong data. The copy lives in the calling function's
    stack frame; the arrays in it are the caller's references (keep ``args`` alive until
    the loop returns, see :func:`keep_alive`).
    """
    if not isinstance(block, types.FunctionType) or not isinstance(args, types.BaseTuple):
        return None
    params = block.signature.args
    if len(params) != 3 or not isinstance(params[0], types.CPointer):
        raise errors.TypingError(f"{block} is not a block function (see block_signature)")
    expected = params[0].dtype
    given = tuple(types.unliteral(t) for t in args.types)
    if tuple(expected.types) != given:
        raise errors.TypingError(
            f"block arguments {given} do not match the block function's {tuple(expected)}")
    # The address comes first: Numba warns that first-class functions are experimental
    # whenever it builds a tuple type that starts with one (it tries to unify it).
    sig = types.Tuple((types.voidptr, GENERIC_BLOCK))(block, args)

    def codegen(context, builder, signature, llargs):
        block_ty, args_ty = signature.args
        value = context.cast(builder, llargs[1], args_ty, expected)
        model = context.data_model_manager[expected]
        slot = cgutils.alloca_once(builder, model.get_data_type())
        builder.store(model.as_data(builder, value), slot)
        # A FunctionType's value is the same structure of addresses for any signature.
        return context.make_tuple(builder, signature.return_type,
                                  [builder.bitcast(slot, cgutils.voidptr_t), llargs[0]])

    return sig, codegen


@intrinsic
def unpack_args(typingctx, pointer):
    """The tuple of arguments behind a block function's first argument (see
    :func:`block_signature`)."""
    if not isinstance(pointer, types.CPointer) or not isinstance(pointer.dtype, types.BaseTuple):
        return None
    sig = pointer.dtype(pointer)

    def codegen(context, builder, signature, llargs):
        ty = signature.return_type
        value = context.data_model_manager[ty].from_data(builder, builder.load(llargs[0]))
        # Returned as a new reference, as Numba expects of a call's result.
        context.nrt.incref(builder, ty, value)
        return value

    return sig, codegen


@intrinsic
def keep_alive(typingctx, value):
    """Nothing, but a use of ``value``: Numba keeps a variable's references until its last
    use, so the arrays in a tuple passed by address stay alive until this point."""
    sig = types.none(value)

    def codegen(context, builder, signature, llargs):
        return context.get_dummy_value()

    return sig, codegen


@typeof_impl.register(KernelPointer)
def _typeof_kernel_pointer(value, context):
    return types.FunctionType(value.signature)
