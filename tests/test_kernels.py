"""Every Numba kernel against a plain NumPy reference written here.

The references are deliberately naive (explicit formulas, Python loops over batches) so
that they share no code with the kernels. Randomness is matched exactly: the kernels draw
from a counter-based generator, so a reference can ask ``uniform`` / ``standard_normal``
for the very numbers a kernel used. Hypothesis drives small shapes, dtypes and
hyper-parameters; arrays come from a drawn integer seed (much faster than drawing every
element, and shrinks just as well).
"""

import gc
import itertools

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from scipy import stats
from threadpoolctl import threadpool_limits

from skdae._kernels import _backprop as bp
from skdae._kernels import _blas
from skdae._kernels import _dense
from skdae._kernels import _jit
from skdae._kernels import _math
from skdae._kernels import _quantized as qk
from skdae._kernels import _rbm as rk
from skdae._kernels._random import derive_key as _derive_key
from skdae._kernels._random import standard_normal, uniform

DTYPES = [np.float64, np.float32]
# Tolerances of a float32 kernel against a float64 reference.
RTOL32 = 2e-4
ATOL32 = 2e-5

dtypes = st.sampled_from(DTYPES)
seeds = st.integers(0, 2**31 - 1)
fast = settings(max_examples=25, deadline=None)


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # The kernels' GEMMs are tiny here; a multi-threaded BLAS on a shared 2-core machine
    # only adds spin-waiting. (Thread counts are the subject of the estimator tests.)
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def tol(dtype):
    return dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=RTOL32, atol=ATOL32)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def softplus(z):
    return np.logaddexp(0.0, z)


def derive_key(seed, stream):
    """The kernels' stream key, as a uint64 (from Python, Numba returns a plain int, which
    it would then type as int64 and overflow)."""
    return np.uint64(_derive_key(seed, stream))


def uniforms(key, shape):
    """The uniform numbers ``sample_units`` uses for an array of ``shape`` under ``key``."""
    n, m = shape
    return np.array([[uniform(key, i * m + j) for j in range(m)] for i in range(n)], np.float64)


def normals(key, shape):
    n, m = shape
    return np.array(
        [[standard_normal(key, i * m + j) for j in range(m)] for i in range(n)], np.float64
    )


def reference_sample(means, bernoulli, key):
    """What ``sample_units`` must return, from the generator's documented counters."""
    means = np.asarray(means, np.float64)
    if bernoulli:
        return (uniforms(key, means.shape) < means).astype(np.float64)
    return means + normals(key, means.shape)


# --------------------------------------------------------------------- activations


# The scalar helpers are overloads, callable from compiled code only: these loops are the
# smallest compiled callers (compiled here, once per dtype and process).
@numba.njit
def _sigmoid_all(x, out):
    for i in range(x.shape[0]):
        out[i] = _math.sigmoid(x[i])


@numba.njit
def _softplus_all(x, out):
    for i in range(x.shape[0]):
        out[i] = _math.softplus(x[i])


@numba.njit
def _exp_all(x, out):
    for i in range(x.shape[0]):
        out[i] = _math.fast_exp(x[i])


def probe_points(dtype):
    """Dense in [-20, 20], sparse out to the float32 exp's clamps and beyond."""
    x = np.concatenate([np.linspace(-20, 20, 4001), np.linspace(-120, 120, 2401), [0.0, -0.0]])
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_matches_numpy_within_float32_precision(dtype):
    x = probe_points(dtype)
    # The float32 exp's documented range: it saturates outside [-80, 80] so that no
    # result is denormal.
    x = x[(x >= -80) & (x <= 80)]
    out = np.empty_like(x)
    _exp_all(x, out)
    assert out.dtype == dtype
    expected = np.exp(x.astype(np.float64))
    # float32: the module promises 2 ulp; float64 is np.exp itself.
    rtol = 2.5 * np.finfo(np.float32).eps if dtype == np.float32 else 1e-15
    assert_allclose(out, expected, rtol=rtol, atol=0)


def test_float32_exp_saturates_without_inf_nan_or_denormals():
    x = np.array([-1e4, -200.0, -88.0, -80.5, 80.5, 88.5, 200.0, 1e4], np.float32)
    out = np.empty_like(x)
    _exp_all(x, out)
    assert np.isfinite(out).all()
    assert (out >= np.finfo(np.float32).tiny).all()  # normal, never denormal
    assert (np.diff(out) >= 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_and_softplus_match_numpy(dtype):
    x = probe_points(dtype)
    x64 = x.astype(np.float64)
    out = np.empty_like(x)
    _sigmoid_all(x, out)
    assert out.dtype == dtype and np.isfinite(out).all()
    assert ((out >= 0) & (out <= 1)).all()
    eps = np.finfo(dtype).eps
    # float32: exp saturates outside [-80, 80] (no denormals), so sigmoid and softplus
    # bottom out at exp(-80) = 1.8e-35 instead of going further down.
    floor32 = 2e-35
    assert_allclose(out, sigmoid(x64), rtol=8 * eps, atol=floor32 if dtype == np.float32 else 0)
    _softplus_all(x, out)
    assert out.dtype == dtype and np.isfinite(out).all()
    # Relative precision above the float32 floor; no overflow for large x.
    assert_allclose(out, softplus(x64), rtol=8 * eps, atol=floor32 if dtype == np.float32 else 0)


@fast
@given(n=st.integers(1, 6), k=st.integers(1, 7), m=st.integers(1, 9), sig=st.booleans(),
       transposed=st.booleans(), dtype=dtypes, seed=seeds)
def test_dense_forward_matches_numpy(n, k, m, sig, transposed, dtype, seed):
    rng = np.random.RandomState(seed)
    A = rng.randn(n, k).astype(dtype)
    W = rng.randn(m, k).astype(dtype) if transposed else rng.randn(k, m).astype(dtype)
    bias = rng.randn(m).astype(dtype)
    expected = A.astype(np.float64) @ (W.T if transposed else W).astype(np.float64) + bias
    if sig:
        expected = sigmoid(expected)
    out = np.empty((n, m), dtype)
    _dense.dense_forward(A, W, transposed, bias, sig, out, _dense.dense_pointer(dtype))
    assert_allclose(out, expected, **tol(dtype))


def test_dense_forward_saturates_without_nan():
    out = np.empty((1, 3))
    _dense.dense_forward(np.array([[-800.0, 800.0, 0.0]]), np.eye(3), False, np.zeros(3), True, out,
                         _dense.dense_pointer(np.float64))
    assert_array_equal(out, [[0.0, 1.0, 0.5]])


# ------------------------------------------------------------------------------ GEMM


def _call_gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
    # gemm is called from compiled kernels only; this is the smallest such caller.
    _blas.gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)


# Any argument types (compiled per call signature): for the calls that must be refused.
_gemm = numba.njit(_call_gemm)
# Strided ("A" layout) float32 and float64 blocks only, compiled once and cached: the
# property test below passes views of every shape, which would otherwise each compile
# a contiguous and a strided variant.
_gemm_strided = numba.njit(
    [
        numba.void(numba.boolean, numba.boolean, numba.int64, numba.int64, numba.int64,
                   numba.float64, array, numba.int64, array, numba.int64, numba.float64,
                   array, numba.int64)  # fmt: skip
        for array in (numba.float32[:, :], numba.float64[:, :])
    ],
    cache=True,
)(_call_gemm)


