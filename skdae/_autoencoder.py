"""Deep autoencoder pretrained as a stack of RBMs, then fine-tuned by backprop."""

import time
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._base import (
    check_codes,
    check_unit_range,
    epoch_seeds,
    input_scaling,
    partial_fit_rng,
    readonly,
    resolve_visible_units,
    standardize,
    thread_limits,
)
from ._rbm import CDTrainer

_ACT_SIGMOID = 0
_ACT_LINEAR = 1
_LOSS_KIND = {"cross_entropy": 0, "squared_error": 1}
_SOLVER_KIND = {"sgd": 0, "adam": 1}
# Rows per chunk in transform / inverse_transform: bounds the scratch memory of wide layers.
_CHUNK_ROWS = 4096


def _next_layer_data(kernels, data, W, b_hid, store):
    """Hidden means of ``data`` (Bernoulli units), written into the flat buffer ``store``.

    ``data`` may itself live in ``store``: rows are encoded in chunks through a small
    scratch array and written back at ``row * n_hidden``. Row ``r`` of ``data`` starts at
    ``r * n_visible``, so once rows ``< r1`` have been read, writing rows ``< r1`` of the
    result (ending at ``r1 * n_hidden``) can only overwrite rows already consumed as long
    as ``n_hidden <= n_visible`` — the next layer is never wider when ``data`` is in
    ``store``. This saves the memory of a second activation array (120 MB for the paper's
    second layer on 60,000 images).
    """
    n, n_hid = data.shape[0], W.shape[0]
    in_store = data.base is not None and np.shares_memory(data, store)
    if in_store and n_hid > data.shape[1]:
        store = np.empty(n * n_hid, store.dtype)  # would overwrite unread rows
    out = store[: n * n_hid].reshape(n, n_hid)
    scratch = np.empty((min(_CHUNK_ROWS, n), n_hid), store.dtype)
    for r0 in range(0, n, _CHUNK_ROWS):
        r1 = min(n, r0 + _CHUNK_ROWS)
        kernels.hidden_means(data[r0:r1], W, b_hid, 0, scratch[: r1 - r0])
        out[r0:r1] = scratch[: r1 - r0]
    return readonly(out)


