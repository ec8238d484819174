"""Fine-tuning of the unrolled autoencoder by minibatch backprop.

:class:`FineTuner` runs the epochs of :class:`~skdae.RBMStackAutoencoder`'s fine-tuning,
as scikit-learn's MLP splits its loop: one epoch of the kernel, then the bookkeeping
(loss curve, validation score, no-improvement count) apart. Each epoch is a transaction:
if it diverges or a ``KeyboardInterrupt`` arrives, the parameters, the optimiser state and
the bookkeeping are restored to the epoch's start, so the estimator never keeps
non-finite values or counters that do not match its weights.
"""

import time
import warnings
from contextlib import closing

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ._base import epoch_rng, thread_limits
from ._kernels._codes import LOSS_KIND
from ._optimizers import make_optimizer, new_state, scheduled_learning_rate
from ._pretraining import chunk_order, rows_order
from ._stream import CsrBlock

# Stream name of fine-tuning epochs under the fit's seed (pretraining uses 0).
FINETUNE_STREAM = 1
# Sub-stream of an epoch's key for the deformations of its chunk i (``augmentation``):
# apart from the epoch's own stream, so the shuffles are the same with or without it.
AUGMENT_STREAM = 1

# With the linear path and early stopping, the fitted non-linear layers replace the PCA
# start only if they lower its squared error on the held-out rows by at least this
# fraction (about 1.25 dB of PSNR). Held-out rows are drawn from the training rows, so
# they share what is peculiar to the training set. Measured on grey photo patches
# (30,000 overlapping 12x12 patches of the left three quarters of flower.jpg, code 24,
# benchmarks/patches_selection.py): the random held-out rows gained up to 1.11 dB
# over the start (0.1 dB by epoch 10, the default patience) while patches of the
# photograph's right quarter lost 0.07-0.79 dB at every epoch; on china.jpg the right
# quarter never gained (best -0.006 dB). Real non-linear structure clears the bar by
# far (the S-curve: 15 dB).
LINEAR_PATH_MARGIN = 0.25

_BOOKKEEPING = ("n_iter_", "t_", "best_loss_", "best_validation_score_", "_no_improvement_count")


