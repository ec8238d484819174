"""The linear path of RBMStackAutoencoder (``linear_path``): a PCA inside the network.

With Gaussian visible units the network starts as PCA of the standardised data and the
non-linear layers learn the residual, so that on real-valued data (here grey patches of
scikit-learn's sample photographs) the estimator with its defaults is never far below PCA
on held-out data. Every fit passes ``n_jobs=1`` (tiny matrices on a shared machine).
"""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_sample_image, make_s_curve
from sklearn.decomposition import PCA
from sklearn.feature_extraction.image import extract_patches_2d

import skdae
from skdae import RBMStackAutoencoder
from skdae import _finetuning as finetuning
from skdae._state import FittedStateError

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def photo_patches(name, n_patches, seed, size=8):
    """Grey ``size x size`` patches (in [0, 1]) of one of scikit-learn's sample photos."""
    grey = load_sample_image(name).astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255
    patches = extract_patches_2d(grey, (size, size), max_patches=n_patches, random_state=seed)
    return patches.reshape(n_patches, -1).astype(np.float32)


@pytest.fixture(scope="module")
def patches():
    return photo_patches("china.jpg", 2000, 0), photo_patches("flower.jpg", 1000, 1)


@pytest.fixture(scope="module")
def same_photo_patches():
    """New patches of each photograph: held out from the same distribution."""
    return photo_patches("china.jpg", 1000, 2), photo_patches("flower.jpg", 1000, 3)


def psnr(X, R):
    return 10 * np.log10(1.0 / np.mean((np.asarray(X, np.float64) - R) ** 2))


def reconstruct(model, X):
    return model.inverse_transform(model.transform(X))


def small_gaussian_ae(code, **params):
    """The defaults (Gaussian visible units asked for, as for real-valued data), with a
    small encoder and few epochs to keep the test fast."""
    params = {"visible_units": "gaussian", "pretrain_epochs": 2, "max_iter": 10, "n_jobs": 1,
              "random_state": 0, **params}
    return RBMStackAutoencoder((64, 32, code), **params)


@pytest.mark.parametrize("train, test", [(0, 1), (1, 0)])
def test_defaults_are_never_far_below_pca_on_held_out_photo_patches(patches, same_photo_patches,
                                                                    train, test):
    X_train = patches[train]
    code = 8
    pca = PCA(code).fit(X_train)
    ae = small_gaussian_ae(code).fit(X_train)
    assert ae.linear_path_ and ae.validation_scores_ is not None  # early_stopping="auto"
    # The other photograph, and new patches of the training one.
    for X_test in (patches[test], same_photo_patches[train], X_train):
        assert psnr(X_test, reconstruct(ae, X_test)) >= psnr(X_test, reconstruct(pca, X_test)) - 0.1


def test_without_the_linear_path_the_same_fit_is_far_below_pca(patches):
    # The issue this path fixes (issue 11): the Gaussian-visible network, trained briefly.
    X_train, X_test = patches
    pca = PCA(8).fit(X_train)
    ae = small_gaussian_ae(8, linear_path=False).fit(X_train)
    assert not ae.linear_path_ and ae.components_ is None
    assert psnr(X_test, reconstruct(ae, X_test)) < psnr(X_test, reconstruct(pca, X_test)) - 1


def test_the_network_starts_exactly_at_pca(patches):
    X = patches[0].astype(np.float64)
    # One epoch at a negligible step: the weights stay where they started.
    ae = small_gaussian_ae(8, max_iter=1, learning_rate=1e-14, early_stopping=False).fit(X)
    pca = PCA(8, svd_solver="full").fit(X)
    assert_allclose(ae.components_, pca.components_, atol=1e-6)  # signs included
    # One scale for every feature: the codes are PCA's, divided by it.
    assert_allclose(ae.scale_, np.sqrt(X.var(axis=0).mean()))
    assert_allclose(ae.transform(X) * ae.scale_[0], pca.transform(X), rtol=1e-6, atol=1e-7)
    assert_allclose(reconstruct(ae, X), reconstruct(pca, X), rtol=1e-6, atol=1e-7)


