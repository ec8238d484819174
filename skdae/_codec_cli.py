"""``skdae train``, ``compress``, ``decompress`` and ``info``: the command-line codec.

Inputs (for ``train`` and ``compress``) are any mix of image files (PNG, PGM, JPEG, ... read
with Pillow), folders of such images, ``.npy`` arrays of samples, and IDX files such as
MNIST's (gzip-compressed or raw). 8-bit data is scaled to [0, 1]; float data is used as
it is. ``train`` records the sample shape and image mode in the model file, and
``compress`` refuses inputs that do not match them.
"""

import argparse
import json
import os
import sys
import textwrap
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ._cli_io import SampleRows, _MissingDependency, _pillow, _ProgressLines, read_samples

# Samples decoded and written at a time by decompress.
_DECODE_ROWS = 16384

_METADATA_KEY = "skdae_cli"
# Samples used to report the codec's rate and PSNR at the end of training.
_REPORT_SAMPLES = 2000


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


# --------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------


def _say(args, message):
    if not args.quiet:
        print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------


def _load_codec(path):
    from ._persist import load
    from .codec import Codec

    codec, metadata = load(path, return_metadata=True)
    if not isinstance(codec, Codec):
        raise ValueError(
            f"{path} holds a {type(codec).__name__}, not a codec: make one with "
            f"'skdae train', or save skdae.codec.Codec(model).fit(X) with skdae.save"
        )
    cli = metadata.get(_METADATA_KEY)
    return codec, cli if isinstance(cli, dict) else {}


def _build_model(args, n_features):
    if args.model == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=args.n_components, random_state=args.random_state)
    from . import RBMStackAutoencoder

    kwargs = {"random_state": args.random_state, "verbose": 0 if args.quiet else 1}
    options = {
        "hidden_layer_sizes": args.hidden_layer_sizes,
        "pretrain_epochs": args.pretrain_epochs,
        "max_iter": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
    }
    kwargs.update({k: v for k, v in options.items() if v is not None})
    return RBMStackAutoencoder(**kwargs)


def _describe(model, n_features):
    if hasattr(model, "hidden_layer_sizes"):
        sizes = "-".join(map(str, (n_features, *model.hidden_layer_sizes)))
        return f"{type(model).__name__} {sizes}"
    return f"{type(model).__name__}({model.get_params(deep=False).get('n_components')})"


def cmd_train(args):
    from ._persist import save
    from .codec import _FINE_TUNING_ROLES, Codec

    if not args.fine_tune_epochs:
        # Codec._check_fine_tuning's rule (options named as its parameters, the same off
        # values), checked here before the samples are read.
        for name in _FINE_TUNING_ROLES:
            if getattr(args, name) != Codec._params_added_after_v1[name]:
                raise ValueError(f"--{name.replace('_', '-')} is a setting of "
                                 "quantization-aware fine-tuning: give --fine-tune-epochs too")
    X, mode = read_samples(args.inputs, limit=args.limit, progress=not args.quiet)
    shape = X.shape[1:]
    X2 = X.reshape(len(X), -1)
    if args.model == "pca" and args.n_components > min(X2.shape):
        raise ValueError(
            f"--n-components {args.n_components} is more than min(n_samples, n_features) = "
            f"{min(X2.shape)}"
        )
    model = _build_model(args, X2.shape[1])
    _say(args, f"training {_describe(model, X2.shape[1])} on {len(X)} samples of shape {shape}")
    start = time.perf_counter()
    with warnings.catch_warnings():
        # The number of epochs is the user's explicit choice, not a convergence failure.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X2)
    _say(args, f"trained in {time.perf_counter() - start:.1f} s")
    if args.fine_tune_epochs < 0 or (args.fine_tune_epochs and args.model != "autoencoder"):
        raise ValueError("--fine-tune-epochs takes a count >= 0, for --model autoencoder only")
    codec = Codec(model, n_bits=args.n_bits, allocation=args.allocation, coder=args.coder,
                  fine_tune_epochs=args.fine_tune_epochs, rate_weight=args.rate_weight,
                  fine_tune_learning_rate=args.fine_tune_learning_rate,
                  fine_tune_loss=args.fine_tune_loss, decorrelate=args.decorrelate).fit(X2)
    metadata = {
        _METADATA_KEY: {
            "sample_shape": list(shape),
            "image_mode": mode,
            "model_kind": args.model,
            "n_train": len(X),
        }
    }
    save(codec, args.output, metadata=metadata)
    if not args.quiet:
        from ._metrics import psnr
        from .codec import archive_info

        sample = X[:_REPORT_SAMPLES]
        data = codec.compress(sample)
        rate = archive_info(data).bits_per_pixel
        # Clipped as the decoded PNG files are.
        db = psnr(sample, np.clip(codec.decompress(data), 0, 1))
        print(
            f"wrote {args.output} ({os.path.getsize(args.output)} bytes); on {len(sample)} "
            f"training samples: {rate:.3f} bits/pixel, PSNR {db:.2f} dB "
            f"(n_bits={codec.n_bits}, allocation={codec.allocation}, coder={codec.coder})"
        )
    return 0


