"""Checks of fitted state that may come from an untrusted source (a model file, a pickle,
attributes set by hand).

The kernels index raw memory by the shapes of the arrays they are given, so every array
an estimator passes to a kernel is checked here first: its type, dimensions, shape and
dtype, and (where a non-finite value would only turn into NaN outputs) its values. Each
estimator lists its fitted state in one ``_check_fitted_state`` method built from these
helpers; every entry point that uses fitted state (``transform``, ``partial_fit``, model
file loading, unpickling) goes through it.
"""

from numbers import Integral, Real

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class FittedStateError(ValueError):
    """Fitted state that does not fit together (an edited model file, a bad assignment)."""


class StateChecker:
    """Collects the checks of one estimator's fitted state and names the first failure.

    Parameters
    ----------
    estimator : estimator instance
        The estimator whose attributes are read.
    """

    def __init__(self, estimator):
        self.estimator = estimator

    def fail(self, problem):
        """Raise :class:`FittedStateError` naming ``problem`` and the fix."""
        raise FittedStateError(
            f"{type(self.estimator).__name__} has inconsistent fitted state: {problem}. Refit "
            "the model or reload it from an intact model file."
        )

    def get(self, name):
        """The attribute ``name``, or a failure naming it when it is missing."""
        try:
            return getattr(self.estimator, name)
        except AttributeError:
            self.fail(f"{name} is missing")

    def array(self, name, shape, dtype, *, finite=False, positive=False, value=None):
        """Check the array attribute ``name`` (or ``value``) and return it.

        ``shape`` entries of None accept any size; ``dtype`` is one dtype or None for any
        of float32 / float64.
        """
        array = self.get(name) if value is None else value
        if not isinstance(array, np.ndarray):
            self.fail(f"{name} is a {type(array).__name__}, not an array")
        allowed = FLOAT_DTYPES if dtype is None else (np.dtype(dtype),)
        if array.dtype not in allowed:
            self.fail(f"{name} has dtype {array.dtype}, expected {' or '.join(map(str, allowed))}")
        if array.ndim != len(shape) or any(
            want is not None and have != want for have, want in zip(array.shape, shape)
        ):
            expected = tuple("any" if s is None else s for s in shape)
            self.fail(f"{name} has shape {array.shape}, expected {expected}")
        if finite and not np.isfinite(array).all():
            self.fail(f"{name} holds non-finite values")
        if positive and not (array > 0).all():
            self.fail(f"{name} holds values that are not positive")
        return array

    def integer(self, name, low=0, high=None):
        """Check that ``name`` is an int in ``[low, high)`` and return it as an int."""
        value = self.get(name)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
            self.fail(f"{name} is {value!r}, not an integer")
        if value < low or (high is not None and value >= high):
            self.fail(f"{name} is {value}, outside [{low}, {high if high is not None else 'inf'})")
        return int(value)

    def choice(self, name, options):
        """Check that ``name`` is one of ``options`` and return it."""
        value = self.get(name)
        if not isinstance(value, str) or value not in options:
            self.fail(f"{name} is {value!r}, not one of {sorted(options)}")
        return value

    def boolean(self, name):
        """Check that ``name`` is a bool and return it."""
        value = self.get(name)
        if not isinstance(value, (bool, np.bool_)):
            self.fail(f"{name} is {value!r}, not a bool")
        return bool(value)

    def number(self, name, *, optional=False):
        """Check that ``name`` is a real number (or None when ``optional``)."""
        value = self.get(name)
        if value is None and optional:
            return None
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
            self.fail(f"{name} is {value!r}, not a number")
        return float(value)

    def numbers(self, name, *, optional=False, nested=False):
        """Check that ``name`` is a list of numbers (of lists of numbers with ``nested``)."""
        value = self.get(name)
        if value is None and optional:
            return None
        rows = value if nested else [value]
        if not isinstance(value, list) or not all(
            isinstance(row, list)
            and all(isinstance(v, Real) and not isinstance(v, (bool, np.bool_)) for v in row)
            for row in rows
        ):
            self.fail(f"{name} is not a list of {'lists of ' if nested else ''}numbers")
        return value
