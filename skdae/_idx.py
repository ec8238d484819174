"""Reading IDX files, the format of the MNIST distribution, as untrusted input.

A file's header declares its element type and shape; :func:`parse_idx` checks them
against the bytes that follow (no more, no fewer) and allocates memory only for bytes the
file really holds. Gzip-compressed files are recognised by their content
(:func:`open_decompressed`), and :func:`sniff_idx` tells an IDX file from other formats
by its first bytes. The public reader is :func:`skdae.datasets.load_idx`; the MNIST
loader and the command line's IDX input (:mod:`skdae._cli_io`) build on this module.
"""

import contextlib
import gzip
import hashlib
import math
import os
import struct
import zlib

import numpy as np

__all__ = ["IDX_DTYPES", "open_decompressed", "parse_idx", "read_idx_header", "sniff_idx"]

# IDX type code (third magic byte) -> element type; the format is big-endian throughout.
IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
# Every IDX magic number starts with two zero bytes (then the type code and ndim), and
# gzip data with 0x1f8b: the first two bytes tell raw IDX, gzip and anything else apart.
_IDX_SIGNATURE = b"\x00\x00"

# Decompressed data is read in chunks of this size so that memory follows the bytes the
# file really holds, not the sizes its (untrusted) header claims.
_CHUNK = 1 << 24


def _read_upto(stream, n_bytes):
    """Read at most ``n_bytes``, growing the buffer only as data actually arrives."""
    buf = bytearray()
    while len(buf) < n_bytes:
        chunk = stream.read(min(_CHUNK, n_bytes - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


def read_idx_header(read, name):
    """Read and check an IDX header from a stream; return ``(dims, dtype, header, magic)``.

    ``read(n)`` returns at most ``n`` bytes (fewer only at the end of the data). Shared
    by :func:`parse_idx` and the command line's streaming reader, so that both refuse a
    bad header with the same messages.

    Parameters
    ----------
    read : callable
        ``read(n_bytes) -> bytes``.
    name : str
        The file's name, for messages.

    Returns
    -------
    dims : tuple of int
        The declared shape.
    dtype : numpy.dtype
        The declared element type (big-endian, as stored).
    header : bytes
        The header's bytes (magic and sizes).
    magic : int
        The magic number.

    Raises
    ------
    ValueError
        If the header is truncated, not IDX, or declares no dimensions.
    """
    header = bytes(read(4))
    if len(header) < 4:
        raise ValueError(
            f"{name}: truncated IDX file: {len(header)} byte(s), less than the 4-byte magic"
        )
    zero, type_code, ndim = struct.unpack(">HBB", header)
    magic = int.from_bytes(header, "big")
    if zero != 0 or type_code not in IDX_DTYPES:
        raise ValueError(
            f"{name}: not an IDX file: magic 0x{magic:08x} (expected 0x0000TTDD with type "
            f"TT in {', '.join(f'0x{t:02x}' for t in IDX_DTYPES)} and DD dimensions)"
        )
    if ndim == 0:
        raise ValueError(f"{name}: IDX header declares 0 dimensions")
    dims_bytes = bytes(read(4 * ndim))
    if len(dims_bytes) < 4 * ndim:
        raise ValueError(
            f"{name}: truncated IDX header: {ndim} dimension sizes declared, only "
            f"{len(dims_bytes) // 4} present"
        )
    dims = struct.unpack(f">{ndim}I", dims_bytes)
    return dims, IDX_DTYPES[type_code], header + dims_bytes, magic


def _parse_idx_stream(stream, name):
    """Parse an IDX byte stream; return ``(array, magic, sha256 hexdigest)``."""
    dims, dtype, header, magic = read_idx_header(lambda n: _read_upto(stream, n), name)
    # Python ints: the product of several uint32 sizes would overflow int64.
    expected = dtype.itemsize * math.prod(dims)
    payload = _read_upto(stream, expected)
    if len(payload) < expected:
        raise ValueError(
            f"{name}: truncated IDX file: header declares shape {dims} ({expected} bytes of "
            f"data) but only {len(payload)} bytes follow it"
        )
    if stream.read(1):
        raise ValueError(
            f"{name}: IDX file has trailing bytes after the {expected} bytes of data its "
            f"header (shape {dims}) declares"
        )
    digest = hashlib.sha256(header)
    digest.update(payload)
    array = np.frombuffer(payload, dtype=dtype)
    try:
        array = array.reshape(dims)
    except ValueError as exc:  # more dimensions than numpy supports
        raise ValueError(f"{name}: cannot make an array of shape {dims}: {exc}") from None
    if not dtype.isnative:
        array = array.astype(dtype.newbyteorder("="))
    return array, magic, digest.hexdigest()


@contextlib.contextmanager
def open_decompressed(path):
    """Open a file for reading, decompressing it when it is gzip-compressed.

    The compression is sniffed from the content (the gzip signature 0x1f8b), not the file
    name. Corrupt or truncated gzip data met while the block reads the stream is reported
    as a ``ValueError`` naming the file, like the other format errors, so that callers
    can tell bad content from a missing or unreadable file (``OSError``).

    Parameters
    ----------
    path : str or path-like
        The file.

    Yields
    ------
    stream : binary file object
        The (decompressed) content, from its first byte.
    compressed : bool
        Whether the file is gzip-compressed.
    """
    with open(path, "rb") as raw:
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        if not compressed:
            yield raw, False
            return
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                yield stream, True
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            # BadGzipFile is an OSError: without this it would pass for an I/O failure.
            raise ValueError(
                f"{os.fspath(path)}: corrupt or truncated gzip data ({type(exc).__name__}: {exc})"
            ) from None


def sniff_idx(path):
    """Tell an IDX file, raw or gzip-compressed, from other formats by its first bytes.

    Only the signature is checked; :func:`parse_idx` validates the rest of the header and
    explains what is wrong with it.

    Parameters
    ----------
    path : str or path-like
        The file.

    Returns
    -------
    kind : {"idx", "gzip"} or None
        ``"idx"`` when the (decompressed) content starts like an IDX file, ``"gzip"`` for
        other gzip-compressed content, None for anything else.

    Raises
    ------
    ValueError
        If the file is gzip-compressed and its start cannot be decompressed.
    """
    with open_decompressed(path) as (stream, compressed):
        head = stream.read(len(_IDX_SIGNATURE))
    if head == _IDX_SIGNATURE:
        return "idx"
    return "gzip" if compressed else None


def parse_idx(path):
    """Read an IDX file, gzip-compressed or raw; return ``(array, magic, sha256)``."""
    with open_decompressed(path) as (stream, _):
        return _parse_idx_stream(stream, os.fspath(path))