@fast
@given(
    m=st.integers(0, 5), n=st.integers(0, 5), k=st.integers(0, 5),
    trans_a=st.booleans(), trans_b=st.booleans(), pad=st.integers(0, 3),
    alpha=st.sampled_from([1.0, -0.5]), beta=st.sampled_from([0.0, 1.0, 2.0]),
    dtype=dtypes, seed=seeds,
)
def test_gemm_on_blocks_of_larger_arrays_matches_numpy(m, n, k, trans_a, trans_b, pad, alpha,
                                                       beta, dtype, seed):
    """Blocks inside padded arrays, as the kernels pass them: only C's block changes."""
    rng = np.random.RandomState(seed)
    a_shape = (k, m) if trans_a else (m, k)
    b_shape = (n, k) if trans_b else (k, n)
    A_full, B_full, C_full = (
        rng.randn(rows + pad, cols + pad).astype(dtype)
        for rows, cols in (a_shape, b_shape, (m, n))
    )
    A, B, C = A_full[pad:, pad:], B_full[pad:, pad:], C_full[pad:, pad:]
    op_a = A.T if trans_a else A
    op_b = B.T if trans_b else B
    expected = C_full.astype(np.float64)
    expected[pad:, pad:] = alpha * op_a.astype(np.float64) @ op_b + beta * C
    # BLAS wants leading dimensions >= 1 even for empty blocks.
    lda, ldb, ldc = (max(1, X.shape[1]) for X in (A_full, B_full, C_full))
    _gemm_strided(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
    assert_allclose(C_full, expected, **tol(dtype))


def _gemm_case(name):
    """Arguments of a well-formed call (C = A @ B, 4 x 3 from 4 x 2 and 2 x 3), with one
    thing made wrong according to ``name``."""
    A, B, C = np.ones((4, 2)), np.ones((2, 3)), np.zeros((4, 3))
    args = dict(trans_a=False, trans_b=False, m=4, n=3, k=2, A=A, lda=2, B=B, ldb=3, C=C, ldc=3)
    wrong = {
        "C too small": dict(C=np.zeros((1, 1))),
        "C too short": dict(C=np.zeros((3, 3))),
        "A too narrow": dict(A=np.ones((4, 1)), lda=1),
        "A transposed but not stored so": dict(trans_a=True),
        "B too small": dict(B=np.ones((1, 3))),
        "B transposed but not stored so": dict(trans_b=True),
        "lda is not A's row stride": dict(lda=3),
        "ldc is not C's row stride": dict(ldc=4),
        "leading dimension below the row length": dict(lda=1),
        "block wider than the view": dict(C=np.zeros((4, 6))[:, 4:]),
        "Fortran-order A": dict(A=np.asfortranarray(np.ones((4, 2)))),
        "strided rows of B": dict(B=np.ones((2, 6))[:, ::2]),
        "negative k": dict(k=-1),
        "m beyond 32-bit ints": dict(m=2**31),
        "mixed dtypes": dict(B=np.ones((2, 3), np.float32)),
        "integer operands": dict(A=np.ones((4, 2), np.int64), B=np.ones((2, 3), np.int64),
                                 C=np.zeros((4, 3), np.int64)),  # fmt: skip
        "1-D operand": dict(A=np.ones(8)),
        "read-only C": dict(C=_readonly(np.zeros((4, 3)))),
    }[name]
    return {**args, **wrong}


def _readonly(array):
    array.flags.writeable = False
    return array


@pytest.mark.parametrize(
    "name",
    ["C too small", "C too short", "A too narrow", "A transposed but not stored so",
     "B too small", "B transposed but not stored so", "lda is not A's row stride",
     "ldc is not C's row stride", "leading dimension below the row length",
     "block wider than the view", "Fortran-order A", "strided rows of B", "negative k",
     "m beyond 32-bit ints", "mixed dtypes", "integer operands", "1-D operand", "read-only C"],
)  # fmt: skip
def test_gemm_refuses_operands_that_do_not_hold_the_blocks(name):
    case = _gemm_case(name)
    before = case["C"].copy()
    with pytest.raises(ValueError, match="gemm"):
        _gemm(case["trans_a"], case["trans_b"], case["m"], case["n"], case["k"], 1.0,
              case["A"], case["lda"], case["B"], case["ldb"], 1.0, case["C"], case["ldc"])  # fmt: skip
    assert_array_equal(case["C"], before)  # BLAS was never called


def test_gemm_accepts_single_rows_and_columns_of_larger_arrays():
    # One row is read whatever the stride across rows; one column whatever the stride
    # along a row: such views (a batch of one, a code of one unit) are not refused.
    W = np.arange(12.0).reshape(3, 4)
    out = np.zeros((1, 4))
    _gemm(False, False, 1, 4, 3, 1.0, np.ones((5, 3))[2:3], 3, W, 4, 0.0, out, 4)
    assert_allclose(out, [W.sum(0)])
    col = np.zeros((3, 5))[:, 1:2]
    _gemm(False, False, 3, 1, 4, 1.0, W, 4, np.ones((4, 1)), 1, 0.0, col, 5)
    assert_allclose(col[:, 0], W.sum(1))


@pytest.mark.parametrize(
    "kernel",
    ["dense_forward", "hidden_means", "visible_means", "cd_epoch-velocity", "cd_epoch-stack"],
)
def test_parallel_kernels_refuse_buffers_too_small_for_their_gemms(kernel):
    """A GEMM's check inside a prange body could not raise (Numba drops the exception),
    so each parallel kernel checks its whole GEMM operands first: a buffer of the wrong
    size is a ValueError before any block runs."""
    rng = np.random.RandomState(0)
    n, n_vis, n_hid = 6, 5, 4
    V, W = rng.rand(n, n_vis), rng.randn(n_hid, n_vis)
    with pytest.raises(ValueError, match="gemm"):
        if kernel == "dense_forward":
            _dense.dense_forward(V, W, True, np.zeros(n_hid), True, np.empty((n, n_hid + 2)),
                                 _dense.dense_pointer(np.float64))
        elif kernel == "hidden_means":
            rk.hidden_means(V, W, np.zeros(n_hid), 0, np.empty((n, n_hid + 1)),
                            rk.hidden_pointer(np.float64))
        elif kernel == "visible_means":
            rk.visible_means(rng.rand(n, n_hid), np.ascontiguousarray(W[:, :3]), np.zeros(n_vis), 0,
                             np.empty((n, n_vis)), rk.dense_pointer(np.float64))
        else:
            p = random_rbm(rng, n_vis, n_hid, n, 0)
            p = {k: np.ascontiguousarray(v) for k, v in p.items()}
            V_stack = np.empty((2 * n, n_vis))
            if kernel == "cd_epoch-velocity":  # an edited model file's momentum buffer
                p["vel_W"] = np.zeros((1, 1))
            else:
                V_stack = np.empty((n, n_vis))
            rk.cd_epoch(
                _readonly(V.copy()), np.arange(n), p["W"], p["b_vis"], p["b_hid"], p["vel_W"],
                p["vel_vis"], p["vel_hid"], 0, 0, 1, False, p["chain"], 0.1, 0.5, 0.0, n,
                np.int64(1), V_stack, np.empty((2 * n, n_hid)), np.empty((n, n_hid)), 0,
                np.zeros(n_vis), *rk.cd_pointers(np.float64),
            )


@pytest.mark.parametrize("m", [1, 2, 3, 1000, 1024, 2048, 2049, 5000])
def test_blocks_cover_every_column_once(m):
    blocks = _dense.n_blocks(m)
    bounds = [_dense.block_bounds(m, blocks, b) for b in range(blocks)]
    covered = np.concatenate([np.arange(lo, hi) for lo, hi in bounds])
    assert_array_equal(covered, np.arange(m))
    assert all(hi - lo <= _dense.BLOCK_WIDTH for lo, hi in bounds)


# ----------------------------------------------------------- the shared parallel loop


@_jit.njit(cache=False)
def _recording_block(args, blocks, blk):
    """A block function for the tests of for_each_block: counts each call of each block
    and each column it covers; with ``blk`` -1, reports ``n_blocks(m)`` or ``problem``."""
    visits, columns, problem = _jit.unpack_args(args)
    m = columns.shape[0]
    if blk < 0:
        return problem if problem < 0 else _dense.n_blocks(m)
    visits[blk] += 1
    j0, j1 = _dense.block_bounds(m, blocks, blk)
    for j in range(j0, j1):
        columns[j] += 1
    return 0


_RECORDING = _jit.KernelPointer(_recording_block, _jit.block_signature(
    numba.types.int64[::1], numba.types.int64[::1], numba.types.int64))


@_jit.njit(cache=False)
def _run_recording(block, visits, columns, problem):
    _dense.for_each_block(block, (visits, columns, problem))


@pytest.mark.parametrize("m", [0, 1, 2, 3, 1023, 2049, 4097, 6143])
@pytest.mark.parametrize("threads", [1, 2])
def test_for_each_block_runs_every_block_exactly_once(m, threads):
    blocks = _dense.n_blocks(m)
    visits = np.zeros(blocks, np.int64)
    columns = np.zeros(m, np.int64)
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        _run_recording(_RECORDING, visits, columns, 0)
    finally:
        numba.set_num_threads(before)
    assert_array_equal(visits, np.ones(blocks, np.int64))
    # Every column covered once: the NumPy reference is a plain count.
    assert_array_equal(columns, np.ones(m, np.int64))


def test_for_each_block_raises_the_check_s_problem_before_any_block():
    visits, columns = np.zeros(2, np.int64), np.zeros(5, np.int64)
    with pytest.raises(ValueError, match="biases do not match"):
        _run_recording(_RECORDING, visits, columns, -_dense.BIAS_MISMATCH)
    with pytest.raises(ValueError, match="gemm: operand C is smaller"):
        _run_recording(_RECORDING, visits, columns, -(_dense.GEMM_PROBLEM + 1 * 3 + 2))
    assert not visits.any() and not columns.any()


def test_for_each_block_refuses_arguments_of_other_types_when_compiling():
    """The loop passes the arguments' address on untyped: a tuple whose types differ from
    the block function's signature is a compile-time error, never a misread."""
    with pytest.raises(numba.core.errors.TypingError, match="do not match"):
        _run_recording(_RECORDING, np.zeros(2, np.int32), np.zeros(5, np.int64), 0)


# ------------------------------------------------------------------- compile settings


class _ThresholdRecorder(numba.core.event.Listener):
    """Records the garbage-collection threshold when each Numba compile starts (registered
    after skdae's own listener, so it sees the threshold that compile runs under)."""

    def __init__(self):
        self.seen = []

    def on_start(self, ev):
        self.seen.append((ev.data["dispatcher"].py_func.__module__, gc.get_threshold()[0]))

    def on_end(self, ev):
        pass


def _compiles_recorded(fn):
    recorder = _ThresholdRecorder()
    numba.core.event.register("numba:compile", recorder)
    try:
        fn()
    finally:
        numba.core.event.unregister("numba:compile", recorder)
    return recorder.seen


def test_gc_threshold_is_raised_only_while_a_skdae_kernel_compiles():
    before = gc.get_threshold()
    rows = np.arange(12.0).reshape(4, 3)
    out = np.empty((2, 3))
    # A new dispatcher of a skdae kernel compiles afresh (cache off).
    kernel = numba.njit(cache=False)(_dense.gather_rows.py_func)
    seen = _compiles_recorded(lambda: kernel(rows, np.array([3, 1]), 0, out))
    assert seen[0] == ("skdae._kernels._dense", max(before[0], _jit.COMPILE_GC_THRESHOLD))
    assert gc.get_threshold() == before
    assert_array_equal(out, rows[[3, 1]])
    # Someone else's Numba function compiles under the process's own threshold.
    other = numba.njit(cache=False)(lambda x: x + 1)
    seen = _compiles_recorded(lambda: other(1))
    assert seen == [(__name__, before[0])]
    assert gc.get_threshold() == before


def test_gc_threshold_is_restored_when_a_compile_fails():
    before = gc.get_threshold()
    kernel = numba.njit(cache=False)(_dense.gather_rows.py_func)
    with pytest.raises(numba.core.errors.TypingError):
        kernel("not an array", np.array([0]), 0, np.empty((1, 1)))
    assert gc.get_threshold() == before


def test_gc_threshold_above_the_compile_threshold_is_kept():
    before = gc.get_threshold()
    gc.set_threshold(4 * _jit.COMPILE_GC_THRESHOLD, *before[1:])
    try:
        kernel = numba.njit(cache=False)(_dense.gather_rows.py_func)
        seen = _compiles_recorded(
            lambda: kernel(np.ones((2, 2)), np.array([1]), 0, np.empty((1, 2))))
        assert seen[0][1] == 4 * _jit.COMPILE_GC_THRESHOLD
        assert gc.get_threshold()[0] == 4 * _jit.COMPILE_GC_THRESHOLD
    finally:
        gc.set_threshold(*before)


@pytest.mark.parametrize("transposed", [False, True])
def test_dense_forward_checks_its_bias(transposed):
    A, W = np.ones((3, 4)), np.ones((4, 4))
    with pytest.raises(ValueError, match="biases do not match"):
        _dense.dense_forward(A, W, transposed, np.zeros(3), True, np.empty((3, 4)),
                             _dense.dense_pointer(np.float64))


@fast
@given(
    n=st.integers(1, 6), n_vis=st.integers(1, 7), n_hid=st.integers(1, 5),
    kind=st.sampled_from([0, 1]), dtype=dtypes, seed=seeds,
)
def test_hidden_and_visible_means_match_numpy(n, n_vis, n_hid, kind, dtype, seed):
    rng = np.random.RandomState(seed)
    W = rng.randn(n_hid, n_vis)
    b_vis, b_hid = rng.randn(n_vis), rng.randn(n_hid)
    V, H = rng.rand(n, n_vis), rng.rand(n, n_hid)
    f = sigmoid if kind == 0 else (lambda z: z)

    out_h = np.empty((n, n_hid), dtype)
    rk.hidden_means(V.astype(dtype), W.astype(dtype), b_hid.astype(dtype), kind, out_h,
                    rk.hidden_pointer(dtype))
    assert_allclose(out_h, f(V @ W.T + b_hid), **tol(dtype))

    out_v = np.empty((n, n_vis), dtype)
    rk.visible_means(H.astype(dtype), W.astype(dtype), b_vis.astype(dtype), kind, out_v,
                     rk.dense_pointer(dtype))
    assert_allclose(out_v, f(H @ W + b_vis), **tol(dtype))


# ------------------------------------------------------------------------ free energy


def reference_free_energy(V, W, b_vis, b_hid, visible_kind, hidden_kind):
    X = V @ W.T + b_hid
    if visible_kind == 0:
        F = -V @ b_vis
    else:
        F = 0.5 * ((V - b_vis) ** 2).sum(1)
    if hidden_kind == 0:
        F -= softplus(X).sum(1)
    else:
        F -= 0.5 * (X**2).sum(1)
    return F


def visible_energy(V, b_vis, visible_kind):
    if visible_kind == 0:
        return -V @ b_vis
    return 0.5 * ((V - b_vis) ** 2).sum(1)


def brute_force_neg_free_energy(V, W, b_vis, b_hid, visible_kind):
    """``log sum_h exp(-E(v, h))`` over every binary hidden vector."""
    n_hid = W.shape[0]
    states = np.array(list(itertools.product([0.0, 1.0], repeat=n_hid)))  # (2^k, k)
    # -E(v, h) = -E_vis(v) + h . b_hid + h . W v
    neg_energy = -visible_energy(V, b_vis, visible_kind)[:, None] + (V @ W.T + b_hid) @ states.T
    return np.logaddexp.reduce(neg_energy, axis=1)


def quadrature_neg_free_energy(V, W, b_vis, b_hid, visible_kind):
    """``log int exp(-E(v, h)) dh`` for unit-variance Gaussian hidden units, numerically,
    minus the ``n_hid / 2 * log(2 pi)`` that the kernel drops."""
    X = V @ W.T + b_hid
    result = -visible_energy(V, b_vis, visible_kind)
    for i, row in enumerate(X):
        for x in row:
            # -E contributions of one hidden unit: -h^2 / 2 + h x; the integrand peaks at x.
            h = np.linspace(x - 15.0, x + 15.0, 6001)
            integrand = np.exp(-0.5 * h**2 + h * x - 0.5 * x**2)  # scaled by exp(-x^2/2)
            result[i] += np.log(np.trapezoid(integrand, h)) + 0.5 * x**2 - 0.5 * np.log(2 * np.pi)
    return result


@fast
@given(
    n=st.integers(1, 6), n_vis=st.integers(1, 6), n_hid=st.integers(1, 5),
    visible_kind=st.sampled_from([0, 1]), hidden_kind=st.sampled_from([0, 1]),
    seed=seeds,
)
def test_free_energy_matches_numpy_for_every_unit_pair(n, n_vis, n_hid, visible_kind, hidden_kind, seed):
    rng = np.random.RandomState(seed)
    W = rng.randn(n_hid, n_vis)
    b_vis, b_hid = rng.randn(n_vis), rng.randn(n_hid)
    V = rng.rand(n, n_vis) if visible_kind == 0 else 2 * rng.randn(n, n_vis)
    expected = reference_free_energy(V, W, b_vis, b_hid, visible_kind, hidden_kind)
    results = {}
    for dtype in DTYPES:
        out = np.empty(n, np.float64)
        H = np.empty((n, n_hid), dtype)
        rk.free_energy(
            V.astype(dtype), W.astype(dtype), b_vis.astype(dtype), b_hid.astype(dtype),
            visible_kind, hidden_kind, H, out, rk.dense_pointer(dtype),
        )
        results[dtype] = out
    assert_allclose(results[np.float64], expected, rtol=1e-10, atol=1e-10)
    # float32 inputs: the output buffer is float64, the value close to the float64 one.
    assert_allclose(results[np.float32], results[np.float64], rtol=RTOL32, atol=1e-3)

    # The definition itself: -F(v) = log sum_h exp(-E(v, h)), constants dropped.
    if hidden_kind == 0:
        exact = brute_force_neg_free_energy(V, W, b_vis, b_hid, visible_kind)
        assert_allclose(-results[np.float64], exact, rtol=1e-10, atol=1e-10)
    else:
        exact = quadrature_neg_free_energy(V, W, b_vis, b_hid, visible_kind)
        assert_allclose(-results[np.float64], exact, rtol=1e-6, atol=1e-6)


def test_free_energy_is_stable_for_large_inputs():
    # softplus of +-1000 must not overflow or lose the linear part.
    W = np.array([[1000.0], [-1000.0]])
    V = np.array([[1.0]])
    out = np.empty(1)
    rk.free_energy(V, W, np.zeros(1), np.zeros(2), 0, 0, np.empty((1, 2)), out,
                   rk.dense_pointer(np.float64))
    assert_allclose(out, [-1000.0])


# --------------------------------------------------------------------------- sampling


@fast
@given(n=st.integers(1, 5), m=st.integers(1, 6), bernoulli=st.booleans(), dtype=dtypes, seed=seeds)
def test_sample_units_uses_documented_counters(n, m, bernoulli, dtype, seed):
    rng = np.random.RandomState(seed)
    means = (rng.rand(n, m) if bernoulli else rng.randn(n, m)).astype(dtype)
    key = derive_key(seed, 3)
    out = np.empty_like(means)
    rk.sample_units(means, out, bernoulli, key)
    assert out.dtype == dtype
    assert_allclose(out, reference_sample(means, bernoulli, key), **tol(dtype))
    # Same key and counters give the same values, also in place (as gibbs_step uses it).
    again = means.copy()
    rk.sample_units(again, again, bernoulli, key)
    assert_array_equal(again, out)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bernoulli_sample_frequencies_match_probabilities(dtype):
    p = np.array([0.0, 0.02, 0.1, 0.5, 0.77, 0.98, 1.0])
    n = 20000
    means = np.tile(p, (n, 1)).astype(dtype)
    out = np.empty_like(means)
    rk.sample_units(means, out, True, derive_key(12345, 7))
    assert set(np.unique(out)) <= {0.0, 1.0}
    freq = out.mean(axis=0)
    # Within 5 standard errors of a binomial proportion (exact for p = 0 and 1).
    assert (np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / n)).all(), (freq, p)
    assert freq[0] == 0.0 and freq[-1] == 1.0
    # Units are independent: neighbouring columns do not move together.
    corr = np.corrcoef(out[:, 3], out[:, 4])[0, 1]
    assert abs(corr) < 0.03


