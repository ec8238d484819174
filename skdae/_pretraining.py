"""Contrastive-divergence training of one RBM, and greedy pretraining of an RBM stack.

:class:`CDTrainer` is the training loop shared by :class:`~skdae.RBM` and the pretraining
of :class:`~skdae.RBMStackAutoencoder`; :func:`pretrain_stack` trains the stack layer by
layer, each RBM on the hidden means of the frozen layers below.
"""

import time
import warnings
from contextlib import closing

import numpy as np

from ._base import epoch_rng, epoch_seeds, readonly, thread_limits
from ._kernels._codes import HIDDEN_KIND, VISIBLE_KIND
from ._stream import ArrayRows, CsrBlock, EncodedRows, GatheredRows, encode_through, spill

# Rows per chunk when encoding the data for the next layer, and (rounded down to whole
# batches) per piece of an epoch's order of GatheredRows: bounds the scratch memory
# (4000 rows of the paper's 784 inputs and 1000 units: 29 MB). Pieces and chunks this
# large give BLAS the same blocking per row as encoding all rows at once, so gathered and
# stored rows are bitwise equal on MNIST; on tiny matrices OpenBLAS may round the last
# bit differently with the number of rows.
_CHUNK_ROWS = 4096

# How an upper RBM of a streamed fit gets its data: "recompute" runs every chunk through
# the frozen layers below at every epoch; "spill" writes the layer below's output once to
# an unlinked temporary file (in SPILL_DIR, default the system's temporary folder) and
# reads it back memory-mapped; "auto" spills when an RBM trains two epochs or more (with
# one, both compute the layers below once) and the disk has room for twice the file plus
# 1 GiB, and recomputes otherwise. Measured in benchmarks/scale.py (README, "Scale"): an
# upper RBM's epoch costs 2-4x less from a spill file, since recomputing it means a
# forward pass through every layer below; a spill file takes 4 bytes per sample and
# hidden unit (4 GB for a million images under a 1000-unit layer), never private memory.
UPPER_LAYERS = "auto"
SPILL_DIR = None


def chunk_order(rng, data):
    """The epoch's order of chunks: none drawn for one chunk, so an in-memory fit draws
    exactly the streams it drew before fits were streamed."""
    return rng.permutation(data.n_chunks) if data.n_chunks > 1 else np.zeros(1, np.int64)


def rows_order(rng, data, i, chunk):
    """Shuffled training rows of chunk ``i`` (held-out validation rows left out)."""
    rows = data.train_rows(i)
    if rows is None:
        n = chunk.n_rows if isinstance(chunk, CsrBlock) else chunk.shape[0]
        return rng.permutation(n)
    return rows[rng.permutation(len(rows))]


