"""Out-of-core, sparse and streamed input: every phase reads one chunk of rows at a time,
and a streamed fit is the same model as an in-memory fit of the same data and chunks."""

import sys
import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import ConvergenceWarning

from skdae import RBM, RBMStackAutoencoder
from skdae.codec import Codec

CHUNK = 300


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


class RecordingArray:
    """An out-of-core array: ``shape``, ``dtype`` and row slicing only. Records every
    read, and fails any read that is not a slice of at most ``max_rows`` rows."""

    def __init__(self, data, max_rows):
        self._data, self.max_rows, self.reads = data, max_rows, []

    shape = property(lambda self: self._data.shape)
    dtype = property(lambda self: self._data.dtype)
    ndim = property(lambda self: self._data.ndim)

    def __len__(self):
        return len(self._data)

    def __getitem__(self, key):
        rows = key[0] if isinstance(key, tuple) else key
        assert isinstance(rows, slice), f"read with {key!r}, not a slice of rows"
        start, stop, step = rows.indices(len(self._data))
        assert step == 1 and 0 < stop - start <= self.max_rows, f"read of rows {start}:{stop}"
        self.reads.append((start, stop))
        return self._data[key].copy()

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole array was loaded")


def ae(**params):
    params = {"hidden_layer_sizes": (32, 8), "pretrain_epochs": 2, "max_iter": 3, "n_jobs": 1,
              "random_state": 0, "chunk_size": CHUNK, **params}
    return RBMStackAutoencoder(**params)


def rbm(**params):
    params = {"n_components": 16, "max_iter": 3, "n_jobs": 1, "random_state": 0,
              "chunk_size": CHUNK, **params}
    return RBM(**params)


# ---------------------------------------------------------------------------- reads


