"""
============================================
What the first RBM learns: filters as images
============================================

The first layer of the autoencoder is an RBM between the 784 pixels and its hidden
units. Each hidden unit has one weight per pixel, so its weights can be drawn as a 28x28
image: the pattern of ink that switches the unit on (positive weights) or off (negative
weights). This example trains a single :class:`~skdae.RBM` with 100 hidden units on
10,000 MNIST digits by CD-1 and draws its filters, the reconstruction error per epoch,
and what one Gibbs step does to test digits.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np

from skdae import RBM
from skdae.datasets import load_mnist

X_train = load_mnist("train", n_samples=10000).data
X_test = load_mnist("test", n_samples=1000).data

rbm = RBM(n_components=100, max_iter=15, random_state=0)
rbm.fit(X_train)
print(f"visible units: {rbm.visible_units_}, weights {rbm.components_.shape}")

# %%
# Training curve
# --------------
# ``reconstruction_error_curve_`` is the squared error per image of a one-step
# reconstruction (data -> hidden probabilities -> visible probabilities) after each
# epoch, on the training data.
for epoch in (1, 2, 5, 10, 15):
    print(f"epoch {epoch:>2}: {rbm.reconstruction_error_curve_[epoch - 1]:.2f}")
mean_rec = rbm.inverse_transform(rbm.transform(X_test))
print(f"test digits, one-step reconstruction error: "
      f"{((mean_rec - X_test) ** 2).sum(axis=1).mean():.2f}")

fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(np.arange(1, rbm.n_iter_ + 1), rbm.reconstruction_error_curve_, marker="o")
ax.set_xlabel("epoch")
ax.set_ylabel("squared error per image")
ax.set_title("CD-1 training of a 784-100 RBM")
fig.tight_layout()

# %%
# The filters
# -----------
# Red is positive, blue negative, each filter on its own symmetric scale. Many units
# respond to a short stroke or a blob of ink in one place and are switched off by ink
# around it: local stroke detectors, not whole digits. Others, after only 15 epochs,
# still mix several strokes into noisy patterns.
#
# sphinx_gallery_thumbnail_number = 2
fig, axes = plt.subplots(10, 10, figsize=(7, 7))
for ax, w in zip(axes.ravel(), rbm.components_):
    limit = np.abs(w).max()
    ax.imshow(w.reshape(28, 28), cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.axis("off")
fig.suptitle("100 first-layer RBM filters (weights per pixel)")
fig.tight_layout()

# %%
# One Gibbs step
# --------------
# ``gibbs`` samples the hidden units given the digits, then binary pixels given the
# hidden units: a sample of what the RBM thinks the digit looks like, not a mean.
samples = rbm.gibbs(X_test[:10], random_state=0)
fig, axes = plt.subplots(3, 10, figsize=(10, 3.3))
for i in range(10):
    for row, images in enumerate((X_test, mean_rec, samples)):
        axes[row, i].imshow(images[i].reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
        axes[row, i].axis("off")
for row, label in enumerate(("test", "mean", "sample")):
    axes[row, 0].text(-4, 14, label, ha="right", va="center")
fig.tight_layout()
plt.show()
