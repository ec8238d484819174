"""
=========================================================
Rate and distortion: the codec against PCA, JPEG and WebP
=========================================================

A code of 30 float32 numbers takes as many bytes as 30 pixels of float32 image: the
paper's "compression" counts dimensions, not bytes. :class:`skdae.codec.Codec` makes
real bytes: it quantizes each code unit over the range it takes on training codes,
with bits allocated per unit from the training codes, and entropy-codes the levels
(rANS under learned per-unit tables, or deflate). The same codec wraps PCA, so the two
models are compared through exactly the same bytes; JPEG and WebP (through Pillow) are
the everyday baselines. Rate is in bits per pixel (bpp) of the 1,000 test digits,
distortion in PSNR (dB, higher is better).
"""

# %%
import io
import tempfile
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image, features
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning

import skdae
from skdae import RBMStackAutoencoder
from skdae.codec import Codec, archive_info
from skdae.datasets import load_mnist

X_train = load_mnist("train", n_samples=5000).data
X_test = load_mnist("test", n_samples=1000).data


def psnr(X, X_rec):
    """PSNR in dB of reconstructions clipped to the valid pixel range [0, 1]."""
    mse = np.mean((np.clip(X_rec, 0, 1) - X) ** 2)
    return 10 * np.log10(1.0 / mse)


# %%
# Two models with a 30-number code
# --------------------------------
ae = RBMStackAutoencoder(
    hidden_layer_sizes=(400, 200, 30), pretrain_epochs=5, max_iter=20,
    learning_rate=3e-3, random_state=0,
)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)  # a fixed epoch budget
    ae.fit(X_train)
pca = PCA(n_components=30, random_state=0).fit(X_train)

# %%
# The codec from 0.25 to 4 coded bits per code unit
# -------------------------------------------------
# ``fit`` learns the code ranges, the bits of each unit and the frequency tables (the
# model is already fitted). All 1,000 test digits go into one archive; its header
# (52 bytes) is included in the rate.
curves = {"autoencoder": [], "PCA": []}
print(f"{'model':<12} {'bits':>4} {'bytes':>7} {'bpp':>6} {'PSNR dB':>8}")
for name, model in (("autoencoder", ae), ("PCA", pca)):
    for n_bits in (0.25, 0.5, 1, 2, 3, 4):
        codec = Codec(model, n_bits=n_bits).fit(X_train)
        archive = codec.compress(X_test)
        rate = codec.bits_per_pixel(archive)
        quality = psnr(X_test, codec.decompress(archive))
        curves[name].append((rate, quality))
        print(f"{name:<12} {n_bits:>4g} {len(archive):>7} {rate:>6.3f} {quality:>8.2f}")

# %%
# JPEG and WebP, one file per digit
# ---------------------------------
# Each digit is saved as an 8-bit greyscale file; the rate is the mean file size, header
# included (a 28x28 JPEG spends most of its bytes on headers).
pixels = np.round(X_test * 255).astype(np.uint8).reshape(-1, 28, 28)
formats = {"JPEG": "JPEG"}
if features.check("webp"):
    formats["WebP"] = "WEBP"
for label, fmt in formats.items():
    curves[label] = []
    for quality in (5, 20, 50, 80, 95):
        sizes, decoded = [], []
        for image in pixels:
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, format=fmt, quality=quality)
            sizes.append(buf.tell())
            decoded.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L")))
        rate = 8 * np.mean(sizes) / 784
        quality_db = psnr(X_test, np.array(decoded, np.float32).reshape(-1, 784) / 255)
        curves[label].append((rate, quality_db))
        print(f"{label:<5} quality {quality:>2}: {rate:.3f} bpp, {quality_db:.2f} dB")

# %%
# The curves
# ----------
# Up and to the left is better. At the same rate, the autoencoder's codes give a higher
# PSNR than PCA's through the same codec. Both code-based codecs work at rates far below
# what a per-image JPEG or WebP file can reach, but their quality levels off where the
# quantization error falls below the model's own reconstruction error: beyond that, more
# bits buy nothing, and only a larger code (or a better model) does. WebP's smallest
# files, ten times larger, are also much better. The full-size comparison, with
# 60,000 training images and codes of 30, 64 and 196 units, is in :ref:`compression`.
fig, ax = plt.subplots(figsize=(6.5, 4))
styles = {"autoencoder": "o-", "PCA": "s-", "JPEG": "^--", "WebP": "v--"}
for label, points in curves.items():
    rates, qualities = zip(*points)
    ax.plot(rates, qualities, styles[label], label=label)
ax.set_xscale("log")
ax.set_xlabel("bits per pixel")
ax.set_ylabel("PSNR (dB)")
ax.set_title("1,000 MNIST test digits")
ax.grid(alpha=0.3, which="both")
ax.legend()
fig.tight_layout()
plt.show()

# %%
# The model file and the archive
# ------------------------------
# A codec is saved with :func:`skdae.save`: a zip of ``.npy`` arrays and a JSON header,
# loaded without unpickling anything. The loaded codec decodes the archive to exactly
# the same values. The archive's header carries a fingerprint of the codec, so an
# archive is never decoded with another model.
codec = Codec(ae, n_bits=2).fit(X_train)
archive = codec.compress(X_test.reshape(-1, 28, 28))
with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "mnist30.skdae"
    skdae.save(codec, path)
    print(f"model file: {path.stat().st_size / 1e6:.2f} MB")
    loaded = skdae.load(path)
decoded = loaded.decompress(archive)
print("decoded shape:", decoded.shape,
      "| identical to the original codec's:", np.array_equal(decoded, codec.decompress(archive)))
info = archive_info(archive)
print(f"archive: {info.count} samples of shape {info.shape}, {info.n_units} units, "
      f"{info.sample_bits} bits each before {info.coder}, {info.total_bytes} bytes ({info.header_bytes} of header), "
      f"{info.bits_per_pixel:.3f} bpp, fingerprint {info.fingerprint[:12]}...")
