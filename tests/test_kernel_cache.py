"""Kernels loaded from Numba's on-disk cache in fresh processes, as a user's second session
loads them.

The blocked kernels share one parallel loop (:func:`skdae._kernels._dense.for_each_block`),
compiled once and linked into each of them. A kernel compiled in a process that loaded
that loop from the cache (compiled by an earlier process) is cached without Numba's hook
that starts the threading layer; a third process loading it must still find the layer
started (:class:`skdae._kernels._jit.KernelPointer` starts it), or it calls a null
address and crashes.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

CHILD = """
import sys
import numpy as np
from skdae._kernels import _dense

dtype = np.dtype(sys.argv[1])
A, W = np.ones((3, 4), dtype), np.ones((4, 5), dtype)
out = np.empty((3, 5), dtype)
_dense.dense_forward(A, W, False, np.zeros(5, dtype), True, out, _dense.dense_pointer(dtype))
print(float(out.sum()))
"""


def test_kernel_compiled_on_a_cached_parallel_loop_runs_when_loaded(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), SKDAE_NUMBA_CACHE="1")
    expected = 15 / (1 + np.exp(-4.0))
    # float32 compiles (and caches) the shared loop; float64 compiles its kernel on the
    # cached loop; the last process loads that kernel from the cache.
    for dtype in ("float32", "float64", "float64"):
        proc = subprocess.run([sys.executable, "-c", CHILD, dtype], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (dtype, proc.returncode, proc.stderr[-3000:])
        assert float(proc.stdout.strip().splitlines()[-1]) == pytest.approx(expected, rel=1e-5)
