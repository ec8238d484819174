"""Decorrelated codes: the codec of a trained autoencoder with and without ``decorrelate``.

``Codec(decorrelate=True)`` rotates a copy of the network's code space to the principal
axes of its training codes (transform coding's Karhunen-Loeve transform, folded into the
layers on either side of the code). This study fits both codecs (rate-distortion
allocation, no fine-tuning) at each budget ``--budgets`` on training rows ``--fit-rows``
and scores them on the held-out training rows ``--held-out`` (never the test set): bits
per pixel of one archive and PSNR, and the decorrelated codec's gain at equal rate (its
PSNR less the plain codec's curve, interpolated, at its rate). It also reports how
correlated the codes are (the largest and mean absolute correlation between units) and
the Gaussian bound on the bits per sample a decorrelation can save, the network's own
PSNR on the held-out rows (float codes) and each curve's PSNR at ``--at-bpp``
(interpolated), which compares networks at one rate. The model file is
one of the rate-distortion benchmark's cache (``--model``). The held-out rows are new to the
codecs; they are new to the network only when it was trained on the first 50,000 images
(``rate_distortion.py --n-train 50000 --train-only``), which is how networks (their
epochs, say) are compared without the test set. Quality only: not timed, run niced
without the lock::

    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 nice -n 19 \\
        python benchmarks/codec_decorrelate.py --model CACHE/ae-1000-500-250-48-....skdae
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))
from _common import add_held_out_arguments, held_out_split, log, machine, write_study  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_held_out_arguments(parser)
    parser.add_argument("--budgets", default="3,3.5,4,4.5,5",
                        help="comma-separated n_bits (coded bits per unit)")
    parser.add_argument("--at-bpp", type=float, default=0.25,
                        help="rate at which each curve's PSNR is also reported (interpolated)")
    parser.add_argument("--out", type=Path, default=RESULTS / "codec_decorrelate.json")
    parser.add_argument("--merge", action="store_true", help="add to --out's runs")
    return parser.parse_args(argv)


def correlation_summary(codes):
    """Largest and mean absolute correlation between units, and the Gaussian bound on
    the bits per sample that decorrelating saves: half the log2 ratio of the product of
    the variances to the covariance's determinant."""
    covariance = np.cov(codes, rowvar=False)
    k = covariance.shape[0]
    scale = np.sqrt(np.diag(covariance))
    off = np.abs((covariance / np.outer(scale, scale))[np.triu_indices(k, 1)])
    _, logdet = np.linalg.slogdet(covariance)
    bound = 0.5 * (np.sum(np.log2(np.diag(covariance))) - logdet / np.log(2))
    return {"max_abs_correlation": float(off.max()), "mean_abs_correlation": float(off.mean()),
            "gaussian_bound_bits_per_sample": float(bound)}


def _interpolated(points, bpp):
    """PSNR of a curve at ``bpp`` (linear between its points), None outside them."""
    points = sorted(points, key=lambda p: p["bpp"])
    rates = [p["bpp"] for p in points]
    if not rates[0] <= bpp <= rates[-1]:
        return None
    return float(np.interp(bpp, rates, [p["psnr"] for p in points]))


def main(argv=None):
    args = parse_args(argv)
    from skdae._metrics import psnr
    from skdae.codec import archive_info, fit_codecs

    model, X_fit, X_val = held_out_split(args)
    budgets = [float(v) for v in args.budgets.split(",")]
    started = time.perf_counter()
    codes = model.transform(X_fit[:: max(1, len(X_fit) // 10000)]).astype(np.float64)
    summary = correlation_summary(codes)
    log(f"{args.model.name}: {summary}")
    curves = {}
    for decorrelate in (False, True):
        points = []
        for codec in fit_codecs(model, X_fit, budgets, decorrelate=decorrelate):
            data = codec.compress(X_val)
            out = np.clip(codec.decompress(data), 0, 1)
            points.append({"n_bits": codec.n_bits, "bpp": archive_info(data).bits_per_pixel,
                           "psnr": float(psnr(X_val, out))})
            log(f"decorrelate={decorrelate} n_bits={codec.n_bits:g}: "
                f"{points[-1]['bpp']:.4f} bpp, {points[-1]['psnr']:.2f} dB")
        curves["decorrelated" if decorrelate else "plain"] = points
    for point in curves["decorrelated"]:
        plain_psnr = _interpolated(curves["plain"], point["bpp"])
        point["gain_db"] = None if plain_psnr is None else point["psnr"] - plain_psnr
    # The network's own (float) PSNR on the held-out rows: what no codec of it can beat.
    float_out = np.clip(model.inverse_transform(model.transform(X_val)), 0, 1)
    float_psnr = float(psnr(X_val, float_out))
    at_bpp = {name: _interpolated(points, args.at_bpp) for name, points in curves.items()}
    run = {"model": {"file": args.model.name, "hidden": list(model.hidden_layer_sizes),
                     "n_iter_": model.n_iter_, "float_psnr": float_psnr},
           "psnr_at_bpp": {"bpp": args.at_bpp, **at_bpp},
           "fit_rows": args.fit_rows, "held_out": args.held_out, "budgets": budgets,
           "codes": summary, **curves}
    report = {
        "description": "codec (rd allocation, no fine-tuning) of a trained autoencoder with "
        "and without decorrelate=True: fitted on training rows fit_rows, bpp (one archive) "
        "and PSNR (peak 1, clipped) on the held-out training rows; gain_db is the "
        "decorrelated codec's PSNR less the plain codec's curve at its rate; the test set "
        "is never read",
        "command": "python benchmarks/codec_decorrelate.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "runs": [run],
        "seconds": time.perf_counter() - started,
        "loadavg": list(os.getloadavg()),
        "machine": machine(),
        "timed": False,
    }
    write_study(args, report)
    print(f"{args.model.name}: units' largest |correlation| "
          f"{summary['max_abs_correlation']:.2f}, Gaussian bound "
          f"{summary['gaussian_bound_bits_per_sample']:.1f} bits per sample")
    print(f"{'n_bits':>6} {'plain bpp':>10} {'dB':>6} {'decorr. bpp':>12} {'dB':>6} {'gain':>6}")
    for a, b in zip(curves["plain"], curves["decorrelated"]):
        gain = "-" if b["gain_db"] is None else f"{b['gain_db']:+.2f}"
        print(f"{a['n_bits']:>6g} {a['bpp']:>10.4f} {a['psnr']:>6.2f} {b['bpp']:>12.4f} "
              f"{b['psnr']:>6.2f} {gain:>6}")
    print(f"float codes {float_psnr:.2f} dB; at {args.at_bpp:g} bpp: "
          + ", ".join(f"{name} {'-' if v is None else f'{v:.2f}'} dB" for name, v in at_bpp.items()))
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
