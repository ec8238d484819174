"""Importing skdae is cheap: Numba and the kernels load on the first fit, not before."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules_after(code):
    """The top-level modules a fresh interpreter has loaded after running ``code``."""
    script = code + "\nimport sys\nprint(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    return set(result.stdout.split())


def test_import_does_not_load_numba():
    # The package docstring promises it: a CLI's --help, a model's get_params or a
    # Pipeline built at import time must not pay Numba's import (about a second). The
    # codec's modules read the table precision from _rate, not from the rANS kernels.
    loaded = _modules_after(
        "import skdae, skdae.augment, skdae.cli, skdae.codec, skdae.datasets\n"
        "from skdae import RBMStackAutoencoder, RBM\n"
        "RBMStackAutoencoder(hidden_layer_sizes=(8, 2)).get_params(); RBM().get_params()"
    )
    assert "skdae" in loaded
    assert "numba" not in loaded, "importing skdae imported Numba"
    assert "llvmlite" not in loaded
