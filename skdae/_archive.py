"""The codec's archive format: header writing and parsing, versions, payload coders.

Archive layout, version 2 (little-endian)::

    magic          8 bytes   b"\\x89SKD\\r\\n\\x1a\\n"
    version        u8        2
    coder          u8        0 none, 1 zlib (raw deflate), 2 lzma (raw LZMA2), 3 rans
    n_bits         u8        0..16, most bits of one code value
    ndim           u8        1..4, dimensions of one sample (e.g. 2 for 28 x 28 images)
    shape          ndim x u32
    n_units        u32       code units per sample
    count          u32       number of samples
    sample_bits    u32       bits of one sample's bit-packed levels (sum of the units' bits)
    fingerprint    16 bytes  first bytes of the codec's sha256 fingerprint
    payload        ...       coded levels
    crc32          u32       of every byte before it

Version 1 (skdae 0.1) has no ``sample_bits`` (every unit had ``n_bits``) and no rANS; it is
still read. With coders 0-2 the payload is the levels bit-packed unit by unit (all samples'
unit 0, then unit 1, ..., MSB first, unit ``j`` with its own number of bits), then
deflated or LZMA-compressed; with coder 3 it is the rANS stream of the levels under the
codec's frequency tables (:mod:`skdae._kernels._rans`), which only the codec can check.
"""

import lzma
import struct
import zlib
from dataclasses import dataclass

import numpy as np

MAGIC = b"\x89SKD\r\n\x1a\n"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
CODERS = {"none": 0, "zlib": 1, "lzma": 2, "rans": 3}
CODER_NAMES = {v: k for k, v in CODERS.items()}
_V1_CODERS = (0, 1, 2)
FINGERPRINT_BYTES = 16
MAX_NDIM = 4
_FIXED = struct.Struct("<8sBBBB")
_TAIL = {1: struct.Struct("<II16s"), 2: struct.Struct("<III16s")}
_CRC = struct.Struct("<I")
_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]
# Largest expansion each byte coder can achieve (deflate: 1032:1; raw LZMA2 measured about
# 7000:1 on zeros), plus a constant for tiny streams. A header whose sizes need more than
# this is rejected before anything is allocated. rANS is bounded by the codec's tables.
_MAX_RATIO = {0: 1, 1: 1040, 2: 1 << 14}
_RATIO_SLACK = 1 << 10


