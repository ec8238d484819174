"""
=======================================================
Choosing an architecture with Pipeline and GridSearchCV
=======================================================

:class:`~skdae.RBMStackAutoencoder` is a scikit-learn transformer, so it goes into a
:class:`~sklearn.pipeline.Pipeline` after a scaler and into
:class:`~sklearn.model_selection.GridSearchCV` beside :class:`~sklearn.decomposition.PCA`.
No labels are needed: candidates are ranked by their reconstruction error on the
held-out folds. The data are scikit-learn's 1,797 8x8 digits, compressed to 16 numbers
(4:1).
"""

# %%
# One score for every candidate
# -----------------------------
# ``RBMStackAutoencoder.score`` is the negative mean squared reconstruction error, but
# ``PCA.score`` is a log-likelihood: to compare the two, the search gets one scoring
# function, the reconstruction error in the pipeline's input units (pixel values 0-16).
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler

from skdae import RBMStackAutoencoder

X = load_digits().data.astype(np.float32)
print(f"{X.shape[0]} images of {X.shape[1]} pixels, values {X.min():.0f} to {X.max():.0f}")


def reconstruction_score(pipe, X, y=None):
    """Negative squared error per image, in the pipeline's input units."""
    X_rec = pipe.inverse_transform(pipe.transform(X))
    return -((X_rec - X) ** 2).sum(axis=1).mean()


# %%
# The search
# ----------
# Three encoders with the same 16-unit code, from one hidden layer to three, against PCA
# with 16 components. The MinMaxScaler maps the pixels to [0, 1] for the autoencoder's
# Bernoulli input units; ``inverse_transform`` of the pipeline maps reconstructions back.
pipe = Pipeline([("scale", MinMaxScaler()), ("reduce", PCA())])
autoencoder = RBMStackAutoencoder(
    pretrain_epochs=10, max_iter=60, batch_size=32, random_state=0
)
grid = [
    {
        "reduce": [autoencoder],
        "reduce__hidden_layer_sizes": [(64, 16), (128, 64, 16), (256, 128, 64, 16)],
    },
    {"reduce": [PCA(n_components=16)]},
]
search = GridSearchCV(
    pipe, grid, scoring=reconstruction_score, cv=KFold(3, shuffle=True, random_state=0)
)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)  # a fixed epoch budget
    search.fit(X)

# %%
# The results, best first: mean and spread over the three folds of the squared error
# per image (in squared grey levels, 0-16 scale), and the mean fit time.
results = search.cv_results_
names = [
    "autoencoder " + "-".join(map(str, (64, *p["reduce__hidden_layer_sizes"])))
    if "reduce__hidden_layer_sizes" in p
    else "PCA-16"
    for p in results["params"]
]
order = np.argsort(results["rank_test_score"])
print(f"{'candidate':<28} {'error':>7} {'std':>6} {'fit s':>6}")
for i in order:
    print(f"{names[i]:<28} {-results['mean_test_score'][i]:>7.1f} "
          f"{results['std_test_score'][i]:>6.1f} {results['mean_fit_time'][i]:>6.2f}")
print("best:", names[search.best_index_])

# %%
# The refitted best pipeline is an ordinary transformer: ``transform`` gives codes,
# ``inverse_transform`` images.
best = search.best_estimator_
codes = best.transform(X[:5])
print("codes:", codes.shape, " reconstructions:", best.inverse_transform(codes).shape)

# %%
fig, ax = plt.subplots(figsize=(7, 3))
ax.barh(
    [names[i] for i in order][::-1],
    [-results["mean_test_score"][i] for i in order][::-1],
    xerr=[results["std_test_score"][i] for i in order][::-1],
    color=["tab:orange" if names[i].startswith("PCA") else "tab:blue" for i in order][::-1],
)
ax.set_xlabel("held-out squared error per image (lower is better)")
ax.set_title("GridSearchCV over encoders and PCA, code size 16")
fig.tight_layout()
plt.show()
