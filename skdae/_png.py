"""A minimal grayscale PNG writer, so the demo needs no imaging library."""

import struct
import zlib

import numpy as np


def write_png_gray(path, image):
    """Write a 2-D uint8 array as an 8-bit grayscale PNG."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {image.shape}")
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

    ``rows`` is a list of 2-D arrays ``(n_images, h * w)``, one per picture row.
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
