"""Behaviour of the RBM estimator: learning, unit types, determinism, errors.

Every fit passes ``n_jobs=1`` except where thread counts are the point: on a small shared
machine a multi-threaded BLAS only spin-waits on these tiny matrices.
"""

import pickle
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_digits

import skdae._kernels._rbm as rbm_kernels
from skdae import RBM


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def fit_rbm(X, **params):
    params = {"n_components": 16, "max_iter": 3, "n_jobs": 1, "random_state": 0, **params}
    return RBM(**params).fit(X)


def reconstruction_error(model, X):
    """Mean per-sample squared error of the mean-field reconstructions."""
    return ((model.inverse_transform(model.transform(X)) - X) ** 2).sum(1).mean()


def mean_image_error(X):
    """The same error for predicting every sample by the mean sample: the baseline."""
    return ((X - X.mean(0)) ** 2).sum(1).mean()


# ------------------------------------------------------------------------- learning


def test_reconstruction_error_decreases_on_digits(digits):
    rbm = fit_rbm(digits, n_components=64, max_iter=10)
    curve = np.array(rbm.reconstruction_error_curve_)
    assert len(curve) == rbm.n_iter_ == 10
    assert np.all(np.diff(curve) < 0), curve
    assert curve[-1] < 0.6 * curve[0], curve
    # The learnt map reconstructs through the mean-field path too: well below the error
    # of predicting every pixel's mean.
    error, baseline = reconstruction_error(rbm, digits), mean_image_error(digits)
    assert error < 0.6 * baseline, (error, baseline)


def test_transform_and_inverse_transform_are_the_mean_field_maps(digits):
    rbm = fit_rbm(digits)
    W, b_hid, b_vis = rbm.components_, rbm.intercept_hidden_, rbm.intercept_visible_
    H = rbm.transform(digits)
    assert_allclose(H, sigmoid(digits @ W.T + b_hid), rtol=1e-10)
    assert_allclose(rbm.inverse_transform(H), sigmoid(H @ W + b_vis), rtol=1e-10)


def test_verbose_prints_progress(digits, capsys):
    fit_rbm(digits[:200], max_iter=2, verbose=1)
    out = capsys.readouterr().out
    assert "epoch 1" in out and "epoch 2" in out and "reconstruction error" in out


# ---------------------------------------------------------------------- unit types


def test_auto_visible_units_follow_the_data_range(digits, real_data):
    rbm = fit_rbm(digits, max_iter=1)
    assert rbm.visible_units_ == "bernoulli"
    assert_array_equal(rbm.mean_, 0.0)
    assert_array_equal(rbm.scale_, 1.0)
    assert fit_rbm(real_data, max_iter=1).visible_units_ == "gaussian"
    # Slightly outside [0, 1] is already Gaussian; exactly 0 and 1 are still Bernoulli.
    assert fit_rbm(np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]]), max_iter=1).visible_units_ == "bernoulli"
    assert fit_rbm(np.array([[0.0, 1.0], [1.0, 1e-9 - 1e-8]]), max_iter=1).visible_units_ == "gaussian"
    assert fit_rbm(digits, visible_units="gaussian", max_iter=1).visible_units_ == "gaussian"


def test_gaussian_units_standardise_and_return_input_units(real_data):
    rbm = fit_rbm(real_data, hidden_units="bernoulli", learning_rate=0.01, max_iter=10)
    assert rbm.visible_units_ == "gaussian"
    std = real_data.std(0)
    constant = std == 0  # corner pixels of the digits are always blank
    assert constant.any()
    assert_allclose(rbm.mean_, real_data.mean(0))
    assert_allclose(rbm.scale_[~constant], std[~constant])
    assert_array_equal(rbm.scale_[constant], 1.0)

    recon = rbm.inverse_transform(rbm.transform(real_data))
    assert np.isfinite(recon).all()
    # Reconstructions live in the input's units: around 40 + 3 * pixel, not around 0.
    assert_allclose(recon.mean(0), real_data.mean(0), atol=0.3 * std.max())
    error = ((recon - real_data) ** 2).sum(1).mean()
    assert error < 0.8 * (std**2).sum(), (error, (std**2).sum())


