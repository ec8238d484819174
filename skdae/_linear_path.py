"""The linear path of :class:`~skdae.RBMStackAutoencoder` (``linear_path``): a PCA inside
the network.

With the path, the code is the PCA projection of the input plus the encoder's output and
the reconstruction is PCA's reconstruction of the code plus the decoder's output. The
layers that feed the code and the output start at zero, so the network starts exactly as
PCA and fine-tuning learns what PCA misses. The principal axes are computed once, from
the training rows, and are not trained.
"""

import numpy as np

from ._network import CHUNK_ROWS, glorot

# Stream of the decoder's initial weights with the linear path, under the fit's seed
# (pretraining uses 0, fine-tuning 1, the partial_fit schedule 2).
_LINEAR_PATH_STREAM = 3


def principal_axes(data, n_components):
    """The first ``n_components`` principal axes of the training rows of ``data``
    (:class:`skdae._stream.Rows`, in visible units), as rows of a ``(n_components,
    n_features)`` array of ``data.dtype``.

    The rows are standardised (mean zero), so the axes are the eigenvectors of their Gram
    matrix, accumulated in float64 one piece of a chunk at a time (never a dense copy of
    the data). Signs follow scikit-learn's ``svd_flip``: the largest entry of each axis
    is positive. Axes beyond the data's rank are rows of zeros.
    """
    from ._stream import dense_pieces

    n_features = data.n_features
    gram = np.zeros((n_features, n_features))
    for i in range(data.n_chunks):
        train = data.train_rows(i)
        for r0, r1, piece in dense_pieces(data.load(i), CHUNK_ROWS):
            if train is not None:
                piece = piece[train[(train >= r0) & (train < r1)] - r0]
            piece = piece.astype(np.float64)
            gram += piece.T @ piece
    eigenvalues, eigenvectors = np.linalg.eigh(gram)
    order = np.argsort(eigenvalues)[::-1][: min(n_components, n_features)]
    kept = eigenvalues[order]
    # Directions of (numerically) zero variance would be arbitrary: leave them out.
    kept_rank = int((kept > max(kept[0], 0.0) * n_features * np.finfo(np.float64).eps).sum())
    axes = np.zeros((n_components, n_features))
    axes[:kept_rank] = eigenvectors[:, order[:kept_rank]].T
    largest = np.argmax(np.abs(axes), axis=1)
    axes *= np.where(axes[np.arange(n_components), largest] < 0, -1.0, 1.0)[:, None]
    return np.ascontiguousarray(axes, data.dtype)


class LinearPathMixin:
    """The estimator's side of the linear path: when it is on, how the network starts,
    and what the kernels receive."""

    def _shared_scale(self):
        return self._resolve_linear_path()

    def _resolve_linear_path(self):
        linear_units = self.visible_units_ == "gaussian" and self.code_units == "linear"
        if self.linear_path == "auto":
            return linear_units
        if self.linear_path and not linear_units:
            raise ValueError(
                "linear_path=True needs Gaussian visible units and code_units='linear' (a "
                "PCA path adds to linear codes and outputs); the training data resolved "
                f"visible_units to {self.visible_units_!r} and code_units is "
                f"{self.code_units!r}. Use visible_units='gaussian' and code_units='linear', "
                "or linear_path='auto'."
            )
        return bool(self.linear_path)

    def _start_linear_path(self):
        """With the linear path, start the network at PCA once the stack is built (after
        pretraining, or after the scheduled pretraining's last pass): the layers that
        feed the code and the output start at zero, so the network is exactly PCA until
        fine-tuning moves it; the other decoder layers start from Glorot-uniform weights
        and zero biases rather than the transposed RBMs, which would read the RBM's code,
        not PCA's (and in experiments left the decoder stuck at PCA)."""
        if not self.linear_path_:
            return
        n_layers = len(self._layer_sizes) // 2
        rng = np.random.RandomState(
            np.random.SeedSequence((self._seed, _LINEAR_PATH_STREAM)).generate_state(4))
        for layer in range(n_layers, 2 * n_layers - 1):
            n_in, n_out = self.coefs_[layer].shape
            self.coefs_[layer][...] = glorot(rng, n_in, n_out, self._dtype)
            self.intercepts_[layer][...] = 0
        for layer in (n_layers - 1, 2 * n_layers - 1):
            self.coefs_[layer][...] = 0
            self.intercepts_[layer][...] = 0

    def _linear_path_kernel_argument(self):
        """``components_``, or None: the kernels' ``lin`` (with None they are compiled
        without the linear path's code)."""
        if self.linear_path_:
            return self.components_
        return None
