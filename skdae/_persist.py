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
"""

import hashlib
import importlib
import io
import json
import math
import os
import re
import secrets
import struct
import sys
import tokenize
import zipfile

import numpy as np

from ._state_checks import check_loaded_estimator

__all__ = ["ALLOWED_CLASSES", "InvalidModelFileError", "load", "save"]

FORMAT_NAME = "skdae-model"
# Version 2: an autoencoder stores its weights as one flat vector (``_params``; ``coefs_``
# and ``intercepts_`` are rebuilt as views of it) and its optimiser state as named arrays;
# version-1 files are read through :func:`migrate_state`.
# Version 3: an autoencoder also stores the state of its partial_fit schedule
# (``_schedule_phase``, ``_pass_samples``, ``_pass_loss``, ``_schedule_calls``,
# ``_rbm_velocity``; see skdae._schedule); older files get the state of a finished
# schedule through :func:`migrate_state`.
# Version 4: a codec stores its bit allocation (``unit_bits_``), its rANS frequency tables
# (``frequencies_``) and its fine-tuned model (``model_``), and has an ``allocation``
# parameter; older codecs are migrated to the uniform allocation they used.
# Version 5: an autoencoder has a ``linear_path`` parameter and stores ``linear_path_``
# and the linear path's ``components_``; older autoencoders are migrated to
# ``linear_path=False``, which is what they computed.
FORMAT_VERSION = 5
READABLE_VERSIONS = (1, 2, 3, 4, 5)

_HEADER_MEMBER = "skdae.json"
_ARRAY_MEMBER = "arrays/{}.npy"
# A header is small (parameters, scalars, short curves); this only stops a hostile file
# from making json parse gigabytes.
_MAX_HEADER_BYTES = 64 << 20
_MAX_DEPTH = 64
# Fixed zip timestamps make two saves of the same model byte-identical.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)

# Public import path -> (module to import, attribute). Only these classes can be rebuilt
# from a model file; the match on save is by exact type, so subclasses are refused.
ALLOWED_CLASSES = {
    "skdae.RBMStackAutoencoder": ("skdae._autoencoder", "RBMStackAutoencoder"),
    "skdae.RBM": ("skdae._rbm", "RBM"),
    "skdae.codec.Codec": ("skdae.codec", "Codec"),
    "skdae.augment.RandomDeformation": ("skdae.augment", "RandomDeformation"),
    "sklearn.decomposition.PCA": ("sklearn.decomposition", "PCA"),
    "sklearn.preprocessing.MinMaxScaler": ("sklearn.preprocessing", "MinMaxScaler"),
    "sklearn.preprocessing.StandardScaler": ("sklearn.preprocessing", "StandardScaler"),
    "sklearn.preprocessing.MaxAbsScaler": ("sklearn.preprocessing", "MaxAbsScaler"),
    "sklearn.pipeline.Pipeline": ("sklearn.pipeline", "Pipeline"),
}

# Runtime-only parameters, left out of fingerprints: changing them does not change what a
# model computes.
_RUNTIME_PARAMS = frozenset({"verbose", "n_jobs", "chunk_size"})

_ATTR_NAME = re.compile(r"^(?:[A-Za-z][A-Za-z0-9_]*_|_[A-Za-z][A-Za-z0-9_]*)$")
_ARRAY_KINDS = frozenset("biufcUS")
_SCALAR_KINDS = frozenset("biuf")


class InvalidModelFileError(ValueError):
    """A model file that is not one, is damaged, or comes from an unsupported version.

    Raised by :func:`skdae.load` (and :func:`skdae._persist.read_header`) with a message
    naming the problem and, for a bad value, where in the file it is. A subclass of
    ``ValueError``, so ``except ValueError`` catches it too.

    See Also
    --------
    skdae.load : Loads a model file.

    Examples
    --------
    >>> import os, tempfile
    >>> import skdae
    >>> path = os.path.join(tempfile.mkdtemp(), "not-a-model.skdae")
    >>> with open(path, "wb") as f:
    ...     _ = f.write(b"hello")
    >>> try:
    ...     skdae.load(path)
    ... except skdae.InvalidModelFileError as exc:
    ...     print("refused:", str(exc).split(": ", 1)[1])
    refused: not a skdae model file (not a zip archive)
    """


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
        if depth > _MAX_DEPTH:
            raise _Unstorable(f"{where}: nested more than {_MAX_DEPTH} levels")
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, np.generic):
            if value.dtype.kind not in _SCALAR_KINDS:
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
            if value.dtype.kind not in _ARRAY_KINDS or value.dtype.fields is not None:
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
            if key.startswith("__") or not _ATTR_NAME.match(key):
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


def migrate_state(cls, state, params=None):
    """Upgrade the attributes of an older model (file or pickle) in place.

    Format 1 kept an autoencoder's weights as the lists ``coefs_`` / ``intercepts_``,
    its optimiser state as ``_optimizer_state_a`` / ``_b`` and its random stream seed as
    ``_partial_fit_seed``; the unit types at inference came from the parameters.
    Formats 1 and 2 had no ``partial_fit`` schedule: a fitted autoencoder without its
    state gets that of a finished schedule. Formats 1 to 3 had no rate model in the
    codec: a codec gets ``allocation="uniform"``, ``n_bits`` bits for every unit, no
    frequency tables and no fine-tuned model, which is what it did. Formats 1 to 4 had no
    linear path: an autoencoder gets ``linear_path=False`` (and, fitted, no components).
    A current state is returned unchanged.

    Parameters
    ----------
    cls : type
        The estimator's class.
    state : dict
        Its attributes (for a pickle, the parameters are among them).
    params : dict, default=None
        Its parameters, when they are stored apart (model files).

    Returns
    -------
    state : dict
        The same dict, upgraded.
    """
    if "_partial_fit_seed" in state:
        params = state if params is None else params
        state["_seed"] = state.pop("_partial_fit_seed")
        if cls.__name__ == "RBM":
            state["_hidden_units"] = params.get("hidden_units", "bernoulli")
        elif cls.__name__ == "RBMStackAutoencoder":
            _migrate_autoencoder_v1(state, params)
    if cls.__name__ == "Codec" and "allocation" not in (params or {}):
        _migrate_codec_v3(state, params or {})
    if cls.__name__ == "RBMStackAutoencoder" and "linear_path" not in (
            state if params is None else params):
        # Formats 1 to 4: no linear path. Set as an attribute, over the default the
        # estimator was built with.
        state["linear_path"] = False
        if "n_iter_" in state:
            state.setdefault("linear_path_", False)
            state.setdefault("components_", None)
    if cls.__name__ == "RBMStackAutoencoder" and "n_iter_" in state:
        from ._schedule import SCHEDULE_DEFAULTS

        # Formats 1 and 2 (and pickles of their time): no schedule was running.
        for name, value in SCHEDULE_DEFAULTS.items():
            state.setdefault(name, value)
    return state


def _migrate_codec_v3(state, params):
    state["allocation"] = "uniform"
    lo, n_bits = state.get("code_min_"), params.get("n_bits", 8)
    if lo is None:
        return
    if not isinstance(lo, np.ndarray) or isinstance(n_bits, bool) or not isinstance(n_bits, int):
        raise InvalidModelFileError("format-3 codec without its ranges or n_bits")
    state.setdefault("unit_bits_", np.full(lo.shape, n_bits, np.int64))
    state.setdefault("frequencies_", None)
    state.setdefault("model_", None)


def _migrate_autoencoder_v1(state, params):
    from ._network import make_layout, pack

    coefs, intercepts = state.pop("coefs_", None), state.pop("intercepts_", None)
    shapes_ok = (
        isinstance(coefs, list) and isinstance(intercepts, list) and len(coefs) >= 2
        and all(isinstance(W, np.ndarray) and W.ndim == 2 for W in coefs)
        and all(isinstance(c, np.ndarray) for c in intercepts)
    )
    if not shapes_ok:
        raise InvalidModelFileError("format-1 autoencoder without its weight lists")
    sizes = [int(coefs[0].shape[0])] + [int(W.shape[1]) for W in coefs]
    layout = make_layout(sizes)
    if [tuple(W.shape) for W in coefs] != [tuple(s) for s in layout.shapes.tolist()] or [
        c.shape for c in intercepts
    ] != [(int(n_out),) for n_out in layout.shapes[:, 1]]:
        raise InvalidModelFileError("format-1 autoencoder whose layers do not chain up")
    state["_layer_sizes"] = sizes
    state["_params"] = pack(coefs, intercepts, layout, coefs[0].dtype)
    state["_code_units"] = params.get("code_units", "linear")
    solver = state.pop("_optimizer_solver", None)
    state_a = state.pop("_optimizer_state_a", None)
    state_b = state.pop("_optimizer_state_b", None)
    if solver == "sgd":
        state["_optimizer_state"] = {"velocity": state_a}
    elif solver == "adam":
        state["_optimizer_state"] = {"first_moment": state_a, "second_moment": state_b}
    else:
        solver, state["_optimizer_state"] = None, None
    state["_optimizer_solver"] = solver


class _Decoder:
    """Inverse of :class:`_Encoder`; every malformed input raises InvalidModelFileError."""

    def __init__(self, get_array, version=FORMAT_VERSION):
        self.get_array = get_array
        self.version = version

    def decode(self, node, where, depth=0):
        if depth > _MAX_DEPTH:
            raise InvalidModelFileError(f"{where}: nested more than {_MAX_DEPTH} levels")
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
            dtype = _checked_dtype(payload[0], _SCALAR_KINDS, where)
            if not isinstance(payload[1], (bool, int, float)):
                raise InvalidModelFileError(f"{where}: bad scalar value {_short(payload)}")
            try:
                return dtype.type(payload[1])
            except (OverflowError, ValueError) as exc:
                raise InvalidModelFileError(f"{where}: bad scalar value: {exc}") from None
        if kind == "__dtype__":
            return _checked_dtype(payload, _ARRAY_KINDS, where).type
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
            if not isinstance(key, str) or key.startswith("__") or not _ATTR_NAME.match(key):
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
            zf.writestr(zipfile.ZipInfo(_HEADER_MEMBER, _ZIP_DATE), header_bytes)
            for i, array in enumerate(encoder.arrays):
                buf = io.BytesIO()
                np.lib.format.write_array(buf, array, allow_pickle=False)
                zf.writestr(zipfile.ZipInfo(_ARRAY_MEMBER.format(i), _ZIP_DATE), buf.getvalue())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
    if dtype.hasobject or dtype.kind not in _ARRAY_KINDS or dtype.fields is not None:
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
    header_bytes = _read_member(zf, _HEADER_MEMBER, min(len(data), _MAX_HEADER_BYTES), "header")
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
        member = _ARRAY_MEMBER.format(index)
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
