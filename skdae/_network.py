"""The unrolled autoencoder as one flat parameter vector.

The vector is the storage: layer ``l`` has weights ``(n_in, n_out)`` at ``w_off[l]`` and
biases ``(n_out,)`` at ``b_off[l]``, the layout the backprop kernels take, and the
estimator's ``coefs_`` / ``intercepts_`` are views of it (as Keras and PyTorch keep one
buffer per parameter group). So ``transform`` never repacks, an optimiser step is one pass
over one array, and the fitted state has one array to validate.
"""

from collections import namedtuple
from numbers import Integral

import numpy as np


from ._base import readonly, thread_limits
from ._kernels._codes import ACT_LINEAR, ACT_SIGMOID, LOSS_KIND
from ._optimizers import OPTIMIZERS
from ._state import StateChecker

# Rows per chunk in forward passes: bounds the scratch memory of wide layers.
CHUNK_ROWS = 4096

Layout = namedtuple("Layout", "sizes shapes w_off b_off n_params")
Layout.__doc__ = """Where each layer lives in the flat vector.

sizes : list of int, the unit counts ``[n_features, h1, ..., code, ..., h1, n_features]``.
shapes : int64 array ``(n_layers, 2)`` of ``(n_in, n_out)``.
w_off, b_off : int64 arrays, offsets of each layer's weights and biases.
n_params : int, length of the vector.
"""


def unrolled_sizes(n_features, hidden_layer_sizes):
    """Unit counts of the encoder ``n_features -> hidden...`` and its mirror decoder."""
    encoder = [int(n_features)] + [int(h) for h in hidden_layer_sizes]
    return encoder + encoder[-2::-1]


def make_layout(sizes):
    """The :class:`Layout` of a network with unit counts ``sizes``."""
    shapes = np.array(list(zip(sizes[:-1], sizes[1:])), np.int64).reshape(-1, 2)
    lengths = shapes[:, 0] * shapes[:, 1] + shapes[:, 1]
    w_off = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    b_off = w_off + shapes[:, 0] * shapes[:, 1]
    return Layout(list(sizes), shapes, w_off, b_off, int(lengths.sum()))


def layer_views(params, layout):
    """``(coefs, intercepts)``: lists of views of ``params``, one per layer."""
    coefs = [
        params[w : w + n_in * n_out].reshape(n_in, n_out)
        for (n_in, n_out), w in zip(layout.shapes, layout.w_off)
    ]
    intercepts = [params[b : b + n_out] for (_, n_out), b in zip(layout.shapes, layout.b_off)]
    return coefs, intercepts


def are_views(coefs, intercepts, params, layout):
    """Whether ``coefs`` / ``intercepts`` are exactly the views :func:`layer_views` makes."""
    if not (isinstance(coefs, list) and isinstance(intercepts, list)):
        return False
    if len(coefs) != len(layout.shapes) or len(intercepts) != len(layout.shapes):
        return False
    base = params.__array_interface__["data"][0]
    item = params.itemsize
    for W, c, (n_in, n_out), w, b in zip(coefs, intercepts, layout.shapes, layout.w_off, layout.b_off):
        for array, offset, shape in ((W, w, (n_in, n_out)), (c, b, (n_out,))):
            if (
                not isinstance(array, np.ndarray)
                or array.shape != shape
                or array.dtype != params.dtype
                or not array.flags.c_contiguous
                or array.__array_interface__["data"][0] != base + int(offset) * item
            ):
                return False
    return True


def pack(coefs, intercepts, layout, dtype):
    """A new flat vector holding ``coefs`` and ``intercepts`` (already shape-checked)."""
    params = np.empty(layout.n_params, dtype)
    for W, c, w, b in zip(coefs, intercepts, layout.w_off, layout.b_off):
        params[w : w + W.size] = np.asarray(W).ravel()
        params[b : b + c.size] = c
    return params


