"""The image deformations behind the scale benchmark (and training augmentation)."""

import numpy as np
import pytest

from skdae.augment import BATCH, augment, write_augmented


@pytest.fixture(scope="module")
def strokes():
    images = np.zeros((20, 28, 28), np.uint8)
    for i in range(20):
        images[i, 6:22, 8 + i % 6 : 12 + i % 6] = 255
    return images


def test_augment_deforms_a_little_and_is_seeded(strokes):
    out = augment(strokes, random_state=0)
    assert out.shape == strokes.shape and out.dtype == np.uint8
    assert np.array_equal(out, augment(strokes, random_state=0))
    assert not np.array_equal(out, augment(strokes, random_state=1))
    # Small deformations: the ink moves, but mostly stays where it was.
    moved = np.abs(out.astype(int) - strokes).sum(axis=(1, 2))
    assert (moved > 0).all()
    overlap = ((out > 127) & (strokes > 127)).sum(axis=(1, 2)) / (strokes > 127).sum(axis=(1, 2))
    assert np.median(overlap) > 0.3
    floats = augment(strokes / np.float32(255), random_state=0, max_shift=0, max_rotation=0,
                     alpha=0)
    np.testing.assert_allclose(floats, strokes / np.float32(255), atol=1e-6)


@pytest.mark.parametrize("kind", ["memmap", "zarr"])
def test_write_augmented_rows_depend_on_their_index_only(strokes, tmp_path, kind):
    if kind == "zarr":
        pytest.importorskip("zarr")
    n = BATCH + 5
    X = write_augmented(strokes, n, tmp_path / "x", kind=kind, random_state=3)
    assert X.shape == (n, 784) and X.dtype == np.uint8
    first = augment(strokes[np.arange(BATCH) % 20], np.random.default_rng([3, 0]))
    np.testing.assert_array_equal(np.asarray(X[:BATCH]), first.reshape(BATCH, -1))
    tail = augment(strokes[np.arange(BATCH, n) % 20], np.random.default_rng([3, 1]))
    np.testing.assert_array_equal(np.asarray(X[BATCH:]), tail.reshape(5, -1))


# ------------------------------------------------------- RandomDeformation (training)

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from skdae.augment import RandomDeformation  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 30), h=st.integers(1, 12), w=st.integers(1, 12),
    max_shift=st.floats(0, 4), whole_pixels=st.booleans(),
    max_rotation=st.sampled_from([0.0, 15.0]), alpha=st.sampled_from([0.0, 1.5]),
    axis_only=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]), offset=st.sampled_from([0.0, -0.5]),
    seed=st.integers(0, 2**32 - 1),
)
def test_deform_keeps_shape_dtype_range_and_is_seeded(n, h, w, max_shift, whole_pixels,
                                                      max_rotation, alpha, axis_only, dtype,
                                                      offset, seed):
    X = (np.random.default_rng(seed).random((n, h * w)) + offset).astype(dtype)
    deformation = RandomDeformation((h, w), max_shift=max_shift, whole_pixels=whole_pixels,
                                    max_rotation=max_rotation, alpha=alpha,
                                    axis_only=axis_only)
    out = deformation.deform(X, random_state=seed)
    assert out.shape == X.shape and out.dtype == X.dtype
    # Interpolation averages neighbours and the pixels moved in are zero.
    low, high = min(X.min(), 0.0), max(X.max(), 0.0)
    tiny = 1e-5 if dtype == np.float32 else 1e-12
    assert out.min() >= low - tiny and out.max() <= high + tiny
    np.testing.assert_array_equal(out, deformation.deform(X, random_state=seed))


def test_whole_pixel_shifts_move_images_without_resampling():
    rng = np.random.default_rng(0)
    X = rng.random((500, 7 * 9)).astype(np.float32)
    out = RandomDeformation((7, 9), max_shift=1).deform(X, random_state=1)
    images, moved = X.reshape(-1, 7, 9), out.reshape(-1, 7, 9)
    seen = set()
    for image, result in zip(images, moved):
        # Exactly one of the nine whole-pixel shifts (zero filled) reproduces the result.
        matches = []
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                padded = np.pad(image, 1)
                expected = padded[1 + dy : 8 + dy, 1 + dx : 10 + dx]
                if np.array_equal(result, expected):
                    matches.append((dy, dx))
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) == 9  # every shift occurs, the original (0, 0) among them


@pytest.mark.parametrize("max_shift", [1, 2.5])
def test_axis_only_shifts_move_along_one_axis_uniformly_over_positions(max_shift):
    rng = np.random.default_rng(0)
    X = rng.random((2000, 7 * 9)).astype(np.float32)
    out = RandomDeformation((7, 9), max_shift=max_shift, axis_only=True).deform(
        X, random_state=1)
    reach = int(max_shift)
    positions = [(0, 0)] + [p for s in range(1, reach + 1)
                            for p in ((s, 0), (-s, 0), (0, s), (0, -s))]
    counts = dict.fromkeys(positions, 0)
    for image, result in zip(X.reshape(-1, 7, 9), out.reshape(-1, 7, 9)):
        padded = np.pad(image, reach)
        matches = [(dy, dx) for dy, dx in positions if np.array_equal(
            result, padded[reach + dy : reach + 7 + dy, reach + dx : reach + 9 + dx])]
        assert len(matches) == 1  # one of the axis shifts, never a diagonal one
        counts[matches[0]] += 1
    # Uniform over the 4 * reach + 1 positions, the original among them (binomial bounds).
    expected = len(X) / len(positions)
    assert all(abs(c - expected) < 5 * np.sqrt(expected) for c in counts.values()), counts


def test_axis_only_fractional_shifts_keep_one_coordinate():
    # A single lit pixel moved by a fractional amount spreads along one line only.
    X = np.zeros((200, 15 * 15), np.float32)
    X[:, 7 * 15 + 7] = 1.0
    out = RandomDeformation(max_shift=1.5, whole_pixels=False, axis_only=True).deform(
        X, random_state=0).reshape(-1, 15, 15)
    lit_rows = (out > 1e-6).any(axis=2).sum(axis=1)
    lit_cols = (out > 1e-6).any(axis=1).sum(axis=1)
    assert ((lit_rows == 1) | (lit_cols == 1)).all()
    assert (lit_rows > 1).any() and (lit_cols > 1).any()  # both axes occur


def test_fractional_shifts_and_rotations_deform_every_image():
    X = np.zeros((50, 28 * 28), np.float32)
    X.reshape(-1, 28, 28)[:, 6:22, 12:16] = 1.0
    out = RandomDeformation(max_shift=2, whole_pixels=False, max_rotation=10, alpha=1).deform(
        X, random_state=0)
    assert (np.abs(out - X).sum(axis=1) > 0).all()
    # Small deformations: most of the ink stays (mass roughly kept).
    np.testing.assert_allclose(out.sum(axis=1), X.sum(axis=1), rtol=0.2)


def test_deformation_refuses_rows_that_are_not_its_images():
    with pytest.raises(ValueError, match="not a square number"):
        RandomDeformation().deform(np.zeros((2, 10)))
    with pytest.raises(ValueError, match="images of 12 pixels, but the rows have 16"):
        RandomDeformation((3, 4)).deform(np.zeros((2, 16)))
    with pytest.raises(ValueError, match="max_shift"):
        RandomDeformation(max_shift=np.inf).deform(np.zeros((2, 16)))
    with pytest.raises(ValueError, match="flattened images"):
        RandomDeformation((2, 2)).deform(np.zeros((2, 2, 2)))
