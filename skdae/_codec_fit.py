"""How a :class:`~skdae.codec.Codec` is fitted: the quantizer, the rate model and the
quantization-aware fine-tuning of a copy of the model.

:func:`fit_together` is what :meth:`Codec.fit <skdae.codec.Codec.fit>` and
:func:`~skdae.codec.fit_codecs` run: with ``decorrelate``, first a copy of the
autoencoder turned to its codes' principal axes (:func:`decorrelated_copy`); one scan of
the training codes (:class:`TrainingCodes`: ranges, dtype, a subsample for the bit
allocation), each codec's
ranges and bits (:func:`fit_quantizer`), optionally quantization-aware fine-tuning of a
copy of an autoencoder (:func:`quantization_aware_fine_tune`, with the rate term's
exchange rate from :func:`loss_per_squared_error`), then the per-unit frequency tables
(:func:`fit_tables`). The codec class itself (:mod:`skdae.codec`) holds the parameters,
the checks of its fitted state and the way from samples to archives and back, with the
levels' byte coding in :mod:`skdae._codec_bytes`.
"""

import copy

import numpy as np
from sklearn.utils.validation import check_is_fitted

from . import _rate

# Training codes whose decoder gains weight the bit allocation (see _rate.unit_weights).
WEIGHT_ROWS = 128
# Training samples on which rate_weight is converted to a cross-entropy model's loss.
EXCHANGE_ROWS = 2048
# fine_tune_learning_rate=None is the model's learning_rate times this. Measured on
# held-out training images (benchmarks/results/codec_qat_learning_rate.json: a converged
# 784-1000-500-250-64 MNIST autoencoder, Adam at 1e-3 under a cosine schedule, 3 bits
# per unit): the model's own rate jolts the converged weights (0.65-0.85 dB below the
# codec without fine-tuning at the same rate), a tenth of it 0.07-0.12 dB below and
# with the rate term up to 1.2 dB above; a hundredth moves too little in a few epochs.
LEARNING_RATE_FRACTION = 0.1
# Training samples (evenly spaced) on which each epoch's weights are scored against the
# best so far (see objective).
OBJECTIVE_ROWS = 4096


