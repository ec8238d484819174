"""Loaders for the data sets used by the papers this package reproduces.

MNIST is read from the four standard IDX files (gzip-compressed or raw) in a local folder,
checked against the sha256 checksums of the original distribution, and only fetched from
OpenML when the files are not there. :func:`load_idx` reads any IDX file on its own; the
parsing and checking of IDX files is in :mod:`skdae._idx`.
"""

import functools
import os

import numpy as np
from sklearn.utils import Bunch

from ._idx import parse_idx

__all__ = ["get_data_home", "load_idx", "load_mnist"]

# sha256 of the *decompressed* bytes of the original files: the same whether the files sit
# gzip-compressed or raw in the data folder, and independent of the gzip level used.
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

# split name -> (images file, labels file, number of rows in the original distribution)
_MNIST_SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60_000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10_000),
}
_SUBSETS = {"train": ("train",), "test": ("test",), "all": ("train", "test")}

_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dims
_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dim

_ENV_VAR = "SKDAE_DATA_HOME"
_DEFAULT_HOME = os.path.join("~", "skdae_data")

_OPENML_NAME = "mnist_784"

MNIST_DESCR = """\
MNIST handwritten digits
------------------------

70,000 grey-level images of handwritten digits 0-9, 28 x 28 pixels, size-normalised and
centred: a training set of 60,000 images (written by about 250 people) followed by a test
set of 10,000 images (written by different people). Pixel values are 0 (background) to 255
(ink) in the original files; with ``scale=True`` they are divided by 255.

``data`` holds one flattened image per row (row-major, 784 columns), ``images`` the same
values as (n, 28, 28), ``target`` the digit labels.

Source: Y. LeCun, C. Cortes and C. J. C. Burges, "The MNIST database of handwritten
digits", read from the four original IDX files (checked against their sha256 checksums) or,
as a fallback, from OpenML data set "mnist_784" (version 1), whose rows are in the same
order. Distributed under CC BY-SA 3.0.
"""


def get_data_home(data_home=None):
    """Return the folder where skdae looks for (and downloads) data sets.

    The folder is, in order of precedence: the ``data_home`` argument, the
    ``SKDAE_DATA_HOME`` environment variable (ignored when empty), ``~/skdae_data``. A
    leading ``~`` is expanded. Unlike :func:`sklearn.datasets.get_data_home`, the folder is not created:
    looking data up should not write to the disk, and the folder may be a read-only share.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Folder to use; ``None`` means the environment variable, then the default.

    Returns
    -------
    data_home : str
        Path of the data folder (it may not exist).

    See Also
    --------
    load_mnist : Read MNIST from this folder.

    Examples
    --------
    >>> from skdae.datasets import get_data_home
    >>> get_data_home("/srv/data/mnist")
    '/srv/data/mnist'
    """
    return _resolve_data_home(data_home)[0]


def _resolve_data_home(data_home):
    """Return ``(folder, where the choice came from)``, the latter for error messages."""
    if data_home is not None:
        origin = "the data_home argument"
    elif os.environ.get(_ENV_VAR):
        data_home, origin = os.environ[_ENV_VAR], f"the {_ENV_VAR} environment variable"
    else:
        data_home, origin = _DEFAULT_HOME, f"the default, as {_ENV_VAR} is not set"
    return os.path.expanduser(os.fspath(data_home)), origin



