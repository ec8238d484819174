"""Fitted state: one parameter vector with views, one gate that checks it, epochs that
commit or roll back whole, and model files of format 1 that keep loading."""

import copy
import io
import json
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_digits

import skdae
from skdae import RBM, RBMStackAutoencoder
from skdae._persist import InvalidModelFileError
from skdae.codec import Codec

V1 = Path(__file__).parent / "data" / "model_files_v1"


@pytest.fixture(scope="module")
def X():
    return (load_digits().data / 16.0).astype(np.float32)[:300]


def small_ae(**params):
    base = dict(hidden_layer_sizes=(16, 4), pretrain_epochs=1, max_iter=3, random_state=0)
    return RBMStackAutoencoder(**{**base, **params})


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        yield


def weights(ae):
    return [np.array(a) for a in ae.coefs_ + ae.intercepts_]


def edit_model_file(path, attribute, new_array):
    """Rewrite the model file at ``path`` with ``attribute``'s array replaced."""
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    header = json.loads(members["skdae.json"])
    node = header["estimator"]["attributes"][attribute]
    buf = io.BytesIO()
    np.lib.format.write_array(buf, new_array, allow_pickle=False)
    members[f"arrays/{node['__ndarray__']}.npy"] = buf.getvalue()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


# ----------------------------------------------------------------- defect 1


def test_partial_fit_after_an_early_stopping_fit_continues(X):
    ae = small_ae(early_stopping=True, max_iter=4).fit(X)
    assert ae.best_loss_ is None and ae.best_validation_score_ is not None
    n_iter, n_scores = ae.n_iter_, len(ae.validation_scores_)
    ae.partial_fit(X)
    assert ae.n_iter_ == n_iter + 1 and len(ae.loss_curve_) == n_iter + 1
    assert ae.best_loss_ == ae.loss_curve_[-1]  # partial_fit tracks the training loss
    assert len(ae.validation_scores_) == n_scores  # and has no validation data
    ae.partial_fit(X)
    assert ae.best_loss_ == min(ae.loss_curve_[-2:])


# ----------------------------------------------------------------- defect 2


@pytest.mark.parametrize(
    "attribute", ["_chain", "_velocity_components", "_velocity_hidden", "_velocity_visible",
                  "components_", "intercept_hidden_", "mean_"]
)
def test_rbm_model_file_with_edited_arrays_is_refused(attribute, X, tmp_path):
    rbm = RBM(n_components=8, max_iter=2, persistent=True, random_state=0).fit(X)
    path = tmp_path / "rbm.skdae"
    skdae.save(rbm, path)
    edit_model_file(path, attribute, np.zeros((1, 1), np.float32))
    with pytest.raises(InvalidModelFileError, match=attribute):
        skdae.load(path)


def test_rbm_with_a_bad_chain_refuses_partial_fit_before_any_kernel(X):
    rbm = RBM(n_components=8, max_iter=2, persistent=True, random_state=0).fit(X)
    before = rbm.components_.copy()
    rbm._chain = np.zeros((1, 1), np.float32)
    with pytest.raises(ValueError, match="inconsistent fitted state: _chain"):
        rbm.partial_fit(X)
    assert_array_equal(rbm.components_, before)
    rbm.n_components = 50  # a parameter changed after fit does not change the shapes used
    rbm._chain = np.zeros((8, 8), np.float32)
    assert rbm.transform(X[:3]).shape == (3, 8)


@pytest.mark.parametrize("attribute", ["_params", "mean_"])
def test_autoencoder_model_file_with_edited_arrays_is_refused(attribute, X, tmp_path):
    path = tmp_path / "ae.skdae"
    skdae.save(small_ae().fit(X), path)
    edit_model_file(path, attribute, np.zeros((1, 1), np.float32))
    with pytest.raises(InvalidModelFileError, match=attribute):
        skdae.load(path)