def test_early_stopping_keeps_the_pca_start_when_no_epoch_beats_it(patches):
    X = patches[0]
    start = small_gaussian_ae(8, max_iter=1, learning_rate=1e-14, early_stopping=True).fit(X)
    # A step so large that every epoch lands worse than where it started.
    ae = small_gaussian_ae(8, early_stopping=True, learning_rate=0.3, max_iter=3,
                           n_iter_no_change=3).fit(X)
    assert max(ae.validation_scores_) < ae.best_validation_score_
    # Same validation split and standardisation: the PCA start, up to the rows left out.
    assert psnr(X, reconstruct(ae, X)) > psnr(X, reconstruct(start, X)) - 0.01
    assert_array_equal(ae.coefs_[2], 0)  # the code layer's weights, where they started


def s_curve_fit(X):
    # Leaving the PCA start takes the non-linear layers tens of epochs without progress,
    # longer than the default patience.
    return RBMStackAutoencoder((64, 32, 2), pretrain_epochs=2, max_iter=100,
                               n_iter_no_change=100, n_jobs=1, random_state=0).fit(X)


@pytest.mark.parametrize("margin", [0.0, 0.999])
def test_an_epoch_replaces_the_pca_start_only_past_the_margin(monkeypatch, margin):
    # Rows held out of the training set share what is peculiar to it (issue 11: on
    # overlapping patches of one photograph, the layers gain on new patches of it and
    # lose on another photograph), so the PCA start yields only to a clear gain.
    X = make_s_curve(3000, noise=0.02, random_state=0)[0]
    monkeypatch.setattr(finetuning, "LINEAR_PATH_MARGIN", margin)
    ae = s_curve_fit(X)
    if margin == 0:
        assert ae.best_validation_score_ == max(ae.validation_scores_)
        assert np.abs(ae.coefs_[2]).max() > 0
    else:
        # Epochs beat the start, by less than the (unreachable) margin: the start stays.
        assert ae.best_validation_score_ < max(ae.validation_scores_)
        assert_array_equal(ae.coefs_[2], 0)  # the code layer's weights, where they started
        assert_allclose(reconstruct(ae, X), reconstruct(PCA(2).fit(X), X), atol=0.05)


def test_auto_keeps_bernoulli_models_as_they_were():
    X = np.random.RandomState(0).rand(200, 16)
    ae = RBMStackAutoencoder((12, 4), pretrain_epochs=1, max_iter=2, n_jobs=1,
                             random_state=0).fit(X)
    assert ae.visible_units_ == "bernoulli" and not ae.linear_path_ and ae.components_ is None
    same = RBMStackAutoencoder((12, 4), pretrain_epochs=1, max_iter=2, n_jobs=1,
                               random_state=0, linear_path=False).fit(X)
    assert_array_equal(ae._params, same._params)


def test_auto_leaves_sigmoid_codes_alone_and_true_refuses_them(patches):
    ae = small_gaussian_ae(4, code_units="sigmoid", max_iter=1).fit(patches[0][:300])
    assert not ae.linear_path_
    with pytest.raises(ValueError, match="linear_path=True needs Gaussian visible units"):
        small_gaussian_ae(4, code_units="sigmoid", linear_path=True).fit(patches[0][:300])
    with pytest.raises(ValueError, match="linear_path=True needs Gaussian visible units"):
        small_gaussian_ae(4, visible_units="bernoulli", linear_path=True).fit(patches[0][:300])


def test_code_larger_than_the_features_pads_with_zero_axes():
    X = np.random.RandomState(0).randn(100, 3)
    ae = RBMStackAutoencoder((8, 5), pretrain_epochs=1, max_iter=2, n_jobs=1,
                             random_state=0).fit(X)
    assert ae.components_.shape == (5, 3)
    assert_allclose(ae.components_[:3] @ ae.components_[:3].T, np.eye(3), atol=1e-6)
    assert_array_equal(ae.components_[3:], 0)


