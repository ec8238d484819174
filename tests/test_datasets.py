"""Tests for skdae.datasets: the IDX reader and the MNIST loader.

Nothing here downloads: loads use the real IDX files (``mnist_home``), small files written
to ``tmp_path``, or a stand-in for ``fetch_openml``.
"""

import gzip
import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from skdae import datasets
from skdae.datasets import MNIST_SHA256, get_data_home, load_idx, load_mnist

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
TRAIN_IMAGES = "train-images-idx3-ubyte"

_TYPE_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}


def idx_bytes(array, type_code=None):
    """Serialise ``array`` in IDX format (big-endian header and values)."""
    array = np.asarray(array)
    if type_code is None:
        type_code = _TYPE_CODES[array.dtype]
    header = struct.pack(">HBB", 0, type_code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path, array, compress=False, type_code=None):
    data = idx_bytes(array, type_code)
    path.write_bytes(gzip.compress(data, compresslevel=1) if compress else data)
    return path


def raw_bytes(mnist_home, name):
    return gzip.decompress((mnist_home / f"{name}.gz").read_bytes())


def write_fake_mnist(folder, split="test", n=5, seed=0, compress=False):
    """Write a small MNIST-format split (only loadable with verify=False)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    images_name, labels_name, _ = datasets._MNIST_SPLITS[split]
    suffix = ".gz" if compress else ""
    write_idx(folder / (images_name + suffix), images, compress)
    write_idx(folder / (labels_name + suffix), labels, compress)
    return images, labels


# ---------------------------------------------------------------------------------------
# Real files


@pytest.fixture(scope="module")
def mnist_train(mnist_home):
    return load_mnist("train", data_home=mnist_home, download_if_missing=False)


@pytest.fixture(scope="module")
def mnist_test(mnist_home):
    return load_mnist("test", data_home=mnist_home, download_if_missing=False)


def test_train_real(mnist_train, mnist_home):
    b = mnist_train
    assert b.data.shape == (60_000, 784) and b.data.dtype == np.float32
    assert b.target.shape == (60_000,) and b.target.dtype == np.int64
    assert b.images.shape == (60_000, 28, 28) and np.shares_memory(b.images, b.data)
    assert b.data.min() == 0.0 and b.data.max() == 1.0
    assert b.target[:5].tolist() == [5, 0, 4, 1, 9]
    assert np.bincount(b.target).tolist() == TRAIN_COUNTS
    assert b.source == str(mnist_home)
    assert "MNIST" in b.DESCR
    # Digits are centred in the 28 x 28 frame: the border is almost always blank.
    assert b.images[:, :2, :].mean() < 1e-3 < 0.3 < b.images[:, 10:18, 10:18].mean()


def test_test_real(mnist_test):
    b = mnist_test
    assert b.data.shape == (10_000, 784) and b.data.dtype == np.float32
    assert b.target[:5].tolist() == [7, 2, 1, 0, 4]
    assert np.bincount(b.target).tolist() == TEST_COUNTS
    assert 0.0 <= b.data.min() and b.data.max() == 1.0


def test_n_samples_takes_the_first_rows(mnist_home, mnist_train, mnist_test):
    X, y = load_mnist("train", data_home=mnist_home, n_samples=20_000, return_X_y=True)
    assert X.shape == (20_000, 784) and y.shape == (20_000,)
    assert np.array_equal(X, mnist_train.data[:20_000])
    assert np.array_equal(y, mnist_train.target[:20_000])
    b = load_mnist("test", data_home=mnist_home, n_samples=1_000)
    assert b.images.shape == (1_000, 28, 28)
    np.testing.assert_array_equal(b.data, mnist_test.data[:1_000])


def test_all_is_train_then_test(mnist_home):
    # uint8 keeps this cheap: 70,000 float rows would be 220 MB per copy.
    kw = dict(data_home=mnist_home, scale=False, dtype=np.uint8, return_X_y=True)
    X, y = load_mnist("all", **kw)
    X_train, y_train = load_mnist("train", **kw)
    X_test, y_test = load_mnist("test", **kw)
    assert X.shape == (70_000, 784) and y.shape == (70_000,)
    assert np.array_equal(X[:60_000], X_train) and np.array_equal(X[60_000:], X_test)
    assert np.array_equal(y, np.concatenate([y_train, y_test]))
    # n_samples reaching into the test part
    X5, y5 = load_mnist("all", n_samples=60_005, **kw)
    assert np.array_equal(X5, X[:60_005])
    assert y5[-5:].tolist() == [7, 2, 1, 0, 4]


def test_unscaled(mnist_home, mnist_test):
    raw = load_mnist("test", data_home=mnist_home, scale=False, dtype=np.uint8)
    assert raw.data.dtype == np.uint8 and raw.data.max() == 255
    np.testing.assert_array_equal(raw.data, np.rint(mnist_test.data * 255))
    as_float = load_mnist("test", data_home=mnist_home, scale=False, dtype=np.float64)
    assert as_float.data.dtype == np.float64 and as_float.data.max() == 255.0
    np.testing.assert_array_equal(as_float.data, raw.data)
    f64 = load_mnist("test", data_home=mnist_home, dtype=np.float64, n_samples=10)
    np.testing.assert_array_equal(f64.data, raw.data[:10] / 255.0)


def test_return_X_y(mnist_home, mnist_test):
    X, y = load_mnist("test", data_home=mnist_home, return_X_y=True)
    np.testing.assert_array_equal(X, mnist_test.data)
    np.testing.assert_array_equal(y, mnist_test.target)


def test_results_do_not_share_the_cache(mnist_home):
    first = load_mnist("test", data_home=mnist_home, scale=False, dtype=np.uint8)
    first.data[:] = 7
    first.target[:] = 3
    again = load_mnist("test", data_home=mnist_home, scale=False, dtype=np.uint8)
    assert again.data.max() == 255 and again.target[:5].tolist() == [7, 2, 1, 0, 4]
    hits = datasets._parse_idx_cached.cache_info().hits
    load_mnist("test", data_home=mnist_home, n_samples=1)
    assert datasets._parse_idx_cached.cache_info().hits == hits + 2


def test_raw_files(tmp_path, mnist_home, mnist_test):
    for name in (TEST_IMAGES, TEST_LABELS):
        (tmp_path / name).write_bytes(raw_bytes(mnist_home, name))
    b = load_mnist("test", data_home=tmp_path, download_if_missing=False)
    assert b.source == str(tmp_path)
    np.testing.assert_array_equal(b.data, mnist_test.data)
    np.testing.assert_array_equal(b.target, mnist_test.target)
    # The train files are not needed for the test subset, but are for the others.
    with pytest.raises(FileNotFoundError, match=TRAIN_IMAGES):
        load_mnist("all", data_home=tmp_path, download_if_missing=False)


def test_load_idx_on_real_files(mnist_home):
    images = load_idx(mnist_home / f"{TEST_IMAGES}.gz")
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8
    assert images.flags.writeable
    labels = load_idx(str(mnist_home / f"{TEST_LABELS}.gz"))
    assert labels.shape == (10_000,) and labels[:5].tolist() == [7, 2, 1, 0, 4]


# ---------------------------------------------------------------------------------------
# Where the data is looked for


def test_get_data_home_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("SKDAE_DATA_HOME", str(tmp_path / "env"))
    assert get_data_home(tmp_path / "arg") == str(tmp_path / "arg")
    assert get_data_home() == str(tmp_path / "env")
    monkeypatch.delenv("SKDAE_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert get_data_home() == str(tmp_path / "home" / "skdae_data")
    assert get_data_home("~/elsewhere") == str(tmp_path / "home" / "elsewhere")
    assert not (tmp_path / "home").exists()  # looking up does not create folders


def test_env_var_and_argument(tmp_path, monkeypatch, mnist_home):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("SKDAE_DATA_HOME", str(mnist_home))
    b = load_mnist("test", n_samples=3, download_if_missing=False)
    assert b.source == str(mnist_home) and b.target.tolist() == [7, 2, 1]
    # An explicit argument wins over the environment, with no fallback to it.
    with pytest.raises(FileNotFoundError, match="data_home argument"):
        load_mnist("test", data_home=empty, download_if_missing=False)
    monkeypatch.setenv("SKDAE_DATA_HOME", str(empty))
    with pytest.raises(FileNotFoundError, match="SKDAE_DATA_HOME environment variable"):
        load_mnist("test", download_if_missing=False)
    b = load_mnist("test", data_home=mnist_home, n_samples=3, download_if_missing=False)
    assert b.source == str(mnist_home)


def test_missing_files_message(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_mnist("all", data_home=tmp_path, download_if_missing=False)
    message = str(info.value)
    assert isinstance(info.value, OSError)
    assert str(tmp_path) in message
    for name in MNIST_SHA256:
        assert name in message
    assert "data_home" in message and "SKDAE_DATA_HOME" in message
    assert "download_if_missing=False" in message


def test_openml_fallback_failure(tmp_path, monkeypatch):
    calls = []

    def offline(*args, **kwargs):
        calls.append(kwargs)
        raise OSError("no network in this test")

    monkeypatch.setattr("sklearn.datasets.fetch_openml", offline)
    with pytest.raises(FileNotFoundError, match="no network in this test") as info:
        load_mnist("test", data_home=tmp_path)
    assert str(tmp_path) in str(info.value) and TEST_IMAGES in str(info.value)
    assert isinstance(info.value.__cause__, OSError)
    assert calls and calls[0]["data_home"] == str(tmp_path)


def test_openml_fallback_success(tmp_path, monkeypatch):
    # Same layout as OpenML's mnist_784: float pixels, string labels, train rows first.
    # Broadcast so the stand-in costs no memory: every pixel of row i is i % 256.
    X = np.broadcast_to((np.arange(70_000) % 256.0)[:, None], (70_000, 784))
    y = np.array([str(i % 10) for i in range(70_000)], dtype=object)

    monkeypatch.setattr("sklearn.datasets.fetch_openml", lambda *a, **k: (X, y))
    try:
        b = load_mnist("test", data_home=tmp_path, scale=False, dtype=np.uint8)
        assert b.source == "openml" and b.data.shape == (10_000, 784)
        assert b.data[0, 0] == 60_000 % 256 and b.target[:3].tolist() == [0, 1, 2]
        assert b.target.dtype == np.int64 and b.data.flags.writeable
        X4, y4 = load_mnist("all", data_home=tmp_path, n_samples=4, return_X_y=True)
        assert X4.dtype == np.float32
        np.testing.assert_allclose(X4[:, 0], np.arange(4) / 255)
        assert y4.tolist() == [0, 1, 2, 3]
    finally:
        datasets._fetch_openml_mnist.cache_clear()


# ---------------------------------------------------------------------------------------
# Bad files


def test_checksum_mismatch(tmp_path, mnist_home):
    (tmp_path / TEST_IMAGES).write_bytes(raw_bytes(mnist_home, TEST_IMAGES))
    labels = bytearray(raw_bytes(mnist_home, TEST_LABELS))
    labels[8] = 3  # first label 7 -> 3: still a valid IDX file
    (tmp_path / f"{TEST_LABELS}.gz").write_bytes(gzip.compress(bytes(labels)))
    with pytest.raises(ValueError, match="sha256") as info:
        load_mnist("test", data_home=tmp_path, download_if_missing=False)
    assert TEST_LABELS in str(info.value) and "verify=False" in str(info.value)
    b = load_mnist("test", data_home=tmp_path, download_if_missing=False, verify=False)
    assert b.target[:3].tolist() == [3, 2, 1]


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("cut", [3, 10, 16 + 784 * 5 + 1])
def test_truncated_images_file(tmp_path, mnist_home, compress, cut):
    data = raw_bytes(mnist_home, TEST_IMAGES)[:cut]
    name = TEST_IMAGES + (".gz" if compress else "")
    (tmp_path / name).write_bytes(gzip.compress(data) if compress else data)
    (tmp_path / TEST_LABELS).write_bytes(raw_bytes(mnist_home, TEST_LABELS))
    for verify in (True, False):
        with pytest.raises(ValueError, match="truncated") as info:
            load_mnist("test", data_home=tmp_path, download_if_missing=False, verify=verify)
        assert name in str(info.value)


def test_truncated_gzip_stream(tmp_path):
    write_fake_mnist(tmp_path, compress=True)
    gz = tmp_path / f"{TEST_LABELS}.gz"
    gz.write_bytes(gz.read_bytes()[:-4])  # cut into the gzip trailer, after all the data
    with pytest.raises(ValueError, match="gzip") as info:
        load_mnist("test", data_home=tmp_path, download_if_missing=False, verify=False)
    assert TEST_LABELS in str(info.value)


def test_wrong_magic(tmp_path):
    images, labels = write_fake_mnist(tmp_path)
    write_idx(tmp_path / TEST_LABELS, labels.reshape(5, 1, 1))  # magic 0x803
    with pytest.raises(ValueError, match="0x00000801") as info:
        load_mnist("test", data_home=tmp_path, download_if_missing=False, verify=False)
    assert TEST_LABELS in str(info.value)
    write_idx(tmp_path / TEST_LABELS, labels)
    write_idx(tmp_path / TEST_IMAGES, images.astype(np.int8))  # magic 0x903
    with pytest.raises(ValueError, match="0x00000803"):
        load_mnist("test", data_home=tmp_path, download_if_missing=False, verify=False)
    (tmp_path / TEST_IMAGES).write_bytes(b"GIF89a" + bytes(100))
    with pytest.raises(ValueError, match="not an IDX file"):
        load_mnist("test", data_home=tmp_path, download_if_missing=False, verify=False)


def test_wrong_shapes(tmp_path):
    images, labels = write_fake_mnist(tmp_path)
    write_idx(tmp_path / TEST_IMAGES, np.zeros((5, 29, 28), np.uint8))
    with pytest.raises(ValueError, match="28 x 28"):
        load_mnist("test", data_home=tmp_path, download_if_missing=False, verify=False)
    write_idx(tmp_path / TEST_IMAGES, images[:4])
    with pytest.raises(ValueError, match="5 labels but .* 4 images"):
        load_mnist("test", data_home=tmp_path, download_if_missing=False, verify=False)
    write_idx(tmp_path / TEST_IMAGES, images)
    write_idx(tmp_path / TEST_LABELS, np.array([1, 2, 10, 3, 4], np.uint8))
    with pytest.raises(ValueError, match="0-9"):
        load_mnist("test", data_home=tmp_path, download_if_missing=False, verify=False)


def test_unverified_custom_files(tmp_path):
    images, labels = write_fake_mnist(tmp_path, compress=True)
    with pytest.raises(ValueError, match="sha256"):
        load_mnist("test", data_home=tmp_path, download_if_missing=False)
    b = load_mnist(
        "test",
        data_home=tmp_path,
        download_if_missing=False,
        verify=False,
        scale=False,
        dtype=np.uint8,
    )
    np.testing.assert_array_equal(b.images, images)
    np.testing.assert_array_equal(b.target, labels)


def test_rewritten_file_is_reread(tmp_path):
    write_fake_mnist(tmp_path, seed=0)
    kw = dict(data_home=tmp_path, download_if_missing=False, verify=False)
    first = load_mnist("test", **kw)
    images, labels = write_fake_mnist(tmp_path, seed=1)
    os.utime(tmp_path / TEST_IMAGES, ns=(0, 0))  # different mtime even on coarse clocks
    os.utime(tmp_path / TEST_LABELS, ns=(0, 0))
    second = load_mnist("test", scale=False, dtype=np.uint8, **kw)
    np.testing.assert_array_equal(second.images, images)
    np.testing.assert_array_equal(second.target, labels)
    assert not np.array_equal(first.data * 255, second.data)


# ---------------------------------------------------------------------------------------
# Parameters


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(subset="validation"), ValueError, "subset"),
        (dict(n_samples=0), ValueError, "n_samples"),
        (dict(n_samples=2.5), TypeError, "n_samples"),
        (dict(n_samples=True), TypeError, "n_samples"),
        (dict(n_samples=10_001), ValueError, "only 10000"),
        (dict(dtype=np.uint8), ValueError, "floating"),
        (dict(dtype=np.int8, scale=False), ValueError, "0..255"),
    ],
)
def test_invalid_parameters(mnist_home, kwargs, error, match):
    kwargs = {"subset": "test", **kwargs}
    with pytest.raises(error, match=match):
        load_mnist(data_home=mnist_home, download_if_missing=False, **kwargs)


def test_n_samples_numpy_integer(mnist_home):
    X, _ = load_mnist("test", data_home=mnist_home, n_samples=np.int64(7), return_X_y=True)
    assert X.shape == (7, 784)


# ---------------------------------------------------------------------------------------
# load_idx properties

idx_arrays = st.sampled_from(sorted(_TYPE_CODES, key=str)).flatmap(
    lambda dtype: hnp.arrays(
        dtype,
        hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=4),
        elements=hnp.from_dtype(dtype, allow_nan=False) if dtype.kind == "f" else None,
    )
)

_hyp = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_hyp
@given(array=idx_arrays, compress=st.booleans())
def test_load_idx_round_trip(tmp_path, array, compress):
    path = write_idx(tmp_path / "a.idx", array, compress)
    loaded = load_idx(path)
    assert loaded.shape == array.shape
    assert loaded.dtype == array.dtype and loaded.dtype.isnative
    np.testing.assert_array_equal(loaded, array)


@_hyp
@given(array=idx_arrays, data=st.data())
def test_load_idx_any_truncation_is_a_value_error(tmp_path, array, data):
    full = idx_bytes(array)
    cut = data.draw(st.integers(0, len(full) - 1), label="cut")
    path = tmp_path / "a.idx"
    path.write_bytes(full[:cut])
    with pytest.raises(ValueError, match="a.idx"):
        load_idx(path)
    # ... and so is any truncation of its gzip-compressed form
    gz = gzip.compress(full)
    cut = data.draw(st.integers(0, len(gz) - 1), label="gz_cut")
    path.write_bytes(gz[:cut])
    with pytest.raises(ValueError, match="a.idx"):
        load_idx(path)


@_hyp
@given(array=idx_arrays, extra=st.binary(min_size=1, max_size=8))
def test_load_idx_trailing_bytes(tmp_path, array, extra):
    path = tmp_path / "a.idx"
    path.write_bytes(idx_bytes(array) + extra)
    with pytest.raises(ValueError, match="trailing"):
        load_idx(path)


@pytest.mark.parametrize("compress", [False, True])
def test_load_idx_huge_header_does_not_allocate(tmp_path, compress):
    # Header claims 4G x 4G x 4G float64 values; only a few bytes follow.
    data = struct.pack(">HBB3I", 0, 0x0E, 3, 2**32 - 1, 2**32 - 1, 2**32 - 1) + bytes(64)
    path = tmp_path / "huge.idx"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(ValueError, match="truncated"):
        load_idx(path)


@pytest.mark.parametrize(
    "header, match",
    [
        (b"", "truncated"),
        (b"\x00\x00", "truncated"),
        (b"\x00\x00\x07\x01" + bytes(8), "not an IDX file"),  # unknown type code
        (b"\x01\x00\x08\x01" + bytes(8), "not an IDX file"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x01", "truncated IDX header"),
        # more dimensions than numpy allows
        (struct.pack(">HBB100I", 0, 8, 100, *[1] * 100) + b"\x00", "shape"),
    ],
)
def test_load_idx_bad_headers(tmp_path, header, match):
    path = tmp_path / "bad.idx"
    path.write_bytes(header)
    with pytest.raises(ValueError, match=match):
        load_idx(path)


def test_load_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_idx(tmp_path / "nope.idx")