def test_gaussian_units_are_invariant_to_affine_rescaling(real_data):
    """Standardising inside the estimator: fitting a * X + c learns the same weights,
    reconstructs in the new units, and shifts log-densities by the log-Jacobian."""
    a, c = 7.0, -300.0
    params = dict(learning_rate=0.01, max_iter=3)
    rbm = fit_rbm(real_data, **params)
    rbm_scaled = fit_rbm(a * real_data + c, **params)
    assert_allclose(rbm_scaled.components_, rbm.components_, rtol=1e-7, atol=1e-9)
    H = rbm.transform(real_data)
    assert_allclose(rbm_scaled.transform(a * real_data + c), H, rtol=1e-7, atol=1e-9)
    # Constant features keep scale 1 (nothing to divide by), so only the varying ones
    # scale with a.
    varying = real_data.std(0) > 0
    assert_allclose(
        rbm_scaled.inverse_transform(H)[:, varying],
        a * rbm.inverse_transform(H)[:, varying] + c,
        rtol=1e-7,
    )
    n_varying = varying.sum()
    assert_allclose(
        rbm_scaled.score_samples(a * real_data + c),
        rbm.score_samples(real_data) - n_varying * np.log(a),
        rtol=1e-7,
    )


def test_explicit_bernoulli_rejects_data_outside_unit_interval(real_data, digits):
    with pytest.raises(ValueError, match="MinMaxScaler") as info:
        fit_rbm(real_data, visible_units="bernoulli")
    assert "gaussian" in str(info.value)
    assert "[0, 1]" in str(info.value)
    # Also on a later partial_fit call, once the units are fixed.
    rbm = RBM(n_components=4, visible_units="auto", n_jobs=1, random_state=0).partial_fit(digits)
    with pytest.raises(ValueError, match="MinMaxScaler"):
        rbm.partial_fit(digits * 2)


def test_linear_hidden_units(digits):
    rbm = fit_rbm(digits, hidden_units="linear", learning_rate=0.01, max_iter=10)
    H = rbm.transform(digits)
    assert np.isfinite(H).all()
    # Linear means, not probabilities.
    assert_allclose(H, digits @ rbm.components_.T + rbm.intercept_hidden_, rtol=1e-10)
    assert H.min() < 0 or H.max() > 1
    # Measured: 0.34-0.36 of the mean image's error (seeds 0-2).
    assert reconstruction_error(rbm, digits) < 0.5 * mean_image_error(digits)


@pytest.mark.parametrize("cd_steps, persistent", [(3, False), (1, True), (3, True)])
@pytest.mark.parametrize("hidden_units", ["bernoulli", "linear"])
def test_cd_k_and_persistent_fit_and_are_finite(digits, cd_steps, persistent, hidden_units):
    lr = 0.1 if hidden_units == "bernoulli" else 0.01
    params = dict(hidden_units=hidden_units, learning_rate=lr, batch_size=64, max_iter=4)
    rbm = fit_rbm(digits[:500], cd_steps=cd_steps, persistent=persistent, **params)
    assert rbm.n_iter_ == 4
    for a in (rbm.components_, rbm.intercept_hidden_, rbm.intercept_visible_):
        assert np.isfinite(a).all()
    assert np.isfinite(rbm.reconstruction_error_curve_).all()
    assert np.isfinite(rbm.transform(digits)).all()
    # The settings are used: the same seed with plain CD-1 learns other weights (by the
    # exact updates, checked in test_kernels, not by how much better they are).
    cd1 = fit_rbm(digits[:500], cd_steps=1, persistent=False, **params)
    assert not np.allclose(rbm.components_, cd1.components_, rtol=0, atol=1e-6)


# --------------------------------------------------------------------- partial_fit


def test_partial_fit_over_chunks(digits):
    rbm = RBM(n_components=32, n_jobs=1, random_state=0)
    for i, chunk in enumerate(np.array_split(digits, 6)):
        rbm.partial_fit(chunk)
        assert rbm.n_iter_ == i + 1
        assert len(rbm.reconstruction_error_curve_) == i + 1
    for _ in range(4):
        for chunk in np.array_split(digits, 6):
            rbm.partial_fit(chunk)
    assert rbm.n_iter_ == 30
    # Five passes over the data in chunks learn at least as much as five epochs of fit
    # (measured: 0.37-0.39 of the mean image's error, against 0.57-0.60 for fit).
    five_epochs = fit_rbm(digits, n_components=32, max_iter=5)
    error = reconstruction_error(rbm, digits)
    assert error < 0.5 * mean_image_error(digits)
    assert error <= reconstruction_error(five_epochs, digits)


def test_partial_fit_is_reproducible(digits):
    a = RBM(n_components=8, n_jobs=1, random_state=3)
    b = RBM(n_components=8, n_jobs=1, random_state=3)
    for chunk in np.array_split(digits[:300], 3):
        a.partial_fit(chunk)
        b.partial_fit(chunk)
    assert_array_equal(a.components_, b.components_)


# ---------------------------------------------------------------- gibbs and scores


