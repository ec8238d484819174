"""Training and inference data read a chunk of rows at a time.

Every phase of a fit (the statistics pass, each RBM's epochs, fine-tuning, early-stopping
validation) reads its data through a :class:`Rows` object, one chunk of rows at a time;
the kernels gather their minibatches from the chunk in memory. Three kinds of data:

- an in-memory NumPy array, already in visible units: chunks are views (by default the
  whole array is one chunk, so the kernels see exactly what they saw before streaming);
- an out-of-core array (``np.memmap``, Zarr, h5py, Dask, anything with ``shape``,
  ``dtype`` and row slicing), read and converted one chunk at a time, the next chunk
  read by a background thread while the kernels train on the current one;
- a SciPy sparse matrix (kept in CSR), whose chunks stay sparse: the kernels densify one
  minibatch at a time.

8-bit input (``uint8``) is taken as image intensities and divided by 255 in float32, the
same float operations in memory and out of core, so both give the same model.
"""

from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor
from math import gcd

import numpy as np
import scipy.sparse as sp

# Default chunk of out-of-core input: this many bytes of rows in the kernels' dtype
# (21,400 MNIST images in float32), rounded down to whole minibatches.
DEFAULT_CHUNK_BYTES = 64 << 20

CsrBlock = namedtuple("CsrBlock", "data indices indptr n_rows mean scale standardize")
CsrBlock.__doc__ = """A chunk of sparse rows and the standardisation the kernels apply to
each minibatch as they densify it."""


def is_sparse(X):
    return sp.issparse(X)


def is_out_of_core(X):
    """Whether ``X`` is read by chunks rather than validated as one in-memory array.

    ``np.memmap`` and any non-NumPy object with ``shape``, ``dtype`` and ``__getitem__``
    (Zarr, h5py, Dask, a user's own reader) are; NumPy arrays, lists, pandas frames and
    array-API arrays (converted by scikit-learn's validation) are not.
    """
    if isinstance(X, np.memmap):
        return True
    if isinstance(X, np.ndarray) or sp.issparse(X):
        return False
    if not all(hasattr(X, name) for name in ("shape", "dtype", "__getitem__")):
        return False
    module = type(X).__module__ or ""
    if module.startswith("pandas"):
        return False
    return not (hasattr(X, "__array_namespace__") and not module.startswith("dask"))


def kernel_dtype(dtype):
    """The float dtype the kernels use for input of ``dtype``.

    float32 and uint8 (8-bit intensities) train in float32; other numbers in float64,
    as scikit-learn's ``validate_data(dtype=[np.float64, np.float32])`` converts them.
    """
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise ValueError(f"X has dtype {dtype}; expected numbers (float or integer).")
    return np.dtype(np.float32) if dtype in (np.float32, np.uint8) else np.dtype(np.float64)


def as_float(block, dtype, intensities=True):
    """``block`` in the kernels' float ``dtype``: uint8 divided by 255 in float32 (unless
    ``intensities`` is False: codes are never 8-bit intensities)."""
    if block.dtype == np.uint8 and intensities:
        return np.divide(block, np.float32(255), dtype=np.float32).astype(dtype, copy=False)
    return np.asarray(block, dtype=dtype)