class FineTuner:
    """The fine-tuning loop of one ``fit`` or ``partial_fit`` call.

    Parameters
    ----------
    estimator : RBMStackAutoencoder
        Its ``_params`` (the flat parameter vector), optimiser state and bookkeeping
        attributes are updated in place; its hyperparameters are read.
    layout : skdae._network.Layout
    act_kind : ndarray of int64
        Activation code of each layer.
    n_samples, n_features : int
        Shape of the training data.
    """

    def __init__(self, estimator, layout, act_kind, n_samples, n_features):
        est = self.estimator = estimator
        self.layout = layout
        self.act_kind = act_kind
        dtype = est._params.dtype
        self.optimizer = make_optimizer(est)
        if est._optimizer_solver != est.solver:
            # First call, or the solver was changed with set_params between partial_fit
            # calls: the old state means something else, start afresh.
            est._optimizer_state = new_state(est.solver, layout.n_params, dtype)
            est._optimizer_solver = est.solver
        self.batch = batch = min(est.batch_size, n_samples)
        widths = layout.shapes[:, 1]
        self.grads = np.zeros(layout.n_params, dtype)
        self.act_off = np.concatenate([[0], np.cumsum(batch * widths)[:-1]]).astype(np.int64)
        self.acts = np.empty(int(batch * widths.sum()), dtype)
        max_width = int(max(layout.shapes.max(), n_features))
        self.delta_a = np.empty(batch * max_width, dtype)
        self.delta_b = np.empty(batch * max_width, dtype)
        self.Xb = np.empty((batch, n_features), dtype)
        self.best_params = None
        # The validation score an epoch must beat to replace the linear path's PCA start
        # (None: the best score so far, as without the linear path).
        self.start_bar = None
        # Quantization-aware fine-tuning (set by the codec): a CodeQuantizer, or None.
        self.code_quantizer = None

    def run(self, data, epochs, stop, *, warn_max_iter):
        """Up to ``epochs`` epochs on ``data`` (:class:`skdae._stream.Rows`); early
        stopping on its held-out rows when it has some."""
        est = self.estimator
        if (est.linear_path_ and data.holdout is not None and est.n_iter_ == 0
                and self.best_params is None and est.best_validation_score_ == -np.inf):
            # The linear path starts at PCA: the start competes with every epoch, so the
            # weights kept are never worse than PCA on the held-out rows, and an epoch
            # replaces it only by a margin (see LINEAR_PATH_MARGIN).
            start_error = validation_error(est, data)
            est.best_validation_score_ = -start_error
            self.start_bar = -start_error * (1.0 - LINEAR_PATH_MARGIN)
            self.best_params = est._params.copy()
        for _ in range(epochs):
            snapshot = self._snapshot()
            tic = time.perf_counter()
            try:
                loss = self._epoch(data)
                self._check_finite(loss, snapshot)
                message, converged = self._record(loss, data, snapshot)
            except KeyboardInterrupt:
                self._restore(snapshot)
                self._warn_interrupted("the epoch in progress was rolled back")
                break
            if est.verbose:
                print(f"{message}, {time.perf_counter() - tic:.2f} s", flush=True)
            if stop.requested:
                self._warn_interrupted("the epoch in progress was completed")
                break
            if converged:
                break
        else:
            if warn_max_iter and epochs > 1:
                warnings.warn(
                    f"{type(est).__name__}: maximum iterations ({est.max_iter}) reached and the "
                    "optimisation hasn't converged yet.",
                    ConvergenceWarning,
                )
        if self.best_params is not None:
            est._params[...] = self.best_params

    def step(self, data, stop, key):
        """One pass over ``data`` as a transaction, drawing from ``epoch_rng(*key)``,
        without an epoch's bookkeeping (the ``partial_fit`` schedule records passes with
        :meth:`record`); returns the mean loss, or None when it was rolled back."""
        snapshot = self._snapshot()
        try:
            loss = self._epoch(data, key)
            self._check_finite(loss, snapshot)
        except KeyboardInterrupt:
            self._restore(snapshot)
            self._warn_interrupted("the step in progress was rolled back")
            return None
        if stop.requested:
            self._warn_interrupted("the step in progress was completed")
        return loss

    def record(self, loss):
        """Record a completed pass of the ``partial_fit`` schedule, as an epoch."""
        message, _ = self._record(loss, None)
        if self.estimator.verbose:
            print(message, flush=True)

    def _check_finite(self, loss, snapshot):
        est = self.estimator
        if not (np.isfinite(loss) and np.isfinite(est._params).all()):
            self._restore(snapshot)
            raise ValueError(self._diverged_message(f"the loss is {loss}"))

    def _diverged_message(self, what):
        est = self.estimator
        return (f"{type(est).__name__} fine-tuning diverged at epoch {est.n_iter_ + 1}: {what}. "
                "The weights and the optimiser state were reset to the last finite epoch. "
                "Lower learning_rate, or standardise the input.")

    def _epoch(self, data, key=None):
        """One epoch of the kernel over every chunk; returns the mean per-sample loss."""
        from ._kernels import _backprop as kernels
        from ._kernels import _quantized as quantized

        est, layout = self.estimator, self.layout
        key = key or (est._seed, FINETUNE_STREAM, est.n_iter_)
        rng = epoch_rng(*key)
        optimizer = self.optimizer.kernel_arguments(est._optimizer_state)
        state_a, state_b, _, momentum, beta_1, beta_2, epsilon = optimizer
        lr = scheduled_learning_rate(est)
        rest = (est._params, self.grads, state_a, state_b)
        # Floats, never Python ints: an int hyperparameter beyond int64 (valid to the
        # parameter constraints) would not fit the kernel's signature.
        hyper = (self.optimizer.kind, float(lr), float(momentum), float(beta_1), float(beta_2),
                 float(epsilon), float(est.alpha),
                 self.batch, layout.shapes, layout.w_off, layout.b_off, self.act_kind,
                 LOSS_KIND[est.loss_], self.Xb, self.acts, self.act_off, self.delta_a,
                 self.delta_b, est._linear_path_kernel_argument())
        layers = kernels.layer_pointers(est._params.dtype)
        loss_sum = 0.0
        if self.code_quantizer is not None:
            self.code_quantizer.start_epoch()
        with thread_limits(est.n_jobs), closing(data.chunks(chunk_order(rng, data))) as chunks:
            for i, chunk in chunks:
                order = rows_order(rng, data, i, chunk)
                if est.augmentation is not None:
                    chunk = est._deformed(chunk, (*key, AUGMENT_STREAM, int(i)))
                if self.code_quantizer is not None:
                    if isinstance(chunk, CsrBlock):
                        raise TypeError("quantization-aware fine-tuning needs dense data")
                    loss, t = quantized.finetune_epoch_quantized(
                        chunk, order, *rest, est.t_, *hyper,
                        *self.code_quantizer.kernel_arguments(len(order)), *layers)
                elif isinstance(chunk, CsrBlock):
                    loss, t = kernels.finetune_epoch_csr(
                        chunk.data, chunk.indices, chunk.indptr, chunk.mean, chunk.scale,
                        chunk.standardize, order, *rest, est.t_, *hyper, *layers)
                else:
                    loss, t = kernels.finetune_epoch(chunk, order, *rest, est.t_, *hyper, *layers)
                loss_sum += loss
                est.t_ = int(t)
        return loss_sum / data.n_train()

    def _record(self, loss, data, snapshot=None):
        """Bookkeeping after an epoch; returns ``(progress message, converged)``."""
        est = self.estimator
        validate = data is not None and data.holdout is not None
        if validate:
            score = -validation_error(est, data)
            if not np.isfinite(score):
                # Weights still finite but large enough that the held-out error is not.
                self._restore(snapshot)
                raise ValueError(self._diverged_message(f"the validation error is {-score}"))
        est.n_iter_ += 1
        est.loss_curve_.append(float(loss))
        message = f"[fine-tune] epoch {est.n_iter_}, {est.loss_} {loss:.4f}"
        if validate:
            est.validation_scores_.append(score)
            message += f", validation squared error {-score:.4f}"
        self._update_no_improvement_count(loss, validate)
        return message, est._no_improvement_count >= est.n_iter_no_change

    def _update_no_improvement_count(self, loss, early_stopping):
        """As scikit-learn's MLP: count epochs that improve by less than ``tol``, on the
        validation score with early stopping (keeping the best weights) and on the
        training loss otherwise."""
        est = self.estimator
        if early_stopping:
            score = est.validation_scores_[-1]
            best = est.best_validation_score_
            if self.start_bar is not None:
                best = max(best, self.start_bar)
            if score < best + est.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            if score > best:
                est.best_validation_score_ = score
                self.best_params = est._params.copy()
        else:
            # After an early-stopping fit, partial_fit has no validation data and tracks
            # the training loss from here on.
            best = np.inf if est.best_loss_ is None else est.best_loss_
            if loss > best - est.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            est.best_loss_ = float(min(best, loss))

    def _snapshot(self):
        est = self.estimator
        arrays = [est._params, *est._optimizer_state.values()]
        scalars = {name: getattr(est, name) for name in _BOOKKEEPING}
        lengths = (len(est.loss_curve_), None if est.validation_scores_ is None
                   else len(est.validation_scores_))
        best = None if self.best_params is None else self.best_params
        return [a.copy() for a in arrays], scalars, lengths, best

    def _restore(self, snapshot):
        est = self.estimator
        arrays, scalars, (n_losses, n_scores), best = snapshot
        for current, saved in zip([est._params, *est._optimizer_state.values()], arrays):
            current[...] = saved
        for name, value in scalars.items():
            setattr(est, name, value)
        del est.loss_curve_[n_losses:]
        if n_scores is not None:
            del est.validation_scores_[n_scores:]
        self.best_params = best

    def _warn_interrupted(self, what):
        warnings.warn(
            f"{type(self.estimator).__name__}: fine-tuning interrupted by the user; {what}, "
            f"keeping the weights after {self.estimator.n_iter_} epochs.",
            UserWarning,
        )


