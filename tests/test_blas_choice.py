"""Which BLAS the kernels call: NumPy's ILP64 OpenBLAS or SciPy's, chosen at run time.

A kernel compiled and cached in a process with one library must run correctly in a
process with the other, since the on-disk cache holds machine code that names BLAS only
by symbol (see :mod:`skdae._kernels._blas`). These tests run two fresh interpreters on one
Numba cache directory, one with NumPy's build and one without it (``SKDAE_BLAS=scipy``),
in both orders, and check every product against NumPy.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose

# Both routes of gemm (untransposed B: the ILP64 name; transposed B: SciPy's LP64 build),
# both dtypes, through a cached kernel that calls gemm, in a fresh process.
CHILD = """
import json
import numpy as np
from skdae._kernels import _blas
from skdae._kernels._jit import njit

@njit(cache=True)
def product(trans_b, A, B, C):
    m, k = A.shape
    n = C.shape[1]
    _blas.gemm(False, trans_b, m, n, k, 1.0, A, k, B, k if trans_b else n, 0.0, C, n)

rng = np.random.RandomState(0)
out = {"blas": _blas.BLAS, "results": []}
for dtype in (np.float32, np.float64):
    A = rng.randn(7, 5).astype(dtype)
    for trans_b in (False, True):
        B = rng.randn(3, 5).astype(dtype) if trans_b else rng.randn(5, 3).astype(dtype)
        C = np.full((7, 3), np.nan, dtype)
        product(trans_b, A, B, C)
        expected = A.astype(np.float64) @ (B.T if trans_b else B).astype(np.float64)
        out["results"].append(float(np.abs(C - expected).max()))
out["cache_hits"] = sum(product.stats.cache_hits.values())
out["cache_misses"] = sum(product.stats.cache_misses.values())
print(json.dumps(out))
"""


def _run(module_dir, cache_dir, blas):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), SKDAE_NUMBA_CACHE="1",
               PYTHONPATH=os.pathsep.join([str(module_dir), os.environ.get("PYTHONPATH", "")]))
    env.pop("SKDAE_BLAS", None)
    if blas == "scipy":
        env["SKDAE_BLAS"] = "scipy"
    script = module_dir / "blas_child.py"
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("order", [("default", "scipy"), ("scipy", "default")])
def test_cached_kernel_runs_with_either_blas(tmp_path, order):
    # The child module lives in its own folder: Numba caches by source file.
    (tmp_path / "blas_child.py").write_text(CHILD)
    cache = tmp_path / "cache"
    first = _run(tmp_path, cache, order[0])
    second = _run(tmp_path, cache, order[1])
    assert first["cache_misses"] > 0 and first["cache_hits"] == 0
    # The second process loads the first one's machine code, then calls its own library.
    assert second["cache_hits"] > 0 and second["cache_misses"] == 0
    for run in (first, second):
        assert_allclose(run["results"], 0.0, atol=1e-4)
    blas = {kind: run["blas"] for kind, run in zip(order, (first, second))}
    assert blas["scipy"] == "scipy"
    assert blas["default"] in {"scipy", "numpy+scipy"}


def test_fallback_is_used_without_numpy_blas(tmp_path):
    (tmp_path / "blas_child.py").write_text(CHILD)
    run = _run(tmp_path, tmp_path / "cache", "scipy")
    assert run["blas"] == "scipy"
    assert max(run["results"]) < 1e-4
    assert np.isfinite(run["results"]).all()
