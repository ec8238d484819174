"""
==============================================================
Anomaly scores: letters, noise and flipped digits among digits
==============================================================

A model fitted to digits only should find other images unusual. Both estimators have
``score_samples``, higher for more typical samples:

- :meth:`RBMStackAutoencoder.score_samples <skdae.RBMStackAutoencoder.score_samples>`
  is minus the squared reconstruction error of each image;
- :meth:`RBM.score_samples <skdae.RBM.score_samples>` is minus the free energy, the
  RBM's log-likelihood up to a constant.

Both are fitted to 5,000 MNIST training digits and then score 1,000 test digits beside
three kinds of outliers: capital letters drawn with the DejaVu font that matplotlib
ships (so they are synthetic, not handwritten), uniform noise, and test digits turned
upside down. The ROC AUC says how well a score ranks the outliers below the digits
(1 is perfect, 0.5 is chance).
"""

# %%
import warnings

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import font_manager
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import roc_auc_score

from skdae import RBM, RBMStackAutoencoder
from skdae.datasets import load_mnist

X_train = load_mnist("train", n_samples=5000).data
X_test = load_mnist("test", n_samples=1000).data
rng = np.random.default_rng(0)


# %%
# The outliers
# ------------
# Letters are drawn large, cropped to their ink, fitted into a 20x20 box and centred in
# 28x28 as MNIST's digits were, with a random rotation and a slight blur.
def letter_images(n, rng):
    font = ImageFont.truetype(
        font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans", weight="bold")),
        90,
    )
    images = []
    for _ in range(n):
        canvas = Image.new("L", (140, 140), 0)
        char = chr(ord("A") + rng.integers(26))
        ImageDraw.Draw(canvas).text((25, 10), char, fill=255, font=font)
        canvas = canvas.rotate(rng.uniform(-15, 15), resample=Image.BILINEAR)
        glyph = canvas.crop(canvas.getbbox())
        scale = 20 / max(glyph.size)
        size = (max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale)))
        glyph = glyph.resize(size, Image.LANCZOS)
        box = Image.new("L", (28, 28), 0)
        box.paste(glyph, ((28 - size[0]) // 2, (28 - size[1]) // 2))
        images.append(np.asarray(box.filter(ImageFilter.GaussianBlur(0.5)), np.float32))
    return np.clip(np.array(images).reshape(n, 784) / 255, 0, 1)


outliers = {
    "letters": letter_images(300, rng),
    "noise": rng.random((300, 784), dtype=np.float32),
    "upside-down digits": X_test[:300].reshape(-1, 28, 28)[:, ::-1, :].reshape(-1, 784).copy(),
}

# %%
# Two models of digits
# --------------------
ae = RBMStackAutoencoder(
    hidden_layer_sizes=(400, 200, 30), pretrain_epochs=5, max_iter=20,
    learning_rate=3e-3, random_state=0,
)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)  # a fixed epoch budget
    ae.fit(X_train)
rbm = RBM(n_components=200, max_iter=10, random_state=0).fit(X_train)

# %%
# How well each score ranks outliers below digits
# -----------------------------------------------
# ROC AUC of each score, and the share of each kind of outlier flagged when the
# threshold lets 5 % of the test digits be flagged too. Note that the upside-down set
# holds the same digits as the test set, and a 0, 1 or 8 upside down is still a digit.
scores = {}
for model_name, model in (("autoencoder", ae), ("RBM", rbm)):
    scores[model_name] = {"test digits": model.score_samples(X_test)}
    for kind, X_out in outliers.items():
        scores[model_name][kind] = model.score_samples(X_out)

print(f"{'outliers':<20} {'model':<12} {'ROC AUC':>8} {'flagged at 5% false alarms':>27}")
for kind in outliers:
    for model_name, s in scores.items():
        digits, odd = s["test digits"], s[kind]
        # Outliers are the positive class; a low score means "anomalous".
        auc = roc_auc_score(np.r_[np.zeros(len(digits)), np.ones(len(odd))], -np.r_[digits, odd])
        threshold = np.quantile(digits, 0.05)
        print(f"{kind:<20} {model_name:<12} {auc:>8.3f} {np.mean(odd < threshold):>27.1%}")

# %%
# The score distributions
# -----------------------
# Left: the autoencoder's reconstruction error (log scale); right: the RBM's free
# energy. The dashed line is the 5 % threshold.
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
for ax, (model_name, s) in zip(axes, scores.items()):
    values = {k: -v for k, v in s.items()}  # errors and free energies: high = unusual
    if model_name == "autoencoder":
        bins = np.logspace(np.log10(min(v.min() for v in values.values())),
                           np.log10(max(v.max() for v in values.values())), 60)
        ax.set_xscale("log")
        ax.set_xlabel("squared reconstruction error")
    else:
        bins = np.linspace(min(v.min() for v in values.values()),
                           max(v.max() for v in values.values()), 60)
        ax.set_xlabel("free energy")
    for kind, v in values.items():
        ax.hist(v, bins=bins, alpha=0.55, label=kind)
    ax.axvline(-np.quantile(s["test digits"], 0.05), color="k", ls="--", lw=1)
    ax.set_title(model_name)
    ax.set_ylabel("images")
axes[0].legend(fontsize=8)
fig.tight_layout()

# %%
# What the autoencoder makes of them
# ----------------------------------
# Each kind of input (top) and its reconstruction (bottom). Noise comes back as a
# digit-like smudge, far from the input: a large error. Many letters, though, come back
# nearly intact: the decoder has learned pen strokes, and a W or a B is drawn with the
# same strokes as digits. That is why the reconstruction error is a weak detector of
# these letters, while the RBM's free energy, which scores how probable the whole image
# is under a model of digits, separated them much better in this run (table above).
examples = {"digits": X_test[:4], **{k: v[:4] for k, v in outliers.items()}}
fig, axes = plt.subplots(2, 16, figsize=(10, 1.6))
for j, images in enumerate(examples.values()):
    recs = ae.inverse_transform(ae.transform(images))
    for i in range(4):
        axes[0, 4 * j + i].imshow(images[i].reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
        axes[1, 4 * j + i].imshow(recs[i].reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
    axes[0, 4 * j].set_title(list(examples)[j], loc="left", fontsize=9)
for ax in axes.ravel():
    ax.axis("off")
plt.show()