class RBMStackAutoencoder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Deep autoencoder pretrained greedily as a stack of RBMs and fine-tuned by backprop.

    The encoder is a stack of sigmoid layers of sizes ``hidden_layer_sizes`` (the last is
    the code). Each layer is first trained as an RBM on the hidden activations of the one
    below (contrastive divergence); the stack is then unrolled into a decoder that starts
    from the transposed RBM weights and the RBMs' visible biases, and the whole
    autoencoder is fine-tuned on reconstruction loss (Hinton & Salakhutdinov, 2006).

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(1000, 500, 250, 30)
        Encoder layer sizes; the last is the code size. The decoder mirrors them.
    visible_units : {"auto", "bernoulli", "gaussian"}, default="auto"
        Input units. ``"bernoulli"`` models data in [0, 1] (sigmoid outputs);
        ``"gaussian"`` models real values (the estimator standardises each feature and
        undoes it on the way back; linear outputs). ``"auto"`` picks Bernoulli when the
        training data lie in [0, 1]; the choice is stored in ``visible_units_``.
    code_units : {"linear", "sigmoid"}, default="linear"
        Code layer units: ``"linear"`` (Gaussian hidden units in pretraining, as Hinton &
        Salakhutdinov) or ``"sigmoid"`` (as the other layers; codes in [0, 1]).
    pretrain : bool, default=True
        Pretrain the encoder as a stack of RBMs. ``False`` starts fine-tuning from random
        Glorot-uniform weights (as scikit-learn's MLP), the ablation both papers discuss.
    pretrain_epochs : int, default=10
        Contrastive-divergence epochs per RBM.
    cd_steps : int, default=1
        Gibbs steps in each RBM's negative phase.
    pretrain_learning_rate : float, default=0.1
        Learning rate of Bernoulli-Bernoulli RBMs.
    pretrain_learning_rate_linear : float, default=0.001
        Learning rate of RBMs with a Gaussian or linear side (the code RBM when
        ``code_units="linear"``, the first RBM for Gaussian visible units).
    pretrain_initial_momentum : float, default=0.5
    pretrain_momentum : float, default=0.9
        Pretraining momentum: ``pretrain_initial_momentum`` for the first 5 epochs of each
        RBM, then ``pretrain_momentum``.
    pretrain_weight_decay : float, default=2e-4
        L2 penalty on RBM weights.
    init_std : float, default=0.1
        RBM weights start as ``init_std * N(0, 1)``.
    solver : {"adam", "sgd"}, default="adam"
        Fine-tuning optimiser; ``"sgd"`` uses classical momentum.
    learning_rate : float, default=1e-3
        Fine-tuning step size.
    momentum : float, default=0.9
        Momentum of ``solver="sgd"``.
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's moment decay rates and denominator guard.
    alpha : float, default=0.0
        L2 penalty on the weights during fine-tuning.
    loss : {"auto", "cross_entropy", "squared_error"}, default="auto"
        Fine-tuning loss: ``"auto"`` is cross-entropy for Bernoulli visible units and
        squared error for Gaussian ones. Cross-entropy needs Bernoulli units.
    max_iter : int, default=50
        Fine-tuning epochs.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data, stop when its
        reconstruction error stops improving, and keep the best weights.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
        Epochs without an improvement of more than ``tol`` (of the training loss, or the
        validation error with ``early_stopping``) before training stops.
    tol : float, default=1e-4
    batch_size : int, default=100
        Examples per minibatch, for pretraining and fine-tuning.
    n_jobs : int, default=None
        Threads for the matrix products. ``None`` keeps the process's BLAS setting;
        ``-1`` means all cores. Results do not depend on it.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, shuffling, Gibbs sampling and the validation split.
    verbose : int, default=0
        Print progress: loss and time of every epoch of every phase.

    Attributes
    ----------
    coefs_ : list of ndarray
        Weights of the ``2 * len(hidden_layer_sizes)`` layers, ``coefs_[i]`` of shape
        ``(n_inputs, n_outputs)``: the encoder, then the decoder.
    intercepts_ : list of ndarray
        Biases of the same layers.
    visible_units_ : str
        Resolved visible unit type.
    loss_ : str
        Resolved fine-tuning loss.
    mean_, scale_ : ndarray of shape (n_features,)
        Standardisation of Gaussian visible units (zeros and ones for Bernoulli units).
    pretrain_curves_ : list of list of float
        Reconstruction error per epoch of each RBM (empty lists without pretraining).
    loss_curve_ : list of float
        Mean per-sample fine-tuning loss after each epoch.
    validation_scores_ : list of float or None
        Validation score (negative per-sample squared error) per epoch with
        ``early_stopping``.
    best_loss_ : float or None
    best_validation_score_ : float or None
    n_iter_ : int
        Fine-tuning epochs run.
    t_ : int
        Optimiser steps taken.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined only when ``X`` has string feature names.

    See Also
    --------
    RBM : one layer of the stack.
    sklearn.decomposition.PCA : the linear baseline at the same code size.

    References
    ----------
    G. E. Hinton and R. R. Salakhutdinov, "Reducing the Dimensionality of Data with Neural
    Networks", Science 313 (2006), 504-507.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skdae import RBMStackAutoencoder
    >>> X = load_digits().data / 16.0
    >>> ae = RBMStackAutoencoder((64, 16), pretrain_epochs=2, max_iter=5, random_state=0)
    >>> ae.fit(X).transform(X).shape
    (1797, 16)
    """

    _parameter_constraints = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "visible_units": [StrOptions({"auto", "bernoulli", "gaussian"})],
        "code_units": [StrOptions({"linear", "sigmoid"})],
        "pretrain": ["boolean"],
        "pretrain_epochs": [Interval(Integral, 1, None, closed="left")],
        "cd_steps": [Interval(Integral, 1, None, closed="left")],
        "pretrain_learning_rate": [Interval(Real, 0, None, closed="neither")],
        "pretrain_learning_rate_linear": [Interval(Real, 0, None, closed="neither")],
        "pretrain_initial_momentum": [Interval(Real, 0, 1, closed="left")],
        "pretrain_momentum": [Interval(Real, 0, 1, closed="left")],
        "pretrain_weight_decay": [Interval(Real, 0, None, closed="left")],
        "init_std": [Interval(Real, 0, None, closed="neither")],
        "solver": [StrOptions({"adam", "sgd"})],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "loss": [StrOptions({"auto", "cross_entropy", "squared_error"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_jobs": [None, Integral],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        hidden_layer_sizes=(1000, 500, 250, 30),
        *,
        visible_units="auto",
        code_units="linear",
        pretrain=True,
        pretrain_epochs=10,
        cd_steps=1,
        pretrain_learning_rate=0.1,
        pretrain_learning_rate_linear=0.001,
        pretrain_initial_momentum=0.5,
        pretrain_momentum=0.9,
        pretrain_weight_decay=2e-4,
        init_std=0.1,
        solver="adam",
        learning_rate=1e-3,
        momentum=0.9,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        alpha=0.0,
        loss="auto",
        max_iter=50,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        batch_size=100,
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.visible_units = visible_units
        self.code_units = code_units
        self.pretrain = pretrain
        self.pretrain_epochs = pretrain_epochs
        self.cd_steps = cd_steps
        self.pretrain_learning_rate = pretrain_learning_rate
        self.pretrain_learning_rate_linear = pretrain_learning_rate_linear
        self.pretrain_initial_momentum = pretrain_initial_momentum
        self.pretrain_momentum = pretrain_momentum
        self.pretrain_weight_decay = pretrain_weight_decay
        self.init_std = init_std
        self.solver = solver
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.alpha = alpha
        self.loss = loss
        self.max_iter = max_iter
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fitting

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Pretrain the RBM stack (unless ``pretrain=False``), then fine-tune.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; float32 data are trained in float32 end to end.
        y : None
            Ignored.

        Returns
        -------
        self : RBMStackAutoencoder
        """
        X = validate_data(self, X, dtype=[np.float64, np.float32], order="C")
        rng = check_random_state(self.random_state)
        Xs, X_val = self._initialize(X, rng)
        if not self._pretrain_interrupted:
            self._finetune(Xs, X_val, self.max_iter, rng)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """One fine-tuning epoch on ``X``; the first call also builds the network.

        The first call resolves the visible units and the standardisation from this
        ``X``, pretrains the RBM stack on it (``pretrain_epochs`` per layer, unless
        ``pretrain=False``), and runs one fine-tuning epoch. Each later call runs one
        fine-tuning epoch on the ``X`` it is given, continuing the optimiser's state.
        ``early_stopping`` does not apply.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        self : RBMStackAutoencoder
        """
        first_call = not hasattr(self, "coefs_")
        X = validate_data(self, X, dtype=[np.float64, np.float32], order="C", reset=first_call)
        if first_call:
            rng = check_random_state(self.random_state)
            Xs, _ = self._initialize(X, rng, validation=False)
            if self._pretrain_interrupted:
                return self
        else:
            X = X.astype(self.coefs_[0].dtype, copy=False)
            if self.visible_units_ == "bernoulli":
                check_unit_range(X, "X")
            Xs = standardize(X, self.mean_, self.scale_, self.visible_units_)
        self._finetune(Xs, None, 1, partial_fit_rng(self._partial_fit_seed, self.n_iter_))
        return self

    def _initialize(self, X, rng, validation=True):
        """Resolve units and scaling, split off validation data, build the network."""
        sizes = self._layer_sizes()
        self.visible_units_ = resolve_visible_units(X, self.visible_units)
        self.loss_ = self.loss
        if self.loss == "auto":
            self.loss_ = "cross_entropy" if self.visible_units_ == "bernoulli" else "squared_error"
        elif self.loss == "cross_entropy" and self.visible_units_ != "bernoulli":
            raise ValueError(
                "loss='cross_entropy' needs Bernoulli visible units (data in [0, 1]); the "
                f"training data resolved visible_units to {self.visible_units_!r}. Scale the "
                "data to [0, 1] or use loss='squared_error'."
            )
        self.mean_, self.scale_ = input_scaling(X, self.visible_units_)
        Xs = standardize(X, self.mean_, self.scale_, self.visible_units_)

        X_val = None
        if validation and self.early_stopping:
            n_val = int(round(self.validation_fraction * X.shape[0]))
            if n_val < 1 or n_val >= X.shape[0]:
                raise ValueError(
                    f"early_stopping with validation_fraction={self.validation_fraction} "
                    f"leaves {n_val} validation and {X.shape[0] - n_val} training samples "
                    f"out of {X.shape[0]}; both need at least one. Give more data or "
                    "change validation_fraction."
                )
            perm = rng.permutation(X.shape[0])
            X_val = readonly(X[perm[:n_val]])
            Xs = readonly(Xs[perm[n_val:]])

        # An int, not a RandomState, so fitted state stays plain data.
        self._partial_fit_seed = int(epoch_seeds(rng, 1)[0])
        self.pretrain_curves_ = [[] for _ in sizes[1:]]
        self._pretrain_interrupted = False
        if self.pretrain:
            encoder = self._pretrain_stack(Xs, sizes, rng)
        else:
            encoder = self._random_encoder(sizes, rng, X.dtype)
        self._set_network(encoder, X.dtype, rng, tied=self.pretrain)
        self.loss_curve_ = []
        # partial_fit has no validation set: it tracks the training loss even when
        # early_stopping is on.
        use_validation = X_val is not None
        self.validation_scores_ = [] if use_validation else None
        self.best_loss_ = None if use_validation else np.inf
        self.best_validation_score_ = -np.inf if use_validation else None
        self._no_improvement_count = 0
        self._optimizer_state_a = self._optimizer_state_b = self._optimizer_solver = None
        self.n_iter_ = 0
        self.t_ = 0
        return Xs, X_val

    def _layer_sizes(self):
        hidden = np.atleast_1d(np.asarray(self.hidden_layer_sizes))
        if hidden.ndim != 1 or hidden.size == 0 or not np.issubdtype(hidden.dtype, np.integer):
            raise ValueError(
                "hidden_layer_sizes must be a non-empty sequence of positive ints (the "
                f"encoder's layer sizes, the last being the code size); got "
                f"{self.hidden_layer_sizes!r}."
            )
        if (hidden < 1).any():
            raise ValueError(f"hidden_layer_sizes must be positive, got {self.hidden_layer_sizes!r}.")
        return [self.n_features_in_] + [int(h) for h in hidden]

    def _pretrain_stack(self, Xs, sizes, rng):
        """Greedy layer-wise RBM training; returns ``[(W, b_vis, b_hid), ...]``."""
        from ._kernels import _rbm as kernels

        dtype = Xs.dtype
        n_samples = Xs.shape[0]
        n_layers = len(sizes) - 1
        encoder = []
        data = Xs
        # One buffer holds the current layer's training data (the hidden means of the
        # layer below) for every intermediate layer in turn; see _next_layer_data.
        widest = max(sizes[1:-1], default=0)
        store = np.empty(n_samples * widest, dtype)
        for layer in range(n_layers):
            n_vis, n_hid = sizes[layer], sizes[layer + 1]
            visible = self.visible_units_ if layer == 0 else "bernoulli"
            hidden = "linear" if (layer == n_layers - 1 and self.code_units == "linear") else "bernoulli"
            linear_side = visible == "gaussian" or hidden == "linear"
            W = rng.normal(0.0, self.init_std, (n_hid, n_vis)).astype(dtype)
            b_vis = np.zeros(n_vis, dtype)
            b_hid = np.zeros(n_hid, dtype)
            if not self._pretrain_interrupted:
                trainer = CDTrainer(
                    W, b_vis, b_hid, visible, hidden, cd_steps=self.cd_steps, persistent=False,
                    learning_rate=(
                        self.pretrain_learning_rate_linear if linear_side else self.pretrain_learning_rate
                    ),
                    initial_momentum=self.pretrain_initial_momentum,
                    momentum=self.pretrain_momentum, momentum_switch_epoch=5,
                    weight_decay=self.pretrain_weight_decay, batch_size=self.batch_size,
                )
                label = f"RBM {layer + 1}/{n_layers} ({n_vis}-{n_hid}, {visible}-{hidden})"
                with thread_limits(self.n_jobs):
                    _, interrupted = trainer.run(
                        data, self.pretrain_epochs, rng, verbose=self.verbose, label=label,
                        curve=self.pretrain_curves_[layer],
                    )
                    if interrupted:
                        # The layers above keep their random initial weights, and
                        # fine-tuning is skipped: the user asked to stop.
                        self._pretrain_interrupted = True
                    elif layer < n_layers - 1:
                        data = _next_layer_data(kernels, data, W, b_hid, store)
            encoder.append((W, b_vis, b_hid))
        return encoder

    @staticmethod
    def _glorot(rng, n_in, n_out, dtype):
        """Glorot-uniform ``(n_in, n_out)`` weights for sigmoid units (x4, Glorot & Bengio),
        as scikit-learn's MLP initialises."""
        bound = 4.0 * np.sqrt(6.0 / (n_in + n_out))
        return rng.uniform(-bound, bound, (n_in, n_out)).astype(dtype)

    def _random_encoder(self, sizes, rng, dtype):
        """Random RBM-shaped ``(W, b_vis, b_hid)`` triples with zero biases."""
        return [
            (self._glorot(rng, n_in, n_out, dtype).T, np.zeros(n_in, dtype), np.zeros(n_out, dtype))
            for n_in, n_out in zip(sizes[:-1], sizes[1:])
        ]

    def _set_network(self, encoder, dtype, rng, tied):
        """Unroll ``encoder`` into ``coefs_`` and ``intercepts_`` of the full autoencoder.

        With ``tied``, the decoder starts from the transposed RBM weights and the RBMs'
        visible biases; otherwise it gets its own random weights.
        """
        coefs = [W.T.copy() for W, _, _ in encoder]
        intercepts = [b_hid.copy() for _, _, b_hid in encoder]
        for W, b_vis, _ in reversed(encoder):
            n_out, n_in = W.shape[1], W.shape[0]
            coefs.append(W.copy() if tied else self._glorot(rng, n_in, n_out, dtype))
            intercepts.append(b_vis.copy() if tied else np.zeros(n_out, dtype))
        self.coefs_ = coefs
        self.intercepts_ = intercepts

    def _activations(self):
        """Activation kind of each layer: sigmoid, except a linear code and Gaussian output."""
        n_enc = len(self.coefs_) // 2
        kinds = np.full(2 * n_enc, _ACT_SIGMOID, np.int64)
        if self.code_units == "linear":
            kinds[n_enc - 1] = _ACT_LINEAR
        if self.visible_units_ == "gaussian":
            kinds[-1] = _ACT_LINEAR
        return kinds

    def _check_network(self):
        """Refuse fitted state whose arrays do not chain up (e.g. an edited model file).

        The kernels index raw memory by these shapes, so a mismatch must never reach them.
        """
        coefs, intercepts = self.coefs_, self.intercepts_
        n_features = self.n_features_in_
        problem = None
        if len(coefs) != len(intercepts) or len(coefs) < 2 or len(coefs) % 2:
            problem = f"{len(coefs)} weight and {len(intercepts)} bias arrays"
        else:
            dtype = coefs[0].dtype
            prev = n_features
            for i, (W, c) in enumerate(zip(coefs, intercepts)):
                if (W.ndim != 2 or c.ndim != 1 or W.shape[0] != prev or c.shape[0] != W.shape[1]
                        or W.dtype != dtype or c.dtype != dtype):
                    problem = f"layer {i} has weights {W.shape} {W.dtype} and biases {c.shape} {c.dtype}"
                    break
                prev = W.shape[1]
            else:
                if prev != n_features:
                    problem = f"the decoder outputs {prev} features, not {n_features}"
                elif self.mean_.shape != (n_features,) or self.scale_.shape != (n_features,):
                    problem = f"mean_ {self.mean_.shape} and scale_ {self.scale_.shape}"
        if problem is not None:
            raise ValueError(
                f"{type(self).__name__} has inconsistent fitted state: {problem}. Refit the "
                "model or reload it from an intact model file."
            )

    def _pack(self):
        """Flat parameter vector and the layout arrays the backprop kernels take."""
        self._check_network()
        shapes = np.array([W.shape for W in self.coefs_], np.int64)
        sizes = shapes[:, 0] * shapes[:, 1] + shapes[:, 1]
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        w_off = starts
        b_off = starts + shapes[:, 0] * shapes[:, 1]
        params = np.empty(int(sizes.sum()), self.coefs_[0].dtype)
        for W, c, wo, bo in zip(self.coefs_, self.intercepts_, w_off, b_off):
            params[wo : wo + W.size] = W.ravel()
            params[bo : bo + c.size] = c
        return params, shapes, w_off, b_off

    def _unpack(self, params, shapes, w_off, b_off):
        self.coefs_ = [
            params[wo : wo + n_in * n_out].reshape(n_in, n_out).copy()
            for (n_in, n_out), wo in zip(shapes, w_off)
        ]
        self.intercepts_ = [params[bo : bo + n_out].copy() for (_, n_out), bo in zip(shapes, b_off)]

    def _finetune(self, Xs, X_val, epochs, rng):
        """Minibatch backprop on the unrolled network for up to ``epochs`` epochs."""
        from ._kernels import _backprop as kernels

        params, shapes, w_off, b_off = self._pack()
        dtype = params.dtype
        grads = np.zeros_like(params)
        n_state = params.size
        state_a = getattr(self, "_optimizer_state_a", None)
        state_b = getattr(self, "_optimizer_state_b", None)
        n_state_b = n_state if self.solver == "adam" else 0
        if (
            state_a is None
            or getattr(self, "_optimizer_solver", None) != self.solver
            or state_a.shape != (n_state,)
            or state_b.shape != (n_state_b,)
            or state_a.dtype != dtype
            or state_b.dtype != dtype
        ):
            # First call, or the solver was changed with set_params between partial_fit
            # calls: the old state means something else, start afresh.
            state_a = np.zeros(n_state, dtype)
            state_b = np.zeros(n_state_b, dtype)
        act_kind = self._activations()
        n_samples, n_features = Xs.shape
        batch = min(self.batch_size, n_samples)
        widths = shapes[:, 1]
        act_off = np.concatenate([[0], np.cumsum(batch * widths)[:-1]]).astype(np.int64)
        acts = np.empty(int(batch * widths.sum()), dtype)
        max_width = int(max(shapes.max(), n_features))
        delta_a = np.empty(batch * max_width, dtype)
        delta_b = np.empty(batch * max_width, dtype)
        Xb = np.empty((batch, n_features), dtype)
        loss_kind = _LOSS_KIND[self.loss_]
        solver = _SOLVER_KIND[self.solver]
        best_params = None

        for _ in range(epochs):
            order = rng.permutation(n_samples)
            tic = time.perf_counter()
            try:
                with thread_limits(self.n_jobs):
                    loss_sum, self.t_ = kernels.finetune_epoch(
                        Xs, order, params, grads, state_a, state_b, self.t_, solver,
                        self.learning_rate, self.momentum, self.beta_1, self.beta_2,
                        self.epsilon, self.alpha, batch, shapes, w_off, b_off, act_kind,
                        loss_kind, Xb, acts, act_off, delta_a, delta_b,
                    )
            except KeyboardInterrupt:
                warnings.warn(
                    f"{type(self).__name__}: fine-tuning interrupted by the user after "
                    f"{self.n_iter_} epochs; keeping the weights reached so far.",
                    UserWarning,
                )
                break
            loss = loss_sum / n_samples
            if not np.isfinite(loss) or not np.isfinite(params).all():
                raise ValueError(
                    f"{type(self).__name__} fine-tuning diverged at epoch {self.n_iter_ + 1}: "
                    f"the loss is {loss}. Lower learning_rate, or standardise the input."
                )
            self.n_iter_ += 1
            self.loss_curve_.append(float(loss))
            message = f"[fine-tune] epoch {self.n_iter_}, {self.loss_} {loss:.4f}"
            stop = False
            if X_val is not None:
                self._unpack(params, shapes, w_off, b_off)
                val_score = -float(np.mean(self._squared_errors(X_val)))
                self.validation_scores_.append(val_score)
                message += f", validation squared error {-val_score:.4f}"
                if val_score > self.best_validation_score_ + self.tol:
                    self._no_improvement_count = 0
                else:
                    self._no_improvement_count += 1
                if val_score > self.best_validation_score_:
                    self.best_validation_score_ = val_score
                    best_params = params.copy()
            else:
                if loss > self.best_loss_ - self.tol:
                    self._no_improvement_count += 1
                else:
                    self._no_improvement_count = 0
                self.best_loss_ = min(self.best_loss_, loss)
            if self._no_improvement_count >= self.n_iter_no_change:
                stop = True
            if self.verbose:
                print(f"{message}, {time.perf_counter() - tic:.2f} s", flush=True)
            if stop:
                break
        else:
            if epochs > 1:
                warnings.warn(
                    f"{type(self).__name__}: maximum iterations ({self.max_iter}) reached and "
                    "the optimisation hasn't converged yet.",
                    ConvergenceWarning,
                )
        if best_params is not None:
            params = best_params
        self._unpack(params, shapes, w_off, b_off)
        self._optimizer_state_a = state_a
        self._optimizer_state_b = state_b
        self._optimizer_solver = self.solver

    # --------------------------------------------------------------- inference

    def _run_layers(self, X, first, stop):
        from ._kernels import _backprop as kernels

        params, shapes, w_off, b_off = self._pack()
        n_out = shapes[stop - 1, 1]
        out = np.empty((X.shape[0], n_out), params.dtype)
        chunk = min(_CHUNK_ROWS, max(1, X.shape[0]))
        width = int(shapes[first:stop, 1].max())
        buf_a = np.empty(chunk * width, params.dtype)
        buf_b = np.empty(chunk * width, params.dtype)
        with thread_limits(self.n_jobs):
            kernels.forward_layers(
                readonly(X), params, shapes, w_off, b_off, self._activations(), first, stop,
                out, buf_a, buf_b, chunk,
            )
        return out

    def transform(self, X):
        """Encode ``X`` into codes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        codes : ndarray of shape (n_samples, hidden_layer_sizes[-1])
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], order="C", reset=False)
        return self._encode(X)

    def inverse_transform(self, X):
        """Decode codes into reconstructions in the input's units.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_codes)
            Codes, as returned by :meth:`transform`.

        Returns
        -------
        X_reconstructed : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        return self._decode(check_codes(X, self._n_features_out, self.coefs_[0].dtype, type(self).__name__))

    def score_samples(self, X):
        """Negative squared reconstruction error of each sample (summed over features).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            Higher is better; 0 is a perfect reconstruction.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], order="C", reset=False)
        return -self._squared_errors(X)

    def _squared_errors(self, X):
        """Per-sample squared reconstruction error of validated ``X`` (input units)."""
        diff = self._decode(self._encode(X)).astype(np.float64) - X
        return np.einsum("ij,ij->i", diff, diff)

    def _encode(self, X):
        """Codes of validated ``X``."""
        Xs = standardize(X.astype(self.coefs_[0].dtype, copy=False), self.mean_, self.scale_,
                         self.visible_units_)
        return self._run_layers(Xs, 0, len(self.coefs_) // 2)

    def _decode(self, codes):
        """Reconstructions, in input units, of validated codes of the parameters' dtype."""
        n_layers = len(self.coefs_)
        out = self._run_layers(codes, n_layers // 2, n_layers)
        if self.visible_units_ == "gaussian":
            out *= self.scale_
            out += self.mean_
        return out

    def score(self, X, y=None):
        """Negative mean per-sample squared reconstruction error (higher is better).

        Lets :class:`~sklearn.model_selection.GridSearchCV` choose models without labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        score : float
        """
        return float(np.mean(self.score_samples(X)))

    @property
    def _n_features_out(self):
        return self.coefs_[len(self.coefs_) // 2 - 1].shape[1]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
