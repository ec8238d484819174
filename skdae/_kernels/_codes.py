"""The integer codes the kernels take for unit kinds, activations, losses and solvers.

The one definition of each code: kernels import the constants (Numba folds them into the
compiled code), estimators look names up in the dictionaries. Plain Python, so the
estimators can import it without importing Numba.
"""

VISIBLE_BERNOULLI = 0
VISIBLE_GAUSSIAN = 1
HIDDEN_BERNOULLI = 0
HIDDEN_LINEAR = 1

ACT_SIGMOID = 0
ACT_LINEAR = 1

LOSS_CROSS_ENTROPY = 0
LOSS_SQUARED_ERROR = 1

SOLVER_NONE = -1
SOLVER_SGD = 0
SOLVER_ADAM = 1

VISIBLE_KIND = {"bernoulli": VISIBLE_BERNOULLI, "gaussian": VISIBLE_GAUSSIAN}
HIDDEN_KIND = {"bernoulli": HIDDEN_BERNOULLI, "linear": HIDDEN_LINEAR}
LOSS_KIND = {"cross_entropy": LOSS_CROSS_ENTROPY, "squared_error": LOSS_SQUARED_ERROR}
SOLVER_KIND = {"sgd": SOLVER_SGD, "adam": SOLVER_ADAM}