def default_chunk_rows(n_features, dtype, batch_size, store_rows=None):
    """Rows of 64 MiB of float rows, rounded down to whole chunks of the store (so no
    store chunk is decompressed twice) or else to whole minibatches."""
    rows = DEFAULT_CHUNK_BYTES // max(1, n_features * np.dtype(dtype).itemsize)
    unit = store_rows or batch_size
    return max(unit, rows // unit * unit)


def store_chunk_rows(X):
    """Rows per chunk of a chunked store (Zarr, h5py, a regular Dask array), or None."""
    chunks = getattr(X, "chunks", None)
    if not isinstance(chunks, tuple) or not chunks:
        return None
    first = chunks[0]
    if isinstance(first, (int, np.integer)):
        return int(first) if first > 0 else None
    if isinstance(first, tuple) and first and len(set(first[:-1])) <= 1:
        return int(first[0]) if first[0] > 0 else None
    return None


class Source:
    """Rows of an out-of-core or sparse ``X`` in the kernels' float dtype, by slices.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Out-of-core array or SciPy sparse matrix (other sparse formats are converted to
        CSR once, which costs the memory of the non-zeros).
    """

    def __init__(self, X, dtype=None, intensities=True):
        self.intensities = intensities
        shape = tuple(X.shape)
        if len(shape) != 2:
            raise ValueError(
                f"Expected a 2D array of shape (n_samples, n_features), got shape {shape}."
            )
        if shape[0] < 1 or shape[1] < 1:
            raise ValueError(f"Found array with shape {shape}; at least 1 sample and 1 "
                             "feature are required.")
        self.sparse = sp.issparse(X)
        if self.sparse and X.format != "csr":
            X = X.tocsr()
        self.X = X
        self.n_samples, self.n_features = shape
        self.dtype = kernel_dtype(X.dtype) if dtype is None else np.dtype(dtype)

    def read(self, r0, r1):
        """Rows ``r0:r1``: a float ndarray, or a CSR matrix for sparse input."""
        block = self.X[r0:r1]
        if hasattr(block, "dask") and hasattr(block, "compute"):
            # Computed in the calling thread (the reader thread during training, which
            # overlaps it with the kernels): a thread pool of Dask's own would compete
            # with the kernels' threads for the same cores.
            block = block.compute(scheduler="synchronous")
        if self.sparse:
            block = sp.csr_matrix(block)
            _check_csr(block)
            block.data = as_float(block.data, self.dtype, self.intensities)
            return block
        block = as_float(np.asarray(block), self.dtype, self.intensities)
        if block.shape != (r1 - r0, self.n_features):
            raise ValueError(f"reading rows {r0}:{r1} gave an array of shape {block.shape}")
        return np.ascontiguousarray(block)


def _check_csr(block):
    """The kernels index with ``indices`` and ``indptr``: check them before any call."""
    n_rows, n_cols = block.shape
    indptr, indices = block.indptr, block.indices
    if (len(indptr) != n_rows + 1 or indptr[0] != 0 or indptr[-1] != len(indices)
            or len(block.data) != len(indices) or (np.diff(indptr) < 0).any()
            or (len(indices) and (indices.min() < 0 or indices.max() >= n_cols))):
        raise ValueError("the sparse matrix has inconsistent indices or indptr")


class ColumnStats:
    """Range, finiteness and per-column mean and variance of data seen chunk by chunk.

    Means and variances are merged chunk by chunk in float64 (Chan, Golub and LeVeque's
    pairwise update); with a single chunk they are exactly ``X.mean(axis=0)`` and
    ``X.var(axis=0)``, as an in-memory fit computes them.
    """

    def __init__(self):
        self.n = 0
        self.min = np.inf
        self.max = -np.inf
        self.mean = self.m2 = self.var = None

    def update(self, block, moments=True):
        """Add a chunk (dense, or CSR); ``moments=False`` tracks the range only."""
        n, m = block.shape
        if sp.issparse(block):
            data = block.data
            lo, hi = (data.min(), data.max()) if data.size else (0.0, 0.0)
            if data.size < n * m:
                lo, hi = min(lo, 0.0), max(hi, 0.0)
        else:
            lo, hi = block.min(), block.max()
        # NaN propagates into min and max: finite extremes mean finite data.
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ValueError("Input X contains NaN or infinity.")
        self.min, self.max = min(self.min, float(lo)), max(self.max, float(hi))
        if not moments:
            return
        if sp.issparse(block):
            total = np.bincount(block.indices, weights=block.data, minlength=m)
            squares = np.bincount(block.indices, weights=np.square(block.data, dtype=np.float64),
                                  minlength=m)
            mean = total / n
            self._merge(n, mean, np.maximum(squares / n - mean**2, 0.0))
            return
        # Sub-blocks bound the float64 temporaries of mean and var.
        for r0 in range(0, n, self.SUB_ROWS):
            sub = block[r0 : r0 + self.SUB_ROWS]
            self._merge(sub.shape[0], sub.mean(axis=0, dtype=np.float64),
                        sub.var(axis=0, dtype=np.float64))

    # Rows per float64 pass of the moments.
    SUB_ROWS = 8192

    def _merge(self, n, mean, var):
        if self.mean is None:
            self.n, self.mean, self.var, self.m2 = n, mean, var, var * n
            return
        total_n = self.n + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total_n)
        self.m2 = self.m2 + var * n + delta**2 * (self.n * n / total_n)
        self.n = total_n
        self.var = self.m2 / total_n

    def scaling(self, dtype):
        """``(mean, scale)`` standardising Gaussian units (constant features keep scale 1)."""
        mean, std = self.mean, np.sqrt(self.var)
        std[~(std > np.finfo(dtype).eps * np.maximum(1.0, np.abs(mean)))] = 1.0
        return mean.astype(dtype), std.astype(dtype)


