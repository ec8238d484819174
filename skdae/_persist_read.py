"""Reading model files: every size, dtype and shape a file declares is checked here.

A model file is untrusted input. :func:`load` parses the zip and the JSON header from
memory, reads each ``.npy`` member only after checking that its declared shape and dtype
match the bytes it holds (:func:`_read_npy`), rebuilds allowlisted classes only
(:class:`_Decoder`), upgrades older formats (:func:`skdae._persist_migrate.migrate_state`)
and hands every rebuilt estimator to :func:`skdae._state_checks.check_loaded_estimator`
before returning it, so that no kernel ever sees an array this module has not checked.
Writing is in :mod:`skdae._persist`, which is also where callers import :func:`load` from.
"""

import importlib
import io
import json
import math
import os
import struct
import tokenize
import zipfile

import numpy as np

from ._persist_format import (
    ALLOWED_CLASSES,
    ARRAY_KINDS,
    ARRAY_MEMBER,
    ATTR_NAME,
    FORMAT_NAME,
    FORMAT_VERSION,
    HEADER_MEMBER,
    MAX_DEPTH,
    READABLE_VERSIONS,
    SCALAR_KINDS,
    InvalidModelFileError,
)
from ._persist_migrate import migrate_state
from ._state_checks import check_loaded_estimator

# A header is small (parameters, scalars, short curves); this only stops a hostile file
# from making json parse gigabytes.
_MAX_HEADER_BYTES = 64 << 20


class _Decoder:
    """Inverse of :class:`skdae._persist._Encoder`; every malformed input raises
    InvalidModelFileError."""

    def __init__(self, get_array, version=FORMAT_VERSION):
        self.get_array = get_array
        self.version = version

    def decode(self, node, where, depth=0):
        if depth > MAX_DEPTH:
            raise InvalidModelFileError(f"{where}: nested more than {MAX_DEPTH} levels")
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [self.decode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(node)]
        if not isinstance(node, dict) or len(node) != 1:
            raise InvalidModelFileError(f"{where}: unexpected value {_short(node)}")
        ((kind, payload),) = node.items()
        if kind == "__ndarray__":
            return self.get_array(payload, where)
        if kind == "__strarray__":
            return self.get_array(payload, where).astype(object)
        if kind == "__tuple__" and isinstance(payload, list):
            return tuple(self.decode(payload, where, depth + 1))
        if kind == "__dict__" and isinstance(payload, dict):
            return {k: self.decode(v, f"{where}[{k!r}]", depth + 1) for k, v in payload.items()}
        if kind == "__float__" and payload in ("nan", "inf", "-inf"):
            return float(payload)
        if kind == "__scalar__" and isinstance(payload, list) and len(payload) == 2:
            dtype = _checked_dtype(payload[0], SCALAR_KINDS, where)
            if not isinstance(payload[1], (bool, int, float)):
                raise InvalidModelFileError(f"{where}: bad scalar value {_short(payload)}")
            try:
                return dtype.type(payload[1])
            except (OverflowError, ValueError) as exc:
                raise InvalidModelFileError(f"{where}: bad scalar value: {exc}") from None
        if kind == "__dtype__":
            return _checked_dtype(payload, ARRAY_KINDS, where).type
        if kind == "__random_state__":
            state = self.decode(payload, where, depth + 1)
            random_state = np.random.RandomState()
            try:
                random_state.set_state(state)
            except (TypeError, ValueError, IndexError) as exc:
                raise InvalidModelFileError(f"{where}: bad random state: {exc}") from None
            return random_state
        if kind == "__estimator__":
            return self.decode_estimator(payload, where, depth + 1)
        raise InvalidModelFileError(f"{where}: unknown value kind {_short(kind)}")

    def decode_estimator(self, node, where="estimator", depth=0):
        if not isinstance(node, dict) or set(node) != {"class", "params", "attributes"}:
            raise InvalidModelFileError(f"{where}: malformed estimator entry")
        name, params, attributes = node["class"], node["params"], node["attributes"]
        if not isinstance(name, str) or name not in ALLOWED_CLASSES:
            raise InvalidModelFileError(
                f"{where}: class {_short(name)} is not one that model files may hold "
                f"({', '.join(sorted(ALLOWED_CLASSES))})"
            )
        if not isinstance(params, dict) or not isinstance(attributes, dict):
            raise InvalidModelFileError(f"{where}: malformed estimator entry")
        module, attr = ALLOWED_CLASSES[name]
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise InvalidModelFileError(f"{where}: cannot import {name}: {exc}") from None
        kwargs = {k: self.decode(v, f"{where}.{k}", depth + 1) for k, v in params.items()}
        try:
            estimator = cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise InvalidModelFileError(
                f"{where}: cannot rebuild {name} from the stored parameters (was the file "
                f"written with another version?): {exc}"
            ) from None
        state = {}
        for key, value in attributes.items():
            if not isinstance(key, str) or key.startswith("__") or not ATTR_NAME.match(key):
                raise InvalidModelFileError(f"{where}: bad attribute name {_short(key)}")
            state[key] = self.decode(value, f"{where}.{key}", depth + 1)
        if self.version < FORMAT_VERSION:
            migrate_state(cls, state, kwargs)
        for key, value in state.items():
            try:
                setattr(estimator, key, value)
            except (AttributeError, TypeError, ValueError) as exc:
                raise InvalidModelFileError(f"{where}: cannot set {key}: {exc}") from None
        # Nothing may compute with state that its class would misread (kernels index
        # raw memory by these shapes).
        try:
            check_loaded_estimator(estimator)
        except ValueError as exc:
            raise InvalidModelFileError(f"{where} ({name}): {exc}") from None
        return estimator


