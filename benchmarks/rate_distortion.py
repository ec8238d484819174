"""Rate-distortion on MNIST: the autoencoder codec against PCA, JPEG, WebP and PNG.

Bits per pixel against PSNR (peak 1.0, from the mean squared error over all test pixels,
reconstructions clipped to [0, 1] as an image decoder delivers them) on the 10,000 MNIST
test images:

* the autoencoder codec (:class:`skdae.codec.Codec` around an RBMStackAutoencoder) with
  code sizes 30, 64 and 196 and several ``n_bits``: one archive holding all test images,
  its header included;
* PCA with the same code sizes through the same codec, so the comparison is between
  models, not coders;
* JPEG and WebP from Pillow over their quality range, one file per image, reported both
  per file and without container headers (a blank 28 x 28 JPEG is already 344 bytes);
* PNG (lossless, ``optimize=True``), per file and IDAT data only.

Trained autoencoders are cached (as skdae model files) under ``--cache-dir``, keyed by
their settings; a rerun only evaluates. The full run trains three deep autoencoders on
60,000 images: run it on a quiet machine. ``--quick`` (small models, few epochs, 5,000
training and 1,000 test images) takes a couple of minutes and writes to the cache folder,
so it never overwrites the committed results.

Usage::

    python benchmarks/rate_distortion.py          # benchmarks/results/rate_distortion.{json,png}
    python benchmarks/rate_distortion.py --quick  # in the cache folder
"""

import argparse
import copy
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
RESULTS = HERE / "results"
DEFAULT_CACHE = Path(os.environ.get("SKDAE_CACHE_DIR", "~/.cache/skdae")).expanduser()