def load_idx(path):
    """Read one IDX file into a numpy array.

    IDX is the format of the MNIST distribution: a big-endian header (two zero bytes, a
    type code, the number of dimensions, then each dimension size as uint32) followed by
    the values, row-major. All IDX types are supported (uint8, int8, int16, int32,
    float32, float64); multi-byte values are returned in native byte order.

    Parameters
    ----------
    path : str or path-like
        The file, either raw or gzip-compressed (detected from its content, whatever its
        name).

    Returns
    -------
    array : ndarray
        Writable array whose shape is the dimensions declared in the header.

    Raises
    ------
    ValueError
        If the file is not an IDX file (bad magic), or its data does not match the size
        the header declares (truncated file, trailing bytes), or the gzip data is corrupt.
        Memory is only allocated for bytes actually present in the file, whatever sizes
        the header claims.
    OSError
        If the file cannot be opened or read.

    See Also
    --------
    load_mnist : Read the four MNIST IDX files as a data set, checksums checked.

    Examples
    --------
    A 2 x 3 array of uint8 in a gzip-compressed IDX file:

    >>> import gzip, os, struct, tempfile
    >>> from skdae.datasets import load_idx
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "tiny-idx2-ubyte.gz")
    ...     with gzip.open(path, "wb") as f:
    ...         _ = f.write(struct.pack(">HBBII", 0, 0x08, 2, 2, 3) + bytes(range(6)))
    ...     array = load_idx(path)
    >>> array
    array([[0, 1, 2],
           [3, 4, 5]], dtype=uint8)
    """
    return parse_idx(path)[0]


def _file_key(path):
    """Cache key that changes whenever the file is modified or replaced."""
    st = os.stat(path)
    return os.path.realpath(path), st.st_mtime_ns, st.st_size, st.st_ino


@functools.lru_cache(maxsize=8)
def _parse_idx_cached(realpath, mtime_ns, size, inode):
    # The stat fields are only part of the key: a rewritten file gets a fresh entry.
    array, magic, digest = parse_idx(realpath)
    array.setflags(write=False)  # shared by every caller: nobody may corrupt it
    return array, magic, digest


def _find_idx_file(folder, name):
    """Return the path of ``name`` (raw) or ``name.gz`` in ``folder``, else None."""
    for candidate in (name, name + ".gz"):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None


def _check_magic(path, magic, expected, what):
    if magic != expected:
        raise ValueError(
            f"{path}: expected an MNIST {what} file with magic 0x{expected:08x}, got "
            f"0x{magic:08x}; are the images and labels files swapped or is this not MNIST?"
        )


def _check_sha256(path, name, digest):
    if digest != MNIST_SHA256[name]:
        raise ValueError(
            f"{path}: sha256 of the decompressed content is {digest}, expected "
            f"{MNIST_SHA256[name]} for {name}: the file is corrupt or not the original "
            "MNIST file. Download it again, or pass verify=False to load it anyway."
        )


def _load_split_from_idx(images_path, labels_path, split, verify):
    """Return read-only ``(images (n, 784) uint8, labels (n,) uint8)`` of one split."""
    images_name, labels_name, _ = _MNIST_SPLITS[split]
    images, images_magic, images_sha = _parse_idx_cached(*_file_key(images_path))
    labels, labels_magic, labels_sha = _parse_idx_cached(*_file_key(labels_path))
    _check_magic(images_path, images_magic, _IMAGES_MAGIC, "images")
    _check_magic(labels_path, labels_magic, _LABELS_MAGIC, "labels")
    if verify:
        _check_sha256(images_path, images_name, images_sha)
        _check_sha256(labels_path, labels_name, labels_sha)
    if images.shape[1:] != (28, 28):
        raise ValueError(
            f"{images_path}: MNIST images must be 28 x 28 pixels, the file holds "
            f"{images.shape[1]} x {images.shape[2]}"
        )
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{labels_path} holds {labels.shape[0]} labels but {images_path} holds "
            f"{images.shape[0]} images"
        )
    # Checksums already guarantee this for the original files; with verify=False it keeps
    # out-of-range labels from surfacing as obscure errors downstream.
    if labels.size and labels.max() > 9:
        raise ValueError(f"{labels_path}: labels must be digits 0-9, found {labels.max()}")
    return images.reshape(images.shape[0], 28 * 28), labels


