"""Serve MathJax from the built site instead of a CDN.

The build and the browser check run without a network, so the page must not ask a CDN for
MathJax. The ``sphinx-mathjax-offline`` package (a ``docs`` extra) ships MathJax 3; this
extension copies its files into ``_static/mathjax`` through ``html_static_path`` and
points ``mathjax_path`` there.
"""

import importlib.util
from pathlib import Path

from sphinx.errors import ExtensionError

_PACKAGE = "sphinx-mathjax-offline"  # its import name has dashes


def _mathjax_static_dir():
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ExtensionError(
            f"{_PACKAGE} is not installed: pip install '.[docs]' (the documentation "
            "serves MathJax from its own files, it does not download it)"
        )
    static = Path(next(iter(spec.submodule_search_locations))) / "static"
    if not (static / "mathjax" / "tex-chtml.js").is_file():
        raise ExtensionError(f"{static} does not hold mathjax/tex-chtml.js")
    return static


def _configure(app, config):
    config.html_static_path = [*config.html_static_path, str(_mathjax_static_dir())]
    config.mathjax_path = "mathjax/tex-chtml.js"


def setup(app):
    app.setup_extension("sphinx.ext.mathjax")
    app.connect("config-inited", _configure)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