@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_samples_are_unit_variance_normal_around_means(dtype):
    mu = np.array([-3.0, 0.0, 0.5, 10.0])
    n = 20000
    means = np.tile(mu, (n, 1)).astype(dtype)
    out = np.empty_like(means)
    rk.sample_units(means, out, False, derive_key(999, 0))
    noise = out.astype(np.float64) - mu
    assert_allclose(noise.mean(axis=0), 0.0, atol=5 / np.sqrt(n))
    assert_allclose(noise.std(axis=0), 1.0, atol=0.03)
    assert np.isfinite(out).all()
    assert stats.kstest(noise.ravel(), "norm").pvalue > 1e-3


def test_different_keys_give_different_streams():
    means = np.full((50, 8), 0.5)
    a, b, c = (np.empty_like(means) for _ in range(3))
    rk.sample_units(means, a, True, derive_key(1, 0))
    rk.sample_units(means, b, True, derive_key(1, 1))
    rk.sample_units(means, c, True, derive_key(2, 0))
    assert (a != b).mean() > 0.3
    assert (a != c).mean() > 0.3
    assert (b != c).mean() > 0.3
    assert derive_key(1, 0) == derive_key(1, 0)
    assert len({derive_key(s, t) for s in range(4) for t in range(4)}) == 16


def test_uniform_is_in_unit_interval_and_uniform():
    key = derive_key(42, 0)
    u = np.array([uniform(key, i) for i in range(20000)])
    assert u.min() >= 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > 1e-3


