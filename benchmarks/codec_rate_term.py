"""The codec's rate term (``Codec(rate_weight=...)``): does it move the rate-distortion envelope?

An autoencoder is trained quickly on the first 20,000 MNIST training images (cached as a
skdae model file under ``--cache-dir``). Through it, the codec with quantization-aware
fine-tuning (straight-through, on the same 20,000 images) is fitted

* without the rate term at several bit budgets: the envelope to beat;
* with the rate term, ``rate_weight`` (squared error per bit per image) in a few values,
  at one or two budgets.

Every point is evaluated on held-out *training* images (``train[50000:52000]`` by
default), never on the test set: bits per pixel of one archive holding them all (header
included), of each image alone (payload), and PSNR (peak 1.0, clipped reconstructions).
For each rate-term point the PSNR of the envelope at the same rate (linear
interpolation between its neighbours) is reported beside it: a positive gap means the
rate term moves the envelope up. Quality only: not timed, run niced without the lock::

    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \\
        nice -n 19 python benchmarks/codec_rate_term.py   # results/codec_rate_term.json
"""

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))
from _common import log, machine, use_local_mnist  # noqa: E402

DEFAULT_CACHE = Path(os.environ.get("SKDAE_CACHE_DIR", "~/.cache/skdae")).expanduser()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-home", help="folder with the MNIST IDX files")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--hidden", default="1000,500,250,30", help="encoder layer sizes")
    parser.add_argument("--n-train", type=int, default=20_000)
    parser.add_argument("--pretrain-epochs", type=int, default=2)
    parser.add_argument("--max-iter", type=int, default=8, help="fine-tuning epochs")
    parser.add_argument("--held-out", default="50000:52000", help="training rows to evaluate on")
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--envelope-budgets", default="0.75,1,1.25,1.5,2,2.5,3,4,6",
                        help="budgets (coded bits per unit) without the rate term")
    parser.add_argument("--budgets", default="1,2,4", help="budgets with the rate term")
    parser.add_argument("--rate-weights", default="0.02,0.05,0.1,0.2,0.5",
                        help="rate_weight values (squared error per bit per image)")
    parser.add_argument("--method", default="straight_through",
                        choices=("straight_through", "noise"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "codec_rate_term.json")
    return parser.parse_args(argv)


def floats(text):
    return [float(v) for v in text.split(",") if v]


def autoencoder(args, X_train):
    """Train (or load from the cache) the model every point goes through."""
    from skdae import RBMStackAutoencoder, load, save

    hidden = tuple(int(h) for h in args.hidden.split(","))
    name = (f"rateterm-ae-{'-'.join(map(str, hidden))}-n{args.n_train}-p{args.pretrain_epochs}"
            f"-f{args.max_iter}-s{args.seed}.skdae")
    path = args.cache_dir / name
    if path.exists():
        log(f"loading cached {path}")
        return load(path), {"cached": True, "path": str(path)}
    model = RBMStackAutoencoder(hidden, pretrain_epochs=args.pretrain_epochs,
                                max_iter=args.max_iter, random_state=args.seed, verbose=1)
    log(f"training 784-{'-'.join(map(str, hidden))} on {len(X_train)} images")
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X_train)
    train_s = time.perf_counter() - start
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    save(model, path)
    return model, {"cached": False, "path": str(path), "train_s": train_s}


