"""Model files: exact round trips, no code execution, and only documented errors."""

import io
import json
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.decomposition import PCA, TruncatedSVD
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, StandardScaler

from skdae._persist import InvalidModelFileError, fingerprint, load, save
from skdae._persist_read import read_header
from skdae.codec import Codec

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

TINY_AE = dict(hidden_layer_sizes=(16, 4), pretrain_epochs=2, max_iter=3, random_state=0)


def _data(n=120, d=20, seed=0):
    return np.random.default_rng(seed).random((n, d)).astype(np.float32)


def _autoencoder():
    from skdae import RBMStackAutoencoder

    return RBMStackAutoencoder(**TINY_AE)


def _rbm():
    from skdae import RBM

    return RBM(n_components=6, max_iter=2, random_state=0)


TRANSFORMERS = {
    "pca": lambda: PCA(5, random_state=0),
    "pca-whiten": lambda: PCA(4, whiten=True, svd_solver="full"),
    "minmax": MinMaxScaler,
    "standard": StandardScaler,
    "maxabs": MaxAbsScaler,
    "pipeline": lambda: make_pipeline(StandardScaler(), PCA(6, random_state=0)),
    "autoencoder": _autoencoder,
}


def _same(a, b):
    """Recursive equality that also requires identical types and dtypes."""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.flags.f_contiguous == b.flags.f_contiguous
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    elif hasattr(a, "get_params"):
        _same_estimator(a, b)
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    else:
        assert a == b


def _same_estimator(a, b):
    _same(a.get_params(deep=False), b.get_params(deep=False))
    fitted = {k: v for k, v in vars(a).items() if k.endswith("_")}
    _same(fitted, {k: v for k, v in vars(b).items() if k.endswith("_")})


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_round_trip_is_exact(name, tmp_path):
    X = _data()
    est = TRANSFORMERS[name]().fit(X)
    path = tmp_path / "model.skdae"
    save(est, path)
    loaded = load(path)
    assert type(loaded) is type(est)
    _same_estimator(est, loaded)
    codes = est.transform(X)
    np.testing.assert_array_equal(loaded.transform(X), codes)
    np.testing.assert_array_equal(loaded.inverse_transform(codes), est.inverse_transform(codes))
    assert fingerprint(loaded) == fingerprint(est)


def test_rbm_round_trip(tmp_path):
    X = (_data() > 0.5).astype(np.float32)
    rbm = _rbm().fit(X)
    save(rbm, tmp_path / "rbm.skdae")
    loaded = load(tmp_path / "rbm.skdae")
    _same_estimator(rbm, loaded)
    np.testing.assert_array_equal(loaded.transform(X), rbm.transform(X))


def test_autoencoder_partial_fit_continues_identically(tmp_path):
    X = _data()
    ae = _autoencoder().fit(X)
    save(ae, tmp_path / "ae.skdae")
    loaded = load(tmp_path / "ae.skdae")
    ae.partial_fit(X)
    loaded.partial_fit(X)
    for a, b in zip(ae.coefs_ + ae.intercepts_, loaded.coefs_ + loaded.intercepts_, strict=True):
        np.testing.assert_array_equal(a, b)


def test_codec_round_trip_keeps_ranges_and_decodes(tmp_path):
    X = _data()
    codec = Codec(PCA(5).fit(X), n_bits=6).fit(X)
    data = codec.compress(X[:7])
    save(codec, tmp_path / "codec.skdae", metadata={"note": ["any", 1, None]})
    loaded, metadata = load(tmp_path / "codec.skdae", return_metadata=True)
    assert metadata == {"note": ["any", 1, None]}
    assert loaded.fingerprint == codec.fingerprint
    np.testing.assert_array_equal(loaded.decompress(data), codec.decompress(data))
    assert read_header(tmp_path / "codec.skdae")["estimator"]["class"] == "skdae.codec.Codec"


def test_file_is_a_plain_npz_and_deterministic(tmp_path):
    est = PCA(3).fit(_data())
    save(est, tmp_path / "a.skdae")
    save(est, tmp_path / "b.skdae")
    assert (tmp_path / "a.skdae").read_bytes() == (tmp_path / "b.skdae").read_bytes()
    with np.load(tmp_path / "a.skdae", allow_pickle=False) as npz:
        arrays = [k for k in npz.files if k.startswith("arrays/")]
        assert arrays and all(npz[k].dtype != object for k in arrays)
    header = read_header(tmp_path / "a.skdae")
    assert header["format"] == "skdae-model" and header["format_version"] == 5
    assert header["written_by"]["skdae"]


def test_values_of_every_supported_kind(tmp_path):
    est = StandardScaler().fit(_data())
    est.feature_names_in_ = np.array(["a", "b"] * 10, dtype=object)
    est.nested_ = {"t": (1, 2.5, np.float32(3.5)), "n": [None, True, "x"], "inf": float("inf")}
    est.nan_ = float("nan")
    est.fortran_ = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    est.rng_ = np.random.RandomState(3)
    est.dtype_ = np.float32
    est._private_state = [np.arange(3), 4]
    est._unstorable_cache = lambda: None  # private and not data: left out
    save(est, tmp_path / "m.skdae")
    loaded = load(tmp_path / "m.skdae")
    for key in ("feature_names_in_", "nested_", "nan_", "fortran_", "dtype_"):
        _same(getattr(est, key), getattr(loaded, key))
    _same(est._private_state, loaded._private_state)
    assert not hasattr(loaded, "_unstorable_cache")
    assert loaded.rng_.randint(1 << 30) == est.rng_.randint(1 << 30)


