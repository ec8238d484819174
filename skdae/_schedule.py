"""The ``partial_fit`` schedule of :class:`~skdae.RBMStackAutoencoder` (``samples_per_pass``).

Streaming chunks through ``partial_fit`` (by hand, or with ``dask_ml.wrappers.Incremental``,
which calls it once per block and cannot say where a pass over the data ends) walks the
phases of ``fit``: RBM 1 for ``pretrain_epochs`` passes, then RBM 2 fed through the frozen
RBM 1, ..., then fine-tuning. A pass is ``samples_per_pass`` samples. Each call trains the
current phase once on its chunk, and a pass is recorded when the samples of the calls
since the last one reach ``samples_per_pass``; a phase ends after a call, so a boundary
moves by less than one chunk.

The state between calls is plain data on the estimator: ``_schedule_phase`` (the RBM in
training, or None once fine-tuning), ``_pass_samples`` and ``_pass_loss`` (the open pass),
``_schedule_calls`` (names the random streams of the calls of a phase) and
``_rbm_velocity`` (the momentum of the RBM in training). The RBM's weights live in the
unrolled parameter vector all along (encoder ``W.T``, ``b_hid``; decoder ``W``, ``b_vis``),
so ``transform`` works at any point of the schedule.
"""

import numpy as np

from ._base import thread_limits
from ._finetuning import FineTuner
from ._pretraining import CDTrainer
from ._stream import EncodedRows

# Stream name of scheduled partial_fit calls under the fit's seed (pretraining uses 0,
# fine-tuning 1).
SCHEDULE_STREAM = 2

SCHEDULE_DEFAULTS = {"_schedule_phase": None, "_pass_samples": 0, "_pass_loss": 0.0,
                     "_schedule_calls": 0, "_rbm_velocity": None}


def reset_schedule(est, pretraining):
    """Start the schedule: at RBM 1 when ``pretraining``, else at fine-tuning."""
    for name, value in SCHEDULE_DEFAULTS.items():
        setattr(est, name, value)
    if pretraining:
        start_rbm(est, 0)


def start_rbm(est, layer):
    n_vis, n_hid = est._layer_sizes[layer], est._layer_sizes[layer + 1]
    dtype = est._params.dtype
    est._schedule_phase = layer
    est._schedule_calls = 0
    est._rbm_velocity = [np.zeros((n_hid, n_vis), dtype), np.zeros(n_vis, dtype),
                         np.zeros(n_hid, dtype)]


def check_schedule_state(est, check, layout, dtype, check_values):
    """Validate the schedule's part of the fitted state (see the module docstring)."""
    n_layers = len(layout.shapes) // 2
    phase = est.__dict__.get("_schedule_phase")
    if phase is not None:
        phase = check.integer("_schedule_phase", 0, n_layers)
    check.integer("_pass_samples")
    check.integer("_schedule_calls")
    check.number("_pass_loss")
    velocity = check.get("_rbm_velocity")
    if phase is None:
        if velocity is not None:
            check.fail("_rbm_velocity is set but no RBM is in training")
        return
    n_vis, n_hid = layout.shapes[phase]
    if not isinstance(velocity, list) or len(velocity) != 3:
        check.fail("_rbm_velocity is not a list of three arrays")
    for i, shape in enumerate(((n_hid, n_vis), (n_vis,), (n_hid,))):
        check.array(f"_rbm_velocity[{i}]", shape, dtype, finite=check_values, value=velocity[i])


def schedule_step(est, data, stop):
    """One scheduled ``partial_fit`` step of ``est`` on ``data`` (its chunk)."""
    if est._schedule_phase is None:
        _fine_tune_step(est, data, stop)
    else:
        _pretrain_step(est, data, stop)


def _layer_data(est, data, layer):
    """``data`` as RBM ``layer`` sees it: through the frozen encoder layers below."""
    for below in range(layer):
        data = EncodedRows(data, np.ascontiguousarray(est.coefs_[below].T),
                           est.intercepts_[below].copy())
    return data


def _pretrain_step(est, data, stop):
    n_layers = len(est._layer_sizes) // 2
    layer = est._schedule_phase
    mirror = 2 * n_layers - 1 - layer
    W = np.ascontiguousarray(est.coefs_[layer].T)
    b_hid, b_vis = est.intercepts_[layer].copy(), est.intercepts_[mirror].copy()
    visible, hidden = est._rbm_unit_types(n_layers)[layer]
    est._rbm_velocity = [np.require(v, requirements="CW") for v in est._rbm_velocity]
    trainer = CDTrainer(W, b_vis, b_hid, visible, hidden, persistent=False,
                        velocity=tuple(est._rbm_velocity), **est._cd_settings(visible, hidden))
    curve = []
    passes = est.pretrain_curves_[layer]
    label = f"RBM {layer + 1}/{n_layers} (partial_fit)"
    with thread_limits(est.n_jobs):
        trainer.run(_layer_data(est, data, layer), 1,
                    (est._seed, SCHEDULE_STREAM, layer, est._schedule_calls), stop=stop,
                    first_epoch=len(passes), verbose=est.verbose, label=label, curve=curve)
    if not curve:  # interrupted and rolled back: nothing happened
        return
    est.coefs_[layer][...] = W.T
    est.intercepts_[layer][...] = b_hid
    est.coefs_[mirror][...] = W
    est.intercepts_[mirror][...] = b_vis
    est._schedule_calls += 1
    if _count(est, curve[0], data.n_train(), passes):
        if len(passes) >= est.pretrain_epochs:
            if layer + 1 < n_layers:
                start_rbm(est, layer + 1)
            else:
                est._schedule_phase, est._rbm_velocity, est._schedule_calls = None, None, 0
                est._start_linear_path()


def _fine_tune_step(est, data, stop):
    layout = est._check_fitted_state(check_values=False)
    if not est._params.flags.writeable:
        est._set_parameter_vector(est._params.copy())
    tuner = FineTuner(est, layout, est._activations(), data.n_train(), data.n_features)
    n_layers = len(layout.shapes) // 2
    key = (est._seed, SCHEDULE_STREAM, n_layers, est._schedule_calls)
    loss = tuner.step(data, stop, key)
    if loss is None:
        return
    est._schedule_calls += 1
    passes = []
    if _count(est, loss, data.n_train(), passes):
        tuner.record(passes[0])


def _count(est, loss, n, passes):
    """Add a call's mean loss over ``n`` samples to the open pass; when the pass is full,
    append its mean loss to ``passes`` and return True."""
    est._pass_samples += int(n)
    est._pass_loss += float(loss) * n
    if est._pass_samples < est.samples_per_pass:
        return False
    passes.append(est._pass_loss / est._pass_samples)
    est._pass_samples, est._pass_loss = 0, 0.0
    return True
