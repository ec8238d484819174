"""Reading samples for the command line: image files, folders, ``.npy`` and IDX files.

Also the plain progress lines the commands print while they read or write many files.
"""

import os
import sys
import time

import numpy as np

_IMAGE_EXTENSIONS = frozenset(
    {
        ".png",
        ".pgm",
        ".pbm",
        ".ppm",
        ".pnm",
        ".jpg",
        ".jpeg",
        ".bmp",
        ".tif",
        ".tiff",
        ".gif",
        ".webp",
    }
)
_MODES = {"L": 2, "RGB": 3}

class _MissingDependency(ImportError):
    pass



# --------------------------------------------------------------------------------------
# Progress and messages
# --------------------------------------------------------------------------------------


# Progress lines are at least this many items apart, and about ten per job at the most:
# a big folder gets a few lines, a small one only the closing line.
_PROGRESS_MIN_STEP = 1000


class _ProgressLines:
    """Progress as plain lines on stderr: ``label: done/total``.

    A line each time another ``max(_PROGRESS_MIN_STEP, total / 10)`` items are done, and a
    closing line with the time taken. Lines rather than a bar redrawn with ``\\r``: they
    read the same in a terminal, a log file and a CI log, and need no extra dependency.

    Parameters
    ----------
    label : str
        What is being counted, such as ``"reading images"``.
    total : int
        Number of items expected.
    enabled : bool, default=True
        False prints nothing (``--quiet``); nothing is printed for ``total == 0`` either.
    """

    def __init__(self, label, total, enabled=True):
        self.label, self.total, self.done = label, total, 0
        self.enabled = enabled and total > 0
        self.step = max(_PROGRESS_MIN_STEP, -(-total // 10))
        self.start = time.perf_counter()

    def update(self, n=1):
        """Count ``n`` more items done; print a line if a step boundary was crossed."""
        before, self.done = self.done, self.done + n
        if self.enabled and self.done < self.total and self.done // self.step > before // self.step:
            self._print(f"{self.done}/{self.total}")

    def close(self):
        """Print the closing line (the count and the time taken)."""
        if self.enabled:
            elapsed = time.perf_counter() - self.start
            self._print(f"{self.done}/{self.total} done in {elapsed:.1f} s")

    def _print(self, text):
        print(f"{self.label}: {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Reading samples
# --------------------------------------------------------------------------------------


def _pillow():
    try:
        from PIL import Image
    except ImportError as exc:
        raise _MissingDependency(
            "reading and writing images needs Pillow: pip install skdae[images]"
        ) from exc
    return Image


def _expand(paths):
    """List ``(kind, path)`` for every input, folders expanded to their image files."""
    items = []
    for path in paths:
        if os.path.isdir(path):
            names = sorted(
                name
                for name in os.listdir(path)
                if os.path.splitext(name)[1].lower() in _IMAGE_EXTENSIONS
            )
            if not names:
                raise ValueError(f"{path}: folder holds no image files")
            items.extend(("image", os.path.join(path, name)) for name in names)
        elif not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such file or folder")
        else:
            items.append((_input_kind(path), path))
    return items


def _input_kind(path):
    """``"npy"``, ``"image"`` or ``"idx"`` for a file: from its extension, else its content."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        return "npy"
    if ext in _IMAGE_EXTENSIONS:
        return "image"
    from ._idx import sniff_idx

    kind = sniff_idx(path)
    if kind == "gzip":
        raise ValueError(
            f"{path}: gzip-compressed, but not an IDX file; the only compressed inputs read "
            "are IDX files such as MNIST's"
        )
    return kind or "image"


def _read_image(path, Image):
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode == "1":
                img = img.convert("L")
            if img.mode not in _MODES:
                raise ValueError(
                    f"{path}: image mode {img.mode!r} is not supported; convert it to 8-bit "
                    f"grayscale (L) or RGB"
                )
            return np.asarray(img, dtype=np.uint8), img.mode
    except Image.DecompressionBombError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _array_mode(array, path):
    """Image mode implied by an array of samples (None for flat feature vectors)."""
    if array.ndim == 3:
        return "L"
    if array.ndim == 4 and array.shape[3] == 3:
        return "RGB"
    if array.ndim == 2:
        return None
    raise ValueError(
        f"{path}: expected samples of shape (n, features), (n, height, width) or "
        f"(n, height, width, 3); got {array.shape}"
    )


def _read_array(kind, path):
    if kind == "npy":
        # A memory map checks the declared shape against the file size before any
        # allocation, and allow_pickle stays off.
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    else:
        from .datasets import load_idx

        array = load_idx(path)
    if array.dtype.kind not in "uif" or array.dtype.kind in "ui" and array.dtype != np.uint8:
        raise ValueError(f"{path}: samples must be uint8 or float, not {array.dtype}")
    return array, _array_mode(array, path)


def _to_float(array, path):
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255)
    array = np.asarray(array, dtype=np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{path}: samples hold NaN or infinite values")
    return array


def _shape_text(shape, mode):
    text = "x".join(map(str, shape))
    return f"{text} {mode}" if mode else text


def read_samples(paths, *, limit=None, expect_shape=None, expect_mode=None, progress=True):
    """Read samples from image files, folders, ``.npy`` and IDX files.

    Parameters
    ----------
    paths : list of str
        Inputs, read in order (a folder's images in name order).
    limit : int, default=None
        Keep only the first ``limit`` samples.
    expect_shape : tuple of int, default=None
        Required shape of one sample; by default that of the first input.
    expect_mode : str or None, default=None
        Required image mode (``"L"`` or ``"RGB"``), if known.
    progress : bool, default=True
        Show a progress counter while reading image files.

    Returns
    -------
    X : ndarray of shape (n_samples, *sample_shape), dtype float32
        Samples; 8-bit values are divided by 255.
    mode : str or None
        Image mode of the samples, None for flat feature vectors.
    """
    items = _expand(paths)
    n_images = sum(kind == "image" for kind, _ in items)
    if limit is not None:
        n_images = min(n_images, limit)
    progress_lines = _ProgressLines("reading images", n_images, enabled=progress)
    chunks, mode, n_read = [], expect_mode, 0
    origin = "the model's input" if expect_shape is not None else "the first input's"
    Image = _pillow() if n_images else None
    for kind, path in items:
        if limit is not None and n_read >= limit:
            break
        if kind == "image":
            array, item_mode = _read_image(path, Image)
            array = array[None]
            progress_lines.update()
        else:
            array, item_mode = _read_array(kind, path)
            if limit is not None:
                array = array[: limit - n_read]
        shape = tuple(array.shape[1:])
        if expect_shape is None:
            expect_shape = shape
        if shape != tuple(expect_shape):
            raise ValueError(
                f"{path}: samples of shape {_shape_text(shape, item_mode)}, expected "
                f"{_shape_text(expect_shape, mode)} ({origin})"
            )
        if mode is None and not chunks:
            mode = item_mode
        if item_mode != mode and item_mode is not None and mode is not None:
            raise ValueError(f"{path}: image mode {item_mode}, expected {mode}")
        chunks.append(_to_float(array, path))
        n_read += len(array)
    progress_lines.close()
    if n_read == 0:
        raise ValueError("no samples to read")
    return np.concatenate(chunks), mode


# --------------------------------------------------------------------------------------
# Streaming samples (compress)
# --------------------------------------------------------------------------------------


class _IdxReader:
    """Rows of an IDX file read forward from its (decompressed) stream, never whole."""

    def __init__(self, path):
        import contextlib

        from ._idx import open_decompressed, read_idx_header

        self.path = path
        self._stack = contextlib.ExitStack()
        self.stream, _ = self._stack.enter_context(open_decompressed(path))
        self.dims, dtype, _, _ = read_idx_header(self._read, path)
        self.dtype = dtype
        self.row_bytes = self.dtype.itemsize * int(np.prod(self.dims[1:], dtype=np.int64))

    def _read(self, n_bytes):
        import gzip
        import zlib

        try:
            return self.stream.read(n_bytes)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise ValueError(f"{self.path}: corrupt or truncated gzip data "
                             f"({type(exc).__name__}: {exc})") from None

    def read(self, n):
        data = self._read(n * self.row_bytes)
        if len(data) < n * self.row_bytes:
            raise ValueError(f"{self.path}: truncated IDX file: the header declares shape "
                             f"{self.dims}, the data stops before")
        rows = np.frombuffer(data, self.dtype).reshape((n, *self.dims[1:]))
        return rows.astype(self.dtype.newbyteorder("="), copy=False)

    def check_end(self):
        if self._read(1):
            raise ValueError(f"{self.path}: IDX file has trailing bytes after the data its "
                             f"header (shape {self.dims}) declares")

    def close(self):
        self._stack.close()


class SampleRows:
    """The samples of several inputs as one array of shape ``(n, *sample_shape)``, float32,
    read in increasing row slices (what :meth:`skdae.codec.Codec.compress` asks for): a
    ``.npy`` file through a memory map, an IDX file from its stream, an image file when
    its row comes. Memory holds the rows of one slice, never the inputs.
    """

    dtype = np.dtype(np.float32)

    def __init__(self, paths, *, limit=None, expect_shape=None, expect_mode=None,
                 progress=True):
        self._parts, n, self.mode = [], 0, expect_mode
        self._origin = "the model's input" if expect_shape is not None else "the first input's"
        for kind, path in _expand(paths):
            if limit is not None and n >= limit:
                break
            if kind == "image":
                count, shape, mode, reader = 1, None, None, None
            elif kind == "npy":
                reader, mode = _read_array("npy", path)
                count, shape = len(reader), tuple(reader.shape[1:])
            else:
                reader = _IdxReader(path)
                count, shape = reader.dims[0], tuple(reader.dims[1:])
                if reader.dtype.kind in "ui" and reader.dtype != np.uint8:
                    raise ValueError(f"{path}: samples must be uint8 or float, not {reader.dtype}")
                mode = _array_mode(np.empty((0, *shape)), path)
            count = count if limit is None else min(count, limit - n)
            if shape is not None:
                expect_shape = self._check(path, shape, mode, expect_shape)
            self._parts.append([kind, path, count, reader])
            n += count
        if n == 0:
            raise ValueError("no samples to read")
        if expect_shape is None:  # images only: the first one says
            _, path, _, _ = self._parts[0]
            image, mode = _read_image(path, _pillow())
            expect_shape = self._check(path, image.shape, mode, None)
        self.shape = (n, *expect_shape)
        n_images = sum(p[0] == "image" for p in self._parts)
        self._progress = _ProgressLines("reading images", n_images, enabled=progress)
        self._cursor, self._part, self._offset = 0, 0, 0

    def _check(self, path, shape, mode, expect_shape):
        if expect_shape is None:
            expect_shape = shape
        if tuple(shape) != tuple(expect_shape):
            raise ValueError(
                f"{path}: samples of shape {_shape_text(shape, mode)}, expected "
                f"{_shape_text(expect_shape, self.mode)} ({self._origin})"
            )
        if self.mode is None:
            self.mode = mode
        elif mode is not None and mode != self.mode:
            raise ValueError(f"{path}: image mode {mode}, expected {self.mode}")
        return tuple(expect_shape)

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        start, stop, step = key.indices(self.shape[0])
        if step != 1 or start != self._cursor:
            raise ValueError("samples are read forward, in increasing slices")
        out = np.empty((stop - start, *self.shape[1:]), np.float32)
        filled = 0
        while filled < len(out):
            kind, path, count, reader = self._parts[self._part]
            take = min(count - self._offset, len(out) - filled)
            if kind == "image":
                rows, mode = _read_image(path, _pillow())
                self._check(path, rows.shape, mode, self.shape[1:])
                rows = rows[None]
                self._progress.update()
            elif kind == "npy":
                rows = reader[self._offset : self._offset + take]
            else:
                rows = reader.read(take)
            out[filled : filled + take] = _to_float(rows, path)
            filled += take
            self._offset += take
            if self._offset == count:
                if kind == "idx":
                    if count == reader.dims[0]:
                        reader.check_end()
                    reader.close()
                self._part, self._offset = self._part + 1, 0
        self._cursor = stop
        if stop == self.shape[0]:
            self._progress.close()
        return out

    def close(self):
        """Close the IDX streams still open (after an error)."""
        for kind, _, _, reader in self._parts:
            if kind == "idx":
                reader.close()
