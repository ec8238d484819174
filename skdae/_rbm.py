"""Restricted Boltzmann Machine as a scikit-learn transformer."""

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

_VISIBLE_KIND = {"bernoulli": 0, "gaussian": 1}
_HIDDEN_KIND = {"bernoulli": 0, "linear": 1}


class CDTrainer:
    """Parameters and momentum state of one RBM under contrastive divergence.

    The training loop shared by :class:`RBM` and the greedy pretraining of
    :class:`~skdae.RBMStackAutoencoder`: it owns the buffers (allocated once per call of
    :meth:`run`), draws one seed per epoch, follows the momentum schedule, checks for
    divergence after every epoch, and turns a ``KeyboardInterrupt`` into an early stop that
    keeps the weights reached so far.

    ``X`` given to :meth:`run` must already be what the visible units see (standardised
    for Gaussian units) and of the parameters' dtype.
    """

    def __init__(self, W, b_vis, b_hid, visible_units, hidden_units, *, cd_steps, persistent,
                 learning_rate, initial_momentum, momentum, momentum_switch_epoch,
                 weight_decay, batch_size, vel_W=None, vel_vis=None, vel_hid=None, chain=None):
        self.W, self.b_vis, self.b_hid = W, b_vis, b_hid
        self.visible_kind = _VISIBLE_KIND[visible_units]
        self.hidden_kind = _HIDDEN_KIND[hidden_units]
        self.cd_steps = cd_steps
        self.persistent = persistent
        self.learning_rate = learning_rate
        self.initial_momentum = initial_momentum
        self.momentum = momentum
        self.momentum_switch_epoch = momentum_switch_epoch
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.vel_W = np.zeros_like(W) if vel_W is None else vel_W
        self.vel_vis = np.zeros_like(b_vis) if vel_vis is None else vel_vis
        self.vel_hid = np.zeros_like(b_hid) if vel_hid is None else vel_hid
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

    def run(self, X, epochs, rng, *, first_epoch=0, verbose=0, label="RBM", curve=None):
        """Train for ``epochs`` epochs; append the per-sample reconstruction error to ``curve``.

        Returns
        -------
        curve : list of float
        interrupted : bool
            True when a ``KeyboardInterrupt`` ended training early.
        """
        from ._kernels import _rbm as kernels

        curve = [] if curve is None else curve
        n_samples, n_visible = X.shape
        n_hidden = self.W.shape[0]
        # A batch can never be larger than the data; buffers are sized once.
        batch = min(self.batch_size, n_samples)
        dtype = self.W.dtype
        V_stack = np.empty((2 * batch, n_visible), dtype)
        H_stack = np.empty((2 * batch, n_hidden), dtype)
        H_sample = np.empty((batch, n_hidden), dtype)
        chain = self.chain[:batch]
        seeds = epoch_seeds(rng, epochs)
        interrupted = False
        for i in range(epochs):
            epoch = first_epoch + i
            momentum = (
                self.initial_momentum if epoch < self.momentum_switch_epoch else self.momentum
            )
            order = rng.permutation(n_samples)
            # The last finite state, restored if this epoch diverges (a copy costs a
            # fraction of a percent of an epoch).
            snapshot = [a.copy() for a in self._state()]
            tic = time.perf_counter()
            try:
                squared_error = kernels.cd_epoch(
                    X, order, self.W, self.b_vis, self.b_hid, self.vel_W, self.vel_vis,
                    self.vel_hid, self.visible_kind, self.hidden_kind, self.cd_steps,
                    self.persistent, chain, self.learning_rate, momentum, self.weight_decay,
                    batch, seeds[i], V_stack, H_stack, H_sample,
                )
            except KeyboardInterrupt:
                interrupted = True
                warnings.warn(
                    f"{label}: training interrupted by the user at epoch {epoch + 1}; "
                    "keeping the weights reached so far.",
                    UserWarning,
                )
                break
            error = squared_error / n_samples
            if not (np.isfinite(error) and all(np.isfinite(a).all() for a in self._state())):
                for current, saved in zip(self._state(), snapshot):
                    current[...] = saved
                raise ValueError(
                    f"{label} diverged at epoch {epoch + 1}: the reconstruction error is "
                    f"{error:.4g} and the weights are no longer finite; they were reset to "
                    "the last finite epoch. Lower the learning rate or standardise the input."
                )
            curve.append(float(error))
            if verbose:
                print(
                    f"[{label}] epoch {epoch + 1}, reconstruction error {error:.4f}, "
                    f"{time.perf_counter() - tic:.2f} s",
                    flush=True,
                )
        return curve, interrupted


