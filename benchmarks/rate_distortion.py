"""Rate-distortion on MNIST: the autoencoder codec against PCA, JPEG, WebP, AVIF, JPEG 2000, PNG.

Bits per pixel against PSNR (peak 1.0, from the mean squared error over all test pixels,
reconstructions clipped to [0, 1] as an image decoder delivers them) on the MNIST test
images:

* the codec (:class:`skdae.codec.Codec`) around an RBMStackAutoencoder and around PCA with
  the same code sizes, in three variants: ``uniform`` (every unit ``n_bits``, deflate: the
  codec of skdae 0.1), ``rd`` (rate-distortion bit allocation from training codes, rANS or
  deflate per archive: the default) and ``rd-qat`` (``rd`` plus quantization-aware
  fine-tuning of a copy of the autoencoder on the first ``qat_rows`` training images), and on
  request ``rd-qat-rate`` (``rd-qat`` with the rate term: one point per rate weight
  ``rate_weight`` and budget, the weight choosing where on its curve a point lands) and
  ``rd-residual`` (a scalable design for high rates: the ``rd`` codec plus PCA of its
  residuals through a second ``rd`` codec, one point per base and residual budget). Each
  point gives the rate of one archive holding all test images (header included) and the
  rate per image (each image compressed alone, its archive's fixed header left out);
* JPEG, WebP, AVIF and JPEG 2000 (a raw codestream with two resolution levels, as 28 x 28
  images allow) from Pillow, one file per image, per file and as payload: file bits minus
  the bits of a blank 28 x 28 image at the same setting (the container);
* PNG (lossless, ``optimize=True``), per file and as payload.

The autoencoders are trained with ``--recipe`` (``benchmarks/_common.py``'s ``RECIPES``,
shared with ``reproduce.py``): ``hs``, the default, is the estimator's defaults with 10
RBM epochs per layer and 30 fine-tuning epochs; ``axis_shifts`` adds the cosine
learning-rate schedule and one-pixel axis shifts of the images, with its epochs for
60,000 images (15 RBM epochs per layer, 80 fine-tuning epochs).
Trained autoencoders are cached (as skdae model files) under ``--cache-dir``, keyed by
their settings (the recipe too, when it is not ``hs``); a rerun only evaluates, so training can run (niced) apart from the timed
evaluation. ``--sections`` runs part of the benchmark and ``--merge`` adds its series to
an existing JSON, so long runs can be split. ``--quick`` (small models, few epochs, 5,000
training and 1,000 test images) writes to the cache folder, never over the committed
results.

Usage::

    python benchmarks/rate_distortion.py          # benchmarks/results/rate_distortion.{json,png}
    python benchmarks/rate_distortion.py --quick  # in the cache folder
    python benchmarks/rate_distortion.py --recipe axis_shifts --train-only  # stronger networks
"""

import argparse
import hashlib
import io
import json
import os
import struct
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import RECIPES, log, recipe_params  # noqa: E402

RESULTS = HERE / "results"
DEFAULT_CACHE = Path(os.environ.get("SKDAE_CACHE_DIR", "~/.cache/skdae")).expanduser()

