"""Shared test settings.

MNIST is never downloaded in tests: when ``SKDAE_DATA_HOME`` is unset, it is pointed at the
project's sibling ``../shared/data/mnist`` folder, where these machines keep the IDX files.
"""

import os
from pathlib import Path

# scikit-learn's check_array_api_input skips itself unless SciPy's array-API mode is on,
# and SciPy reads this once, at import: set it before anything imports SciPy.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import pytest  # noqa: E402

_LOCAL_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"

if "SKDAE_DATA_HOME" not in os.environ and _LOCAL_MNIST.is_dir():
    os.environ["SKDAE_DATA_HOME"] = str(_LOCAL_MNIST)


@pytest.fixture(scope="session")
def mnist_home():
    """Folder holding the MNIST IDX files; skips the test when there is none."""
    home = os.environ.get("SKDAE_DATA_HOME")
    if not home or not Path(home).is_dir():
        pytest.skip("MNIST IDX files not found: set SKDAE_DATA_HOME")
    return Path(home)


@pytest.fixture
def interrupt_kernel(monkeypatch):
    """``interrupt_kernel(module, name, n)``: the kernel ``module.name`` raises
    KeyboardInterrupt on its ``n``-th call (a user's Ctrl-C between epochs)."""

    def install(module, name, n):
        real = getattr(module, name)
        calls = []

        def interrupted(*args):
            calls.append(1)
            if len(calls) == n:
                raise KeyboardInterrupt
            return real(*args)

        monkeypatch.setattr(module, name, interrupted)

    return install


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's 1797 8x8 digits scaled to [0, 1] (float64, 64 features).

    Shared by many tests: never modify it in place.
    """
    from sklearn.datasets import load_digits

    return load_digits().data / 16.0


@pytest.fixture(scope="session")
def digits32(digits):
    """``digits`` in float32, the dtype the streaming tests train in.

    Shared by the streaming and Dask tests: never modify it in place.
    """
    import numpy as np

    return digits.astype(np.float32)


@pytest.fixture(scope="session")
def real_data():
    """Real-valued data well outside [0, 1]: 600 digits with an offset and a scale."""
    from sklearn.datasets import load_digits

    return 40.0 + 3.0 * load_digits().data[:600]


@pytest.fixture(scope="session")
def small_models(digits, real_data):
    """One small fitted estimator of every kind that model files hold, by name.

    Trained on the first 200 rows of ``digits`` (``real_data`` for the ``-real``
    ones), single-threaded, in well under a second once the kernels are compiled. Shared:
    copy (``copy.deepcopy``) before training one further.
    """
    import warnings

    from sklearn.decomposition import PCA
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, StandardScaler

    from skdae import RBM, RBMStackAutoencoder
    from skdae.codec import Codec

    X, X_real = digits[:200], real_data[:200]

    def autoencoder(**params):
        params = {"hidden_layer_sizes": (16, 4), "pretrain_epochs": 2, "max_iter": 3,
                  "batch_size": 50, "n_jobs": 1, "random_state": 0, **params}  # fmt: skip
        return RBMStackAutoencoder(**params)

    def partially_fitted(estimator, data, calls=2):
        for _ in range(calls):
            estimator.partial_fit(data)
        return estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ae = autoencoder().fit(X)
        scalers = make_pipeline(StandardScaler(), MaxAbsScaler(), PCA(5, random_state=0))
        return {
            "rbm": RBM(n_components=8, cd_steps=2, persistent=True, batch_size=50, max_iter=2,
                       n_jobs=1, random_state=0).fit(X),  # fmt: skip
            "autoencoder-adam": ae,
            "autoencoder-adam-partial_fit": partially_fitted(autoencoder(), X),
            "autoencoder-sgd-real": autoencoder(solver="sgd", learning_rate=1e-3).fit(X_real),
            "autoencoder-sgd-real-partial_fit": partially_fitted(
                autoencoder(solver="sgd", learning_rate=1e-3), X_real
            ),
            "pipeline-autoencoder-real": make_pipeline(MinMaxScaler(), autoencoder()).fit(X_real),
            "codec-autoencoder": Codec(ae, n_bits=6).fit(X),
            # A fine-tuned copy (model_) and rANS tables (frequencies_) in the file.
            "codec-autoencoder-qat": Codec(ae, n_bits=2, coder="rans", fine_tune_epochs=1).fit(X),
            "codec-pca": Codec(PCA(6, whiten=True, random_state=0).fit(X), n_bits=5).fit(X),
            "codec-pipeline-real": Codec(scalers.fit(X_real), n_bits=8, allocation="uniform",
                                         coder="lzma").fit(X_real),
        }


@pytest.fixture(scope="session")
def pil_image():
    """Pillow's ``PIL.Image`` module; skips the test when Pillow is not installed."""
    return pytest.importorskip("PIL.Image", reason="Pillow is not installed")
