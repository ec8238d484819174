"""The one gate a :class:`~skdae.codec.Codec`'s fitted state passes before it is used.

A codec's fitted arrays may come from a model file (see :mod:`skdae._persist`), and the
rANS kernels index its frequency tables: :func:`check_fitted_state` refuses, with a
``ValueError`` naming the attribute, anything the codec's methods would misread. The
codec calls it from ``_check_fitted_state`` (the hook every skdae estimator has), as the
autoencoder calls :func:`skdae._network.check_fitted_state`.
"""

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from . import _rate
from ._state_checks import n_features_out

# What fit stores as code_dtype_ (np.dtype(...).str) for float32 and float64 codes.
CODE_DTYPES = {np.dtype(np.float32).str, np.dtype(np.float64).str}
# Fitted attributes of a format-1 codec; the others came with archive format 2.
V1_ATTRIBUTES = ("code_min_", "code_max_", "code_dtype_", "n_features_in_")


def is_count(value):
    """A positive int (not a bool)."""
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= 1


def check_fitted_state(codec):
    """Refuse fitted state that does not fit together (it may come from a model file).

    Checks the ranges (finite float64 arrays of one length, ``min <= max``), the bit
    allocation and frequency tables (their sizes, and every table summing to ``2**16``
    with no zero entry, so the rANS kernels stay in bounds), the code dtype,
    ``n_features_in_``, and that they agree with the model (``model_`` when there is one):
    it is fitted, takes ``n_features_in_`` values and outputs as many code units as there
    are ranges (where the model says so). An unfitted codec passes.

    Parameters
    ----------
    codec : Codec
        The codec, fitted or not.

    Raises
    ------
    ValueError
        Naming the attribute at fault.
    """
    codec._check_n_bits()
    names = [*V1_ATTRIBUTES, "unit_bits_", "frequencies_", "model_"]
    present = [name for name in names if hasattr(codec, name)]
    if not present:
        return
    if len(present) != len(names):
        _fail(f"missing {', '.join(sorted(set(names) - set(present)))}")
    lo, hi = codec.code_min_, codec.code_max_
    for name, value in (("code_min_", lo), ("code_max_", hi)):
        if not isinstance(value, np.ndarray) or value.dtype != np.float64:
            _fail(f"{name} is not a float64 array")
        if value.ndim != 1 or value.size == 0:
            _fail(f"{name} has shape {value.shape}, not (n_units,)")
        if not np.isfinite(value).all():
            _fail(f"{name} holds non-finite values")
    if lo.shape != hi.shape:
        _fail(f"code_min_ {lo.shape} and code_max_ {hi.shape} differ in length")
    with np.errstate(over="ignore"):
        if not (np.isfinite(hi - lo).all() and (lo <= hi).all()):
            _fail("code ranges are not finite intervals (min <= max)")
    bits = codec.unit_bits_
    if not isinstance(bits, np.ndarray) or bits.dtype != np.int64 or bits.shape != lo.shape:
        _fail(f"unit_bits_ is not an int64 array of shape {lo.shape}")
    if bits.min() < 0 or bits.max() > 16 or bits.sum() == 0:
        _fail("unit_bits_ outside 0..16, or no unit has a bit")
    if codec.allocation == "uniform" and not (bits == codec.n_bits).all():
        _fail(f"unit_bits_ are not all n_bits={codec.n_bits} (uniform)")
    if codec.frequencies_ is not None:
        if bits.max() > _rate.MAX_TABLE_BITS:
            _fail(f"frequency tables for units of more than "
                              f"{_rate.MAX_TABLE_BITS} bits")
        problem = _rate.check_tables(codec.frequencies_, bits)
        if problem:
            _fail(problem)
    elif codec.coder == "rans":
        _fail("coder='rans' but no frequency tables")
    dtype = codec.code_dtype_
    if not isinstance(dtype, str) or dtype not in CODE_DTYPES:
        _fail(f"code_dtype_ is {dtype!r}, not float32 or float64")
    n_features = codec.n_features_in_
    if not is_count(n_features):
        _fail(f"n_features_in_ is {n_features!r}, not a positive int")
    fine_tuned = codec.model_
    if fine_tuned is not None and not hasattr(fine_tuned, "inverse_transform"):
        _fail("model_ is neither None nor a model")
    model = codec._model()
    if isinstance(model, BaseEstimator):
        check_is_fitted(model)
    model_in = getattr(model, "n_features_in_", None)
    if is_count(model_in) and model_in != n_features:
        _fail(
            f"n_features_in_={n_features} but the model takes {model_in} features"
        )
    model_out = n_features_out(model)
    if model_out is not None and model_out != lo.size:
        _fail(
            f"{lo.size} code ranges but the model outputs {model_out} code units"
        )



def _fail(problem):
    raise ValueError(
        f"the codec's fitted state is inconsistent: {problem} (damaged model file?)"
    )
