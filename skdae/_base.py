"""Helpers shared by skdae's estimators: unit types, input scaling, threads, seeds, Ctrl-C."""

import signal
import threading
from contextlib import contextmanager, nullcontext

import numpy as np
from sklearn.utils import check_array
from sklearn.utils.validation import _check_feature_names, _check_n_features, validate_data

from ._stream import (
    ArrayRows,
    ColumnStats,
    Source,
    SparseRows,
    StreamedRows,
    as_float,
    default_chunk_rows,
    is_out_of_core,
    is_sparse,
    store_chunk_rows,
)

UNIT_RANGE_HINT = (
    "Bernoulli visible units model values in [0, 1]: scale the data first (for example "
    "with sklearn.preprocessing.MinMaxScaler, or divide 8-bit pixels by 255), or use "
    "visible_units='gaussian' (or 'auto')."
)


def check_unit_range(lo, hi, what):
    """Raise a ValueError naming the fix when Bernoulli data leave [0, 1]."""
    if lo < 0 or hi > 1:
        raise ValueError(
            f"{what} has values in [{lo:.6g}, {hi:.6g}], outside [0, 1]. " + UNIT_RANGE_HINT
        )


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


def _check_out(out, shape):
    if tuple(getattr(out, "shape", ())) != tuple(shape):
        raise ValueError(f"out has shape {getattr(out, 'shape', None)}, expected {shape}.")
    return out


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


# Held around kernel launches when Numba's threading layer is "workqueue" (see
# serialised_launches); reentrant, because a kernel block may call inference inside it.
_LAUNCH_LOCK = threading.RLock()
_LAYER = []
# BLAS is pinned to one thread while any thread runs kernels (a count, so that one
# thread finishing does not restore multi-threaded BLAS under another still running).
_BLAS_LOCK = threading.Lock()
_BLAS = {"users": 0, "limiter": None}


def serialised_launches():
    """Whether kernel launches must be serialised across threads.

    Numba's fallback threading layer, ``workqueue`` (used when neither OpenMP nor TBB is
    usable), aborts the whole process when two threads launch parallel kernels at once.
    The OpenMP and TBB layers are thread-safe. The layer is chosen once per process, on
    the first parallel launch, which this triggers.
    """
    if not _LAYER:
        import numba

        try:
            from numba.np.ufunc import parallel

            parallel._launch_threads()
            _LAYER.append(numba.threading_layer())
        except Exception:  # a Numba without this API: assume the unsafe layer
            _LAYER.append("workqueue")
    return _LAYER[0] == "workqueue"


@contextmanager
def _blas_single_threaded():
    from threadpoolctl import threadpool_limits

    with _BLAS_LOCK:
        if _BLAS["users"] == 0:
            _BLAS["limiter"] = threadpool_limits(limits=1, user_api="blas")
        _BLAS["users"] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS["users"] -= 1
            if _BLAS["users"] == 0:
                _BLAS["limiter"].restore_original_limits()
                _BLAS["limiter"] = None


