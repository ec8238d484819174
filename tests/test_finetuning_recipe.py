"""Fine-tuning recipes: learning-rate schedules and on-the-fly augmentation."""

import copy
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

import skdae
from skdae import RBMStackAutoencoder
from skdae.augment import RandomDeformation


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def small(**params):
    defaults = dict(hidden_layer_sizes=(32, 8), pretrain_epochs=1, max_iter=4, n_jobs=1,
                    random_state=0)
    return RBMStackAutoencoder(**{**defaults, **params})


def documented_rate(schedule, learning_rate, epoch, max_iter, power_t=0.5):
    """The docstring's formulas, written out again."""
    if schedule == "constant":
        return learning_rate
    if schedule == "invscaling":
        return learning_rate / (epoch + 1) ** power_t
    k = min(epoch, max_iter - 1)
    return learning_rate * (1 + np.cos(np.pi * k / max_iter)) / 2


@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("schedule", ["invscaling", "cosine"])
def test_each_epoch_steps_at_the_documented_rate(digits, schedule, solver):
    # Epoch k of a scheduled fit is the epoch a constant-rate model would take from the
    # same weights and optimiser state at the documented rate; past max_iter (partial_fit)
    # the cosine schedule keeps its last rate.
    X = digits[:300]
    ae = small(solver=solver, learning_rate=0.02 if solver == "sgd" else 3e-3,
               learning_rate_schedule=schedule, power_t=0.7, max_iter=3)
    ae.partial_fit(X)
    rates = []
    for epoch in range(1, 5):
        twin = copy.deepcopy(ae).set_params(
            learning_rate_schedule="constant",
            learning_rate=documented_rate(schedule, ae.learning_rate, epoch, 3, 0.7))
        ae.partial_fit(X)
        twin.partial_fit(X)
        np.testing.assert_allclose(ae._params, twin._params, rtol=1e-9, atol=1e-12)
        rates.append(twin.learning_rate)
    if schedule == "cosine":
        assert rates[0] > rates[1] == rates[2] == rates[3]  # epochs 1, 2, then kept
    else:
        assert rates[0] > rates[1] > rates[2] > rates[3]


def test_schedules_differ_from_constant_and_validate(digits):
    X = digits[:300]
    constant = small().fit(X)
    cosine = small(learning_rate_schedule="cosine").fit(X)
    # The first epoch is at the full rate under every schedule, the next ones are not.
    first = small(max_iter=1).fit(X)
    np.testing.assert_array_equal(first._params, small(max_iter=1, learning_rate_schedule="cosine")
                                  .fit(X)._params)
    assert not np.allclose(constant._params, cosine._params)
    with pytest.raises(ValueError, match="learning_rate_schedule"):
        small(learning_rate_schedule="adaptive").fit(X)


@pytest.mark.parametrize("schedule", ["cosine", "invscaling"])
def test_partial_fit_and_a_model_file_continue_the_schedule(digits, tmp_path, schedule):
    X = digits[:300].astype(np.float32)
    params = dict(learning_rate_schedule=schedule, augmentation=RandomDeformation((8, 8)))
    whole = small(**params).fit(X)
    stepwise = small(**params)
    stepwise.partial_fit(X)
    stepwise.partial_fit(X)
    skdae.save(stepwise, tmp_path / "half.skdae")
    resumed = skdae.load(tmp_path / "half.skdae")
    assert resumed.get_params()["learning_rate_schedule"] == schedule
    assert resumed.augmentation.get_params() == params["augmentation"].get_params()
    resumed.partial_fit(X)
    resumed.partial_fit(X)
    assert resumed.n_iter_ == whole.n_iter_ == 4
    np.testing.assert_array_equal(resumed._params, whole._params)


def test_default_recipe_keeps_older_fingerprints(digits):
    # New parameters at their defaults stay out of the fingerprint, so archives written
    # before them still decode.
    from skdae._persist import fingerprint

    ae = small(max_iter=1).fit(digits[:100])
    before = fingerprint(ae)
    ae.set_params(learning_rate_schedule="cosine")
    assert fingerprint(ae) != before
    ae.set_params(learning_rate_schedule="constant", augmentation=RandomDeformation())
    assert fingerprint(ae) != before
    ae.set_params(augmentation=None)
    assert fingerprint(ae) == before


def test_augmentation_is_seeded_and_touches_fine_tuning_only(digits):
    X = digits[:300]
    plain = small().fit(X)
    shifted = small(augmentation=RandomDeformation((8, 8))).fit(X)
    again = clone(shifted).fit(X)
    np.testing.assert_array_equal(shifted._params, again._params)
    assert plain.pretrain_curves_ == shifted.pretrain_curves_
    assert not np.allclose(plain._params, shifted._params)
    other_seed = small(augmentation=RandomDeformation((8, 8)), random_state=1).fit(X)
    assert not np.allclose(other_seed._params, shifted._params)


def test_augmentation_helps_on_shifted_images(digits):
    # Trained on 300 digits, tested on held-out digits shifted by one pixel: the model
    # that saw shifted digits reconstructs them better.
    rng = np.random.default_rng(0)
    X_train, X_test = digits[:300], digits[1000:1400]
    shifted = RandomDeformation((8, 8)).deform(X_test, rng)
    params = dict(hidden_layer_sizes=(64, 24), max_iter=40, pretrain_epochs=3)
    plain = small(**params).fit(X_train)
    augmented = small(**params, augmentation=RandomDeformation((8, 8))).fit(X_train)
    assert augmented.score(shifted) > plain.score(shifted)


def test_augmentation_deforms_gaussian_inputs_in_input_units(real_data):
    # Real-valued rows (offset 40): the background moved in is 0 in input units; the
    # standardised network trains on finite data and learns.
    ae = small(augmentation=RandomDeformation((8, 8)), max_iter=3).fit(real_data)
    assert ae.visible_units_ == "gaussian" and np.isfinite(ae._params).all()
    chunk = ae._visible_input(real_data[:20]).astype(ae._dtype)
    raw = ae._unscale(ae._deformed(chunk, (0, 1, 2)))
    np.testing.assert_allclose(raw, RandomDeformation((8, 8)).deform(
        real_data[:20], np.random.default_rng(np.random.SeedSequence((0, 1, 2)))),
        rtol=1e-5, atol=1e-3)


def test_augmentation_refuses_data_it_cannot_deform(digits):
    with pytest.raises(ValueError, match="sparse"):
        small(augmentation=RandomDeformation((8, 8))).fit(sp.csr_matrix(digits[:50]))
    with pytest.raises(ValueError, match="images of 60 pixels, but the rows have 64"):
        small(augmentation=RandomDeformation((6, 10))).fit(digits[:50])
    with pytest.raises(ValueError, match="augmentation"):
        small(augmentation="shift").fit(digits[:50])
