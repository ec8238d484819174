"""
=======================================
Quick start: an autoencoder against PCA
=======================================

Fit a deep autoencoder to 5,000 MNIST digits, squeeze each 784-pixel image into 30
numbers, and compare how well 1,000 unseen test digits come back with PCA at the same
code size. The autoencoder's encoder (784-500-250-30) is pretrained as a stack of three
RBMs, unrolled into a decoder and fine-tuned as a whole (see :ref:`how-it-works`).
"""

# %%
# The data
# --------
# :func:`~skdae.datasets.load_mnist` reads the MNIST files from ``SKDAE_DATA_HOME`` and
# scales the pixels to [0, 1] in float32, the input that Bernoulli visible units model.
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning

from skdae import RBMStackAutoencoder
from skdae.datasets import load_mnist

X_train = load_mnist("train", n_samples=5000).data
X_test = load_mnist("test", n_samples=1000).data
print(f"train {X_train.shape} {X_train.dtype}, test {X_test.shape}, "
      f"pixels in [{X_train.min()}, {X_train.max()}]")

# %%
# Fit both models
# ---------------
# Ten epochs of contrastive divergence per RBM, then 30 epochs of fine-tuning with Adam:
# a small budget (the full recipe on 60,000 images is in :ref:`reproducing`). The
# autoencoder warns that it has not converged after its 30 epochs; that budget is our
# choice here, so the warning is silenced.
ae = RBMStackAutoencoder(
    hidden_layer_sizes=(500, 250, 30), pretrain_epochs=10, max_iter=30, random_state=0
)
tic = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    ae.fit(X_train)
ae_seconds = time.perf_counter() - tic

tic = time.perf_counter()
pca = PCA(n_components=30, random_state=0).fit(X_train)
pca_seconds = time.perf_counter() - tic

# %%
# Reconstruction error on the test digits
# ---------------------------------------
# The error is the squared error per image, summed over its 784 pixels (Hinton &
# Salakhutdinov's measure); PSNR is in dB for a peak value of 1.
codes = ae.transform(X_test)
print("code of the first test digit:", np.round(codes[0, :6], 2), "...")

reconstructions = {
    "autoencoder": ae.inverse_transform(codes),
    "PCA": pca.inverse_transform(pca.transform(X_test)),
}
seconds = {"autoencoder": ae_seconds, "PCA": pca_seconds}

print(f"{'model':<12} {'code':>4} {'error':>7} {'PSNR dB':>8} {'fit s':>6}")
for name, X_rec in reconstructions.items():
    per_image = ((X_rec - X_test) ** 2).sum(axis=1)
    mse_per_pixel = per_image.mean() / X_test.shape[1]
    psnr = 10 * np.log10(1.0 / mse_per_pixel)
    print(f"{name:<12} {30:>4} {per_image.mean():>7.2f} {psnr:>8.2f} {seconds[name]:>6.1f}")

# %%
# ``score`` is the same error with the sign flipped (higher is better), so that
# scikit-learn's model selection can use it without labels.
print(f"ae.score(X_test) = {ae.score(X_test):.2f}")

# %%
# What the errors look like
# -------------------------
# Top row: test digits; middle: the autoencoder's reconstructions; bottom: PCA's. PCA's
# 30 components blur the strokes into a mean-like shape; the autoencoder keeps most of
# each digit's identity.
rows = [("test digits", X_test), *reconstructions.items()]
fig, axes = plt.subplots(3, 10, figsize=(10, 3.3))
for row, (name, images) in zip(axes, rows):
    for i, ax in enumerate(row):
        ax.imshow(images[i].reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
    row[0].set_ylabel(name, rotation=0, ha="right", va="center")
fig.suptitle("30 numbers per digit: autoencoder against PCA")
fig.tight_layout()
plt.show()