@contextmanager
def thread_limits(n_jobs):
    """Run a block of kernel calls on ``n_jobs`` Numba threads with BLAS single-threaded.

    The kernels parallelise over fixed blocks themselves (each block calls BLAS), so a
    multi-threaded BLAS underneath would only oversubscribe the cores. ``None`` and ``-1``
    mean every thread Numba may use (all cores, or the share joblib gives a worker process);
    larger values are capped there. Both settings are restored on exit, also on error.
    Results do not depend on the thread count.

    Safe to enter from several threads at once (Dask's threaded scheduler, joblib's
    threading backend, a user's threads): Numba's thread count is per thread, BLAS stays
    pinned while any thread is inside, and under Numba's ``workqueue`` layer the blocks
    of different threads run one after the other (see :func:`serialised_launches`).
    """
    import numba
    from joblib import effective_n_jobs

    available = numba.config.NUMBA_NUM_THREADS
    n_threads = available if n_jobs is None else max(1, min(effective_n_jobs(n_jobs), available))
    with _LAUNCH_LOCK if serialised_launches() else nullcontext(), _blas_single_threaded():
        previous = numba.get_num_threads()
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
        if isinstance(X, np.ndarray) and X.dtype == np.uint8:
            X = as_float(X, np.float32)  # 8-bit intensities, as skdae._stream reads them
        return validate_data(self, X, dtype=[np.float64, np.float32], order="C", reset=reset)

    def _chunk_rows(self, n_samples, n_features, dtype, out_of_core, X=None):
        if self.chunk_size is not None:
            return min(n_samples, self.chunk_size)
        if not out_of_core:
            return n_samples
        return default_chunk_rows(n_features, dtype, self.batch_size, store_chunk_rows(X))

    def _training_rows(self, X, *, reset):
        """``X`` validated and wrapped as :class:`~skdae._stream.Rows` in visible units.

        With ``reset`` (``fit``, a first ``partial_fit``) a statistics pass over the chunks
        resolves ``visible_units_``, ``mean_`` and ``scale_``; later ``partial_fit`` calls
        check the fitted state, the feature count, finiteness and (Bernoulli units) the
        range. Out-of-core and sparse input is never loaded whole.
        """
        if not reset:
            self._check_fitted_state(check_values=True)
        out_of_core, sparse = is_out_of_core(X), is_sparse(X)
        if out_of_core or sparse:
            _check_feature_names(self, X, reset=reset)
            _check_n_features(self, X, reset=reset)
            source = Source(X, None if reset else self._dtype)
            n_samples, dtype = source.n_samples, source.dtype
        else:
            X = self._validate_input(X, reset=reset)
            if not reset:
                X = X.astype(self._dtype, copy=False)
            n_samples, dtype = X.shape[0], X.dtype
        n_features = self.n_features_in_
        chunk_rows = self._chunk_rows(n_samples, n_features, dtype, out_of_core, X)
        def chunks():
            for r0 in range(0, n_samples, chunk_rows):
                r1 = min(n_samples, r0 + chunk_rows)
                yield source.read(r0, r1) if out_of_core or sparse else X[r0:r1]

        # In memory, "auto" needs the moments only for Gaussian units: a second pass
        # then, rather than a float64 pass over Bernoulli data; out of core, one pass.
        moments = reset and (self.visible_units == "gaussian" or (
            self.visible_units == "auto" and (out_of_core or sparse)))
        stats = ColumnStats()
        for block in chunks():
            stats.update(block, moments)
        if reset and not moments and self.visible_units == "auto" and not (
                stats.min >= 0 and stats.max <= 1):
            stats = ColumnStats()
            for block in chunks():
                stats.update(block, True)
        if reset:
            self._resolve_visible_units(stats, dtype)
        elif self.visible_units_ == "bernoulli":
            check_unit_range(stats.min, stats.max, "X")
        gaussian = self.visible_units_ == "gaussian"
        if sparse:
            return SparseRows(source, chunk_rows, self.mean_, self.scale_, gaussian)
        if out_of_core:
            return StreamedRows(source, chunk_rows, self.mean_, self.scale_, gaussian)
        Xs = standardize(X, self.mean_, self.scale_, self.visible_units_)
        return ArrayRows(Xs, chunk_rows, raw=X)

    def _resolve_visible_units(self, stats, dtype):
        units = self.visible_units
        if units == "auto":
            units = "bernoulli" if stats.min >= 0 and stats.max <= 1 else "gaussian"
        elif units == "bernoulli":
            check_unit_range(stats.min, stats.max, "X")
        self.visible_units_ = units
        if units == "bernoulli":
            self.mean_ = np.zeros(self.n_features_in_, dtype)
            self.scale_ = np.ones(self.n_features_in_, dtype)
        else:
            self.mean_, self.scale_ = stats.scaling(dtype)
            if self._shared_scale():
                # One scale for every feature: squared errors in visible units are then
                # squared errors in input units, up to one factor (see linear_path).
                common = np.sqrt(np.mean(stats.var))
                self.scale_[...] = common if common > np.finfo(dtype).tiny else 1.0

    def _shared_scale(self):
        """Whether Gaussian units share one scale (each feature its own by default)."""
        return False

    def _map_rows(self, X, func, n_out, out=None, *, codes=False, dtype=None):
        """``func`` applied to the rows of ``X``, into ``out`` (a new array if None).

        ``func`` maps validated float rows (input units; codes with ``codes``) to
        ``(rows,) + n_out`` outputs. In-memory input goes through scikit-learn's
        validation in one piece, as ever; out-of-core and sparse input is read
        ``chunk_size`` rows at a time (by default 64 MiB of dense float rows), so
        neither the input nor a dense copy of it is ever whole in memory. ``out`` may be
        any array with row assignment of that shape (a NumPy array, a memmap, a Zarr
        array).
        """
        n_out = tuple(n_out)
        if not (is_out_of_core(X) or is_sparse(X)):
            if codes:
                X = check_codes(X, self._n_features_out, self._dtype, type(self).__name__)
            else:
                X = self._validate_input(X, reset=False)
            result = func(X)
            if out is None:
                return result
            _check_out(out, result.shape)
            out[...] = result
            return out
        if codes:
            if len(X.shape) != 2 or X.shape[1] != self._n_features_out:
                raise ValueError(
                    f"inverse_transform expects codes with {self._n_features_out} columns "
                    f"(the output of {type(self).__name__}.transform), got shape {X.shape}."
                )
        else:
            _check_feature_names(self, X, reset=False)
            _check_n_features(self, X, reset=False)
        source = Source(X, self._dtype, intensities=not codes)
        n = source.n_samples
        dtype = self._dtype if dtype is None else dtype
        out = np.empty((n, *n_out), dtype) if out is None else _check_out(out, (n, *n_out))
        step = self.chunk_size or default_chunk_rows(source.n_features, self._dtype,
                                                     self.batch_size, store_chunk_rows(X))
        for r0 in range(0, n, step):
            r1 = min(n, r0 + step)
            block = source.read(r0, r1)
            out[r0:r1] = func(block.toarray() if source.sparse else block)
        return out

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
        tags.input_tags.sparse = True
        return tags
