"""Random deformations of images: shifts, small rotations and elastic distortions.

The "infinite MNIST" idea (Loosli, Canu and Bottou, 2007; elastic distortions after
Simard, Steinkraus and Platt, 2003): every new sample is a training image moved by a
random smooth displacement field, so a few thousand digits become as many distinct
examples as one wants. :func:`augment` deforms a batch; :func:`write_augmented` writes N
deformed copies of a set of images to a memory-mapped file or a Zarr array, a batch at a
time, for benchmarks and out-of-core training; :class:`RandomDeformation` is the same
deformation as a parameter of :class:`~skdae.RBMStackAutoencoder` (``augmentation=``),
which deforms every training image afresh in every fine-tuning epoch. An estimator
cannot add rows inside a :class:`~sklearn.pipeline.Pipeline`, so augmentation is not a
transformer: either the estimator deforms its minibatches (nothing is stored, the data
are seen in a new form each epoch) or :func:`write_augmented` expands the training set
beforehand (a fixed set, larger on disk or in memory).

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

from numbers import Integral, Real

from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval

__all__ = ["RandomDeformation", "augment", "write_augmented"]

# Images deformed per random stream by write_augmented.
BATCH = 8192


def augment(images, random_state=None, *, max_shift=2.0, max_rotation=10.0, alpha=2.0,
            sigma=4.0, whole_pixels=False, axis_only=False):
    """Randomly shifted, rotated and elastically distorted copies of ``images``.

    Each image is resampled (bilinear, zero outside) at ``R (p - c) + c + s + d(p)``:
    a rotation ``R`` by up to ``max_rotation`` degrees about the centre ``c``, a shift
    ``s`` of up to ``max_shift`` pixels in each direction, and an elastic displacement
    field ``d``: uniform noise in [-1, 1] per pixel, smoothed by a Gaussian of ``sigma``
    pixels and scaled so its largest displacement is ``alpha`` pixels. With
    ``whole_pixels``, the shift is a whole number of pixels in each direction, from
    ``-floor(max_shift)`` to ``floor(max_shift)``; without rotation and elastic field
    (``max_rotation=0``, ``alpha=0``) the images are then moved without resampling (no
    blur), which is also much faster. With ``axis_only``, each image moves along one
    axis only (rows or columns, at random), as in the classic augmentation of MNIST by
    one-pixel shifts up, down, left and right; whole-pixel shifts are then drawn
    uniformly among the ``4 * floor(max_shift) + 1`` positions, the original among
    them (five positions for ``max_shift=1``: each image stays as it is with
    probability 1/5).

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
    whole_pixels : bool, default=False
        Shift by whole pixels only.
    axis_only : bool, default=False
        Shift along one axis only, the other coordinate of the shift being zero.

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
    if axis_only:
        shift = _axis_shifts(rng, n, max_shift, whole_pixels)
        if whole_pixels and max_rotation == 0 and alpha == 0:
            return _shift_whole(images, shift.astype(np.int64))
        shift = shift[:, :, None, None]
        angle = np.deg2rad(rng.uniform(-max_rotation, max_rotation, n))[:, None, None]
    elif whole_pixels:
        reach = int(np.floor(max_shift))
        if max_rotation == 0 and alpha == 0:
            return _shift_whole(images, rng.integers(-reach, reach + 1, (2, n)))
        shift = rng.integers(-reach, reach + 1, (2, n, 1, 1)).astype(np.float64)
        angle = np.deg2rad(rng.uniform(-max_rotation, max_rotation, n))[:, None, None]
    else:
        angle = np.deg2rad(rng.uniform(-max_rotation, max_rotation, n))[:, None, None]
        shift = rng.uniform(-max_shift, max_shift, (2, n, 1, 1))
    if alpha == 0:
        # The field is drawn last, so leaving it out changes no other draw.
        field = np.zeros((2, 1, 1, 1))
    else:
        field = rng.uniform(-1.0, 1.0, (2, n, h, w))
        for k in range(2):
            field[k] = ndimage.gaussian_filter(field[k], sigma=(0, sigma, sigma),
                                               mode="constant")
        # Smoothing shrinks the noise by a factor that depends on sigma: rescale each
        # image's field so that alpha is its largest displacement, whatever sigma.
        field *= alpha / np.maximum(np.abs(field).max(axis=(0, 2, 3), keepdims=True), 1e-12)
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    y, x = rows - (h - 1) / 2, cols - (w - 1) / 2
    cos, sin = np.cos(angle), np.sin(angle)
    src_r = cos * y - sin * x + (h - 1) / 2 + shift[0] + field[0]
    src_c = sin * y + cos * x + (w - 1) / 2 + shift[1] + field[1]
    index = np.broadcast_to(np.arange(n, dtype=np.float64)[:, None, None], src_r.shape)
    # float64 images are resampled in float64: a float32 round trip would move values
    # (an identity deformation would change them in the 8th digit).
    work = np.float64 if images.dtype == np.float64 else np.float32
    out = ndimage.map_coordinates(images.astype(work), [index, src_r, src_c], order=1,
                                  mode="constant", cval=0.0)
    if images.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(images.dtype, copy=False)