@pytest.mark.parametrize("early_stopping", [False, True])
@pytest.mark.parametrize("upper", ["recompute", "spill"])
def test_stack_reads_at_most_one_chunk_at_a_time(digits32, early_stopping, upper, monkeypatch):
    import skdae._pretraining

    monkeypatch.setattr(skdae._pretraining, "UPPER_LAYERS", upper)
    X = RecordingArray(digits32, CHUNK)
    model = ae(early_stopping=early_stopping).fit(X)
    n_chunks = -(-len(digits32) // CHUNK)
    # Statistics pass, 2 RBMs x 2 epochs (the upper one recomputed from the input, or
    # read from the spill file written in one pass), 3 fine-tuning epochs, and with
    # early stopping one validation pass per epoch.
    passes = 1 + 2 + (2 if upper == "recompute" else 1) + 3 + (3 if early_stopping else 0)
    assert len(X.reads) == passes * n_chunks
    assert {r for r in X.reads} == {(r0, min(len(digits32), r0 + CHUNK))
                                    for r0 in range(0, len(digits32), CHUNK)}
    X.reads.clear()
    codes = model.transform(X)
    assert codes.shape == (len(digits32), 8) and len(X.reads) == n_chunks
    assert_allclose(codes, model.transform(digits32), rtol=1e-5, atol=1e-6)


def test_rbm_reads_at_most_one_chunk_at_a_time(digits32):
    X = RecordingArray(digits32, CHUNK)
    model = rbm().fit(X)
    assert len(X.reads) == (1 + 3) * -(-len(digits32) // CHUNK)
    X.reads.clear()
    assert model.score_samples(X).shape == (len(digits32),)
    assert max(stop - start for start, stop in X.reads) <= CHUNK


# --------------------------------------------------------- same model, any container


def _memmap(tmp_path, X):
    path = tmp_path / "X.dat"
    mm = np.memmap(path, X.dtype, "w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    return np.memmap(path, X.dtype, "r", shape=X.shape)


def _containers(tmp_path, X):
    yield "recording", RecordingArray(X, CHUNK)
    yield "memmap", _memmap(tmp_path, X)
    yield "csr", sp.csr_matrix(X)
    yield "csc", sp.csc_array(X)
    zarr = pytest.importorskip("zarr")
    z = zarr.create_array(store=str(tmp_path / "X.zarr"), shape=X.shape, dtype=X.dtype,
                          chunks=(CHUNK, X.shape[1]))
    z[:] = X
    yield "zarr", z
    h5py = pytest.importorskip("h5py")
    f = h5py.File(tmp_path / "X.h5", "w")
    yield "h5py", f.create_dataset("X", data=X, chunks=(CHUNK, X.shape[1]))
    da = pytest.importorskip("dask.array")
    yield "dask", da.from_array(X, chunks=(CHUNK, X.shape[1]))


@pytest.mark.parametrize("scale", [1.0, 3.0], ids=["bernoulli", "gaussian"])
def test_streamed_fit_is_the_in_memory_fit(digits32, tmp_path, scale):
    """Every container gives exactly the model an in-memory array gives with the same
    chunk_size (the same chunks, shuffles and kernels), Bernoulli and Gaussian."""
    X = digits32 * np.float32(scale) - np.float32(scale > 1)
    reference = ae(early_stopping=True).fit(X)
    ref_rbm = rbm().fit(X)
    for name, container in _containers(tmp_path, X):
        model = ae(early_stopping=True).fit(container)
        assert model.visible_units_ == reference.visible_units_, name
        assert_array_equal(model.mean_, reference.mean_, err_msg=name)
        assert_array_equal(model.scale_, reference.scale_, err_msg=name)
        assert_array_equal(model._params, reference._params, err_msg=name)
        assert model.validation_scores_ == pytest.approx(reference.validation_scores_), name
        assert_array_equal(rbm().fit(container).components_, ref_rbm.components_, err_msg=name)


@pytest.mark.parametrize("upper", ["recompute", "spill", "auto"])
def test_upper_rbms_recomputed_or_spilled_give_the_same_model(digits32, tmp_path, monkeypatch,
                                                               upper):
    import skdae._pretraining

    reference = ae(early_stopping=True).fit(digits32)
    monkeypatch.setattr(skdae._pretraining, "UPPER_LAYERS", upper)
    monkeypatch.setattr(skdae._pretraining, "SPILL_DIR", str(tmp_path))
    spilled = []
    real_spill = skdae._pretraining.spill
    monkeypatch.setattr(skdae._pretraining, "spill",
                        lambda rows, d: spilled.append(1) or real_spill(rows, d))
    model = ae(early_stopping=True).fit(_memmap(tmp_path, digits32))
    assert_array_equal(model._params, reference._params)
    # "auto" spills here: two epochs per RBM and room on the disk.
    assert len(spilled) == (0 if upper == "recompute" else 1)
    assert not list(tmp_path.glob("tmp*"))  # the spill file is unlinked


@pytest.mark.parametrize("chunk_size", [None, CHUNK])
def test_layers_wider_than_the_input_are_gathered_in_memory(digits32, tmp_path, monkeypatch,
                                                            chunk_size):
    """An upper RBM whose data would be wider than the input (96 > 64 units) trains on
    rows gathered and encoded a piece of its order at a time, the next (40 units) on a
    stored copy computed through both frozen layers: the model the streamed fit (every
    layer recomputed chunk by chunk from the input) trains, the same random streams and
    the same rows in the same order."""
    import skdae._pretraining
    from skdae._stream import GatheredRows

    # Pieces of 5 batches: several per chunk, each drawing its batches' own streams.
    monkeypatch.setattr(skdae._pretraining, "_CHUNK_ROWS", 250)
    gathered = []
    real_gather = GatheredRows.gather
    monkeypatch.setattr(GatheredRows, "gather",
                        lambda self, chunk, rows: gathered.append(len(rows))
                        or real_gather(self, chunk, rows))
    params = dict(hidden_layer_sizes=(96, 40, 8), batch_size=50, early_stopping=True,
                  chunk_size=chunk_size)
    model = ae(**params).fit(digits32)
    n_train = digits32.shape[0] - int(round(0.1 * digits32.shape[0]))
    # Two epochs of RBM 2, every training row once per epoch, in pieces of at most 250.
    assert sum(gathered) == 2 * n_train and max(gathered) == 250
    monkeypatch.setattr(skdae._pretraining, "UPPER_LAYERS", "recompute")
    streamed = ae(**params).fit(_memmap(tmp_path, digits32))
    # Equal up to BLAS rounding: on matrices this small OpenBLAS may round the last bit of
    # a product differently for 250 rows than for the whole chunk (measured: 9e-8).
    assert_allclose(model._params, streamed._params, rtol=1e-5, atol=1e-6)
    for got, want in zip(model.pretrain_curves_, streamed.pretrain_curves_):
        assert got == pytest.approx(want, rel=1e-6)
    assert model.validation_scores_ == pytest.approx(streamed.validation_scores_, rel=1e-6)


def test_fit_memory_is_below_one_copy_of_float32_data():
    """A float32 C-contiguous X is neither copied by validation nor shuffled into a copy,
    and a hidden layer wider than the input is never stored whole: the fit's allocations
    stay below the size of X (one copy of X, or the 200-unit layer's 32 MB, would not)."""
    rng = np.random.default_rng(0)
    X = (rng.random((40_000, 100), dtype=np.float32) < 0.3).astype(np.float32)
    params = dict(hidden_layer_sizes=(200, 50, 10), pretrain_epochs=2, max_iter=1,
                  batch_size=100, n_jobs=1, random_state=0)
    RBMStackAutoencoder(**params).fit(X[:300])  # compile outside the measurement
    model = RBMStackAutoencoder(**params)
    tracemalloc.start()
    model.fit(X)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # Two epochs per RBM: the 50-unit layer is stored (8 MB, computed through 4 MB of
    # scratch), the 200-unit one gathered a piece of 4000 rows at a time (4.8 MB).
    assert peak < X.nbytes, f"fit peak {peak / 1e6:.1f} MB, X is {X.nbytes / 1e6:.1f} MB"


def test_uint8_is_scaled_by_255_in_memory_and_out_of_core(digits32, tmp_path):
    pixels = np.rint(digits32 * 255).astype(np.uint8)
    as_float = pixels.astype(np.float32) / np.float32(255)
    reference = ae().fit(as_float)
    for X in (pixels, _memmap(tmp_path, pixels), RecordingArray(pixels, CHUNK)):
        model = ae().fit(X)
        assert model.visible_units_ == "bernoulli" and model._params.dtype == np.float32
        assert_array_equal(model._params, reference._params)
        assert_array_equal(model.transform(X), reference.transform(as_float))


def test_default_chunking_is_one_chunk_in_memory_and_bounded_out_of_core(digits32, tmp_path):
    from skdae._stream import DEFAULT_CHUNK_BYTES

    whole = ae(chunk_size=None).fit(digits32)
    assert_array_equal(whole._params, ae(chunk_size=len(digits32)).fit(digits32)._params)
    model = ae(chunk_size=None, batch_size=50)
    big = np.zeros((2, 300_000), np.float32)  # 2 rows x 1.2 MB: 53 rows per 64 MiB
    assert model._chunk_rows(10**6, 300_000, np.float32, out_of_core=True) == 50
    assert model._chunk_rows(10**6, 784, np.float32, out_of_core=True) == (
        DEFAULT_CHUNK_BYTES // (784 * 4) // 50 * 50)
    assert model._chunk_rows(len(big), 300_000, np.float32, out_of_core=False) == 2
    zarr = pytest.importorskip("zarr")  # rounded to whole chunks of the store
    store = zarr.create_array(store=str(tmp_path / "z"), shape=(10**6, 784), dtype=np.uint8,
                              chunks=(8192, 784))
    assert model._chunk_rows(10**6, 784, np.float32, True, store) == 16384


# ------------------------------------------------------------------- input checks


def test_streamed_statistics_and_checks(digits32, tmp_path):
    X = digits32 * 5 + 2  # Gaussian units
    # Without the linear path each feature has its own scale.
    model = ae(chunk_size=128, linear_path=False).fit(_memmap(tmp_path, X))
    assert model.visible_units_ == "gaussian"
    assert_allclose(model.mean_, X.mean(axis=0), rtol=1e-6, atol=1e-6)
    std = X.std(axis=0, dtype=np.float64)
    std[std < 1e-6] = 1
    assert_allclose(model.scale_, std, rtol=1e-5)
    # With it (the default), one scale: the root mean variance, from the chunks too.
    shared = ae(chunk_size=128).fit(_memmap(tmp_path, X))
    assert_allclose(shared.scale_, np.sqrt(X.var(axis=0, dtype=np.float64).mean()), rtol=1e-5)
    bad = X.copy()
    bad[1500, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ae().fit(RecordingArray(bad, CHUNK))
    with pytest.raises(ValueError, match="MinMaxScaler"):
        ae(visible_units="bernoulli").fit(RecordingArray(X, CHUNK))
    fitted = ae().fit(RecordingArray(digits32, CHUNK))
    with pytest.raises(ValueError, match="features"):
        fitted.transform(RecordingArray(digits32[:, :10], CHUNK))
    with pytest.raises(ValueError, match="2D"):
        ae().fit(RecordingArray(digits32[:, 0], CHUNK))


# -------------------------------------------------------------------------- sparse


def bag_of_words(n_docs, vocabulary, words_per_doc, seed=0):
    """Binary bag-of-words with Zipf word frequencies (a classic RBM input)."""
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n_docs), words_per_doc)
    cols = np.minimum(rng.zipf(1.3, size=rows.size) - 1, vocabulary - 1)
    X = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(n_docs, vocabulary))
    X.sum_duplicates()
    X.data[:] = 1
    return X


def test_sparse_rbm_memory_is_far_below_the_dense_size():
    X = bag_of_words(4000, 50_000, 60)
    dense_bytes = X.shape[0] * X.shape[1] * 4  # 800 MB
    model = RBM(n_components=32, max_iter=1, batch_size=50, n_jobs=1, random_state=0)
    model.fit(X[:200])  # compile outside the measurement
    tracemalloc.start()
    model.fit(X)
    fit_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    H = model.transform(X)
    transform_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert H.shape == (4000, 32) and model.visible_units_ == "bernoulli"
    # The weights, velocities and the epoch's snapshot of both are 26 MB, the dense
    # minibatch buffer (2 x 50 rows) 20 MB, the non-zeros 2 MB (measured: 49 MB); transform
    # densifies 64 MiB of rows at a time (75 MB).
    assert fit_peak < dense_bytes / 10, f"fit peak {fit_peak / 1e6:.0f} MB"
    assert transform_peak < dense_bytes / 8, f"transform peak {transform_peak / 1e6:.0f} MB"
    dense = RBM(n_components=32, max_iter=1, batch_size=50, n_jobs=1, random_state=0)
    small = X[:300]
    assert_array_equal(dense.fit(small.toarray()).components_,
                       RBM(n_components=32, max_iter=1, batch_size=50, n_jobs=1,
                           random_state=0).fit(small).components_)


# ------------------------------------------------------------------------ inference


def test_streamed_inference_into_a_caller_memmap(digits32, tmp_path):
    model = ae().fit(digits32)
    X = _memmap(tmp_path, digits32)
    out = np.lib.format.open_memmap(tmp_path / "codes.npy", "w+", np.float32, (len(digits32), 8))
    assert model.transform(X, out=out) is out
    assert_allclose(out, model.transform(digits32), rtol=1e-5, atol=1e-6)
    codes = RecordingArray(np.asarray(out), CHUNK)
    assert_allclose(model.inverse_transform(codes), model.inverse_transform(np.asarray(out)),
                    rtol=1e-5, atol=1e-6)
    assert_allclose(model.score_samples(X), model.score_samples(digits32), rtol=1e-5)
    assert_allclose(model.transform(sp.csr_matrix(digits32)), model.transform(digits32),
                    rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        model.transform(X, out=np.empty((3, 8), np.float32))


def test_codec_compresses_out_of_core_input(digits32, tmp_path, monkeypatch):
    import skdae.codec

    model = ae().fit(digits32)
    codec = Codec(model, n_bits=6).fit(RecordingArray(digits32, 10**6))
    assert_array_equal(codec.code_max_, Codec(model, n_bits=6).fit(digits32).code_max_)
    monkeypatch.setattr(skdae.codec, "_CHUNK_ROWS", 256)
    images = RecordingArray(digits32.reshape(-1, 8, 8), 256)
    blob = codec.compress(images)
    monkeypatch.setattr(skdae.codec, "_CHUNK_ROWS", 10**6)
    assert blob == codec.compress(digits32.reshape(-1, 8, 8))


# ------------------------------------------------------------------ private memory

_PEAK_RSS_ANON = """
import json, sys, threading, time, warnings
import numpy as np
from skdae import RBMStackAutoencoder

def rss_anon():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("RssAnon:"))

warnings.simplefilter("ignore")
n, path = int(sys.argv[1]), sys.argv[2]
X = np.memmap(path, np.uint8, "r", shape=(n, 784))
model = RBMStackAutoencoder((64, 16), pretrain_epochs=1, max_iter=1, chunk_size=2000,
                            early_stopping=True, random_state=0)
model.fit(np.asarray(X[:500]))  # compile (or load) the kernels first
peak, done = [rss_anon()], threading.Event()

def sample():
    while not done.is_set():
        peak.append(rss_anon())
        time.sleep(0.005)

thread = threading.Thread(target=sample)
thread.start()
model.fit(X)
model.transform(X)
done.set()
thread.join()
print(json.dumps(max(peak)))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_private_memory_does_not_grow_with_n_samples(tmp_path):
    """Peak RssAnon (private memory; the memmap's pages are file cache) of a streamed fit
    and transform on 10,000 and on 80,000 images: 55 MB more data, the same memory."""
    import subprocess

    n_big = 80_000
    path = tmp_path / "images.u8"
    rng = np.random.default_rng(0)
    X = np.memmap(path, np.uint8, "w+", shape=(n_big, 784))
    for r0 in range(0, n_big, 10_000):
        X[r0 : r0 + 10_000] = rng.integers(0, 256, (10_000, 784), dtype=np.uint8)
    X.flush()
    peaks = {}
    for n in (10_000, n_big):
        out = subprocess.run([sys.executable, "-c", _PEAK_RSS_ANON, str(n), str(path)],
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        peaks[n] = int(out.stdout.split()[-1])
    # Eight times the data within 40 MB (the codes transform returns are 4.5 MB more, and
    # up to three 6 MB chunks are alive at once, depending on timing); the float32 data
    # alone would be 220 MB more. Measured: 238 MB for both.
    assert peaks[n_big] - peaks[10_000] < 40 * 2**20, peaks


def test_malformed_sparse_input_is_refused_before_any_kernel(digits32):
    X = sp.csr_matrix(digits32[:100])
    X.indices[5] = 64  # one column past the end: a kernel would write out of bounds
    with pytest.raises(ValueError, match="indices"):
        rbm().fit(X)
