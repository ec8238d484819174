"""skdae: deep autoencoders pretrained as stacks of RBMs, for scikit-learn.

Importing skdae compiles nothing and does not import Numba: kernels are imported and
compiled (or loaded from the on-disk cache) on the first ``fit``.
"""

__version__ = "0.1.0"

from ._autoencoder import RBMStackAutoencoder
from ._persist import InvalidModelFileError, load, save
from ._rbm import RBM

__all__ = ["InvalidModelFileError", "RBM", "RBMStackAutoencoder", "load", "save", "__version__"]
