"""Sphinx configuration of the skdae documentation.

Build (from the project root; the gallery runs at every build):

    sphinx-build -W --keep-going -b html docs docs/_build/html

The build is offline: no intersphinx inventories, MathJax served from the build itself,
and MNIST read from local IDX files (``SKDAE_DATA_HOME``), never downloaded.
"""

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent

# --- environment, before anything imports NumPy, Numba or matplotlib ---------------------

# MNIST for the gallery: the tests' rule (tests/conftest.py), the sibling folder
# ../shared/data/mnist when SKDAE_DATA_HOME is unset. The files must be there: the build
# never falls back to skdae's OpenML download.
_LOCAL_MNIST = ROOT.parent / "shared" / "data" / "mnist"
if not os.environ.get("SKDAE_DATA_HOME") and _LOCAL_MNIST.is_dir():
    os.environ["SKDAE_DATA_HOME"] = str(_LOCAL_MNIST)
_MNIST_FILES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]
_home = Path(os.environ.get("SKDAE_DATA_HOME", "~/skdae_data")).expanduser()
_missing = [
    name for name in _MNIST_FILES
    if not (_home / name).is_file() and not (_home / f"{name}.gz").is_file()
]
if _missing:
    raise RuntimeError(
        f"The gallery needs the four MNIST IDX files; {', '.join(_missing)} (or .gz) not "
        f"found in {str(_home)!r}. Point SKDAE_DATA_HOME at the folder holding them."
    )

os.environ.setdefault("MPLBACKEND", "Agg")
# Numba's OpenMP threads spin while they wait for each other; on a machine whose cores
# are busy with other work (CI, a laptop running tests) that made the gallery's small
# fits up to 10 times slower. Passive waiting costs nothing measurable when idle.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

sys.path.insert(0, str(DOCS / "_ext"))
# Document (and run the gallery on) this checkout's skdae, as the tests do: the same
# source files, so the Numba kernels cached by the test run are reused here.
sys.path.insert(0, str(ROOT))

import skdae  # noqa: E402

# --- project ------------------------------------------------------------------------------

project = "skdae"
author = "the skdae developers"
copyright = "the skdae developers"
version = release = skdae.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "mathjax_local",
    "argparse_reference",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "README.md"]
root_doc = "index"
# Every reference must resolve, except those to Python, NumPy and scikit-learn objects:
# without intersphinx (the build is offline) they cannot, and stay plain text.
nitpicky = False

# --- API reference (autosummary + numpydoc, as scikit-learn-contrib projects) ------------

autosummary_generate = True
autodoc_default_options = {"members": True, "member-order": "groupwise"}
autodoc_typehints = "none"
# numpydoc would list every member a second time after autodoc's own entries.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# --- example gallery ------------------------------------------------------------------------

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "backreferences_dir": "generated/backreferences",
    "doc_module": ("skdae",),
    "reference_url": {"skdae": None},
    "filename_pattern": r"/plot_",
    # "Executed at every build": never reuse the output of an earlier build.
    "run_stale_examples": True,
    "abort_on_example_error": False,
    "only_warn_on_example_error": False,
    "remove_config_comments": True,
    "show_memory": False,
    "show_api_usage": False,
    "min_reported_time": 0,
    "within_subsection_order": "gallery_order.ExampleOrder",
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "plot_gallery": "True",
}

# --- HTML -----------------------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"skdae {release}"
html_static_path = ["_static"]
html_css_files = ["skdae.css"]
html_show_sourcelink = False
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    # The page outline on the right, except on gallery pages (none listed here): their
    # code and figures get its width.
    "secondary_sidebar_items": {
        page: ["page-toc"] for page in ("index", "api", "cli", "generated/*", "user_guide/*")
    },
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    # Nothing fetched from elsewhere at view time either.
    "icon_links": [],
}
html_sidebars = {"index": [], "cli": []}
html_context = {"default_mode": "light"}


# --- docstring rendering ----------------------------------------------------------------------

import re  # noqa: E402

# In numpydoc type specs such as "ndarray of shape (n_features_in_,)", a name ending with
# an underscore is a reST hyperlink reference ("Unknown target name" under -W). Show such
# names as code instead, only inside "shape (...)".
_SHAPE = re.compile(r"shape \(([^()]*)\)")
_TRAILING_UNDERSCORE = re.compile(r"(?<![`\w])([A-Za-z]\w*_)(?![`\w])")


def _literal_shape_names(app, what, name, obj, options, lines):
    def literal(match):
        return "shape (" + _TRAILING_UNDERSCORE.sub(r"``\1``", match.group(1)) + ")"

    lines[:] = [_SHAPE.sub(literal, line) for line in lines]


def _skip_foreign_members(app, what, name, obj, skip, options):
    """Document only members that skdae defines: methods inherited from scikit-learn (and
    the ``set_*_request`` methods it generates) carry scikit-learn's cross-references,
    which cannot resolve without its documentation."""
    target = obj.fget if isinstance(obj, property) else obj
    module = getattr(target, "__module__", None)
    if what in ("class", "exception") and module and not module.startswith("skdae"):
        return True
    return None


def _compile_kernels(app):
    """Compile (or load from Numba's cache) the float32 kernels before the gallery runs,
    so that the first example's reported time is its own, not the one-off compile."""
    import time
    import warnings

    import numpy as np
    from sphinx.util import logging

    from skdae import RBM, RBMStackAutoencoder

    if str(app.config.plot_gallery).lower() in ("0", "false", "no", "off"):
        return  # the gallery is not run (sphinx-build -D plot_gallery=0)
    tic = time.perf_counter()
    X = np.random.default_rng(0).random((64, 16), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ae = RBMStackAutoencoder((8, 2), pretrain_epochs=1, max_iter=1, batch_size=16).fit(X)
        ae.inverse_transform(ae.transform(X))
        ae.score_samples(X)
        rbm = RBM(4, max_iter=1, batch_size=16).fit(X)
        rbm.inverse_transform(rbm.transform(X))
        rbm.gibbs(X, random_state=0)
        rbm.score_samples(X)
    logging.getLogger(__name__).info(
        f"skdae: float32 kernels compiled or loaded in {time.perf_counter() - tic:.1f} s"
    )


def _offline_execution_times(app, docname, source):
    """sphinx-gallery's execution-time pages load jQuery and DataTables from CDNs (to make
    the table sortable); the site must work offline, so the table stays a plain table."""
    if docname.rpartition("/")[2] == "sg_execution_times":
        text = source[0]
        start, stop = text.find("  .. raw:: html"), text.find("  .. list-table::")
        if 0 <= start < stop:
            source[0] = text[:start] + text[stop:]


def setup(app):
    app.connect("source-read", _offline_execution_times)
    # Priority 100: before sphinx-gallery runs the examples (on builder-inited too).
    app.connect("builder-inited", _compile_kernels, priority=100)
    # Before numpydoc (priority 500) turns the sections into reST.
    app.connect("autodoc-process-docstring", _literal_shape_names, priority=400)
    app.connect("autodoc-skip-member", _skip_foreign_members)
