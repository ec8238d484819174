"""Photo patches: the autoencoder with Gaussian visible units against PCA, held out.

A new user's test of the estimator on real-valued data (issue 11, "Beyond MNIST"): grey
12 x 12 patches of one of scikit-learn's two sample photographs (``china.jpg``,
``flower.jpg``, 427 x 640, converted to grey in [0, 1]) for training, patches of the other
photograph for testing, in both directions, at code sizes 12, 24 and 48. Each row is one
model: PCA with that many components, and :class:`skdae.RBMStackAutoencoder` with
``visible_units="gaussian"`` and otherwise default parameters (the default encoder
``1000-500-250`` with the code size as its last layer), with the linear path
(``linear_path="auto"``, the default) and without it (``linear_path=False``, the
estimator before the linear path existed). PSNR (peak 1.0) from the mean squared error
over all pixels of all patches, reconstructions not clipped; "held out" is the other
photograph, "same photo" 10,000 new random patches of the training photograph (the
distribution the model was trained and validated on). Models train once per direction and code size in this process; times are
whole fits (pretraining, fine-tuning, Numba compiles only in the first fit).

A non-linear control (``--sections nonlinear``): points on scikit-learn's S-curve (a
two-dimensional sheet bent in three dimensions) coded with two units, where PCA keeps the
plane and the autoencoder can unbend the sheet.

Usage::

    python benchmarks/patches.py                      # benchmarks/results/patches.json
    python benchmarks/patches.py --codes 12 48 --sections patches --merge   # in parts
    python benchmarks/patches.py --codes 24 --quick   # a small check, written nowhere
"""

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

from _common import RESULTS, machine, markdown_table, write_json

PHOTOS = ("china.jpg", "flower.jpg")


def grey_image(name):
    """A sample photograph as grey levels in [0, 1] (ITU-R 601 luma)."""
    from sklearn.datasets import load_sample_image

    rgb = load_sample_image(name).astype(np.float64) / 255.0
    return rgb @ np.array([0.299, 0.587, 0.114])


def photo_patches(name, n_patches, size=12, seed=0, dtype=np.float32):
    """``n_patches`` random ``size x size`` patches of a grey photograph, as rows."""
    from sklearn.feature_extraction.image import extract_patches_2d

    patches = extract_patches_2d(grey_image(name), (size, size), max_patches=n_patches,
                                 random_state=seed)
    return patches.reshape(n_patches, -1).astype(dtype)


def psnr(X, X_rec):
    mse = float(np.mean((np.asarray(X, np.float64) - X_rec) ** 2))
    return 10.0 * np.log10(1.0 / mse)


def evaluate(model, X):
    return psnr(X, model.inverse_transform(model.transform(X)))


def autoencoder(code, args, **params):
    from skdae import RBMStackAutoencoder

    hidden = (*args.hidden, code)
    return RBMStackAutoencoder(hidden, visible_units="gaussian", random_state=args.seed,
                               max_iter=args.max_iter, pretrain_epochs=args.pretrain_epochs,
                               **params)


def fit_row(name, model, X_train, X_test, X_same=None, **fields):
    """Fit ``model``; PSNR on the training rows, the held-out rows ``X_test`` and (when
    given) new rows ``X_same`` from the training distribution."""
    tic = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter: reported below
        model.fit(X_train)
    seconds = time.perf_counter() - tic
    train, test = evaluate(model, X_train), evaluate(model, X_test)
    same = None if X_same is None else evaluate(model, X_same)
    row = dict(fields, model=name, train_psnr_db=train, same_psnr_db=same, test_psnr_db=test,
               fit_s=seconds, n_iter=getattr(model, "n_iter_", None))
    print(f"  {name:<34} train {train:6.2f} dB  "
          + ("" if same is None else f"same photo {same:6.2f} dB  ")
          + f"held out {test:6.2f} dB  ({seconds:.0f} s)", flush=True)
    return row


def compare(row, pca):
    for key in ("train", "same", "test"):
        if row.get(f"{key}_psnr_db") is not None:
            row[f"{key}_vs_pca_db"] = row[f"{key}_psnr_db"] - pca[f"{key}_psnr_db"]
    return row


def patches_section(args):
    from sklearn.decomposition import PCA

    rows = []
    for train_photo in PHOTOS:
        test_photo = PHOTOS[1 - PHOTOS.index(train_photo)]
        X_train = photo_patches(train_photo, args.n_train, seed=args.seed)
        X_test = photo_patches(test_photo, args.n_test, seed=args.seed + 1)
        # New patches of the training photograph (mostly unseen: random positions).
        X_same = photo_patches(train_photo, args.n_test, seed=args.seed + 2)
        for code in args.codes:
            print(f"{train_photo} -> {test_photo}, code {code}", flush=True)
            fields = dict(train=train_photo, test=test_photo, code=code)
            pca = fit_row("PCA", PCA(code), X_train, X_test, X_same, **fields)
            rows.append(pca)
            for variant in args.variants:
                model = autoencoder(code, args, linear_path="auto" if variant == "default"
                                    else False)
                name = ("autoencoder (defaults)" if variant == "default"
                        else "autoencoder, linear_path=False")
                rows.append(compare(fit_row(name, model, X_train, X_test, X_same, **fields),
                                    pca))
    return rows


