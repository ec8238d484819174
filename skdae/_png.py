"""A minimal grayscale PNG writer, so the demo needs no imaging library."""

import struct
import zlib

import numpy as np


def write_png_gray(path, image):
    """Write a 2-D uint8 array as an 8-bit grayscale PNG.

    The file holds one IDAT chunk of unfiltered scanlines, deflated at level 9: enough for
    the demo's small picture, and readable by any PNG decoder.

    Parameters
    ----------
    path : str or path-like
        File to write (overwritten).
    image : array-like of shape (height, width), dtype uint8
        Gray levels, 0 black to 255 white.

    Raises
    ------
    ValueError
        If ``image`` is not 2-D or not uint8 (a float image in [0, 1] would otherwise be
        truncated to black), or has a zero-sized side (PNG has no empty images).
    """
    image = np.asarray(image)
    if image.ndim != 2 or image.dtype != np.uint8 or 0 in image.shape:
        raise ValueError(
            f"expected a non-empty 2-D uint8 image, got shape {image.shape}, dtype {image.dtype}"
        )
    image = np.ascontiguousarray(image)
    height, width = image.shape
    # Each scanline starts with filter type 0 (none).
    raw = np.hstack([np.zeros((height, 1), np.uint8), image]).tobytes()

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", header))
        f.write(chunk(b"IDAT", zlib.compress(raw, 9)))
        f.write(chunk(b"IEND", b""))


def image_grid(rows, image_shape, pad=2):
    """Tile rows of flattened images in [0, 1] into one uint8 picture.

    Parameters
    ----------
    rows : list of array-like of shape (n_images, height * width)
        One picture row each; values outside [0, 1] are clipped.
    image_shape : tuple of int
        ``(height, width)`` of one image.
    pad : int, default=2
        White pixels around and between the images.

    Returns
    -------
    grid : ndarray of shape (len(rows) * (height + pad) + pad, n_cols * (width + pad) + pad)
        uint8 picture, white (255) background, where ``n_cols`` is the longest row's
        length; an image value ``v`` becomes ``round(255 * (1 - v))`` (dark ink on white).
    """
    h, w = image_shape
    n_cols = max(r.shape[0] for r in rows)
    grid = np.full(
        (len(rows) * (h + pad) + pad, n_cols * (w + pad) + pad), 255, np.uint8
    )
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            pixels = np.clip(np.asarray(img, np.float64).reshape(h, w), 0.0, 1.0)
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            # Dark ink on white, as digits are usually shown.
            grid[y : y + h, x : x + w] = np.round(255 * (1.0 - pixels)).astype(np.uint8)
    return grid