@functools.lru_cache(maxsize=1)
def _fetch_openml_mnist(data_home):
    """Return read-only ``{"train": (X, y), "test": (X, y)}`` from OpenML."""
    from sklearn.datasets import fetch_openml

    # Few retries: an offline machine should get its (more useful) "files not found"
    # error within seconds rather than after a long series of retries.
    X, y = fetch_openml(
        _OPENML_NAME,
        version=1,
        as_frame=False,
        return_X_y=True,
        parser="liac-arff",  # works without pandas, unlike parser="pandas"
        data_home=data_home,
        n_retries=1,
        delay=1.0,
    )
    X = np.asarray(X)
    n_total = sum(n for _, _, n in _MNIST_SPLITS.values())
    if X.shape != (n_total, 28 * 28) or np.shape(y) != (n_total,):
        raise ValueError(
            f"OpenML {_OPENML_NAME!r} has shape {X.shape}, expected ({n_total}, 784)"
        )
    images = X.astype(np.uint8)
    if not np.array_equal(images, X):
        raise ValueError(f"OpenML {_OPENML_NAME!r} pixels are not integers in 0..255")
    labels = np.asarray(y).astype(np.int64)  # OpenML labels are strings '0'..'9'
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"OpenML {_OPENML_NAME!r} labels are not digits 0-9")
    labels = labels.astype(np.uint8)
    images.setflags(write=False)
    labels.setflags(write=False)
    n_train = _MNIST_SPLITS["train"][2]
    return {
        "train": (images[:n_train], labels[:n_train]),
        "test": (images[n_train:], labels[n_train:]),
    }


def _missing_files_error(home, origin, missing, download_error):
    expected = ", ".join(f"{name}[.gz]" for name in missing)
    if download_error is None:
        download = "Nothing was downloaded since download_if_missing=False."
    else:
        download = (
            f"Fetching {_OPENML_NAME!r} from OpenML as a fallback failed too "
            f"({type(download_error).__name__}: {download_error})."
        )
    return FileNotFoundError(
        f"MNIST files not found in {home!r} (the data folder, from {origin}): missing "
        f"{expected}. Put the four IDX files (gzip-compressed with a .gz suffix or raw) in "
        "that folder, or point skdae at a folder holding them with "
        f"load_mnist(data_home=...) or the {_ENV_VAR} environment variable. {download}"
    )


def _check_params(subset, n_samples, dtype, scale):
    if subset not in _SUBSETS:
        raise ValueError(f"subset must be one of {sorted(_SUBSETS)}, got {subset!r}")
    if n_samples is not None:
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)):
            raise TypeError(f"n_samples must be an int or None, got {n_samples!r}")
        if n_samples < 1:
            raise ValueError(f"n_samples must be at least 1, got {n_samples}")
    dtype = np.dtype(dtype)
    if scale and dtype.kind != "f":
        raise ValueError(
            f"scale=True gives values in [0, 1], which need a floating dtype, got {dtype}; "
            "pass scale=False for the raw 0..255 values"
        )
    if not scale and not np.can_cast(np.uint8, dtype):
        raise ValueError(f"dtype {dtype} cannot hold the raw pixel values 0..255")
    return dtype


