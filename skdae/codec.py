"""Turn the codes of any fitted transformer into bytes, and back.

:class:`Codec` wraps a fitted model that has ``transform`` and ``inverse_transform`` (an
:class:`~skdae.RBMStackAutoencoder`, a PCA, a Pipeline), so different models are compared
through exactly the same bytes. Each code unit is quantized uniformly to ``n_bits`` over
the range the unit takes on training codes; the quantized codes are bit-packed unit by unit
and entropy-coded with the standard library's deflate (``zlib``) or LZMA.

Archive layout (little-endian)::

    magic          8 bytes   b"\\x89SKD\\r\\n\\x1a\\n"
    version        u8        FORMAT_VERSION
    coder          u8        0 none, 1 zlib (raw deflate), 2 lzma (raw LZMA2)
    n_bits         u8        1..16
    ndim           u8        1..4, dimensions of one sample (e.g. 2 for 28 x 28 images)
    shape          ndim x u32
    n_units        u32       code units per sample
    count          u32       number of samples
    fingerprint    16 bytes  first bytes of the codec's sha256 fingerprint
    payload        ...       entropy-coded, bit-packed quantized codes
    crc32          u32       of every byte before it

Why no custom entropy coder: on the 10,000 MNIST test codes (PCA with 30 and 196 units,
1 to 12 bits, ranges from 20,000 training codes), the cross-entropy under a static
per-unit frequency table learned from training codes, which bounds what a table-driven
range or ANS coder could reach, is only 1-12 % (typically 5 %) below deflate on unit-major
packed bits, while deflate codes 10,000 samples in tens of milliseconds and is maintained
elsewhere. LZMA gains 3-10 % over deflate at 2-4 bits with many units, at 10 times the
time (0.4-0.9 s for 196 units): an option, not the default. Unit-major packing beat
sample-major packing and bit-plane orders under both coders.
"""

import io
import lzma
import struct
import zlib
from dataclasses import dataclass
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._state_checks import n_features_out

__all__ = [
    "ArchiveInfo",
    "Codec",
    "CorruptArchiveError",
    "ModelMismatchError",
    "archive_info",
]

MAGIC = b"\x89SKD\r\n\x1a\n"
FORMAT_VERSION = 1
CODERS = {"none": 0, "zlib": 1, "lzma": 2}
_CODER_NAMES = {v: k for k, v in CODERS.items()}
_FINGERPRINT_BYTES = 16
_FIXED = struct.Struct("<8sBBBB")
_TAIL = struct.Struct("<II16s")
_CRC = struct.Struct("<I")
_MAX_NDIM = 4
_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]
# Largest expansion each coder can achieve (deflate: 1032:1; raw LZMA2 measured about
# 7000:1 on zeros), plus a constant for tiny streams. A header whose sizes need more than
# this is rejected before anything is allocated.
_MAX_RATIO = {0: 1, 1: 1040, 2: 1 << 14}
_RATIO_SLACK = 1 << 10
# Packing works on big-endian words, whose byte order is the MSB-first bit order.
_WORD = {8: np.dtype(np.uint8), 16: np.dtype(">u2")}
_LEVEL_DTYPE = {8: np.dtype(np.uint8), 16: np.dtype(np.uint16)}
# What fit stores as code_dtype_ (np.dtype(...).str) for float32 and float64 codes.
_CODE_DTYPES = {np.dtype(np.float32).str, np.dtype(np.float64).str}


def _is_count(value):
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= 1


# Samples encoded at a time by fit and compress: an out-of-core input (a memmap, Zarr,
# h5py, Dask array) is never loaded whole; only its quantized levels are kept.
_CHUNK_ROWS = 16384


class CorruptArchiveError(ValueError):
    """Bytes that are not a valid archive: truncated, damaged, or another format.

    Raised by :func:`archive_info` and by :meth:`Codec.decompress` when the magic bytes,
    format version, declared sizes or checksum are wrong, before anything is decoded.
    A ``ValueError``, so code that catches ``ValueError`` catches it too.

    See Also
    --------
    ModelMismatchError : A valid archive made with another model.

    Examples
    --------
    >>> from skdae.codec import CorruptArchiveError, archive_info
    >>> try:
    ...     archive_info(b"not an archive")
    ... except CorruptArchiveError as exc:
    ...     print(exc)
    not a skdae archive (bad magic bytes)
    """