class TrainingCodes:
    """What a codec learns from the model's codes of its training samples before any
    bits are chosen, shared by codecs that differ only in ``n_bits``.

    Built with one pass over the samples: the codes' ranges and dtype, and an evenly
    spaced subsample (at most ``_rate.ALLOCATION_ROWS`` rows) for the allocation. The
    decoder gains (:func:`_rate.unit_weights`) and the distortion/rate tables of every
    depth (:func:`_rate.allocation_tables`) are built on the first :meth:`allocate`.
    """

    def __init__(self, codec, X, model):
        self.model = model
        self.lo, self.hi, self.sample, self.dtype = scan(codec, X, model)
        self._tables = None

    def allocate(self, budget):
        """Bits per unit for a coded rate of ``budget`` bits per sample."""
        if self._tables is None:
            sample, dtype = self.sample, self.dtype
            rows = sample[:: max(1, len(sample) // WEIGHT_ROWS)][:WEIGHT_ROWS]
            weights = _rate.unit_weights(
                lambda codes: self.model.inverse_transform(codes.astype(dtype)), rows
            )
            self._tables = _rate.allocation_tables(sample, self.lo, self.hi, weights)
        return _rate.choose_bits(*self._tables, budget)


def fit_together(codecs, X):
    """Fit ``codecs`` (one model, settings that differ only in ``n_bits``) on ``X``.

    The model's codes of ``X`` are computed twice in all, not twice per codec: once for
    the ranges and the allocation's subsample (:class:`TrainingCodes`), once for the
    frequency tables of every codec that uses the model itself. A codec that fine-tunes
    counts its tables through its own copy, after fine-tuning.
    """
    for codec in codecs:
        codec._check_n_bits()
        codec._check_fine_tuning()
        if codec.fine_tune_epochs > 0:
            from ._autoencoder import RBMStackAutoencoder

            if type(codec.model) is not RBMStackAutoencoder:
                raise ValueError(
                    f"fine_tune_epochs={codec.fine_tune_epochs} needs an RBMStackAutoencoder "
                    f"model, not {type(codec.model).__name__}; use fine_tune_epochs=0"
                )
            check_is_fitted(codec.model)
    X, shape = codecs[0]._flatten(X, check_features=False)
    # Settings other than n_bits are shared, so one rotated copy serves every codec.
    source = decorrelated_copy(codecs[0], X) if codecs[0].decorrelate else codecs[0].model
    training = TrainingCodes(codecs[0], X, source)
    for codec in codecs:
        fit_quantizer(codec, training, shape)
    plain = []
    for codec in codecs:
        if codec.fine_tune_epochs > 0:
            codec.model_ = copy.deepcopy(source)
            quantization_aware_fine_tune(codec, X, training.sample)
            fit_tables([codec], X)
        else:
            if source is not codec.model:
                codec.model_ = copy.deepcopy(source)
            plain.append(codec)
    if plain:
        fit_tables(plain, X)


def decorrelated_copy(codec, X):
    """A copy of ``codec.model`` whose code units are the principal axes of its codes of
    ``X``, by decreasing variance: the same network in another basis of its code space.

    The codes are rotated by the orthogonal matrix ``R`` of the eigenvectors of their
    covariance (each row's largest entry made positive, so the basis is deterministic),
    folded into the weights: the layer into the code maps to ``codes @ R.T`` and the
    first decoder layer reads ``z @ R`` (the linear path's ``components_`` turn with
    them), so reconstructions are unchanged up to rounding. Units quantized one by one
    cost fewer bits when they are uncorrelated (transform coding's KLT); the allocation
    then gives the high-variance axes the bits. The copy's optimiser state is dropped:
    its moments belong to the old basis, and fine-tuning starts afresh.
    """
    from ._autoencoder import RBMStackAutoencoder

    model = codec.model
    if type(model) is not RBMStackAutoencoder:
        raise ValueError(
            f"decorrelate=True rotates an RBMStackAutoencoder's code layer; the model is a "
            f"{type(model).__name__} (a PCA's codes are uncorrelated already): use "
            "decorrelate=False"
        )
    check_is_fitted(model)
    if model._code_units != "linear":
        raise ValueError(
            f"decorrelate=True rotates the code layer, which needs linear code units; the "
            f"model has code_units={model._code_units!r}, whose squashing a rotation would "
            "change: refit with code_units='linear', or use decorrelate=False"
        )
    total, outer, n = 0.0, 0.0, 0
    for _, codes in codec._code_blocks(X, model):
        codes = codes.astype(np.float64)
        total = total + codes.sum(axis=0)
        outer = outer + codes.T @ codes
        n += codes.shape[0]
    mean = total / n
    covariance = outer / n - np.outer(mean, mean)
    variances, vectors = np.linalg.eigh(covariance)
    rotation = vectors[:, np.argsort(variances)[::-1]].T
    k = rotation.shape[0]
    rotation *= np.sign(rotation[np.arange(k), np.argmax(np.abs(rotation), axis=1)])[:, None]
    ae = copy.deepcopy(model)
    code_layer = len(ae.coefs_) // 2 - 1

    def turned(array, into_code):
        # In float64, back to the array's dtype: codes @ R.T into the code, R @ W out of it.
        wide = array.astype(np.float64)
        return (wide @ rotation.T if into_code else rotation @ wide).astype(array.dtype)

    # In place: coefs_ and intercepts_ are views of the parameter vector.
    ae.coefs_[code_layer][...] = turned(ae.coefs_[code_layer], True)
    ae.intercepts_[code_layer][...] = turned(ae.intercepts_[code_layer], True)
    ae.coefs_[code_layer + 1][...] = turned(ae.coefs_[code_layer + 1], False)
    if ae.linear_path_:
        ae.components_ = np.ascontiguousarray(turned(ae.components_, False))
    _restart_optimizer(ae)
    return ae


def _restart_optimizer(ae):
    """Drop ``ae``'s optimiser state, as before its first epoch: after a change of basis
    or of loss its moments (and Adam's bias correction, which counts steps from ``t_``)
    describe gradients the network no longer has."""
    ae._optimizer_state, ae._optimizer_solver, ae.t_ = None, None, 0


def fit_tables(codecs, X):
    """Frequency tables of ``codecs`` (fitted quantizers, one model) from one pass over
    ``X``; None for a codec with a unit of more than ``_rate.MAX_TABLE_BITS`` bits."""
    tabled = []
    for codec in codecs:
        codec.frequencies_ = None
        if codec.unit_bits_.max() <= _rate.MAX_TABLE_BITS:
            tabled.append(codec)
    if not tabled:
        return
    counts = [np.zeros(_rate.table_offsets(c.unit_bits_)[1], np.int64) for c in tabled]
    for _, codes in tabled[0]._code_blocks(X):
        codes = codes.astype(np.float64)
        for codec, count in zip(tabled, counts):
            levels = _rate.quantize(codes, codec.code_min_, codec.code_max_, codec.unit_bits_)
            count += _rate.level_counts(levels, codec.unit_bits_)
    for codec, count in zip(tabled, counts):
        codec.frequencies_ = _rate.frequency_tables(count, codec.unit_bits_)


def fit_quantizer(codec, training, shape):
    """Set ``codec``'s ranges and bit allocation from the training codes
    (:class:`TrainingCodes`)."""
    codec.model_ = None
    codec.code_min_, codec.code_max_ = training.lo.copy(), training.hi.copy()
    codec.code_dtype_ = training.dtype
    codec.n_features_in_ = int(np.prod(shape, dtype=np.int64))
    n_units = training.lo.size
    if codec.allocation == "uniform":
        bits = np.full(n_units, int(codec.n_bits), np.int64)
    else:
        bits = training.allocate(codec.n_bits * n_units)
    if bits.sum() == 0:
        raise ValueError(
            f"n_bits={codec.n_bits} leaves every code unit without a bit on these codes; "
            "raise n_bits"
        )
    if bits.max() > _rate.MAX_TABLE_BITS and codec.coder == "rans":
        raise ValueError(
            f"coder='rans' needs at most {_rate.MAX_TABLE_BITS} bits per unit; "
            f"some units have {int(bits.max())}: lower n_bits or use coder='auto'"
        )
    codec.unit_bits_ = bits


def scan(codec, X, model):
    """Ranges of ``model``'s codes of ``X`` (float64), an evenly spaced subsample of them
    for the allocation, and the codes' dtype."""
    n = X.shape[0]
    stride = max(1, -(-n // _rate.ALLOCATION_ROWS))
    lo = hi = None
    sample = []
    for r0, codes in codec._code_blocks(X, model):
        lo = codes.min(axis=0) if lo is None else np.minimum(lo, codes.min(axis=0))
        hi = codes.max(axis=0) if hi is None else np.maximum(hi, codes.max(axis=0))
        first = (-r0) % stride
        sample.append(codes[first::stride].astype(np.float64))
    return lo.astype(np.float64), hi.astype(np.float64), np.concatenate(sample), codes.dtype.str


def quantization_aware_fine_tune(codec, X, codes, on_epoch=None):
    """Fine-tune ``codec.model_`` (a copy) with the quantizer in its code layer;
    ``codes`` (the model's, before fine-tuning) start the rate term's densities.
    ``on_epoch(epoch, ae)``, if given, is called after each epoch (studies only)."""
    from ._base import stop_on_ctrl_c
    from ._finetuning import CodeQuantizer

    ae = codec.model_
    rate = codec.fine_tune_learning_rate
    if rate is None:
        rate = LEARNING_RATE_FRACTION * float(ae.learning_rate)
    # A new phase, not the rest of the model's fine-tuning: a schedule would continue
    # from n_iter_ (after a cosine schedule, at about 4e-4 of learning_rate, where the
    # quantized loss barely moves), and the augmentation was chosen for the long run.
    # Its step is smaller than the model's (LEARNING_RATE_FRACTION): it starts from
    # converged weights.
    ae.set_params(learning_rate=float(rate), learning_rate_schedule="constant",
                  augmentation=None)
    if codec.fine_tune_loss == "squared_error" and ae.loss_ != "squared_error":
        ae.set_params(loss="squared_error")
        ae.loss_ = "squared_error"
        _restart_optimizer(ae)
    X2 = np.asarray(X).reshape(X.shape[0], -1)
    data = ae._training_rows(X2, reset=False)
    # The copy's bookkeeping tracked the unquantized loss: start the count afresh.
    ae.best_loss_, ae._no_improvement_count = None, 0
    tuner = ae._fine_tuner(data)
    n_levels = np.left_shift(1, codec.unit_bits_)
    rate_weight = 0.0
    if codec.rate_weight > 0:
        rate_weight = codec.rate_weight * loss_per_squared_error(codec, ae, X2)
    tuner.code_quantizer = CodeQuantizer(
        code_layer=tuner.layout.shapes.shape[0] // 2 - 1,
        lo=codec.code_min_,
        step=_rate.steps(codec.code_min_, codec.code_max_, codec.unit_bits_),
        n_levels=n_levels,
        noise=codec.fine_tune_method == "noise",
        rng=np.random.default_rng([int(getattr(ae, "_seed", 0)), 7]),
        dtype=ae._params.dtype,
        rate_weight=rate_weight,
        codes=codes,
    )
    epochs = codec.fine_tune_epochs
    # The weights kept are the best epoch's, the start's included, on the codec's own
    # objective: fine-tuning never ends worse than not fine-tuning on these samples.
    rows = _spaced_rows(X2, OBJECTIVE_ROWS)
    best = (objective(codec, ae, rows), ae._params.copy())
    # Every epoch asked for runs: the copy's early-stopping rule was tuned for its own
    # (unquantized) loss, whose noise it would mistake for convergence.
    patience = ae.n_iter_no_change
    ae.n_iter_no_change = epochs + 1
    try:
        with stop_on_ctrl_c() as stop:
            for epoch in range(epochs):
                done = ae.n_iter_
                tuner.run(data, 1, stop, warn_max_iter=False)
                if ae.n_iter_ == done or stop.requested:
                    break
                if on_epoch is not None:
                    on_epoch(epoch + 1, ae)
                value = objective(codec, ae, rows)
                if value < best[0]:
                    best = (value, ae._params.copy())
    finally:
        ae.n_iter_no_change = patience
    ae._params[...] = best[1]


def _spaced_rows(X, n_rows):
    """At most about ``n_rows`` evenly spaced rows of ``X`` (a view where ``X`` allows)."""
    return X[:: max(1, -(-X.shape[0] // n_rows))]


def quantized_reconstruction(codec, ae, rows):
    """``(levels, reconstructions, targets)`` of ``rows`` through ``ae`` with its codes
    quantized by ``codec``; reconstructions and targets in float64 input units (8-bit
    input is read as intensities / 255, as the network reads it)."""
    codes = codec._transform(rows, ae).astype(np.float64)
    lo, hi, bits = codec.code_min_, codec.code_max_, codec.unit_bits_
    levels = _rate.quantize(codes, lo, hi, bits)
    dequantized = _rate.dequantize(levels, lo, hi, bits)
    recon = np.asarray(ae.inverse_transform(dequantized.astype(codec.code_dtype_)), np.float64)
    target = rows / 255.0 if rows.dtype == np.uint8 else rows.astype(np.float64)
    return levels, recon, target


def objective(codec, ae, rows):
    """Mean squared error (input units) of ``ae``'s reconstructions of ``rows`` from
    their codes quantized by ``codec``, plus ``codec.rate_weight`` times their mean
    coded bits per sample (the empirical entropy of each unit's levels)."""
    levels, recon, target = quantized_reconstruction(codec, ae, rows)
    err = recon - target
    value = float(np.einsum("ij,ij->", err, err)) / len(rows)
    if codec.rate_weight > 0:
        # Every unit's histogram sums to len(rows): the sum of the units' entropies.
        counts = _rate.level_counts(levels, codec.unit_bits_)
        p = counts[counts > 0] / len(rows)
        value -= codec.rate_weight * float(np.sum(p * np.log2(p)))
    return value


def loss_per_squared_error(codec, ae, X2):
    """Units of ``ae``'s training loss per unit of squared error (input units): 1
    for squared error on unscaled inputs, else the ratio of the two for the quantized
    reconstructions (by ``codec``'s quantizer) of (up to ``EXCHANGE_ROWS`` evenly spaced)
    training samples."""
    if ae.loss_ == "squared_error" and ae.visible_units_ != "gaussian":
        return 1.0
    _, recon, rows = quantized_reconstruction(codec, ae,
                                              np.asarray(_spaced_rows(X2, EXCHANGE_ROWS)))
    err = recon - rows
    squared = float(np.sum(err * err))
    if ae.loss_ == "cross_entropy":
        from scipy.special import rel_entr

        # The cross-entropy less the samples' own entropy: what training can lower.
        a = np.clip(recon, 1e-7, 1 - 1e-7)
        x = np.clip(rows, 0.0, 1.0)
        excess = float(np.sum(rel_entr(x, a) + rel_entr(1 - x, 1 - a)))
    else:
        # Squared error of the standardised features, as the network trains on them.
        excess = float(np.sum((err / ae.scale_) ** 2))
    if not (squared > 0 and np.isfinite(excess) and excess > 0):
        return 1.0
    return excess / squared