class RBM(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
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
    n_jobs : int, default=None
        Threads for the matrix products. ``None`` keeps the process's BLAS setting (all
        cores unless limited elsewhere); ``-1`` means all cores. Results do not depend on it.
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
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined only when ``X`` has string feature names.

    See Also
    --------
    RBMStackAutoencoder : a deep autoencoder pretrained as a stack of these.
    sklearn.neural_network.BernoulliRBM : scikit-learn's Bernoulli-only RBM.

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
        """
        X = validate_data(self, X, dtype=[np.float64, np.float32], order="C")
        rng = check_random_state(self.random_state)
        self._initialize(X, rng)
        self._train(X, self.max_iter, rng)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Train one epoch on ``X``, initialising the RBM on the first call.

        The first call also fixes the visible unit type and, for Gaussian units, the
        per-feature standardisation, from this first ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        self : RBM
        """
        first_call = not hasattr(self, "components_")
        X = validate_data(self, X, dtype=[np.float64, np.float32], order="C", reset=first_call)
        if first_call:
            rng = check_random_state(self.random_state)
            self._initialize(X, rng)
        else:
            X = X.astype(self.components_.dtype, copy=False)
            if self.visible_units_ == "bernoulli":
                check_unit_range(X, "X")
        self._train(X, 1, partial_fit_rng(self._partial_fit_seed, self.n_iter_))
        return self

    def _initialize(self, X, rng):
        self.visible_units_ = resolve_visible_units(X, self.visible_units)
        self.mean_, self.scale_ = input_scaling(X, self.visible_units_)
        n_features = X.shape[1]
        dtype = X.dtype
        self.components_ = (rng.normal(0.0, self.init_std, (self.n_components, n_features))).astype(dtype)
        self.intercept_hidden_ = np.zeros(self.n_components, dtype)
        self.intercept_visible_ = np.zeros(n_features, dtype)
        self._velocity_components = np.zeros_like(self.components_)
        self._velocity_hidden = np.zeros_like(self.intercept_hidden_)
        self._velocity_visible = np.zeros_like(self.intercept_visible_)
        self._chain = np.zeros((self.batch_size, self.n_components), dtype)
        self.reconstruction_error_curve_ = []
        self.n_iter_ = 0
        # An int, not a RandomState, so fitted state stays plain data; each later
        # partial_fit call derives its own stream from it and the epoch count.
        self._partial_fit_seed = int(epoch_seeds(rng, 1)[0])

    def _train(self, X, epochs, rng):
        Xs = standardize(X, self.mean_, self.scale_, self.visible_units_)
        trainer = CDTrainer(
            self.components_, self.intercept_visible_, self.intercept_hidden_,
            self.visible_units_, self.hidden_units, cd_steps=self.cd_steps,
            persistent=self.persistent, learning_rate=self.learning_rate,
            initial_momentum=self.initial_momentum, momentum=self.momentum,
            momentum_switch_epoch=self.momentum_switch_epoch, weight_decay=self.weight_decay,
            batch_size=self.batch_size, vel_W=self._velocity_components,
            vel_vis=self._velocity_visible, vel_hid=self._velocity_hidden, chain=self._chain,
        )
        self._chain = trainer.chain
        with thread_limits(self.n_jobs):
            trainer.run(
                Xs, epochs, rng, first_epoch=self.n_iter_, verbose=self.verbose,
                label=type(self).__name__, curve=self.reconstruction_error_curve_,
            )
        self.n_iter_ = len(self.reconstruction_error_curve_)

    def transform(self, X):
        """Hidden unit means (probabilities, or linear means) for ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        H : ndarray of shape (n_samples, n_components)
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], order="C", reset=False)
        from ._kernels import _rbm as kernels

        Xs = self._visible_input(X)
        H = np.empty((X.shape[0], self.n_components), self.components_.dtype)
        with thread_limits(self.n_jobs):
            kernels.hidden_means(
                Xs, self.components_, self.intercept_hidden_, _HIDDEN_KIND[self.hidden_units], H
            )
        return H

    def inverse_transform(self, H):
        """Visible means for hidden states ``H``, in the input's units.

        Parameters
        ----------
        H : array-like of shape (n_samples, n_components)

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        from ._kernels import _rbm as kernels

        self._check_parameters()
        H = check_codes(H, self.n_components, self.components_.dtype, type(self).__name__)
        V = np.empty((H.shape[0], self.n_features_in_), self.components_.dtype)
        with thread_limits(self.n_jobs):
            kernels.visible_means(
                readonly(H), self.components_, self.intercept_visible_,
                _VISIBLE_KIND[self.visible_units_], V,
            )
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
        check_is_fitted(self)
        from ._kernels import _rbm as kernels

        v = validate_data(self, v, dtype=[np.float64, np.float32], order="C", reset=False)
        Vs = self._visible_input(v)
        seed = epoch_seeds(check_random_state(random_state), 1)[0]
        H = np.empty((v.shape[0], self.n_components), self.components_.dtype)
        out = np.empty((v.shape[0], self.n_features_in_), self.components_.dtype)
        with thread_limits(self.n_jobs):
            kernels.gibbs_step(
                Vs, self.components_, self.intercept_visible_, self.intercept_hidden_,
                _VISIBLE_KIND[self.visible_units_], _HIDDEN_KIND[self.hidden_units], seed, H, out,
            )
        return self._unscale(out)

    def score_samples(self, X):
        """Negative free energy of each sample: its unnormalised log-likelihood.

        Deterministic (unlike ``BernoulliRBM``'s stochastic pseudo-likelihood): the hidden
        units are summed out exactly. For Gaussian visible units the log-Jacobian of the
        standardisation is included, so values are log-densities in the input's units up to
        the (intractable) log-partition function, which is the same for every sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        from ._kernels import _rbm as kernels

        X = validate_data(self, X, dtype=[np.float64, np.float32], order="C", reset=False)
        Xs = self._visible_input(X)
        H = np.empty((X.shape[0], self.n_components), self.components_.dtype)
        F = np.empty(X.shape[0], np.float64)
        with thread_limits(self.n_jobs):
            kernels.free_energy(
                Xs, self.components_, self.intercept_visible_, self.intercept_hidden_,
                _VISIBLE_KIND[self.visible_units_], _HIDDEN_KIND[self.hidden_units], H, F,
            )
        scores = -F
        if self.visible_units_ == "gaussian":
            scores -= np.log(self.scale_.astype(np.float64)).sum()
        return scores

    def _check_parameters(self):
        """Refuse fitted arrays that do not fit together (the kernels index by shape)."""
        W = self.components_
        expected = {
            "components_": (W, (self.n_components, self.n_features_in_)),
            "intercept_hidden_": (self.intercept_hidden_, (W.shape[0],)),
            "intercept_visible_": (self.intercept_visible_, (self.n_features_in_,)),
            "mean_": (self.mean_, (self.n_features_in_,)),
            "scale_": (self.scale_, (self.n_features_in_,)),
        }
        for name, (array, shape) in expected.items():
            if array.shape != shape or array.dtype != W.dtype:
                raise ValueError(
                    f"{type(self).__name__} has inconsistent fitted state: {name} has shape "
                    f"{array.shape} and dtype {array.dtype}, expected {shape} and {W.dtype}. "
                    "Refit the model or reload it from an intact model file."
                )

    def _visible_input(self, X):
        # No range check here: the map is defined for any input, and a scaler fitted on
        # training data legitimately yields test values slightly outside [0, 1].
        self._check_parameters()
        X = X.astype(self.components_.dtype, copy=False)
        return standardize(X, self.mean_, self.scale_, self.visible_units_)

    def _unscale(self, V):
        if self.visible_units_ == "gaussian":
            V *= self.scale_
            V += self.mean_
        return V

    @property
    def _n_features_out(self):
        return self.components_.shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
