"""Format migrations: the state of an older model (file or pickle) upgraded in place.

:func:`migrate_state` is run by the reader (:mod:`skdae._persist_read`) on files of an
older format version, and by ``__setstate__`` of skdae's estimators on older pickles;
the format versions are listed in :mod:`skdae._persist_format`.
"""

import numpy as np

from ._persist_format import InvalidModelFileError


def migrate_state(cls, state, params=None):
    """Upgrade the attributes of an older model (file or pickle) in place.

    Format 1 kept an autoencoder's weights as the lists ``coefs_`` / ``intercepts_``,
    its optimiser state as ``_optimizer_state_a`` / ``_b`` and its random stream seed as
    ``_partial_fit_seed``; the unit types at inference came from the parameters.
    Formats 1 and 2 had no ``partial_fit`` schedule: a fitted autoencoder without its
    state gets that of a finished schedule. Formats 1 to 3 had no rate model in the
    codec: a codec gets ``allocation="uniform"``, ``n_bits`` bits for every unit, no
    frequency tables and no fine-tuned model, which is what it did. Formats 1 to 4 had no
    linear path: an autoencoder gets ``linear_path=False`` (and, fitted, no components).
    A current state is returned unchanged.

    Parameters
    ----------
    cls : type
        The estimator's class.
    state : dict
        Its attributes (for a pickle, the parameters are among them).
    params : dict, default=None
        Its parameters, when they are stored apart (model files).

    Returns
    -------
    state : dict
        The same dict, upgraded.
    """
    if "_partial_fit_seed" in state:
        params = state if params is None else params
        state["_seed"] = state.pop("_partial_fit_seed")
        if cls.__name__ == "RBM":
            state["_hidden_units"] = params.get("hidden_units", "bernoulli")
        elif cls.__name__ == "RBMStackAutoencoder":
            _migrate_autoencoder_v1(state, params)
    if cls.__name__ == "Codec" and "allocation" not in (params or {}):
        _migrate_codec_v3(state, params or {})
    if cls.__name__ == "RBMStackAutoencoder" and "linear_path" not in (
            state if params is None else params):
        # Formats 1 to 4: no linear path. Set as an attribute, over the default the
        # estimator was built with.
        state["linear_path"] = False
        if "n_iter_" in state:
            state.setdefault("linear_path_", False)
            state.setdefault("components_", None)
    if cls.__name__ == "RBMStackAutoencoder" and "n_iter_" in state:
        from ._schedule import SCHEDULE_DEFAULTS

        # Formats 1 and 2 (and pickles of their time): no schedule was running.
        for name, value in SCHEDULE_DEFAULTS.items():
            state.setdefault(name, value)
    return state


def _migrate_codec_v3(state, params):
    state["allocation"] = "uniform"
    lo, n_bits = state.get("code_min_"), params.get("n_bits", 8)
    if lo is None:
        return
    if not isinstance(lo, np.ndarray) or isinstance(n_bits, bool) or not isinstance(n_bits, int):
        raise InvalidModelFileError("format-3 codec without its ranges or n_bits")
    state.setdefault("unit_bits_", np.full(lo.shape, n_bits, np.int64))
    state.setdefault("frequencies_", None)
    state.setdefault("model_", None)


def _migrate_autoencoder_v1(state, params):
    from ._network import make_layout, pack

    coefs, intercepts = state.pop("coefs_", None), state.pop("intercepts_", None)
    shapes_ok = (
        isinstance(coefs, list) and isinstance(intercepts, list) and len(coefs) >= 2
        and all(isinstance(W, np.ndarray) and W.ndim == 2 for W in coefs)
        and all(isinstance(c, np.ndarray) for c in intercepts)
    )
    if not shapes_ok:
        raise InvalidModelFileError("format-1 autoencoder without its weight lists")
    sizes = [int(coefs[0].shape[0])] + [int(W.shape[1]) for W in coefs]
    layout = make_layout(sizes)
    if [tuple(W.shape) for W in coefs] != [tuple(s) for s in layout.shapes.tolist()] or [
        c.shape for c in intercepts
    ] != [(int(n_out),) for n_out in layout.shapes[:, 1]]:
        raise InvalidModelFileError("format-1 autoencoder whose layers do not chain up")
    state["_layer_sizes"] = sizes
    state["_params"] = pack(coefs, intercepts, layout, coefs[0].dtype)
    state["_code_units"] = params.get("code_units", "linear")
    solver = state.pop("_optimizer_solver", None)
    state_a = state.pop("_optimizer_state_a", None)
    state_b = state.pop("_optimizer_state_b", None)
    if solver == "sgd":
        state["_optimizer_state"] = {"velocity": state_a}
    elif solver == "adam":
        state["_optimizer_state"] = {"first_moment": state_a, "second_moment": state_b}
    else:
        solver, state["_optimizer_state"] = None, None
    state["_optimizer_solver"] = solver
