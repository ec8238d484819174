"""
================================================
Two-number codes, coloured by digit, against PCA
================================================

With a code of only two linear units, the autoencoder becomes a non-linear 2-D map of
the data, as in figure 3 of Hinton & Salakhutdinov (2006). The labels are never used in
training; colouring the codes of unseen test digits by their label shows how much of
the class structure the two numbers keep, beside PCA's first two components. A 5-nearest
neighbour classifier on the 2-D codes puts a number on it.
"""

# %%
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.neighbors import KNeighborsClassifier

from skdae import RBMStackAutoencoder
from skdae.datasets import load_mnist

X_train, y_train = load_mnist("train", n_samples=5000, return_X_y=True)
X_test, y_test = load_mnist("test", n_samples=2000, return_X_y=True)

# A larger fine-tuning step than the default (3e-3 instead of 1e-3) for this short run.
ae = RBMStackAutoencoder(
    hidden_layer_sizes=(400, 200, 2), pretrain_epochs=5, max_iter=20, learning_rate=3e-3,
    random_state=0,
)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)  # a fixed epoch budget
    ae.fit(X_train)
pca = PCA(n_components=2, random_state=0).fit(X_train)

codes = {
    "autoencoder": (ae.transform(X_train), ae.transform(X_test)),
    "PCA": (pca.transform(X_train), pca.transform(X_test)),
}

# %%
# How much of the digit identity two numbers keep
# -----------------------------------------------
# Accuracy of a 5-nearest-neighbour classifier that sees only the 2-D codes (fitted on
# the training codes, scored on the test codes), and the reconstruction error.
print(f"{'model':<12} {'5-NN accuracy':>14} {'squared error':>14}")
for name, (train_codes, test_codes) in codes.items():
    knn = KNeighborsClassifier(n_neighbors=5).fit(train_codes, y_train)
    model = ae if name == "autoencoder" else pca
    X_rec = model.inverse_transform(test_codes)
    error = ((X_rec - X_test) ** 2).sum(axis=1).mean()
    print(f"{name:<12} {knn.score(test_codes, y_test):>14.3f} {error:>14.2f}")

# %%
# The maps
# --------
# Each dot is a test digit placed at its code. PCA's two directions of largest variance
# put the 1s and the 0s at opposite ends and mix most other digits. The autoencoder gives
# several digits arms of their own, while others still overlap in the middle: after 20
# epochs on 5,000 images, two numbers keep part of the identity, not all of it (Hinton &
# Salakhutdinov's figure used all 60,000 images).
fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
cmap = plt.get_cmap("tab10")
for ax, (name, (_, test_codes)) in zip(axes, codes.items()):
    for digit in range(10):
        points = test_codes[y_test == digit]
        ax.scatter(points[:, 0], points[:, 1], s=4, color=cmap(digit), label=str(digit))
    ax.set_title(f"{name}: 2-D codes of {len(y_test)} test digits")
    ax.set_xticks([])
    ax.set_yticks([])
axes[1].legend(markerscale=4, loc="center left", bbox_to_anchor=(1, 0.5), title="digit")
fig.tight_layout()
plt.show()
