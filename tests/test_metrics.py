"""skdae._metrics: the squared error and PSNR every report uses, against NumPy formulas."""

import math

import numpy as np
import pytest

from skdae._metrics import per_sample_squared_error, psnr


@pytest.fixture
def pair():
    """Float32 samples in [0, 1] and noisy reconstructions of them."""
    rng = np.random.default_rng(0)
    X = rng.random((50, 64), dtype=np.float32)
    return X, X + rng.normal(0, 0.1, X.shape).astype(np.float32)


def test_per_sample_squared_error_is_the_direct_formula(pair):
    X, X_rec = pair
    errors = per_sample_squared_error(X, X_rec)
    assert errors.shape == (50,) and errors.dtype == np.float64
    expected = ((X_rec.astype(np.float64) - X.astype(np.float64)) ** 2).sum(axis=1)
    np.testing.assert_allclose(errors, expected, rtol=1e-12)


def test_per_sample_squared_error_sums_over_every_axis_after_the_first(pair):
    X, X_rec = pair
    images = per_sample_squared_error(X.reshape(50, 8, 8), X_rec.reshape(50, 8, 8))
    np.testing.assert_array_equal(images, per_sample_squared_error(X, X_rec))


def test_psnr_is_the_direct_formula(pair):
    X, X_rec = pair
    mse = np.mean((X_rec.astype(np.float64) - X) ** 2)
    assert psnr(X, X_rec) == pytest.approx(10 * np.log10(1 / mse), rel=1e-12)
    # ... which is the mean per-sample error spread over the 64 features of a sample
    errors = per_sample_squared_error(X, X_rec)
    assert psnr(X, X_rec) == pytest.approx(10 * np.log10(64 / errors.mean()), rel=1e-12)
    assert psnr(X, X_rec, data_range=2.0) == pytest.approx(10 * np.log10(4 / mse), rel=1e-12)


def test_known_values():
    X = np.zeros((2, 4))
    assert per_sample_squared_error(X, X + 0.5).tolist() == [1.0, 1.0]
    assert psnr(X, X + 0.1) == pytest.approx(20.0)  # mse 0.01
    assert psnr(X, X + 1.0) == 0.0


def test_integer_inputs_do_not_wrap_around():
    black, white = np.zeros((1, 3), np.uint8), np.full((1, 3), 255, np.uint8)
    assert per_sample_squared_error(black, white).tolist() == [3 * 255.0**2]
    assert per_sample_squared_error(white, black).tolist() == [3 * 255.0**2]
    assert psnr(black, white, data_range=255) == 0.0


def test_8_bit_and_unit_scales_agree():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 256, (2, 10, 28, 28), dtype=np.uint8)
    assert psnr(a, b, data_range=255) == pytest.approx(psnr(a / 255, b / 255), rel=1e-12)


def test_float64_accumulation():
    # float32 arithmetic would be off from 1e-8 (each squared float32 difference is
    # rounded) to 1e-4 (a long float32 sum): 1e-12 tells float64 apart.
    X = np.zeros((1, 1_000_000), np.float32)
    step = np.float32(0.01)
    errors = per_sample_squared_error(X, X + step)
    assert errors[0] == pytest.approx(1_000_000 * float(step) ** 2, rel=1e-12)


def test_exact_match_is_infinite_and_non_finite_values_propagate():
    X = np.ones((3, 5), np.float32)
    assert psnr(X, X.copy()) == math.inf
    assert per_sample_squared_error(X, X).tolist() == [0.0, 0.0, 0.0]
    with_nan = X.copy()
    with_nan[1, 2] = np.nan
    assert math.isnan(psnr(X, with_nan))
    assert np.isnan(per_sample_squared_error(X, with_nan)).tolist() == [False, True, False]
    with_inf = X.copy()
    with_inf[0, 0] = np.inf
    assert psnr(X, with_inf) == -math.inf


def test_lists_are_accepted():
    assert per_sample_squared_error([[0.0, 1.0]], [[1.0, 1.0]]).tolist() == [1.0]


@pytest.mark.parametrize(
    "X, X_rec, match",
    [
        (np.zeros((3, 4)), np.zeros((3, 5)), "same shape"),
        (np.zeros((3, 4)), np.zeros((4, 3)), "same shape"),
        (np.zeros((0, 4)), np.zeros((0, 4)), "non-empty"),
        (np.float64(1.0), np.float64(1.0), "non-empty"),
    ],
)
def test_bad_inputs(X, X_rec, match):
    with pytest.raises(ValueError, match=match):
        per_sample_squared_error(X, X_rec)
    with pytest.raises(ValueError, match=match):
        psnr(X, X_rec)


@pytest.mark.parametrize("data_range", [0, -1.0, math.inf, math.nan, "1", None])
def test_bad_data_range(data_range):
    with pytest.raises(ValueError, match="data_range"):
        psnr(np.zeros((1, 2)), np.ones((1, 2)), data_range=data_range)
