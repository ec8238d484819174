"""Damaged model files: loading and then using them raises only the documented errors.

Every kind of model file (RBM, autoencoder after ``fit`` and after ``partial_fit`` with
each solver, codecs over an autoencoder, a PCA and a pipeline, a pipeline with an
autoencoder) is mutated by hypothesis, then loaded and used in a sandbox process
(``_model_file_sandbox``): ``transform``, ``inverse_transform``, ``score_samples``,
``partial_fit``, ``compress`` / ``decompress``, a codec's ``fit``, and a final save and
load. The only errors allowed are :class:`~skdae._persist.InvalidModelFileError` from
``load`` and a ``ValueError`` with a message from use; another exception, a
RuntimeWarning, a NaN or a wrongly shaped output, a crash or a hang fails the test.

Mutations are generic: they walk the JSON header and the array list by position, never by
attribute name, so they keep working when the estimators' stored state changes. They
replace arrays by arrays of another shape, dtype (including strings, complex and
big-endian), memory order, or with non-finite values; replace, delete or add JSON values
(wrong types, huge and negative ints, None, lists, nested dicts, pieces of the same file);
flip or cut bytes, with and without fixing the zip checksums; and turn every float array
into float32, a consistent model that must load and work. Array *values* are only
made non-finite, never arbitrary: a finite but absurd weight is a valid, if useless, model.

A kernel that writes out of bounds without crashing or producing a NaN goes unnoticed
here; ``.ci/run`` runs this file again under ``NUMBA_BOUNDSCHECK=1``, where it fails.
"""

import copy
import io
import json
import os
import signal
import time
import warnings
import zipfile

import _model_file_sandbox as harness
import numpy as np
import pytest
from _model_file_sandbox import Sandbox, SandboxFailure
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from skdae import save
from skdae._persist import ALLOWED_CLASSES

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# Examples per kind: the whole file runs in well under a minute once kernels are cached.
# SKDAE_FUZZ_EXAMPLES asks for more in a longer local run.
N_EXAMPLES = int(os.environ.get("SKDAE_FUZZ_EXAMPLES", 60))
fuzz_settings = settings(
    max_examples=N_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

KINDS = [
    "rbm",
    "autoencoder-adam",
    "autoencoder-adam-partial_fit",
    "autoencoder-sgd-real",
    "autoencoder-sgd-real-partial_fit",
    "pipeline-autoencoder-real",
    "codec-autoencoder",
    "codec-autoencoder-qat",
    "codec-pca",
    "codec-pipeline-real",
]

# ------------------------------------------------------------------- model file parts


def split(model_bytes):
    """A model file as ``(header dict, list of arrays)``."""
    with zipfile.ZipFile(io.BytesIO(model_bytes)) as zf:
        header = json.loads(zf.read("skdae.json"))
        arrays = [
            np.lib.format.read_array(io.BytesIO(zf.read(f"arrays/{i}.npy")), allow_pickle=False)
            for i in range(header["n_arrays"])
        ]
    return header, arrays


def join(header, arrays):
    """Inverse of :func:`split` (valid zip checksums, whatever the content)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("skdae.json", json.dumps(header).encode())
        for i, array in enumerate(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, array, allow_pickle=False)
            zf.writestr(f"arrays/{i}.npy", buf.getvalue())
    return out.getvalue()


_ARRAY_MARKERS = ("__ndarray__", "__strarray__")


def sites(node, path="$"):
    """Every ``(container, key, path)`` below ``node``, depth first."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, child in items:
        child_path = f"{path}[{key!r}]"
        yield node, key, child_path
        if isinstance(child, (dict, list)):
            yield from sites(child, child_path)


def estimator_entries(header):
    """Sites that are one parameter or one fitted attribute of some estimator."""
    return [
        (container[key], name, f"{path}[{name!r}]")
        for container, key, path in sites(header)
        if key in ("params", "attributes") and isinstance(container[key], dict)
        for name in container[key]
    ]


def renumber_arrays(header, arrays):
    """Give every array reference its own copy of the array, in reference order.

    After a mutation has dropped, duplicated or moved references, this keeps the file's
    bookkeeping valid (no unreferenced or doubly referenced array), so the mutation itself
    reaches the estimator instead of being refused as a broken container.
    """
    new_arrays = []
    for container, key, _ in list(sites(header)):
        node = container[key]
        if isinstance(node, dict) and len(node) == 1:
            ((marker, index),) = node.items()
            if marker in _ARRAY_MARKERS and type(index) is int and 0 <= index < len(arrays):
                node[marker] = len(new_arrays)
                new_arrays.append(arrays[index].copy())
    header["n_arrays"] = len(new_arrays)
    return header, new_arrays


# ----------------------------------------------------------------- array mutations

OTHER_DTYPES = [
    np.float16, np.float32, np.float64, ">f4", ">f8", np.int64, np.int32, np.uint8, np.int8,
    np.bool_, np.complex64, np.complex128, "<U4", "S4",
]  # fmt: skip


def other_shapes(shape):
    shapes = [(1, 1), (0,), (0, 3), (), (1,), (7,), (3, 3, 3), tuple(reversed(shape))]
    for axis, size in enumerate(shape):
        for new in (size + 1, size - 1, 2 * size + 5, 0, 1):
            if new >= 0:
                shapes.append(shape[:axis] + (new,) + shape[axis + 1 :])
    shapes += [shape + (1,), (1,) + shape, (int(np.prod(shape)),)]
    return [s for s in shapes if s != shape]


def _as(array, dtype):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # complex to real, overflow: all intended
            return array.astype(dtype)
    except (TypeError, ValueError):  # strings that are not numbers
        return np.zeros(array.shape, dtype)


@st.composite
def mutated_array(draw, array):
    """Another array in the place of ``array``, and a description of the change."""
    how = draw(st.sampled_from(["shape", "dtype", "non-finite", "fortran"]))
    if how == "shape":
        shape = draw(st.sampled_from(other_shapes(array.shape)))
        # Values of the original (numpy.resize repeats them), so only the shape is odd.
        if array.size:
            out = np.resize(array, int(np.prod(shape))).reshape(shape)
        else:
            out = np.zeros(shape, array.dtype)
        return out, f"shape {array.shape} -> {shape}"
    if how == "dtype":
        dtype = draw(st.sampled_from([d for d in OTHER_DTYPES if np.dtype(d) != array.dtype]))
        return _as(array, dtype), f"dtype {array.dtype} -> {np.dtype(dtype)}"
    if how == "fortran" and array.ndim >= 2 and min(array.shape) > 1:
        return np.asfortranarray(array), f"Fortran order {array.shape}"
    out = array.copy() if array.dtype.kind == "f" else _as(array, np.float64)
    if out.size == 0:
        return np.full((2,) * max(1, out.ndim), np.nan), f"{array.shape} -> NaNs"
    flat = out.reshape(-1)
    changed = {}
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, flat.size - 1))
        changed[i] = flat[i] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return out, f"{array.dtype}{array.shape} flat entries {changed} (as {out.dtype})"