def cmd_compress(args):
    codec, cli = _load_codec(args.model)
    shape = cli.get("sample_shape")
    # Read as the codec asks, a slice of samples at a time: only their codes are kept.
    X = SampleRows(
        args.inputs,
        limit=args.limit,
        expect_shape=tuple(shape) if isinstance(shape, list) else None,
        expect_mode=cli.get("image_mode"),
        progress=not args.quiet,
    )
    start = time.perf_counter()
    try:
        data = codec.compress(X)
    finally:
        X.close()
    elapsed = time.perf_counter() - start
    with open(args.output, "wb") as f:
        f.write(data)
    if not args.quiet:
        from .codec import archive_info

        info = archive_info(data)
        print(
            f"wrote {args.output}: {info.count} samples in {info.total_bytes} bytes, "
            f"{info.bits_per_pixel:.3f} bits/pixel ({elapsed:.2f} s)"
        )
    return 0


def _read_archive(path):
    with open(path, "rb") as f:
        return f.read()


def cmd_decompress(args):
    codec, cli = _load_codec(args.model)
    data = _read_archive(args.archive)
    start = time.perf_counter()
    codes, info = codec.decode_codes(data)
    shape = tuple(info.shape)
    if args.format == "png":
        if len(shape) == 1:
            raise ValueError(
                f"the archive holds flat samples of {shape[0]} values, not images: use "
                "--format npy"
            )
        if not (len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3))):
            raise ValueError(f"cannot write samples of shape {shape} as PNG: use --format npy")
        writer = _PngWriter(args.output, info.count, not args.quiet)
    else:
        writer = None
    out = None
    # Decoded and written a slice at a time: the reconstructions are never all in memory.
    for r0 in range(0, info.count, _DECODE_ROWS):
        r1 = min(info.count, r0 + _DECODE_ROWS)
        X = np.asarray(codec.model.inverse_transform(codes[r0:r1])).reshape((r1 - r0, *shape))
        if writer is not None:
            writer.write(r0, X)
            continue
        if out is None:
            out = np.lib.format.open_memmap(args.output, "w+", X.dtype, (info.count, *shape))
        out[r0:r1] = X
    if writer is not None:
        writer.close()
    else:
        out.flush()
        del out
    _say(args, f"decoded {info.count} samples in {time.perf_counter() - start:.2f} s")
    if args.format == "npy":
        _say(args, f"wrote {args.output}")
    return 0


class _PngWriter:
    """One 8-bit PNG per sample, named by its index, values clipped to [0, 1]."""

    def __init__(self, folder, count, progress):
        self.Image = _pillow()
        self.folder = folder
        self.width = max(6, len(str(count - 1)))
        os.makedirs(folder, exist_ok=True)
        self.progress = _ProgressLines("writing PNG files", count, enabled=progress)

    def write(self, first, X):
        pixels = np.rint(np.clip(X, 0, 1) * 255).astype(np.uint8)
        if pixels.ndim == 4 and pixels.shape[3] == 1:
            pixels = pixels[..., 0]
        for i, image in enumerate(pixels, start=first):
            self.Image.fromarray(image).save(os.path.join(self.folder, f"{i:0{self.width}d}.png"))
            self.progress.update()

    def close(self):
        self.progress.close()


def cmd_info(args):
    from .codec import archive_info

    info = archive_info(_read_archive(args.archive))
    fields = {
        "format_version": info.version,
        "coder": info.coder,
        "n_bits": info.n_bits,
        "sample_bits": info.sample_bits,
        "sample_shape": list(info.shape),
        "code_units": info.n_units,
        "count": info.count,
        "fingerprint": info.fingerprint,
        "header_bytes": info.header_bytes,
        "payload_bytes": info.payload_bytes,
        "total_bytes": info.total_bytes,
        "raw_code_bytes": info.raw_code_bytes,
        "bits_per_pixel": info.bits_per_pixel,
    }
    status = 0
    if args.model is not None:
        codec, _ = _load_codec(args.model)
        # A format-1 archive carries the fingerprint its (format-1) codec had.
        expected = codec._legacy_fingerprint() if info.version == 1 else codec.fingerprint
        matches = bool(expected) and expected.startswith(info.fingerprint)
        fields["model_matches"] = matches
        status = 0 if matches else 1
    if args.json:
        print(json.dumps(fields, indent=2))
    else:
        width = max(map(len, fields))
        for key, value in fields.items():
            if key == "bits_per_pixel":
                value = f"{value:.4f}"
            elif isinstance(value, list):
                value = "x".join(map(str, value))
            print(f"{key.replace('_', ' '):<{width}}  {value}")
    return status