def test_gibbs_returns_reproducible_binary_samples(digits):
    rbm = fit_rbm(digits)
    v = digits[:50]
    s1 = rbm.gibbs(v, random_state=0)
    s2 = rbm.gibbs(v, random_state=0)
    s3 = rbm.gibbs(v, random_state=1)
    assert s1.shape == v.shape and s1.dtype == v.dtype
    assert set(np.unique(s1)) <= {0.0, 1.0}
    assert_array_equal(s1, s2)
    assert not np.array_equal(s1, s3)
    # A RandomState continues a chain: two draws from one state differ.
    rs = np.random.RandomState(0)
    assert not np.array_equal(rbm.gibbs(v, random_state=rs), rbm.gibbs(v, random_state=rs))


def test_gibbs_gaussian_units_sample_in_input_units(real_data):
    rbm = fit_rbm(real_data, learning_rate=0.01)
    samples = rbm.gibbs(real_data, random_state=0)
    assert np.isfinite(samples).all()
    # Means in input units plus unit-variance noise scaled back by scale_.
    assert abs(samples.mean() - real_data.mean()) < 0.3 * real_data.std()
    assert len(np.unique(samples)) > 100
    assert_array_equal(samples, rbm.gibbs(real_data, random_state=0))


def test_score_samples_is_deterministic_and_prefers_data_to_noise(digits):
    rbm = fit_rbm(digits, n_components=32, max_iter=10)
    s = rbm.score_samples(digits)
    assert s.shape == (len(digits),)
    assert_array_equal(s, rbm.score_samples(digits))
    noise = np.random.RandomState(0).rand(*digits.shape)
    assert s.mean() > rbm.score_samples(noise).mean() + 5
    # It is the negative free energy, hidden units summed out exactly.
    x = digits @ rbm.components_.T + rbm.intercept_hidden_
    expected = digits @ rbm.intercept_visible_ + np.logaddexp(0, x).sum(1)
    assert_allclose(s, expected, rtol=1e-10)


# ------------------------------------------------------------- dtypes and threads


def test_float32_is_preserved(digits):
    X32 = digits.astype(np.float32)
    rbm = fit_rbm(X32)
    for a in (rbm.components_, rbm.intercept_hidden_, rbm.intercept_visible_):
        assert a.dtype == np.float32
    H = rbm.transform(X32)
    assert H.dtype == np.float32
    assert rbm.inverse_transform(H).dtype == np.float32
    assert rbm.gibbs(X32, random_state=0).dtype == np.float32
    assert np.isfinite(rbm.score_samples(X32)).all()


@pytest.mark.parametrize("hidden_units", ["bernoulli", "linear"])
def test_float32_fit_is_close_to_float64(digits, hidden_units):
    params = dict(hidden_units=hidden_units, learning_rate=0.1 if hidden_units == "bernoulli" else 0.01,
                  max_iter=5, n_components=24)
    rbm64 = fit_rbm(digits, **params)
    rbm32 = fit_rbm(digits.astype(np.float32), **params)
    assert rbm32.components_.dtype == np.float32
    # Both runs draw the same random numbers. Linear hidden units have no binary draws,
    # so the runs differ by rounding only. With Bernoulli units, float32 rounding of a
    # probability can (rarely, ~1e-7 per draw; not on this data here) flip one draw, which
    # moves weights by about learning_rate / batch_size: the tolerance allows for one.
    atol = 1e-4 if hidden_units == "linear" else 5e-3
    assert_allclose(rbm32.components_, rbm64.components_, atol=atol)
    assert_allclose(rbm32.transform(digits), rbm64.transform(digits), atol=atol)
    assert_allclose(rbm32.reconstruction_error_curve_, rbm64.reconstruction_error_curve_, rtol=atol)


@pytest.mark.parametrize(
    "params",
    [
        dict(),
        dict(hidden_units="linear", learning_rate=0.01, persistent=True),
        # Wide enough (batch 100 x 64 features -> 100 hidden units) for a multi-threaded
        # BLAS to take its threaded path.
        dict(cd_steps=2, n_components=100),
    ],
    ids=["small", "linear-pcd", "wide-cd2"],
)
def test_n_jobs_does_not_change_results(params, real_data, digits):
    """The docstring's promise: results do not depend on n_jobs, bit for bit."""
    for X in (digits, real_data):
        a = fit_rbm(X, **{**params, "n_jobs": 1})
        b = fit_rbm(X, **{**params, "n_jobs": 2})
        assert_array_equal(a.components_, b.components_)
        assert_array_equal(a.intercept_hidden_, b.intercept_hidden_)
        assert_array_equal(a.intercept_visible_, b.intercept_visible_)
        assert_array_equal(a.reconstruction_error_curve_, b.reconstruction_error_curve_)
        assert_array_equal(a.transform(X), b.transform(X))