# ----------------------------------------------------------------- defect 3


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_divergence_in_fine_tuning_rolls_back_to_the_last_finite_epoch(solver, X):
    Xg = X * 50.0  # Gaussian units, squared error: a huge step diverges
    ae = small_ae(solver=solver, visible_units="gaussian", learning_rate=1e-3).fit(Xg)
    healthy = copy.deepcopy(ae)
    ae.set_params(learning_rate=1e30, momentum=0.99)
    with pytest.raises(ValueError, match="diverged"):
        ae.partial_fit(Xg)
    # The failed epoch left nothing behind: counters, weights and optimiser state.
    assert (ae.n_iter_, ae.t_, ae.loss_curve_) == (healthy.n_iter_, healthy.t_, healthy.loss_curve_)
    for a, b in zip(weights(ae), weights(healthy), strict=True):
        assert_array_equal(a, b)
    # So a following partial_fit continues exactly as if the failed call never happened.
    ae.set_params(learning_rate=1e-3, momentum=0.9)
    ae.partial_fit(Xg)
    healthy.partial_fit(Xg)
    for a, b in zip(weights(ae), weights(healthy), strict=True):
        assert np.isfinite(a).all()
        assert_array_equal(a, b)


# ------------------------------------------------------ views of one vector


def assert_views(ae):
    for a in ae.coefs_ + ae.intercepts_:
        assert np.shares_memory(a, ae._params)


@pytest.mark.parametrize(
    "round_trip",
    [
        lambda ae, tmp: pickle.loads(pickle.dumps(ae)),
        lambda ae, tmp: copy.deepcopy(ae),
        lambda ae, tmp: (skdae.save(ae, tmp / "m.skdae"), skdae.load(tmp / "m.skdae"))[1],
    ],
    ids=["pickle", "deepcopy", "model file"],
)
def test_round_trips_rebuild_the_views_and_continue_identically(round_trip, X, tmp_path):
    ae = small_ae(solver="sgd").fit(X)
    assert_views(ae)
    other = round_trip(ae, tmp_path)
    assert_views(other)
    assert not np.shares_memory(other._params, ae._params)
    ae.partial_fit(X)
    other.partial_fit(X)
    for a, b in zip(weights(ae), weights(other), strict=True):
        assert_array_equal(a, b)
    assert other.t_ == ae.t_
    assert_array_equal(other.transform(X), ae.transform(X))
    fresh = clone(ae)
    assert not hasattr(fresh, "coefs_")


def test_transform_uses_the_views_and_assigned_coefs_are_adopted(X):
    ae = small_ae().fit(X)
    codes = ae.transform(X[:5])
    ae.coefs_[0][...] = 0.0  # in place: the vector changes with it
    assert not np.allclose(ae.transform(X[:5]), codes)
    ae.coefs_ = [np.zeros_like(W) for W in ae.coefs_]  # replaced, as one may with an MLP
    assert_allclose(ae.transform(X[:5]), ae.transform(X[:1]).repeat(5, axis=0))
    assert_views(ae)
    ae.coefs_ = ae.coefs_[:2]
    with pytest.raises(ValueError, match="coefs_"):
        ae.transform(X[:5])


def test_parameters_changed_after_fit_do_not_change_the_fitted_network(X):
    ae = small_ae().fit(X)
    codes = ae.transform(X[:5])
    ae.set_params(code_units="sigmoid", hidden_layer_sizes=(7,))
    assert_array_equal(ae.transform(X[:5]), codes)


# ------------------------------------------------- epochs and random streams


def test_a_fit_of_k_epochs_is_the_start_of_a_longer_one(X):
    long = small_ae(max_iter=4, solver="sgd").fit(X)
    short = small_ae(max_iter=2, solver="sgd").fit(X)
    short.partial_fit(X)
    short.partial_fit(X)
    assert short.loss_curve_ == long.loss_curve_
    for a, b in zip(weights(short), weights(long), strict=True):
        assert_array_equal(a, b)


