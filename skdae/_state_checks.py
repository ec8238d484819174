"""Checks of an estimator's fitted state before anything computes with it.

A model file can hold any values (see :mod:`skdae._persist`); the estimator classes it may
rebuild trust their own attributes. :func:`check_loaded_estimator` stands between the two:
it refuses, with a ``ValueError`` naming the problem, fitted state that the class's
methods would misread (a wrong shape, dtype or count, a non-finite value, a parameter its
constraints reject), so that using a loaded model either works or fails with a message.

skdae's own classes validate themselves, in ``_check_fitted_state`` (one method covering
all their fitted state, optimiser state included); the scikit-learn classes that model
files may hold are described here by the shapes their fitted arrays must have.
"""

import math
from functools import cache
from numbers import Integral, Real

import numpy as np

__all__ = ["check_loaded_estimator"]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_loaded_estimator(estimator):
    """Refuse an estimator whose parameters or fitted state cannot be used safely.

    Parameters
    ----------
    estimator : estimator instance
        Typically one just rebuilt by :func:`skdae.load`: parameters from ``__init__`` and
        fitted attributes set afterwards. Unfitted estimators pass when their parameters
        are valid.

    Raises
    ------
    ValueError
        Naming the parameter or attribute at fault: parameters that fail the class's
        ``_validate_params``; for PCA, MinMaxScaler, StandardScaler, MaxAbsScaler and
        Pipeline, fitted arrays of the wrong type, dtype, shape (relative to
        ``n_features_in_``, ``n_components_``, ...) or with non-finite values; for
        classes with a ``_check_fitted_state`` method (skdae's own), whatever it raises.
    """
    validate_params = getattr(estimator, "_validate_params", None)
    if validate_params is not None:
        # InvalidParameterError is both a ValueError and a TypeError; the message names
        # the parameter.
        validate_params()
    check = _sklearn_checks().get(type(estimator))
    if check is not None:
        check(estimator)
        return
    own_check = getattr(estimator, "_check_fitted_state", None)
    if own_check is not None and _has_fitted_state(estimator):
        own_check()


def n_features_out(estimator):
    """Width of ``estimator.transform``'s output, or None when it cannot be told.

    Parameters
    ----------
    estimator : object
        A fitted transformer (scaler, PCA, skdae estimator, Pipeline) or anything else.

    Returns
    -------
    width : int or None
    """
    check = _sklearn_checks().get(type(estimator))
    if check is _check_pipeline:
        steps = estimator.steps
        if not isinstance(steps, list) or not all(
            isinstance(step, tuple) and len(step) == 2 for step in steps
        ):
            return None
        steps = [step for _, step in steps if not _is_passthrough(step)]
        return n_features_out(steps[-1]) if steps else None
    if check in (_check_min_max_scaler, _check_standard_scaler, _check_max_abs_scaler):
        width = getattr(estimator, "n_features_in_", None)
    else:
        try:
            width = estimator._n_features_out
        except (AttributeError, TypeError, IndexError, ValueError):
            # Unfitted, or a foreign object: nothing to compare against.
            return None
    return int(width) if _is_count(width) else None


def _is_passthrough(step):
    return step is None or (isinstance(step, str) and step == "passthrough")


def _has_fitted_state(estimator):
    """scikit-learn's rule: an estimator is fitted once it has an attribute ``name_``."""
    return any(k.endswith("_") and not k.startswith("__") for k in vars(estimator))


def _is_finite_real(value):
    """A real number (bool excluded) that is finite as a float: numpy converts the
    parameters it computes with to floats, and an int beyond 1.8e308 cannot be one."""
    if not isinstance(value, Real) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _is_count(value, minimum=1):
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= minimum


def _fail(estimator, message):
    raise ValueError(
        f"{type(estimator).__name__} has inconsistent fitted state: {message} (damaged "
        "model file?)"
    )


def _check_counts(estimator, names, minimum=1):
    for name in names:
        value = getattr(estimator, name)
        if not _is_count(value, minimum):
            _fail(estimator, f"{name} is {_short(value)}, not an int >= {minimum}")


def _check_float_arrays(estimator, shapes, optional=(), positive=(), non_negative=()):
    """Each attribute in ``shapes`` is a finite float32/float64 array of that shape.

    ``shapes`` maps attribute names to tuples of counts; a count given as a str is the
    name of an int attribute (already checked). Attributes in ``optional`` may be None.
    """
    for name, dims in shapes.items():
        value = getattr(estimator, name)
        if value is None and name in optional:
            continue
        shape = tuple(getattr(estimator, d) if isinstance(d, str) else d for d in dims)
        if not isinstance(value, np.ndarray):
            _fail(estimator, f"{name} is a {type(value).__name__}, not an array")
        if value.dtype not in _FLOAT_DTYPES:
            _fail(estimator, f"{name} has dtype {value.dtype}, not float32 or float64")
        if value.shape != shape:
            _fail(estimator, f"{name} has shape {value.shape}, expected {shape}")
        if not np.isfinite(value).all():
            _fail(estimator, f"{name} holds non-finite values")
        if name in positive and not (value != 0).all():
            _fail(estimator, f"{name} holds zeros")
        if name in non_negative and not (value >= 0).all():
            _fail(estimator, f"{name} holds negative values")


def _check_fitted_attributes(estimator, required):
    """True if fitted; raise if only part of the fitted state is there."""
    present = [name for name in required if hasattr(estimator, name)]
    if not present:
        return False
    if len(present) != len(required):
        missing = sorted(set(required) - set(present))
        _fail(estimator, f"missing {', '.join(missing)}")
    _check_counts(estimator, ["n_features_in_"])
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None and (
        not isinstance(names, np.ndarray)
        or names.shape != (estimator.n_features_in_,)
        or not all(isinstance(n, str) for n in names.flat)
    ):
        _fail(estimator, "feature_names_in_ is not one str per feature")
    return True