# ------------------------------------------------------------------ JSON mutations

GARBAGE = [
    None, True, False, 0, 1, -1, 2, 2**63, -(2**63) - 1, 10**30, -(10**30), 0.5, -1.5, 1e308,
    "", "x", "auto", "3", [], [1], [0, 2, 3], [[1, 2]], [None], {},
    {"__dict__": {}}, {"__dict__": {"a": 1}}, {"__tuple__": []}, {"__tuple__": [4, 2]},
    {"__float__": "nan"}, {"__float__": "inf"}, {"__float__": "-inf"},
    {"__dtype__": "<f4"}, {"__dtype__": "<U3"}, {"__dtype__": "<c16"},
    {"__scalar__": ["<f8", 1.5]}, {"__scalar__": ["<i8", -3]}, {"__scalar__": ["|b1", True]},
    {"__scalar__": ["<f4", 2.0]}, {"__scalar__": ["<u8", 18446744073709551615]},
    {"__estimator__": {"class": "sklearn.preprocessing.MinMaxScaler", "params": {}, "attributes": {}}},
]  # fmt: skip


def related_values(value):
    """Values of the wrong type or range derived from an existing one."""
    if isinstance(value, bool):
        return [not value, int(value), str(value)]
    if isinstance(value, int):
        return [str(value), value + 1, value - 1, -value, 0, float(value), [value]]
    if isinstance(value, float):
        return [str(value), -value, 0.0, int(value), {"__float__": "nan"}]
    if isinstance(value, list):
        return [value[:-1], value + value[-1:], [], value[::-1], [value]] + value[:1]
    if isinstance(value, str):
        return [value.upper(), value + "x", [value]]
    return []


def strings_in(header):
    found = {v for c, k, _ in sites(header) if isinstance(v := c[k], str)}
    return sorted(found | set(ALLOWED_CLASSES))