def _guard(command):
    """Turn a missing optional dependency into an error message and exit code 1."""

    def run(args):
        try:
            return command(args)
        except _MissingDependency as exc:
            print(f"skdae {args.command}: error: {exc}", file=sys.stderr)
            return 1

    return run


# --------------------------------------------------------------------------------------
# Parsers
# --------------------------------------------------------------------------------------


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _rate_weight(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (np.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0: {text!r}")
    return value


def _n_bits(text):
    value = _positive_float(text)
    if value > 16:
        raise argparse.ArgumentTypeError(f"must be at most 16: {text!r}")
    return int(value) if value.is_integer() else value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def _layer_sizes(text):
    try:
        sizes = tuple(int(part) for part in text.replace(" ", "").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 1000,500,250,30: {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"layer sizes must be at least 1: {text!r}")
    return sizes


_INPUTS_HELP = (
    "image files, folders of images (PNG, PGM, JPEG, ...), .npy arrays of samples, or "
    "IDX files such as MNIST's (.gz or raw)"
)


def add_parser(subparsers):
    """Add the ``train``, ``compress``, ``decompress`` and ``info`` subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="print no progress or summary")

    train = subparsers.add_parser(
        "train",
        parents=[common],
        formatter_class=_Formatter,
        help="train a model and its codec on images; write a model file",
        description=textwrap.dedent(
            """\
            Train a model on samples, learn its codec's quantization ranges, and write
            both to a model file (arrays and JSON; loading it runs no code).

            Example:
              skdae train train-images-idx3-ubyte.gz -o mnist30.skdae \\
                  --hidden-layer-sizes 1000,500,250,30 --n-bits 6
              skdae train digits/ -o pca.skdae --model pca --n-components 30
            """
        ),
    )
    train.add_argument("inputs", nargs="+", metavar="INPUT", help=_INPUTS_HELP)
    train.add_argument("-o", "--output", required=True, metavar="MODEL", help="model file to write")
    train.add_argument(
        "--model",
        choices=("autoencoder", "pca"),
        default="autoencoder",
        help="autoencoder: an RBM-pretrained deep autoencoder (default); pca: principal "
        "component analysis, a fast baseline",
    )
    train.add_argument(
        "--hidden-layer-sizes",
        type=_layer_sizes,
        metavar="SIZES",
        help="autoencoder layer sizes from the input to the code, comma-separated "
        "(the last is the code size; default: the estimator's, 1000,500,250,30)",
    )
    train.add_argument(
        "--n-components",
        type=_positive_int,
        default=30,
        metavar="N",
        help="pca: number of components, i.e. the code size (default: 30)",
    )
    train.add_argument(
        "--pretrain-epochs",
        type=_positive_int,
        metavar="N",
        help="autoencoder: epochs of RBM pretraining per layer (default: the estimator's)",
    )
    train.add_argument(
        "--epochs",
        type=_positive_int,
        metavar="N",
        help="autoencoder: epochs of fine-tuning by backpropagation, the estimator's "
        "max_iter (default: the estimator's)",
    )
    train.add_argument(
        "--batch-size", type=_positive_int, metavar="N", help="autoencoder: minibatch size"
    )
    train.add_argument(
        "--learning-rate",
        type=_positive_float,
        metavar="RATE",
        help="autoencoder: fine-tuning learning rate",
    )
    train.add_argument(
        "--n-bits",
        type=_n_bits,
        default=8,
        metavar="N",
        help="rate: average coded bits per code unit, up to 12, fractions allowed "
        "(default: 8); with --allocation uniform, the bits of every code value, 1 to 16",
    )
    train.add_argument(
        "--allocation",
        choices=("rate_distortion", "uniform"),
        default="rate_distortion",
        help="bits per code unit: chosen per unit from the training codes (default), or "
        "--n-bits for every unit",
    )
    train.add_argument(
        "--coder",
        choices=("auto", "rans", "zlib", "lzma", "none"),
        default="auto",
        help="entropy coder (default: auto, the smaller of rans under the learned tables "
        "and deflate, per archive; lzma is slower)",
    )
    train.add_argument(
        "--fine-tune-epochs",
        type=int,
        default=0,
        metavar="N",
        help="autoencoder: epochs of quantization-aware fine-tuning of the codec's copy "
        "of the network (default: 0)",
    )
    train.add_argument(
        "--rate-weight",
        type=_rate_weight,
        default=0.0,
        metavar="LAMBDA",
        help="with --fine-tune-epochs: weight of a rate term in that fine-tuning, the "
        "squared error per image that one coded bit is worth; larger gives smaller "
        "archives at a lower PSNR (default: 0, distortion only)",
    )
    train.add_argument(
        "--fine-tune-learning-rate",
        type=_positive_float,
        metavar="RATE",
        help="with --fine-tune-epochs: the step size of that fine-tuning (default: a "
        "tenth of the network's learning rate, as it starts from converged weights)",
    )
    train.add_argument(
        "--decorrelate",
        action="store_true",
        help="autoencoder: rotate the codec's copy of the network to the principal axes of "
        "its codes before quantizing them (uncorrelated units cost fewer bits)",
    )
    train.add_argument(
        "--fine-tune-loss",
        choices=("model", "squared_error"),
        default="model",
        help="with --fine-tune-epochs: the loss of that fine-tuning; squared_error is the "
        "error PSNR counts (default: model, the network's own loss)",
    )
    train.add_argument(
        "--limit", type=_positive_int, metavar="N", help="train on the first N samples only"
    )
    train.add_argument(
        "--random-state",
        type=int,
        default=0,
        metavar="SEED",
        help="seed for initialisation and shuffling (default: 0)",
    )
    train.set_defaults(func=_guard(cmd_train))

    compress = subparsers.add_parser(
        "compress",
        parents=[common],
        formatter_class=_Formatter,
        help="compress images to an archive with a trained model",
        description=textwrap.dedent(
            """\
            Compress samples with a model file from 'skdae train'. The samples must have
            the shape (and image mode) the model was trained on.

            Example:
              skdae compress mnist30.skdae t10k-images-idx3-ubyte.gz -o test.skc
            """
        ),
    )
    compress.add_argument("model", metavar="MODEL", help="model file from 'skdae train'")
    compress.add_argument("inputs", nargs="+", metavar="INPUT", help=_INPUTS_HELP)
    compress.add_argument(
        "-o", "--output", required=True, metavar="ARCHIVE", help="archive file to write"
    )
    compress.add_argument(
        "--limit", type=_positive_int, metavar="N", help="compress the first N samples only"
    )
    compress.set_defaults(func=_guard(cmd_compress))

    decompress = subparsers.add_parser(
        "decompress",
        parents=[common],
        formatter_class=_Formatter,
        help="decompress an archive to PNG files or a .npy array",
        description=textwrap.dedent(
            """\
            Decompress an archive with the model file that made it (a different model is
            detected and refused). PNG files are named 000000.png, 000001.png, ... in the
            order the samples were compressed.

            Example:
              skdae decompress mnist30.skdae test.skc -o decoded/
              skdae decompress mnist30.skdae test.skc -o decoded.npy --format npy
            """
        ),
    )
    decompress.add_argument("model", metavar="MODEL", help="model file the archive was made with")
    decompress.add_argument("archive", metavar="ARCHIVE", help="archive to decompress")
    decompress.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="folder for the PNG files (created if needed), or the .npy file to write",
    )
    decompress.add_argument(
        "--format",
        choices=("png", "npy"),
        default="png",
        help="png: one 8-bit PNG per sample, values clipped to [0, 1] (default); npy: "
        "the decoded float array exactly as the model outputs it",
    )
    decompress.set_defaults(func=_guard(cmd_decompress))

    info = subparsers.add_parser(
        "info",
        formatter_class=_Formatter,
        help="show an archive's header, size and bits per pixel",
        description=textwrap.dedent(
            """\
            Check an archive and show its header: coder, bits per code value, sample
            shape, count, sizes and bits per pixel. With --model, also check that the
            model file is the one the archive was made with (exit code 1 if not).
            """
        ),
    )
    info.add_argument("archive", metavar="ARCHIVE", help="archive to inspect")
    info.add_argument("--model", metavar="MODEL", help="model file to check the archive against")
    info.add_argument("--json", action="store_true", help="print the fields as JSON")
    info.set_defaults(func=_guard(cmd_info), quiet=False)
