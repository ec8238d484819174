"""
===================================================================
Damaged digits: the autoencoder is not a denoiser (negative result)
===================================================================

An autoencoder fitted to clean digits was never taught to remove noise or fill holes,
but its decoder can only draw digit-like images, so it is tempting to pass a damaged
digit through it and hope it comes back repaired. This example measures that against
PCA with the same 30-number code and against doing nothing, and finds that it does
**not** work: PCA repairs better, and for noise the autoencoder's output is even worse
than its input. The reason is instructive, and the example stays in the gallery so that
nobody has to find this out alone.

- **Denoising**: Gaussian noise with standard deviation 0.1, 0.2 or 0.3 added to the
  test digits (clipped to [0, 1]); one pass through each model.
- **Inpainting**: half of the pixels lost, either at random or the lower half. Starting
  with the lost pixels at 0, each model reconstructs the image and the lost pixels are
  refilled from the reconstruction, ten times, while the known pixels stay as they are.

Quality is the PSNR against the clean digits: over the whole image for denoising, over
the lost pixels for inpainting.
"""

# %%
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning

from skdae import RBMStackAutoencoder
from skdae.datasets import load_mnist

X_train = load_mnist("train", n_samples=5000).data
X_test = load_mnist("test", n_samples=1000).data

ae = RBMStackAutoencoder(
    hidden_layer_sizes=(400, 200, 30), pretrain_epochs=5, max_iter=20,
    learning_rate=3e-3, random_state=0,
)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)  # a fixed epoch budget
    ae.fit(X_train)
pca = PCA(n_components=30, random_state=0).fit(X_train)


def reconstruct(model, X):
    """One pass through the model, clipped to the pixel range."""
    return np.clip(model.inverse_transform(model.transform(X)), 0, 1).astype(np.float32)


def psnr(clean, estimate, where=None):
    """PSNR in dB (peak 1) over all pixels, or over the boolean mask ``where``."""
    diff = (estimate - clean) if where is None else (estimate - clean)[:, where]
    return 10 * np.log10(1.0 / np.mean(diff**2))


# %%
# Denoising
# ---------
rng = np.random.default_rng(0)
noisy = {
    sigma: np.clip(X_test + rng.normal(0, sigma, X_test.shape), 0, 1).astype(np.float32)
    for sigma in (0.1, 0.2, 0.3)
}
print(f"autoencoder on the clean digits: {psnr(X_test, reconstruct(ae, X_test)):.2f} dB, "
      f"PCA: {psnr(X_test, reconstruct(pca, X_test)):.2f} dB (the best each can do)")
print("denoising, PSNR against the clean digits (dB)")
print(f"  {'noise':>5} {'input':>7} {'autoencoder':>12} {'PCA':>7}")
for sigma, X_noisy in noisy.items():
    print(f"  {sigma:>5} {psnr(X_test, X_noisy):>7.2f} "
          f"{psnr(X_test, reconstruct(ae, X_noisy)):>12.2f} "
          f"{psnr(X_test, reconstruct(pca, X_noisy)):>7.2f}")

# %%
# Inpainting
# ----------
def inpaint(model, X, lost, n_steps=10):
    """Refill the pixels where ``lost`` is True from the model, ``n_steps`` times."""
    X_hat = np.where(lost, 0.0, X).astype(np.float32)
    for _ in range(n_steps):
        X_hat = np.where(lost, reconstruct(model, X_hat), X_hat)
    return X_hat


lower_half = np.zeros((28, 28), bool)
lower_half[14:, :] = True
masks = {
    "random half": rng.random(X_test.shape) < 0.5,
    "lower half": np.broadcast_to(lower_half.ravel(), X_test.shape),
}
print("inpainting, PSNR over the lost pixels (dB)")
print(f"  {'lost':<12} {'left at 0':>9} {'autoencoder':>12} {'PCA':>7}")
inpainted = {}
for name, lost in masks.items():
    inpainted[name] = {"autoencoder": inpaint(ae, X_test, lost), "PCA": inpaint(pca, X_test, lost)}
    print(f"  {name:<12} {psnr(X_test[lost], np.zeros(lost.sum())):>9.2f} "
          f"{psnr(X_test[lost], inpainted[name]['autoencoder'][lost]):>12.2f} "
          f"{psnr(X_test[lost], inpainted[name]['PCA'][lost]):>7.2f}")

# %%
# Pictures
# --------
# Rows: clean digits; the damaged input (noise 0.3, left; lower half lost, right); the
# autoencoder's result; PCA's. From noise, the autoencoder makes garbled strokes; from a
# top half, it draws the top half again and leaves the rest nearly empty. PCA's results
# are blurred, but closer to the clean digits.
n = 6
X_noisy = noisy[0.3]
X_holed = np.where(masks["lower half"], 0.0, X_test)
rows = [
    ("clean", X_test, X_test),
    ("damaged", X_noisy, X_holed),
    ("autoencoder", reconstruct(ae, X_noisy), inpainted["lower half"]["autoencoder"]),
    ("PCA", reconstruct(pca, X_noisy), inpainted["lower half"]["PCA"]),
]
fig, axes = plt.subplots(len(rows), 2 * n + 1, figsize=(10, 3.8),
                         gridspec_kw={"width_ratios": [1] * n + [0.25] + [1] * n})
for r, (label, left, right) in enumerate(rows):
    images = [*left[:n], None, *right[:n]]
    for ax, image in zip(axes[r], images):
        ax.axis("off")
        if image is not None:
            ax.imshow(image.reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
    axes[r, 0].text(-4, 14, label, ha="right", va="center", fontsize=9)
axes[0, n // 2].set_title("noise 0.3", fontsize=10)
axes[0, n + 1 + n // 2].set_title("lower half lost", fontsize=10)
plt.show()

# %%
# Why
# ---
# The autoencoder's first layer was fitted to clean digits, whose background is exactly
# 0. Noise on the hundreds of background pixels shifts every first-layer unit's input by
# a sum over hundreds of weights, far outside what training showed it; the code is then
# wrong, and the decoder draws strokes that were not there. PCA's projection is linear:
# it keeps the part of the noise that lies in its 30 directions (about 30/784 of white
# noise's energy) and discards the rest, whatever the noise level. A lost region is the
# opposite problem: a top half with an empty bottom is ink the autoencoder can
# reconstruct well as it is, so refilling the hole from its reconstruction keeps the hole
# nearly empty, while PCA's linear directions spread some ink into it. A model trained
# for the task, on damaged inputs with clean targets (a denoising autoencoder), would
# behave differently; skdae's estimators fit clean data only. The robust use of these codes is on data like the training data, as
# in :ref:`sphx_glr_auto_examples_plot_anomaly_scores.py`, where damaged or foreign
# inputs are what the reconstruction error is meant to expose.
