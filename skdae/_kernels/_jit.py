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

_FALSE = {"0", "false", "no", "off"}

CACHE = os.environ.get("SKDAE_NUMBA_CACHE", "1").strip().lower() not in _FALSE


def njit(*args, **kwargs):
    """``numba.njit`` with skdae's settings: on-disk cache, no GIL, NumPy error model.

    ``error_model="numpy"`` makes ``a / b`` follow IEEE 754 (inf/NaN) instead of raising
    ``ZeroDivisionError``: the check Python semantics need is a branch in every division,
    which stops LLVM from vectorising the fused loops. Divergence is detected where it
    matters, on the losses and weights after each epoch.

    ``fastmath`` is left off by default: it allows reassociation that changes float32
    results between builds, and lets NaN checks be optimised away. Kernels that want it
    (the contractions only) pass ``fastmath={"contract"}``.
    """
    kwargs.setdefault("cache", CACHE)
    kwargs.setdefault("nogil", True)
    kwargs.setdefault("error_model", "numpy")
    if args and callable(args[0]):
        return numba.njit(**kwargs)(args[0])
    return numba.njit(*args, **kwargs)