def _axis_shifts(rng, n, max_shift, whole_pixels):
    """Shifts ``(2, n)`` (rows, columns) along one axis each: whole pixels uniform among the
    ``4 * reach + 1`` positions ``(0, 0)``, ``(+-s, 0)``, ``(0, +-s)`` for ``s`` up to
    ``reach``; otherwise a uniform amount in ``[-max_shift, max_shift]`` on a random axis."""
    shift = np.zeros((2, n))
    if whole_pixels:
        reach = int(np.floor(max_shift))
        position = rng.integers(0, 4 * reach + 1, n)
        moved = position > 0
        k = position[moved] - 1  # 0 .. 4 * reach - 1
        axis, step = k // (2 * reach), k % (2 * reach)
        amount = np.where(step < reach, step + 1, reach - 1 - step)  # 1..reach, -1..-reach
        shift[axis, np.flatnonzero(moved)] = amount
        return shift
    axis = rng.integers(0, 2, n)
    shift[axis, np.arange(n)] = rng.uniform(-max_shift, max_shift, n)
    return shift


def _shift_whole(images, shift):
    """``images[i]`` moved by the whole pixels ``shift[:, i]``: output pixel ``p`` is the
    input at ``p + shift`` (as :func:`augment` samples), zero outside."""
    out = np.zeros_like(images)
    h, w = images.shape[1:]
    # One slice assignment per distinct shift (at most (2 * reach + 1) ** 2 of them)
    # rather than a Python loop over images.
    pairs, inverse = np.unique(shift.T, axis=0, return_inverse=True)
    for k, (dy, dx) in enumerate(pairs):
        if abs(dy) >= h or abs(dx) >= w:
            continue  # moved out of the frame: stays blank
        rows = np.flatnonzero(inverse.ravel() == k)
        out[rows, max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)] = images[
            rows, max(0, dy) : h + min(0, dy), max(0, dx) : w + min(0, dx)]
    return out