def activation_kinds(n_layers, code_units, visible_units):
    """Activation code of each layer: sigmoid, except a linear code and Gaussian output."""
    kinds = np.full(n_layers, ACT_SIGMOID, np.int64)
    if code_units == "linear":
        kinds[n_layers // 2 - 1] = ACT_LINEAR
    if visible_units == "gaussian":
        kinds[-1] = ACT_LINEAR
    return kinds


def glorot(rng, n_in, n_out, dtype):
    """Glorot-uniform ``(n_in, n_out)`` weights for sigmoid units (x4, Glorot & Bengio),
    as scikit-learn's MLP initialises."""
    bound = 4.0 * np.sqrt(6.0 / (n_in + n_out))
    return rng.uniform(-bound, bound, (n_in, n_out)).astype(dtype)


def unroll(encoder, layout, rng, dtype, decoder_from_encoder):
    """The flat vector of the autoencoder whose encoder is the RBM stack ``encoder``.

    ``encoder`` holds one ``(W, b_vis, b_hid)`` per RBM, ``W`` of shape
    ``(n_hidden, n_visible)``. The encoder layers take ``W.T`` and ``b_hid``. With
    ``decoder_from_encoder``, the decoder layers start from copies of ``W`` and ``b_vis``
    (Hinton & Salakhutdinov's unrolling; the copies are trained apart afterwards, the
    weights are not tied); otherwise they start from Glorot-uniform weights drawn from
    ``rng`` and zero biases.
    """
    coefs = [W.T for W, _, _ in encoder]
    intercepts = [b_hid for _, _, b_hid in encoder]
    for W, b_vis, _ in reversed(encoder):
        n_hidden, n_visible = W.shape
        if decoder_from_encoder:
            coefs.append(W)
            intercepts.append(b_vis)
        else:
            coefs.append(glorot(rng, n_hidden, n_visible, dtype))
            intercepts.append(np.zeros(n_visible, dtype))
    return pack(coefs, intercepts, layout, dtype)


def forward(X, params, layout, act_kind, first, stop, n_jobs):
    """Run layers ``first .. stop - 1`` on the rows of ``X`` (kernel dtype, C order)."""
    from ._kernels import _backprop as kernels

    shapes = layout.shapes
    out = np.empty((X.shape[0], int(shapes[stop - 1, 1])), params.dtype)
    chunk = min(CHUNK_ROWS, max(1, X.shape[0]))
    width = int(shapes[first:stop, 1].max())
    buf_a = np.empty(chunk * width, params.dtype)
    buf_b = np.empty(chunk * width, params.dtype)
    with thread_limits(n_jobs):
        kernels.forward_layers(
            readonly(X), params, shapes, layout.w_off, layout.b_off, act_kind, first, stop, out,
            buf_a, buf_b, chunk, kernels.dense_pointer(params.dtype),
        )
    return out


def check_fitted_state(est, check_values=True):
    """Validate an autoencoder's whole fitted state and (re)build its views; return the
    :class:`Layout`.

    The one gate between fitted state and the kernels: ``transform``,
    ``inverse_transform``, ``partial_fit``, unpickling and model-file loading all go
    through it. Shapes, dtypes and types are always checked (a few comparisons per
    layer); ``check_values`` also checks that every array is finite (one pass over
    the parameters). ``coefs_`` / ``intercepts_`` assigned by hand with the right
    shapes are copied into a new parameter vector.
    """
    check = StateChecker(est)
    n_features = check.integer("n_features_in_", 1)
    sizes = check.get("_layer_sizes")
    if (
        not isinstance(sizes, list)
        or len(sizes) < 3
        or len(sizes) % 2 == 0
        or not all(isinstance(s, Integral) and not isinstance(s, bool) and s >= 1 for s in sizes)
        or sizes != sizes[::-1]
        or sizes[0] != n_features
    ):
        check.fail(f"_layer_sizes {sizes!r} is not a mirrored list of layer sizes from "
                   f"{n_features} features")
    layout = make_layout([int(s) for s in sizes])
    params = check.array("_params", (layout.n_params,), None, finite=check_values)
    if not params.flags.c_contiguous:
        check.fail("_params is not a contiguous array")
    est._check_visible_state(check, n_features, params.dtype, check_values)
    code_units = check.choice("_code_units", {"linear", "sigmoid"})
    if check.boolean("linear_path_"):
        if code_units != "linear" or est.visible_units_ != "gaussian":
            check.fail("linear_path_ is set but the code or the visible units are not linear")
        components = check.array("components_", (sizes[len(sizes) // 2], n_features),
                                 params.dtype, finite=check_values)
        if not components.flags.c_contiguous:
            check.fail("components_ is not a contiguous array")
    elif check.get("components_") is not None:
        check.fail("components_ is set but linear_path_ is False")
    loss = check.choice("loss_", set(LOSS_KIND))
    if loss == "cross_entropy" and est.visible_units_ != "bernoulli":
        check.fail("loss_ is cross_entropy but the visible units are not Bernoulli")
    for name in ("n_iter_", "t_", "_no_improvement_count"):
        check.integer(name, 0, 2**62)  # counters the kernels add to in int64
    check.integer("_seed", 0, 2**63)
    check.boolean("_pretrain_interrupted")
    check.numbers("loss_curve_")
    check.numbers("pretrain_curves_", nested=True)
    check.numbers("validation_scores_", optional=True)
    check.number("best_loss_", optional=True)
    check.number("best_validation_score_", optional=True)
    _check_optimizer_state(est, check, layout, params.dtype, check_values)
    from ._schedule import check_schedule_state

    check_schedule_state(est, check, layout, params.dtype, check_values)
    _check_views(est, check, layout, params)
    return layout

def _check_optimizer_state(est, check, layout, dtype, check_values):
    solver, state = check.get("_optimizer_solver"), check.get("_optimizer_state")
    if solver is None and state is None:
        return
    if solver not in OPTIMIZERS or not isinstance(state, dict):
        check.fail(f"_optimizer_solver {solver!r} with state of type {type(state).__name__}")
    names = OPTIMIZERS[solver].state_names
    if sorted(state) != sorted(names):
        check.fail(f"the {solver} optimiser state holds {sorted(state)}, expected {sorted(names)}")
    for name in names:
        check.array(f"_optimizer_state[{name!r}]", (layout.n_params,), dtype,
                    finite=check_values, value=state[name])

def _check_views(est, check, layout, params):
    coefs, intercepts = getattr(est, "coefs_", None), getattr(est, "intercepts_", None)
    if are_views(coefs, intercepts, params, layout):
        return
    if coefs is not None or intercepts is not None:
        # Assigned by hand (as one may with scikit-learn's MLP): adopt them if they
        # have the network's shapes and dtype.
        if not (isinstance(coefs, list) and isinstance(intercepts, list)
                and len(coefs) == len(intercepts) == len(layout.shapes)):
            check.fail("coefs_ and intercepts_ are not lists with one array per layer")
        for i, ((n_in, n_out), W, c) in enumerate(zip(layout.shapes, coefs, intercepts)):
            check.array(f"coefs_[{i}]", (n_in, n_out), params.dtype, value=W)
            check.array(f"intercepts_[{i}]", (n_out,), params.dtype, value=c)
        params = pack(coefs, intercepts, layout, params.dtype)
    est._set_parameter_vector(params)
