"""``skdae demo``: the paper's 4:1 MNIST autoencoder beside PCA at the same code size."""

import time
import warnings

import numpy as np

DESCRIPTION = """\
Train the 784-1000-500-196 autoencoder of "Image Compression Using Deep Autoencoder"
(pretrained as three RBMs, unrolled and fine-tuned) on the first 20,000 MNIST training
images, test it on the first 1,000 test images, and compare it with PCA at the same code
size. MNIST is read from --data-home or $SKDAE_DATA_HOME (the four IDX files), or fetched
from OpenML; without either, the demo says so and runs on scikit-learn's bundled 8x8
digits (64 -> 16, also 4:1).
"""


def add_parser(subparsers):
    """Register the ``demo`` subcommand."""
    p = subparsers.add_parser("demo", help="train the paper's autoencoder and compare with PCA",
                              description=DESCRIPTION)
    p.add_argument("--data-home", help="folder with the MNIST IDX files (default: $SKDAE_DATA_HOME)")
    p.add_argument("--n-train", type=int, default=20000, help="first N training images (default 20000)")
    p.add_argument("--n-test", type=int, default=1000, help="first N test images (default 1000)")
    p.add_argument("--hidden", type=int, nargs="+", default=None, metavar="SIZE",
                   help="encoder layer sizes, last is the code (default 1000 500 196; 8x8 digits: 64 16)")
    p.add_argument("--code-units", choices=["sigmoid", "linear"], default="linear",
                   help="code layer units: linear (default; lower test error, see the README's "
                   "results) or sigmoid (the paper's)")
    p.add_argument("--pretrain-epochs", type=int, default=10, help="CD-1 epochs per RBM (default 10)")
    p.add_argument("--max-iter", type=int, default=None,
                   help="fine-tuning epochs (default 40 on MNIST, 300 on the 8x8 digits)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="minibatch size (default 100 on MNIST, 32 on the 8x8 digits)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--n-jobs", type=int, default=None, help="BLAS threads (default: all cores)")
    p.add_argument("--output", default="demo_reconstructions.png",
                   help="PNG of test originals above reconstructions (default %(default)s)")
    p.add_argument("--digits", action="store_true", help="use the bundled 8x8 digits, not MNIST")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    p.set_defaults(func=run)


def _load(args):
    """(X_train, X_test, image_shape, name) from MNIST, or the 8x8 digits as a fallback."""
    if not args.digits:
        from .datasets import load_mnist

        try:
            train = load_mnist("train", data_home=args.data_home, n_samples=args.n_train)
            test = load_mnist("test", data_home=args.data_home, n_samples=args.n_test)
            return train.data, test.data, (28, 28), f"MNIST ({train.source})"
        except OSError as exc:
            print(f"MNIST is not available: {exc}\nFalling back to scikit-learn's bundled 8x8 digits.\n")
    from sklearn.datasets import load_digits

    X = (load_digits().data / 16.0).astype(np.float32)
    n_test = min(args.n_test, 297)
    return X[:-n_test], X[-n_test:], (8, 8), "8x8 digits (scikit-learn)"


def run(args):
    """Run the demo; return the exit code."""
    from sklearn.decomposition import PCA

    from . import RBMStackAutoencoder
    from ._metrics import per_sample_squared_error, psnr
    from ._png import image_grid, write_png_gray

    X_train, X_test, shape, name = _load(args)
    mnist = shape == (28, 28)
    hidden = args.hidden or ([1000, 500, 196] if mnist else [64, 16])
    # The 8x8 digits are 1,500 images: more, smaller steps reach the same number of updates.
    max_iter = args.max_iter or (40 if mnist else 300)
    batch_size = args.batch_size or (100 if mnist else 32)
    code = hidden[-1]
    print(f"data: {name}, {X_train.shape[0]} training and {X_test.shape[0]} test images of "
          f"{X_train.shape[1]} pixels; code size {code} ({X_train.shape[1] / code:.0f}:1)")
    print(f"model: {'-'.join(map(str, [X_train.shape[1], *hidden]))} autoencoder, {args.code_units} "
          f"code, {args.pretrain_epochs} CD-1 epochs per RBM, {max_iter} Adam epochs, batches of {batch_size}")
    print("(the first fit on this machine compiles the Numba kernels, some 10 s of CPU;\n"
          " they are cached on disk, so later runs start at once)\n", flush=True)

    ae = RBMStackAutoencoder(
        tuple(hidden), code_units=args.code_units, pretrain_epochs=args.pretrain_epochs,
        max_iter=max_iter, batch_size=batch_size, random_state=args.seed, n_jobs=args.n_jobs,
        verbose=0 if args.quiet else 1,
    )
    tic = time.perf_counter()
    with warnings.catch_warnings():
        # A fixed epoch budget is the demo's choice, not a convergence failure.
        warnings.simplefilter("ignore", category=_convergence_warning())
        ae.fit(X_train)
    ae_time = time.perf_counter() - tic
    ae_rec = ae.inverse_transform(ae.transform(X_test))

    tic = time.perf_counter()
    pca = PCA(n_components=code, random_state=args.seed).fit(X_train)
    pca_time = time.perf_counter() - tic
    pca_rec = pca.inverse_transform(pca.transform(X_test)).astype(np.float32)
    binary_rec = (ae_rec >= 0.5).astype(np.float32)

    rows = [
        ("autoencoder", ae_rec, f"{ae_time:.1f}"),
        ("autoencoder, binarised output", binary_rec, "-"),
        (f"PCA-{code}", pca_rec, f"{pca_time:.1f}"),
    ]
    print(f"\ntest set: {X_test.shape[0]} images; error = squared error per image, summed over "
          "pixels in [0, 1]")
    print(f"| {'model':<30} | {'code':>4} | {'error':>7} | {'PSNR dB':>7} | {'fit s':>7} |")
    print(f"|{'-' * 32}|{'-' * 6}|{'-' * 9}|{'-' * 9}|{'-' * 9}|")
    for label, rec, fit_time in rows:
        error, db = per_sample_squared_error(X_test, rec).mean(), psnr(X_test, rec)
        print(f"| {label:<30} | {code:>4} | {error:>7.3f} | {db:>7.2f} | {fit_time:>7} |")

    _bytes_view(ae, pca, X_train, X_test, code)

    n_show = min(10, X_test.shape[0])
    grid = image_grid([X_test[:n_show], ae_rec[:n_show], pca_rec[:n_show]], shape)
    write_png_gray(args.output, grid)
    print(f"\nwrote {args.output}: test images (top), autoencoder (middle), PCA (bottom)")
    return 0


def _bytes_view(ae, pca, X_train, X_test, code):
    """Both models through the same codec (bit allocation and entropy coder learned from
    the training codes) at about a quarter of a bit per pixel: real bytes, not code sizes."""
    from ._metrics import psnr
    from .codec import Codec, archive_info

    budget = X_test.shape[1] / (4 * code)  # coded bits per unit for ~0.25 bits per pixel
    print(f"\nthe bytes: both models through the same codec ({budget:g} coded bits per code "
          "unit on average,\nallocated per unit from the training codes; one archive of all "
          "test images, header included)")
    print(f"| {'model':<30} | {'bits/pixel':>10} | {'PSNR dB':>7} | {'bytes/image':>11} |")
    print(f"|{'-' * 32}|{'-' * 12}|{'-' * 9}|{'-' * 13}|")
    codecs = [("autoencoder", ae, {})]
    if ae.code_units == "linear":
        # The same network rotated to its codes' principal axes (Codec's decorrelate):
        # units coded one by one stop paying twice for correlated codes.
        codecs.append(("autoencoder, decorrelated", ae, {"decorrelate": True}))
    codecs.append((f"PCA-{code}", pca, {}))
    for label, model, params in codecs:
        codec = Codec(model, n_bits=budget, **params).fit(X_train)
        data = codec.compress(X_test)
        rec = np.clip(codec.decompress(data), 0, 1)
        bpp = archive_info(data).bits_per_pixel
        print(f"| {label:<30} | {bpp:>10.3f} | {psnr(X_test, rec):>7.2f} | "
              f"{len(data) / X_test.shape[0]:>11.1f} |")


def _convergence_warning():
    from sklearn.exceptions import ConvergenceWarning

    return ConvergenceWarning