class CodeQuantizer:
    """What quantization-aware fine-tuning needs to quantize the code layer in the kernel.

    Parameters
    ----------
    code_layer : int
        Index of the code layer among the network's layers.
    lo, step : ndarray of shape (n_units,)
        Bottom of each unit's range and its bin width (the codec's quantizer).
    n_levels : ndarray of shape (n_units,)
        Bins per unit.
    noise : bool
        Additive uniform noise of one bin width (True) or straight-through rounding.
    rng : numpy.random.Generator
        Source of the noise.
    dtype : numpy.dtype
        The network's dtype.
    rate_weight : float, default=0.0
        Weight of the codes' estimated bits in the objective, in the training loss's
        units per bit per sample (0: distortion only, the kernel skips the rate term).
    codes : ndarray of shape (n_samples, n_units), default=None
        Codes of the model before fine-tuning, from which the first epoch's per-unit
        densities are estimated (needed when ``rate_weight > 0``).

    Notes
    -----
    The rate term's densities (a logistic per unit, see
    :func:`skdae._kernels._quantized.code_rate_gradient`) are re-estimated before every
    epoch from the moments of the quantized codes the kernel saw in the epoch before (the
    first epoch from ``codes``): location the mean, scale ``std * sqrt(3) / pi``. For codes
    that do not move, that is the logistic's moment fit, close to the one that codes
    them in the fewest bits; re-estimating rather than learning it keeps the kernel's
    arguments read-only and adds no trained parameter, and the coder never uses it (its
    tables are learned from the fine-tuned codes afterwards).
    """

    def __init__(self, code_layer, lo, step, n_levels, noise, rng, dtype, rate_weight=0.0,
                 codes=None):
        self.code_layer = int(code_layer)
        self.lo = np.ascontiguousarray(lo, dtype)
        self.step = np.ascontiguousarray(step, dtype)
        self.n_levels = np.ascontiguousarray(n_levels, np.int64)
        self.noise, self.rng, self.dtype = noise, rng, dtype
        self.rate_weight = float(rate_weight)
        n_units = self.lo.shape[0]
        self.stats = np.zeros((2, n_units), np.float64)
        self.n_seen = 0
        self.density = np.zeros((2, n_units), np.float64)
        self.density[1] = 1.0
        if self.rate_weight > 0:
            codes = np.asarray(codes, np.float64)
            top = self.lo + self.n_levels * self.step
            # The quantizer clips: so do the codes the kernel will see.
            codes = np.clip(codes, self.lo, top)
            self._estimate(codes.sum(axis=0), (codes * codes).sum(axis=0), len(codes))

    def _estimate(self, sums, squares, count):
        """Logistic location and scale of each unit from its codes' moments."""
        mean = sums / count
        var = np.maximum(squares / count - mean * mean, 0.0)
        # A unit whose codes all fall in one bin has no spread: a scale far below its
        # bin width gives that bin all the mass (0 bits, no gradient) without 0 / 0.
        floor = np.maximum(1e-3 * self.step.astype(np.float64), 1e-12)
        self.density[0] = mean
        self.density[1] = np.maximum(np.sqrt(3.0 * var) / np.pi, floor)

    def start_epoch(self):
        """Re-estimate the densities from the codes of the last epoch; count afresh."""
        if self.rate_weight > 0 and self.n_seen > 0:
            self._estimate(self.stats[0], self.stats[1], self.n_seen)
        self.stats[...] = 0.0
        self.n_seen = 0

    def kernel_arguments(self, n_rows):
        """The trailing arguments of ``finetune_epoch_quantized`` for ``n_rows`` rows."""
        n_units = self.lo.shape[0]
        if self.noise:
            noise = self.rng.random((n_rows, n_units), dtype=np.float32) - np.float32(0.5)
        else:
            noise = np.empty((0, n_units), np.float32)
        if self.rate_weight > 0:
            self.n_seen += n_rows
        return (self.code_layer, self.lo, self.step, self.n_levels, noise.astype(self.dtype),
                self.density, self.rate_weight, self.stats)


def validation_error(estimator, data):
    """Mean per-sample squared reconstruction error (input units) of the held-out rows
    of ``data``, read chunk by chunk: never an in-memory copy of the validation set."""
    total, count = 0.0, 0
    for i in range(data.n_chunks):
        rows = data.holdout.val_rows(*data.bounds(i))
        if len(rows):
            # A diverging model's errors overflow to inf, which the caller reports.
            with np.errstate(over="ignore", invalid="ignore"):
                total += float(estimator._squared_errors(data.raw(i, rows)).sum())
            count += len(rows)
    return total / count
