"""scikit-learn's common estimator checks, with no expected failures."""

import warnings

from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from skdae import RBM, RBMStackAutoencoder


# Small layers keep the ~50 checks fast; the defaults themselves are checked by
# test_default_constructible below (and by the checks' own default-construction test).
@parametrize_with_checks(
    [
        RBM(n_components=8, max_iter=3),
        RBMStackAutoencoder(hidden_layer_sizes=(16, 4), pretrain_epochs=2, max_iter=3),
    ]
)
def test_sklearn_compatible_estimator(estimator, check):
    # max_iter=3 stops fine-tuning before it converges, by design: the warning saying so
    # is expected, as in scikit-learn's own run of these checks (its test_common.py
    # ignores ConvergenceWarning too). Every other warning still shows.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)
