"""partial_fit's schedule under dask-ml's Incremental, lazy Dask inference through
ParallelPostFit, concurrent calls from threads, and a real distributed LocalCluster."""

import os
import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import ConvergenceWarning

from skdae import RBM, RBMStackAutoencoder

da = pytest.importorskip("dask.array")


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def ae(**params):
    params = {"hidden_layer_sizes": (32, 8), "pretrain_epochs": 2, "max_iter": 4, "n_jobs": 1,
              "random_state": 0, **params}
    return RBMStackAutoencoder(**params)


# ------------------------------------------------------------- partial_fit schedule


def test_scheduled_partial_fit_walks_the_phases_of_fit(digits32):
    n = len(digits32)
    model = ae(samples_per_pass=n)
    phases = []
    for _ in range(2 * 2 + 4):
        for block in np.array_split(digits32, 4):
            assert model.partial_fit(block) is model
        phases.append((model._schedule_phase, [len(c) for c in model.pretrain_curves_],
                       model.n_iter_))
    assert phases[:4] == [(0, [1, 0], 0), (1, [2, 0], 0), (1, [2, 1], 0), (None, [2, 2], 0)]
    assert [p[2] for p in phases[4:]] == [1, 2, 3, 4] and len(model.loss_curve_) == 4
    # The same pretraining and fine-tuning budget as fit, to within a few percent.
    reference = ae().fit(digits32)
    assert -model.score(digits32) < 1.05 * -reference.score(digits32)
    # Without a schedule, the first call pretrains on its chunk alone (the old rule).
    legacy = ae().partial_fit(digits32[:400])
    assert [len(c) for c in legacy.pretrain_curves_] == [2, 2] and legacy.n_iter_ == 1


def test_schedule_survives_model_files_and_checks_its_state(digits32, tmp_path):
    import skdae
    from skdae._state import FittedStateError

    model = ae(samples_per_pass=len(digits32)).partial_fit(digits32[:600])
    skdae.save(model, tmp_path / "m.skdae")
    loaded = skdae.load(tmp_path / "m.skdae")
    assert loaded._schedule_phase == 0
    assert_array_equal(loaded.partial_fit(digits32[600:1200])._params,
                       model.partial_fit(digits32[600:1200])._params)
    model._rbm_velocity = model._rbm_velocity[:2]
    with pytest.raises(FittedStateError, match="_rbm_velocity"):
        model.partial_fit(digits32[:100])


def test_incremental_over_a_dask_array_is_the_scheduled_partial_fit(digits32):
    wrappers = pytest.importorskip("dask_ml.wrappers")
    n = len(digits32)
    X = da.from_array(digits32, chunks=(450, 64))
    inc = wrappers.Incremental(ae(samples_per_pass=n), shuffle_blocks=False)
    inc.fit(X)
    for _ in range(2 * 2 + 4 - 1):
        inc.partial_fit(X)
    by_hand = ae(samples_per_pass=n)
    for _ in range(2 * 2 + 4):
        for r0 in range(0, n, 450):
            by_hand.partial_fit(digits32[r0 : r0 + 450])
    assert inc.estimator_.n_iter_ == 4 and inc.estimator_._schedule_phase is None
    assert_array_equal(inc.estimator_._params, by_hand._params)


def test_parallel_post_fit_gives_lazy_dask_codes(digits32):
    wrappers = pytest.importorskip("dask_ml.wrappers")
    model = wrappers.ParallelPostFit(ae()).fit(digits32)
    X = da.from_array(digits32, chunks=(500, 64))
    codes = model.transform(X)
    assert isinstance(codes, da.Array)
    # Dask's threaded scheduler runs the blocks concurrently (see the thread tests).
    expected = model.estimator.transform(digits32)
    assert_allclose(codes.compute(), expected, rtol=1e-5, atol=1e-6)
    # dask-ml maps the blocks without declaring the new column count (the lazy shape
    # says 64 columns until computed); map_blocks with the output chunks declares it.
    lazy = X.map_blocks(model.estimator.transform, chunks=(X.chunks[0], (8,)),
                        dtype=np.float32)
    assert lazy.shape == (len(digits32), 8)
    assert_allclose(lazy.compute(), expected, rtol=1e-5, atol=1e-6)
    # Without the wrapper a Dask array is read chunk by chunk into NumPy.
    assert isinstance(model.estimator.transform(X), np.ndarray)


