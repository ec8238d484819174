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