def test_pickle_round_trip(real_data):
    rbm = fit_rbm(real_data, learning_rate=0.01)
    clone = pickle.loads(pickle.dumps(rbm))
    H = rbm.transform(real_data)
    assert_array_equal(clone.transform(real_data), H)
    assert_array_equal(clone.inverse_transform(H), rbm.inverse_transform(H))
    assert_array_equal(clone.score_samples(real_data), rbm.score_samples(real_data))
    assert_array_equal(clone.gibbs(real_data, random_state=4), rbm.gibbs(real_data, random_state=4))
    # Training state (momentum, seeds) survives too: both continue identically.
    rbm.partial_fit(real_data)
    clone.partial_fit(real_data)
    assert_array_equal(clone.components_, rbm.components_)


def test_feature_names_out(digits):
    rbm = fit_rbm(digits[:100], n_components=3, max_iter=1)
    assert list(rbm.get_feature_names_out()) == ["rbm0", "rbm1", "rbm2"]


# ------------------------------------------------------------------------- errors


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_rejected(digits, bad):
    X = digits[:50].copy()
    X[3, 5] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        fit_rbm(X)
    rbm = fit_rbm(digits[:50], max_iter=1)
    with pytest.raises(ValueError, match="NaN|infinity"):
        rbm.transform(X)
    H = rbm.transform(digits[:5])
    H[0, 0] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        rbm.inverse_transform(H)


def test_bad_shapes_are_rejected(digits):
    with pytest.raises(ValueError, match="2D array"):
        fit_rbm(digits[0])
    with pytest.raises(ValueError, match="0 sample"):
        fit_rbm(np.empty((0, 64)))
    with pytest.raises(ValueError, match="0 feature"):
        fit_rbm(np.empty((10, 0)))
    rbm = fit_rbm(digits[:100], n_components=5, max_iter=1)
    with pytest.raises(ValueError, match="64 features"):
        rbm.transform(digits[:10, :60])
    with pytest.raises(ValueError, match="5 columns"):
        rbm.inverse_transform(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="2D array"):
        rbm.transform(digits[0])


def test_divergence_raises_instead_of_returning_nan():
    X = load_digits().data  # Gaussian units; learning rate 10 blows up within a few epochs
    with pytest.raises(ValueError, match="diverged"):
        fit_rbm(X, learning_rate=10.0, max_iter=30)


# -------------------------------------------------------------------- interrupts


def test_keyboard_interrupt_keeps_weights_so_far(digits, interrupt_kernel):
    interrupt_kernel(rbm_kernels, "cd_epoch", 3)
    rbm = RBM(n_components=8, max_iter=10, n_jobs=1, random_state=0)
    try:
        with pytest.warns(UserWarning, match="interrupted"):
            rbm.fit(digits[:300])
    except KeyboardInterrupt:  # pragma: no cover - a failure, not an abort of the run
        pytest.fail("KeyboardInterrupt escaped fit")
    assert rbm.n_iter_ == 2
    assert len(rbm.reconstruction_error_curve_) == 2
    assert np.isfinite(rbm.components_).all()
    init = np.random.RandomState(0).normal(0.0, 0.1, (8, 64))
    assert not np.allclose(rbm.components_, init)  # two epochs of training were kept
    assert rbm.transform(digits[:5]).shape == (5, 8)


# --------------------------------------------------------------------- hypothesis


@settings(max_examples=15, deadline=None)
@given(
    n_samples=st.integers(2, 40), n_features=st.integers(1, 8), n_components=st.integers(1, 6),
    batch_size=st.integers(1, 50), cd_steps=st.integers(1, 3), persistent=st.booleans(),
    hidden_units=st.sampled_from(["bernoulli", "linear"]), real_valued=st.booleans(),
    dtype=st.sampled_from([np.float64, np.float32]), seed=st.integers(0, 2**31 - 1),
)
def test_fit_succeeds_for_any_small_shape(n_samples, n_features, n_components, batch_size,
                                          cd_steps, persistent, hidden_units, real_valued,
                                          dtype, seed):
    rng = np.random.RandomState(seed)
    X = (rng.randn(n_samples, n_features) * 5 + 2 if real_valued else rng.rand(n_samples, n_features))
    X = X.astype(dtype)
    rbm = RBM(n_components=n_components, batch_size=batch_size, cd_steps=cd_steps,
              persistent=persistent, hidden_units=hidden_units, learning_rate=0.01, max_iter=2,
              n_jobs=1, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from overflow, no stray warnings
        rbm.fit(X)
    H = rbm.transform(X)
    assert H.shape == (n_samples, n_components) and H.dtype == dtype
    assert np.isfinite(H).all()
    V = rbm.inverse_transform(H)
    assert V.shape == X.shape and V.dtype == dtype and np.isfinite(V).all()
    assert rbm.visible_units_ == ("gaussian" if real_valued else "bernoulli")