def keys_in(header):
    found = {k for c, k, _ in sites(header) if isinstance(k, str) and not k.startswith("__")}
    return sorted(found | {"extra_", "_extra", "n_features_in_"})


@st.composite
def replacement(draw, header, current):
    source = draw(st.sampled_from(["garbage", "related", "string", "piece"]))
    if source == "related" and related_values(current):
        return draw(st.sampled_from(related_values(current)))
    if source == "string":
        return draw(st.sampled_from(strings_in(header)))
    if source == "piece":
        # Another part of the same file: arrays of other shapes, estimators in odd places.
        container, key, _ = draw(st.sampled_from(list(sites(header))))
        return copy.deepcopy(container[key])
    return copy.deepcopy(draw(st.sampled_from(GARBAGE)))


@st.composite
def mutate_json(draw, header):
    """Change, remove or add one value; return a description."""
    entries = estimator_entries(header)
    if entries and draw(st.booleans()):
        # Half the time aim at one parameter or fitted attribute of some estimator.
        container, key, path = draw(st.sampled_from(entries))
    else:
        container, key, path = draw(st.sampled_from(list(sites(header))))
    how = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
    if how == "delete" and isinstance(container, dict):
        del container[key]
        return f"delete {path}"
    if how == "add" and isinstance(container, dict):
        name = draw(st.sampled_from(keys_in(header)))
        container[name] = draw(replacement(header, None))
        return f"add {path.rsplit('[', 1)[0]}[{name!r}] = {_short(container[name])}"
    container[key] = draw(replacement(header, container[key]))
    return f"replace {path} by {_short(container[key])}"


# ----------------------------------------------------------------- byte mutations


@st.composite
def mutate_bytes(draw, model_bytes):
    """Flip, cut or insert bytes: in the file (the zip checksums then catch most), or
    inside one member before the zip is rebuilt (only its own parser can catch it)."""
    how = draw(st.sampled_from(["flip", "truncate", "insert", "flip member"]))
    blob = bytearray(model_bytes)
    if how == "flip member":
        with zipfile.ZipFile(io.BytesIO(model_bytes)) as zf:
            members = {name: bytearray(zf.read(name)) for name in zf.namelist()}
        name = draw(st.sampled_from(sorted(members)))
        data = members[name]
        # In .npy members only the header (shape, dtype, order): flipping the data bytes
        # would make arbitrary finite values (see the module docstring).
        end = len(data) if name.endswith(".json") else min(len(data), 128)
        for _ in range(draw(st.integers(1, 3))):
            i = draw(st.integers(0, end - 1))
            data[i] ^= draw(st.integers(1, 255))
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
            for member, content in members.items():
                zf.writestr(member, bytes(content))
        return out.getvalue(), [f"flip bytes of {name}, zip rebuilt"]
    if how == "truncate":
        size = draw(st.integers(0, len(blob) - 1))
        return bytes(blob[:size]), [f"truncate to {size} bytes"]
    if how == "insert":
        i = draw(st.integers(0, len(blob)))
        blob[i:i] = draw(st.binary(min_size=1, max_size=16))
        return bytes(blob), [f"insert bytes at {i}"]
    for _ in range(draw(st.integers(1, 4))):
        blob[draw(st.integers(0, len(blob) - 1))] ^= draw(st.integers(1, 255))
    return bytes(blob), ["flip bytes"]


class MutatedFile:
    """A damaged model file; printed as the list of what was done to it."""

    def __init__(self, blob, done):
        self.blob, self.done = blob, done

    def __repr__(self):
        return f"MutatedFile({self.done})"


@st.composite
def mutated_file(draw, model_bytes):
    """A damaged copy of ``model_bytes`` (a :class:`MutatedFile`)."""
    # Array and JSON mutations first: hypothesis shrinks towards 0, so a failure is
    # reported as the plainest mutation that shows it.
    how = draw(st.integers(0, 9))
    if how == 9:
        return MutatedFile(*draw(mutate_bytes(model_bytes)))
    header, arrays = split(model_bytes)
    done = []
    retype = how in (7, 8)
    if retype:
        # Every float array as float32 (the fixtures' models are float64): for most
        # estimators a consistent model, as if trained on float32 data, that must load
        # and work; sometimes with one more mutation on top.
        arrays = [a.astype(np.float32) if a.dtype.kind == "f" else a for a in arrays]
        done.append("every float array as float32")
    for _ in range(draw(st.integers(0, 1) if retype else st.integers(1, 2))):
        if draw(st.booleans()) and arrays:
            i = draw(st.integers(0, len(arrays) - 1))
            arrays[i], what = draw(mutated_array(arrays[i]))
            done.append(f"array {i} at {_where(header, i)}: {what}")
        else:
            done.append(draw(mutate_json(header)))
            header, arrays = renumber_arrays(header, arrays)
    return MutatedFile(join(header, arrays), done)