def nonlinear_section(args):
    from sklearn.datasets import make_s_curve
    from sklearn.decomposition import PCA

    X_train = make_s_curve(args.n_train, noise=0.05, random_state=args.seed)[0]
    X_test = make_s_curve(args.n_test, noise=0.05, random_state=args.seed + 1)[0]
    X_train, X_test = X_train.astype(np.float32), X_test.astype(np.float32)
    fields = dict(train="s_curve", test="s_curve (new draw)", code=2)
    print("S-curve, code 2", flush=True)
    rows = [fit_row("PCA", PCA(2), X_train, X_test, **fields)]
    from skdae import RBMStackAutoencoder

    variants = [("autoencoder 64-32-2 (defaults)", {})]
    # Leaving the PCA start takes tens of epochs without progress on held-out rows,
    # more than the default patience of 10.
    variants.append(("autoencoder 64-32-2, max_iter=100, n_iter_no_change=100",
                     {"max_iter": 100, "n_iter_no_change": 100}))
    if "no_linear_path" in args.variants:
        variants.append(("autoencoder 64-32-2, linear_path=False", {"linear_path": False}))
    for name, params in variants:
        model = RBMStackAutoencoder((64, 32, 2), random_state=args.seed,
                                    **{"max_iter": args.max_iter, **params})
        rows.append(compare(fit_row(name, model, X_train, X_test, **fields), rows[0]))
    return rows


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codes", type=int, nargs="+", default=[12, 24, 48])
    parser.add_argument("--hidden", type=int, nargs="+", default=[1000, 500, 250],
                        help="encoder layers below the code (default: the estimator's)")
    parser.add_argument("--n-train", type=int, default=30_000)
    parser.add_argument("--n-test", type=int, default=10_000)
    parser.add_argument("--max-iter", type=int, default=50, help="the estimator's default")
    parser.add_argument("--pretrain-epochs", type=int, default=10,
                        help="the estimator's default")
    parser.add_argument("--variants", nargs="+", default=["default", "no_linear_path"],
                        choices=["default", "no_linear_path"])
    parser.add_argument("--sections", nargs="+", default=["patches", "nonlinear"],
                        choices=["patches", "nonlinear"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="5,000 training patches, a 200-100 encoder, 10 epochs; no JSON")
    parser.add_argument("--out", default="patches.json")
    parser.add_argument("--untimed", action="store_true",
                        help="a run outside the benchmark lock (niced): fit times not kept")
    parser.add_argument("--merge", action="store_true",
                        help="add these rows to the existing --out file (runs split in parts)")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_train, args.n_test, args.hidden = 5000, 2000, [200, 100]
        args.max_iter, args.pretrain_epochs = 10, 3
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    load_start = list(os.getloadavg())
    rows = []
    if "patches" in args.sections:
        rows += patches_section(args)
    if "nonlinear" in args.sections:
        rows += nonlinear_section(args)
    if args.untimed:
        for row in rows:
            row["fit_s"] = None
    columns = [("train", "train", ""), ("test", "held out", ""), ("code", "code", "d"),
               ("model", "model", ""), ("train_psnr_db", "train dB", ".2f"),
               ("same_vs_pca_db", "same photo vs PCA dB", "+.2f"),
               ("test_psnr_db", "held-out dB", ".2f"), ("test_vs_pca_db", "vs PCA dB", "+.2f"),
               ("n_iter", "epochs", ""), ("fit_s", "fit s", ".0f")]
    table = markdown_table(rows, columns)
    print(table)
    if args.quick:
        return
    run = {
        "command": "python benchmarks/patches.py " + " ".join(argv),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "merge")},
        "timed": not args.untimed,
        "machine": machine(),
        "loadavg_start": load_start,
        "loadavg_end": list(os.getloadavg()),
    }
    payload = {"description": __doc__.split("\n\n")[0], "runs": [], "rows": []}
    path = RESULTS / args.out
    if args.merge and path.exists():
        payload = json.loads(path.read_text())
    payload["runs"].append(run)
    payload["rows"] += [dict(row, run=len(payload["runs"]) - 1) for row in rows]
    payload["table"] = markdown_table(payload["rows"], columns)
    print("wrote", write_json(args.out, payload))


if __name__ == "__main__":
    main()