@fast
@given(
    n=st.integers(1, 6), n_vis=st.integers(1, 6), n_hid=st.integers(1, 5),
    visible_kind=st.sampled_from([0, 1]), hidden_kind=st.sampled_from([0, 1]),
    dtype=dtypes, seed=seeds,
)
def test_gibbs_step_matches_numpy(n, n_vis, n_hid, visible_kind, hidden_kind, dtype, seed):
    rng = np.random.RandomState(seed)
    W = rng.randn(n_hid, n_vis)
    b_vis, b_hid = rng.randn(n_vis), rng.randn(n_hid)
    V = rng.rand(n, n_vis)
    f_hid = sigmoid if hidden_kind == 0 else (lambda z: z)
    f_vis = sigmoid if visible_kind == 0 else (lambda z: z)
    # v -> sampled h (stream 0) -> sampled v' (stream 1)
    h = reference_sample(f_hid(V @ W.T + b_hid), hidden_kind == 0, derive_key(seed, 0))
    expected = reference_sample(f_vis(h @ W + b_vis), visible_kind == 0, derive_key(seed, 1))
    out = np.empty((n, n_vis), dtype)
    rk.gibbs_step(
        V.astype(dtype), W.astype(dtype), b_vis.astype(dtype), b_hid.astype(dtype),
        visible_kind, hidden_kind, np.int64(seed), np.empty((n, n_hid), dtype), out,
        rk.hidden_pointer(dtype), rk.dense_pointer(dtype),
    )
    assert out.dtype == dtype
    if dtype == np.float64:
        assert_allclose(out, expected, rtol=1e-10, atol=1e-12)
    elif hidden_kind == 1 and visible_kind == 1:
        # Nothing binary: float32 rounding cannot flip a draw.
        assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    if visible_kind == 0:
        assert set(np.unique(out)) <= {0.0, 1.0}


# ------------------------------------------------------------------------- CD epochs


def reference_cd_epoch(X, order, W, b_vis, b_hid, vel_W, vel_vis, vel_hid, visible_kind,
                       hidden_kind, cd_steps, persistent, chain, lr, momentum, weight_decay,
                       batch_size, seed):
    """Hinton & Salakhutdinov's CD-k update with momentum and weight decay, batch by batch,
    in float64, drawing the same random numbers as the kernel. Returns new copies."""
    W, b_vis, b_hid = W.astype(float), b_vis.astype(float), b_hid.astype(float)
    vel_W, vel_vis, vel_hid = vel_W.astype(float), vel_vis.astype(float), vel_hid.astype(float)
    chain = chain.astype(float)
    f_hid = sigmoid if hidden_kind == 0 else (lambda z: z)
    f_vis = sigmoid if visible_kind == 0 else (lambda z: z)
    error = 0.0
    for batch, start in enumerate(range(0, len(order), batch_size)):
        v_pos = X[order[start : start + batch_size]].astype(float)
        b = len(v_pos)
        stream = batch * (cd_steps + 1)
        h_pos = f_hid(v_pos @ W.T + b_hid)
        if persistent:
            h = chain[:b].copy()
        else:
            h = reference_sample(h_pos, hidden_kind == 0, derive_key(seed, stream))
        for step in range(cd_steps):
            v_neg = f_vis(h @ W + b_vis)  # mean-field visible units
            if step == 0:
                error += ((v_pos - v_neg) ** 2).sum()
            h_neg = f_hid(v_neg @ W.T + b_hid)
            if persistent or step < cd_steps - 1:
                h = reference_sample(h_neg, hidden_kind == 0, derive_key(seed, stream + step + 1))
        if persistent:
            chain[:b] = h
        vel_W = momentum * vel_W + lr * ((h_pos.T @ v_pos - h_neg.T @ v_neg) / b - weight_decay * W)
        vel_hid = momentum * vel_hid + lr * (h_pos - h_neg).mean(0)
        vel_vis = momentum * vel_vis + lr * (v_pos - v_neg).mean(0)
        W = W + vel_W
        b_hid = b_hid + vel_hid
        b_vis = b_vis + vel_vis
    return dict(W=W, b_vis=b_vis, b_hid=b_hid, vel_W=vel_W, vel_vis=vel_vis,
                vel_hid=vel_hid, chain=chain, error=error)