def _checked_dtype(spec, kinds, where):
    try:
        dtype = np.dtype(spec) if isinstance(spec, str) else None
    except (TypeError, ValueError):
        dtype = None
    if dtype is None or dtype.kind not in kinds or dtype.fields is not None or dtype.subdtype:
        raise InvalidModelFileError(f"{where}: unsupported dtype {_short(spec)}")
    return dtype


def _short(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Everything a hostile zip or npy header can make the standard library raise while it is
# parsed from memory; each becomes an InvalidModelFileError.
_PARSE_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    OverflowError,
    struct.error,
    NotImplementedError,
    RuntimeError,  # encrypted members, and RecursionError from deeply nested JSON
    OSError,
    tokenize.TokenError,  # numpy's fallback parser of a damaged .npy header
)


def _read_npy(data, where):
    """Parse one ``.npy`` member held in memory, checking its sizes before allocating."""
    buf = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buf)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(buf)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(buf)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except _PARSE_ERRORS as exc:
        raise InvalidModelFileError(f"{where}: bad array header: {exc}") from None
    if dtype.hasobject or dtype.kind not in ARRAY_KINDS or dtype.fields is not None:
        raise InvalidModelFileError(f"{where}: unsupported array dtype {dtype}")
    n_items = math.prod(shape)  # Python ints: no overflow
    offset = buf.tell()
    if n_items * dtype.itemsize != len(data) - offset:
        raise InvalidModelFileError(
            f"{where}: array header declares shape {shape} of {dtype} "
            f"({n_items * dtype.itemsize} bytes) but {len(data) - offset} bytes follow"
        )
    array = np.frombuffer(data, dtype=dtype, count=n_items, offset=offset)
    array = array.reshape(shape, order="F" if fortran_order else "C")
    # frombuffer views the (read-only) file bytes; estimators may update arrays in place.
    return np.array(array, copy=True, order="K")


def _read_member(zf, name, file_size, what):
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise InvalidModelFileError(f"model file has no {what} ({name})") from None
    if info.compress_type != zipfile.ZIP_STORED:
        raise InvalidModelFileError(f"{name}: compressed members are not supported")
    if info.file_size != info.compress_size or info.compress_size > file_size:
        raise InvalidModelFileError(f"{name}: member size does not match the file")
    try:
        return zf.read(name)
    except _PARSE_ERRORS as exc:
        raise InvalidModelFileError(f"{name}: cannot read member: {exc}") from None