FULL = {
    "n_train": 60_000,
    "n_test": 10_000,
    "code_sizes": (30, 64, 196),
    # Hinton & Salakhutdinov's 784-1000-500-250-30 encoder for the small codes; the
    # three-RBM 784-1000-500-196 of "Image Compression Using Deep Autoencoder" for 196.
    # 48 (--code-sizes 48, not run by default) sits where 0.25 bpp is about 4 coded bits
    # per unit, between 30 (near its float PSNR there) and 64 (3 bits per unit).
    "hidden": {30: (1000, 500, 250, 30), 48: (1000, 500, 250, 48), 64: (1000, 500, 250, 64),
               196: (1000, 500, 196)},
    "pretrain_epochs": 10,
    "max_iter": 30,
    "n_bits": (1, 2, 3, 4, 5, 6, 8, 10),
    # Average coded bits per code unit of the rate-distortion allocation.
    "budgets": (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0),
    # 0.75 and 1.5 sample the low-rate end more densely, where the envelopes of the
    # autoencoder and PCA cross (PCA's rd budgets include both already).
    "qat_budgets": (0.2, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0),
    # 4 epochs on every training image, at the codec's default step (a tenth of the
    # model's learning_rate): chosen on held-out training images
    # (benchmarks/results/codec_qat_learning_rate.json: with the rate term the gain over
    # the codec without fine-tuning at the same rate was still growing by 0.05-0.1 dB
    # an epoch at 4, at about 14 s an epoch for 60,000 images on one core).
    "qat_epochs": 4,
    "qat_rows": 60_000,
    # rd-qat-rate: rd-qat with the rate term, a point per (budget, rate weight). The
    # weight is the slope of the rate-distortion curve the phase trades along (squared
    # error per coded bit, in the codec's units), so it picks the operating point: a
    # sweep of weights at one budget traces the curve, as in learned image compression,
    # where a sweep of budgets at one weight lands near one rate (AE-196 at 0.05: 0.25-0.30
    # bpp for budgets 1-4). On held-out training images of AE-64
    # (benchmarks/results/codec_rate_sweep_3.5bits.json and _4bits.json), weights
    # 0.01-0.03 at 3.5 bits per unit landed at 0.20-0.26 bpp, 0.4-0.9 dB above the codec
    # without fine-tuning, the gain still growing after 10 epochs; a budget of 4 was
    # 0.1-0.2 dB lower than 3.5. At 0.015 (codec_rate_sweep_long.json), 30 epochs gained
    # 0.87 dB at the codec's default step (a tenth of the model's 1e-3) and 1.11 dB at
    # 3e-4, still growing, where 10 epochs had gained 0.6.
    "rate_weights": (0.005, 0.0075, 0.01, 0.015, 0.02, 0.05),
    "rate_budgets": (3.5,),
    "rate_epochs": 30,
    "rate_learning_rate": 3e-4,
    # rd-qat-rate's fine_tune_loss: "model" (cross-entropy for these Bernoulli-input
    # networks) or "squared_error", the error PSNR counts (--rate-loss).
    "rate_loss": "model",
    # rd-residual (a scalable design for the high rates of AVIF's lowest point): the rd
    # codec at each base budget, plus PCA of its residuals through an rd codec at each
    # residual budget (average coded bits over all 784 residual components: 0.1 is about
    # 0.1 bpp). Chosen before any result, to span 0.3-1 bpp with the code 196 network.
    "residual_base_budgets": (1.0, 1.5, 2.0, 2.5, 3.0),
    "residual_budgets": (0.05, 0.1, 0.15, 0.2, 0.3),
    "jpeg_qualities": (1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
    # q1-q4 fill the gap between q0 (0.41 bpp) and q5 (0.77 bpp), where a target compares.
    "webp_qualities": (0, 1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100),
    # AVIF encodes take about 10 ms per 28 x 28 image, ten times the others: seven
    # settings (its lowest rate, q0, is the one the targets use).
    "avif_qualities": (0, 5, 10, 20, 40, 60, 90),
    # JPEG 2000 in Pillow's "dB" mode: target PSNRs of the single quality layer.
    "jp2_qualities": (18, 20, 22, 24, 26, 28, 30, 32, 35, 38, 42, 46),
}
QUICK = {
    "n_train": 5_000,
    "n_test": 1_000,
    "code_sizes": (30, 64, 196),
    "hidden": {30: (256, 30), 48: (256, 48), 64: (256, 64), 196: (256, 196)},
    "pretrain_epochs": 1,
    "max_iter": 3,
    "n_bits": (2, 4, 6, 8),
    "budgets": (0.1, 0.5, 1.0, 2.0, 4.0),
    "qat_budgets": (0.5, 2.0),
    "qat_epochs": 1,
    "qat_rows": 2_000,
    "rate_weights": (0.05,),
    "rate_budgets": (2.0,),
    "rate_epochs": 1,
    "rate_learning_rate": None,
    "rate_loss": "model",
    "residual_base_budgets": (1.0,),
    "residual_budgets": (0.1, 0.3),
    "jpeg_qualities": (5, 20, 50, 90),
    "webp_qualities": (5, 20, 50, 90),
    "avif_qualities": (0, 20, 50),
    "jp2_qualities": (20, 28, 36),
}
SECTIONS = ("autoencoder", "pca", "anchors")
VARIANTS = ("uniform", "rd", "rd-qat", "rd-qat-rate", "rd-residual")
# Variants that fine-tune the model, so autoencoders only.
QAT_VARIANTS = ("rd-qat", "rd-qat-rate")
# Variants of autoencoders only (PCA plus PCA of its residual is more PCA).
AUTOENCODER_VARIANTS = QAT_VARIANTS + ("rd-residual",)
# The config key of each variant's budgets (bit depths for uniform).
BUDGET_KEYS = (("uniform", "n_bits"), ("rd", "budgets"), ("rd-qat", "qat_budgets"),
               ("rd-qat-rate", "rate_budgets"), ("rd-residual", "residual_base_budgets"))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small models and subsets (minutes)")
    parser.add_argument(
        "--data-home", help="folder with the MNIST IDX files (default: $SKDAE_DATA_HOME)"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE / "rate_distortion",
        help="where trained autoencoders are kept (default: %(default)s)",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="where the JSON and PNG go (default: benchmarks/results, or the "
        "cache folder with --quick)",
    )
    parser.add_argument(
        "--code-units",
        choices=("linear", "sigmoid"),
        default="linear",
        help="autoencoder code units (default: linear)",
    )
    parser.add_argument(
        "--variants",
        default="uniform,rd,rd-qat",
        help="comma-separated codec variants: uniform (n_bits each, deflate), rd "
        "(rate-distortion allocation, auto coder), rd-qat (rd with quantization-aware "
        "fine-tuning; autoencoders only), rd-qat-rate (rd-qat with the rate term "
        "weights --rate-weights), rd-residual (rd plus its residual through PCA and an rd "
        "codec; autoencoders only) (default: uniform,rd,rd-qat)",
    )
    parser.add_argument(
        "--sections", default=",".join(SECTIONS),
        help="comma-separated parts to run: autoencoder, pca, anchors (default: all)",
    )
    parser.add_argument(
        "--merge", action="store_true",
        help="add the series to the existing JSON in --out-dir (same names are replaced)",
    )
    parser.add_argument(
        "--code-sizes",
        help="comma-separated code sizes (default 30,64,196; quick too; 48 has layers too)",
    )
    parser.add_argument(
        "--hidden", action="append", metavar="SIZE=L1,L2,...",
        help="encoder layers for one code size, e.g. 30=256,30 (default: H&S sizes)",
    )
    parser.add_argument("--qat-epochs", type=int, help="quantization-aware fine-tuning epochs")
    parser.add_argument("--rate-epochs", type=int,
                        help="epochs of rd-qat-rate's fine-tuning (default 30; quick 1)")
    parser.add_argument("--rate-learning-rate", type=float,
                        help="rd-qat-rate's fine_tune_learning_rate (default 3e-4; quick: the "
                        "codec's default, a tenth of the model's)")
    parser.add_argument("--rate-loss", choices=("model", "squared_error"),
                        help="rd-qat-rate's fine_tune_loss (default model: the network's "
                        "own loss)")
    parser.add_argument("--decorrelate", action="store_true",
                        help="the autoencoders' codecs rotate the codes to their principal "
                        "axes (Codec(decorrelate=True)); PCA's are uncorrelated already")
    parser.add_argument("--label",
                        help="added to the autoencoder series' names, e.g. '200 epochs', "
                        "so that --merge keeps the series of another model of the same size")
    parser.add_argument("--qat-rows", type=int, help="training images used by rd-qat")
    parser.add_argument("--budgets", help="comma-separated rd budgets (coded bits per unit)")
    parser.add_argument("--qat-budgets", help="comma-separated rd-qat budgets")
    parser.add_argument("--rate-budgets", help="comma-separated rd-qat-rate budgets")
    parser.add_argument("--rate-weights",
                        help="comma-separated rate terms of rd-qat-rate (Codec's rate_weight; "
                        "default 0.005,0.01,0.02,0.05)")
    parser.add_argument("--residual-base-budgets",
                        help="comma-separated budgets of rd-residual's codes")
    parser.add_argument("--residual-budgets",
                        help="comma-separated budgets of rd-residual's residual (average "
                        "coded bits over all its PCA components)")
    parser.add_argument("--n-bits", help="comma-separated uniform bit depths")
    parser.add_argument(
        "--untimed", action="store_true",
        help="the run is niced outside the benchmark lock: rates and PSNRs are exact, its "
        "seconds are marked as not measurements",
    )
    parser.add_argument("--n-train", type=int, help="training images (default 60000; quick 5000)")
    parser.add_argument("--n-test", type=int, help="test images (default 10000; quick 1000)")
    parser.add_argument(
        "--recipe", choices=sorted(RECIPES), default="hs",
        help="training recipe of the autoencoders (benchmarks/_common.py RECIPES): hs "
        "(default) is the estimator's defaults with 10 RBM and 30 fine-tuning epochs; "
        "another recipe adds its estimator parameters and its epochs for Hinton & "
        "Salakhutdinov's 60,000 images (axis_shifts: cosine schedule, images shifted by "
        "one pixel along an axis, 15 RBM and 80 fine-tuning epochs)",
    )
    parser.add_argument("--pretrain-epochs", type=int, help="RBM epochs per layer")
    parser.add_argument("--max-iter", type=int, help="fine-tuning epochs")
    parser.add_argument(
        "--no-autoencoder",
        action="store_true",
        help="skip the autoencoders (PCA and Pillow formats only)",
    )
    parser.add_argument(
        "--train-only", action="store_true",
        help="only train (or find cached) the autoencoders of --code-sizes into --cache-dir, "
        "so training can run niced apart from the evaluation",
    )
    parser.add_argument(
        "--replot", action="store_true",
        help="run nothing: recompute the targets, table and plot of the JSON in --out-dir",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = dict(QUICK if args.quick else FULL)
    config["recipe"] = args.recipe
    if not args.quick:
        # The recipe's epochs for the 60,000 training images (--quick keeps its own).
        budget = RECIPES[args.recipe]["hs"]
        config["pretrain_epochs"] = budget.get("pretrain_epochs", config["pretrain_epochs"])
        config["max_iter"] = budget.get("epochs", config["max_iter"])
    for key in ("n_train", "n_test", "pretrain_epochs", "max_iter", "qat_epochs", "qat_rows",
                "rate_epochs", "rate_learning_rate", "rate_loss"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    for key, kind in (("budgets", float), ("qat_budgets", float), ("rate_budgets", float),
                      ("rate_weights", float), ("residual_base_budgets", float),
                      ("residual_budgets", float), ("n_bits", int)):
        if getattr(args, key):
            config[key] = tuple(kind(v) for v in getattr(args, key).split(","))
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown --variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    config["variants"] = tuple(args.variants.split(","))
    config["sections"] = tuple(args.sections.split(","))
    if args.code_sizes:
        config["code_sizes"] = tuple(int(v) for v in args.code_sizes.split(","))
    config["hidden"] = dict(config["hidden"])
    for item in args.hidden or ():
        size, layers = item.split("=")
        config["hidden"][int(size)] = tuple(int(v) for v in layers.split(","))
    config["code_units"] = args.code_units
    config["seed"] = args.seed
    config["decorrelate"] = args.decorrelate
    if args.out_dir is None:
        args.out_dir = args.cache_dir / "quick" if args.quick else RESULTS
    return args, config


# ------------------------------------------------------------------------- models


def _cache_key(config, size):
    import skdae

    settings = {
        "hidden": config["hidden"][size],
        "code_units": config["code_units"],
        "pretrain_epochs": config["pretrain_epochs"],
        "max_iter": config["max_iter"],
        "n_train": config["n_train"],
        "seed": config["seed"],
        "skdae": skdae.__version__,
    }
    if config["recipe"] != "hs":
        # Only other recipes add keys, so the default recipe's cached models keep their names.
        settings["recipe"] = config["recipe"]
        settings["recipe_params"] = RECIPES[config["recipe"]]["params"]
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return f"ae-{'-'.join(map(str, settings['hidden']))}-{digest}.skdae", settings


def autoencoder(config, size, X_train, cache_dir):
    """Train (or load from the cache) the autoencoder with code size ``size``."""
    from skdae import RBMStackAutoencoder
    from skdae._persist import load, save

    name, settings = _cache_key(config, size)
    path = cache_dir / name
    if path.exists():
        log(f"loading cached {path}")
        return load(path), {"cached": True, "train_s": None, "settings": settings}
    model = RBMStackAutoencoder(
        settings["hidden"],
        code_units=config["code_units"],
        pretrain_epochs=config["pretrain_epochs"],
        max_iter=config["max_iter"],
        random_state=config["seed"],
        verbose=1,
        **recipe_params(config["recipe"]),
    )
    log(
        f"training autoencoder 784-{'-'.join(map(str, settings['hidden']))} on "
        f"{len(X_train)} images, recipe {config['recipe']} ({config['pretrain_epochs']} RBM "
        f"epochs per layer, {config['max_iter']} fine-tuning epochs)"
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        model.fit(X_train)
    train_s = time.perf_counter() - start
    cache_dir.mkdir(parents=True, exist_ok=True)
    save(model, path)
    return model, {"cached": False, "train_s": train_s, "settings": settings}


def pca(size, X_train, seed):
    from sklearn.decomposition import PCA

    start = time.perf_counter()
    model = PCA(size, random_state=seed).fit(X_train)
    return model, {"train_s": time.perf_counter() - start}


def codec_series(name, model, X_train, X_test, config, variant):
    """Points of ``model`` through the codec ``variant`` (one per n_bits or budget, and
    per rate weight for ``rd-qat-rate``).

    The codecs of one series are fitted together (:func:`skdae.codec.fit_codecs`): the
    training codes, ranges and allocation tables are computed once for all budgets, and
    each codec is the one ``Codec(model, n_bits=b, ...).fit`` gives.
    """
    from skdae import RBMStackAutoencoder
    from skdae._metrics import psnr
    from skdae.codec import archive_info, fit_codecs

    # Warm-up: the first transform loads (or compiles) the model's kernels.
    start = time.perf_counter()
    model.transform(X_test[:10])
    warmup_s = time.perf_counter() - start
    start = time.perf_counter()
    model.transform(X_test)
    transform_s = time.perf_counter() - start
    n_pixels = X_test.size
    # rd-qat-rate: one codec per budget and rate weight; the others take no weight.
    sweep = variant == "rd-qat-rate"
    weights = config["rate_weights"] if sweep else (None,)
    if variant == "uniform":
        n_bits, params = config["n_bits"], dict(allocation="uniform", coder="zlib")
    elif variant == "rd":
        n_bits, params = config["budgets"], {}
    elif variant == "rd-residual":
        n_bits, params = config["residual_base_budgets"], {}
    elif variant == "rd-qat":
        n_bits, params = config["qat_budgets"], dict(fine_tune_epochs=config["qat_epochs"])
    else:
        n_bits, params = config["rate_budgets"], dict(
            fine_tune_epochs=config["rate_epochs"],
            fine_tune_learning_rate=config["rate_learning_rate"],
            fine_tune_loss=config["rate_loss"])
    # Fine-tuning runs on the first qat_rows training images; ranges, allocation and
    # tables come from the same rows, so every variant is fitted on training data only.
    qat = variant in QAT_VARIANTS
    fit_rows = X_train[: config["qat_rows"]] if qat else X_train
    if config.get("decorrelate") and isinstance(model, RBMStackAutoencoder):
        params["decorrelate"] = True
    start = time.perf_counter()
    codecs = [codec for weight in weights for codec in fit_codecs(
        model, fit_rows, list(n_bits), **params,
        **({} if weight is None else {"rate_weight": weight}))]
    fit_s = time.perf_counter() - start
    log(f"  {name}: {len(codecs)} codecs fitted together on {len(fit_rows)} training images "
        f"in {fit_s:.1f} s")
    points = []
    for codec in codecs:
        data, X_rec, compress_s, decompress_s, per_image = round_trip(codec, X_test)
        info = archive_info(data)
        point = {
            "n_bits": codec.n_bits,
            **{k: v for k, v in params.items() if k != "coder"},
            **({"rate_weight": codec.rate_weight} if sweep else {}),
            "coder": info.coder,
            "bytes": len(data),
            "bpp": info.bits_per_pixel,
            "bpp_per_image_payload": 8 * float(per_image.sum()) / n_pixels,
            "psnr": psnr(X_test, np.clip(X_rec, 0, 1)),
            "psnr_unclipped": psnr(X_test, X_rec),
            "raw_bpp": 8 * info.raw_code_bytes / n_pixels,
            "unit_bits": codec.unit_bits_.tolist(),
            "compress_s": compress_s,
            "codec_own_s": max(compress_s - transform_s, 0.0),
            "decompress_s": decompress_s,
        }
        new = [point] if variant != "rd-residual" else residual_points(
            point, codec, X_rec, data, per_image, fit_rows, X_test, config)
        for p in new:
            log(
                f"  {name} n_bits={codec.n_bits}"
                + (f" rate_weight={codec.rate_weight:g}" if sweep else "")
                + (f" residual_n_bits={p['residual_n_bits']:g}" if "residual_n_bits" in p
                   else "")
                + f": {p['bpp']:.3f} bpp ({p['coder']}; per image "
                f"{p['bpp_per_image_payload']:.3f}), {p['psnr']:.2f} dB, "
                f"compress {p['compress_s']:.2f} s"
            )
        points += new
    return {"warmup_s": warmup_s, "transform_s": transform_s, "fit_s": fit_s,
            "fit_rows": len(fit_rows), "points": points}


def round_trip(codec, X):
    """``(archive, reconstructions, compress s, decompress s, per-image payload bytes)``
    of ``X`` through ``codec``."""
    start = time.perf_counter()
    data = codec.compress(X)
    compress_s = time.perf_counter() - start
    start = time.perf_counter()
    X_rec = codec.decompress(data)
    decompress_s = time.perf_counter() - start
    return data, X_rec, compress_s, decompress_s, codec.payload_bytes(X)


def residual_points(point, codec, X_rec, data, per_image, X_train, X_test, config):
    """Points of ``rd-residual``: ``codec``'s reconstruction (``X_rec`` of ``X_test``,
    from the archive ``data``; ``point`` is its own point) plus PCA of its residual
    through an rd codec, one point per ``residual_budgets``.

    The PCA keeps every component and is fitted on the training residuals through the
    quantized codes (what a decoder adds them to); the rate-distortion allocation gives
    bits to the components worth them. A point's bytes, rates and times are the two
    archives' together, each image's rate its two payloads.
    """
    from sklearn.decomposition import PCA

    from skdae._metrics import psnr
    from skdae.codec import archive_info, fit_codecs

    X_train = np.asarray(X_train, dtype=np.float32)
    base_train = np.clip(codec.decompress(codec.compress(X_train)), 0, 1)
    residual_train = X_train - base_train
    del base_train
    pca = PCA(X_train.shape[1], svd_solver="full").fit(residual_train)
    residual_codecs = fit_codecs(pca, residual_train, list(config["residual_budgets"]))
    del residual_train
    base = np.clip(X_rec, 0, 1)
    residual_test = (X_test - base).astype(np.float32)
    n_pixels = X_test.size
    points = []
    for residual_codec in residual_codecs:
        residual_data, residual_rec, compress_s, decompress_s, residual_per_image = (
            round_trip(residual_codec, residual_test))
        out = base + residual_rec
        info = archive_info(residual_data)
        points.append({
            **point,
            "residual_n_bits": residual_codec.n_bits,
            "residual_coder": info.coder,
            "residual_units_coded": int(np.count_nonzero(residual_codec.unit_bits_)),
            "bytes": len(data) + len(residual_data),
            "bpp": 8 * (len(data) + len(residual_data)) / n_pixels,
            "bpp_per_image_payload": 8 * float(per_image.sum() + residual_per_image.sum())
            / n_pixels,
            "psnr": psnr(X_test, np.clip(out, 0, 1)),
            "psnr_unclipped": psnr(X_test, out),
            "raw_bpp": point["raw_bpp"] + 8 * info.raw_code_bytes / n_pixels,
            "compress_s": point["compress_s"] + compress_s,
            "codec_own_s": point["codec_own_s"] + compress_s,
            "decompress_s": point["decompress_s"] + decompress_s,
        })
    return points


# ------------------------------------------------------------------- Pillow formats


def jpeg_scan_bytes(data):
    """Bytes of entropy-coded scan data in a baseline JPEG (everything else is header)."""
    i = 2  # after SOI
    while i + 4 <= len(data):
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
        if data[i] != 0xFF:
            raise ValueError("bad JPEG marker")
        if marker == 0xDA:  # SOS: scan data follows its header, up to EOI
            end = len(data) - 2 if data.endswith(b"\xff\xd9") else len(data)
            return end - (i + 2 + length)
        i += 2 + length
    raise ValueError("no SOS marker")


def webp_bitstream_bytes(data):
    """Bytes of the VP8 bitstream, without RIFF/chunk headers and the 10-byte frame header."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ValueError("not a WebP file")
    i = 12
    while i + 8 <= len(data):
        tag, size = data[i : i + 4], struct.unpack("<I", data[i + 4 : i + 8])[0]
        if tag == b"VP8 ":
            return size - 10
        if tag == b"VP8L":
            return size - 5  # signature byte and 4 bytes of sizes
        i += 8 + size + (size & 1)
    raise ValueError("no VP8 chunk")


def png_idat_bytes(data):
    """Bytes of IDAT data in a PNG."""
    i, total = 8, 0
    while i + 8 <= len(data):
        size, tag = struct.unpack(">I4s", data[i : i + 8])
        if tag == b"IDAT":
            total += size
        i += 12 + size
    return total


PILLOW = {
    "JPEG": lambda q: {"quality": q},
    "WEBP": lambda q: {"quality": q},
    "AVIF": lambda q: {"quality": q},
    # A raw codestream (no JP2 boxes), irreversible wavelet, two resolution levels: the
    # default five cannot split a 28 x 28 image.
    "JPEG2000": lambda q: {"quality_mode": "dB", "quality_layers": [q], "num_resolutions": 2,
                           "irreversible": True, "no_jp2": True},
}
NAMES = {"JPEG": "JPEG", "WEBP": "WebP", "AVIF": "AVIF", "JPEG2000": "JPEG 2000"}


def _encode(image, fmt, options):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, fmt, **options)
    return buf.getvalue()


def pillow_series(fmt, qualities, images):
    from PIL import Image

    from skdae._metrics import psnr

    n_pixels = images[0].size
    headerless = {"JPEG": jpeg_scan_bytes, "WEBP": webp_bitstream_bytes}.get(fmt)
    blank = np.zeros_like(images[0])
    points = []
    for quality in qualities:
        options = PILLOW[fmt](quality)
        sizes = bare = 0
        decoded = np.empty_like(images)
        start = time.perf_counter()
        for i, image in enumerate(images):
            data = _encode(image, fmt, options)
            sizes += len(data)
            if headerless is not None:
                bare += headerless(data)
            decoded[i] = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
        elapsed = time.perf_counter() - start
        blank_bytes = len(_encode(blank, fmt, options))
        points.append(
            {
                "quality": quality,
                "bpp_file": 8 * sizes / (len(images) * n_pixels),
                "bpp_headerless": (None if headerless is None
                                   else 8 * bare / (len(images) * n_pixels)),
                # File bits less a blank image's at the same setting: the container.
                "bpp_payload": 8 * (sizes - len(images) * blank_bytes) / (len(images) * n_pixels),
                "blank_bytes": blank_bytes,
                # uint8 against uint8 with peak 255: the same PSNR as both scaled to [0, 1].
                "psnr": psnr(images, decoded, data_range=255),
                "seconds": elapsed,
            }
        )
        p = points[-1]
        log(
            f"  {fmt} q={quality:3d}: {p['bpp_file']:.3f} bpp per file, "
            f"{p['bpp_payload']:.3f} payload, {p['psnr']:.2f} dB"
        )
    return {"points": points}


def png_series(images):
    from PIL import Image

    sizes = idat = 0
    for image in images:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, "PNG", optimize=True)
        sizes += len(buf.getvalue())
        idat += png_idat_bytes(buf.getvalue())
    n = len(images) * images[0].size
    blank = len(_encode(np.zeros_like(images[0]), "PNG", {"optimize": True}))
    point = {"bpp_file": 8 * sizes / n, "bpp_headerless": 8 * idat / n,
             "bpp_payload": 8 * (sizes - len(images) * blank) / n, "psnr": None}
    log(f"  PNG: {point['bpp_file']:.3f} bpp per file, {point['bpp_headerless']:.3f} IDAT only")
    return {"points": [point]}


# ----------------------------------------------------------------- targets, output


def envelope(points, rate, key="bpp"):
    """Best PSNR reachable at or below ``rate`` bits per pixel (None if none)."""
    best = [p["psnr"] for p in points if p[key] is not None and p[key] <= rate]
    return max(best) if best else None


def pareto_front(points, key="bpp"):
    """The points of a curve with a better PSNR than every point of lower rate, by rate."""
    front, best = [], -np.inf
    for p in sorted((p for p in points if p[key] is not None), key=lambda p: p[key]):
        if p["psnr"] is not None and p["psnr"] > best:
            front.append(p)
            best = p["psnr"]
    return front


def interpolated(points, rate, key="bpp"):
    """PSNR at ``rate`` on the straight lines joining the Pareto points (best PSNR for
    their rate) of a curve: what settings between two measured ones would about give.
    None below the lowest rate; the best PSNR above the highest."""
    front = pareto_front(points, key)
    if not front or rate < front[0][key]:
        return None
    return float(np.interp(rate, [p[key] for p in front], [p["psnr"] for p in front]))


def _points(series, model=None, name=None):
    return [p for s in series
            if (model is None or (s["kind"] == "codec" and s["model"] == model))
            and (name is None or s["name"] == name) for p in s["points"]]


def _gap(a, b):
    return None if a is None or b is None else a - b


def check_targets(series):
    """The issue's targets, on the envelopes (best PSNR at or below each rate)."""
    ae, pca_points = _points(series, "autoencoder"), _points(series, "pca")
    out = {}
    if ae and pca_points:
        grid = np.geomspace(0.05, 1.0, 40)
        gaps = [(float(r), _gap(envelope(ae, r), envelope(pca_points, r))) for r in grid]
        known = [g for g in gaps if g[1] is not None]
        worst = min(known, key=lambda g: g[1]) if known else (None, None)
        quarter = _gap(envelope(ae, 0.25), envelope(pca_points, 0.25))
        out.update({
            "ae_minus_pca_db_by_bpp": gaps,
            "min_gain_db_0.05_1bpp": worst[1],
            "min_gain_at_bpp": worst[0],
            "autoencoder_above_pca_0.05_1bpp": bool(known) and len(known) == len(gaps)
            and worst[1] > 0,
            "gain_db_at_0.25bpp": quarter,
            "gain_at_0.25bpp_at_least_6db": quarter is not None and quarter >= 6,
        })
    anchors = {s["name"]: s["points"] for s in series if s["kind"] == "pillow"}
    if ae and anchors:
        # Like with like: each image alone, without its container / archive header.
        grid = np.linspace(0.41, 0.75, 18)
        webp = anchors.get("WebP", [])
        webp_gaps = [(float(r), _gap(envelope(ae, r, "bpp_per_image_payload"),
                                     envelope(webp, r, "bpp_payload"))) for r in grid]
        known = [g for g in webp_gaps if g[1] is not None]
        out["ae_minus_webp_payload_db_0.41_0.75bpp"] = webp_gaps
        out["above_webp_payload_0.41_0.75bpp"] = bool(known) and all(g[1] > 0 for g in known)
        # The same against WebP's curve drawn through its points rather than its steps.
        webp_lines = [(float(r), _gap(envelope(ae, r, "bpp_per_image_payload"),
                                      interpolated(webp, r, "bpp_payload"))) for r in grid]
        known = [g for g in webp_lines if g[1] is not None]
        out["ae_minus_webp_payload_interpolated_db_0.41_0.75bpp"] = webp_lines
        out["above_webp_payload_interpolated_0.41_0.75bpp"] = bool(known) and all(
            g[1] > 0 for g in known)
        best = {}
        for r in np.geomspace(0.05, 0.75, 30):
            ae_db = envelope(ae, r, "bpp_per_image_payload")
            rivals = {n: envelope(pts, r, "bpp_payload") for n, pts in anchors.items()}
            rivals["PCA"] = envelope(pca_points, r, "bpp_per_image_payload") if pca_points else None
            top = max((v for v in rivals.values() if v is not None), default=None)
            best[f"{r:.3f}"] = None if ae_db is None else (top is None or ae_db > top)
        out["best_codec_below_0.75bpp_by_rate"] = best
        out["best_codec_below_0.75bpp"] = all(v for v in best.values() if v is not None) and any(
            v is not None for v in best.values())
        avif = anchors.get("AVIF", [])
        if avif:
            # The moonshot: AVIF's lowest point (payload), against the autoencoder per image.
            low = min(avif, key=lambda p: p["bpp_payload"])
            rate, target = low["bpp_payload"], low["psnr"]
            reach = [p["bpp_per_image_payload"] for p in ae if p["psnr"] >= target]
            out["avif_moonshot"] = {
                "avif_bpp_payload": rate, "avif_psnr": target,
                "ae_psnr_at_that_rate": envelope(ae, rate, "bpp_per_image_payload"),
                "ae_minus_avif_db": _gap(envelope(ae, rate, "bpp_per_image_payload"), target),
                "ae_bpp_per_image_for_that_psnr": min(reach) if reach else None,
                "ae_best_psnr": max(p["psnr"] for p in ae),
            }
    return out


def print_table(series):
    """One row per point: bits per pixel of the archive or per file, per image without
    header (codec) or payload (anchors: file bits less a blank image's), and PSNR."""
    print(f"{'series':<26} {'setting':>17} {'bpp':>7} {'payload':>8} {'coder':>6} {'PSNR dB':>8}")
    for s in series:
        for p in s["points"]:
            coder = ""
            if s["kind"] == "codec":
                setting, bpp = f"{p['n_bits']:g} bits", p["bpp"]
                if p.get("rate_weight"):
                    setting += f" rw {p['rate_weight']:g}"
                if p.get("residual_n_bits"):
                    setting += f" + {p['residual_n_bits']:g}"
                bare, coder = f"{p['bpp_per_image_payload']:.3f}", p["coder"]
            else:
                setting = "lossless" if s["kind"] == "lossless" else f"q={p['quality']}"
                bpp, bare = p["bpp_file"], f"{p['bpp_payload']:.3f}"
            db = "inf" if p["psnr"] is None else f"{p['psnr']:.2f}"
            print(f"{s['name']:<26} {setting:>17} {bpp:>7.3f} {bare:>8} {coder:>6} {db:>8}")


def plot(series, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(15, 6), sharey=True)
    colors = {30: "C0", 48: "C8", 64: "C1", 196: "C2"}
    styles = {"uniform": ":", "rd": "-", "rd-qat": "-", "rd-qat-rate": "-.", "rd-residual": "--"}
    anchor_colors = {"JPEG": "C3", "WebP": "C5", "AVIF": "C6", "JPEG 2000": "C7"}
    for ax, (key, anchor_key, label) in zip(axes, [
            ("bpp", "bpp_file", "one archive of all images / one file per image"),
            ("bpp_per_image_payload", "bpp_payload", "each image alone, without headers")]):
        for s in series:
            pts = s["points"]
            if s["kind"] == "codec":
                # A rate-weight sweep's points come per weight, not in order of rate;
                # rd-residual's grid of two budgets is drawn as its best points.
                pts = (pareto_front(pts, key) if s["variant"] == "rd-residual"
                       else sorted(pts, key=lambda p: p[key]))
                marker = "o" if s["model"] == "autoencoder" else "s"
                ax.plot([p[key] for p in pts], [p["psnr"] for p in pts],
                        styles.get(s["variant"], "-") + marker,
                        color=colors.get(s["code_size"], "C4"),
                        ms=3 if s["variant"] not in QAT_VARIANTS else 6,
                        mfc="none" if s["model"] == "pca" else None,
                        lw=1 if s["model"] == "pca" else 1.8, label=s["name"])
            elif s["kind"] == "pillow":
                ax.plot([p[anchor_key] for p in pts], [p["psnr"] for p in pts], "--",
                        color=anchor_colors.get(s["name"], "k"), label=s["name"])
            else:
                ax.axvline(pts[0][anchor_key], color="k", lw=1, ls="-.",
                           label=f"PNG lossless, {pts[0][anchor_key]:.2f} bpp")
        ax.set_xscale("log")
        ax.set_xlim(0.03, 8)
        ax.set_xlabel(f"bits per pixel ({label})")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("PSNR (dB, peak 1.0)")
    fig.suptitle(title)
    fig.tight_layout()
    # Beside the plots: inside, the many series' legend hides the curves.
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def replot(out_dir):
    """Targets, table and plot again from the JSON in ``out_dir`` (nothing is run)."""
    json_path = out_dir / "rate_distortion.json"
    report = json.loads(json_path.read_text())
    report["targets"] = check_targets(report["series"])
    json_path.write_text(json.dumps(report, indent=1, default=float) + "\n")
    title = f"MNIST test ({report['config']['n_test']} images): rate vs distortion"
    plot(report["series"], out_dir / "rate_distortion.png", title)
    print_table(report["series"])
    print()
    for key, value in report["targets"].items():
        print(f"{key}: {value}")
    return 0


def main(argv=None):
    args, config = parse_args(argv)
    if args.replot:
        return replot(args.out_dir)
    from _common import machine, use_local_mnist

    from skdae.datasets import load_mnist

    use_local_mnist()

    train = load_mnist("train", data_home=args.data_home, n_samples=config["n_train"])
    test = load_mnist(
        "test", data_home=args.data_home, n_samples=config["n_test"], dtype=np.uint8, scale=False
    )
    X_train = train.data
    if args.train_only:
        for size in config["code_sizes"]:
            _, meta = autoencoder(config, size, X_train, args.cache_dir)
            log(f"code {size}: {meta}")
        return 0
    images = test.images
    X_test = test.data.astype(np.float32) / np.float32(255)
    started = time.perf_counter()
    series = []
    sections = config["sections"]
    for size in config["code_sizes"]:
        models = []
        if "autoencoder" in sections and not args.no_autoencoder:
            models.append(("autoencoder", *autoencoder(config, size, X_train, args.cache_dir)))
        if "pca" in sections:
            models.append(("pca", *pca(size, X_train, config["seed"])))
        for kind, model, meta in models:
            for variant in config["variants"]:
                if variant in AUTOENCODER_VARIANTS and kind != "autoencoder":
                    continue
                name = f"{'AE' if kind == 'autoencoder' else 'PCA'}-{size} {variant}"
                if args.label and kind == "autoencoder":
                    name += f" ({args.label})"
                log(name)
                result = codec_series(name, model, X_train, X_test, config, variant)
                series.append({"name": name, "kind": "codec", "model": kind, "code_size": size,
                               "variant": variant, **meta, **result})
    if "anchors" in sections:
        from PIL import features

        for fmt in ("JPEG", "WEBP", "AVIF", "JPEG2000"):
            feature = {"JPEG": "jpg", "WEBP": "webp", "AVIF": "avif", "JPEG2000": "jpg_2000"}[fmt]
            if not features.check(feature):
                log(f"{fmt}: not in this Pillow, skipped")
                continue
            log(fmt)
            key = {"JPEG": "jpeg", "WEBP": "webp", "AVIF": "avif", "JPEG2000": "jp2"}[fmt]
            series.append({"name": NAMES[fmt], "kind": "pillow",
                           **pillow_series(fmt, config[f"{key}_qualities"], images)})
        log("PNG")
        series.append({"name": "PNG", "kind": "lossless", **png_series(images)})
    elapsed = time.perf_counter() - started
    json_path = args.out_dir / "rate_distortion.json"
    runs, notes = [], None
    if args.merge and json_path.exists():
        previous = json.loads(json_path.read_text())
        # Notes are written by hand about the series: a merge keeps them.
        notes = previous.get("notes")
        names = {s["name"] for s in series}
        series = [s for s in previous["series"] if s["name"] not in names] + series
        runs = previous.get("runs", [])

    import PIL

    import skdae

    targets = check_targets(series)
    defaults = QUICK if args.quick else FULL
    budgets = {variant: list(config[key]) for variant, key in BUDGET_KEYS
               if variant in config["variants"]}
    runs.append({
        "command": "python benchmarks/rate_distortion.py " + " ".join(sys.argv[1:]
                                                                     if argv is None else argv),
        "sections": list(sections),
        "recipe": config["recipe"],
        **({"decorrelate": True} if config["decorrelate"] else {}),
        **({"label": args.label} if args.label else {}),
        "budgets": budgets,
        **({"rate_weights": list(config["rate_weights"]), "rate_epochs": config["rate_epochs"],
            "rate_learning_rate": config["rate_learning_rate"],
            "rate_loss": config["rate_loss"]}
           if "rd-qat-rate" in budgets else {}),
        **({"residual_budgets": list(config["residual_budgets"])}
           if "rd-residual" in budgets else {}),
        **({"budgets_note": "budgets given on the command line: a codec runs at any "
            "budget, and these sample the envelopes more densely (chosen from the rates "
            "of an earlier run, never fitted on the test images)"}
           if any(budgets[v] != list(defaults[key]) for v, key in BUDGET_KEYS
                  if v in budgets) else {}),
        "timed": not args.untimed,
        **({"timings_note": "niced run outside the benchmark lock on a loaded shared "
            "machine: rates and PSNRs are exact; every seconds field (train_s, fit_s, "
            "compress_s, codec_own_s, decompress_s, transform_s, warmup_s, anchors' "
            "seconds) is not a measurement of speed"} if args.untimed else {}),
        "seconds": elapsed,
        "loadavg": list(os.getloadavg()),
    })
    report = {
        "description": "bits per pixel vs PSNR (peak 1.0, clipped reconstructions) on "
        "the MNIST test images; codec rates are one archive of all images, header "
        "included (bpp), and each image compressed alone without the archive header "
        "(bpp_per_image_payload); anchors per file (bpp_file) and as payload (file bits "
        "less a blank image's at the same setting)",
        "runs": runs,
        **({"notes": notes} if notes is not None else {}),
        "config": {
            k: (v if not isinstance(v, dict) else {str(a): b for a, b in v.items()})
            for k, v in config.items()
        },
        "versions": {"skdae": skdae.__version__, "pillow": PIL.__version__},
        "machine": machine(),
        "series": series,
        "targets": targets,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    png_path = args.out_dir / "rate_distortion.png"
    json_path.write_text(json.dumps(report, indent=1, default=float) + "\n")
    title = f"MNIST test ({config['n_test']} images): rate vs distortion" + (
        " [quick]" if args.quick else ""
    )
    plot(series, png_path, title)
    print_table(series)
    print()
    for key, value in targets.items():
        print(f"{key}: {value}")
    print(f"\nwrote {json_path} and {png_path} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
