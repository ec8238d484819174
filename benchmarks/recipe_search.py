"""Choosing a fine-tuning recipe on held-out *training* images (issue 11), never the test set.

Each run trains one autoencoder and records the held-out error (squared error per image,
pixels in [0, 1]) after every fine-tuning epoch; the runs are appended by name to
``benchmarks/results/recipe_search.json`` (the learning curves of the note) and plotted
to ``recipe_search_<setting>.png``.

    # the issue's probe: the images plus 4 one-pixel axis shifts as fixed rows, pretraining on them
    python benchmarks/recipe_search.py probe_fixed --setting paper --fixed-shifts --epochs 20 \
        --pretrain-epochs 5
    # the same distribution on the fly, a cosine schedule
    python benchmarks/recipe_search.py axis_cosine --setting paper --augment axis \
        --schedule cosine --epochs 100 --pretrain-epochs 25

Settings: ``paper`` trains on the paper's train[:20000] and holds out train[20000:25000]
(as ``reproduce.py`` chooses its epoch, so the curves compare with its
``validation`` curves); ``hs`` trains on train[:55000] and holds out train[55000:60000]. ``--augment`` names a
:class:`skdae.augment.RandomDeformation` (``AUGMENTATIONS`` below). Training experiments,
not timings: run them niced and single-threaded; the epoch times are recorded only as a
guide.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, save_error_curves, use_local_mnist  # noqa: E402

SETTINGS = {
    "paper": dict(hidden=(1000, 500, 196), n_train=20000, n_val=5000),
    "hs": dict(hidden=(1000, 500, 250, 30), n_train=55000, n_val=5000),
}

AUGMENTATIONS = {
    "none": None,
    "square": dict(),  # RandomDeformation(): whole-pixel shifts of up to 1 px, 9 positions
    "axis": dict(axis_only=True),  # the probe's 5 positions: original and 4 axis shifts
    "axis2": dict(axis_only=True, max_shift=2.0),
    "axis_rot": dict(axis_only=True, max_rotation=8.0),
    "axis_elastic": dict(axis_only=True, alpha=1.0, sigma=4.0),
}


def axis_shifts(X, side=28):
    """``X`` and its copies moved by one whole pixel up, down, left and right (5x rows)."""
    from skdae.augment import _shift_whole

    images = X.reshape(-1, side, side)
    n = len(images)
    out = [X]
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        out.append(_shift_whole(images, np.tile(np.array([[dy], [dx]]), (1, n))).reshape(n, -1))
    return np.concatenate(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="run name, or 'plot' to redraw the figures only")
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="paper")
    parser.add_argument("--fixed-shifts", action="store_true",
                        help="train on the images plus 4 axis shifts as fixed rows")
    parser.add_argument("--augment", choices=sorted(AUGMENTATIONS), default="none")
    parser.add_argument("--augment-pretraining", action="store_true")
    parser.add_argument("--schedule", default="constant")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--solver", default="adam")
    parser.add_argument("--alpha", type=float, default=0.0)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--pretrain-epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop after this much fit time")
    args = parser.parse_args(argv)
    if args.name == "plot":
        path = RESULTS / "recipe_search.json"
        plot(json.loads(path.read_text()) if path.exists() else {})
        return 0

    use_local_mnist()
    from skdae import RBMStackAutoencoder
    from skdae.augment import RandomDeformation
    from skdae.datasets import load_mnist

    setting = SETTINGS[args.setting]
    train = load_mnist("train").data
    X_train = train[: setting["n_train"]]
    X_val = train[setting["n_train"] : setting["n_train"] + setting["n_val"]]
    if args.fixed_shifts:
        X_train = axis_shifts(X_train)
    params = dict(hidden_layer_sizes=setting["hidden"], code_units="linear",
                  solver=args.solver, learning_rate=args.lr,
                  learning_rate_schedule=args.schedule, alpha=args.alpha,
                  pretrain_epochs=args.pretrain_epochs, max_iter=args.epochs,
                  random_state=args.seed)
    augmentation = AUGMENTATIONS[args.augment]
    if augmentation is not None:
        params["augmentation"] = RandomDeformation(**augmentation)
    if args.augment_pretraining:
        params["augment_pretraining"] = True
    model = RBMStackAutoencoder(**params)
    record = dict(name=args.name, setting=args.setting, n_train=len(X_train),
                  n_val=len(X_val), fixed_shifts=args.fixed_shifts, augment=args.augment,
                  augment_params=augmentation, params={k: v for k, v in params.items()
                                                       if k != "augmentation"},
                  warmup=args.warmup, command="python benchmarks/recipe_search.py " + " ".join(
                      argv if argv is not None else sys.argv[1:]),
                  nice=os.nice(0), threads=os.environ.get("NUMBA_NUM_THREADS"),
                  machine=machine(), load_start=list(os.getloadavg()),
                  validation=[], train_loss=[], seconds=[])
    fit_time = 0.0
    for epoch in range(args.epochs):
        if args.warmup:
            # Linear warmup to the peak rate, set by hand (the schedule then continues
            # from epoch ``warmup`` as the estimator computes it).
            model.set_params(learning_rate=args.lr * min(1.0, (epoch + 1) / (args.warmup + 1)))
        tic = time.perf_counter()
        model.partial_fit(X_train)
        fit_time += time.perf_counter() - tic
        record["validation"].append(round(-model.score(X_val), 4))
        record["train_loss"].append(round(model.loss_curve_[-1], 4))
        record["seconds"].append(round(fit_time, 1))
        print(f"{args.name} epoch {model.n_iter_}: held-out {record['validation'][-1]:.4f} "
              f"({fit_time:.0f} s)", flush=True)
        save(record)
        if args.max_minutes and fit_time > 60 * args.max_minutes:
            break
    return 0


def save(record):
    """Add (or update) ``record`` in the JSON, after every epoch, and plot all runs."""
    record["load_end"] = list(os.getloadavg())
    record["best"] = min(record["validation"])
    record["best_epoch"] = int(np.argmin(record["validation"])) + 1
    path = RESULTS / "recipe_search.json"
    runs = json.loads(path.read_text()) if path.exists() else {}
    runs[record["name"]] = record
    path.write_text(json.dumps(runs, indent=1) + "\n")
    plot(runs)


# The held-out curves of reproduce.py's paper runs (train[:20000], held out
# train[20000:25000], one epoch = 20,000 samples), drawn beside the search's runs.
REPRODUCED = {"reproduce.json": ["paper_linear"],
              "reproduce_augmented_paper.json": ["paper_linear_augmented"],
              "reproduce_axis_shifts_paper.json": ["paper_linear_axis_shifts"]}


def reproduced_runs():
    runs = {}
    for name, keys in REPRODUCED.items():
        path = RESULTS / name
        if not path.exists():
            continue
        curves = json.loads(path.read_text())["learning_curves"]
        for key in keys:
            if curves.get(key, {}).get("validation"):
                values = curves[key]["validation"]
                runs[f"reproduce.py {key}"] = dict(
                    setting="paper", n_train=SETTINGS["paper"]["n_train"], validation=values,
                    best=min(values))
    return runs


def plot(runs):
    runs = {**reproduced_runs(), **runs}
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    for setting in SETTINGS:
        chosen = {k: r for k, r in runs.items() if r["setting"] == setting}
        if not chosen:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name, r in chosen.items():
            # x axis: training samples seen, in passes over the original images, so that
            # fixed 5x rows and on-the-fly epochs compare.
            per_epoch = r["n_train"] / SETTINGS[setting]["n_train"]
            x = per_epoch * np.arange(1, len(r["validation"]) + 1)
            ax.plot(x, r["validation"], label=f"{name} (best {r['best']:.3f})")
        ax.set_title("held-out training images", fontsize=9)
        save_error_curves(fig, ax, "fine-tuning samples seen / training images",
                          f"recipe_search_{setting}.png")


if __name__ == "__main__":
    sys.exit(main())
