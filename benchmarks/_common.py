"""Helpers shared by the benchmark scripts: data, errors, tables, JSON, machine info."""

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
_LOCAL_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"

# Fine-tuning recipes (--recipe of reproduce.py and rate_distortion.py): estimator
# parameters added to every run, and the epoch budgets they replace in the paper setting
# (784-1000-500-196, 20,000 images) and in Hinton & Salakhutdinov's (60,000 images).
# "augmented" was chosen on held-out training images of the paper setting
# (train[20000:25000]); its H&S budget is what fits in 15 minutes on 2 cores.
# "augmentation" is given as the keyword arguments of a RandomDeformation.
# "axis_shifts" follows the probe (the images plus their copies shifted by one
# pixel up, down, left and right, pretrained on the 5x data), on the fly: each image is
# shown as itself or one of its 4 axis shifts (1/5 each) afresh every epoch, so an epoch
# is a fifth of the probe's; its RBMs train 5x the epochs to see as many samples.
RECIPES = {
    "hs": dict(params={}, paper={}, hs={}),
    "augmented": dict(
        params=dict(learning_rate_schedule="cosine", augmentation={}),
        paper=dict(pretrain_epochs=5, epochs=100), hs=dict(pretrain_epochs=3, epochs=100)),
    "axis_shifts": dict(
        params=dict(learning_rate_schedule="cosine", augmentation={"axis_only": True}),
        paper=dict(pretrain_epochs=25, epochs=120), hs=dict(pretrain_epochs=15, epochs=80)),
}


def recipe_params(recipe):
    """The estimator parameters of ``recipe`` (objects built here, names in the JSON)."""
    from skdae.augment import RandomDeformation

    params = dict(RECIPES[recipe]["params"])
    if "augmentation" in params:
        params["augmentation"] = RandomDeformation(**params["augmentation"])
    return params


def use_local_mnist():
    """Point SKDAE_DATA_HOME at the project's sibling MNIST folder when it is unset."""
    if "SKDAE_DATA_HOME" not in os.environ and _LOCAL_MNIST.is_dir():
        os.environ["SKDAE_DATA_HOME"] = str(_LOCAL_MNIST)


def quality(X, X_rec):
    """The three measures every benchmark row reports (see :mod:`skdae._metrics`)."""
    from skdae._metrics import per_sample_squared_error, psnr

    errors = per_sample_squared_error(X, X_rec)
    return {
        "squared_error": float(errors.mean()),
        "psnr_db": psnr(X, X_rec),
        "mse_per_pixel": float(errors.sum()) / np.size(X),
    }


def machine():
    """Cores, CPU, BLAS and library versions, for the record."""
    import numba
    import sklearn
    from threadpoolctl import threadpool_info

    blas = sorted(
        {f"{d.get('internal_api')} {d.get('version')} ({d.get('architecture')})" for d in threadpool_info()
         if d.get("user_api") == "blas"}
    )
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "blas": blas,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "numba": numba.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def markdown_table(rows, columns):
    """A markdown table of ``rows`` (dicts) over ``columns`` ((key, header, format))."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    lines = [head, rule]
    for row in rows:
        cells = []
        for key, _, fmt in columns:
            value = row.get(key)
            cells.append("-" if value is None else format(value, fmt) if fmt else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(name, payload):
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path


def save_error_curves(fig, ax, xlabel, name):
    """Finish a plot of squared error per image (log scale) against ``xlabel`` and write
    it to ``benchmarks/results/name``."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel("squared error per image")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / name, dpi=80)
    plt.close(fig)


# ------------------------------------------------ codec studies on held-out training rows


def log(message):
    """Progress on stderr, so that stdout keeps the table."""
    import sys

    print(message, file=sys.stderr, flush=True)


def add_held_out_arguments(parser):
    """The arguments every codec study on held-out training images takes: the model
    file, the MNIST folder and the two ranges of training rows."""
    parser.add_argument("--model", type=Path, required=True, help="autoencoder model file")
    parser.add_argument("--data-home", help="folder with the MNIST IDX files")
    parser.add_argument("--fit-rows", default="0:50000", help="training rows the codecs fit on")
    parser.add_argument("--held-out", default="50000:60000", help="training rows to evaluate on")


def held_out_split(args):
    """``(model, X_fit, X_val)`` of a codec study: the model file and the training rows
    ``--fit-rows`` and ``--held-out`` (``"a:b"``); the test set is never read."""
    from skdae import load
    from skdae.datasets import load_mnist

    def rows(text):
        a, b = (int(v) for v in text.split(":"))
        return slice(a, b)

    use_local_mnist()
    train = load_mnist("train", data_home=args.data_home)
    return load(args.model), train.data[rows(args.fit_rows)], train.data[rows(args.held_out)]


def write_study(args, report):
    """Write a study's ``report`` to ``args.out``; with ``args.merge``, after the runs
    (and commands) already there."""
    if args.merge and args.out.exists():
        previous = json.loads(args.out.read_text())
        report["runs"] = previous["runs"] + report["runs"]
        report["command"] = previous["command"] + " ; " + report["command"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
