"""How :class:`~skdae.RBMStackAutoencoder` sets its network up before training.

:class:`InitializationMixin` holds what ``fit`` and the first ``partial_fit`` call do
before the first training epoch: resolve the settings that depend on the data (the loss,
early stopping, the hidden layer sizes), refuse an ``augmentation`` the data cannot take,
hold out the validation rows, give each RBM of the stack its unit types and
contrastive-divergence settings, and build the network (:meth:`_initialize`: random or
pretrained encoder, the unrolled decoder, the linear path) with fresh training state.
:mod:`skdae._schedule` reads the RBM settings again for ``partial_fit``'s pretraining
steps. The training itself is in :mod:`skdae._pretraining` and :mod:`skdae._finetuning`.
"""

import numpy as np

from ._base import new_seed
from ._linear_path import principal_axes
from ._network import glorot, make_layout, unroll, unrolled_sizes
from ._pretraining import pretrain_stack
from ._schedule import reset_schedule
from ._stream import Holdout, SparseRows

# Stream name of pretraining epochs under the fit's seed (fine-tuning uses 1, the
# partial_fit schedule 2).
_PRETRAIN_STREAM = 0


class InitializationMixin:
    """The setup of :class:`~skdae.RBMStackAutoencoder` before training.

    The class using it has the autoencoder's parameters and defines
    ``_set_parameter_vector`` (the network's storage), ``_resolve_linear_path`` and
    ``_start_linear_path`` (:class:`~skdae._linear_path.LinearPathMixin`); the data's
    visible units are resolved (``visible_units_``) before :meth:`_initialize` runs.
    """

    def _initialize(self, data, rng, stop, validation, pretrain_now=True):
        """Resolve the loss, hold out validation rows, build and (with ``pretrain_now``)
        pretrain; the unrolled decoder starts from the RBMs' weights either way."""
        sizes = unrolled_sizes(data.n_features, self._hidden_sizes())
        dtype = data.dtype
        self.loss_ = self._resolve_loss()
        if validation:
            data.holdout = self._holdout(data.n_samples, rng)
        self._seed = new_seed(rng)
        self._layer_sizes = sizes
        self._code_units = self.code_units
        layout = make_layout(sizes)
        n_layers = len(sizes) // 2
        self.pretrain_curves_ = [[] for _ in range(n_layers)]
        self._pretrain_interrupted = False
        if self.pretrain:
            encoder = [
                (rng.normal(0.0, self.init_std, (n_hid, n_vis)).astype(dtype),
                 np.zeros(n_vis, dtype), np.zeros(n_hid, dtype))
                for n_vis, n_hid in zip(sizes[:n_layers], sizes[1 : n_layers + 1])
            ]
        if self.pretrain and pretrain_now:
            self.pretrain_curves_, self._pretrain_interrupted = pretrain_stack(
                data, encoder, self._rbm_unit_types(n_layers), self._cd_settings,
                self.pretrain_epochs, key=(self._seed, _PRETRAIN_STREAM), stop=stop,
                n_jobs=self.n_jobs, verbose=self.verbose,
            )
        if not self.pretrain:
            encoder = [
                (glorot(rng, n_in, n_out, dtype).T, np.zeros(n_in, dtype),
                 np.zeros(n_out, dtype))
                for n_in, n_out in zip(sizes[:n_layers], sizes[1 : n_layers + 1])
            ]
        self.linear_path_ = self._resolve_linear_path()
        self._set_parameter_vector(
            unroll(encoder, layout, rng, dtype, decoder_from_encoder=self.pretrain)
        )
        self.components_ = principal_axes(data, sizes[n_layers]) if self.linear_path_ else None
        self._start_linear_path()
        validating = data.holdout is not None
        self.loss_curve_ = []
        self.validation_scores_ = [] if validating else None
        self.best_loss_ = None if validating else np.inf
        self.best_validation_score_ = -np.inf if validating else None
        self._no_improvement_count = 0
        self._optimizer_solver = None
        self._optimizer_state = None
        self.n_iter_ = 0
        self.t_ = 0
        reset_schedule(self, pretraining=False)

    def _resolve_early_stopping(self, n_samples):
        if self.early_stopping != "auto":
            return bool(self.early_stopping)
        # "auto" holds rows out only where there is something to hold out.
        n_val = int(round(self.validation_fraction * n_samples))
        return self._resolve_linear_path() and 1 <= n_val < n_samples

    def _check_augmentation(self, data):
        """Refuse ``augmentation`` on data it cannot deform, before any training."""
        if self.augmentation is None:
            return
        if isinstance(data, SparseRows):
            raise ValueError(
                "augmentation deforms dense images; the training data are sparse. Pass a "
                "dense array, or augmentation=None."
            )
        self.augmentation.resolve_shape(data.n_features)

    def _resolve_loss(self):
        if self.loss == "auto":
            return "cross_entropy" if self.visible_units_ == "bernoulli" else "squared_error"
        if self.loss == "cross_entropy" and self.visible_units_ != "bernoulli":
            raise ValueError(
                "loss='cross_entropy' needs Bernoulli visible units (data in [0, 1]); the "
                f"training data resolved visible_units to {self.visible_units_!r}. Scale the "
                "data to [0, 1] or use loss='squared_error'."
            )
        return self.loss

    def _holdout(self, n_samples, rng):
        """The early-stopping validation rows: ``validation_fraction`` of the rows, spread
        over every chunk (see :class:`skdae._stream.Holdout`)."""
        n_val = int(round(self.validation_fraction * n_samples))
        if n_val < 1 or n_val >= n_samples:
            raise ValueError(
                f"early_stopping with validation_fraction={self.validation_fraction} "
                f"leaves {n_val} validation and {n_samples - n_val} training samples "
                f"out of {n_samples}; both need at least one. Give more data or "
                "change validation_fraction."
            )
        return Holdout(n_samples, n_val, rng)

    def _hidden_sizes(self):
        hidden = np.atleast_1d(np.asarray(self.hidden_layer_sizes))
        if hidden.ndim != 1 or hidden.size == 0 or not np.issubdtype(hidden.dtype, np.integer):
            raise ValueError(
                "hidden_layer_sizes must be a non-empty sequence of positive ints (the "
                f"encoder's layer sizes, the last being the code size); got "
                f"{self.hidden_layer_sizes!r}."
            )
        if (hidden < 1).any():
            raise ValueError(f"hidden_layer_sizes must be positive, got {self.hidden_layer_sizes!r}.")
        return [int(h) for h in hidden]

    def _rbm_unit_types(self, n_layers):
        """``(visible, hidden)`` unit types of each RBM of the stack."""
        return [
            (self.visible_units_ if layer == 0 else "bernoulli",
             "linear" if layer == n_layers - 1 and self.code_units == "linear" else "bernoulli")
            for layer in range(n_layers)
        ]

    def _cd_settings(self, visible, hidden):
        """CDTrainer settings of a pretraining RBM with these unit types."""
        linear_side = visible == "gaussian" or hidden == "linear"
        return dict(
            cd_steps=self.cd_steps,
            learning_rate=(self.pretrain_learning_rate_linear if linear_side
                           else self.pretrain_learning_rate),
            initial_momentum=self.pretrain_initial_momentum,
            momentum=self.pretrain_momentum,
            momentum_switch_epoch=self.pretrain_momentum_switch_epoch,
            weight_decay=self.pretrain_weight_decay,
            batch_size=self.batch_size,
        )
