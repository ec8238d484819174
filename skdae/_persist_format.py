"""What a model file is: its format name and versions, its members, the classes it may
hold and the error raised for one that is not a valid model file.

Shared by the writer (:mod:`skdae._persist`), the reader (:mod:`skdae._persist_read`)
and the format migrations (:mod:`skdae._persist_migrate`); see :mod:`skdae._persist` for
the layout of a model file.
"""

import re

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

HEADER_MEMBER = "skdae.json"
ARRAY_MEMBER = "arrays/{}.npy"
# Deepest nesting of values a model file may hold (and save may write).
MAX_DEPTH = 64

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

# Names of the attributes a model file may set: public fitted (``name_``) or private
# (``_name``), never dunder.
ATTR_NAME = re.compile(r"^(?:[A-Za-z][A-Za-z0-9_]*_|_[A-Za-z][A-Za-z0-9_]*)$")
ARRAY_KINDS = frozenset("biufcUS")
SCALAR_KINDS = frozenset("biuf")


class InvalidModelFileError(ValueError):
    """A model file that is not one, is damaged, or comes from an unsupported version.

    Raised by :func:`skdae.load` (and :func:`skdae._persist_read.read_header`) with a message
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
