"""Model files that never run code on load: arrays plus a JSON header in a zip (``.npz``).

A model file is an uncompressed zip archive, readable by :func:`numpy.load`: a member
``skdae.json`` holds the header (format name and version, the versions that wrote it, the
estimator's class, its ``get_params(deep=False)`` and its fitted attributes, all as JSON)
and each array is a separate ``arrays/<n>.npy`` member that the header refers to.

Loading never unpickles: classes come from an explicit allowlist (:data:`ALLOWED_CLASSES`),
values are JSON or plain arrays (object arrays are refused), and every size the file
declares is checked against the bytes it actually holds before anything is allocated.

Capture is generic rather than per class: the parameters are ``get_params(deep=False)``;
the fitted state is every instance attribute whose name ends with ``_`` (it must be
storable, or :func:`save` refuses the estimator) and every private attribute (leading
``_``) that is storable, such as optimiser state kept for ``partial_fit``; private
attributes that are not (compiled functions, caches, locks) are left out. Nested
estimators (a Pipeline's steps, a codec's model) are stored the same way, recursively.

This module writes model files (:func:`save`) and fingerprints estimators
(:func:`fingerprint`) and is where the rest of skdae imports model files' functions from.
The format's definitions (versions, members, allowlist, :class:`InvalidModelFileError`)
are in :mod:`skdae._persist_format`, reading and checking files (:func:`load`,
:func:`read_header`) in :mod:`skdae._persist_read`, and the upgrades of older formats
(:func:`migrate_state`) in :mod:`skdae._persist_migrate`.
"""

import hashlib
import io
import json
import math
import os
import secrets
import sys
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
    SCALAR_KINDS,
    InvalidModelFileError,
)
from ._persist_read import load

__all__ = ["ALLOWED_CLASSES", "InvalidModelFileError", "load", "save"]

# Documented (and pickled) under the module skdae's model files were always read from.
InvalidModelFileError.__module__ = __name__

# Fixed zip timestamps make two saves of the same model byte-identical.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)

# Runtime-only parameters, left out of fingerprints: changing them does not change what a
# model computes.
_RUNTIME_PARAMS = frozenset({"verbose", "n_jobs", "chunk_size"})


class _Unstorable(TypeError):
    """A value that a model file cannot hold without pickle."""


# --------------------------------------------------------------------------------------
# Encoding: Python values <-> JSON tree + list of arrays
# --------------------------------------------------------------------------------------


def _class_path(estimator):
    """Return the allowlisted name of ``type(estimator)``, or None."""
    cls = type(estimator)
    for name, (module, attr) in ALLOWED_CLASSES.items():
        # Only modules already imported can define the estimator's class: this avoids
        # importing (or failing to import) every allowlisted module on each lookup.
        mod = sys.modules.get(module)
        if mod is not None and getattr(mod, attr, None) is cls:
            return name
    return None


def _same_value(value, reference):
    return type(value) is type(reference) and value == reference


def _is_estimator(value):
    return hasattr(value, "get_params") and not isinstance(value, type)


