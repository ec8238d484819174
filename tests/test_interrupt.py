"""A real Ctrl-C (SIGINT) sent to a process that is fitting.

The child prints one progress line per epoch (``verbose=1``); the parent sends SIGINT right
after the k-th line, so the signal lands while the next epoch's kernel runs (or just after
it returns). The child must keep a usable, saveable model whose counters describe exactly
the weights kept: the epoch in progress completes and is counted. The reference for
"exactly" is an uninterrupted fit of that many epochs (fine-tuning), or an interruption by
a ``KeyboardInterrupt`` raised before the next kernel call, which rolls back nothing
(pretraining): both must match the child's model bit for bit.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from skdae import RBM, RBMStackAutoencoder, load
from skdae._kernels import _rbm as rbm_kernels

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

PARAMS = dict(hidden_layer_sizes=(96, 24), pretrain_epochs=6, max_iter=60, batch_size=50,
              random_state=0, verbose=1, n_jobs=1)
RBM_PARAMS = dict(n_components=96, max_iter=60, batch_size=50, random_state=0, verbose=1,
                  n_jobs=1)

CHILD = textwrap.dedent(
    """
    import json, signal, sys, warnings
    import numpy as np
    import skdae
    from skdae import RBM, RBMStackAutoencoder

    # Ctrl-C as in an interactive program: a child inherits an ignored SIGINT from a
    # parent started in the background without job control (a CI runner, `cmd &` in a
    # script), and skdae rightly leaves an ignored SIGINT alone.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    kind, params, path = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    X = np.random.RandomState(1).rand(3000, 196).astype(np.float32)
    model = RBMStackAutoencoder(**params) if kind == "autoencoder" else RBM(**params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X)
    # Usable: encode and save.
    codes = model.transform(X[:10])
    assert np.isfinite(codes).all()
    skdae.save(model, path)
    print("RESULT " + json.dumps([str(w.message) for w in caught]), flush=True)
    """
)


def _data():
    return np.random.RandomState(1).rand(3000, 196).astype(np.float32)


def _interrupted_child(kind, params, marker, k, tmp_path):
    """Run the child, SIGINT after its ``k``-th progress line containing ``marker``."""
    path = tmp_path / "model.skdae"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, kind, json.dumps(params), str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    seen, sent, lines = 0, False, []
    for line in child.stdout:
        lines.append(line)
        if marker in line:
            seen += 1
            if seen == k and not sent:
                child.send_signal(signal.SIGINT)
                sent = True
    child.wait(timeout=300)
    stderr = child.stderr.read()
    assert child.returncode == 0, "".join(lines) + stderr
    assert sent, "".join(lines)
    result = [line for line in lines if line.startswith("RESULT ")]
    assert result, "".join(lines) + stderr
    return load(path), json.loads(result[-1][len("RESULT "):]), lines


def _assert_same_weights(a, b):
    for x, y in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        assert_array_equal(x, y)


def test_sigint_during_fine_tuning_keeps_completed_epochs(tmp_path):
    k = 3
    model, messages, _ = _interrupted_child("autoencoder", PARAMS, "[fine-tune] epoch", k,
                                            tmp_path)
    assert any("interrupted by the user" in m and "completed" in m for m in messages), messages
    # The signal arrives during epoch k + 1 (that epoch completes and is counted), or
    # between the k-th line and the check that follows it; training stops well before
    # max_iter either way.
    assert k <= model.n_iter_ <= k + 2 < PARAMS["max_iter"]
    assert len(model.loss_curve_) == model.n_iter_
    n_batches = 3000 // PARAMS["batch_size"]
    assert model.t_ == model.n_iter_ * n_batches
    # Exactly the weights of an uninterrupted fit of n_iter_ epochs.
    params = dict(PARAMS, max_iter=model.n_iter_, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = RBMStackAutoencoder(**params).fit(_data())
    _assert_same_weights(model, reference)
    assert reference.t_ == model.t_ and reference.loss_curve_ == model.loss_curve_
    # And it trains on: partial_fit continues from the kept state.
    model.set_params(verbose=0).partial_fit(_data())
    assert model.n_iter_ == reference.n_iter_ + 1


def test_sigint_during_pretraining_keeps_completed_rbm_epochs(tmp_path, interrupt_kernel):
    k = 2
    model, messages, _ = _interrupted_child("autoencoder", PARAMS, "[RBM 2/2", k, tmp_path)
    assert any("interrupted by the user" in m for m in messages), messages
    first, second = (len(c) for c in model.pretrain_curves_)
    assert first == PARAMS["pretrain_epochs"]
    assert k <= second <= k + 2 < PARAMS["pretrain_epochs"]
    assert model.n_iter_ == 0 and model.t_ == 0 and model.loss_curve_ == []
    # Reference: a KeyboardInterrupt raised just before the next cd_epoch call, after the
    # same number of completed epochs; it rolls back nothing.
    interrupt_kernel(rbm_kernels, "cd_epoch", first + second + 1)
    with pytest.warns(UserWarning, match="interrupted"):
        reference = RBMStackAutoencoder(**dict(PARAMS, verbose=0)).fit(_data())
    assert [len(c) for c in reference.pretrain_curves_] == [first, second]
    _assert_same_weights(model, reference)


def test_sigint_during_rbm_fit_keeps_completed_epochs(tmp_path):
    k = 3
    model, messages, _ = _interrupted_child("rbm", RBM_PARAMS, "[RBM] epoch", k, tmp_path)
    assert any("interrupted by the user" in m for m in messages), messages
    assert k <= model.n_iter_ <= k + 2 < RBM_PARAMS["max_iter"]
    assert len(model.reconstruction_error_curve_) == model.n_iter_
    reference = RBM(**dict(RBM_PARAMS, max_iter=model.n_iter_, verbose=0)).fit(_data())
    for name in ("components_", "intercept_hidden_", "intercept_visible_"):
        assert_array_equal(getattr(model, name), getattr(reference, name))
