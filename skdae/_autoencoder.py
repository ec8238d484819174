"""Deep autoencoder pretrained as a stack of RBMs, then fine-tuned by backprop.

The estimator holds its parameters and public methods (fitting, inference, scoring),
the storage and pickling of its fitted state and the start of fine-tuning; the work is
elsewhere: :mod:`skdae._initialization` (the setup before training: resolved settings,
the validation rows, the network's initial weights), :mod:`skdae._network` (the flat
parameter vector and its views), :mod:`skdae._linear_path` (the PCA path inside the
network), :mod:`skdae._pretraining` (greedy CD training of the stack),
:mod:`skdae._finetuning` (the backprop loop), :mod:`skdae._schedule` (``partial_fit``'s
schedule), :mod:`skdae._optimizers` and the Numba kernels in :mod:`skdae._kernels`.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._base import VisibleUnitsMixin, stop_on_ctrl_c
from ._finetuning import FineTuner
from ._initialization import InitializationMixin
from ._linear_path import LinearPathMixin
from ._network import activation_kinds, check_fitted_state, forward, layer_views, make_layout
from ._schedule import reset_schedule, schedule_step
from .augment import RandomDeformation


class RBMStackAutoencoder(
    InitializationMixin, LinearPathMixin, VisibleUnitsMixin, ClassNamePrefixFeaturesOutMixin,
    TransformerMixin, BaseEstimator,
):
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
    linear_path : {"auto"} or bool, default="auto"
        A fixed linear path around the non-linear layers, so that the network starts as
        PCA and learns what PCA misses: the code is the projection of the input on its
        first ``hidden_layer_sizes[-1]`` principal components plus the encoder's output,
        and the reconstruction is the PCA reconstruction of the code plus the decoder's
        output. The layers that feed the code and the output start at zero, so before
        fine-tuning the model *is* :class:`~sklearn.decomposition.PCA` (its codes
        divided by the common ``scale_``), and fine-tuning trains the non-linear layers
        on what PCA leaves; the components are not trained. With it, the Gaussian units
        share one scale (``scale_`` is the root mean variance of the features, for every
        feature), so the training loss is the squared error in the input's units, as
        PCA's and :meth:`score`'s; put a :class:`~sklearn.preprocessing.StandardScaler`
        in front for features in unrelated units, as for PCA. With ``early_stopping``
        (on by default with the linear path), the start competes with every epoch on
        the held-out rows, so the model kept is not worse than PCA there, and an epoch
        replaces it only if it lowers the start's squared error there by at least 25 %
        (about 1.25 dB of PSNR): held-out rows come from the training set and share
        what is peculiar to it (on overlapping patches of one photograph the layers
        gained up to 1.1 dB on them while losing to PCA on another region of the same
        photograph), while real non-linear structure clears the bar by far. ``"auto"``
        uses the path for Gaussian visible units with a linear code (real-valued data),
        never for Bernoulli units; ``True`` needs Gaussian visible units and
        ``code_units="linear"``; ``False`` gives the network without it (each feature
        standardised on its own), as models trained before the linear path existed.
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
        Pretraining momentum for the first ``pretrain_momentum_switch_epoch`` epochs of
        each RBM.
    pretrain_momentum : float, default=0.9
        Pretraining momentum after that.
    pretrain_momentum_switch_epoch : int, default=5
        Epoch of each RBM at which the momentum switches (Hinton & Salakhutdinov: 5).
    pretrain_weight_decay : float, default=2e-4
        L2 penalty on RBM weights.
    init_std : float, default=0.1
        RBM weights start as ``init_std * N(0, 1)``.
    solver : {"adam", "sgd"}, default="adam"
        Fine-tuning optimiser; ``"sgd"`` uses classical momentum.
    learning_rate : float, default=1e-3
        Fine-tuning step size (the first epoch's, under a decaying
        ``learning_rate_schedule``).
    learning_rate_schedule : {"constant", "invscaling", "cosine"}, default="constant"
        How the step size changes from one fine-tuning epoch to the next, for either
        ``solver`` (Adam's steps are scaled by it): ``"constant"`` keeps
        ``learning_rate`` (Hinton & Salakhutdinov's fixed rate); ``"invscaling"`` gives
        epoch ``k`` (from 0) ``learning_rate / (k + 1) ** power_t``; ``"cosine"`` decays
        it as ``learning_rate * (1 + cos(pi * k / max_iter)) / 2``, to about
        ``learning_rate * (pi / max_iter) ** 2 / 4`` at the last epoch (``partial_fit``
        beyond ``max_iter`` keeps that rate). The rate depends on the epoch count
        ``n_iter_`` only, so ``partial_fit`` and a saved model continue the schedule.
        The names follow scikit-learn's ``MLPRegressor(learning_rate=...)``, whose
        ``invscaling`` counts samples rather than epochs.
    power_t : float, default=0.5
        Exponent of ``learning_rate_schedule="invscaling"``.
    momentum : float, default=0.9
        Momentum of ``solver="sgd"``.
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's moment decay rates and denominator guard.
    alpha : float, default=0.0
        L2 penalty on the weights during fine-tuning: ``alpha / 2 * ||W||^2`` is added to
        the *mean* per-sample loss of each batch, so the gradient gains ``alpha * W``.
        scikit-learn's ``MLPRegressor.alpha`` of the same name divides the penalty by
        the batch size instead: ``alpha`` here equals ``batch_size`` times an MLP alpha.
    loss : {"auto", "cross_entropy", "squared_error"}, default="auto"
        Fine-tuning loss: ``"auto"`` is cross-entropy for Bernoulli visible units and
        squared error for Gaussian ones. Cross-entropy needs Bernoulli units.
    max_iter : int, default=50
        Fine-tuning epochs (and the horizon of ``learning_rate_schedule="cosine"``).
    augmentation : skdae.augment.RandomDeformation or None, default=None
        Deform every training image afresh in each fine-tuning epoch (random small
        shifts, rotations, elastic distortions), so that the network generalises to
        images it has not seen; pretraining, validation and inference see the images as
        given. The rows must be images (see :class:`~skdae.augment.RandomDeformation`);
        dense input only. None: no augmentation (Hinton & Salakhutdinov's recipe). The
        best recipe measured on MNIST is ``RandomDeformation(axis_only=True)`` with
        ``learning_rate_schedule="cosine"`` and five times the RBM epochs (README,
        Results).
    early_stopping : {"auto"} or bool, default="auto"
        Hold out ``validation_fraction`` of the training data, stop when its
        reconstruction error stops improving, and keep the best weights. ``"auto"``
        does so when the network has the linear path (``linear_path``) and the data
        leave at least one row on each side, so that a model that starts as PCA ends
        no worse than PCA on held-out rows (and leaves PCA only for a clear gain, see
        ``linear_path``); without the linear path (for example
        Bernoulli units), ``"auto"`` is False, as before.
    validation_fraction : float, default=0.1
        Fraction of the training data held out for ``early_stopping``.
    n_iter_no_change : int, default=10
        Epochs without an improvement of more than ``tol`` (of the training loss, or the
        validation error with ``early_stopping``) before training stops.
    tol : float, default=1e-4
        Smallest improvement of the loss (or validation score) that counts.
    batch_size : int, default=100
        Examples per minibatch, for pretraining and fine-tuning.
    samples_per_pass : int or None, default=None
        Length of a pass over the data in :meth:`partial_fit`'s schedule (usually the
        number of training samples): with it, successive ``partial_fit`` calls pretrain
        each RBM for ``pretrain_epochs`` passes and then fine-tune, as ``fit`` does.
        ``None``: the first ``partial_fit`` call pretrains on its own chunk. See
        :meth:`partial_fit`. ``fit`` ignores it.
    chunk_size : int or None, default=None
        Rows read at a time. Every phase of a fit (the statistics pass, each RBM, fine-
        tuning, validation) streams its data in chunks of this many rows, shuffling the
        order of the chunks and the rows within each chunk every epoch; inference on
        out-of-core input also goes chunk by chunk. ``None``: an in-memory array (NumPy
        or SciPy sparse) is one chunk, so every epoch is a full shuffle, and an
        out-of-core array (``np.memmap``, Zarr, h5py, Dask, ...) is read in chunks of
        64 MiB of float rows, rounded down to whole chunks of a chunked store (Zarr,
        h5py, Dask) or else to whole minibatches (21,400 MNIST images). Best a
        multiple of ``batch_size`` (a chunk's last minibatch is smaller otherwise).
        Memory grows with the chunk, never with the data.
    n_jobs : int, default=None
        Numba threads that run the kernels' blocks in parallel (BLAS itself is pinned to
        one thread inside them). ``None`` and ``-1`` use every thread Numba may use (all
        cores, ``NUMBA_NUM_THREADS``, or joblib's share in a worker process); larger
        values are capped there. Results are bitwise the same for any value.
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
    linear_path_ : bool
        Whether the network has the linear path (``linear_path`` resolved).
    components_ : ndarray of shape (hidden_layer_sizes[-1], n_features) or None
        The linear path's principal axes (orthonormal rows, sorted by explained
        variance; rows of zeros beyond the data's rank), as
        :class:`~sklearn.decomposition.PCA`'s ``components_``. None without the linear
        path.
    loss_ : str
        Resolved fine-tuning loss.
    mean_, scale_ : ndarray of shape (n_features,)
        Standardisation of Gaussian visible units (zeros and ones for Bernoulli units);
        with the linear path, ``scale_`` is one value for every feature.
    pretrain_curves_ : list of list of float
        Reconstruction error per epoch of each RBM (empty lists without pretraining).
    loss_curve_ : list of float
        Mean per-sample fine-tuning loss after each epoch.
    validation_scores_ : list of float or None
        Validation score (negative per-sample squared error) per epoch with
        ``early_stopping``.
    best_loss_ : float or None
        Lowest training loss, tracked without ``early_stopping`` (None with it, until a
        ``partial_fit`` call, which has no validation data, starts tracking it).
    best_validation_score_ : float or None
        Best validation score with ``early_stopping`` (its weights are the ones kept).
        With the linear path the starting point (PCA) is scored too, before the first
        epoch, and competes with them (it is not in ``validation_scores_``); an epoch
        replaces it only with an error 25 % lower (see ``linear_path``).
    n_iter_ : int
        Fine-tuning epochs run.
    t_ : int
        Optimiser steps taken.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Defined only when ``X`` has string feature names.

    See Also
    --------
    RBM : One layer of the stack.
    sklearn.decomposition.PCA : The linear baseline at the same code size.

    Notes
    -----
    **Interrupting.** A Ctrl-C during ``fit`` or ``partial_fit`` lets the epoch in
    progress finish (a kernel cannot stop halfway), counts it, and ends training with a
    warning: ``n_iter_``, ``t_`` and the curves then describe exactly the weights kept. A
    second Ctrl-C, or a ``KeyboardInterrupt`` raised another way, rolls the epoch in
    progress back instead. Interrupted pretraining skips fine-tuning; the layers above
    the interrupted RBM keep their random initial weights.

    **Randomness.** Each epoch draws from its own stream, derived from ``random_state``
    and the epoch's position: ``fit`` with ``max_iter=k`` gives exactly the first ``k``
    epochs of a longer fit, and ``partial_fit`` after ``fit`` continues where ``fit``
    stopped.

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
        "linear_path": ["boolean", StrOptions({"auto"})],
        "pretrain": ["boolean"],
        "pretrain_epochs": [Interval(Integral, 1, None, closed="left")],
        "cd_steps": [Interval(Integral, 1, None, closed="left")],
        "pretrain_learning_rate": [Interval(Real, 0, None, closed="neither")],
        "pretrain_learning_rate_linear": [Interval(Real, 0, None, closed="neither")],
        "pretrain_initial_momentum": [Interval(Real, 0, 1, closed="left")],
        "pretrain_momentum": [Interval(Real, 0, 1, closed="left")],
        "pretrain_momentum_switch_epoch": [Interval(Integral, 0, None, closed="left")],
        "pretrain_weight_decay": [Interval(Real, 0, None, closed="left")],
        "init_std": [Interval(Real, 0, None, closed="neither")],
        "solver": [StrOptions({"adam", "sgd"})],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "learning_rate_schedule": [StrOptions({"constant", "invscaling", "cosine"})],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "loss": [StrOptions({"auto", "cross_entropy", "squared_error"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "augmentation": [None, RandomDeformation],
        "early_stopping": ["boolean", StrOptions({"auto"})],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "samples_per_pass": [None, Interval(Integral, 1, None, closed="left")],
        "chunk_size": [None, Interval(Integral, 1, None, closed="left")],
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
        linear_path="auto",
        pretrain=True,
        pretrain_epochs=10,
        cd_steps=1,
        pretrain_learning_rate=0.1,
        pretrain_learning_rate_linear=0.001,
        pretrain_initial_momentum=0.5,
        pretrain_momentum=0.9,
        pretrain_momentum_switch_epoch=5,
        pretrain_weight_decay=2e-4,
        init_std=0.1,
        solver="adam",
        learning_rate=1e-3,
        learning_rate_schedule="constant",
        power_t=0.5,
        momentum=0.9,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        alpha=0.0,
        loss="auto",
        max_iter=50,
        augmentation=None,
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        batch_size=100,
        samples_per_pass=None,
        chunk_size=None,
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.visible_units = visible_units
        self.code_units = code_units
        self.linear_path = linear_path
        self.pretrain = pretrain
        self.pretrain_epochs = pretrain_epochs
        self.cd_steps = cd_steps
        self.pretrain_learning_rate = pretrain_learning_rate
        self.pretrain_learning_rate_linear = pretrain_learning_rate_linear
        self.pretrain_initial_momentum = pretrain_initial_momentum
        self.pretrain_momentum = pretrain_momentum
        self.pretrain_momentum_switch_epoch = pretrain_momentum_switch_epoch
        self.pretrain_weight_decay = pretrain_weight_decay
        self.init_std = init_std
        self.solver = solver
        self.learning_rate = learning_rate
        self.learning_rate_schedule = learning_rate_schedule
        self.power_t = power_t
        self.momentum = momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.alpha = alpha
        self.loss = loss
        self.max_iter = max_iter
        self.augmentation = augmentation
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.batch_size = batch_size
        self.samples_per_pass = samples_per_pass
        self.chunk_size = chunk_size
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # Parameters added after model-file format 1, with the value that reproduces what
    # format-1 models did: at that value they stay out of the fingerprint, so archives
    # written before still decode (see skdae._persist.fingerprint).
    _params_added_after_v1 = {"pretrain_momentum_switch_epoch": 5, "chunk_size": None,
                              "samples_per_pass": None, "learning_rate_schedule": "constant",
                              "power_t": 0.5, "augmentation": None, "linear_path": False}
    # Fitted attributes added since, likewise, at the value that reproduces older models.
    _attributes_added_after_v1 = {"linear_path_": False, "components_": None}

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
            The fitted estimator.
        """
        data = self._training_rows(X, reset=True)
        self._check_augmentation(data)
        rng = check_random_state(self.random_state)
        with stop_on_ctrl_c() as stop:
            self._initialize(data, rng, stop,
                             validation=self._resolve_early_stopping(data.n_samples))
            if not self._pretrain_interrupted:
                self._fine_tune(data, self.max_iter, stop, warn_max_iter=True)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """One step of training on the chunk ``X``; the first call also builds the network.

        What a step is depends on ``samples_per_pass``:

        - ``samples_per_pass=None`` (default): the first call resolves the units and
          pretrains the whole RBM stack on this first chunk (``pretrain_epochs`` per
          layer), then every call, the first included, runs one fine-tuning epoch on its
          chunk.
        - ``samples_per_pass=n``: the calls walk ``fit``'s schedule, ``n`` samples making
          a pass: RBM 1 trains ``pretrain_epochs`` passes, then RBM 2 (fed through the
          frozen RBM 1), ..., then fine-tuning, as long as calls come. Each call trains
          the current phase once on its chunk (rows shuffled). Streaming the data through
          ``n_layers * pretrain_epochs + max_iter`` times (for example with
          ``dask_ml.wrappers.Incremental``: ``fit`` once, then ``partial_fit``) trains
          the model ``fit`` trains, with the data shuffled by chunk.

        Departures from scikit-learn's ``partial_fit`` conventions, and why: a call is
        one step of a schedule, not one optimisation step, because a stack must be
        pretrained before it is fine-tuned and a caller such as Dask's ``Incremental``
        cannot say where a pass over the data ends; hence the schedule's length as the
        named parameter ``samples_per_pass``. The visible units and the Gaussian
        standardisation come from the first chunk (make it representative). ``max_iter``
        does not stop ``partial_fit``, and neither do ``early_stopping`` and
        ``n_iter_no_change`` (there is no validation data; the training loss is tracked
        in ``best_loss_``). ``n_iter_`` and ``loss_curve_`` count fine-tuning passes
        (epochs without a schedule), ``pretrain_curves_`` pretraining passes. As
        scikit-learn's, every call returns ``self``, needs the fitted feature count and
        continues the optimiser's state and the random streams of ``fit``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data (in memory, sparse or out of core).
        y : None
            Ignored.

        Returns
        -------
        self : RBMStackAutoencoder
            The updated estimator.
        """
        first_call = not hasattr(self, "n_iter_")
        data = self._training_rows(X, reset=first_call)
        self._check_augmentation(data)
        scheduled = self.samples_per_pass is not None
        with stop_on_ctrl_c() as stop:
            if first_call:
                rng = check_random_state(self.random_state)
                self._initialize(data, rng, stop, validation=False, pretrain_now=not scheduled)
                if self._pretrain_interrupted:
                    return self
                reset_schedule(self, pretraining=scheduled and self.pretrain)
            if scheduled:
                self._check_fitted_state(check_values=False)
                schedule_step(self, data, stop)
            else:
                self._fine_tune(data, 1, stop, warn_max_iter=False)
        return self

    def _deformed(self, chunk, key):
        """A chunk of training rows (visible units) deformed by ``augmentation``, drawing
        from the random stream named by ``key``."""
        rng = np.random.default_rng(np.random.SeedSequence(key))
        if self.visible_units_ != "gaussian":
            return self.augmentation.deform(chunk, rng)
        # Deform in input units, where the background is 0, then standardise again.
        raw = chunk * self.scale_ + self.mean_
        return ((self.augmentation.deform(raw, rng) - self.mean_) / self.scale_).astype(
            chunk.dtype, copy=False)

    def _fine_tune(self, data, epochs, stop, *, warn_max_iter):
        self._fine_tuner(data).run(data, epochs, stop, warn_max_iter=warn_max_iter)

    def _fine_tuner(self, data):
        """A :class:`~skdae._finetuning.FineTuner` of this model on ``data``, its
        parameters and optimiser state made writable."""
        layout = self._check_fitted_state(check_values=False)
        if not self._params.flags.writeable:
            # Read-only after loading from a memory map: train on a copy.
            self._set_parameter_vector(self._params.copy())
        if self._optimizer_state is not None:
            self._optimizer_state = {k: np.require(v, requirements="W")
                                     for k, v in self._optimizer_state.items()}
        return FineTuner(self, layout, self._activations(), data.n_train(), data.n_features)

    # ------------------------------------------------------------- fitted state

    def _set_parameter_vector(self, params):
        """Make ``params`` the storage and ``coefs_`` / ``intercepts_`` its views."""
        self._params = params
        self.coefs_, self.intercepts_ = layer_views(params, make_layout(self._layer_sizes))

    @property
    def _dtype(self):
        return self._params.dtype

    def _activations(self):
        return activation_kinds(len(self._layer_sizes) - 1, self._code_units, self.visible_units_)

    def _check_fitted_state(self, check_values=True):
        """Validate the whole fitted state, rebuild the views; return the layout.

        See :func:`skdae._network.check_fitted_state`.
        """
        return check_fitted_state(self, check_values)

    def __getstate__(self):
        # A copy: object.__getstate__ may return the instance dict itself.
        state = dict(super().__getstate__())
        # The views are rebuilt from the parameter vector on unpickling.
        if isinstance(state.get("_params"), np.ndarray):
            state.pop("coefs_", None)
            state.pop("intercepts_", None)
        return state

    def __setstate__(self, state):
        from ._persist_migrate import migrate_state

        super().__setstate__(migrate_state(type(self), state))
        if "_params" in self.__dict__:
            self._check_fitted_state(check_values=False)

    # --------------------------------------------------------------- inference

    def transform(self, X, *, out=None):
        """Encode ``X`` into codes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples to encode: a NumPy array, a SciPy sparse matrix, or an out-of-core
            array (``np.memmap``, Zarr, h5py, Dask, ...), which is read ``chunk_size``
            rows at a time. For a lazy Dask result, wrap the estimator in
            ``dask_ml.wrappers.ParallelPostFit``.
        out : array of shape (n_samples, n_codes), default=None
            Where to write the codes (a NumPy array, a memmap, a Zarr array: anything
            with row assignment); a new NumPy array when None.

        Returns
        -------
        codes : ndarray of shape (n_samples, hidden_layer_sizes[-1])
            The code layer's activations (``out`` when given).
        """
        check_is_fitted(self)
        layout = self._check_fitted_state(check_values=False)
        return self._map_rows(X, lambda rows: self._encode(rows, layout),
                              (self._n_features_out,), out)

    def inverse_transform(self, X, *, out=None):
        """Decode codes into reconstructions in the input's units.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_codes)
            Codes, as returned by :meth:`transform` (in memory or out of core).
        out : array of shape (n_samples, n_features), default=None
            Where to write the reconstructions; a new NumPy array when None.

        Returns
        -------
        X_reconstructed : ndarray of shape (n_samples, n_features)
            Reconstructions (``out`` when given).
        """
        check_is_fitted(self)
        layout = self._check_fitted_state(check_values=False)
        return self._map_rows(X, lambda codes: self._decode(codes, layout),
                              (self.n_features_in_,), out, codes=True)

    def score_samples(self, X, *, out=None):
        """Negative squared reconstruction error of each sample (summed over features).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples to score (in memory or out of core, as for :meth:`transform`).
        out : array of shape (n_samples,), default=None
            Where to write the scores; a new NumPy array when None.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            Higher is better; 0 is a perfect reconstruction.
        """
        check_is_fitted(self)
        return self._map_rows(X, lambda rows: -self._squared_errors(rows), (), out,
                              dtype=np.float64)

    def score(self, X, y=None):
        """Negative mean per-sample squared reconstruction error (higher is better).

        Lets :class:`~sklearn.model_selection.GridSearchCV` choose models without labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples to score.
        y : None
            Ignored.

        Returns
        -------
        score : float
            Mean of :meth:`score_samples`.
        """
        return float(np.mean(self.score_samples(X)))

    def _squared_errors(self, X):
        """Per-sample squared reconstruction error of validated ``X`` (input units)."""
        layout = self._check_fitted_state(check_values=False)
        diff = self._decode(self._encode(X, layout), layout).astype(np.float64) - X
        return np.einsum("ij,ij->i", diff, diff)

    def _encode(self, X, layout):
        n_layers = len(layout.shapes)
        visible = self._visible_input(X)
        codes = forward(visible, self._params, layout, self._activations(), 0, n_layers // 2,
                        self.n_jobs)
        if self.linear_path_:
            codes += visible @ self.components_.T
        return codes

    def _decode(self, codes, layout):
        n_layers = len(layout.shapes)
        out = forward(codes, self._params, layout, self._activations(), n_layers // 2,
                      n_layers, self.n_jobs)
        if self.linear_path_:
            out += codes @ self.components_
        return self._unscale(out)

    @property
    def _n_features_out(self):
        return self._layer_sizes[len(self._layer_sizes) // 2]