def _check_samples_seen(estimator):
    # A count, but StandardScaler keeps it as a float (an array per feature when the
    # features had different numbers of NaNs).
    seen = estimator.n_samples_seen_
    if isinstance(seen, np.ndarray):
        if seen.dtype.kind not in "iuf" or seen.shape != (estimator.n_features_in_,):
            _fail(estimator, f"n_samples_seen_ is an array of {seen.dtype} {seen.shape}")
        if not (np.isfinite(seen).all() and (seen >= 0).all()):
            _fail(estimator, "n_samples_seen_ holds negative or non-finite counts")
    elif not (_is_finite_real(seen) and seen >= 0):
        _fail(estimator, f"n_samples_seen_ is {_short(seen)}, not a count")


def _check_pca(pca):
    required = ["n_features_in_", "n_components_", "components_", "mean_",
                "explained_variance_", "explained_variance_ratio_", "singular_values_",
                "noise_variance_", "n_samples_"]  # fmt: skip
    if not _check_fitted_attributes(pca, required):
        return
    _check_counts(pca, ["n_components_", "n_samples_"])
    if pca.n_components_ > pca.n_features_in_:
        _fail(pca, f"n_components_={pca.n_components_} > n_features_in_={pca.n_features_in_}")
    _check_float_arrays(
        pca,
        {
            "components_": ("n_components_", "n_features_in_"),
            "mean_": ("n_features_in_",),
            "explained_variance_": ("n_components_",),
            "explained_variance_ratio_": ("n_components_",),
            "singular_values_": ("n_components_",),
        },
        non_negative=("explained_variance_",),
    )
    noise = pca.noise_variance_
    if not (_is_finite_real(noise) and noise >= 0):
        _fail(pca, f"noise_variance_ is {_short(noise)}, not a variance")


def _check_min_max_scaler(scaler):
    lo_hi = scaler.feature_range
    if not (
        len(lo_hi) == 2
        and all(_is_finite_real(v) for v in lo_hi)
        and lo_hi[0] < lo_hi[1]
    ):
        raise ValueError(f"MinMaxScaler: feature_range {_short(lo_hi)} is not (min, max)")
    required = ["n_features_in_", "n_samples_seen_", "min_", "scale_", "data_min_",
                "data_max_", "data_range_"]  # fmt: skip
    if not _check_fitted_attributes(scaler, required):
        return
    _check_samples_seen(scaler)
    n = ("n_features_in_",)
    arrays = dict.fromkeys(["min_", "scale_", "data_min_", "data_max_", "data_range_"], n)
    _check_float_arrays(scaler, arrays, positive=("scale_",))


def _check_standard_scaler(scaler):
    required = ["n_features_in_", "n_samples_seen_", "mean_", "var_", "scale_"]
    if not _check_fitted_attributes(scaler, required):
        return
    _check_samples_seen(scaler)
    arrays = dict.fromkeys(["mean_", "var_", "scale_"], ("n_features_in_",))
    _check_float_arrays(
        scaler, arrays, optional=("mean_", "var_", "scale_"), positive=("scale_",),
        non_negative=("var_",),
    )  # fmt: skip
    # transform subtracts mean_ and divides by scale_ as the parameters say.
    if scaler.with_mean and scaler.mean_ is None:
        _fail(scaler, "with_mean=True but mean_ is None")
    if scaler.with_std and scaler.scale_ is None:
        _fail(scaler, "with_std=True but scale_ is None")


def _check_max_abs_scaler(scaler):
    required = ["n_features_in_", "n_samples_seen_", "max_abs_", "scale_"]
    if not _check_fitted_attributes(scaler, required):
        return
    _check_samples_seen(scaler)
    arrays = dict.fromkeys(["max_abs_", "scale_"], ("n_features_in_",))
    _check_float_arrays(scaler, arrays, positive=("scale_",), non_negative=("max_abs_",))


def _check_pipeline(pipeline):
    steps = pipeline.steps
    for i, step in enumerate(steps):
        if not (
            isinstance(step, tuple)
            and len(step) == 2
            and isinstance(step[0], str)
            and (_is_passthrough(step[1]) or hasattr(step[1], "get_params"))
        ):
            raise ValueError(f"Pipeline: step {i} is {_short(step)}, not a (name, estimator) pair")
    try:
        pipeline._validate_steps()
    except TypeError as exc:  # scikit-learn's message for a step that is no estimator
        raise ValueError(f"Pipeline: {exc}") from None
    previous = None
    for name, step in steps:
        if _is_passthrough(step):
            continue
        check_loaded_estimator(step)
        n_in = getattr(step, "n_features_in_", None)
        if previous is not None and _is_count(n_in) and n_in != previous:
            raise ValueError(
                f"Pipeline: step {name!r} takes {n_in} features but the step before it "
                f"outputs {previous}"
            )
        previous = n_features_out(step)


@cache
def _sklearn_checks():
    """Exact class -> check, for the scikit-learn classes that model files may hold.

    Matched by exact type: a subclass may keep other state.
    """
    from sklearn.decomposition import PCA
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, StandardScaler

    return {
        PCA: _check_pca,
        MinMaxScaler: _check_min_max_scaler,
        StandardScaler: _check_standard_scaler,
        MaxAbsScaler: _check_max_abs_scaler,
        Pipeline: _check_pipeline,
    }


def _short(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
