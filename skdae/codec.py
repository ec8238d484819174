"""Turn the codes of any fitted transformer into bytes, and back.

:class:`Codec` wraps a fitted model that has ``transform`` and ``inverse_transform`` (an
:class:`~skdae.RBMStackAutoencoder`, a PCA, a Pipeline), so different models are compared
through exactly the same bytes. It is a transform coder: each code unit is quantized
uniformly over the range it takes on training codes, with its own number of bits (by
default chosen per unit from training codes, more bits where they lower the error most:
see :mod:`skdae._rate`), and the levels are entropy-coded, by rANS under integer
per-unit frequency tables learned at :meth:`Codec.fit` or by deflate / LZMA on the
bit-packed levels, whichever is smaller for each archive (``coder="auto"``). An
autoencoder's codec can also fine-tune a copy of the network through the quantizer
(quantization-aware fine-tuning, ``fine_tune_epochs``), optionally with a rate term that
trades coded bits for distortion (``rate_weight``).

The archive format is described in :mod:`skdae._archive`; :func:`archive_info` reads a
header without the model. How a codec is fitted (the scan of the training codes, the bit
allocation, the frequency tables, quantization-aware fine-tuning with its rate term) is
in :mod:`skdae._codec_fit`; how quantized levels become payload bytes and back (rANS
under the tables, deflate / LZMA on the bit-packed levels, the ``"auto"`` choice) is in
:mod:`skdae._codec_bytes`; the check of its fitted state (a model file's arrays before
any kernel reads them) is in :mod:`skdae._codec_state`. This module holds the estimator,
the check of an archive's header against it, and the way from samples to levels
(``transform``, quantization) and from levels back to samples.

Measured on the 10,000 MNIST test codes (benchmarks/rate_distortion.py): the rANS coder
under the learned tables is smaller than deflate on unit-major packed bits at every
setting measured there; deflate stays for bit depths without tables (above 12 bits) and
for archives where it happens to win. LZMA gains 3-10 % over deflate at 2-4 bits with
many units, at 10 times the time: an option, not part of ``"auto"``.
"""

import copy
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from . import _archive, _codec_state, _rate
from ._archive import (  # noqa: F401  (MAGIC: part of the public module)
    MAGIC,
    ArchiveInfo,
    CorruptArchiveError,
    ModelMismatchError,
)
from ._codec_bytes import decode_levels, encode_levels
from ._codec_fit import fit_together

__all__ = [
    "ArchiveInfo",
    "Codec",
    "CorruptArchiveError",
    "ModelMismatchError",
    "archive_info",
    "fit_codecs",
]

# Documented (and pickled) under their public module.
for _cls in (ArchiveInfo, CorruptArchiveError, ModelMismatchError):
    _cls.__module__ = __name__

FORMAT_VERSION = _archive.FORMAT_VERSION
CODERS = ("auto", "rans", "zlib", "lzma", "none")
_MAX_NDIM = _archive.MAX_NDIM

# Samples encoded at a time by fit and compress: an out-of-core input (a memmap, Zarr,
# h5py, Dask array) is never loaded whole; only its quantized levels are kept.
_CHUNK_ROWS = 16384


def archive_info(data):
    """Read and check an archive's header.

    The structure and the checksum of the whole archive are checked, but nothing is
    decoded and no model is needed. Archives of format versions 1 and 2 are read.

    Parameters
    ----------
    data : bytes
        An archive made by :meth:`Codec.compress`.

    Returns
    -------
    info : ArchiveInfo
        Header fields, sizes and ``bits_per_pixel``.

    Raises
    ------
    CorruptArchiveError
        If ``data`` is not an intact archive of a supported version.

    See Also
    --------
    Codec.decompress : Decode an archive with the codec that made it.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> from skdae.codec import Codec, archive_info
    >>> X = np.random.default_rng(0).random((200, 64))
    >>> codec = Codec(PCA(8).fit(X), n_bits=4, allocation="uniform", coder="zlib").fit(X)
    >>> info = archive_info(codec.compress(X))
    >>> info.count, info.n_units, info.raw_code_bytes
    (200, 8, 800)
    >>> info.bits_per_pixel == 8 * info.total_bytes / (200 * 64)
    True
    """
    return _archive.parse(data)[0]


