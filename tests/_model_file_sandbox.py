"""Load and use model files in a separate process, which may crash or hang without harm.

A damaged model file that slips past the checks can make a Numba kernel read or write out
of bounds: in the test process that would corrupt memory shared with every later test (or
kill the pytest-xdist worker). :class:`Sandbox` runs :func:`exercise` in a child process
instead and reports what happened, a crash (signal) or a hang (timeout) included. The child
is started once and serves many requests; it is restarted after a crash or a timeout.

Run as a script, this module is the child: it reads requests from one file descriptor and
writes reports to another (``multiprocessing.connection`` framing, pickled).
"""

import os
import signal
import subprocess
import sys
import tempfile
import traceback
import warnings
from multiprocessing.connection import Connection

import numpy as np

# --------------------------------------------------------------------------- child side


def _outcome(op, exc):
    """Classify an exception raised while using a loaded model."""
    if isinstance(exc, ValueError) and str(exc).strip():
        return (op, "ValueError", f"{type(exc).__name__}: {exc}")
    return (op, "BAD", "".join(traceback.format_exception(exc)))


def _check_output(name, value, n_rows, ndim):
    """A result that came back: a float array of the right rows, every value finite."""
    value = np.asarray(value)
    problems = []
    if value.dtype.kind != "f":
        problems.append(f"dtype {value.dtype}")
    if value.ndim != ndim or value.shape[0] != n_rows:
        problems.append(f"shape {value.shape}, expected {n_rows} rows and {ndim} dimensions")
    elif value.dtype.kind == "f" and not np.isfinite(value).all():
        problems.append("non-finite values")
    if problems:
        raise AssertionError(f"{name} returned {', '.join(problems)}")
    return value


def _run(report, op, fn):
    """Run ``fn``; record its outcome; return its result or None."""
    try:
        result = fn()
    except BaseException as exc:  # noqa: BLE001 - every outcome is recorded and judged
        report.append(_outcome(op, exc))
        return None
    report.append((op, "ok", ""))
    return result


def _use_transformer(report, model, X, prefix):
    """transform, inverse_transform, score_samples, partial_fit, then transform again."""
    n = X.shape[0]
    codes = _run(report, f"{prefix}transform",
                 lambda: _check_output("transform", model.transform(X), n, 2))  # fmt: skip
    if codes is not None:
        _run(report, f"{prefix}inverse_transform",
             lambda: _check_output("inverse_transform", model.inverse_transform(codes), n, 2))  # fmt: skip
    # A pipeline's score_samples and partial_fit are its last step's, on what the steps
    # before it output.
    learner, inputs = model, lambda: X
    if hasattr(model, "steps"):
        learner = model.steps[-1][1]
        if len(model.steps) > 1:
            inputs = lambda: model[:-1].transform(X)  # noqa: E731
    # Only skdae's own score_samples: PCA's is the likelihood of a probabilistic model,
    # not finite for some PCAs that scikit-learn fits itself (noise_variance_ = 0), and
    # scikit-learn's to answer for.
    if type(learner).__module__.startswith("skdae."):
        _run(report, f"{prefix}score_samples",
             lambda: _check_output("score_samples", model.score_samples(X), n, 1))  # fmt: skip
    if hasattr(learner, "partial_fit"):
        fitted = _run(report, f"{prefix}partial_fit", lambda: learner.partial_fit(inputs()))
        if fitted is not None:
            _run(report, f"{prefix}transform after partial_fit",
                 lambda: _check_output("transform", model.transform(X), n, 2))  # fmt: skip


def _use_codec(report, codec, X, archive):
    n = X.shape[0]

    def round_trip():
        data = codec.compress(X)
        return _check_output("decompress", codec.decompress(data), n, X.ndim)

    _run(report, "compress+decompress", round_trip)
    if archive is not None:
        _run(report, "decompress original archive",
             lambda: _check_output("decompress", codec.decompress(archive), n, X.ndim))  # fmt: skip
    if _run(report, "fit (new ranges)", lambda: codec.fit(X)) is not None:
        _run(report, "compress+decompress after fit", round_trip)
    _use_transformer(report, codec.model, X.reshape(n, -1), "model.")


