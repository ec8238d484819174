"""Fine-tuning optimisers: their hyperparameters and their state as named arrays.

As in scikit-learn's ``_stochastic_optimizers.py``, each optimiser is a small class with
explicit state, but the update itself is fused into the backward pass of the kernels
(:func:`skdae._kernels._backprop.finetune_epoch`), which take the state as two flat arrays
laid out like the parameter vector. The state stored on an estimator is a plain dict of
named arrays (``{"velocity": ...}`` or ``{"first_moment": ..., "second_moment": ...}``),
so it pickles and goes into model files as it is.
"""

import numpy as np

from ._kernels._codes import SOLVER_ADAM, SOLVER_SGD


class SGDMomentum:
    """Minibatch SGD with classical momentum: ``v = momentum * v - lr * g; w += v``."""

    kind = SOLVER_SGD
    state_names = ("velocity",)

    def __init__(self, learning_rate, momentum):
        self.learning_rate = learning_rate
        self.momentum = momentum

    def kernel_arguments(self, state):
        """``(state_a, state_b, learning_rate, momentum, beta_1, beta_2, epsilon)``."""
        empty = state["velocity"][:0]
        return state["velocity"], empty, self.learning_rate, self.momentum, 0.0, 0.0, 1.0


class Adam:
    """Adam (Kingma & Ba, 2015), with the bias correction folded into the step size."""

    kind = SOLVER_ADAM
    state_names = ("first_moment", "second_moment")

    def __init__(self, learning_rate, beta_1, beta_2, epsilon):
        self.learning_rate = learning_rate
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon

    def kernel_arguments(self, state):
        """``(state_a, state_b, learning_rate, momentum, beta_1, beta_2, epsilon)``."""
        return (state["first_moment"], state["second_moment"], self.learning_rate, 0.0,
                self.beta_1, self.beta_2, self.epsilon)


OPTIMIZERS = {"sgd": SGDMomentum, "adam": Adam}


def make_optimizer(estimator):
    """The optimiser that ``estimator``'s ``solver`` and hyperparameters describe."""
    if estimator.solver == "sgd":
        return SGDMomentum(estimator.learning_rate, estimator.momentum)
    return Adam(estimator.learning_rate, estimator.beta_1, estimator.beta_2, estimator.epsilon)


def new_state(solver, n_params, dtype):
    """Zero state of ``solver`` for ``n_params`` parameters."""
    return {name: np.zeros(n_params, dtype) for name in OPTIMIZERS[solver].state_names}


LEARNING_RATE_SCHEDULES = ("constant", "invscaling", "cosine")


def scheduled_learning_rate(estimator, epoch=None):
    """The fine-tuning step size of ``epoch`` (0-based; default: the next one,
    ``estimator.n_iter_``) under ``estimator.learning_rate_schedule``.

    The rate changes once per epoch (a pass of the ``partial_fit`` schedule), and depends
    on the epoch's number only, so ``partial_fit`` after ``fit``, or after loading a model
    file, continues the schedule from ``n_iter_``:

    - ``"constant"``: ``learning_rate``.
    - ``"invscaling"``: ``learning_rate / (epoch + 1) ** power_t`` (scikit-learn's MLP
      counts samples instead of epochs).
    - ``"cosine"``: ``learning_rate * (1 + cos(pi * epoch / max_iter)) / 2``, from
      ``learning_rate`` at the first epoch down to about ``learning_rate * (pi /
      max_iter) ** 2 / 4`` at the last (Loshchilov & Hutter's decay without restarts);
      epochs past ``max_iter`` (``partial_fit``) keep the last epoch's rate.
    """
    epoch = estimator.n_iter_ if epoch is None else epoch
    rate = float(estimator.learning_rate)
    schedule = estimator.learning_rate_schedule
    if schedule == "invscaling":
        return rate / (epoch + 1) ** float(estimator.power_t)
    if schedule == "cosine":
        horizon = int(estimator.max_iter)
        return rate * 0.5 * (1.0 + np.cos(np.pi * min(epoch, horizon - 1) / horizon))
    return rate