class Holdout:
    """An exact, pseudo-random set of ``n_val`` held-out rows, stored as two integers.

    Row ``r`` is held out iff ``(a * r + b) mod n < n_val`` with ``a`` coprime to ``n``:
    a bijection of the rows, so exactly ``n_val`` are held out, spread over every chunk,
    and which rows they are is known for any chunk without an index array as long as
    the data.
    """

    def __init__(self, n, n_val, rng):
        self.n, self.n_val = int(n), int(n_val)
        a = int(rng.randint(1, max(2, self.n)))
        while gcd(a, self.n) != 1:
            a = a % (self.n - 1) + 1
        self.a, self.b = a, int(rng.randint(0, self.n))

    def mask(self, r0, r1):
        rows = np.arange(r0, r1, dtype=np.int64)
        return (rows * self.a + self.b) % self.n < self.n_val

    def train_rows(self, r0, r1):
        return np.flatnonzero(~self.mask(r0, r1))

    def val_rows(self, r0, r1):
        return np.flatnonzero(self.mask(r0, r1))


class Rows:
    """Training data in visible units, as chunks of rows (see the module docstring).

    Subclasses define :meth:`load` (chunk ``i`` as a C-contiguous read-only array, or a
    :class:`CsrBlock`) and :meth:`raw` (rows of chunk ``i`` in input units, dense, for
    validation). With ``gathers``, a chunk holds the rows in the units of another layer,
    and a trainer must read them through ``gather`` (see :class:`GatheredRows`).
    """

    prefetch = False
    gathers = False

    def __init__(self, n_samples, n_features, dtype, chunk_rows):
        self.n_samples, self.n_features, self.dtype = n_samples, n_features, np.dtype(dtype)
        self.chunk_rows = max(1, min(int(chunk_rows), n_samples))
        self.n_chunks = -(-n_samples // self.chunk_rows)
        self.holdout = None

    def bounds(self, i):
        r0 = i * self.chunk_rows
        return r0, min(self.n_samples, r0 + self.chunk_rows)

    def n_train(self):
        held = 0 if self.holdout is None else self.holdout.n_val
        return self.n_samples - held

    def train_rows(self, i):
        """Indices (within chunk ``i``) of its training rows; None means all of them."""
        return None if self.holdout is None else self.holdout.train_rows(*self.bounds(i))

    def chunks(self, order):
        """``(i, chunk)`` in ``order``; out of core, chunk ``i + 1`` is read meanwhile."""
        if not self.prefetch or len(order) < 2:
            for i in order:
                yield i, self.load(i)
            return
        with ThreadPoolExecutor(1, thread_name_prefix="skdae-read") as pool:
            pending = pool.submit(self.load, order[0])
            for k, i in enumerate(order):
                chunk = pending.result()
                if k + 1 < len(order):
                    pending = pool.submit(self.load, order[k + 1])
                yield i, chunk


class ArrayRows(Rows):
    """An in-memory array already in visible units (views), or a spill memmap."""

    def __init__(self, Xs, chunk_rows, raw=None):
        super().__init__(Xs.shape[0], Xs.shape[1], Xs.dtype, chunk_rows)
        self.Xs, self._raw = Xs, raw

    def load(self, i):
        r0, r1 = self.bounds(i)
        return self.Xs[r0:r1]

    def raw(self, i, rows):
        r0, _ = self.bounds(i)
        return self._raw[r0 + rows]


class StreamedRows(Rows):
    """An out-of-core source, read, converted and standardised one chunk at a time."""

    prefetch = True

    def __init__(self, source, chunk_rows, mean, scale, gaussian):
        super().__init__(source.n_samples, source.n_features, source.dtype, chunk_rows)
        self.source, self.mean, self.scale, self.gaussian = source, mean, scale, gaussian

    def load(self, i):
        block = self.source.read(*self.bounds(i))
        if self.gaussian:
            block = (block - self.mean) / self.scale
        block.flags.writeable = False
        return block

    def raw(self, i, rows):
        r0, r1 = self.bounds(i)
        return self.source.read(r0, r1)[rows]


class SparseRows(Rows):
    """A CSR matrix: chunks stay sparse, the kernels densify one minibatch at a time."""

    def __init__(self, source, chunk_rows, mean, scale, gaussian):
        super().__init__(source.n_samples, source.n_features, source.dtype, chunk_rows)
        self.source, self.mean, self.scale, self.gaussian = source, mean, scale, gaussian

    def load(self, i):
        block = self.source.read(*self.bounds(i))
        return CsrBlock(block.data, block.indices.astype(np.int64, copy=False),
                        block.indptr.astype(np.int64, copy=False), block.shape[0],
                        self.mean, self.scale, self.gaussian)

    def raw(self, i, rows):
        r0, r1 = self.bounds(i)
        return self.source.read(r0, r1)[rows].toarray()


def densify(block, r0, r1, out):
    """Rows ``r0:r1`` of a :class:`CsrBlock`, dense and standardised, into ``out``."""
    from ._kernels._dense import gather_csr_rows

    order = np.arange(r0, r1, dtype=np.int64)
    gather_csr_rows(block.data, block.indices, block.indptr, order, 0, block.mean, block.scale,
                    block.standardize, out[: r1 - r0])
    return out[: r1 - r0]


def dense_pieces(block, rows):
    """``(r0, r1, dense rows)`` of a chunk, at most ``rows`` rows at a time: a dense chunk
    is one piece, a sparse one is densified ``rows`` rows at a time (into one buffer)."""
    if not isinstance(block, CsrBlock):
        yield 0, block.shape[0], block
        return
    buf = np.empty((min(rows, block.n_rows), len(block.mean)), block.data.dtype)
    for r0 in range(0, block.n_rows, rows):
        r1 = min(block.n_rows, r0 + rows)
        yield r0, r1, densify(block, r0, r1, buf)


class EncodedRows(Rows):
    """Rows of ``base`` as the hidden means of a frozen Bernoulli layer ``(W, b_hid)``
    see them, recomputed chunk by chunk (a stack of these feeds an upper RBM)."""

    def __init__(self, base, W, b_hid):
        super().__init__(base.n_samples, W.shape[0], W.dtype, base.chunk_rows)
        self.base, self.W, self.b_hid = base, W, b_hid
        self.holdout = base.holdout

    # Sparse chunks are densified this many rows at a time.
    PIECE_ROWS = 1024

    def encode(self, chunk):
        n_rows = chunk.n_rows if isinstance(chunk, CsrBlock) else chunk.shape[0]
        out = np.empty((n_rows, self.W.shape[0]), self.dtype)
        for r0, r1, dense in dense_pieces(chunk, self.PIECE_ROWS):
            bernoulli_hidden_means(dense, self.W, self.b_hid, out[r0:r1])
        out.flags.writeable = False
        return out

    def load(self, i):
        return self.encode(self.base.load(i))

    def chunks(self, order):
        # The base's reads run ahead in its thread; the kernels run here.
        for i, chunk in self.base.chunks(order):
            yield i, self.encode(chunk)


def encode_through(rows, layers, buffers):
    """Hidden means of ``rows`` through the frozen Bernoulli ``layers`` (``(W, b_hid)``
    pairs) in turn, each layer's written into the first ``len(rows)`` rows of its buffer
    in ``buffers``; returns the last layer's."""
    n = rows.shape[0]
    for (W, b_hid), buffer in zip(layers, buffers):
        bernoulli_hidden_means(rows, W, b_hid, buffer[:n])
        rows = buffer[:n]
    return rows


def bernoulli_hidden_means(rows, W, b_hid, out):
    """``out = sigmoid(rows W^T + b_hid)``: the Bernoulli hidden means of ``rows`` under
    ``(W, b_hid)`` (``W`` of shape ``(n_hidden, n_visible)``).

    Through :func:`~skdae._kernels._dense.dense_forward` with the argument types of the
    fine-tuning kernels' forward pass (read-only input, writable C-contiguous rest), so
    one compiled kernel serves both: a fit compiles no separate encoding kernel.
    """
    from ._kernels import _dense

    rows = np.ascontiguousarray(rows)
    if rows.flags.writeable:
        rows = rows.view()
        rows.flags.writeable = False
    _dense.dense_forward(rows, W, True, b_hid, True, out, _dense.dense_pointer(W.dtype))


class GatheredRows(Rows):
    """Rows of an in-memory ``base`` (:class:`ArrayRows`) as the hidden means of frozen
    Bernoulli layers ``layers = [(W, b_hid), ...]`` see them, never stored whole.

    The chunks and their shuffled orders are the base's; a trainer gathers the rows of
    a piece of an order (:meth:`gather`) and encodes only them, so an upper RBM trains on
    exactly the rows a stored copy would give it, through buffers of a piece's size
    instead of an array as large as the data.
    """

    gathers = True

    def __init__(self, base, layers):
        super().__init__(base.n_samples, layers[-1][0].shape[0], layers[-1][0].dtype,
                         base.chunk_rows)
        self.base, self.layers = base, layers
        self.holdout = base.holdout
        self._buffers = None

    def load(self, i):
        return self.base.load(i)

    def gather(self, chunk, rows):
        """Hidden means of ``chunk[rows]`` through every layer (a view of a buffer
        reused by the next call)."""
        n = len(rows)
        widths = [chunk.shape[1]] + [W.shape[0] for W, _ in self.layers]
        if self._buffers is None or self._buffers[0].shape[0] < n:
            self._buffers = [np.empty((n, w), self.dtype) for w in widths]
        gathered = self._buffers[0][:n]
        np.take(chunk, rows, axis=0, out=gathered)
        return encode_through(gathered, self.layers, self._buffers[1:])

    def release(self):
        """Drop the piece buffers (made again by the next :meth:`gather`)."""
        self._buffers = None


def spill(rows, directory=None):
    """Write every chunk of ``rows`` to an unlinked temporary file; return them as
    :class:`ArrayRows` over a read-only memory map of it (page cache, not private
    memory). The file disappears when the memory map is released."""
    import tempfile

    handle = tempfile.TemporaryFile(dir=directory)
    out = np.memmap(handle, rows.dtype, mode="w+", shape=(rows.n_samples, rows.n_features))
    for i, chunk in rows.chunks(range(rows.n_chunks)):
        r0, r1 = rows.bounds(i)
        out[r0:r1] = chunk
    out.flush()
    view = np.memmap(handle, rows.dtype, mode="r", shape=out.shape)
    handle.close()  # the memory map keeps the (unlinked) file alive
    spilled = ArrayRows(view, rows.chunk_rows)
    spilled.holdout = rows.holdout
    return spilled