def exercise(model_bytes, X, archive=None):
    """Load a model file and use it every way its kind allows.

    Parameters
    ----------
    model_bytes : bytes
        The model file.
    X : ndarray
        Valid input for the original model.
    archive : bytes or None
        For a codec: an archive made by the original codec.

    Returns
    -------
    report : list of (operation, outcome, detail)
        ``outcome`` is ``"ok"``, ``"refused"`` (load raised InvalidModelFileError),
        ``"ValueError"`` (use raised a ValueError with a message) or ``"BAD"`` (anything
        else: another exception, a RuntimeWarning, a non-finite or malformed output).
    """
    from sklearn.exceptions import ConvergenceWarning

    from skdae import load, save
    from skdae._persist import InvalidModelFileError
    from skdae.codec import Codec

    report = []
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", RuntimeWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        path = os.path.join(folder, "model.skdae")
        with open(path, "wb") as f:
            f.write(model_bytes)
        try:
            model = load(path)
        except InvalidModelFileError as exc:
            outcome = "refused" if str(exc).strip() else "BAD"
            return [("load", outcome, str(exc))]
        except BaseException as exc:  # noqa: BLE001
            return [("load", "BAD", "".join(traceback.format_exception(exc)))]
        report.append(("load", "ok", type(model).__name__))
        if isinstance(model, Codec):
            _use_codec(report, model, X, archive)
        else:
            _use_transformer(report, model, X, "")
        # Whatever use did (or refused to do), the model saves and loads again: no
        # error at all is allowed here.
        again = os.path.join(folder, "again.skdae")
        try:
            save(model, again)
            load(again)
        except BaseException as exc:  # noqa: BLE001
            report.append(("save+load after use", "BAD", "".join(traceback.format_exception(exc))))
    return report


def _serve(requests, replies):
    while True:
        try:
            function, args = requests.recv()
        except EOFError:
            return
        replies.send(function(*args))


# -------------------------------------------------------------------------- parent side


class Sandbox:
    """A child process that runs functions for the test; restarted after a crash or a hang."""

    def __init__(self):
        self.process = None

    def _start(self):
        from_parent, to_child = os.pipe()
        from_child, to_parent = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), str(from_parent), str(to_parent)],
            pass_fds=(from_parent, to_parent),
        )
        os.close(from_parent)
        os.close(to_parent)
        self.requests = Connection(to_child, readable=False)
        self.replies = Connection(from_child, writable=False)

    def call(self, function, *args, timeout=60.0):
        """Return ``function(*args)`` run in the child.

        ``function`` and ``args`` must be picklable (``function`` by its import path).

        Raises
        ------
        SandboxFailure
            If the child died (its signal or exit code is in the message) or did not
            answer within ``timeout`` seconds (it is then killed).
        """
        if self.process is None or self.process.poll() is not None:
            self._start()
        try:
            self.requests.send((function, args))
            if self.replies.poll(timeout):
                return self.replies.recv()
            problem = f"no answer within {timeout:.0f} s (a hang)"
        except (EOFError, OSError):
            problem = None
        self.close()
        if problem is None:
            code = self.process.returncode
            problem = (
                f"the process died of signal {signal.Signals(-code).name}"
                if code < 0
                else f"the process exited with code {code}"
            )
        raise SandboxFailure(problem)

    def run(self, model_bytes, X, archive=None, timeout=60.0):
        """:func:`exercise` in the child; a crash or a hang is one ``BAD`` entry."""
        try:
            return self.call(exercise, model_bytes, X, archive, timeout=timeout)
        except SandboxFailure as exc:
            return [("sandbox", "BAD", str(exc))]

    def close(self):
        """Stop the child (it is started again on the next call)."""
        if self.process is None:
            return
        for conn in (self.requests, self.replies):
            conn.close()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


class SandboxFailure(Exception):
    """The sandbox process crashed or hung."""


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False))