class CorruptArchiveError(ValueError):
    """Bytes that are not a valid archive: truncated, damaged, or another format.

    Raised by :func:`~skdae.codec.archive_info` and by :meth:`Codec.decompress
    <skdae.codec.Codec.decompress>` when the magic bytes, format version, declared sizes,
    checksum or coded data are wrong. A ``ValueError``, so code that catches
    ``ValueError`` catches it too.

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

    Every archive carries a fingerprint of the codec that made it (its model, ranges,
    bit allocation, tables and settings); :meth:`Codec.decompress
    <skdae.codec.Codec.decompress>` and :meth:`Codec.decode_codes
    <skdae.codec.Codec.decode_codes>` raise this error instead of decoding with a codec
    whose fingerprint differs. A ``ValueError``.

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

    Returned by :func:`~skdae.codec.archive_info`; not meant to be built by hand. Each
    parameter is also an attribute, and the properties below derive sizes and the rate.

    Parameters
    ----------
    version : int
        Container format version (1 or 2).
    coder : str
        Entropy coder: ``"none"``, ``"zlib"``, ``"lzma"`` or ``"rans"``.
    n_bits : int
        Most bits of one quantized code value (every unit's, in version 1).
    shape : tuple of int
        Shape of one sample (``(28, 28)`` for MNIST images given as such).
    n_units : int
        Code units per sample.
    count : int
        Number of samples.
    fingerprint : str
        Hex digest prefix identifying the codec (model, ranges, tables) that made it.
    header_bytes : int
        Bytes of container overhead (header and checksum), the same for every archive
        of one codec and sample shape.
    payload_bytes : int
        Bytes of coded data.
    sample_bits : int
        Bits of one sample's levels before entropy coding (sum of the units' bits).

    See Also
    --------
    skdae.codec.archive_info : Read and check an archive's header.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> from skdae.codec import Codec, archive_info
    >>> X = np.random.default_rng(0).random((100, 8, 8))
    >>> codec = Codec(PCA(4).fit(X.reshape(100, -1)), n_bits=5, allocation="uniform",
    ...               coder="zlib").fit(X)
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
    sample_bits: int

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
    def payload_bits_per_pixel(self):
        """Coded data in bits over the number of pixels (header left out)."""
        return 8 * self.payload_bytes / (self.count * self.n_pixels)

    @property
    def raw_code_bytes(self):
        """Size of the bit-packed quantized codes before entropy coding."""
        return -(-self.count * self.sample_bits // 8)


def header_size(ndim, version=FORMAT_VERSION):
    """Bytes of header and checksum of an archive whose samples have ``ndim`` dimensions."""
    return _FIXED.size + 4 * ndim + _TAIL[version].size + _CRC.size


def parse(data):
    """Check an archive's structure and checksum; return ``(info, payload)``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"an archive is bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) < _FIXED.size or not data.startswith(MAGIC):
        raise CorruptArchiveError("not a skdae archive (bad magic bytes)")
    _, version, coder, n_bits, ndim = _FIXED.unpack_from(data)
    if version not in READABLE_VERSIONS:
        raise CorruptArchiveError(
            f"archive format version {version}; this skdae reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    if coder not in CODER_NAMES or (version == 1 and coder not in _V1_CODERS):
        raise CorruptArchiveError(f"unknown coder id {coder} in a version-{version} archive")
    if not (1 if version == 1 else 0) <= n_bits <= 16:
        raise CorruptArchiveError(f"n_bits {n_bits} outside the range of version {version}")
    if not 1 <= ndim <= MAX_NDIM:
        raise CorruptArchiveError(f"sample shape has {ndim} dimensions (1..{MAX_NDIM})")
    tail = _TAIL[version]
    header_len = _FIXED.size + 4 * ndim + tail.size
    if len(data) < header_len + _CRC.size:
        raise CorruptArchiveError(f"truncated archive ({len(data)} bytes)")
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if zlib.crc32(data[: -_CRC.size]) != crc:
        raise CorruptArchiveError("archive checksum mismatch: the data is damaged or truncated")
    shape = struct.unpack_from(f"<{ndim}I", data, _FIXED.size)
    if version == 1:
        n_units, count, fingerprint = tail.unpack_from(data, _FIXED.size + 4 * ndim)
        sample_bits = n_units * n_bits
    else:
        n_units, count, sample_bits, fingerprint = tail.unpack_from(data, _FIXED.size + 4 * ndim)
    if 0 in shape or n_units == 0 or count == 0:
        raise CorruptArchiveError("archive declares an empty shape, code or count")
    if sample_bits > 16 * n_units or (n_bits == 0) != (sample_bits == 0):
        raise CorruptArchiveError(
            f"archive declares {sample_bits} bits per sample for {n_units} units of at most "
            f"{n_bits} bits"
        )
    payload = data[header_len : -_CRC.size]
    info = ArchiveInfo(
        version=version,
        coder=CODER_NAMES[coder],
        n_bits=n_bits,
        shape=tuple(shape),
        n_units=n_units,
        count=count,
        fingerprint=fingerprint.hex(),
        header_bytes=header_len + _CRC.size,
        payload_bytes=len(payload),
        sample_bits=sample_bits,
    )
    # The declared sizes must be reachable from the bytes actually present.
    if coder in _MAX_RATIO and info.raw_code_bytes > _MAX_RATIO[coder] * len(payload) + (
        _RATIO_SLACK if coder else 0
    ):
        raise CorruptArchiveError(
            f"archive declares {count} samples of {sample_bits} bits, more than its "
            f"{len(payload)} bytes of {info.coder} data can hold"
        )
    return info, payload


def write(coder, n_bits, shape, n_units, count, sample_bits, fingerprint, payload):
    """Assemble a current-version archive around ``payload``."""
    header = _FIXED.pack(MAGIC, FORMAT_VERSION, CODERS[coder], n_bits, len(shape))
    header += struct.pack(f"<{len(shape)}I", *shape)
    header += _TAIL[FORMAT_VERSION].pack(n_units, count, sample_bits,
                                         fingerprint[:FINGERPRINT_BYTES])
    return b"".join([header, payload, _CRC.pack(zlib.crc32(payload, zlib.crc32(header)))])


def encode_bytes(packed, coder):
    """Byte-level coding of bit-packed levels with a standard-library coder."""
    if coder == "zlib":
        # Raw deflate: the container already has a checksum, so zlib's 6 bytes of
        # framing would be wasted on small archives.
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        return compressor.compress(packed) + compressor.flush()
    if coder == "lzma":
        return lzma.compress(packed, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
    return packed


def decode_bytes(payload, coder, expected):
    """Undo :func:`encode_bytes`; never produce more than ``expected + 1`` bytes."""
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


def pack(levels, unit_bits):
    """Unit-major bit packing: all samples' unit 0, then unit 1, ..., MSB first.

    Unit ``j`` takes ``unit_bits[j]`` bits a value (none for a single-level unit).
    Grouping a unit's values lets deflate see each unit's own value distribution;
    measured on MNIST codes this beats sample-major order and bit-plane orders.
    """
    pieces = []
    for j, b in enumerate(unit_bits):
        if b == 0:
            continue
        values = np.ascontiguousarray(levels[:, j]).astype(">u2")
        bits = np.unpackbits(values.view(np.uint8).reshape(-1, 2), axis=1)
        pieces.append(bits[:, 16 - int(b):].ravel())
    if not pieces:
        return b""
    return np.packbits(np.concatenate(pieces)).tobytes()


def unpack(raw, count, unit_bits):
    """Inverse of :func:`pack`; ``raw`` has exactly the packed length. Levels as uint16."""
    total = count * int(np.sum(unit_bits))
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), count=total)
    levels = np.zeros((count, len(unit_bits)), np.uint16)
    pos = 0
    for j, b in enumerate(unit_bits):
        b = int(b)
        if b == 0:
            continue
        block = bits[pos : pos + count * b].reshape(count, b)
        pos += count * b
        # Left-pad to 16 bits and read as big-endian words.
        padded = np.zeros((count, 16), np.uint8)
        padded[:, 16 - b :] = block
        levels[:, j] = np.packbits(padded, axis=1).view(">u2").reshape(-1)
    return levels