class ModelMismatchError(ValueError):
    """A valid archive that was made with another model or codec settings.

    Every archive carries a fingerprint of the codec that made it (its model, ranges and
    settings); :meth:`Codec.decompress` and :meth:`Codec.decode_codes` raise this error
    instead of decoding with a codec whose fingerprint differs. A ``ValueError``.

    See Also
    --------
    CorruptArchiveError : Bytes that are not an intact archive.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> from skdae.codec import Codec, ModelMismatchError
    >>> X = np.random.default_rng(0).random((100, 16))
    >>> data = Codec(PCA(4).fit(X)).fit(X).compress(X)
    >>> other = Codec(PCA(4).fit(X[:50])).fit(X)
    >>> try:
    ...     other.decompress(data)
    ... except ModelMismatchError:
    ...     print("refused: made with another model")
    refused: made with another model
    """


@dataclass(frozen=True)
class ArchiveInfo:
    """What an archive's header says.

    Returned by :func:`archive_info`; not meant to be built by hand. Each parameter is
    also an attribute, and the properties below derive sizes and the rate from them.

    Parameters
    ----------
    version : int
        Container format version.
    coder : str
        Entropy coder: ``"none"``, ``"zlib"`` or ``"lzma"``.
    n_bits : int
        Bits per quantized code value.
    shape : tuple of int
        Shape of one sample (``(28, 28)`` for MNIST images given as such).
    n_units : int
        Code units per sample.
    count : int
        Number of samples.
    fingerprint : str
        Hex digest prefix identifying the codec (model and ranges) that made it.
    header_bytes : int
        Bytes of container overhead (header and checksum).
    payload_bytes : int
        Bytes of coded data.

    See Also
    --------
    archive_info : Read and check an archive's header.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> from skdae.codec import Codec, archive_info
    >>> X = np.random.default_rng(0).random((100, 8, 8))
    >>> codec = Codec(PCA(4).fit(X.reshape(100, -1)), n_bits=5).fit(X)
    >>> info = archive_info(codec.compress(X))
    >>> info.shape, info.count, info.n_units, info.n_bits, info.coder
    ((8, 8), 100, 4, 5, 'zlib')
    >>> info.total_bytes == info.header_bytes + info.payload_bytes
    True
    """

    version: int
    coder: str
    n_bits: int
    shape: tuple
    n_units: int
    count: int
    fingerprint: str
    header_bytes: int
    payload_bytes: int

    @property
    def total_bytes(self):
        """Size of the whole archive in bytes."""
        return self.header_bytes + self.payload_bytes

    @property
    def n_pixels(self):
        """Pixels per sample: height x width for (H, W) or (H, W, C), else all values."""
        shape = self.shape[:2] if len(self.shape) == 3 else self.shape
        return int(np.prod(shape, dtype=np.int64))

    @property
    def bits_per_pixel(self):
        """Archive size in bits over the number of pixels it holds (header included)."""
        return 8 * self.total_bytes / (self.count * self.n_pixels)

    @property
    def raw_code_bytes(self):
        """Size of the bit-packed quantized codes before entropy coding."""
        return -(-self.count * self.n_units * self.n_bits // 8)


def _parse(data):
    """Check an archive's structure and checksum; return ``(info, payload)``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"an archive is bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) < _FIXED.size or not data.startswith(MAGIC):
        raise CorruptArchiveError("not a skdae archive (bad magic bytes)")
    _, version, coder, n_bits, ndim = _FIXED.unpack_from(data)
    if version != FORMAT_VERSION:
        raise CorruptArchiveError(
            f"archive format version {version}; this skdae reads version {FORMAT_VERSION}"
        )
    if coder not in _CODER_NAMES:
        raise CorruptArchiveError(f"unknown coder id {coder}")
    if not 1 <= n_bits <= 16:
        raise CorruptArchiveError(f"n_bits {n_bits} outside 1..16")
    if not 1 <= ndim <= _MAX_NDIM:
        raise CorruptArchiveError(f"sample shape has {ndim} dimensions (1..{_MAX_NDIM})")
    header_len = _FIXED.size + 4 * ndim + _TAIL.size
    if len(data) < header_len + _CRC.size:
        raise CorruptArchiveError(f"truncated archive ({len(data)} bytes)")
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if zlib.crc32(data[: -_CRC.size]) != crc:
        raise CorruptArchiveError("archive checksum mismatch: the data is damaged or truncated")
    shape = struct.unpack_from(f"<{ndim}I", data, _FIXED.size)
    n_units, count, fingerprint = _TAIL.unpack_from(data, _FIXED.size + 4 * ndim)
    if 0 in shape or n_units == 0 or count == 0:
        raise CorruptArchiveError("archive declares an empty shape, code or count")
    payload = data[header_len : -_CRC.size]
    info = ArchiveInfo(
        version=version,
        coder=_CODER_NAMES[coder],
        n_bits=n_bits,
        shape=tuple(shape),
        n_units=n_units,
        count=count,
        fingerprint=fingerprint.hex(),
        header_bytes=header_len + _CRC.size,
        payload_bytes=len(payload),
    )
    # The declared sizes must be reachable from the bytes actually present.
    if info.raw_code_bytes > _MAX_RATIO[coder] * len(payload) + (_RATIO_SLACK if coder else 0):
        raise CorruptArchiveError(
            f"archive declares {count} samples of {n_units} {n_bits}-bit codes, more than "
            f"its {len(payload)} bytes of {info.coder} data can hold"
        )
    return info, payload


def archive_info(data):
    """Read and check an archive's header.

    The structure and the checksum of the whole archive are checked, but nothing is
    decoded and no model is needed.

    Parameters
    ----------
    data : bytes
        An archive made by :meth:`Codec.compress`.

    Returns
    -------
    info : ArchiveInfo
        Header fields, sizes and ``bits_per_pixel``.

    Raises
    ------
    CorruptArchiveError
        If ``data`` is not an intact archive of a supported version.

    See Also
    --------
    Codec.decompress : Decode an archive with the codec that made it.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> from skdae.codec import Codec, archive_info
    >>> X = np.random.default_rng(0).random((200, 64))
    >>> data = Codec(PCA(8).fit(X), n_bits=4).fit(X).compress(X)
    >>> info = archive_info(data)
    >>> info.count, info.n_units, info.raw_code_bytes
    (200, 8, 800)
    >>> round(info.bits_per_pixel, 3) == round(8 * len(data) / (200 * 64), 3)
    True
    """
    return _parse(data)[0]


def _encode_payload(packed, coder):
    if coder == "zlib":
        # Raw deflate: the container already has a checksum, so zlib's 6 bytes of
        # framing would be wasted on small archives.
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        return compressor.compress(packed) + compressor.flush()
    if coder == "lzma":
        return lzma.compress(packed, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
    return packed


def _decode_payload(payload, coder, expected):
    """Undo :func:`_encode_payload`; never produce more than ``expected + 1`` bytes."""
    if coder == "none":
        out, done, rest = payload, True, b""
    else:
        if coder == "zlib":
            decompressor = zlib.decompressobj(-15)
            errors = (zlib.error,)
        else:
            decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
            errors = (lzma.LZMAError,)
        try:
            out = decompressor.decompress(payload, expected + 1)
        except errors as exc:
            raise CorruptArchiveError(f"corrupt {coder} data: {exc}") from None
        done = decompressor.eof
        rest = decompressor.unused_data or getattr(decompressor, "unconsumed_tail", b"")
    if len(out) != expected or not done or rest:
        raise CorruptArchiveError(
            f"coded data does not hold the {expected} bytes of codes the header declares"
        )
    return out


def _flat_rows(X, r0, r1):
    """Samples ``r0:r1`` of ``X`` (in memory or out of core) as a 2-D NumPy array."""
    block = np.asarray(X[r0:r1])
    return block.reshape(block.shape[0], -1)


class Codec(BaseEstimator):
    """Compress samples to bytes through the codes of a fitted transformer.

    ``compress`` maps samples to codes with ``model.transform``, quantizes each code unit
    uniformly to ``n_bits`` over the range it took on the codes seen by :meth:`fit`
    (values outside are clipped), packs the bits unit by unit and entropy-codes them.
    ``decompress`` undoes this and maps the dequantized codes back with
    ``model.inverse_transform``: ``decompress(compress(X))`` equals
    ``model.inverse_transform(dequantize(quantize(model.transform(X))))`` exactly.

    Save a fitted codec with :func:`skdae.save`: the model file then holds the model and
    the learned ranges, all an archive needs to be decoded.

    Parameters
    ----------
    model : estimator
        A **fitted** transformer with ``transform`` and ``inverse_transform``. It is not
        refitted: :meth:`fit` only learns the quantization ranges.
    n_bits : int, default=8
        Bits per code value, 1 to 16. Each unit is quantized to ``2**n_bits`` levels
        (bin centres), so more bits lower the quantization error and raise the rate.
    coder : {"zlib", "lzma", "none"}, default="zlib"
        Entropy coder for the packed bits: raw deflate (fast, the default), raw LZMA2
        (a few % smaller at 1-2 bits, 10x slower), or none.

    Attributes
    ----------
    code_min_ : ndarray of shape (n_units,)
        Lowest value of each code unit on the training codes (float64).
    code_max_ : ndarray of shape (n_units,)
        Highest value of each code unit on the training codes (float64).
    code_dtype_ : str
        dtype of the model's codes; dequantized codes are cast to it.
    n_features_in_ : int
        Number of values per sample (pixels x channels).

    See Also
    --------
    archive_info : Read an archive's header without a model.
    skdae.save : Write the fitted codec (with its model) to a model file.
    skdae.load : Read it back.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> from skdae.codec import Codec
    >>> X = np.random.default_rng(0).random((200, 64))
    >>> codec = Codec(PCA(8).fit(X), n_bits=6).fit(X)
    >>> data = codec.compress(X[:10])
    >>> codec.decompress(data).shape
    (10, 64)
    """

    _parameter_constraints: dict = {
        "model": [HasMethods(["transform", "inverse_transform"])],
        "n_bits": [Interval(Integral, 1, 16, closed="both")],
        "coder": [StrOptions(set(CODERS))],
    }

    def __init__(self, model, *, n_bits=8, coder="zlib"):
        self.model = model
        self.n_bits = n_bits
        self.coder = coder

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Learn each code unit's range from the codes of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Training samples, flattened to ``(n_samples, n_features)`` if they have more
            than two dimensions (images).
        y : None
            Ignored.

        Returns
        -------
        self : Codec
            Fitted codec.
        """
        self._check_n_bits()
        X, shape = self._flatten(X, check_features=False)
        lo = hi = None
        for r0 in range(0, X.shape[0], _CHUNK_ROWS):
            codes = self._transform(_flat_rows(X, r0, r0 + _CHUNK_ROWS))
            lo = codes.min(axis=0) if lo is None else np.minimum(lo, codes.min(axis=0))
            hi = codes.max(axis=0) if hi is None else np.maximum(hi, codes.max(axis=0))
        self.code_min_ = lo.astype(np.float64)
        self.code_max_ = hi.astype(np.float64)
        self.code_dtype_ = codes.dtype.str
        self.n_features_in_ = int(np.prod(shape, dtype=np.int64))
        return self

    # -- helpers -----------------------------------------------------------------------

    @property
    def n_units_(self):
        """Number of code units (length of ``code_min_``)."""
        return len(self.code_min_)

    def _check_fitted_state(self):
        """Refuse fitted state that does not fit together (it may come from a model file).

        Checks the ranges (finite float64 arrays of one length, ``min <= max``), the code
        dtype (float32 or float64, as a str), ``n_features_in_``, and that they agree with
        the model: it is fitted, takes ``n_features_in_`` values and outputs as many code
        units as there are ranges (where the model says so). An unfitted codec passes.

        Raises
        ------
        ValueError
            Naming the attribute at fault.
        """
        self._check_n_bits()
        names = ["code_min_", "code_max_", "code_dtype_", "n_features_in_"]
        present = [name for name in names if hasattr(self, name)]
        if not present:
            return
        if len(present) != len(names):
            self._state_error(f"missing {', '.join(sorted(set(names) - set(present)))}")
        lo, hi = self.code_min_, self.code_max_
        for name, value in (("code_min_", lo), ("code_max_", hi)):
            if not isinstance(value, np.ndarray) or value.dtype != np.float64:
                self._state_error(f"{name} is not a float64 array")
            if value.ndim != 1 or value.size == 0:
                self._state_error(f"{name} has shape {value.shape}, not (n_units,)")
            if not np.isfinite(value).all():
                self._state_error(f"{name} holds non-finite values")
        if lo.shape != hi.shape:
            self._state_error(f"code_min_ {lo.shape} and code_max_ {hi.shape} differ in length")
        with np.errstate(over="ignore"):
            if not (np.isfinite(hi - lo).all() and (lo <= hi).all()):
                self._state_error("code ranges are not finite intervals (min <= max)")
        dtype = self.code_dtype_
        if not isinstance(dtype, str) or dtype not in _CODE_DTYPES:
            self._state_error(f"code_dtype_ is {dtype!r}, not float32 or float64")
        n_features = self.n_features_in_
        if not _is_count(n_features):
            self._state_error(f"n_features_in_ is {n_features!r}, not a positive int")
        if isinstance(self.model, BaseEstimator):
            check_is_fitted(self.model)
        model_in = getattr(self.model, "n_features_in_", None)
        if _is_count(model_in) and model_in != n_features:
            self._state_error(
                f"n_features_in_={n_features} but the model takes {model_in} features"
            )
        model_out = n_features_out(self.model)
        if model_out is not None and model_out != lo.size:
            self._state_error(
                f"{lo.size} code ranges but the model outputs {model_out} code units"
            )

    def _check_usable(self):
        """Fitted, with valid parameters and consistent fitted state."""
        check_is_fitted(self)
        self._validate_params()
        self._check_fitted_state()

    def _check_n_bits(self):
        # The parameter constraints take any Integral, and bool is one.
        if isinstance(self.n_bits, bool):
            raise ValueError(f"n_bits must be an int in [1, 16], got {self.n_bits!r}")

    def _state_error(self, problem):
        raise ValueError(
            f"the codec's fitted state is inconsistent: {problem} (damaged model file?)"
        )

    def _flatten(self, X, check_features=True):
        """Return ``(X, sample shape)``, ``X`` still of shape ``(n_samples, *shape)``:
        an out-of-core array is left unread (see :func:`_flat_rows`)."""
        if not (hasattr(X, "shape") and hasattr(X, "dtype") and hasattr(X, "__getitem__")):
            X = np.asarray(X)
        if len(X.shape) < 2:
            raise ValueError(
                f"expected samples as rows of a 2-D (or image-shaped) array, got shape {X.shape}"
            )
        if X.shape[0] == 0:
            raise ValueError("no samples given")
        shape = tuple(X.shape[1:])
        if len(shape) > _MAX_NDIM:
            raise ValueError(f"samples have {len(shape)} dimensions; at most {_MAX_NDIM}")
        n_features = int(np.prod(shape, dtype=np.int64))
        if check_features and n_features != self.n_features_in_:
            raise ValueError(
                f"samples of shape {shape} have {n_features} values; the codec was fitted "
                f"on {self.n_features_in_}"
            )
        return X, shape

    def _transform(self, X2):
        codes = np.asarray(self.model.transform(X2))
        if codes.ndim != 2 or codes.shape[0] != X2.shape[0] or codes.dtype.kind != "f":
            raise ValueError(f"model.transform returned codes of shape {codes.shape}")
        if not np.all(np.isfinite(codes)):
            raise ValueError("model.transform returned non-finite codes")
        return codes

    def _steps(self):
        return (self.code_max_ - self.code_min_) / (1 << self.n_bits)

    def quantize(self, codes):
        """Map codes to integer levels ``0 .. 2**n_bits - 1`` (clipping out-of-range values).

        Parameters
        ----------
        codes : array-like of shape (n_samples, n_units)
            Codes from ``model.transform``.

        Returns
        -------
        levels : ndarray of shape (n_samples, n_units), dtype uint8 or uint16
            Quantization bin of each value.
        """
        self._check_usable()
        codes = np.asarray(codes, dtype=np.float64)
        if codes.ndim != 2 or codes.shape[1] != self.n_units_:
            raise ValueError(f"expected codes of shape (n, {self.n_units_}), got {codes.shape}")
        if not np.all(np.isfinite(codes)):
            raise ValueError("codes must be finite")
        step = self._steps()
        # A unit constant on the training set has a zero-width range: every value maps to
        # level 0, which dequantizes to that constant.
        inv_step = np.divide(1.0, step, out=np.zeros_like(step), where=step > 0)
        levels = np.floor((codes - self.code_min_) * inv_step)
        np.clip(levels, 0, (1 << self.n_bits) - 1, out=levels)
        return levels.astype(_LEVEL_DTYPE[8 if self.n_bits <= 8 else 16])

    def dequantize(self, levels):
        """Map integer levels back to codes (bin centres), in the model's code dtype.

        Parameters
        ----------
        levels : array-like of shape (n_samples, n_units)
            Output of :meth:`quantize`.

        Returns
        -------
        codes : ndarray of shape (n_samples, n_units)
            Dequantized codes, to be passed to ``model.inverse_transform``.
        """
        self._check_usable()
        levels = np.asarray(levels)
        if levels.ndim != 2 or levels.shape[1] != self.n_units_:
            raise ValueError(f"expected levels of shape (n, {self.n_units_}), got {levels.shape}")
        step = self._steps()
        # Constant units (step 0) decode to their value, not to a bin centre.
        centres = self.code_min_ + (levels + 0.5) * step
        centres = np.where(step > 0, centres, self.code_min_)
        return centres.astype(self.code_dtype_)

    @property
    def fingerprint(self):
        """Hex sha256 of the codec's settings, ranges and model (parameters and state).

        Archives store its first 16 bytes; decoding checks them, so an archive is never
        decoded with another model or other ranges.
        """
        from ._persist import fingerprint

        check_is_fitted(self)
        return fingerprint(self).hex()

    # -- bytes -------------------------------------------------------------------------

    def _pack(self, levels):
        """Unit-major bit packing: all samples' unit 0, then unit 1, ..., MSB first.

        Grouping a unit's values lets deflate see each unit's own value distribution;
        measured on MNIST codes this beats sample-major order and bit-plane orders.
        """
        n_bits = self.n_bits
        width = 8 if n_bits <= 8 else 16
        values = np.ascontiguousarray(levels.T).astype(_WORD[width], copy=False)
        if n_bits == width:
            return values.tobytes()
        bits = np.unpackbits(values.view(np.uint8).reshape(-1, width // 8), axis=1)
        return np.packbits(bits[:, width - n_bits :], axis=None).tobytes()

    def _unpack(self, raw, count):
        """Inverse of :meth:`_pack`; ``raw`` has exactly the packed length."""
        n_bits, n_units = self.n_bits, self.n_units_
        width = 8 if n_bits <= 8 else 16
        buf = np.frombuffer(raw, dtype=np.uint8)
        if n_bits == width:
            values = buf.view(_WORD[width])
        else:
            bits = np.unpackbits(buf, count=n_units * count * n_bits).reshape(-1, n_bits)
            # packbits left-aligns each row's bits in a byte (or big-endian word).
            values = np.packbits(bits, axis=1).view(_WORD[width]).reshape(-1)
            values = values >> (width - n_bits)
        return values.reshape(n_units, count).T.astype(_LEVEL_DTYPE[width])

    def compress(self, X):
        """Compress samples to an archive.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Samples in the model's input space (e.g. images scaled to [0, 1]), as rows
            ``(n_samples, n_features)`` or with up to four dimensions per sample, such as
            ``(n_samples, 28, 28)``. The sample shape is stored, and :meth:`decompress`
            returns the same shape. An out-of-core array (``np.memmap``, Zarr, h5py, Dask)
            is read 16,384 samples at a time: only the quantized codes of all samples are
            held in memory.

        Returns
        -------
        data : bytes
            The archive; ``archive_info(data).bits_per_pixel`` gives its rate.
        """
        self._check_usable()
        X, shape = self._flatten(X)
        n = X.shape[0]
        if n >= 1 << 32:
            raise ValueError("at most 2**32 - 1 samples fit in one archive")
        levels = np.empty((n, self.n_units_), _LEVEL_DTYPE[8 if self.n_bits <= 8 else 16])
        for r0 in range(0, n, _CHUNK_ROWS):
            r1 = min(n, r0 + _CHUNK_ROWS)
            levels[r0:r1] = self.quantize(self._transform(_flat_rows(X, r0, r1)))
        payload = _encode_payload(self._pack(levels), self.coder)
        header = _FIXED.pack(MAGIC, FORMAT_VERSION, CODERS[self.coder], self.n_bits, len(shape))
        header += struct.pack(f"<{len(shape)}I", *shape)
        fingerprint = bytes.fromhex(self.fingerprint)[:_FINGERPRINT_BYTES]
        header += _TAIL.pack(self.n_units_, n, fingerprint)
        out = io.BytesIO()
        out.write(header)
        out.write(payload)
        out.write(_CRC.pack(zlib.crc32(payload, zlib.crc32(header))))
        return out.getvalue()

    def decode_codes(self, data):
        """Decode an archive to its dequantized codes, without ``inverse_transform``.

        Parameters
        ----------
        data : bytes
            An archive made by :meth:`compress` with this codec.

        Returns
        -------
        codes : ndarray of shape (count, n_units)
            Dequantized codes.
        info : ArchiveInfo
            The archive's header.

        Raises
        ------
        CorruptArchiveError
            If ``data`` is not an intact archive.
        ModelMismatchError
            If the archive was made by a codec with another model, ranges or settings.
        """
        self._check_usable()
        info, payload = _parse(data)
        expected = self.fingerprint[: 2 * _FINGERPRINT_BYTES]
        if info.fingerprint != expected:
            raise ModelMismatchError(
                f"the archive was made with another model or codec (fingerprint "
                f"{info.fingerprint}, this codec's is {expected})"
            )
        if info.n_bits != self.n_bits or info.n_units != self.n_units_:
            raise ModelMismatchError(
                f"the archive holds {info.n_units} units of {info.n_bits} bits; the codec "
                f"uses {self.n_units_} of {self.n_bits}"
            )
        if int(np.prod(info.shape, dtype=np.int64)) != self.n_features_in_:
            raise ModelMismatchError(
                f"the archive's samples have shape {info.shape}; the model takes "
                f"{self.n_features_in_} values"
            )
        raw = _decode_payload(payload, info.coder, info.raw_code_bytes)
        return self.dequantize(self._unpack(raw, info.count)), info

    def decompress(self, data):
        """Decompress an archive made by :meth:`compress` with this codec.

        Parameters
        ----------
        data : bytes
            The archive.

        Returns
        -------
        X : ndarray of shape (count, ...)
            ``model.inverse_transform`` of the dequantized codes, reshaped to the shape
            the samples had when compressed.

        Raises
        ------
        CorruptArchiveError
            If ``data`` is truncated, damaged or not an archive.
        ModelMismatchError
            If the archive was made by a codec with another model, ranges or settings.
        """
        codes, info = self.decode_codes(data)
        X = np.asarray(self.model.inverse_transform(codes))
        return X.reshape((info.count, *info.shape))

    def bits_per_pixel(self, data):
        """Rate of an archive in bits per pixel (see :attr:`ArchiveInfo.bits_per_pixel`).

        Parameters
        ----------
        data : bytes
            An archive.

        Returns
        -------
        bpp : float
            Archive size in bits, header included, over the number of pixels it holds.
        """
        return archive_info(data).bits_per_pixel
