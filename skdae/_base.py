"""Helpers shared by skdae's estimators: unit types, input scaling, threads, seeds."""

from contextlib import contextmanager

import numpy as np
from sklearn.utils import check_array

UNIT_RANGE_HINT = (
    "Bernoulli visible units model values in [0, 1]: scale the data first (for example "
    "with sklearn.preprocessing.MinMaxScaler, or divide 8-bit pixels by 255), or use "
    "visible_units='gaussian' (or 'auto')."
)


def resolve_visible_units(X, visible_units):
    """Pick the visible unit type: ``"auto"`` is Bernoulli iff all of ``X`` is in [0, 1]."""
    if visible_units == "auto":
        return "bernoulli" if X.size and X.min() >= 0 and X.max() <= 1 else "gaussian"
    if visible_units == "bernoulli":
        check_unit_range(X, "X")
    return visible_units


def check_unit_range(X, what):
    """Raise a ValueError naming the fix when Bernoulli data leave [0, 1]."""
    lo, hi = X.min(), X.max()
    if lo < 0 or hi > 1:
        raise ValueError(
            f"{what} has values in [{lo:.6g}, {hi:.6g}], outside [0, 1]. " + UNIT_RANGE_HINT
        )


def input_scaling(X, visible_kind):
    """Per-feature ``(mean, scale)`` that standardise Gaussian visible units.

    Bernoulli units are not rescaled (mean 0, scale 1). Constant features keep scale 1
    so that standardising never divides by zero.
    """
    n_features = X.shape[1]
    if visible_kind == "bernoulli":
        return np.zeros(n_features, X.dtype), np.ones(n_features, X.dtype)
    mean = X.mean(axis=0, dtype=np.float64)
    std = X.std(axis=0, dtype=np.float64)
    std[~(std > np.finfo(X.dtype).eps * np.maximum(1.0, np.abs(mean)))] = 1.0
    return mean.astype(X.dtype), std.astype(X.dtype)


def standardize(X, mean, scale, visible_kind):
    """Input as the kernels see it: standardised for Gaussian units, read-only, C order."""
    if visible_kind == "gaussian":
        X = (X - mean) / scale
    return readonly(X)


def readonly(X):
    """A read-only C-contiguous view, so kernels compile one signature per dtype."""
    X = np.ascontiguousarray(X)
    if X.flags.writeable:
        X = X.view()
        X.flags.writeable = False
    return X


def check_codes(codes, n_codes, dtype, estimator_name):
    """Validate the input of ``inverse_transform`` (codes, not features)."""
    codes = check_array(codes, dtype=[np.float64, np.float32], order="C")
    if codes.shape[1] != n_codes:
        raise ValueError(
            f"inverse_transform expects codes with {n_codes} columns (the output of "
            f"{estimator_name}.transform), got {codes.shape[1]}."
        )
    return np.ascontiguousarray(codes, dtype=dtype)


def epoch_seeds(rng, n):
    """``n`` independent 63-bit seeds for the kernels' counter-based streams."""
    return rng.randint(0, np.iinfo(np.int64).max, size=n, dtype=np.int64)


def partial_fit_rng(seed, call_index):
    """The random stream of one ``partial_fit`` call, derived from a stored int seed."""
    return np.random.RandomState(np.random.SeedSequence((seed, call_index)).generate_state(4))


@contextmanager
def thread_limits(n_jobs):
    """Run a block of kernel calls on ``n_jobs`` Numba threads with BLAS single-threaded.

    The kernels parallelise over fixed blocks themselves (each block calls BLAS), so a
    multi-threaded BLAS underneath would only oversubscribe the cores. ``None`` and ``-1``
    mean every thread Numba may use (all cores, or the share joblib gives a worker process);
    larger values are capped there. Both settings are restored on exit, also on error.
    Results do not depend on the thread count.
    """
    import numba
    from joblib import effective_n_jobs
    from threadpoolctl import threadpool_limits

    available = numba.config.NUMBA_NUM_THREADS
    n_threads = available if n_jobs is None else max(1, min(effective_n_jobs(n_jobs), available))
    previous = numba.get_num_threads()
    with threadpool_limits(limits=1, user_api="blas"):
        numba.set_num_threads(n_threads)
        try:
            yield
        finally:
            numba.set_num_threads(previous)
