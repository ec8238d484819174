"""skdae._png: the demo's grayscale PNG writer and image grid.

The files are checked twice: decoded by Pillow (an independent decoder), and taken apart
chunk by chunk against the PNG specification (signature, IHDR fields, CRCs, deflate data).
"""

import importlib.util
import struct
import zlib

import numpy as np
import pytest

from skdae._png import image_grid, write_png_gray

SHAPES = [(1, 1), (3, 7), (7, 3), (28, 28), (1, 300), (64, 1)]

needs_pillow = pytest.mark.skipif(
    importlib.util.find_spec("PIL") is None, reason="Pillow is not installed"
)


def _random_image(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _chunks(data):
    """``[(type, payload)]`` of a PNG file, checking each chunk's length and CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, payload = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        assert len(payload) == length, f"{kind} chunk cut short"
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + payload), f"bad CRC in {kind}"
        chunks.append((kind, payload))
        pos += 12 + length
    return chunks


@pytest.mark.parametrize("shape", SHAPES)
def test_structure_follows_the_png_specification(tmp_path, shape):
    image = _random_image(shape)
    path = tmp_path / "x.png"
    write_png_gray(path, image)
    chunks = _chunks(path.read_bytes())
    assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    height, width = shape
    # width, height, bit depth 8, colour type 0 (gray), deflate, adaptive filters, no interlace
    assert struct.unpack(">IIBBBBB", chunks[0][1]) == (width, height, 8, 0, 0, 0, 0)
    scanlines = np.frombuffer(zlib.decompress(chunks[1][1]), np.uint8).reshape(height, width + 1)
    assert not scanlines[:, 0].any()  # filter type 0 (none) on every line
    np.testing.assert_array_equal(scanlines[:, 1:], image)
    assert chunks[2][1] == b""


@needs_pillow
@pytest.mark.parametrize("shape", SHAPES)
def test_pillow_decodes_every_gray_level_exactly(tmp_path, shape):
    from PIL import Image

    image = _random_image(shape, seed=1)
    path = tmp_path / "x.png"
    write_png_gray(path, image)
    with Image.open(path) as decoded:
        assert decoded.mode == "L" and decoded.size == (shape[1], shape[0])
        np.testing.assert_array_equal(np.asarray(decoded), image)


@needs_pillow
def test_all_256_levels_and_non_contiguous_input(tmp_path):
    from PIL import Image

    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    for image in (levels, levels.T, levels[::2, ::-1]):
        path = tmp_path / "levels.png"
        write_png_gray(path, image)
        with Image.open(path) as decoded:
            np.testing.assert_array_equal(np.asarray(decoded), image)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros(5, np.uint8),
        np.zeros((2, 2, 3), np.uint8),
        np.zeros((0, 4), np.uint8),
        np.full((2, 2), 0.5),  # float pixels would be truncated to black
        np.zeros((2, 2), np.int64),
    ],
    ids=["1-D", "RGB", "empty", "float", "int64"],
)
def test_refuses_what_it_cannot_write_exactly(tmp_path, image):
    path = tmp_path / "x.png"
    with pytest.raises(ValueError, match="2-D uint8"):
        write_png_gray(path, image)
    assert not path.exists()


def test_image_grid_layout_and_values():
    ink = np.array([[0.0, 1.0, 0.5, -1.0, 2.0, 0.25]])  # one 2x3 image, out-of-range clipped
    blank = np.zeros((1, 6))
    grid = image_grid([np.vstack([ink, blank]), ink], (2, 3), pad=1)
    assert grid.dtype == np.uint8
    assert grid.shape == (2 * (2 + 1) + 1, 2 * (3 + 1) + 1)
    expected_ink = np.array([[255, 0, 128], [255, 0, 191]], np.uint8)  # 255 * (1 - v), rounded
    np.testing.assert_array_equal(grid[1:3, 1:4], expected_ink)
    np.testing.assert_array_equal(grid[1:3, 5:8], 255)  # the blank image is white
    np.testing.assert_array_equal(grid[4:6, 1:4], expected_ink)
    # the second row is one image short: white there, and white padding everywhere
    np.testing.assert_array_equal(grid[4:6, 5:8], 255)
    padding = np.ones(grid.shape, bool)
    for y in (1, 4):
        for x in (1, 5):
            padding[y : y + 2, x : x + 3] = False
    assert (grid[padding] == 255).all()