def test_save_refuses_what_it_cannot_store(tmp_path):
    with pytest.raises(ValueError, match="allowlist"):
        save(TruncatedSVD(2).fit(_data()), tmp_path / "m")

    class MyPCA(PCA):
        pass

    with pytest.raises(ValueError, match="allowlist"):
        save(MyPCA(2).fit(_data()), tmp_path / "m")
    est = PCA(2).fit(_data())
    est.callback_ = print
    with pytest.raises(ValueError, match="callback_"):
        save(est, tmp_path / "m")
    est = PCA(2).fit(_data())
    with pytest.raises(ValueError, match="metadata"):
        save(est, tmp_path / "m", metadata={"x": object()})
    assert not list(tmp_path.iterdir())  # nothing half-written left behind


# ----------------------------------------------------------------- hostile files


def _write_zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _npy_bytes(array, **kwargs):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, **kwargs)
    return buf.getvalue()


def _members(path):
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


@pytest.fixture(scope="module")
def saved_pca(tmp_path_factory):
    path = tmp_path_factory.mktemp("persist") / "pca.skdae"
    X = _data()
    save(Codec(PCA(3).fit(X), n_bits=4).fit(X), path)
    return path


def _edit_header(saved, tmp_path, edit):
    members = _members(saved)
    header = json.loads(members["skdae.json"])
    edit(header)
    members["skdae.json"] = json.dumps(header).encode()
    path = tmp_path / "edited.skdae"
    _write_zip(path, members)
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda h: h.update(format="other"), "not a skdae model file"),
        (lambda h: h.update(format_version=6), "format version 6"),
        (lambda h: h.pop("format_version"), "no format version"),
        (lambda h: h["estimator"].update({"class": "os.system"}), "not one that model files"),
        (lambda h: h["estimator"]["params"].update(bogus=1), "cannot rebuild"),
        (lambda h: h["estimator"]["attributes"].update(__class__=1), "bad attribute name"),
        (lambda h: h["estimator"]["attributes"].update(x_={"__pickle__": "x"}), "unknown value"),
        (lambda h: h["estimator"]["attributes"].update(x_={"__ndarray__": 99}), "bad array ref"),
        (lambda h: h.update(n_arrays=h["n_arrays"] + 1), "unreferenced"),
        (lambda h: h["estimator"].pop("params"), "malformed"),
        (
            lambda h: h["estimator"]["attributes"].update(x_={"__scalar__": ["|O", 1]}),
            "unsupported dtype",
        ),
    ],
)
def test_bad_headers_are_rejected(saved_pca, tmp_path, edit, message):
    with pytest.raises(InvalidModelFileError, match=message):
        load(_edit_header(saved_pca, tmp_path, edit))


def test_missing_and_bad_arrays_are_rejected(saved_pca, tmp_path):
    members = _members(saved_pca)
    victim = next(name for name in members if name.startswith("arrays/"))
    cases = {
        "missing": None,
        "object": _npy_bytes(np.array([print], dtype=object), allow_pickle=True),
        "short": _npy_bytes(np.zeros(10))[:-8],
        # declares 10**12 doubles: must be refused before anything that size is allocated
        "huge": _npy_bytes(np.zeros(2)).replace(b"(2,)", b"(1000000000000,)"),
        "garbage": b"not an npy file at all",
    }
    for case, data in cases.items():
        edited = dict(members)
        if data is None:
            del edited[victim]
        else:
            edited[victim] = data
        path = tmp_path / f"{case}.skdae"
        _write_zip(path, edited)
        with pytest.raises(InvalidModelFileError):
            load(path)


def test_compressed_members_and_foreign_files_are_rejected(saved_pca, tmp_path):
    path = tmp_path / "deflated.skdae"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in _members(saved_pca).items():
            zf.writestr(name, data)
    with pytest.raises(InvalidModelFileError, match="compressed"):
        load(path)
    for data in (b"", b"hello", b"PK\x03\x04broken", _npy_bytes(np.zeros(3))):
        (tmp_path / "foreign").write_bytes(data)
        with pytest.raises(InvalidModelFileError):
            load(tmp_path / "foreign")
    _write_zip(tmp_path / "nohead.skdae", {"other.txt": b"x"})
    with pytest.raises(InvalidModelFileError, match="no header"):
        load(tmp_path / "nohead.skdae")
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "does-not-exist.skdae")


def test_loading_never_unpickles(saved_pca, tmp_path, monkeypatch):
    import pickle

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used while loading")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    assert isinstance(load(saved_pca), Codec)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_model_files_load_identically_or_fail_cleanly(saved_pca, tmp_path_factory, data):
    original = saved_pca.read_bytes()
    mutation = data.draw(st.sampled_from(["flip", "truncate", "insert", "splice"]))
    blob = bytearray(original)
    if mutation == "flip":
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(blob) - 1))
            blob[i] ^= data.draw(st.integers(1, 255))
    elif mutation == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    elif mutation == "insert":
        i = data.draw(st.integers(0, len(blob)))
        blob[i:i] = data.draw(st.binary(min_size=1, max_size=16))
    else:
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i : i + 8] = data.draw(st.binary(min_size=8, max_size=8))
    path = tmp_path_factory.mktemp("mutated") / "m.skdae"
    path.write_bytes(bytes(blob))
    try:
        loaded = load(path)
    except InvalidModelFileError:
        return
    # Every member is CRC-checked: a file that still loads holds the same model.
    assert loaded.fingerprint == load(saved_pca).fingerprint


def test_model_files_get_the_permissions_of_any_new_file(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        save(PCA(2).fit(_data()), tmp_path / "pca.skdae")
    finally:
        os.umask(umask)
    assert (tmp_path / "pca.skdae").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["pca.skdae"]  # no temporary left