# ------------------------------------------------------------------------- threads


def _concurrent_fits(X, n_threads=4):
    results, errors = [None] * n_threads, []

    def work(i):
        try:
            model = ae(n_jobs=None).fit(X) if i % 2 else RBM(16, max_iter=3, random_state=0).fit(X)
            results[i] = model.transform(X)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def test_concurrent_fits_and_transforms_from_threads(digits32):
    results = _concurrent_fits(digits32)
    assert_array_equal(results[1], ae(n_jobs=None).fit(digits32).transform(digits32))
    rbm = RBM(16, max_iter=3, random_state=0).fit(digits32)
    assert_array_equal(results[0], rbm.transform(digits32))
    assert all(np.array_equal(results[i], results[i % 2]) for i in range(4))


def test_concurrent_calls_under_numba_workqueue_layer_do_not_abort():
    """Numba's fallback layer aborts the process on concurrent parallel launches; skdae
    serialises them there (a child process, since the layer is chosen once per process)."""
    code = textwrap.dedent(
        """
        import numpy as np, numba, warnings
        from sklearn.datasets import load_digits
        warnings.simplefilter("ignore")
        import test_dask
        X = (load_digits().data / 16.0).astype(np.float32)[:600]
        results = test_dask._concurrent_fits(X)
        assert all(np.array_equal(results[i], results[i % 2]) for i in range(4))
        print(numba.threading_layer())
        """
    )
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue",
               PYTHONPATH=os.pathsep.join([os.path.dirname(__file__), *sys.path]))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("workqueue")


# ------------------------------------------------------------------------- cluster


def reconstruction_score(pipe, X, y=None):
    """Negative squared error per sample, in the pipeline's input units."""
    return -float(((pipe.inverse_transform(pipe.transform(X)) - X) ** 2).sum(axis=1).mean())


def test_grid_search_and_encoding_on_a_local_cluster(digits32):
    distributed = pytest.importorskip("distributed")
    wrappers = pytest.importorskip("dask_ml.wrappers")
    cloudpickle = pytest.importorskip("cloudpickle")
    import joblib
    from sklearn.decomposition import PCA
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MinMaxScaler

    # The workers cannot import this test module: ship its scorer by value (a user's
    # script, being __main__, is always shipped so).
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    X = digits32[:600]
    pipe = Pipeline([("scale", MinMaxScaler()), ("reduce", PCA(8))])
    grid = [{"reduce": [ae(max_iter=2, pretrain_epochs=1)],
             "reduce__hidden_layer_sizes": [(16, 8), (32, 8)]},
            {"reduce": [PCA(8)]}]
    # In this process first: with an empty Numba cache (CI) this compiles the kernels
    # into the cache, from which the workers then load them.
    local = GridSearchCV(pipe, grid, scoring=reconstruction_score, cv=2, n_jobs=1).fit(X)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        with joblib.parallel_config("dask"):
            search = GridSearchCV(pipe, grid, scoring=reconstruction_score, cv=2).fit(X)
        assert_allclose(search.cv_results_["mean_test_score"],
                        local.cv_results_["mean_test_score"], rtol=1e-5)
        # Encode a Dask array on the workers, lazily.
        model = wrappers.ParallelPostFit(search.best_estimator_)
        codes = model.transform(da.from_array(X, chunks=(150, 64)))
        on_cluster = client.compute(codes).result()
        assert_allclose(on_cluster, search.best_estimator_.transform(X), rtol=1e-5, atol=1e-6)
        workers = client.run(os.getpid)
        assert len(workers) == 2 and os.getpid() not in workers.values()
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