class _Encoder:
    """Turn a value tree into JSON-able data, moving arrays to ``self.arrays``."""

    def __init__(self, fingerprint=False):
        self.arrays = []
        # Fingerprints leave out runtime-only parameters and accept any class: a codec
        # may wrap any transformer, even one that cannot be saved.
        self.fingerprint = fingerprint

    def _array_ref(self, array, kind="__ndarray__"):
        self.arrays.append(array)
        return {kind: len(self.arrays) - 1}

    def encode(self, value, where, depth=0):
        if depth > MAX_DEPTH:
            raise _Unstorable(f"{where}: nested more than {MAX_DEPTH} levels")
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, np.generic):
            if value.dtype.kind not in SCALAR_KINDS:
                raise _Unstorable(f"{where}: numpy scalar of dtype {value.dtype}")
            return {"__scalar__": [value.dtype.str, value.item()]}
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            # json writes NaN and infinities as bare words that it reads back; a
            # marker keeps the file valid JSON for other readers too.
            return value if math.isfinite(value) else {"__float__": repr(value)}
        if isinstance(value, np.ndarray):
            if value.dtype.kind == "O":
                if not all(isinstance(v, str) for v in value.flat):
                    raise _Unstorable(f"{where}: object array holding non-strings")
                return self._array_ref(value.astype(str), "__strarray__")
            if value.dtype.kind not in ARRAY_KINDS or value.dtype.fields is not None:
                raise _Unstorable(f"{where}: array of dtype {value.dtype}")
            return self._array_ref(value)
        if isinstance(value, (list, tuple)):
            items = [self.encode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
            return items if isinstance(value, list) else {"__tuple__": items}
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise _Unstorable(f"{where}: dict with non-string keys")
            return {
                "__dict__": {
                    k: self.encode(v, f"{where}[{k!r}]", depth + 1) for k, v in value.items()
                }
            }
        if isinstance(value, np.dtype) or (
            isinstance(value, type) and issubclass(value, np.generic)
        ):
            return {"__dtype__": np.dtype(value).str}
        if isinstance(value, np.random.RandomState):
            return {"__random_state__": self.encode(value.get_state(), where, depth + 1)}
        if _is_estimator(value) or (
            self.fingerprint and hasattr(value, "__dict__") and not callable(value)
        ):
            return {"__estimator__": self.encode_estimator(value, where, depth + 1)}
        raise _Unstorable(f"{where}: {type(value).__name__} cannot be stored without pickle")

    def encode_estimator(self, estimator, where="estimator", depth=0):
        name = _class_path(estimator)
        cls = type(estimator)
        if name is None and self.fingerprint:
            name = f"{cls.__module__}.{cls.__qualname__}"
        elif name is None:
            raise _Unstorable(
                f"{where}: class {cls.__module__}.{cls.__qualname__} is not in the model "
                f"file allowlist ({', '.join(sorted(ALLOWED_CLASSES))})"
            )
        params = {}
        get_params = getattr(estimator, "get_params", None)
        added = getattr(cls, "_params_added_after_v1", {})
        for key, value in (get_params(deep=False) if get_params else {}).items():
            if self.fingerprint and (
                key in _RUNTIME_PARAMS or (key in added and _same_value(value, added[key]))
            ):
                continue
            params[key] = self.encode(value, f"{where}.{key}", depth + 1)
        attributes = {}
        # A fingerprint hashes the public attributes as the estimator holds them (the
        # weights as coefs_ / intercepts_); a model file stores what rebuilds them.
        items = vars(estimator) if self.fingerprint else _fitted_state(estimator)
        added_attributes = getattr(cls, "_attributes_added_after_v1", {})
        for key, value in items.items():
            if key.startswith("__") or not ATTR_NAME.match(key):
                continue
            if self.fingerprint and key in added_attributes and _same_value(
                    value, added_attributes[key]):
                continue
            if key.endswith("_") and not key.startswith("_"):
                attributes[key] = self.encode(value, f"{where}.{key}", depth + 1)
            elif key.startswith("_") and not self.fingerprint:
                # Private state is kept when it is plain data (optimizer moments for
                # partial_fit); caches and compiled objects are rebuilt on demand.
                n_arrays = len(self.arrays)
                try:
                    attributes[key] = self.encode(value, f"{where}.{key}", depth + 1)
                except _Unstorable:
                    del self.arrays[n_arrays:]
        return {"class": name, "params": params, "attributes": attributes}


def _fitted_state(estimator):
    """The attributes a model file stores: ``__getstate__`` for skdae's estimators (which
    leaves out what they rebuild, such as views), the instance dict otherwise."""
    if hasattr(estimator, "_check_fitted_state"):
        return estimator.__getstate__()
    return vars(estimator)


# --------------------------------------------------------------------------------------
# Fingerprints
# --------------------------------------------------------------------------------------


def fingerprint(estimator):
    """Return the sha256 digest (32 bytes) of an estimator's parameters and fitted state.

    The digest covers the class, the parameters (except the runtime-only ``verbose`` and
    ``n_jobs``) and the public fitted attributes (names ending with ``_``), arrays by
    dtype, shape and values; it is the same before and after a :func:`save` /
    :func:`load` round trip and across processes. Private state (such as optimizer
    moments) is left out: it does not change what the model computes, and hashing it
    would double the cost.

    Parameters
    ----------
    estimator : object
        An estimator, of any class (nested objects without ``get_params`` are hashed by
        their attributes); its attributes must be storable values.

    Returns
    -------
    digest : bytes
        32-byte sha256 digest.
    """
    encoder = _Encoder(fingerprint=True)
    try:
        tree = encoder.encode_estimator(estimator)
    except _Unstorable as exc:
        raise ValueError(f"cannot fingerprint the model: {exc}") from None
    digest = hashlib.sha256()
    digest.update(json.dumps(tree, sort_keys=True, separators=(",", ":")).encode())
    for array in encoder.arrays:
        digest.update(f"|{array.dtype.str}{array.shape}|".encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.digest()


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------


def _versions():
    import sklearn

    from . import __version__

    return {
        "skdae": __version__,
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "python": ".".join(map(str, sys.version_info[:3])),
    }


def save(estimator, path, *, metadata=None):
    """Save a fitted estimator to a model file that can be loaded without running code.

    The file is a zip of ``.npy`` arrays and a JSON header (see the module docstring);
    it is written to a temporary file next to ``path`` and renamed, so a reader never
    sees a half-written model.

    Parameters
    ----------
    estimator : estimator instance
        A fitted estimator of one of the :data:`ALLOWED_CLASSES` (for example an
        :class:`~skdae.RBMStackAutoencoder`, a PCA, a Pipeline of scalers and PCA, or a
        :class:`~skdae.codec.Codec` wrapping one of those).
    path : str or path-like
        File to write. No extension is added; ``.skdae`` or ``.npz`` are customary.
    metadata : dict, default=None
        Extra JSON-serialisable information stored as is (for example how training
        images were read); returned by ``load(path, return_metadata=True)``.

    Raises
    ------
    ValueError
        If the estimator's class is not allowlisted, or a parameter or fitted attribute
        cannot be stored without pickle, or ``metadata`` is not JSON-serialisable.

    See Also
    --------
    load : Rebuild the estimator from the file.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> import skdae
    >>> X = np.random.default_rng(0).random((50, 8))
    >>> path = os.path.join(tempfile.mkdtemp(), "pca.skdae")
    >>> skdae.save(PCA(3).fit(X), path)
    >>> pca = skdae.load(path)
    >>> pca.transform(X).shape
    (50, 3)
    """
    encoder = _Encoder()
    try:
        tree = encoder.encode_estimator(estimator)
    except _Unstorable as exc:
        raise ValueError(f"cannot save the model: {exc}") from None
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "written_by": _versions(),
        "metadata": {} if metadata is None else metadata,
        "n_arrays": len(encoder.arrays),
        "estimator": tree,
    }
    try:
        header_bytes = json.dumps(header, indent=1, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot save the model: metadata is not plain JSON: {exc}") from None

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    # Not mkstemp, which makes the file readable by its owner only: a model file gets the
    # permissions any file written with open() gets (0666 less the umask).
    tmp = os.path.join(folder, f".skdae-{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr(zipfile.ZipInfo(HEADER_MEMBER, _ZIP_DATE), header_bytes)
            for i, array in enumerate(encoder.arrays):
                buf = io.BytesIO()
                np.lib.format.write_array(buf, array, allow_pickle=False)
                zf.writestr(zipfile.ZipInfo(ARRAY_MEMBER.format(i), _ZIP_DATE), buf.getvalue())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