def load_mnist(
    subset="train",
    *,
    data_home=None,
    return_X_y=False,
    dtype=np.float32,
    scale=True,
    n_samples=None,
    download_if_missing=True,
    verify=True,
):
    """Load the MNIST handwritten digits.

    The four IDX files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` are read from the data
    folder, each either gzip-compressed (``.gz`` suffix) or raw; only those of the
    requested subset need to be there. Parsed files are cached in memory, so repeated
    calls cost only the conversion to ``dtype``.

    Parameters
    ----------
    subset : {"train", "test", "all"}, default="train"
        The 60,000 training images, the 10,000 test images, or all 70,000 (training
        images first).
    data_home : str or path-like, default=None
        Folder holding the IDX files. ``None`` means the ``SKDAE_DATA_HOME`` environment
        variable, else ``~/skdae_data`` (see :func:`get_data_home`).
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.
    dtype : numpy dtype, default=np.float32
        Type of ``data``. Must be floating when ``scale=True``; with ``scale=False`` any
        type holding 0..255 (``np.uint8`` gives the file's bytes).
    scale : bool, default=True
        Divide the pixel values by 255, giving values in [0, 1].
    n_samples : int, default=None
        Keep only the first ``n_samples`` images of the subset (the deep autoencoder
        papers use the first 20,000 training and first 1,000 test images). ``None``
        keeps them all.
    download_if_missing : bool, default=True
        If the files are not in the data folder, fetch OpenML's ``mnist_784`` (same
        images and order) with :func:`sklearn.datasets.fetch_openml`, cached under the
        data folder.
    verify : bool, default=True
        Check the sha256 of each file's decompressed content against the original
        distribution. Pass False to load other files in the MNIST format (any number of
        28 x 28 images). Not applied to the OpenML fallback.

    Returns
    -------
    data : Bunch
        Dictionary-like object with attributes:

        data : ndarray of shape (n_samples, 784)
            Flattened images, row-major.
        target : ndarray of shape (n_samples,), dtype int64
            Digit labels 0-9.
        images : ndarray of shape (n_samples, 28, 28)
            View of ``data``.
        source : str
            The folder the IDX files were read from, or ``"openml"``.
        DESCR : str
            Description of the data set.

    (data, target) : tuple of ndarray
        If ``return_X_y`` is True.

    Raises
    ------
    FileNotFoundError
        If the files are missing and could not (or may not) be downloaded; the message
        names the folder searched and the files expected.
    ValueError
        If a file is corrupt, truncated, fails its checksum, or is not the expected IDX
        file, or the parameters are invalid.

    See Also
    --------
    load_idx : Read any single IDX file.
    get_data_home : The folder searched for the files.
    sklearn.datasets.fetch_openml : The fallback download.

    Examples
    --------
    With the four files in ``$SKDAE_DATA_HOME``:

    >>> from skdae.datasets import load_mnist
    >>> X, y = load_mnist("test", n_samples=1000, return_X_y=True)
    >>> X.shape, X.dtype, y[:5]
    ((1000, 784), dtype('float32'), array([7, 2, 1, 0, 4]))
    """
    dtype = _check_params(subset, n_samples, dtype, scale)
    home, origin = _resolve_data_home(data_home)
    splits = _SUBSETS[subset]

    paths, missing = {}, []
    for split in splits:
        images_name, labels_name, _ = _MNIST_SPLITS[split]
        for name in (images_name, labels_name):
            paths[name] = _find_idx_file(home, name)
            if paths[name] is None:
                missing.append(name)

    if not missing:
        source = home
        parts = [
            _load_split_from_idx(
                paths[_MNIST_SPLITS[s][0]], paths[_MNIST_SPLITS[s][1]], s, verify
            )
            for s in splits
        ]
    elif download_if_missing:
        try:
            fetched = _fetch_openml_mnist(home)
        except Exception as exc:  # any failure: the local-files advice is what helps
            raise _missing_files_error(home, origin, missing, exc) from exc
        source = "openml"
        parts = [fetched[s] for s in splits]
    else:
        raise _missing_files_error(home, origin, missing, None)

    n_available = sum(len(labels) for _, labels in parts)
    if n_samples is None:
        n_samples = n_available
    elif n_samples > n_available:
        raise ValueError(
            f"n_samples={n_samples} but subset {subset!r} has only {n_available} images"
        )
    n_samples = int(n_samples)

    # Convert straight into the output, one part at a time: no full-size concatenated
    # or float64 temporary, and only the rows kept are ever converted.
    data = np.empty((n_samples, 28 * 28), dtype=dtype)
    target = np.empty(n_samples, dtype=np.int64)
    start = 0
    for images, labels in parts:
        stop = min(n_samples, start + len(labels))
        data[start:stop] = images[: stop - start]
        target[start:stop] = labels[: stop - start]
        start = stop
        if start == n_samples:
            break
    if scale:
        # Division, not multiplication by 1/255, so that 255 maps to exactly 1.0.
        np.divide(data, 255, out=data)

    if return_X_y:
        return data, target
    return Bunch(
        data=data,
        target=target,
        images=data.reshape(n_samples, 28, 28),
        source=source,
        DESCR=MNIST_DESCR,
    )