def _flat_rows(X, r0, r1):
    """Samples ``r0:r1`` of ``X`` (in memory or out of core) as a 2-D NumPy array."""
    block = np.asarray(X[r0:r1])
    return block.reshape(block.shape[0], -1)


# What each setting of quantization-aware fine-tuning is, for the message when it is set
# without fine_tune_epochs.
_FINE_TUNING_ROLES = {"rate_weight": "the weight of a rate term in",
                      "fine_tune_learning_rate": "the step size of",
                      "fine_tune_loss": "the loss of"}


class Codec(BaseEstimator):
    """Compress samples to bytes through the codes of a fitted transformer.

    ``compress`` maps samples to codes with ``model.transform``, quantizes each code unit
    uniformly over the range it took on the codes seen by :meth:`fit` (values outside
    are clipped) with the unit's number of bits (:attr:`unit_bits_`), and entropy-codes
    the levels. ``decompress`` undoes this and maps the dequantized codes back with
    ``model.inverse_transform``: ``decompress(compress(X))`` equals
    ``model.inverse_transform(dequantize(quantize(model.transform(X))))`` exactly, and the
    bytes decode identically on every machine (the tables are integers).

    With ``fine_tune_epochs``, an autoencoder's codec fine-tunes a **copy** of the network
    (:attr:`model_`) with the quantizer in its code layer, so that the decoder learns the
    quantized codes and the encoder places codes where the bins are; the model given is
    never changed.

    Save a fitted codec with :func:`skdae.save`: the model file then holds the model, the
    ranges, the bit allocation and the frequency tables, all an archive needs.

    Parameters
    ----------
    model : estimator
        A **fitted** transformer with ``transform`` and ``inverse_transform``. It is not
        refitted (nor changed): :meth:`fit` learns the quantizer and the rate model, and
        with ``fine_tune_epochs`` fine-tunes a copy.
    n_bits : float, default=8
        With ``allocation="uniform"``: the bits of every code value, an int from 1 to 16
        (``2**n_bits`` levels per unit). With ``allocation="rate_distortion"``: the
        average number of **coded** bits per code unit to aim at (any value in (0, 12]);
        units then get 0 to 12 bits each, so a sample's coded size on training data is
        about ``n_bits * n_units`` bits.
    allocation : {"rate_distortion", "uniform"}, default="rate_distortion"
        How bits are shared among units. ``"rate_distortion"``: on training codes, each
        unit's depth minimises the squared reconstruction error the quantizer causes
        (weighted by the decoder's gain for that unit) plus lambda times the unit's coded
        rate under its learned table, with lambda chosen to meet the ``n_bits`` budget:
        high-variance, high-gain units get more bits, as in transform coding. Units may
        get none (they decode to their range's centre). ``"uniform"``: ``n_bits`` each.
    coder : {"auto", "rans", "zlib", "lzma", "none"}, default="auto"
        Entropy coder. ``"rans"``: rANS under the per-unit frequency tables learned from
        the training codes (needs at most 12 bits per unit). ``"zlib"`` (raw deflate) and
        ``"lzma"`` (raw LZMA2) code the bit-packed levels. ``"auto"`` codes each archive
        with rANS (when the tables exist) and deflate, and keeps the smaller; the archive
        records its coder.
    fine_tune_epochs : int, default=0
        Epochs of quantization-aware fine-tuning of a copy of the model (an
        :class:`~skdae.RBMStackAutoencoder` only) on the samples given to :meth:`fit`,
        with the model's own solver (and its optimiser state), at
        ``fine_tune_learning_rate`` held constant and without the model's
        ``augmentation``: a new short phase, not a continuation of the model's schedule
        (after ``learning_rate_schedule="cosine"`` that would be its last epoch's
        near-zero rate, and the weights would barely move). The copy (:attr:`model_`)
        records this in its parameters. After each epoch the copy is scored on (up to
        4,096 evenly spaced of) the samples: squared error of the quantized
        reconstructions plus ``rate_weight`` times the levels' entropy in bits; the
        weights kept are the best epoch's, or the model's own if no epoch beat them, so
        on those samples fine-tuning never ends worse than not fine-tuning (the copy's
        ``n_iter_`` and ``loss_curve_`` still count every epoch run). 0 leaves the model
        as it is.
    fine_tune_method : {"straight_through", "noise"}, default="straight_through"
        The stand-in for rounding while fine-tuning: ``"noise"`` adds uniform noise of
        one bin width to the (clipped) codes; ``"straight_through"`` rounds them to the
        bin centres and passes the gradient through unchanged. On held-out training
        samples straight-through rounding gave the lower quantized error (see the README).
    rate_weight : float, default=0.0
        Weight ``lambda`` of a rate term in quantization-aware fine-tuning (needs
        ``fine_tune_epochs``): the fine-tuning objective per sample becomes
        ``distortion + lambda * bits``, where ``bits`` is the length of the sample's
        quantized code under a factorized entropy model (per unit, a logistic density
        discretised on the unit's bins and re-estimated from the codes every epoch, as
        in Ballé et al., 2017), so the encoder also learns to place codes where they
        cost fewer bits. ``lambda`` is in squared error per bit: the squared
        reconstruction error (summed over a sample's values, in the input's units) that
        one bit per sample is worth. Larger values give smaller archives at a lower
        PSNR for the same allocation; the archive's rate then falls below the
        ``n_bits`` budget, which the allocation meets before fine-tuning. 0 (the
        default) fine-tunes for distortion alone. A model trained with cross-entropy
        (Bernoulli visible units) is fine-tuned on cross-entropy: ``lambda`` is converted
        to it with the ratio of the cross-entropy excess (the KL divergence of the
        reconstructions from the samples) to the squared error, both of the quantized
        reconstructions of training samples before fine-tuning, an average exchange
        rate. The rate term only changes training: the archive format and the coder
        (its tables are learned from the fine-tuned codes) are the same. ``lambda`` is
        the slope of the trade, so it chooses where the codec lands on its curve, and
        ``n_bits`` only caps it: trace a curve by sweeping ``lambda`` at one budget (on
        held-out MNIST training images, a 784-1000-500-250-64 autoencoder at 3.5 bits
        per unit and 10 epochs: 0.01, 0.02 and 0.03 gave 0.26, 0.22 and 0.20 bits per
        pixel, 0.4, 0.7 and 0.9 dB above the codec without fine-tuning at those rates).
    fine_tune_learning_rate : float or None, default=None
        Step size of quantization-aware fine-tuning (needs ``fine_tune_epochs``); None
        is a tenth of the model's ``learning_rate``. The phase starts from weights that
        have converged: on held-out MNIST training images (a 784-1000-500-250-64
        autoencoder trained with Adam at 1e-3 under a cosine schedule, 3 coded bits per
        unit, 4 epochs), the model's own rate jolted the weights and ended 0.65-0.85 dB
        below the codec without fine-tuning at the same rate, a tenth of it within
        0.12 dB of it (0.8-1.2 dB above with ``rate_weight=0.05``), and a hundredth
        moved too little (0.5-0.7 dB above with the rate term). Raise it for a model far
        from converged, or for a long phase with a rate term (there, at
        ``rate_weight=0.015`` and 3.5 bits per unit, 30 epochs at 3e-4 gained 1.11 dB
        against 0.87 dB at the default 1e-4, still rising).

    fine_tune_loss : {"model", "squared_error"}, default="model"
        Loss of quantization-aware fine-tuning (needs ``fine_tune_epochs``).
        ``"model"``: the model's own fine-tuning loss (``loss_``). ``"squared_error"``:
        the codec's distortion measure, the squared error of the reconstructions in the
        input's units (what PSNR counts), whatever the model was trained on; when that
        is not the model's loss, the phase starts its optimiser afresh (the model's
        moment estimates are of the other loss's gradients) and the copy records the
        new ``loss``. A model trained with cross-entropy, as Bernoulli visible units are
        by default, spends part of its capacity on pixels near 0 and 1 that squared
        error hardly counts.
    decorrelate : bool, default=False
        Rotate the code space of a copy of the model (an
        :class:`~skdae.RBMStackAutoencoder` with ``code_units="linear"``) to the
        principal axes of its codes of the samples given to :meth:`fit`, before anything
        else is fitted: the copy (:attr:`model_`) is the same network in another basis
        (the rotation is folded into the layers on either side of the code, so its
        reconstructions are the model's up to rounding), and its units are uncorrelated,
        sorted by decreasing variance. Units quantized and coded one by one waste bits
        on correlated codes; the rotation is transform coding's Karhunen-Loeve transform
        of the codes, and the allocation then gives the high-variance axes the bits. With
        ``fine_tune_epochs``, fine-tuning runs on the rotated copy, its optimiser started
        afresh. On held-out MNIST training images, a 784-1000-500-250-48 autoencoder's
        codec gained 0.6 dB at 0.21 bits per pixel, 0.3 dB at 0.25 and 0.05 dB at 0.34
        (the user guide's compression page has the measurements).

    Attributes
    ----------
    code_min_ : ndarray of shape (n_units,)
        Lowest value of each code unit on the training codes (float64).
    code_max_ : ndarray of shape (n_units,)
        Highest value of each code unit on the training codes (float64).
    unit_bits_ : ndarray of shape (n_units,)
        Bits of each code unit (int64, 0 to 16).
    frequencies_ : ndarray of uint32 or None
        Each unit's integer frequency table (``2**unit_bits_[j]`` entries summing to
        ``2**16``), concatenated; None when a unit has more than 12 bits.
    model_ : estimator or None
        The copy of ``model`` that the codec uses (fine-tuned, rotated by
        ``decorrelate``, or both), or None when it uses ``model`` itself
        (``fine_tune_epochs=0`` and ``decorrelate=False``).
    code_dtype_ : str
        dtype of the model's codes; dequantized codes are cast to it.
    n_features_in_ : int
        Number of values per sample (pixels x channels).

    See Also
    --------
    archive_info : Read an archive's header without a model.
    skdae.save : Write the fitted codec (with its model) to a model file.
    skdae.load : Read it back.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> from skdae.codec import Codec
    >>> X = np.random.default_rng(0).random((200, 64))
    >>> codec = Codec(PCA(8).fit(X), n_bits=3).fit(X)
    >>> data = codec.compress(X[:10])
    >>> codec.decompress(data).shape
    (10, 64)
    """

    _parameter_constraints: dict = {
        "model": [HasMethods(["transform", "inverse_transform"])],
        "n_bits": [Interval(Real, 0, 16, closed="right")],
        "allocation": [StrOptions({"rate_distortion", "uniform"})],
        "coder": [StrOptions(set(CODERS))],
        "fine_tune_epochs": [Interval(Integral, 0, None, closed="left")],
        "fine_tune_method": [StrOptions({"noise", "straight_through"})],
        "rate_weight": [Interval(Real, 0, np.inf, closed="left")],
        "fine_tune_learning_rate": [Interval(Real, 0, np.inf, closed="neither"), None],
        "fine_tune_loss": [StrOptions({"model", "squared_error"})],
        "decorrelate": ["boolean"],
    }
    # Left out of fingerprints at these values: a format-1 codec had none of them and
    # behaved as they say, so its archives keep matching it (see _legacy_fingerprint).
    _params_added_after_v1 = {"allocation": "uniform", "fine_tune_epochs": 0,
                              "fine_tune_method": "straight_through", "rate_weight": 0.0,
                              "fine_tune_learning_rate": None, "fine_tune_loss": "model",
                              "decorrelate": False}

    def __init__(self, model, *, n_bits=8, allocation="rate_distortion", coder="auto",
                 fine_tune_epochs=0, fine_tune_method="straight_through", rate_weight=0.0,
                 fine_tune_learning_rate=None, fine_tune_loss="model", decorrelate=False):
        self.model = model
        self.n_bits = n_bits
        self.allocation = allocation
        self.coder = coder
        self.fine_tune_epochs = fine_tune_epochs
        self.fine_tune_method = fine_tune_method
        self.rate_weight = rate_weight
        self.fine_tune_learning_rate = fine_tune_learning_rate
        self.fine_tune_loss = fine_tune_loss
        self.decorrelate = decorrelate

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Learn the quantizer and the rate model from the codes of ``X``.

        Each unit's range, its bits (the allocation) and its frequency table come from
        the codes of ``X``; with ``fine_tune_epochs``, a copy of the model is first
        fine-tuned on ``X`` through the quantizer, and the tables come from its codes.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Training samples, flattened to ``(n_samples, n_features)`` if they have more
            than two dimensions (images).
        y : None
            Ignored.

        Returns
        -------
        self : Codec
            Fitted codec.

        See Also
        --------
        fit_codecs : Fit codecs for several ``n_bits`` at once, sharing the training codes.
        """
        fit_together([self], X)
        return self

    # -- helpers -----------------------------------------------------------------------

    @property
    def n_units_(self):
        """Number of code units (length of ``code_min_``)."""
        return len(self.code_min_)

    def _model(self):
        """The model the codes come from: the fine-tuned copy, if there is one."""
        model = getattr(self, "model_", None)
        return self.model if model is None else model

    def _check_fitted_state(self):
        """Refuse fitted state that does not fit together (it may come from a model file):
        :func:`skdae._codec_state.check_fitted_state`."""
        _codec_state.check_fitted_state(self)

    def _check_usable(self):
        """Fitted, with valid parameters and consistent fitted state."""
        check_is_fitted(self)
        self._validate_params()
        self._check_fitted_state()

    def _check_n_bits(self):
        n_bits = self.n_bits
        # The parameter constraints take any Real, and bool is one.
        if isinstance(n_bits, bool) or not isinstance(n_bits, Real):
            raise ValueError(f"n_bits must be a number, got {n_bits!r}")
        if self.allocation == "uniform" and not (
            isinstance(n_bits, Integral) or float(n_bits).is_integer()
        ) or self.allocation == "uniform" and not 1 <= n_bits <= 16:
            raise ValueError(
                f"n_bits must be an int in [1, 16] with allocation='uniform', got {n_bits!r}"
            )
        if self.allocation == "rate_distortion" and not 0 < n_bits <= _rate.MAX_TABLE_BITS:
            raise ValueError(
                f"n_bits must be in (0, {_rate.MAX_TABLE_BITS}] with "
                f"allocation='rate_distortion', got {n_bits!r}"
            )

    def _check_fine_tuning(self):
        # Ranges are _parameter_constraints' (checked before any fit); this is the
        # combination they cannot express: a fine-tuning setting away from its "off"
        # value (its default, as _params_added_after_v1 records) without fine-tuning.
        if self.fine_tune_epochs:
            return
        for name, role in _FINE_TUNING_ROLES.items():
            value, off = getattr(self, name), self._params_added_after_v1[name]
            if value != off:
                raise ValueError(
                    f"{name}={value!r} is {role} quantization-aware fine-tuning, but "
                    f"fine_tune_epochs=0; set fine_tune_epochs, or {name}={off!r}"
                )

    def _flatten(self, X, check_features=True):
        """Return ``(X, sample shape)``, ``X`` still of shape ``(n_samples, *shape)``:
        an out-of-core array is left unread (see :func:`_flat_rows`)."""
        if not (hasattr(X, "shape") and hasattr(X, "dtype") and hasattr(X, "__getitem__")):
            X = np.asarray(X)
        if len(X.shape) < 2:
            raise ValueError(
                f"expected samples as rows of a 2-D (or image-shaped) array, got shape {X.shape}"
            )
        if X.shape[0] == 0:
            raise ValueError("no samples given")
        shape = tuple(X.shape[1:])
        if len(shape) > _MAX_NDIM:
            raise ValueError(f"samples have {len(shape)} dimensions; at most {_MAX_NDIM}")
        n_features = int(np.prod(shape, dtype=np.int64))
        if check_features and n_features != self.n_features_in_:
            raise ValueError(
                f"samples of shape {shape} have {n_features} values; the codec was fitted "
                f"on {self.n_features_in_}"
            )
        return X, shape

    def _transform(self, X2, model=None):
        model = self._model() if model is None else model
        codes = np.asarray(model.transform(X2))
        if codes.ndim != 2 or codes.shape[0] != X2.shape[0] or codes.dtype.kind != "f":
            raise ValueError(f"model.transform returned codes of shape {codes.shape}")
        if not np.all(np.isfinite(codes)):
            raise ValueError("model.transform returned non-finite codes")
        return codes

    def _code_blocks(self, X, model=None):
        """``(first row, codes)`` of ``X``'s samples ``_CHUNK_ROWS`` at a time (see
        :meth:`_transform`), so that an out-of-core ``X`` is never loaded whole."""
        for r0 in range(0, X.shape[0], _CHUNK_ROWS):
            yield r0, self._transform(_flat_rows(X, r0, r0 + _CHUNK_ROWS), model)

    def _level_dtype(self):
        return np.uint8 if self.unit_bits_.max() <= 8 else np.uint16

    def quantize(self, codes):
        """Map codes to integer levels ``0 .. 2**unit_bits_ - 1`` (clipping out-of-range values).

        Parameters
        ----------
        codes : array-like of shape (n_samples, n_units)
            Codes from ``model.transform``.

        Returns
        -------
        levels : ndarray of shape (n_samples, n_units), dtype uint8 or uint16
            Quantization bin of each value (uint8 when no unit has more than 8 bits).
        """
        self._check_usable()
        codes = np.asarray(codes, dtype=np.float64)
        if codes.ndim != 2 or codes.shape[1] != self.n_units_:
            raise ValueError(f"expected codes of shape (n, {self.n_units_}), got {codes.shape}")
        if not np.all(np.isfinite(codes)):
            raise ValueError("codes must be finite")
        levels = _rate.quantize(codes, self.code_min_, self.code_max_, self.unit_bits_)
        return levels.astype(self._level_dtype())

    def dequantize(self, levels):
        """Map integer levels back to codes (bin centres), in the model's code dtype.

        Parameters
        ----------
        levels : array-like of shape (n_samples, n_units)
            Output of :meth:`quantize`.

        Returns
        -------
        codes : ndarray of shape (n_samples, n_units)
            Dequantized codes, to be passed to ``model.inverse_transform``.
        """
        self._check_usable()
        levels = np.asarray(levels)
        if levels.ndim != 2 or levels.shape[1] != self.n_units_:
            raise ValueError(f"expected levels of shape (n, {self.n_units_}), got {levels.shape}")
        codes = _rate.dequantize(levels, self.code_min_, self.code_max_, self.unit_bits_)
        return codes.astype(self.code_dtype_)

    @property
    def fingerprint(self):
        """Hex sha256 of the codec's settings, quantizer, tables and model.

        The model's parameters and fitted state are covered too. Archives store its first 16 bytes; decoding checks them, so an archive is never
        decoded with another model, other ranges or other tables.
        """
        from ._persist import fingerprint

        check_is_fitted(self)
        return fingerprint(self).hex()

    def _legacy_fingerprint(self):
        """The fingerprint a format-1 codec with these settings had, or None when this
        codec cannot decode format-1 archives (it quantizes differently)."""
        from ._persist import fingerprint

        if self.allocation != "uniform" or self.model_ is not None:
            return None
        legacy = copy.copy(self)
        for name in list(vars(legacy)):
            if name.endswith("_") and not name.startswith("_") and name not in _codec_state.V1_ATTRIBUTES:
                delattr(legacy, name)
        return fingerprint(legacy).hex()

    # -- bytes -------------------------------------------------------------------------

    def _levels(self, X):
        """Quantized levels of all samples of ``X`` (already checked by _flatten)."""
        levels = np.empty((X.shape[0], self.n_units_), self._level_dtype())
        for r0, codes in self._code_blocks(X):
            levels[r0 : r0 + codes.shape[0]] = self.quantize(codes)
        return levels

    def compress(self, X):
        """Compress samples to an archive.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Samples in the model's input space (e.g. images scaled to [0, 1]), as rows
            ``(n_samples, n_features)`` or with up to four dimensions per sample, such as
            ``(n_samples, 28, 28)``. The sample shape is stored, and :meth:`decompress`
            returns the same shape. An out-of-core array (``np.memmap``, Zarr, h5py, Dask)
            is read 16,384 samples at a time: only the quantized codes of all samples are
            held in memory.

        Returns
        -------
        data : bytes
            The archive; ``archive_info(data).bits_per_pixel`` gives its rate.
        """
        self._check_usable()
        X, shape = self._flatten(X)
        n = X.shape[0]
        if n >= 1 << 32:
            raise ValueError("at most 2**32 - 1 samples fit in one archive")
        coder, payload = encode_levels(self._levels(X), self.unit_bits_, self.frequencies_,
                                       self.coder)
        bits = self.unit_bits_
        return _archive.write(coder, int(bits.max()), shape, self.n_units_, n, int(bits.sum()),
                              bytes.fromhex(self.fingerprint), payload)

    def decode_codes(self, data):
        """Decode an archive to its dequantized codes, without ``inverse_transform``.

        Parameters
        ----------
        data : bytes
            An archive made by :meth:`compress` with this codec (or, for a codec loaded
            from a format-1 model file, by skdae 0.1's codec).

        Returns
        -------
        codes : ndarray of shape (count, n_units)
            Dequantized codes.
        info : ArchiveInfo
            The archive's header.

        Raises
        ------
        CorruptArchiveError
            If ``data`` is not an intact archive.
        ModelMismatchError
            If the archive was made by a codec with another model, ranges, tables or
            settings.
        """
        self._check_usable()
        info, payload = _archive.parse(data)
        self._check_archive_matches(info)
        levels = decode_levels(payload, info, self.unit_bits_, self.frequencies_)
        return self.dequantize(levels), info

    def _check_archive_matches(self, info):
        n = 2 * _archive.FINGERPRINT_BYTES
        if info.version == 1:
            expected = self._legacy_fingerprint()
            if expected is None:
                raise ModelMismatchError(
                    "a version-1 archive (skdae 0.1) decodes only with the codec that made it, "
                    "loaded from its model file; this codec's allocation or fine-tuning is newer"
                )
        else:
            expected = self.fingerprint
        if info.fingerprint != expected[:n]:
            raise ModelMismatchError(
                f"the archive was made with another model or codec (fingerprint "
                f"{info.fingerprint}, this codec's is {expected[:n]})"
            )
        bits = self.unit_bits_
        if info.n_units != self.n_units_ or info.sample_bits != int(bits.sum()) or (
            info.n_bits != int(bits.max())
        ):
            raise ModelMismatchError(
                f"the archive holds {info.n_units} units of {info.sample_bits} bits in all; "
                f"the codec uses {self.n_units_} of {int(bits.sum())}"
            )
        if int(np.prod(info.shape, dtype=np.int64)) != self.n_features_in_:
            raise ModelMismatchError(
                f"the archive's samples have shape {info.shape}; the model takes "
                f"{self.n_features_in_} values"
            )
        if info.coder == "rans" and self.frequencies_ is None:
            raise CorruptArchiveError("a rans archive for a codec without frequency tables")

    def decompress(self, data):
        """Decompress an archive made by :meth:`compress` with this codec.

        Parameters
        ----------
        data : bytes
            The archive.

        Returns
        -------
        X : ndarray of shape (count, ...)
            ``model.inverse_transform`` of the dequantized codes, reshaped to the shape
            the samples had when compressed.

        Raises
        ------
        CorruptArchiveError
            If ``data`` is truncated, damaged or not an archive.
        ModelMismatchError
            If the archive was made by a codec with another model, ranges or settings.
        """
        codes, info = self.decode_codes(data)
        X = np.asarray(self._model().inverse_transform(codes))
        return X.reshape((info.count, *info.shape))

    def bits_per_pixel(self, data):
        """Rate of an archive in bits per pixel (see :attr:`ArchiveInfo.bits_per_pixel`).

        Parameters
        ----------
        data : bytes
            An archive.

        Returns
        -------
        bpp : float
            Archive size in bits, header included, over the number of pixels it holds.
        """
        return archive_info(data).bits_per_pixel

    def payload_bytes(self, X):
        """Coded size of each sample compressed alone, without the archive's header.

        ``len(compress(X[i:i + 1])) - header`` for every ``i``, computed without building
        the archives: the rate a per-image format would have, next to the anchors' file
        sizes less their container.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Samples, as for :meth:`compress`.

        Returns
        -------
        sizes : ndarray of shape (n_samples,)
            Payload bytes of each sample's own archive (int64).
        """
        self._check_usable()
        X, _ = self._flatten(X)
        levels = self._levels(X)
        return np.array([len(encode_levels(levels[i : i + 1], self.unit_bits_,
                                           self.frequencies_, self.coder)[1])
                         for i in range(levels.shape[0])], np.int64)


def fit_codecs(model, X, n_bits, **params):
    """Fit one :class:`Codec` per value of ``n_bits``, sharing the work they have in common.

    Returns the codecs ``Codec(model, n_bits=b, **params).fit(X)`` for each ``b`` in
    ``n_bits``, with the same fitted state, in less time: :meth:`Codec.fit` computes the
    model's codes of ``X`` twice (for the ranges and the allocation, then for the
    frequency tables) and builds the allocation's distortion and rate tables of every
    bit depth; here that is done once for all the codecs, and only the choice of bits and
    the tables' counting differ per codec. With ``fine_tune_epochs``, the ranges and the
    allocation are still shared, but each codec fine-tunes its own copy of the model and
    counts its tables through it. A rate-distortion curve is drawn this way, as
    :func:`sklearn.linear_model.lasso_path` computes a path of penalties.

    Parameters
    ----------
    model : estimator
        A fitted transformer, as for :class:`Codec`.
    X : array-like of shape (n_samples, ...)
        Training samples, as for :meth:`Codec.fit`.
    n_bits : sequence of float
        The ``n_bits`` of each codec (see :class:`Codec`).
    **params
        The other parameters of :class:`Codec`, the same for every codec.

    Returns
    -------
    codecs : list of Codec
        Fitted codecs, in the order of ``n_bits``.

    See Also
    --------
    Codec.fit : Fit one codec.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> from skdae.codec import Codec, fit_codecs
    >>> X = np.random.default_rng(0).random((200, 64))
    >>> pca = PCA(8).fit(X)
    >>> codecs = fit_codecs(pca, X, [0.5, 2, 4])
    >>> [codec.n_bits for codec in codecs]
    [0.5, 2, 4]
    >>> alone = Codec(pca, n_bits=2).fit(X)
    >>> bool(np.array_equal(codecs[1].unit_bits_, alone.unit_bits_))
    True
    >>> codecs[1].fingerprint == alone.fingerprint
    True
    """
    if isinstance(n_bits, (str, bytes)) or not np.iterable(n_bits):
        raise ValueError(
            f"n_bits must be a sequence of values, one per codec, got {n_bits!r}; "
            "fit a single codec with Codec(model, n_bits=...).fit(X)"
        )
    codecs = [Codec(model, n_bits=value, **params) for value in n_bits]
    if not codecs:
        raise ValueError("n_bits is empty: give at least one value")
    for codec in codecs:
        codec._validate_params()
    fit_together(codecs, X)
    return codecs