def point(model, X_fit, X_eval, n_bits, rate_weight, args):
    from skdae._codec_fit import loss_per_squared_error
    from skdae._metrics import psnr
    from skdae.codec import Codec, archive_info

    codec = Codec(model, n_bits=n_bits, fine_tune_epochs=args.qat_epochs,
                  fine_tune_method=args.method, rate_weight=rate_weight)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        codec.fit(X_fit)
    fit_s = time.perf_counter() - start
    data = codec.compress(X_eval)
    X_rec = codec.decompress(data)
    info = archive_info(data)
    n_pixels = X_eval.size
    exchange = None
    if rate_weight > 0:
        X2 = np.asarray(X_fit).reshape(len(X_fit), -1)
        exchange = loss_per_squared_error(codec, model, X2)
    result = {
        "n_bits": n_bits,
        "rate_weight": rate_weight,
        "coder": info.coder,
        "bytes": len(data),
        "bpp": info.bits_per_pixel,
        "bpp_per_image_payload": 8 * float(codec.payload_bytes(X_eval).sum()) / n_pixels,
        "psnr": psnr(X_eval, np.clip(X_rec, 0, 1)),
        "unit_bits": codec.unit_bits_.tolist(),
        "loss_per_squared_error": exchange,
        "fit_s": fit_s,
    }
    log(f"  n_bits={n_bits} rate_weight={rate_weight}: {result['bpp']:.4f} bpp "
        f"({result['coder']}), {result['psnr']:.2f} dB, fit {fit_s:.0f} s")
    return result


def envelope_psnr(points, bpp):
    """PSNR of the upper envelope of ``points`` at ``bpp`` (linear between neighbours;
    None outside their range)."""
    pts = sorted((p["bpp"], p["psnr"]) for p in points)
    hull = []
    for x, y in pts:
        if not hull or y > hull[-1][1]:
            hull.append((x, y))
    xs, ys = zip(*hull)
    if not xs[0] <= bpp <= xs[-1]:
        return None
    return float(np.interp(bpp, xs, ys))


def main(argv=None):
    args = parse_args(argv)
    import skdae
    from skdae.datasets import load_mnist

    use_local_mnist()
    first, last = (int(v) for v in args.held_out.split(":"))
    if first < args.n_train:
        raise SystemExit("--held-out rows must come after the --n-train training rows")
    train = load_mnist("train", data_home=args.data_home, n_samples=last)
    X_train = train.data[: args.n_train]
    X_eval = train.data[first:last]
    started = time.perf_counter()
    model, meta = autoencoder(args, X_train)
    log("without the rate term")
    envelope = [point(model, X_train, X_eval, b, 0.0, args)
                for b in floats(args.envelope_budgets)]
    log("with the rate term")
    with_rate = []
    for b in floats(args.budgets):
        for w in floats(args.rate_weights):
            p = point(model, X_train, X_eval, b, w, args)
            p["envelope_psnr_at_same_bpp"] = envelope_psnr(envelope, p["bpp"])
            gap = p["envelope_psnr_at_same_bpp"]
            p["gain_db"] = None if gap is None else p["psnr"] - gap
            with_rate.append(p)
    elapsed = time.perf_counter() - started
    report = {
        "description": "Codec with quantization-aware fine-tuning, with and without the rate "
        "term (rate_weight, squared error per bit per image), on held-out MNIST training "
        "images; bpp of one archive (header included) and per image (payload), PSNR of "
        "clipped reconstructions; gain_db: PSNR minus the no-rate-term envelope's at the "
        "same bpp",
        "command": "python benchmarks/codec_rate_term.py " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "model": meta,
        "timed": False,
        "seconds": elapsed,
        "loadavg": list(os.getloadavg()),
        "threads": {k: os.environ.get(k) for k in
                    ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
        "versions": {"skdae": skdae.__version__},
        "machine": machine(),
        "without_rate_term": envelope,
        "with_rate_term": with_rate,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=float) + "\n")
    print(f"{'n_bits':>6} {'weight':>7} {'bpp':>7} {'bpp/img':>7} {'PSNR':>6} {'env@bpp':>7}"
          f" {'gain':>6}")
    for p in envelope + with_rate:
        env = p.get("envelope_psnr_at_same_bpp")
        gain = p.get("gain_db")
        print(f"{p['n_bits']:>6} {p['rate_weight']:>7} {p['bpp']:>7.4f} "
              f"{p['bpp_per_image_payload']:>7.4f} {p['psnr']:>6.2f} "
              f"{'' if env is None else f'{env:.2f}':>7} {'' if gain is None else f'{gain:+.2f}':>6}")
    print(f"\nwrote {args.out} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