def test_sparse_and_dense_input_give_the_same_axes():
    rng = np.random.RandomState(0)
    X = rng.randn(300, 10) * (rng.rand(300, 10) < 0.3)
    dense = RBMStackAutoencoder((8, 3), pretrain_epochs=1, max_iter=1, n_jobs=1, random_state=0,
                                chunk_size=70).fit(X)
    sparse = RBMStackAutoencoder((8, 3), pretrain_epochs=1, max_iter=1, n_jobs=1, random_state=0,
                                 chunk_size=70).fit(sp.csr_matrix(X))
    assert_allclose(sparse.components_, dense.components_, atol=1e-10)
    assert_allclose(sparse.transform(X), dense.transform(X), atol=1e-8)


def test_scheduled_partial_fit_starts_fine_tuning_at_pca(patches):
    X = patches[0][:600].astype(np.float64)
    ae = small_gaussian_ae(6, samples_per_pass=600, pretrain_epochs=1, learning_rate=1e-14)
    for _ in range(3):  # one pass per RBM
        ae.partial_fit(X)
    assert ae._schedule_phase is None
    ae.partial_fit(X)  # one fine-tuning pass at a negligible step
    reference = PCA(6, svd_solver="full").fit(X)
    assert_allclose(reconstruct(ae, X), reconstruct(reference, X), rtol=1e-6, atol=1e-7)


def test_s_curve_the_non_linear_layers_beat_pca():
    # Points on a bent sheet, coded with two units: PCA keeps a plane, the autoencoder
    # starts there and unbends the sheet. Leaving the PCA start takes the non-linear
    # layers tens of epochs without progress, longer than the default patience.
    X = make_s_curve(3000, noise=0.02, random_state=0)[0]
    X_test = make_s_curve(1000, noise=0.02, random_state=1)[0]
    pca = PCA(2).fit(X)
    ae = s_curve_fit(X)
    assert ae.linear_path_
    assert psnr(X_test, reconstruct(ae, X_test)) > psnr(X_test, reconstruct(pca, X_test)) + 1


def test_model_files_keep_the_linear_path(patches, tmp_path):
    ae = small_gaussian_ae(4, max_iter=2).fit(patches[0][:500])
    skdae.save(ae, tmp_path / "ae.skdae")
    loaded = skdae.load(tmp_path / "ae.skdae")
    assert loaded.linear_path_ and loaded.linear_path == "auto"
    assert_array_equal(loaded.components_, ae.components_)
    assert_array_equal(loaded.transform(patches[1]), ae.transform(patches[1]))


@pytest.mark.parametrize("bad, message", [
    (lambda ae: setattr(ae, "components_", ae.components_[:, :-1].copy()), "components_ has shape"),
    (lambda ae: setattr(ae, "components_", ae.components_.astype(np.float64)), "dtype"),
    (lambda ae: setattr(ae, "components_", np.asfortranarray(ae.components_)), "contiguous"),
    (lambda ae: setattr(ae, "components_", None), "components_ is a NoneType"),
    (lambda ae: setattr(ae, "linear_path_", "yes"), "not a bool"),
    (lambda ae: setattr(ae, "visible_units_", "bernoulli"), "linear_path_ is set"),
])
def test_inconsistent_linear_path_state_is_refused(patches, bad, message):
    ae = small_gaussian_ae(4, max_iter=1).fit(patches[0][:300])
    bad(ae)
    with pytest.raises(FittedStateError, match=message):
        ae.transform(patches[1][:5])


def test_components_without_the_linear_path_are_refused(patches):
    ae = small_gaussian_ae(4, max_iter=1, linear_path=False).fit(patches[0][:300])
    ae.components_ = np.zeros((4, 64), np.float32)
    with pytest.raises(FittedStateError, match="components_ is set but linear_path_ is False"):
        ae.transform(patches[1][:5])
