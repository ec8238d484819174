"""Restricted Boltzmann Machine as a scikit-learn transformer."""

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

from ._base import (
    VisibleUnitsMixin,
    epoch_seeds,
    new_seed,
    readonly,
    stop_on_ctrl_c,
    thread_limits,
)
from ._kernels._codes import HIDDEN_KIND, VISIBLE_KIND
from ._pretraining import CDTrainer
from ._state import StateChecker


class RBM(VisibleUnitsMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Restricted Boltzmann Machine trained by contrastive divergence (CD-k or PCD).

    A successor to :class:`sklearn.neural_network.BernoulliRBM` with Gaussian visible units,
    linear (Gaussian) hidden units, CD-k, momentum and weight decay, on Numba kernels.

    Parameters
    ----------
    n_components : int, default=256
        Number of hidden units.
    visible_units : {"auto", "bernoulli", "gaussian"}, default="auto"
        ``"bernoulli"`` models data in [0, 1] (sigmoid means); ``"gaussian"`` models
        real-valued data with unit-variance units: the estimator standardises each feature
        itself and undoes it in :meth:`inverse_transform`. ``"auto"`` picks Bernoulli when the
        training data lie in [0, 1] and Gaussian otherwise; the choice is stored in
        ``visible_units_``.
    hidden_units : {"bernoulli", "linear"}, default="bernoulli"
        ``"linear"`` hidden units have unit-variance Gaussian noise and linear means, as the
        code layer of Hinton & Salakhutdinov (2006).
    cd_steps : int, default=1
        Gibbs steps of the negative phase (the k of CD-k).
    persistent : bool, default=False
        Persistent contrastive divergence: the negative chain continues across minibatches
        instead of restarting at the data.
    learning_rate : float, default=0.1
        Step size. Hinton's recipe uses 0.1 for Bernoulli-Bernoulli RBMs and 0.001 when one
        side is Gaussian or linear.
    initial_momentum : float, default=0.5
        Momentum for the first ``momentum_switch_epoch`` epochs.
    momentum : float, default=0.9
        Momentum after that.
    momentum_switch_epoch : int, default=5
        Epoch at which momentum switches from ``initial_momentum`` to ``momentum``.
    weight_decay : float, default=2e-4
        L2 penalty on the weights (not the biases), scaled by the learning rate.
    init_std : float, default=0.1
        Weights start as ``init_std * N(0, 1)``; biases start at zero.
    batch_size : int, default=100
        Examples per minibatch.
    max_iter : int, default=10
        Epochs (passes over the training data) of :meth:`fit`.
    chunk_size : int or None, default=None
        Rows read at a time: each epoch visits chunks of this many rows in a shuffled
        order, and the rows of each chunk in a shuffled order; inference on out-of-core
        input also goes chunk by chunk. ``None``: an in-memory array (NumPy or SciPy
        sparse) is one chunk (a full shuffle every epoch), and an out-of-core array
        (``np.memmap``, Zarr, h5py, Dask, ...) is read in chunks of 64 MiB of float
        rows, rounded down to whole chunks of a chunked store or else to whole
        minibatches. Sparse input stays sparse: each minibatch is densified on its own.
    n_jobs : int, default=None
        Numba threads that run the kernels' blocks in parallel (BLAS itself is pinned to
        one thread inside them). ``None`` and ``-1`` use every thread Numba may use (all
        cores, ``NUMBA_NUM_THREADS``, or joblib's share in a worker process); larger
        values are capped there. Results are bitwise the same for any value.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, the order of examples and Gibbs sampling.
    verbose : int, default=0
        Print the reconstruction error and time of every epoch.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        Weights.
    intercept_hidden_ : ndarray of shape (n_components,)
    intercept_visible_ : ndarray of shape (n_features,)
    visible_units_ : str
        ``"bernoulli"`` or ``"gaussian"``: the resolved visible unit type.
    mean_ : ndarray of shape (n_features,)
        Per-feature mean removed before Gaussian visible units (zeros for Bernoulli).
    scale_ : ndarray of shape (n_features,)
        Per-feature scale divided out before Gaussian visible units (ones for Bernoulli).
    reconstruction_error_curve_ : list of float
        Mean squared one-step reconstruction error per sample (summed over features, in
        the units the visible layer sees) after each epoch.
    n_iter_ : int
        Epochs trained so far (across :meth:`partial_fit` calls).
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Defined only when ``X`` has string feature names.

    See Also
    --------
    RBMStackAutoencoder : A deep autoencoder pretrained as a stack of these.
    sklearn.neural_network.BernoulliRBM : Scikit-learn's Bernoulli-only RBM.

    Notes
    -----
    A Ctrl-C during ``fit`` lets the epoch in progress finish, counts it, and stops with
    a warning; a second Ctrl-C (or a ``KeyboardInterrupt`` raised another way) rolls the
    epoch in progress back. ``n_iter_`` always counts the epochs the weights went
    through. Each epoch draws from its own random stream, derived from ``random_state``
    and the epoch's index, so ``fit`` with ``max_iter=k`` gives exactly the first ``k``
    epochs of a longer fit, and ``partial_fit`` continues them.

    References
    ----------
    G. E. Hinton and R. R. Salakhutdinov, "Reducing the Dimensionality of Data with Neural
    Networks", Science 313 (2006). G. E. Hinton, "A Practical Guide to Training Restricted
    Boltzmann Machines", UTML TR 2010-003.

    Examples
    --------
    >>> import numpy as np
    >>> from skdae import RBM
    >>> X = np.random.RandomState(0).rand(200, 16).astype(np.float32)
    >>> rbm = RBM(n_components=8, max_iter=2, random_state=0).fit(X)
    >>> rbm.transform(X).shape, rbm.visible_units_
    ((200, 8), 'bernoulli')
    """

    _parameter_constraints = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "visible_units": [StrOptions({"auto", "bernoulli", "gaussian"})],
        "hidden_units": [StrOptions({"bernoulli", "linear"})],
        "cd_steps": [Interval(Integral, 1, None, closed="left")],
        "persistent": ["boolean"],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "initial_momentum": [Interval(Real, 0, 1, closed="left")],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "momentum_switch_epoch": [Interval(Integral, 0, None, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "init_std": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "chunk_size": [None, Interval(Integral, 1, None, closed="left")],
        "n_jobs": [None, Integral],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_components=256,
        *,
        visible_units="auto",
        hidden_units="bernoulli",
        cd_steps=1,
        persistent=False,
        learning_rate=0.1,
        initial_momentum=0.5,
        momentum=0.9,
        momentum_switch_epoch=5,
        weight_decay=2e-4,
        init_std=0.1,
        batch_size=100,
        max_iter=10,
        chunk_size=None,
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        self.n_components = n_components
        self.visible_units = visible_units
        self.hidden_units = hidden_units
        self.cd_steps = cd_steps
        self.persistent = persistent
        self.learning_rate = learning_rate
        self.initial_momentum = initial_momentum
        self.momentum = momentum
        self.momentum_switch_epoch = momentum_switch_epoch
        self.weight_decay = weight_decay
        self.init_std = init_std
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.chunk_size = chunk_size
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the RBM to ``X`` for ``max_iter`` epochs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; float32 data are trained in float32.
        y : None
            Ignored.

        Returns
        -------
        self : RBM
            The fitted estimator.
        """
        data = self._training_rows(X, reset=True)
        self._initialize(data, check_random_state(self.random_state))
        self._train(data, self.max_iter)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Train one epoch on ``X``, initialising the RBM on the first call.

        The first call also fixes the visible unit type and, for Gaussian units, the
        per-feature standardisation, from this first ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : None
            Ignored.

        Returns
        -------
        self : RBM
            The updated estimator.
        """
        first_call = not hasattr(self, "n_iter_")
        data = self._training_rows(X, reset=first_call)
        if first_call:
            self._initialize(data, check_random_state(self.random_state))
        self._train(data, 1)
        return self

    # Parameters added after model-file format 1, at the value that reproduces format-1
    # models (see skdae._persist.fingerprint).
    _params_added_after_v1 = {"chunk_size": None}

    def _initialize(self, data, rng):
        n_features = data.n_features
        dtype = data.dtype
        self.components_ = rng.normal(0.0, self.init_std, (self.n_components, n_features)).astype(dtype)
        self.intercept_hidden_ = np.zeros(self.n_components, dtype)
        self.intercept_visible_ = np.zeros(n_features, dtype)
        self._hidden_units = self.hidden_units
        self._velocity_components = np.zeros_like(self.components_)
        self._velocity_hidden = np.zeros_like(self.intercept_hidden_)
        self._velocity_visible = np.zeros_like(self.intercept_visible_)
        self._chain = np.zeros((self.batch_size, self.n_components), dtype)
        self.reconstruction_error_curve_ = []
        self.n_iter_ = 0
        self._seed = new_seed(rng)

    # Arrays the CD kernel updates in place.
    _TRAINING_ARRAYS = ("components_", "intercept_hidden_", "intercept_visible_",
                        "_velocity_components", "_velocity_hidden", "_velocity_visible", "_chain")

    def _train(self, data, epochs):
        for name in self._TRAINING_ARRAYS:
            # Read-only after loading from a memory map: train on a copy.
            if not getattr(self, name).flags.writeable:
                setattr(self, name, getattr(self, name).copy())
        trainer = CDTrainer(
            self.components_, self.intercept_visible_, self.intercept_hidden_,
            self.visible_units_, self._hidden_units, cd_steps=self.cd_steps,
            persistent=self.persistent, learning_rate=self.learning_rate,
            initial_momentum=self.initial_momentum, momentum=self.momentum,
            momentum_switch_epoch=self.momentum_switch_epoch, weight_decay=self.weight_decay,
            batch_size=self.batch_size,
            velocity=(self._velocity_components, self._velocity_visible, self._velocity_hidden),
            chain=self._chain,
        )
        self._chain = trainer.chain
        with stop_on_ctrl_c() as stop, thread_limits(self.n_jobs):
            trainer.run(
                data, epochs, (self._seed,), stop=stop, first_epoch=self.n_iter_,
                verbose=self.verbose, label=type(self).__name__,
                curve=self.reconstruction_error_curve_,
            )
        self.n_iter_ = len(self.reconstruction_error_curve_)

    @property
    def _dtype(self):
        return self.components_.dtype

    def _check_fitted_state(self, check_values=True):
        """Validate the whole fitted state, training state included.

        The one gate between fitted state and the kernels: ``transform``, ``gibbs``,
        ``score_samples``, ``inverse_transform``, ``partial_fit`` and model-file loading
        all go through it. ``check_values`` also checks that every array is finite.
        """
        check = StateChecker(self)
        n_features = check.integer("n_features_in_", 1)
        W = check.array("components_", (None, n_features), None, finite=check_values)
        n_components, dtype = W.shape[0], W.dtype
        if n_components < 1:
            check.fail("components_ has no rows")
        check.array("intercept_hidden_", (n_components,), dtype, finite=check_values)
        check.array("intercept_visible_", (n_features,), dtype, finite=check_values)
        self._check_visible_state(check, n_features, dtype, check_values)
        check.choice("_hidden_units", set(HIDDEN_KIND))
        for name, shape in (("_velocity_components", W.shape), ("_velocity_hidden", (n_components,)),
                            ("_velocity_visible", (n_features,)), ("_chain", (None, n_components))):
            check.array(name, shape, dtype, finite=check_values)
        for name in self._TRAINING_ARRAYS:
            if not getattr(self, name).flags.c_contiguous:
                check.fail(f"{name} is not a contiguous array")
        check.integer("n_iter_", 0, 2**62)
        check.integer("_seed", 0, 2**63)
        check.numbers("reconstruction_error_curve_")

    def transform(self, X, *, out=None):
        """Hidden unit means (probabilities, or linear means) for ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Visible states: a NumPy array, a SciPy sparse matrix, or an out-of-core
            array (``np.memmap``, Zarr, h5py, Dask, ...) read ``chunk_size`` rows at a
            time.
        out : array of shape (n_samples, n_components), default=None
            Where to write the result (anything with row assignment, e.g. a memmap).

        Returns
        -------
        H : ndarray of shape (n_samples, n_components)
            Hidden means (``out`` when given).
        """
        check_is_fitted(self)
        self._check_fitted_state(check_values=False)
        return self._map_rows(X, self._hidden_means, (self._n_features_out,), out)

    def _hidden_means(self, X):
        from ._kernels import _rbm as kernels

        Xs = self._visible_input(X)
        H = np.empty((Xs.shape[0], self._n_features_out), self._dtype)
        with thread_limits(self.n_jobs):
            kernels.hidden_means(Xs, self.components_, self.intercept_hidden_,
                                 HIDDEN_KIND[self._hidden_units], H,
                                 kernels.hidden_pointer(self._dtype))
        return H

    def inverse_transform(self, X, *, out=None):
        """Visible means for hidden states ``X``, in the input's units.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Hidden states or means (the output of :meth:`transform`), in memory or out of
            core.
        out : array of shape (n_samples, n_features), default=None
            Where to write the result.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            Visible means (``out`` when given).
        """
        check_is_fitted(self)
        self._check_fitted_state(check_values=False)
        return self._map_rows(X, self._visible_means, (self.n_features_in_,), out, codes=True)

    def _visible_means(self, H):
        from ._kernels import _rbm as kernels

        V = np.empty((H.shape[0], self.n_features_in_), self._dtype)
        with thread_limits(self.n_jobs):
            kernels.visible_means(readonly(H), self.components_, self.intercept_visible_,
                                  VISIBLE_KIND[self.visible_units_], V,
                                  kernels.dense_pointer(self._dtype))
        return self._unscale(V)

    def gibbs(self, v, random_state=None):
        """One Gibbs sweep: sample hidden states given ``v``, then visible states.

        Parameters
        ----------
        v : array-like of shape (n_samples, n_features)
            Visible states to start from.
        random_state : int, RandomState instance or None, default=None
            Randomness of this sweep; pass a ``RandomState`` to continue a chain
            reproducibly.

        Returns
        -------
        v_new : ndarray of shape (n_samples, n_features)
            Visible states after one sweep (binary for Bernoulli units; for Gaussian units
            the means plus unit-variance noise, in the input's units).
        """
        from ._kernels import _rbm as kernels

        Vs = self._checked_visible_input(v)
        seed = epoch_seeds(check_random_state(random_state), 1)[0]
        H = np.empty((Vs.shape[0], self._n_features_out), self._dtype)
        out = np.empty(Vs.shape, self._dtype)
        with thread_limits(self.n_jobs):
            kernels.gibbs_step(Vs, self.components_, self.intercept_visible_,
                               self.intercept_hidden_, VISIBLE_KIND[self.visible_units_],
                               HIDDEN_KIND[self._hidden_units], seed, H, out,
                               kernels.hidden_pointer(self._dtype),
                               kernels.dense_pointer(self._dtype))
        return self._unscale(out)

    def score_samples(self, X, *, out=None):
        """Negative free energy of each sample: its unnormalised log-likelihood.

        Deterministic (unlike ``BernoulliRBM``'s stochastic pseudo-likelihood): the hidden
        units are summed out exactly. For Gaussian visible units the log-Jacobian of the
        standardisation is included, so values are log-densities in the input's units up to
        the (intractable) log-partition function, which is the same for every sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples to score (in memory or out of core, as for :meth:`transform`).
        out : array of shape (n_samples,), default=None
            Where to write the scores.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            Negative free energies (higher is more probable).
        """
        check_is_fitted(self)
        self._check_fitted_state(check_values=False)
        return self._map_rows(X, self._neg_free_energy, (), out, dtype=np.float64)

    def _neg_free_energy(self, X):
        from ._kernels import _rbm as kernels

        Xs = self._visible_input(X)
        H = np.empty((Xs.shape[0], self._n_features_out), self._dtype)
        F = np.empty(Xs.shape[0], np.float64)
        with thread_limits(self.n_jobs):
            kernels.free_energy(Xs, self.components_, self.intercept_visible_,
                                self.intercept_hidden_, VISIBLE_KIND[self.visible_units_],
                                HIDDEN_KIND[self._hidden_units], H, F,
                                kernels.dense_pointer(self._dtype))
        scores = -F
        if self.visible_units_ == "gaussian":
            scores -= np.log(self.scale_.astype(np.float64)).sum()
        return scores

    def _checked_visible_input(self, X):
        """``X`` validated against the checked fitted state, as the visible units see it."""
        check_is_fitted(self)
        X = self._validate_input(X, reset=False)
        self._check_fitted_state(check_values=False)
        return self._visible_input(X)

    def __setstate__(self, state):
        from ._persist_migrate import migrate_state

        super().__setstate__(migrate_state(type(self), state))

    @property
    def _n_features_out(self):
        return self.components_.shape[0]