def test_verbose_prints_one_line_per_epoch_of_every_phase(X, capsys):
    small_ae(hidden_layer_sizes=(16, 8, 4), pretrain_epochs=2, max_iter=3, verbose=1).fit(X)
    lines = capsys.readouterr().out.splitlines()
    rbm_lines = [line for line in lines if line.startswith("[RBM ")]
    tune_lines = [line for line in lines if line.startswith("[fine-tune]")]
    assert len(rbm_lines) == 3 * 2 and len(tune_lines) == 3, lines
    assert rbm_lines[0].startswith("[RBM 1/3 (64-16, bernoulli-bernoulli)] epoch 1, ")
    assert rbm_lines[-1].startswith("[RBM 3/3 (8-4, bernoulli-linear)] epoch 2, ")
    assert tune_lines[2].startswith("[fine-tune] epoch 3, cross_entropy ")
    assert all(line.endswith(" s") for line in rbm_lines + tune_lines)


# ---------------------------------------------------------- format-1 files


@pytest.mark.parametrize("name", ["autoencoder_adam", "autoencoder_sgd"])
def test_format_1_autoencoders_load_and_continue(name):
    inputs = np.load(V1 / "expected_inputs.npy")
    expected = np.load(V1 / "expected_outputs.npz")
    ae = skdae.load(V1 / f"{name}.skdae")
    assert_array_equal(ae.transform(inputs), expected[f"{name}_transform"])
    assert_views(ae)
    state = ae._optimizer_state
    assert set(state) == ({"velocity"} if name.endswith("sgd") else {"first_moment", "second_moment"})
    assert any(np.abs(a).sum() > 0 for a in state.values())  # the moments were carried over
    ae.partial_fit(inputs)
    assert np.isfinite(ae._params).all()


def test_format_1_rbm_codec_and_early_stopping_files_load():
    inputs = np.load(V1 / "expected_inputs.npy")
    expected = np.load(V1 / "expected_outputs.npz")
    rbm = skdae.load(V1 / "rbm.skdae")
    assert_array_equal(rbm.transform(inputs), expected["rbm_transform"])
    rbm.partial_fit(inputs)
    early = skdae.load(V1 / "autoencoder_early_stopping.skdae")
    early.partial_fit(inputs)
    codec = skdae.load(V1 / "codec_pipeline.skdae")
    archive = (V1 / "archive_v1.skz").read_bytes()
    # An archive written with the format-1 codec still decodes with the migrated one.
    assert_array_equal(codec.decompress(archive), expected["codec_pipeline_decompress"])
    assert isinstance(codec, Codec)


def test_unknown_format_versions_are_refused_naming_the_version(tmp_path, X):
    path = tmp_path / "m.skdae"
    skdae.save(small_ae().fit(X), path)
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    header = json.loads(members["skdae.json"])
    header["format_version"] = 7
    members["skdae.json"] = json.dumps(header).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(InvalidModelFileError, match="format version 7"):
        skdae.load(path)


def test_fingerprint_covers_the_weights_and_ignores_the_new_parameter_at_its_v1_value(X):
    from skdae._persist import fingerprint

    ae = small_ae().fit(X)
    digest = fingerprint(ae)
    saved = ae.coefs_[1][0, 0]
    ae.coefs_[1][0, 0] += 1.0
    assert fingerprint(ae) != digest
    ae.coefs_[1][0, 0] = saved
    assert fingerprint(ae) == digest
    assert fingerprint(ae.set_params(pretrain_momentum_switch_epoch=5)) == digest
    assert fingerprint(ae.set_params(pretrain_momentum_switch_epoch=3)) != digest


def test_huge_integer_hyperparameters_reach_the_kernels_as_floats(X):
    # 10**30 passes Interval(Real) but would not fit a kernel's int64 argument.
    ae = small_ae(max_iter=1, solver="sgd", learning_rate=1e-3, alpha=0, momentum=0).fit(X)
    ae.set_params(alpha=10**30)
    with pytest.raises(ValueError, match="diverged"):
        ae.partial_fit(X)
    rbm = RBM(n_components=4, max_iter=1, random_state=0, weight_decay=0).fit(X)
    rbm.set_params(weight_decay=10**30)
    with pytest.raises(ValueError, match="diverged"):
        rbm.partial_fit(X)