FULL = {
    "n_train": 60_000,
    "n_test": 10_000,
    "code_sizes": (30, 64, 196),
    # Hinton & Salakhutdinov's 784-1000-500-250-30 encoder for the small codes; the
    # three-RBM 784-1000-500-196 of "Image Compression Using Deep Autoencoder" for 196.
    "hidden": {30: (1000, 500, 250, 30), 64: (1000, 500, 250, 64), 196: (1000, 500, 196)},
    "pretrain_epochs": 10,
    "max_iter": 30,
    "n_bits": (1, 2, 3, 4, 5, 6, 8, 10),
    "jpeg_qualities": (1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
    "webp_qualities": (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100),
}
QUICK = {
    "n_train": 5_000,
    "n_test": 1_000,
    "code_sizes": (30, 64, 196),
    "hidden": {30: (256, 30), 64: (256, 64), 196: (256, 196)},
    "pretrain_epochs": 1,
    "max_iter": 3,
    "n_bits": (2, 4, 6, 8),
    "jpeg_qualities": (5, 20, 50, 90),
    "webp_qualities": (5, 20, 50, 90),
}


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
        "--coders", default="zlib", help="comma-separated codec coders to evaluate (default: zlib)"
    )
    parser.add_argument("--n-train", type=int, help="training images (default 60000; quick 5000)")
    parser.add_argument("--n-test", type=int, help="test images (default 10000; quick 1000)")
    parser.add_argument("--pretrain-epochs", type=int, help="RBM epochs per layer")
    parser.add_argument("--max-iter", type=int, help="fine-tuning epochs")
    parser.add_argument(
        "--no-autoencoder",
        action="store_true",
        help="skip the autoencoders (PCA and Pillow formats only)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = dict(QUICK if args.quick else FULL)
    for key in ("n_train", "n_test", "pretrain_epochs", "max_iter"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    config["coders"] = tuple(args.coders.split(","))
    config["code_units"] = args.code_units
    config["seed"] = args.seed
    if args.out_dir is None:
        args.out_dir = args.cache_dir / "quick" if args.quick else RESULTS
    return args, config


def log(message):
    print(message, file=sys.stderr, flush=True)


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
    )
    log(
        f"training autoencoder 784-{'-'.join(map(str, settings['hidden']))} on "
        f"{len(X_train)} images"
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


def entropy_bound_bits(levels_train, levels_test, n_bits):
    """Bits a static per-unit frequency table (learned on training codes) would need.

    The cross-entropy of the test levels under each unit's smoothed training histogram of
    its top 8 bits, plus the remaining low bits raw: what a table-driven range or ANS
    coder could reach, to compare with the codec's deflate.
    """
    shift = max(n_bits - 8, 0)
    n_symbols = 1 << (n_bits - shift)
    total = float(shift * levels_test.size)
    for unit in range(levels_train.shape[1]):
        counts = np.bincount(levels_train[:, unit] >> shift, minlength=n_symbols) + 0.5
        log_p = np.log2(counts / counts.sum())
        total -= log_p[levels_test[:, unit] >> shift].sum()
    return total


def codec_series(name, model, X_train, X_test, config, coder):
    """Points (one per n_bits) of ``model`` through the codec."""
    from skdae._metrics import psnr
    from skdae.codec import Codec, archive_info

    # Warm-up: the first transform loads (or compiles) the model's kernels.
    start = time.perf_counter()
    model.transform(X_test[:10])
    warmup_s = time.perf_counter() - start
    start = time.perf_counter()
    codes_test = model.transform(X_test)
    transform_s = time.perf_counter() - start
    # The ranges do not depend on n_bits: learn them once.
    base = Codec(model, coder=coder).fit(X_train)
    codes_train = model.transform(X_train)
    n_pixels = X_test.size
    points = []
    for n_bits in config["n_bits"]:
        codec = copy.copy(base).set_params(n_bits=n_bits)
        start = time.perf_counter()
        data = codec.compress(X_test)
        compress_s = time.perf_counter() - start
        start = time.perf_counter()
        X_rec = codec.decompress(data)
        decompress_s = time.perf_counter() - start
        info = archive_info(data)
        bound = entropy_bound_bits(codec.quantize(codes_train), codec.quantize(codes_test), n_bits)
        points.append(
            {
                "n_bits": n_bits,
                "bytes": len(data),
                "bpp": info.bits_per_pixel,
                "psnr": psnr(X_test, np.clip(X_rec, 0, 1)),
                "psnr_unclipped": psnr(X_test, X_rec),
                "raw_bpp": 8 * info.raw_code_bytes / n_pixels,
                "entropy_bound_bpp": bound / n_pixels,
                "compress_s": compress_s,
                "codec_own_s": max(compress_s - transform_s, 0.0),
                "decompress_s": decompress_s,
            }
        )
        p = points[-1]
        log(
            f"  {name} n_bits={n_bits:2d}: {p['bpp']:.3f} bpp (static-table bound "
            f"{p['entropy_bound_bpp']:.3f}), {p['psnr']:.2f} dB, compress {compress_s:.2f} s "
            f"(codec's own {p['codec_own_s']:.2f} s)"
        )
    return {"warmup_s": warmup_s, "transform_s": transform_s, "points": points}


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


def pillow_series(fmt, qualities, images):
    from PIL import Image

    from skdae._metrics import psnr

    n_pixels = images[0].size
    headerless = {"JPEG": jpeg_scan_bytes, "WEBP": webp_bitstream_bytes}[fmt]
    points = []
    for quality in qualities:
        sizes = bare = 0
        decoded = np.empty_like(images)
        start = time.perf_counter()
        for i, image in enumerate(images):
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, fmt, quality=quality)
            data = buf.getvalue()
            sizes += len(data)
            bare += headerless(data)
            decoded[i] = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
        elapsed = time.perf_counter() - start
        points.append(
            {
                "quality": quality,
                "bpp_file": 8 * sizes / (len(images) * n_pixels),
                "bpp_headerless": 8 * bare / (len(images) * n_pixels),
                # uint8 against uint8 with peak 255: the same PSNR as both scaled to [0, 1].
                "psnr": psnr(images, decoded, data_range=255),
                "seconds": elapsed,
            }
        )
        p = points[-1]
        log(
            f"  {fmt} q={quality:3d}: {p['bpp_file']:.3f} bpp per file, "
            f"{p['bpp_headerless']:.3f} without headers, {p['psnr']:.2f} dB"
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
    point = {"bpp_file": 8 * sizes / n, "bpp_headerless": 8 * idat / n, "psnr": None}
    log(f"  PNG: {point['bpp_file']:.3f} bpp per file, {point['bpp_headerless']:.3f} IDAT only")
    return {"points": [point]}


# ----------------------------------------------------------------- targets, output


def envelope(points, rate):
    """Best PSNR reachable at or below ``rate`` bits per pixel (None if none)."""
    best = [p["psnr"] for p in points if p["bpp"] <= rate]
    return max(best) if best else None


def check_targets(series):
    ae = [
        p
        for s in series
        if s["kind"] == "codec" and s["model"] == "autoencoder"
        for p in s["points"]
    ]
    pca_points = [
        p for s in series if s["kind"] == "codec" and s["model"] == "pca" for p in s["points"]
    ]
    if not ae or not pca_points:
        return {}
    low = max(min(p["bpp"] for p in ae), min(p["bpp"] for p in pca_points))
    grid = [r for r in np.geomspace(low, 1.0, 60)] if low < 1 else []
    gaps = [(r, envelope(ae, r) - envelope(pca_points, r)) for r in grid]
    at_quarter = (
        envelope(ae, 0.25) - envelope(pca_points, 0.25)
        if envelope(ae, 0.25) is not None and envelope(pca_points, 0.25) is not None
        else None
    )
    worst = min(gaps, key=lambda g: g[1]) if gaps else (None, None)
    return {
        "rates_compared": [low, 1.0] if grid else None,
        "min_gain_db_below_1bpp": worst[1],
        "min_gain_at_bpp": worst[0],
        "autoencoder_above_pca_below_1bpp": bool(gaps) and worst[1] > 0,
        "gain_db_at_0.25bpp": at_quarter,
        "gain_at_0.25bpp_at_least_5db": at_quarter is not None and at_quarter >= 5,
        "max_codec_own_compress_s": max(p["codec_own_s"] for p in ae + pca_points),
    }


def print_table(series):
    """One row per point: bits per pixel per file (or per archive), without headers (Pillow
    formats) or the static-table entropy bound (codec), and PSNR."""
    print(f"{'series':<22} {'setting':>9} {'bpp':>7} {'bare':>7} {'bound':>7} {'PSNR dB':>8}")
    for s in series:
        for p in s["points"]:
            bare = bound = ""
            if s["kind"] == "codec":
                setting, bpp, bound = f"{p['n_bits']} bits", p["bpp"], p["entropy_bound_bpp"]
                bound = f"{bound:.3f}"
            else:
                setting = "lossless" if s["kind"] == "lossless" else f"q={p['quality']}"
                bpp, bare = p["bpp_file"], f"{p['bpp_headerless']:.3f}"
            db = "inf" if p["psnr"] is None else f"{p['psnr']:.2f}"
            print(f"{s['name']:<22} {setting:>9} {bpp:>7.3f} {bare:>7} {bound:>7} {db:>8}")


def plot(series, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6))
    colors = {30: "C0", 64: "C1", 196: "C2"}
    for s in series:
        pts = s["points"]
        if s["kind"] == "codec":
            style = "-o" if s["model"] == "autoencoder" else "--s"
            ax.plot(
                [p["bpp"] for p in pts],
                [p["psnr"] for p in pts],
                style,
                color=colors.get(s["code_size"], "C4"),
                ms=4,
                label=s["name"],
            )
        elif s["kind"] == "pillow":
            color = "C3" if s["name"].startswith("JPEG") else "C5"
            ax.plot(
                [p["bpp_file"] for p in pts],
                [p["psnr"] for p in pts],
                "-",
                color=color,
                label=f"{s['name']} per file",
            )
            ax.plot(
                [p["bpp_headerless"] for p in pts],
                [p["psnr"] for p in pts],
                ":",
                color=color,
                label=f"{s['name']} without headers",
            )
        else:
            ax.axvline(
                pts[0]["bpp_file"],
                color="k",
                lw=1,
                ls="-.",
                label=f"PNG lossless, {pts[0]['bpp_file']:.2f} bpp per file",
            )
    ax.set_xscale("log")
    ax.set_xlabel("bits per pixel")
    ax.set_ylabel("PSNR (dB, peak 1.0)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    args, config = parse_args(argv)
    from _common import machine, use_local_mnist

    from skdae.datasets import load_mnist

    use_local_mnist()

    train = load_mnist("train", data_home=args.data_home, n_samples=config["n_train"])
    test = load_mnist(
        "test", data_home=args.data_home, n_samples=config["n_test"], dtype=np.uint8, scale=False
    )
    X_train = train.data
    images = test.images
    X_test = test.data.astype(np.float32) / np.float32(255)
    started = time.perf_counter()
    series = []
    for size in config["code_sizes"]:
        models = []
        if not args.no_autoencoder:
            models.append(("autoencoder", *autoencoder(config, size, X_train, args.cache_dir)))
        models.append(("pca", *pca(size, X_train, config["seed"])))
        for kind, model, meta in models:
            for coder in config["coders"]:
                name = f"{'AE' if kind == 'autoencoder' else 'PCA'}-{size} codec ({coder})"
                log(name)
                result = codec_series(name, model, X_train, X_test, config, coder)
                series.append(
                    {
                        "name": name,
                        "kind": "codec",
                        "model": kind,
                        "code_size": size,
                        "coder": coder,
                        **meta,
                        **result,
                    }
                )
    for fmt, key in (("JPEG", "jpeg_qualities"), ("WEBP", "webp_qualities")):
        log(fmt)
        series.append(
            {
                "name": {"JPEG": "JPEG", "WEBP": "WebP"}[fmt],
                "kind": "pillow",
                **pillow_series(fmt, config[key], images),
            }
        )
    log("PNG")
    series.append({"name": "PNG", "kind": "lossless", **png_series(images)})

    import PIL

    import skdae

    targets = check_targets(series)
    report = {
        "description": "bits per pixel vs PSNR (peak 1.0, clipped reconstructions) on "
        "the MNIST test images; codec rates are one archive of all images, header "
        "included",
        "command": "python benchmarks/rate_distortion.py" + (" --quick" if args.quick else ""),
        "config": {
            k: (v if not isinstance(v, dict) else {str(a): b for a, b in v.items()})
            for k, v in config.items()
        },
        "versions": {"skdae": skdae.__version__, "pillow": PIL.__version__},
        "machine": machine(),
        "total_s": time.perf_counter() - started,
        "series": series,
        "targets": targets,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    json_path = args.out_dir / "rate_distortion.json"
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
    print(f"\nwrote {json_path} and {png_path} ({report['total_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