class CDTrainer:
    """Parameters and momentum state of one RBM under contrastive divergence.

    Owns the buffers (allocated once per call of :meth:`run`), follows the momentum
    schedule, checks for divergence after every epoch (and then restores the epoch's
    starting state), and stops cleanly on Ctrl-C (see :func:`skdae._base.stop_on_ctrl_c`).
    The arrays are updated in place: ``W`` ``(n_hidden, n_visible)``, the biases, the
    velocities ``velocity = (vel_W, vel_vis, vel_hid)`` and the persistent ``chain``.
    """

    def __init__(self, W, b_vis, b_hid, visible_units, hidden_units, *, cd_steps, persistent,
                 learning_rate, initial_momentum, momentum, momentum_switch_epoch,
                 weight_decay, batch_size, velocity=None, chain=None):
        self.W, self.b_vis, self.b_hid = W, b_vis, b_hid
        self.visible_kind = VISIBLE_KIND[visible_units]
        self.hidden_kind = HIDDEN_KIND[hidden_units]
        self.cd_steps = cd_steps
        self.persistent = persistent
        self.learning_rate = learning_rate
        self.initial_momentum = initial_momentum
        self.momentum = momentum
        self.momentum_switch_epoch = momentum_switch_epoch
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        if velocity is None:
            velocity = (np.zeros_like(W), np.zeros_like(b_vis), np.zeros_like(b_hid))
        self.vel_W, self.vel_vis, self.vel_hid = velocity
        n_hidden = W.shape[0]
        if chain is None or chain.shape[0] < batch_size:
            # A larger batch_size set between partial_fit calls extends the chain with
            # fresh (all-off) states.
            grown = np.zeros((batch_size, n_hidden), W.dtype)
            if chain is not None:
                grown[: chain.shape[0]] = chain
            chain = grown
        self.chain = chain

    def _state(self):
        return (self.W, self.b_vis, self.b_hid, self.vel_W, self.vel_vis, self.vel_hid, self.chain)

    def run(self, data, epochs, key, *, stop, first_epoch=0, verbose=0, label="RBM", curve):
        """Train for up to ``epochs`` epochs, appending each epoch's error to ``curve``.

        Parameters
        ----------
        data : skdae._stream.Rows
            What the visible units see (standardised for Gaussian units), of the
            parameters' dtype, as chunks of rows: each epoch visits the chunks in a
            shuffled order and the training rows of each chunk in a shuffled order.
        epochs : int
        key : tuple of int
            Names the random streams: epoch ``e`` draws from ``epoch_rng(*key, e)``.
        stop : object with a ``requested`` attribute
            Set by :func:`skdae._base.stop_on_ctrl_c`; checked after every epoch.
        first_epoch : int, default=0
            Index of the first epoch (the momentum schedule and the streams follow it).
        verbose : int, default=0
        label : str, default="RBM"
        curve : list of float
            Per-sample reconstruction error of each completed epoch.

        Returns
        -------
        interrupted : bool
            True when Ctrl-C ended training early; the state then holds the epochs
            recorded in ``curve``.
        """
        n_samples, n_visible = data.n_train(), data.n_features
        n_hidden = self.W.shape[0]
        # A batch can never be larger than the data; buffers are sized once.
        batch = min(self.batch_size, n_samples)
        dtype = self.W.dtype
        buffers = (np.empty((2 * batch, n_visible), dtype), np.empty((2 * batch, n_hidden), dtype),
                   np.empty((batch, n_hidden), dtype))
        chain = self.chain[:batch]
        for epoch in range(first_epoch, first_epoch + epochs):
            momentum = self.initial_momentum if epoch < self.momentum_switch_epoch else self.momentum
            rng = epoch_rng(*key, epoch)
            # The epoch's starting state, restored if it diverges or is interrupted (a copy
            # costs a fraction of a percent of an epoch).
            snapshot = [a.copy() for a in self._state()]
            n_recorded = len(curve)
            tic = time.perf_counter()
            try:
                squared_error = self._epoch(data, rng, momentum, batch, chain, buffers)
                error = squared_error / n_samples
                if not (np.isfinite(error) and all(np.isfinite(a).all() for a in self._state())):
                    self._restore(snapshot)
                    raise ValueError(
                        f"{label} diverged at epoch {epoch + 1}: the reconstruction error is "
                        f"{error:.4g} and the weights are no longer finite; they were reset to "
                        "the last finite epoch. Lower the learning rate or standardise the input."
                    )
                curve.append(float(error))
            except KeyboardInterrupt:
                self._restore(snapshot)
                del curve[n_recorded:]
                _warn_interrupted(label, len(curve), rolled_back=True)
                return True
            if verbose:
                print(f"[{label}] epoch {epoch + 1}, reconstruction error {error:.4f}, "
                      f"{time.perf_counter() - tic:.2f} s", flush=True)
            if stop.requested:
                _warn_interrupted(label, len(curve), rolled_back=False)
                return True
        return False

    def _epoch(self, data, rng, momentum, batch, chain, buffers):
        """One pass over every chunk, in a shuffled order; returns the summed error."""
        from ._kernels import _rbm as kernels

        hyper = (self.visible_kind, self.hidden_kind, self.cd_steps, self.persistent, chain,
                 float(self.learning_rate), float(momentum), float(self.weight_decay), batch)
        params = (self.W, self.b_vis, self.b_hid, self.vel_W, self.vel_vis, self.vel_hid)
        total = 0.0
        with closing(data.chunks(chunk_order(rng, data))) as chunks:
            for i, chunk in chunks:
                order = rows_order(rng, data, i, chunk)
                seed = epoch_seeds(rng, 1)[0]
                error_cols = np.zeros(data.n_features, np.float64)
                if isinstance(chunk, CsrBlock):
                    total += kernels.cd_epoch_csr(
                        chunk.data, chunk.indices, chunk.indptr, chunk.mean, chunk.scale,
                        chunk.standardize, order, *params, *hyper, seed, *buffers, 0,
                        error_cols, *kernels.cd_pointers(self.W.dtype))
                elif data.gathers:
                    total += self._gathered_chunk(data, chunk, order, params, hyper, seed,
                                                  buffers, error_cols)
                else:
                    total += kernels.cd_epoch(readonly(chunk), order, *params, *hyper, seed,
                                              *buffers, 0, error_cols,
                                              *kernels.cd_pointers(self.W.dtype))
        return total

    def _gathered_chunk(self, data, chunk, order, params, hyper, seed, buffers, error_cols):
        """The kernel over a chunk of :class:`~skdae._stream.GatheredRows`, a piece of its
        order at a time: each piece (a whole number of batches) is gathered and encoded,
        then trained on as batches ``first_batch, ...`` of the one epoch-long stream."""
        from ._kernels import _rbm as kernels

        batch = hyper[-1]
        piece = max(batch, _CHUNK_ROWS // batch * batch)
        in_order = np.arange(min(piece, len(order)), dtype=np.int64)
        error = 0.0
        for start in range(0, len(order), piece):
            rows = order[start : start + piece]
            encoded = data.gather(chunk, rows)
            # Read-only like every other chunk, so that cd_epoch compiles one signature.
            error = kernels.cd_epoch(readonly(encoded), in_order[: len(rows)], *params,
                                     *hyper, seed, *buffers, start // batch, error_cols,
                                     *kernels.cd_pointers(self.W.dtype))
        return error

    def _restore(self, snapshot):
        for current, saved in zip(self._state(), snapshot):
            current[...] = saved


def _warn_interrupted(label, n_epochs, rolled_back):
    when = ("the epoch in progress was rolled back" if rolled_back
            else "the epoch in progress was completed")
    warnings.warn(
        f"{label}: training interrupted by the user; {when}, keeping the weights after "
        f"{n_epochs} epochs.",
        UserWarning,
    )


def next_layer_data(data, layers, store):
    """Hidden means of ``data`` through the frozen Bernoulli ``layers`` (a list of
    ``(W, b_hid)``, applied in turn), written into the flat buffer ``store``.

    ``data`` may itself live in ``store``: rows are encoded in chunks through small
    scratch arrays and written back at ``row * n_out``. Row ``r`` of ``data`` starts at
    ``r * n_in``, so once rows ``< r1`` have been read, writing rows ``< r1`` of the
    result (ending at ``r1 * n_out``) can only overwrite rows already consumed as long
    as ``n_out <= n_in``; the caller never stores a wider layer over a narrower one.
    This saves the memory of a second activation array.
    """
    n, n_out = data.shape[0], layers[-1][0].shape[0]
    if n_out > data.shape[1] and data.base is not None and np.shares_memory(data, store):
        raise ValueError("a wider layer would overwrite rows of the narrower one not yet read")
    out = store[: n * n_out].reshape(n, n_out)
    rows = min(_CHUNK_ROWS, n)
    scratch = [np.empty((rows, W.shape[0]), store.dtype) for W, _ in layers]
    for r0 in range(0, n, _CHUNK_ROWS):
        r1 = min(n, r0 + _CHUNK_ROWS)
        out[r0:r1] = encode_through(data[r0:r1], layers, scratch)
    return readonly(out)


def next_layer_rows(data, W, b_hid, store, epochs):
    """The next RBM's training data: the hidden means of ``data`` under ``(W, b_hid)``.

    In memory, the rows are encoded once into ``store`` (:func:`next_layer_data`) when
    they fit in it (see :func:`pretrain_stack`) and can be written over the rows they are
    computed from; otherwise they are :class:`~skdae._stream.GatheredRows`, encoded from
    the last stored layer a piece of each epoch's order at a time. Both give the same
    rows in the same order, so the same model. Out of core, :data:`UPPER_LAYERS` decides:
    recompute them chunk by chunk at every one of the ``epochs``, or spill them once to a
    temporary memory-mapped file.
    """
    if data.gathers or (isinstance(data, ArrayRows) and not isinstance(data.Xs, np.memmap)):
        base, layers = (data.base, data.layers) if data.gathers else (data, [])
        if data.gathers:
            data.release()  # the last RBM's piece buffers, before this layer's are made
        layers = [*layers, (W, b_hid)]
        n_out = W.shape[0]
        fits = store is not None and base.n_samples * n_out <= store.size
        overwrites_unread = (fits and n_out > base.n_features and base.Xs.base is not None
                             and np.shares_memory(base.Xs, store))
        if not fits or overwrites_unread:
            return GatheredRows(base, layers)
        rows = ArrayRows(next_layer_data(base.Xs, layers, store), base.chunk_rows)
        rows.holdout = base.holdout
        return rows
    encoded = EncodedRows(data, W, b_hid)
    return spill(encoded, SPILL_DIR) if _spill_pays(encoded, epochs) else encoded


def _spill_pays(rows, epochs):
    if UPPER_LAYERS != "auto":
        return UPPER_LAYERS == "spill"
    if epochs < 2:
        return False
    import shutil
    import tempfile

    size = rows.n_samples * rows.n_features * rows.dtype.itemsize
    free = shutil.disk_usage(SPILL_DIR or tempfile.gettempdir()).free
    return free > 2 * size + (1 << 30)


def pretrain_stack(data, encoder, unit_types, trainer_settings, epochs, *, key, stop, n_jobs,
                   verbose):
    """Greedy layer-wise CD training of the RBMs ``encoder``, in place.

    Parameters
    ----------
    data : skdae._stream.Rows
        What the first layer's visible units see, as chunks of rows.
    encoder : list of (W, b_vis, b_hid)
        Initial parameters of each RBM, ``W`` of shape ``(n_hidden, n_visible)``; trained
        in place.
    unit_types : list of (str, str)
        ``(visible, hidden)`` unit types of each RBM.
    trainer_settings : callable
        ``trainer_settings(visible, hidden)`` gives the :class:`CDTrainer` keyword
        arguments (learning rate, momentum schedule, ...) of an RBM with those units.
    epochs : int
        Epochs per RBM.
    key : tuple of int
        Names the random streams; layer ``l`` epoch ``e`` draws from
        ``epoch_rng(*key, l, e)``.
    stop : object with a ``requested`` attribute
    n_jobs : int or None
    verbose : int

    Returns
    -------
    curves : list of list of float
        Per-sample reconstruction error of each epoch of each RBM.
    interrupted : bool
        True when Ctrl-C stopped pretraining: the layers above the interrupted one keep
        their initial weights.
    """
    n_layers = len(encoder)
    curves = [[] for _ in encoder]
    store = None
    if isinstance(data, ArrayRows) and not isinstance(data.Xs, np.memmap):
        # One buffer holds an upper layer's training data (the hidden means of the layers
        # below) for every intermediate layer in turn (see next_layer_data), but only
        # for layers no wider than the input: the buffer is never larger than the data,
        # so a fit holds at most one more data-sized array. A wider layer's rows are
        # gathered and encoded a piece at a time at every epoch (GatheredRows), which
        # costs a forward pass through the layers below the stored one per epoch; with
        # one epoch per RBM that is the pass storing would cost, so nothing is stored
        # (as UPPER_LAYERS="auto" decides out of core).
        stored = [W.shape[0] for W, _, _ in encoder[:-1] if W.shape[0] <= data.n_features]
        if stored and epochs >= 2:
            store = np.empty(data.n_samples * max(stored), data.dtype)
    for layer, ((W, b_vis, b_hid), (visible, hidden)) in enumerate(zip(encoder, unit_types)):
        trainer = CDTrainer(W, b_vis, b_hid, visible, hidden, persistent=False,
                            **trainer_settings(visible, hidden))
        label = f"RBM {layer + 1}/{n_layers} ({W.shape[1]}-{W.shape[0]}, {visible}-{hidden})"
        with thread_limits(n_jobs):
            interrupted = trainer.run(data, epochs, (*key, layer), stop=stop, verbose=verbose,
                                      label=label, curve=curves[layer])
            if interrupted:
                return curves, True
            if layer < n_layers - 1:
                data = next_layer_rows(data, W, b_hid, store, epochs)
    return curves, False