class RandomDeformation(BaseEstimator):
    """Training-image augmentation for :class:`~skdae.RBMStackAutoencoder`.

    Passed as ``RBMStackAutoencoder(augmentation=RandomDeformation(...))``, it deforms
    every training image afresh in every fine-tuning epoch (:func:`augment`: a random
    shift, rotation and elastic distortion), so the network never sees the same sample
    twice; pretraining, validation and inference see the images as they are. Each epoch
    draws its deformations from its own random stream, derived from the estimator's
    ``random_state`` and the epoch, so fits are reproducible and ``partial_fit``
    continues ``fit``. The rows of ``X`` must be images of ``image_shape`` in raster
    order, dark background as zero (as MNIST): pixels moved in from outside the frame
    are zero in the input's units.

    The default, a shift of up to one whole pixel in each direction (nine positions,
    the original among them), costs a copy of the data per epoch: 0.05 s of one core
    per 20,000 MNIST images, under 1 % of a fine-tuning epoch of the paper's network.
    Fractional shifts, rotations and elastic fields resample every image (scipy's
    ``map_coordinates``): 2.6 s of one core per 20,000 images (AMD EPYC, Zen 4).

    Parameters
    ----------
    image_shape : tuple of (int, int) or None, default=None
        Height and width of the images; None takes square images (28 x 28 for 784
        features).
    max_shift : float, default=1.0
        Largest shift in each direction, in pixels.
    whole_pixels : bool, default=True
        Shift by whole pixels (no resampling, no blur); otherwise by any amount up to
        ``max_shift``, with bilinear interpolation.
    max_rotation : float, default=0.0
        Largest rotation in degrees.
    alpha : float, default=0.0
        Largest elastic displacement in pixels (0: none).
    sigma : float, default=4.0
        Smoothness of the elastic field (Gaussian width in pixels).
    axis_only : bool, default=False
        Shift along one axis at a time (up, down, left or right), never diagonally;
        with whole pixels, uniformly among the original and the ``4 * floor(max_shift)``
        shifted positions.

    See Also
    --------
    augment : The deformation itself, on a batch of images.
    write_augmented : Expands a training set into deformed copies on disk instead.

    Examples
    --------
    >>> import numpy as np
    >>> from skdae.augment import RandomDeformation
    >>> X = np.zeros((3, 16), np.float32); X[:, 5] = 1.0
    >>> moved = RandomDeformation((4, 4)).deform(X, random_state=0)
    >>> moved.shape, moved.dtype, float(moved.sum(axis=1).max())
    ((3, 16), dtype('float32'), 1.0)
    """

    _parameter_constraints = {
        "image_shape": [None, tuple, list],
        "max_shift": [Interval(Real, 0, None, closed="left")],
        "whole_pixels": ["boolean"],
        "max_rotation": [Interval(Real, 0, 180, closed="both")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "sigma": [Interval(Real, 0, None, closed="neither")],
        "axis_only": ["boolean"],
    }

    def __init__(self, image_shape=None, *, max_shift=1.0, whole_pixels=True, max_rotation=0.0,
                 alpha=0.0, sigma=4.0, axis_only=False):
        self.image_shape = image_shape
        self.max_shift = max_shift
        self.whole_pixels = whole_pixels
        self.max_rotation = max_rotation
        self.alpha = alpha
        self.sigma = sigma
        self.axis_only = axis_only

    def resolve_shape(self, n_features):
        """The images' ``(height, width)`` for rows of ``n_features`` pixels.

        Parameters
        ----------
        n_features : int
            Pixels per row.

        Returns
        -------
        shape : tuple of (int, int)

        Raises
        ------
        ValueError
            When the rows cannot be images of that shape.
        """
        self._validate_params()
        if self.image_shape is None:
            side = int(round(np.sqrt(n_features)))
            if side * side != n_features:
                raise ValueError(
                    f"RandomDeformation(image_shape=None) takes square images, but the rows "
                    f"have {n_features} features, not a square number: give image_shape="
                    "(height, width)."
                )
            return side, side
        shape = tuple(self.image_shape)
        if not (len(shape) == 2 and all(isinstance(s, Integral) and not isinstance(s, bool)
                                        and s >= 1 for s in shape)):
            raise ValueError(f"image_shape must be (height, width) in pixels, not {shape!r}")
        if shape[0] * shape[1] != n_features:
            raise ValueError(
                f"RandomDeformation(image_shape={shape}) makes images of "
                f"{shape[0] * shape[1]} pixels, but the rows have {n_features} features."
            )
        return int(shape[0]), int(shape[1])

    def deform(self, X, random_state=None):
        """Deformed copies of the flattened images ``X``.

        Parameters
        ----------
        X : ndarray of shape (n_samples, height * width)
            Images, one per row.
        random_state : int, Generator, RandomState or None, default=None
            Source of the deformations.

        Returns
        -------
        X_deformed : ndarray of the shape and dtype of ``X``
            Pixel values stay between the smallest and the largest of 0 and ``X``'s
            values (bilinear interpolation averages neighbours; pixels moved in from
            outside the frame are 0).
        """
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"expected rows of flattened images, got shape {X.shape}")
        h, w = self.resolve_shape(X.shape[1])
        out = augment(X.reshape(-1, h, w), random_state, max_shift=self.max_shift,
                      max_rotation=self.max_rotation, alpha=self.alpha, sigma=self.sigma,
                      whole_pixels=self.whole_pixels, axis_only=self.axis_only)
        return out.reshape(X.shape)


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
