"""Reconstruction quality measures shared by the demo, the command line and the benchmarks.

Both measures accumulate in float64 whatever the inputs' dtype: float32 sums over
millions of pixels lose digits, and integer inputs (uint8 images) would wrap around when
subtracted.
"""

import math
import numbers

import numpy as np

__all__ = ["per_sample_squared_error", "psnr"]


def _float64_difference(X, X_rec):
    """``X_rec - X`` in float64, as ``(n_samples, n_features)``, after checking shapes."""
    X = np.asarray(X)
    X_rec = np.asarray(X_rec)
    if X.shape != X_rec.shape:
        raise ValueError(
            f"X and X_rec must have the same shape, got {X.shape} and {X_rec.shape}"
        )
    if X.ndim == 0 or X.size == 0:
        raise ValueError(f"expected a non-empty array of samples, got shape {X.shape}")
    # The inputs are cast before subtracting (uint8 would wrap) into one float64 array.
    diff = np.subtract(X_rec, X, dtype=np.float64)
    return diff.reshape(len(diff), -1)


def per_sample_squared_error(X, X_rec):
    """Squared reconstruction error of each sample, summed over its features.

    For 28 x 28 MNIST images in [0, 1] this is Hinton & Salakhutdinov's error measure
    (their Table 1 reports its mean over the test images).

    Parameters
    ----------
    X : array-like of shape (n_samples, ...)
        Original samples; every axis after the first is summed over (images of shape
        ``(n_samples, height, width)`` are fine).
    X_rec : array-like of the same shape as X
        Reconstructions.

    Returns
    -------
    errors : ndarray of shape (n_samples,), dtype float64
        ``sum((X_rec[i] - X[i]) ** 2)`` for each sample ``i``, computed in float64.

    Raises
    ------
    ValueError
        If the shapes differ or the arrays are empty.

    Examples
    --------
    >>> import numpy as np
    >>> from skdae._metrics import per_sample_squared_error
    >>> per_sample_squared_error([[0.0, 1.0], [0.5, 0.5]], [[0.0, 0.0], [0.0, 1.0]])
    array([1. , 0.5])
    """
    diff = _float64_difference(X, X_rec)
    return np.einsum("ij,ij->i", diff, diff)


def psnr(X, X_rec, data_range=1.0):
    """Peak signal-to-noise ratio of reconstructions, in decibels.

    ``10 * log10(data_range ** 2 / mse)``, where ``mse`` is the mean squared error over
    all values of all samples (not a mean of per-sample PSNRs): that is
    ``per_sample_squared_error(X, X_rec).sum() / X.size``.

    Parameters
    ----------
    X : array-like of shape (n_samples, ...)
        Original samples.
    X_rec : array-like of the same shape as X
        Reconstructions. Callers that compare decoded images clip them to the data range
        first, as an image decoder would.
    data_range : float, default=1.0
        Peak value of the signal: 1.0 for data in [0, 1], 255 for 8-bit values.

    Returns
    -------
    psnr : float
        PSNR in dB; ``inf`` when the reconstructions are exact, ``nan`` when they hold NaN.

    Raises
    ------
    ValueError
        If the shapes differ, the arrays are empty, or ``data_range`` is not a positive
        finite number.

    Examples
    --------
    >>> from skdae._metrics import psnr
    >>> round(psnr([[0.0, 1.0]], [[0.0, 0.9]]), 4)  # mse 0.005
    23.0103
    >>> psnr([[0.0, 1.0]], [[0.0, 1.0]])
    inf
    """
    if not isinstance(data_range, numbers.Real) or not 0 < data_range < math.inf:
        raise ValueError(f"data_range must be a positive finite number, got {data_range!r}")
    diff = _float64_difference(X, X_rec)
    mse = float(np.einsum("ij,ij->", diff, diff)) / diff.size
    if mse == 0:
        return math.inf
    # math.log10 gives inf or nan for an infinite or nan error instead of NumPy's warnings.
    return 20 * math.log10(data_range) - 10 * math.log10(mse)