def run_cd_epoch(X, order, params, visible_kind, hidden_kind, cd_steps, persistent, lr,
                 momentum, weight_decay, batch_size, seed, dtype, pieces=1):
    """Call the kernel as ``CDTrainer.run`` does (buffers, read-only data); returns copies.

    With ``pieces > 1`` the epoch's order is cut into that many runs of whole batches,
    one call each, as pretraining trains on gathered rows."""
    p = {k: np.array(v, dtype) for k, v in params.items()}
    n_hid, n_vis = p["W"].shape
    Xd = np.ascontiguousarray(X, dtype)
    Xd.flags.writeable = False
    error_cols = np.zeros(n_vis)
    n_batches = -(-len(order) // batch_size)
    cuts = np.linspace(0, n_batches, pieces + 1).astype(int) * batch_size
    for start, stop in zip(cuts[:-1], cuts[1:]):
        error = rk.cd_epoch(
            Xd, order[start:stop], p["W"], p["b_vis"], p["b_hid"], p["vel_W"], p["vel_vis"],
            p["vel_hid"], visible_kind, hidden_kind, cd_steps, persistent, p["chain"], lr,
            momentum, weight_decay, batch_size, np.int64(seed),
            np.empty((2 * batch_size, n_vis), dtype), np.empty((2 * batch_size, n_hid), dtype),
            np.empty((batch_size, n_hid), dtype), start // batch_size, error_cols,
            *rk.cd_pointers(dtype),
        )
    p["error"] = error
    return p


def random_rbm(rng, n_vis, n_hid, batch_size, hidden_kind, momentum_state=True):
    chain = rng.rand(batch_size, n_hid)
    if hidden_kind == 0:
        chain = (chain < 0.5).astype(float)
    s = 0.05 if momentum_state else 0.0
    # Weights large enough that sigmoids are not all near 1/2, small enough that a
    # Gaussian-linear RBM (unbounded energy) does not blow up within one epoch.
    return dict(
        W=0.3 * rng.randn(n_hid, n_vis), b_vis=0.1 * rng.randn(n_vis), b_hid=0.1 * rng.randn(n_hid),
        vel_W=s * rng.randn(n_hid, n_vis), vel_vis=s * rng.randn(n_vis), vel_hid=s * rng.randn(n_hid),
        chain=chain,
    )


def cd_data(rng, n, n_vis, visible_kind):
    if visible_kind == 0:
        return (rng.rand(n, n_vis) < 0.4) * rng.rand(n, n_vis)
    return rng.randn(n, n_vis)


@pytest.mark.parametrize("visible_kind", [0, 1])
@pytest.mark.parametrize("hidden_kind", [0, 1])
def test_cd1_single_batch_matches_hinton_update(visible_kind, hidden_kind):
    """CD-1, one batch: Hinton's update with the kernel's own hidden sample."""
    rng = np.random.RandomState(visible_kind * 2 + hidden_kind)
    n, n_vis, n_hid, seed = 10, 6, 4, 2024
    X = cd_data(rng, n, n_vis, visible_kind)
    order = rng.permutation(n)
    params = random_rbm(rng, n_vis, n_hid, n, hidden_kind)
    args = (visible_kind, hidden_kind, 1, False)
    hyper = (0.1, 0.5, 2e-4, n, seed)
    got = run_cd_epoch(X, order, params, *args, *hyper, np.float64)

    # Written out once more for a single batch, straight from the paper's code.
    W, b_vis, b_hid = params["W"], params["b_vis"], params["b_hid"]
    f_hid = sigmoid if hidden_kind == 0 else (lambda z: z)
    f_vis = sigmoid if visible_kind == 0 else (lambda z: z)
    data = X[order]
    poshidprobs = f_hid(data @ W.T + b_hid)
    poshidstates = reference_sample(poshidprobs, hidden_kind == 0, derive_key(seed, 0 * (1 + 1)))
    negdata = f_vis(poshidstates @ W + b_vis)
    neghidprobs = f_hid(negdata @ W.T + b_hid)
    vishidinc = 0.5 * params["vel_W"] + 0.1 * (
        (poshidprobs.T @ data - neghidprobs.T @ negdata) / n - 2e-4 * W
    )
    hidbiasinc = 0.5 * params["vel_hid"] + 0.1 / n * (poshidprobs.sum(0) - neghidprobs.sum(0))
    visbiasinc = 0.5 * params["vel_vis"] + 0.1 / n * (data.sum(0) - negdata.sum(0))
    assert_allclose(got["W"], W + vishidinc, rtol=1e-10, atol=1e-12)
    assert_allclose(got["b_hid"], b_hid + hidbiasinc, rtol=1e-10, atol=1e-12)
    assert_allclose(got["b_vis"], b_vis + visbiasinc, rtol=1e-10, atol=1e-12)
    assert_allclose(got["vel_W"], vishidinc, rtol=1e-10, atol=1e-12)
    assert_allclose(got["error"], ((data - negdata) ** 2).sum(), rtol=1e-10)
    # Without persistence the chain buffer is left alone.
    assert_array_equal(got["chain"], params["chain"])


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 11), n_vis=st.integers(1, 6), n_hid=st.integers(1, 5),
    batch_size=st.integers(1, 12), cd_steps=st.integers(1, 3), persistent=st.booleans(),
    visible_kind=st.sampled_from([0, 1]), hidden_kind=st.sampled_from([0, 1]),
    lr=st.floats(1e-3, 0.1), momentum=st.floats(0.0, 0.95), weight_decay=st.sampled_from([0.0, 2e-4, 0.01]),
    seed=seeds,
)
def test_cd_epoch_matches_reference(n, n_vis, n_hid, batch_size, cd_steps, persistent,
                                    visible_kind, hidden_kind, lr, momentum, weight_decay, seed):
    """Several batches (the last one partial), CD-k and PCD, every unit pair."""
    batch_size = min(batch_size, n)  # as CDTrainer sizes its buffers
    if visible_kind == 1 and hidden_kind == 1:
        # A Gaussian-linear RBM's energy is unbounded below: at Bernoulli learning rates
        # it blows up within a few batches (Hinton uses 0.001 for it).
        lr = lr / 10
    rng = np.random.RandomState(seed)
    X = cd_data(rng, n, n_vis, visible_kind)
    order = rng.permutation(n)
    params = random_rbm(rng, n_vis, n_hid, batch_size, hidden_kind)
    if visible_kind == 1 and hidden_kind == 1:
        # Each Gibbs step of a Gaussian-linear RBM multiplies the chain by W^T W (plus
        # noise): with a spectral norm of W above 1 a persistent chain grows geometrically
        # over the epoch's steps and the float64 reference overflows. Keep it a contraction.
        params["W"] *= min(1.0, 0.9 / np.linalg.norm(params["W"], 2))
    args = (visible_kind, hidden_kind, cd_steps, persistent, lr, momentum, weight_decay, batch_size, seed)
    got = run_cd_epoch(X, order, params, *args, np.float64)
    want = reference_cd_epoch(
        X, order, params["W"], params["b_vis"], params["b_hid"], params["vel_W"],
        params["vel_vis"], params["vel_hid"], visible_kind, hidden_kind, cd_steps, persistent,
        params["chain"], lr, momentum, weight_decay, batch_size, seed,
    )
    for name in ("W", "b_vis", "b_hid", "vel_W", "vel_vis", "vel_hid", "chain"):
        assert got[name].dtype == np.float64
        assert np.isfinite(want[name]).all()  # a NaN would compare equal to a NaN
        assert_allclose(got[name], want[name], rtol=1e-9, atol=1e-11, err_msg=name)
    assert_allclose(got["error"], want["error"], rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("persistent", [False, True])
@pytest.mark.parametrize("cd_steps", [1, 3])
def test_cd_epoch_float32_close_to_float64(persistent, cd_steps):
    # Linear hidden units: their Gaussian noise is continuous, so float32 rounding cannot
    # flip a Bernoulli draw and the two runs see the same samples.
    rng = np.random.RandomState(cd_steps)
    n, n_vis, n_hid, batch_size = 23, 7, 5, 8
    X = cd_data(rng, n, n_vis, 0)
    order = rng.permutation(n)
    params = random_rbm(rng, n_vis, n_hid, batch_size, 1)
    args = (0, 1, cd_steps, persistent, 0.01, 0.5, 2e-4, batch_size, 77)
    got64 = run_cd_epoch(X, order, params, *args, np.float64)
    got32 = run_cd_epoch(X, order, params, *args, np.float32)
    for name in ("W", "b_vis", "b_hid", "vel_W", "chain"):
        assert got32[name].dtype == np.float32
        assert_allclose(got32[name], got64[name], rtol=1e-4, atol=1e-4, err_msg=name)
    assert_allclose(got32["error"], got64["error"], rtol=1e-4)


@pytest.mark.parametrize("persistent", [False, True])
def test_cd_epoch_in_pieces_is_one_epoch(persistent):
    """An epoch run as several calls over consecutive runs of whole batches (with
    ``first_batch`` and one ``error_cols``) draws the same streams and makes the same
    updates as one call: bit for bit."""
    rng = np.random.RandomState(11)
    n, n_vis, n_hid, batch_size = 57, 7, 5, 8
    X = cd_data(rng, n, n_vis, 0)
    order = rng.permutation(n)
    params = random_rbm(rng, n_vis, n_hid, batch_size, 0)
    args = (0, 0, 1, persistent, 0.1, 0.5, 2e-4, batch_size, 5, np.float32)
    whole = run_cd_epoch(X, order, params, *args)
    pieces = run_cd_epoch(X, order, params, *args, pieces=3)
    for name in ("W", "b_vis", "b_hid", "vel_W", "vel_vis", "vel_hid", "chain", "error"):
        assert_array_equal(pieces[name], whole[name], err_msg=name)
    shifted = run_cd_epoch(X, order, params, *args[:-2], args[-2] + 1, args[-1])
    assert not np.array_equal(shifted["W"], whole["W"])  # the streams do matter


def test_cd_epoch_refuses_error_columns_of_the_wrong_length():
    rng = np.random.RandomState(0)
    n, n_vis, n_hid = 6, 5, 4
    p = random_rbm(rng, n_vis, n_hid, n, 0)
    p = {k: np.ascontiguousarray(v) for k, v in p.items()}
    with pytest.raises(ValueError, match="error_cols"):
        rk.cd_epoch(
            _readonly(rng.rand(n, n_vis)), np.arange(n), p["W"], p["b_vis"], p["b_hid"],
            p["vel_W"], p["vel_vis"], p["vel_hid"], 0, 0, 1, False, p["chain"], 0.1, 0.5, 0.0,
            n, np.int64(1), np.empty((2 * n, n_vis)), np.empty((2 * n, n_hid)),
            np.empty((n, n_hid)), 0, np.zeros(n_vis - 1), *rk.cd_pointers(np.float64),
        )


@pytest.mark.parametrize("dtype", DTYPES)
def test_pcd_and_cdk_update_chain_and_stay_finite(dtype):
    rng = np.random.RandomState(5)
    n, n_vis, n_hid, batch_size = 30, 8, 6, 10
    X = cd_data(rng, n, n_vis, 0)
    params = random_rbm(rng, n_vis, n_hid, batch_size, 0)
    params["chain"][:] = 0.0
    got = run_cd_epoch(X, rng.permutation(n), params, 0, 0, 3, True, 0.1, 0.5, 2e-4, batch_size, 3, dtype)
    for name in ("W", "b_vis", "b_hid", "chain"):
        assert got[name].dtype == dtype
        assert got[name].shape == params[name].shape
        assert np.isfinite(got[name]).all()
    assert not np.array_equal(got["chain"], params["chain"])
    assert set(np.unique(got["chain"])) <= {0.0, 1.0}
    assert not np.allclose(got["W"], params["W"])


# ---------------------------------------------------------------------------- backprop


def network(sizes, acts, rng, dtype=np.float64, biases_first=False, scale=0.7):
    """A flat parameter vector with its layout; ``biases_first`` puts every bias before
    every weight, a layout unlike the estimator's, to check that only offsets matter."""
    shapes = np.array(list(zip(sizes[:-1], sizes[1:])), np.int64)
    n_w = shapes[:, 0] * shapes[:, 1]
    n_b = shapes[:, 1]
    if biases_first:
        b_off = np.concatenate([[0], np.cumsum(n_b)[:-1]])
        w_off = n_b.sum() + np.concatenate([[0], np.cumsum(n_w)[:-1]])
    else:
        starts = np.concatenate([[0], np.cumsum(n_w + n_b)[:-1]])
        w_off, b_off = starts, starts + n_w
    total = int((n_w + n_b).sum())
    params = (scale * rng.randn(total)).astype(dtype)
    return dict(params=params, shapes=shapes, w_off=w_off.astype(np.int64),
                b_off=b_off.astype(np.int64), act_kind=np.array(acts, np.int64))


def unpack(net, params=None):
    params = net["params"] if params is None else params
    Ws, bs = [], []
    for (n_in, n_out), wo, bo in zip(net["shapes"], net["w_off"], net["b_off"]):
        Ws.append(params[wo : wo + n_in * n_out].reshape(n_in, n_out).astype(np.float64))
        bs.append(params[bo : bo + n_out].astype(np.float64))
    return Ws, bs


def numpy_forward(X, net, params=None, first=0, stop=None, lin=None):
    """The network's output; with ``lin``, the linear path (whole network only): the
    code gains ``X @ lin.T`` and the output's pre-activation ``code @ lin``."""
    Ws, bs = unpack(net, params)
    stop = len(Ws) if stop is None else stop
    a = X.astype(np.float64)
    code = None
    for layer in range(first, stop):
        z = a @ Ws[layer] + bs[layer]
        if lin is not None and layer == len(Ws) // 2 - 1:
            z = z + X.astype(np.float64) @ lin.T
            code = z
        if lin is not None and layer == len(Ws) - 1:
            z = z + code @ lin
        a = sigmoid(z) if net["act_kind"][layer] == bp.ACT_SIGMOID else z
    return a


def numpy_loss(X, net, loss_kind, params=None, lin=None):
    """Summed per-sample loss of the batch, as ``batch_loss_grad`` returns it."""
    out = numpy_forward(X, net, params, lin=lin)
    X = X.astype(np.float64)
    if net["act_kind"][-1] == bp.ACT_SIGMOID and loss_kind == bp.LOSS_CROSS_ENTROPY:
        return -(X * np.log(out) + (1 - X) * np.log1p(-out)).sum()
    return ((out - X) ** 2).sum()


def call_batch_loss_grad(Xb, net, loss_kind, alpha, params=None, lin=None, no_lin=None):
    """The kernel's loss and gradient; without ``lin``, the kernel gets ``no_lin`` (an
    array with no rows unless given: None compiles it without the linear path)."""
    params = net["params"] if params is None else params
    b = Xb.shape[0]
    dtype = params.dtype
    if lin is not None:
        lin = np.ascontiguousarray(lin, dtype)
    elif no_lin is not None:
        lin = None if no_lin == "none" else np.empty((0, Xb.shape[1]), dtype)
    else:
        lin = np.empty((0, Xb.shape[1]), dtype)
    widths = net["shapes"][:, 1]
    act_off = np.concatenate([[0], np.cumsum(b * widths)[:-1]]).astype(np.int64)
    acts = np.empty(int(b * widths.sum()), dtype)
    width = int(max(net["shapes"].max(), Xb.shape[1]))
    grads = np.full_like(params, np.nan)  # every entry must be written
    loss = bp.batch_loss_grad(
        np.ascontiguousarray(Xb, dtype), params, grads, net["shapes"], net["w_off"],
        net["b_off"], net["act_kind"], loss_kind, alpha, acts, act_off,
        np.empty(b * width, dtype), np.empty(b * width, dtype), lin, *bp.layer_pointers(dtype),
    )
    return loss, grads


def central_differences(f, params, h=1e-6):
    """Gradient of the scalar function ``f`` at ``params`` by central differences."""
    numeric = np.empty_like(params)
    for i in range(params.size):
        up, down = params.copy(), params.copy()
        up[i] += h
        down[i] -= h
        numeric[i] = (f(up) - f(down)) / (2 * h)
    return numeric


def objective(Xb, net, loss_kind, alpha, params, lin=None):
    """What ``grads`` is the gradient of: batch mean loss + alpha / 2 * sum ||W||^2."""
    loss, _ = call_batch_loss_grad(Xb, net, loss_kind, alpha, params, lin)
    Ws, _ = unpack(net, params)
    return loss / Xb.shape[0] + 0.5 * alpha * sum((W**2).sum() for W in Ws)


LOSS_OUTPUT = [
    (bp.LOSS_CROSS_ENTROPY, bp.ACT_SIGMOID),
    (bp.LOSS_SQUARED_ERROR, bp.ACT_SIGMOID),
    (bp.LOSS_SQUARED_ERROR, bp.ACT_LINEAR),
]


@pytest.mark.parametrize("loss_kind, out_act", LOSS_OUTPUT)
@pytest.mark.parametrize("alpha", [0.0, 0.3])
@pytest.mark.parametrize("biases_first", [False, True])
def test_batch_loss_grad_matches_finite_differences(loss_kind, out_act, alpha, biases_first):
    rng = np.random.RandomState(loss_kind * 4 + out_act * 2 + int(biases_first))
    sizes = [5, 4, 3, 4, 5]
    # Mixed hidden activations: sigmoid, linear code, sigmoid; then the output's.
    net = network(sizes, [bp.ACT_SIGMOID, bp.ACT_LINEAR, bp.ACT_SIGMOID, out_act], rng,
                  biases_first=biases_first)
    X = rng.rand(6, 5)
    loss, grads = call_batch_loss_grad(X, net, loss_kind, alpha)
    assert np.isfinite(grads).all()
    assert_allclose(loss, numpy_loss(X, net, loss_kind), rtol=1e-12)

    numeric = central_differences(lambda p: objective(X, net, loss_kind, alpha, p), net["params"])
    assert_allclose(grads, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("sizes", [[5, 3, 5], [5, 4, 3, 4, 5]])
def test_batch_loss_grad_with_linear_path_matches_finite_differences(sizes):
    # The linear path (autoencoder option linear_path): a fixed PCA projection added to
    # the linear code, and its reconstruction to the linear output.
    rng = np.random.RandomState(len(sizes))
    n_layers = len(sizes) - 1
    acts = [bp.ACT_SIGMOID] * n_layers
    acts[n_layers // 2 - 1] = bp.ACT_LINEAR
    acts[-1] = bp.ACT_LINEAR
    net = network(sizes, acts, rng)
    X = rng.randn(6, 5)
    lin = np.linalg.qr(rng.randn(5, 3))[0].T  # orthonormal rows
    loss, grads = call_batch_loss_grad(X, net, bp.LOSS_SQUARED_ERROR, 0.1, lin=lin)
    assert np.isfinite(grads).all()
    assert_allclose(loss, numpy_loss(X, net, bp.LOSS_SQUARED_ERROR, lin=lin), rtol=1e-12)
    numeric = central_differences(
        lambda p: objective(X, net, bp.LOSS_SQUARED_ERROR, 0.1, p, lin), net["params"]
    )
    assert_allclose(grads, numeric, rtol=1e-6, atol=1e-8)


def test_linear_path_with_zero_layers_is_pca_reconstruction():
    rng = np.random.RandomState(0)
    net = network([6, 4, 2, 4, 6], [bp.ACT_SIGMOID, bp.ACT_LINEAR, bp.ACT_SIGMOID,
                                    bp.ACT_LINEAR], rng)
    Ws, bs = unpack(net)
    for layer in (1, 3):  # the layers feeding the code and the output
        wo, bo = net["w_off"][layer], net["b_off"][layer]
        net["params"][wo : wo + Ws[layer].size] = 0.0
        net["params"][bo : bo + bs[layer].size] = 0.0
    X = rng.randn(8, 6)
    lin = np.linalg.qr(rng.randn(6, 2))[0].T
    loss, _ = call_batch_loss_grad(X, net, bp.LOSS_SQUARED_ERROR, 0.0, lin=lin)
    assert_allclose(loss, ((X @ lin.T @ lin - X) ** 2).sum(), rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_loss_grad_without_linear_path_is_the_same_for_none_and_no_rows(dtype):
    """None, the estimators' argument without a linear path, compiles the kernel without
    its code; an array with no rows runs it and skips every term: the same results."""
    rng = np.random.RandomState(5)
    net = network([5, 4, 3, 4, 5], [bp.ACT_SIGMOID, bp.ACT_LINEAR, bp.ACT_SIGMOID,
                                    bp.ACT_SIGMOID], rng, dtype)
    X = rng.rand(6, 5)
    loss_none, grads_none = call_batch_loss_grad(X, net, bp.LOSS_CROSS_ENTROPY, 0.1,
                                                 no_lin="none")
    loss_rows, grads_rows = call_batch_loss_grad(X, net, bp.LOSS_CROSS_ENTROPY, 0.1,
                                                 no_lin="rows")
    assert loss_none == loss_rows
    assert_array_equal(grads_none, grads_rows)
    assert_allclose(loss_none, numpy_loss(X, net, bp.LOSS_CROSS_ENTROPY), **tol(dtype))


def test_encoding_between_rbms_matches_numpy_and_shares_the_forward_kernel():
    """The data between RBMs is encoded by dense_forward with the argument types of the
    fine-tuning kernels' forward pass: one compiled kernel serves both."""
    from skdae._stream import bernoulli_hidden_means

    rng = np.random.RandomState(6)
    V = rng.rand(7, 5).astype(np.float32)
    W = rng.randn(3, 5).astype(np.float32)
    b_hid = rng.randn(3).astype(np.float32)
    out = np.empty((7, 3), np.float32)
    bernoulli_hidden_means(V, W, b_hid, out)
    assert_allclose(out, sigmoid(V.astype(np.float64) @ W.T.astype(np.float64) + b_hid),
                    rtol=RTOL32, atol=ATOL32)
    compiled = set(_dense.dense_forward.signatures)
    net = network([5, 3, 5], [bp.ACT_SIGMOID, bp.ACT_SIGMOID], rng, np.float32)
    call_batch_loss_grad(V, net, bp.LOSS_CROSS_ENTROPY, 0.0, no_lin="none")
    assert set(_dense.dense_forward.signatures) == compiled


def test_linear_path_of_the_wrong_shape_is_refused():
    rng = np.random.RandomState(0)
    net = network([5, 3, 5], [bp.ACT_LINEAR, bp.ACT_LINEAR], rng)
    with pytest.raises(ValueError, match="linear path"):
        call_batch_loss_grad(rng.randn(4, 5), net, bp.LOSS_SQUARED_ERROR, 0.0,
                             lin=np.zeros((2, 5)))


@fast
@given(
    n_features=st.integers(1, 6), hidden=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    b=st.integers(1, 7), data=st.data(), seed=seeds,
)
def test_batch_loss_value_float32_close_to_float64(n_features, hidden, b, data, seed):
    loss_kind, out_act = data.draw(st.sampled_from(LOSS_OUTPUT))
    alpha = data.draw(st.sampled_from([0.0, 0.1]))
    sizes = [n_features, *hidden, n_features]
    acts = data.draw(st.lists(st.sampled_from([0, 1]), min_size=len(sizes) - 2, max_size=len(sizes) - 2))
    rng = np.random.RandomState(seed)
    net = network(sizes, [*acts, out_act], rng)
    X = rng.rand(b, n_features)
    loss64, g64 = call_batch_loss_grad(X, net, loss_kind, alpha)
    assert_allclose(loss64, numpy_loss(X, net, loss_kind), rtol=1e-10, atol=1e-12)
    loss32, g32 = call_batch_loss_grad(X, net, loss_kind, alpha, net["params"].astype(np.float32))
    assert g32.dtype == np.float32
    assert_allclose(loss32, loss64, rtol=1e-4, atol=1e-5)
    assert_allclose(g32, g64, rtol=1e-3, atol=1e-4)


def test_cross_entropy_is_exact_for_saturated_outputs():
    # A confidently wrong output: log(1 - sigmoid(40)) underflows in a naive formula.
    rng = np.random.RandomState(0)
    net = network([1, 1], [bp.ACT_SIGMOID], rng)
    net["params"][:] = [40.0, 0.0]  # weight, bias: z = 40 x
    X = np.array([[1.0], [0.0]])
    loss, grads = call_batch_loss_grad(X, net, bp.LOSS_CROSS_ENTROPY, 0.0)
    # x = 1: softplus(40) - 40 ~ 4e-18; x = 0: z = 0, log 2.
    assert_allclose(loss, softplus(40.0) - 40.0 + np.log(2.0), rtol=1e-12)
    X = np.array([[0.0], [1.0]])
    net["params"][:] = [0.0, 40.0]  # z = 40 everywhere
    loss, grads = call_batch_loss_grad(X, net, bp.LOSS_CROSS_ENTROPY, 0.0)
    assert_allclose(loss, softplus(40.0) + softplus(40.0) - 40.0, rtol=1e-12)
    assert np.isfinite(grads).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("first, stop", [(0, 4), (0, 2), (2, 4), (1, 2), (1, 4)])
def test_forward_layers_in_chunks_matches_numpy(dtype, first, stop):
    rng = np.random.RandomState(first * 10 + stop)
    sizes = [6, 5, 2, 5, 6]
    net = network(sizes, [0, 1, 0, 0], rng, dtype=dtype)
    n, chunk = 11, 3  # the last chunk is partial
    X = rng.rand(n, sizes[first]).astype(dtype)
    X.flags.writeable = False
    width = int(net["shapes"][first:stop, 1].max())
    out = np.empty((n, sizes[stop]), dtype)
    bp.forward_layers(
        X, net["params"], net["shapes"], net["w_off"], net["b_off"], net["act_kind"], first,
        stop, out, np.empty(chunk * width, dtype), np.empty(chunk * width, dtype), chunk,
        bp.dense_pointer(dtype),
    )
    assert out.dtype == dtype
    assert_allclose(out, numpy_forward(X, net, first=first, stop=stop), **tol(dtype))


# -------------------------------------------------------------------------- optimisers


@fast
@given(size=st.integers(1, 40), lr=st.floats(1e-4, 1.0), momentum=st.floats(0.0, 0.99),
       steps=st.integers(1, 4), dtype=dtypes, seed=seeds)
def test_sgd_step_matches_numpy(size, lr, momentum, steps, dtype, seed):
    rng = np.random.RandomState(seed)
    params, velocity = rng.randn(size), 0.1 * rng.randn(size)
    p_k, v_k = params.astype(dtype), velocity.astype(dtype)
    for _ in range(steps):
        g = rng.randn(size)
        bp.sgd_step(p_k, g.astype(dtype), v_k, lr, momentum)
        velocity = momentum * velocity - lr * g
        params = params + velocity
    assert p_k.dtype == dtype and v_k.dtype == dtype
    assert_allclose(v_k, velocity, **tol(dtype))
    assert_allclose(p_k, params, **tol(dtype))


@fast
@given(size=st.integers(1, 40), lr=st.floats(1e-4, 0.1), beta1=st.floats(0.0, 0.99),
       beta2=st.floats(0.5, 0.9999), epsilon=st.sampled_from([1e-8, 1e-4]),
       steps=st.integers(1, 5), first_step=st.integers(1, 50), dtype=dtypes, seed=seeds)
def test_adam_step_matches_numpy(size, lr, beta1, beta2, epsilon, steps, first_step, dtype, seed):
    rng = np.random.RandomState(seed)
    params = rng.randn(size)
    m, v = 0.1 * rng.randn(size), 0.1 * rng.rand(size)
    p_k, m_k, v_k = params.astype(dtype), m.astype(dtype), v.astype(dtype)
    for t in range(first_step, first_step + steps):
        g = rng.randn(size)
        bp.adam_step(p_k, g.astype(dtype), m_k, v_k, t, lr, beta1, beta2, epsilon)
        # scikit-learn's AdamOptimizer: bias correction folded into the step size.
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        lr_t = lr * np.sqrt(1 - beta2**t) / (1 - beta1**t)
        params = params - lr_t * m / (np.sqrt(v) + epsilon)
    assert p_k.dtype == dtype
    t32 = dict(rtol=1e-4, atol=1e-5)
    assert_allclose(m_k, m, **(tol(dtype) if dtype == np.float64 else t32))
    assert_allclose(v_k, v, **(tol(dtype) if dtype == np.float64 else t32))
    assert_allclose(p_k, params, **(tol(dtype) if dtype == np.float64 else t32))


def test_adam_first_step_moves_each_parameter_by_learning_rate():
    # With zero moments, Adam's first bias-corrected step is lr * sign(g).
    g = np.array([3.0, -0.01, 1e-3])
    p = np.zeros(3)
    bp.adam_step(p, g, np.zeros(3), np.zeros(3), 1, 0.01, 0.9, 0.999, 1e-12)
    assert_allclose(p, -0.01 * np.sign(g), rtol=1e-6)


# ---------------------------------------------------------------------------- epochs


def run_finetune_epoch(X, order, net, solver, batch_size, step, state, hyper, loss_kind, params=None):
    params = (net["params"] if params is None else params).copy()
    dtype = params.dtype
    state_a, state_b = (s.astype(dtype) for s in state)
    widths = net["shapes"][:, 1]
    act_off = np.concatenate([[0], np.cumsum(batch_size * widths)[:-1]]).astype(np.int64)
    width = int(max(net["shapes"].max(), X.shape[1]))
    Xd = np.ascontiguousarray(X, dtype)
    Xd.flags.writeable = False
    lr, momentum, beta1, beta2, epsilon, alpha = hyper
    loss, new_step = bp.finetune_epoch(
        Xd, order, params, np.zeros_like(params), state_a, state_b, step, solver, lr,
        momentum, beta1, beta2, epsilon, alpha, batch_size, net["shapes"], net["w_off"],
        net["b_off"], net["act_kind"], loss_kind, np.empty((batch_size, X.shape[1]), dtype),
        np.empty(int(batch_size * widths.sum()), dtype), act_off,
        np.empty(batch_size * width, dtype), np.empty(batch_size * width, dtype),
        np.empty((0, X.shape[1]), dtype), *bp.layer_pointers(dtype),
    )
    return params, state_a, state_b, loss, new_step


def reference_finetune_epoch(X, order, net, solver, batch_size, step, state, hyper, loss_kind):
    """batch_loss_grad (checked above) followed by the NumPy optimiser formulas."""
    lr, momentum, beta1, beta2, epsilon, alpha = hyper
    params = net["params"].astype(np.float64)
    a, b_ = (s.astype(np.float64) for s in state)
    total = 0.0
    for start in range(0, len(order), batch_size):
        Xb = X[order[start : start + batch_size]]
        loss, g = call_batch_loss_grad(Xb, net, loss_kind, alpha, params)
        total += loss
        step += 1
        if solver == 0:
            a = momentum * a - lr * g
            params = params + a
        else:
            a = beta1 * a + (1 - beta1) * g
            b_ = beta2 * b_ + (1 - beta2) * g**2
            params = params - lr * np.sqrt(1 - beta2**step) / (1 - beta1**step) * a / (np.sqrt(b_) + epsilon)
    return params, a, b_, total, step


@pytest.mark.parametrize("solver", [0, 1])
@pytest.mark.parametrize("loss_kind, out_act", LOSS_OUTPUT)
def test_finetune_epoch_full_batch_is_one_gradient_step(solver, loss_kind, out_act):
    rng = np.random.RandomState(solver)
    net = network([5, 3, 2, 3, 5], [0, 1, 0, out_act], rng)
    n = 9
    X = rng.rand(n, 5)
    order = rng.permutation(n)
    hyper = (0.05, 0.9, 0.9, 0.999, 1e-8, 1e-3)
    size = net["params"].size
    state = (np.zeros(size), np.zeros(size if solver == 1 else 0))
    params, state_a, state_b, loss, step = run_finetune_epoch(
        X, order, net, solver, n, 4, state, hyper, loss_kind
    )

    # One batch of all rows, in the given order: one gradient and one optimiser step.
    g_loss, g = call_batch_loss_grad(X[order], net, loss_kind, 1e-3)
    assert step == 5
    assert_allclose(loss, g_loss, rtol=1e-12)
    if solver == 0:
        assert_allclose(params, net["params"] - 0.05 * g, rtol=1e-12, atol=1e-14)
        assert_allclose(state_a, -0.05 * g, rtol=1e-12, atol=1e-14)
    else:
        expected = net["params"].copy()
        m_, v_ = np.zeros(size), np.zeros(size)
        bp.adam_step(expected, g, m_, v_, 5, 0.05, 0.9, 0.999, 1e-8)
        assert_allclose(params, expected, rtol=1e-12, atol=1e-14)
        assert_allclose(state_a, m_, rtol=1e-12, atol=1e-14)
        assert_allclose(state_b, v_, rtol=1e-12, atol=1e-14)


@fast
@given(n=st.integers(1, 12), batch_size=st.integers(1, 12), solver=st.sampled_from([0, 1]),
       loss_output=st.sampled_from(LOSS_OUTPUT), step=st.integers(0, 20), seed=seeds)
def test_finetune_epoch_minibatches_match_reference(n, batch_size, solver, loss_output, step, seed):
    batch_size = min(batch_size, n)  # as the estimator sizes its buffers
    loss_kind, out_act = loss_output
    rng = np.random.RandomState(seed)
    net = network([4, 3, 4], [0, out_act], rng)
    X = rng.rand(n, 4)
    order = rng.permutation(n)
    hyper = (0.02, 0.8, 0.9, 0.99, 1e-8, 0.01)
    size = net["params"].size
    state = (0.01 * rng.randn(size), 0.01 * rng.rand(size))
    got = run_finetune_epoch(X, order, net, solver, batch_size, step, state, hyper, loss_kind)
    want = reference_finetune_epoch(X, order, net, solver, batch_size, step, state, hyper, loss_kind)
    assert got[4] == want[4] == step + -(-n // batch_size)
    for g, w in zip(got[:4], want[:4]):
        assert_allclose(g, w, rtol=1e-9, atol=1e-12)

    # The same epoch in float32 stays float32 and close.
    got32 = run_finetune_epoch(X, order, net, solver, batch_size, step, state, hyper, loss_kind,
                               params=net["params"].astype(np.float32))
    assert got32[0].dtype == np.float32 and got32[1].dtype == np.float32
    assert_allclose(got32[0], got[0], rtol=1e-3, atol=1e-4)
    assert_allclose(got32[3], got[3], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------- rate term of quantized fine-tuning


def reference_code_bits(v, lo, step, n_levels, loc, scale):
    """Bits of each value of ``v`` (n, n_units) under the discretised logistics: the mass
    of the bin-wide interval around it, the outer bins with their tails."""
    from scipy.special import expit

    coded = (step > 0) & (n_levels > 1)
    pos = (v - lo) / np.where(coded, step, 1.0)
    upper = np.where(pos > n_levels - 1, 1.0, expit((v + step / 2 - loc) / scale))
    lower = np.where(pos < 1, 0.0, expit((v - step / 2 - loc) / scale))
    return np.where(coded, -np.log2(np.where(coded, upper - lower, 1.0)), 0.0)


def rate_case(rng, n=7):
    lo = np.array([-1.0, 0.0, -2.0, 0.5, 0.0])
    n_levels = np.array([8, 4, 16, 1, 2], np.int64)
    step = np.array([0.25, 0.3, 0.25, 0.0, 1.0])
    loc = np.array([0.1, 0.7, -0.5, 0.5, 1.2])
    scale = np.array([0.3, 0.2, 1.5, 1.0, 0.4])
    # Values inside each unit's range and just past it (the noisy stand-in reaches half a
    # bin beyond), never on a bin edge where the tails switch.
    pos = rng.uniform(-0.45, n_levels + 0.45, (n, lo.size))
    pos = np.where(np.abs(pos - np.round(pos)) < 0.02, pos + 0.05, pos)
    v = lo + pos * step
    return v, lo, step, n_levels, np.stack([loc, scale])


def call_code_rate_gradient(v, lo, step, n_levels, density, weight, sigmoid_code=False,
                            dtype=np.float64):
    delta = np.zeros(v.shape, dtype)
    stats = np.zeros((2, v.shape[1]))
    bits = qk.code_rate_gradient(v.astype(dtype), lo.astype(dtype), step.astype(dtype),
                                 n_levels, density, weight, sigmoid_code, delta, stats)
    return bits, delta, stats


def test_code_bits_are_a_distribution_over_each_unit_s_bins():
    rng = np.random.RandomState(0)
    _, lo, step, n_levels, density = rate_case(rng)
    for j in range(lo.size):
        centres = lo[j] + (np.arange(n_levels[j]) + 0.5) * step[j]
        v = np.tile(lo[None], (n_levels[j], 1))
        v[:, j] = centres
        bits, _, _ = call_code_rate_gradient(v, lo, step, n_levels, density, 0.0)
        per_bin = reference_code_bits(v, lo, step, n_levels, *density)[:, j]
        if n_levels[j] > 1:
            assert_allclose(np.sum(np.exp2(-per_bin)), 1.0, rtol=1e-12)
        else:
            assert_array_equal(per_bin, 0.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_code_rate_gradient_matches_numpy_and_finite_differences(dtype):
    rng = np.random.RandomState(1)
    v, lo, step, n_levels, density = rate_case(rng)
    v = v.astype(dtype).astype(np.float64)
    weight = 0.7
    bits, delta, stats = call_code_rate_gradient(v, lo, step, n_levels, density, weight,
                                                 dtype=dtype)
    reference = reference_code_bits(v, lo.astype(dtype), step.astype(dtype), n_levels,
                                    *density)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    assert_allclose(bits, reference.sum(), rtol=rtol)
    assert_allclose(stats, np.stack([v.sum(0), (v * v).sum(0)]), rtol=1e-12)

    def total(flat):
        return reference_code_bits(flat.reshape(v.shape), lo, step, n_levels, *density).sum()

    numeric = central_differences(total, v.ravel()).reshape(v.shape)
    assert_allclose(delta, weight * numeric, rtol=1e-6 if dtype == np.float64 else 1e-3,
                    atol=1e-7 if dtype == np.float64 else 1e-5)
    # A unit with one bin costs nothing and gets no gradient.
    assert_array_equal(delta[:, 3], 0.0)


def test_code_rate_gradient_of_a_sigmoid_code_is_taken_before_the_activation():
    rng = np.random.RandomState(2)
    v, lo, step, n_levels, density = rate_case(rng)
    v = np.clip(v, 0.05, 0.95)
    _, linear, _ = call_code_rate_gradient(v, lo, step, n_levels, density, 1.0)
    _, sig, _ = call_code_rate_gradient(v, lo, step, n_levels, density, 1.0, sigmoid_code=True)
    assert_allclose(sig, linear * v * (1 - v), rtol=1e-12)


def test_code_rate_stays_finite_far_in_the_tails():
    lo, step, n_levels = np.zeros(1), np.full(1, 1e-3), np.array([4096], np.int64)
    density = np.array([[0.0], [1e-5]])  # bins 100 scales wide: masses down to e**-400
    v = lo + (np.array([[0.5], [1.5], [2000.5], [4095.5]])) * step
    bits, delta, _ = call_code_rate_gradient(v, lo, step, n_levels, density, 1.0)
    assert np.isfinite(bits) and np.isfinite(delta).all()
    assert bits > 1000  # far tail bins cost hundreds of bits, not inf


def quantized_objective(X, net, loss_kind, code_layer, q, noise, weight, params):
    """Batch mean of loss + weight * bits, the codes going through clip-and-noise."""
    lo, step, n_levels, density = q
    Ws, bs = unpack(net, params)
    a = X.astype(np.float64)
    code = None
    for layer in range(len(Ws)):
        z = a @ Ws[layer] + bs[layer]
        a = sigmoid(z) if net["act_kind"][layer] == bp.ACT_SIGMOID else z
        if layer == code_layer:
            a = np.clip(a, lo, lo + n_levels * step) + noise * step
            # A unit with one bin is its centre (quantize_code_layer).
            a = np.where((n_levels > 1) & (step > 0), a, lo + step / 2)
            code = a
    Xd = X.astype(np.float64)
    if loss_kind == bp.LOSS_CROSS_ENTROPY:
        loss = -(Xd * np.log(a) + (1 - Xd) * np.log1p(-a)).sum()
    else:
        loss = ((a - Xd) ** 2).sum()
    bits = reference_code_bits(code, lo, step, n_levels, *density).sum()
    return (loss + weight * bits) / X.shape[0], loss, bits


def run_quantized_gradient(X, net, loss_kind, code_layer, q, noise, weight, stats):
    """One full batch of finetune_epoch_quantized without an optimiser: the gradient."""
    lo, step, n_levels, density = q
    params = net["params"].copy()
    n = X.shape[0]
    widths = net["shapes"][:, 1]
    act_off = np.concatenate([[0], np.cumsum(n * widths)[:-1]]).astype(np.int64)
    width = int(max(net["shapes"].max(), X.shape[1]))
    grads = np.full_like(params, np.nan)
    empty = np.zeros_like(params)
    loss, _ = qk.finetune_epoch_quantized(
        np.ascontiguousarray(X), np.arange(n, dtype=np.int64), params, grads, empty, empty, 0,
        bp.SOLVER_NONE, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, n, net["shapes"], net["w_off"],
        net["b_off"], net["act_kind"], loss_kind, np.empty_like(X),
        np.empty(int(n * widths.sum())), act_off, np.empty(n * width), np.empty(n * width),
        np.empty((0, X.shape[1])), code_layer, lo, step, n_levels, noise, density, weight,
        stats, *bp.layer_pointers(X.dtype),
    )
    assert_array_equal(params, net["params"])
    return loss, grads


@pytest.mark.parametrize("loss_kind, out_act", LOSS_OUTPUT[:2])
@pytest.mark.parametrize("weight", [0.0, 0.05])
def test_quantized_finetune_with_rate_term_matches_finite_differences(loss_kind, out_act,
                                                                      weight):
    """The kernel's gradient is that of the mean of loss + weight * bits (the noisy
    stand-in, linear code inside its range: the quantizer is differentiable there)."""
    rng = np.random.RandomState(3)
    sizes = [5, 4, 3, 4, 5]
    net = network(sizes, [bp.ACT_SIGMOID, bp.ACT_LINEAR, bp.ACT_SIGMOID, out_act], rng)
    X = rng.rand(6, 5)
    code_layer = 1
    # Every unit with bins: the kernel passes the gradient of a one-bin unit (a constant)
    # straight through, as it does the rounding.
    lo = np.full(3, -8.0)
    n_levels = np.array([16, 8, 4], np.int64)
    step = np.array([1.0, 2.0, 4.0])
    density = np.array([[0.2, -0.3, 0.0], [0.8, 1.1, 1.0]])
    q = (lo, step, n_levels, density)
    noise = rng.uniform(-0.5, 0.5, (6, 3))
    stats = np.zeros((2, 3))
    loss, grads = run_quantized_gradient(X, net, loss_kind, code_layer, q, noise, weight, stats)
    mean, distortion, bits = quantized_objective(X, net, loss_kind, code_layer, q, noise,
                                                 weight, net["params"])
    assert_allclose(loss, distortion + weight * bits, rtol=1e-12)
    numeric = central_differences(
        lambda p: quantized_objective(X, net, loss_kind, code_layer, q, noise, weight, p)[0],
        net["params"],
    )
    assert_allclose(grads, numeric, rtol=1e-6, atol=1e-8)
    if weight == 0:
        assert_array_equal(stats, 0.0)  # the rate term is skipped entirely
    else:
        assert (stats[1] > 0).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("noise", [False, True])
def test_quantizer_records_the_clipped_side_and_drops_outward_gradients(dtype, noise):
    """A code beyond its range is clipped (side 1 above, -1 below); its delta is zeroed
    when a gradient step would move it further out, and kept when it moves it back in.
    One-bin units and codes inside the range keep theirs."""
    lo = np.zeros(4, dtype)
    step = np.ones(4, dtype)
    n_levels = np.array([4, 4, 4, 1], np.int64)
    codes = np.array([[-3.0, 1.5, 9.0, 7.0], [5.0, -0.5, 2.2, -7.0]], dtype)
    rng = np.random.RandomState(0)
    noise_rows = (rng.uniform(-0.5, 0.5, codes.shape) if noise else np.empty((0, 4))).astype(dtype)
    side = np.full(codes.shape, 7, np.int8)
    quantized = codes.copy()
    qk.quantize_code_layer(quantized, lo, step, n_levels, noise_rows, side)
    assert_array_equal(side, [[-1, 0, 1, 0], [1, -1, 0, 0]])
    assert (quantized[:, :3] >= lo[:3] - step[:3] / 2).all()
    assert (quantized[:, :3] <= lo[:3] + n_levels[:3] * step[:3] + step[:3] / 2).all()
    # A step moves a code against its delta: a negative delta raises it.
    delta = np.array([[1.0, 1.0, -1.0, -1.0], [-1.0, -2.0, 3.0, 4.0]], dtype)
    qk.drop_outward_gradient(delta, side)
    assert_array_equal(delta, [[0.0, 1.0, 0.0, -1.0], [0.0, -2.0, 3.0, 4.0]])
    delta = np.array([[-1.0, 1.0, 1.0, -1.0], [1.0, 2.0, 3.0, 4.0]], dtype)
    kept = delta.copy()
    qk.drop_outward_gradient(delta, side)
    kept[1, 1] = 0.0  # below the range, a positive delta would lower it further
    assert_array_equal(delta, kept)


def test_code_rate_gradient_refuses_arrays_that_do_not_match_the_codes():
    rng = np.random.RandomState(4)
    v, lo, step, n_levels, density = rate_case(rng)
    with pytest.raises(ValueError, match="rate arrays"):
        call_code_rate_gradient(v, lo[:-1], step, n_levels, density, 1.0)
    with pytest.raises(ValueError, match="rate arrays"):
        call_code_rate_gradient(v, lo, step, n_levels, density[:, :-1], 1.0)
