"""Random deformations of images: shifts, small rotations and elastic distortions.

The "infinite MNIST" idea (Loosli, Canu and Bottou, 2007; elastic distortions after
Simard, Steinkraus and Platt, 2003): every new sample is a training image moved by a
random smooth displacement field, so a few thousand digits become as many distinct
examples as one wants. :func:`augment` deforms a batch; :func:`write_augmented` writes N
deformed copies of a set of images to a memory-mapped file or a Zarr array, a batch at a
time, for benchmarks and out-of-core training.

Randomness is seeded per batch of :data:`BATCH` images (``SeedSequence([seed, batch])``):
image ``i`` of the output is the same whatever writes it and in whatever order.

Examples
--------
>>> import numpy as np
>>> from skdae.augment import augment
>>> digits = np.zeros((2, 28, 28), np.uint8); digits[:, 10:18, 12:16] = 255
>>> augment(digits, random_state=0).shape
(2, 28, 28)
"""

import numpy as np

__all__ = ["augment", "write_augmented"]

# Images deformed per random stream by write_augmented.
BATCH = 8192


def augment(images, random_state=None, *, max_shift=2.0, max_rotation=10.0, alpha=2.0,
            sigma=4.0):
    """Randomly shifted, rotated and elastically distorted copies of ``images``.

    Each image is resampled (bilinear, zero outside) at ``R (p - c) + c + s + d(p)``:
    a rotation ``R`` by up to ``max_rotation`` degrees about the centre ``c``, a shift
    ``s`` of up to ``max_shift`` pixels in each direction, and an elastic displacement
    field ``d``: uniform noise in [-1, 1] per pixel, smoothed by a Gaussian of ``sigma``
    pixels and scaled so its largest displacement is ``alpha`` pixels.

    Parameters
    ----------
    images : ndarray of shape (n, height, width)
        Images, uint8 or float.
    random_state : int, Generator, RandomState or None, default=None
        Source of the deformations.
    max_shift : float, default=2.0
    max_rotation : float, default=10.0
    alpha : float, default=2.0
    sigma : float, default=4.0

    Returns
    -------
    deformed : ndarray of the shape and dtype of ``images``
    """
    from scipy import ndimage

    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"expected images of shape (n, height, width), got {images.shape}")
    rng = random_state if isinstance(random_state, np.random.Generator) else (
        np.random.default_rng(random_state if not isinstance(random_state, np.random.RandomState)
                              else random_state.randint(2**31)))
    n, h, w = images.shape
    angle = np.deg2rad(rng.uniform(-max_rotation, max_rotation, n))[:, None, None]
    shift = rng.uniform(-max_shift, max_shift, (2, n, 1, 1))
    field = rng.uniform(-1.0, 1.0, (2, n, h, w))
    for k in range(2):
        field[k] = ndimage.gaussian_filter(field[k], sigma=(0, sigma, sigma), mode="constant")
    # Smoothing shrinks the noise by a factor that depends on sigma: rescale each image's
    # field so that alpha is its largest displacement, in pixels, whatever sigma.
    field *= alpha / np.maximum(np.abs(field).max(axis=(0, 2, 3), keepdims=True), 1e-12)
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    y, x = rows - (h - 1) / 2, cols - (w - 1) / 2
    cos, sin = np.cos(angle), np.sin(angle)
    src_r = cos * y - sin * x + (h - 1) / 2 + shift[0] + field[0]
    src_c = sin * y + cos * x + (w - 1) / 2 + shift[1] + field[1]
    index = np.broadcast_to(np.arange(n, dtype=np.float64)[:, None, None], src_r.shape)
    out = ndimage.map_coordinates(images.astype(np.float32), [index, src_r, src_c], order=1,
                                  mode="constant", cval=0.0)
    if images.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(images.dtype, copy=False)


def write_augmented(images, n_samples, path, *, kind="memmap", random_state=0, chunk_rows=None,
                    **deformation):
    """Write ``n_samples`` deformed copies of ``images``, flattened, to ``path``.

    Output row ``i`` is a deformation of ``images[i % len(images)]``.

    Parameters
    ----------
    images : ndarray of shape (n, height, width)
    n_samples : int
    path : str or path-like
        A raw file for a memmap (``kind="memmap"``) or a Zarr store folder.
    kind : {"memmap", "zarr"}, default="memmap"
    random_state : int, default=0
    chunk_rows : int, default=None
        Zarr chunk rows (default :data:`BATCH`).
    **deformation
        Passed to :func:`augment`.

    Returns
    -------
    X : np.memmap or zarr.Array of shape (n_samples, height * width)
        The images' dtype (uint8 for MNIST: 784 bytes per image).
    """
    images = np.asarray(images)
    shape = (int(n_samples), int(np.prod(images.shape[1:])))
    if kind == "memmap":
        out = np.memmap(path, images.dtype, mode="w+", shape=shape)
    elif kind == "zarr":
        import zarr

        out = zarr.create_array(store=str(path), shape=shape, dtype=images.dtype,
                                chunks=(chunk_rows or BATCH, shape[1]), overwrite=True)
    else:
        raise ValueError(f"kind must be 'memmap' or 'zarr', not {kind!r}")
    for batch, r0 in enumerate(range(0, shape[0], BATCH)):
        r1 = min(shape[0], r0 + BATCH)
        source = images[np.arange(r0, r1) % len(images)]
        rng = np.random.default_rng([int(random_state), batch])
        out[r0:r1] = augment(source, rng, **deformation).reshape(r1 - r0, -1)
    if kind == "memmap":
        out.flush()
    return out
