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
def real_data():
    """Real-valued data well outside [0, 1]: 600 digits with an offset and a scale."""
    from sklearn.datasets import load_digits

    return 40.0 + 3.0 * load_digits().data[:600]

