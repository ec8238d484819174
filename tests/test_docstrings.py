"""Every public docstring passes numpydoc's validation, and every docstring example runs.

The public API is what the documentation's API reference lists: the names in the
``__all__`` of ``skdae``, ``skdae.codec`` and ``skdae.datasets``, the functions of
``skdae.cli``, and every public method and property that skdae itself defines on those
classes (methods inherited from scikit-learn carry scikit-learn's docstrings).
"""

import doctest
import importlib
import inspect
import pkgutil

import pytest

numpydoc_validate = pytest.importorskip("numpydoc.validate")

import skdae  # noqa: E402

PUBLIC_MODULES = ("skdae", "skdae.codec", "skdae.datasets")
EXTRA_PUBLIC = ("skdae.cli.build_parser", "skdae.cli.main")

# numpydoc checks left out everywhere, each for a reason:
IGNORED = {
    # The summary starts on the line of the opening quotes (PEP 257, scikit-learn).
    "GL01",
    # Named return values ("self : RBM", "codes : ndarray ...") as scikit-learn writes
    # them: the name is what the text refers to.
    "RT02",
}
# Left out for methods and properties only: a class's page has the extended summary, the
# See Also section and the examples; a one-line method needs none of them.
IGNORED_FOR_MEMBERS = {"ES01", "SA01", "EX01"}


def _resolve(name):
    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def _defined_in_skdae(obj):
    target = obj.fget if isinstance(obj, property) else obj
    return getattr(target, "__module__", "").startswith("skdae")


def public_objects():
    """``(names, members)``: dotted names of the public classes and functions followed by
    their own methods and properties, and the set of the latter."""
    names = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        names += [f"{module_name}.{n}" for n in module.__all__ if not n.startswith("_")]
    names += EXTRA_PUBLIC
    objects, members = [], set()
    for name in names:
        obj = _resolve(name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue  # __version__
        objects.append(name)
        if inspect.isclass(obj):
            for member, value in sorted(vars(obj).items()):
                if member.startswith("_"):
                    continue
                if (inspect.isfunction(value) or isinstance(value, property)) and (
                    _defined_in_skdae(value)
                ):
                    objects.append(f"{name}.{member}")
                    members.add(f"{name}.{member}")
    return objects, members


PUBLIC, MEMBERS = public_objects()


def test_public_api_is_covered():
    # A guard against an empty parametrisation passing silently.
    for name in ("skdae.RBMStackAutoencoder.fit", "skdae.codec.Codec.compress",
                 "skdae.datasets.load_mnist", "skdae.save"):
        assert name in PUBLIC


@pytest.mark.parametrize("name", PUBLIC)
def test_numpydoc_validation(name):
    ignored = IGNORED | (IGNORED_FOR_MEMBERS if name in MEMBERS else set())
    errors = [
        f"{code}: {message}"
        for code, message in numpydoc_validate.validate(name)["errors"]
        if code not in ignored
    ]
    assert not errors, f"{name}:\n  " + "\n  ".join(errors)


# --------------------------------------------------------------------------------------
# Docstring examples
# --------------------------------------------------------------------------------------

# Importing skdae.__main__ would run the command line.
_SKIP_MODULES = {"skdae.__main__"}


def _all_modules():
    yield skdae
    for info in pkgutil.walk_packages(skdae.__path__, prefix="skdae."):
        if info.name not in _SKIP_MODULES:
            yield importlib.import_module(info.name)


def _docstring_examples():
    finder = doctest.DocTestFinder(exclude_empty=True)
    seen = set()
    for module in _all_modules():
        for test in finder.find(module, module.__name__):
            # The same object can be found through several modules (re-exports).
            if test.examples and test.name not in seen:
                seen.add(test.name)
                yield test


DOCTESTS = sorted(_docstring_examples(), key=lambda t: t.name)


def test_docstring_examples_are_found():
    names = {t.name for t in DOCTESTS}
    assert "skdae._autoencoder.RBMStackAutoencoder" in names
    assert "skdae.codec.Codec" in names


@pytest.mark.parametrize("test", DOCTESTS, ids=[t.name for t in DOCTESTS])
def test_docstring_example(test, request):
    if any("load_mnist(" in example.source for example in test.examples):
        request.getfixturevalue("mnist_home")  # skips when MNIST is not available
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    output = []
    runner.run(test, out=output.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(output)