def _where(header, index):
    for container, key, path in sites(header):
        node = container[key]
        if isinstance(node, dict) and len(node) == 1 and next(iter(node.values())) == index:
            if next(iter(node)) in _ARRAY_MARKERS:
                return path
    return "unreferenced"


def _short(value, limit=80):
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def sandbox():
    box = Sandbox()
    yield box
    box.close()


class ModelFiles(dict):
    """kind -> (model file bytes, inputs, a codec's archive of them or None)."""

    def __repr__(self):  # hypothesis prints the test's arguments with each failure
        return f"<model files: {', '.join(self)}>"


@pytest.fixture(scope="module")
def model_files(small_models, digits, real_data, tmp_path_factory, sandbox):
    """Per kind: the model file, inputs for it, a codec's archive of them."""
    folder = tmp_path_factory.mktemp("fuzz")
    files = ModelFiles()
    for kind in KINDS:
        model = small_models[kind]
        X = (real_data if kind.endswith("real") else digits)[200:260]
        archive = model.compress(X) if kind.startswith("codec") else None
        save(model, folder / kind)
        files[kind] = ((folder / kind).read_bytes(), X, archive)
    # The intact files load and work: the baseline every mutation departs from. This
    # also compiles (or loads from the cache) every kernel in the sandbox once, which
    # under NUMBA_BOUNDSCHECK=1 takes minutes.
    for kind, (blob, X, archive) in files.items():
        report = sandbox.run(blob, X, archive, timeout=900)
        assert all(outcome == "ok" for _, outcome, _ in report), (kind, report)
    return files


def _judge(report, done):
    bad = [entry for entry in report if entry[1] == "BAD"]
    if bad:
        lines = [f"mutations: {done}"] + [f"{op}: {detail}" for op, _, detail in bad]
        raise AssertionError("\n".join(lines))


@pytest.mark.parametrize("kind", KINDS)
@fuzz_settings
@given(data=st.data())
def test_damaged_model_files_fail_only_with_documented_errors(model_files, sandbox, kind, data):
    model_bytes, X, archive = model_files[kind]
    mutated = data.draw(mutated_file(model_bytes), label="mutated file")
    report = sandbox.run(mutated.blob, X, archive)
    # How far damaged files get (pytest --hypothesis-show-statistics): refused by load
    # (and why), or loaded and used.
    event(f"load {report[0][1]}")
    if report[0][1] == "refused":
        event("refused: " + report[0][2].split(": ", 1)[-1][:50])
    event(f"use: {sum(outcome == 'ok' for _, outcome, _ in report[1:])} operations ok")
    _judge(report, mutated.done)


def test_the_harness_reports_what_it_must(model_files, sandbox):
    """A crash, a hang, an undocumented exception, a RuntimeWarning and a NaN output are
    each reported as BAD, and the sandbox carries on afterwards."""

    report = []
    harness._run(report, "divide", lambda: 1 / 0)
    harness._run(report, "index", lambda: [][1])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        harness._run(report, "overflow", lambda: np.exp(np.float32(1000)))
    harness._run(report, "nan", lambda: harness._check_output("t", np.array([[np.nan]]), 1, 2))
    harness._run(report, "rows", lambda: harness._check_output("t", np.zeros((2, 1)), 1, 2))
    harness._run(report, "silent", lambda: (_ for _ in ()).throw(ValueError("")))
    assert [outcome for _, outcome, _ in report] == ["BAD"] * 6, report
    harness._run(report, "documented", lambda: (_ for _ in ()).throw(ValueError("why")))
    assert report[-1][1] == "ValueError"

    with pytest.raises(SandboxFailure, match="signal SIGSEGV"):
        sandbox.call(os.kill, sandbox.process.pid, signal.SIGSEGV)
    with pytest.raises(SandboxFailure, match="hang"):
        sandbox.call(time.sleep, 30, timeout=0.5)
    blob, X, archive = model_files["codec-pca"]
    assert all(outcome == "ok" for _, outcome, _ in sandbox.run(blob, X, archive))
