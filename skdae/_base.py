"""Helpers shared by skdae's estimators: unit types, input scaling, threads, seeds, Ctrl-C."""

import signal
import threading
from contextlib import contextmanager

import numpy as np
from sklearn.utils import check_array
from sklearn.utils.validation import validate_data

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


def new_seed(rng):
    """One 63-bit int seed drawn from ``rng``: fitted state stays plain data."""
    return int(epoch_seeds(rng, 1)[0])


def epoch_rng(*key):
    """The random stream of one training epoch, named by ints (seed, phase, layer, epoch).

    Each epoch draws from its own stream, derived from the fit's seed and the epoch's
    position only: a fit of ``k`` epochs is exactly the first ``k`` epochs of a longer one,
    and ``partial_fit`` continues the stream of ``fit``.
    """
    return np.random.RandomState(np.random.SeedSequence(key).generate_state(4))


class _StopRequest:
    requested = False

    def _handle(self, signum, frame):
        self.requested = True
        # A second Ctrl-C interrupts at once (and the epoch in progress is rolled back).
        signal.signal(signal.SIGINT, signal.default_int_handler)


@contextmanager
def stop_on_ctrl_c():
    """Turn the first Ctrl-C during training into a request to stop after the epoch.

    A kernel cannot be interrupted while it runs (Python sees the signal only when it
    returns), so the epoch in progress completes, is counted, and training stops there
    with ``request.requested`` set: the estimator's state then describes exactly the
    epochs it reports. Only in the main thread, and only when SIGINT has Python's default
    handler (a program's own handler is left alone); elsewhere a ``KeyboardInterrupt``
    rolls the epoch in progress back instead.
    """
    request = _StopRequest()
    installed = (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )
    if installed:
        signal.signal(signal.SIGINT, request._handle)
    try:
        yield request
    finally:
        if installed and signal.getsignal(signal.SIGINT) == request._handle:
            signal.signal(signal.SIGINT, signal.default_int_handler)


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


class VisibleUnitsMixin:
    """What :class:`~skdae.RBM` and :class:`~skdae.RBMStackAutoencoder` share: the visible
    units and their standardisation, input validation, ``partial_fit``'s preamble, the
    checks of that part of the fitted state, and the tags.

    A class using it defines ``_dtype`` (the parameters' dtype) and
    ``_check_fitted_state(check_values)``.
    """

    def _validate_input(self, X, reset):
        return validate_data(self, X, dtype=[np.float64, np.float32], order="C", reset=reset)

    def _fit_visible_units(self, X):
        """Resolve the visible units and their standardisation from training ``X``;
        return ``X`` as the visible units see it."""
        self.visible_units_ = resolve_visible_units(X, self.visible_units)
        self.mean_, self.scale_ = input_scaling(X, self.visible_units_)
        return standardize(X, self.mean_, self.scale_, self.visible_units_)

    def _partial_fit_input(self, X):
        """``(X, first_call)`` for ``partial_fit``: ``X`` validated and, on later calls,
        checked against the fitted state and cast to the parameters' dtype."""
        first_call = not hasattr(self, "n_iter_")
        X = self._validate_input(X, reset=first_call)
        if not first_call:
            self._check_fitted_state(check_values=True)
            X = X.astype(self._dtype, copy=False)
            if self.visible_units_ == "bernoulli":
                check_unit_range(X, "X")
        return X, first_call

    def _visible_input(self, X):
        """Validated ``X`` as the visible units see it (no range check: the map is defined
        for any input, and a scaler fitted on training data legitimately yields test
        values slightly outside [0, 1])."""
        X = X.astype(self._dtype, copy=False)
        return standardize(X, self.mean_, self.scale_, self.visible_units_)

    def _unscale(self, V):
        """Undo the standardisation of Gaussian visible units, in place."""
        if self.visible_units_ == "gaussian":
            V *= self.scale_
            V += self.mean_
        return V

    def _check_visible_state(self, check, n_features, dtype, check_values):
        """Check ``visible_units_``, ``mean_`` and ``scale_`` with a StateChecker."""
        check.choice("visible_units_", {"bernoulli", "gaussian"})
        check.array("mean_", (n_features,), dtype, finite=check_values)
        check.array("scale_", (n_features,), dtype, finite=check_values, positive=check_values)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