def _open(path):
    """Read a model file; return ``(zipfile, file size, header dict)``."""
    with open(path, "rb") as f:
        data = f.read()
    name = os.fspath(path)
    if not data.startswith(b"PK"):
        raise InvalidModelFileError(f"{name}: not a skdae model file (not a zip archive)")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except _PARSE_ERRORS as exc:
        raise InvalidModelFileError(f"{name}: not a readable model file: {exc}") from None
    header_bytes = _read_member(zf, HEADER_MEMBER, min(len(data), _MAX_HEADER_BYTES), "header")
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except _PARSE_ERRORS as exc:
        raise InvalidModelFileError(f"{name}: the header is not valid JSON: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise InvalidModelFileError(f"{name}: not a skdae model file (format name)")
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise InvalidModelFileError(f"{name}: the header has no format version")
    if version not in READABLE_VERSIONS:
        by = header.get("written_by")
        by = by.get("skdae") if isinstance(by, dict) else None
        raise InvalidModelFileError(
            f"{name}: model file format version {version} (written by skdae {by}); this "
            f"skdae reads versions {', '.join(map(str, READABLE_VERSIONS))}"
        )
    return zf, len(data), header


def load(path, *, return_metadata=False):
    """Load an estimator saved by :func:`save`, without running code from the file.

    Classes come from an allowlist and values are JSON or plain arrays, never pickles.
    Every array's shape, dtype and size is checked against the file's bytes before it is
    read, and every rebuilt estimator's fitted state is checked before it is returned, so
    a damaged or hostile file is refused here rather than misread later. Files of format
    version 1 (skdae 0.1) are upgraded on the way in.

    Parameters
    ----------
    path : str or path-like
        Model file.
    return_metadata : bool, default=False
        Also return the ``metadata`` dict given to :func:`save`.

    Returns
    -------
    estimator : estimator instance
        The rebuilt estimator, with the same parameters and fitted state (its
        ``transform`` and ``inverse_transform`` give bit-identical results).
    metadata : dict
        Only if ``return_metadata`` is True.

    Raises
    ------
    InvalidModelFileError
        (a ``ValueError``) if the file is not a skdae model file, is damaged or
        truncated, comes from another format version, misses arrays, or names a class
        outside :data:`ALLOWED_CLASSES`.
    OSError
        If the file cannot be read.

    See Also
    --------
    save : Write a model file.

    Examples
    --------
    A model saved with metadata, loaded back with it:

    >>> import os, tempfile
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.preprocessing import MinMaxScaler
    >>> import skdae
    >>> path = os.path.join(tempfile.mkdtemp(), "scaler.skdae")
    >>> skdae.save(MinMaxScaler().fit(load_digits().data), path, metadata={"data": "digits"})
    >>> scaler, metadata = skdae.load(path, return_metadata=True)
    >>> metadata, scaler.n_features_in_
    ({'data': 'digits'}, 64)
    """
    zf, file_size, header = _open(path)
    name = os.fspath(path)
    n_arrays = header.get("n_arrays")
    if not isinstance(n_arrays, int) or n_arrays < 0:
        raise InvalidModelFileError(f"{name}: the header has no array count")
    used = {}

    def get_array(index, where):
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < n_arrays:
            raise InvalidModelFileError(f"{where}: bad array reference {_short(index)}")
        if index in used:
            raise InvalidModelFileError(f"{where}: array {index} is referenced twice")
        member = ARRAY_MEMBER.format(index)
        used[index] = True
        return _read_npy(_read_member(zf, member, file_size, f"array {member}"), member)

    try:
        estimator = _Decoder(get_array, header["format_version"]).decode_estimator(
            header.get("estimator")
        )
    except RecursionError:
        raise InvalidModelFileError(f"{name}: the header is nested too deeply") from None
    if len(used) != n_arrays:
        raise InvalidModelFileError(f"{name}: the header leaves arrays unreferenced")
    if return_metadata:
        metadata = header.get("metadata")
        return estimator, metadata if isinstance(metadata, dict) else {}
    return estimator


def read_header(path):
    """Return a model file's header (a dict) without rebuilding the estimator.

    Raises the same errors as :func:`load` for files that are not model files.
    """
    return _open(path)[2]
