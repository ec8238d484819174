"""Reproduce "Image Compression Using Deep Autoencoder" (2018) and Hinton & Salakhutdinov
(Science 2006) on MNIST, with PCA at the same code size beside each model.

    python benchmarks/reproduce.py            # full run (about half an hour on 2 cores)
    python benchmarks/reproduce.py --quick    # smoke run, a few minutes
    python benchmarks/reproduce.py --recipe augmented --only paper_linear hs

``--recipe`` pins a fine-tuning recipe on every run: ``hs`` (default) is Hinton &
Salakhutdinov's (the estimator's defaults: a fixed rate, the images as given);
``augmented`` deforms every training image afresh each epoch by up to one whole pixel in
each direction (``augmentation=RandomDeformation()``) and decays the rate along a cosine
over the run (``learning_rate_schedule="cosine"``), with its own epoch budgets (the
runs are named ``<name>_augmented``); ``axis_shifts`` shows each image as itself or
shifted by one whole pixel up, down, left or right (1/5 each, afresh each epoch:
``RandomDeformation(axis_only=True)``, the issue's probe on the fly), with the cosine
schedule and 5x the RBM epochs (as many pretraining samples as the probe's 5x rows):

    python benchmarks/reproduce.py --recipe axis_shifts --only paper_linear_axis_shifts --no-train-curve --output reproduce_axis_shifts_paper.json
    python benchmarks/reproduce.py --recipe axis_shifts --only hs_axis_shifts --no-train-curve --time-budget-minutes 14.5 --output reproduce_axis_shifts_hs.json

``--time-budget-minutes`` fits the fine-tuning epochs (and so the cosine's horizon) to a
budget of fit time, pretraining included, re-fitted after every epoch from the time of the
last five (so a run on a loaded machine stops on time with fewer epochs);
``--no-train-curve`` skips the training error after every epoch (reported once at the
end).

Error = squared error per test image summed over the 784 pixels in [0, 1] (H&S's measure);
also PSNR (dB, peak 1.0) and MSE per pixel. Models are trained epoch by epoch through
``partial_fit`` so that train and test error can be recorded after every fine-tuning epoch
(the learning curves); evaluation time is excluded from the reported fit time. Nothing is
tuned on the test images: settings are fixed in advance, and in the paper setting the
epoch kept is the one with the lowest error on 5,000 held-out *training* images (the ones
after the paper's first 20,000).
Writes benchmarks/results/reproduce.json, reproduce.md, reconstructions.png and
learning_curves.png.
"""

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    RECIPES, RESULTS, machine, markdown_table, quality, recipe_params, save_error_curves,
    use_local_mnist, write_json,
)

PUBLISHED = {"hs_autoencoder": 3.00, "hs_logistic_pca": 8.01, "hs_pca": 13.87}

def experiments(quick, recipe="hs"):
    """The runs, as (name, setting, estimator params, epochs)."""
    if quick:
        paper = dict(n_train=2000, n_test=500, n_val=500, pretrain_epochs=2, epochs=3)
        hs = dict(n_train=3000, n_test=1000, n_val=0, pretrain_epochs=2, epochs=3)
    else:
        paper = dict(n_train=20000, n_test=1000, n_val=5000, pretrain_epochs=10, epochs=80)
        hs = dict(n_train=60000, n_test=10000, n_val=0, pretrain_epochs=10, epochs=40)
        paper.update(RECIPES[recipe]["paper"])
        hs.update(RECIPES[recipe]["hs"])
    if recipe != "hs":
        extra = recipe_params(recipe)
        return [(f"{name}_{recipe}", setting, {**params, **extra}, budget)
                for name, setting, params, budget in _runs(paper, hs)
                if params.get("pretrain", True)]
    return _runs(paper, hs)


def _runs(paper, hs):
    return [
        ("paper_sigmoid", "paper", dict(hidden_layer_sizes=(1000, 500, 196), code_units="sigmoid"), paper),
        ("paper_linear", "paper", dict(hidden_layer_sizes=(1000, 500, 196), code_units="linear"), paper),
        # Weight decay in fine-tuning (alpha), chosen on the validation images: the runs
        # above overfit the 20,000 training images (train error far below validation).
        ("paper_sigmoid_l2", "paper", dict(hidden_layer_sizes=(1000, 500, 196), code_units="sigmoid", alpha=1e-3),
         paper),
        ("paper_linear_l2", "paper", dict(hidden_layer_sizes=(1000, 500, 196), code_units="linear", alpha=1e-3),
         paper),
        ("paper_sigmoid_no_pretrain", "paper",
         dict(hidden_layer_sizes=(1000, 500, 196), code_units="sigmoid", pretrain=False), paper),
        ("hs", "hs", dict(hidden_layer_sizes=(1000, 500, 250, 30), code_units="linear"), hs),
        ("hs_no_pretrain", "hs",
         dict(hidden_layer_sizes=(1000, 500, 250, 30), code_units="linear", pretrain=False), hs),
    ]


def train_with_curves(params, budget, X_train, X_test, X_val, seed, n_jobs, verbose,
                      train_curve=True, time_budget=None):
    """Fit epoch by epoch; return the model, curves, fit time (evaluation excluded) and the
    epoch kept.

    With ``X_val`` (held-out *training* images), the weights of the epoch with the lowest
    validation error are kept: early stopping without ever looking at the test images.
    Without ``train_curve`` the training error is not computed (it costs a third of an
    epoch). With ``time_budget`` (seconds of fit time, pretraining included), the
    number of epochs (and so the horizon ``max_iter`` of a decaying schedule) is set
    after the third epoch and re-set after every later one, from the median time of the
    last five epochs (the first excluded): as many as fit in the rest of the budget, with a
    3 % margin; ``budget["epochs"]`` is then only the first guess.
    """
    from skdae import RBMStackAutoencoder

    # max_iter is the horizon of a decaying learning-rate schedule (partial_fit does not
    # stop at it).
    model = RBMStackAutoencoder(
        **params, pretrain_epochs=budget["pretrain_epochs"], max_iter=budget["epochs"],
        random_state=seed, n_jobs=n_jobs, verbose=verbose,
    )
    curves = {"train": [], "test": [], "validation": []}
    fit_time = 0.0
    best = (np.inf, None, 0)
    epoch_times = []
    while model.__dict__.get("n_iter_", 0) < model.max_iter:
        tic = time.perf_counter()
        model.partial_fit(X_train)
        epoch_times.append(time.perf_counter() - tic)
        fit_time += epoch_times[-1]
        if time_budget is not None and model.n_iter_ >= 3:
            # Re-fit the horizon after every epoch: on a shared machine an epoch's time
            # drifts with the load, and a horizon fixed from early epochs overran the budget.
            # The median of the last five epochs (never the first, which compiles) ignores
            # one slow epoch; 3 % is the margin.
            per_epoch = float(np.median(epoch_times[1:][-5:]))
            more = max(0, int((time_budget - fit_time) / per_epoch * 0.97))
            horizon = model.n_iter_ + more
            if horizon != model.max_iter:
                model.set_params(max_iter=horizon)
                print(f"  {per_epoch:.1f} s per epoch: {horizon} epochs fit in "
                      f"{time_budget:.0f} s", flush=True)
        if train_curve:
            curves["train"].append(-model.score(X_train))
        curves["test"].append(-model.score(X_test))
        line = f"  epoch {model.n_iter_}: test {curves['test'][-1]:.3f}"
        if train_curve:
            line += f"  train {curves['train'][-1]:.3f}"
        if X_val is not None:
            curves["validation"].append(-model.score(X_val))
            line += f"  validation {curves['validation'][-1]:.3f}"
            if curves["validation"][-1] < best[0]:
                best = (curves["validation"][-1], ([W.copy() for W in model.coefs_],
                        [c.copy() for c in model.intercepts_]), model.n_iter_)
        print(f"{line}  ({fit_time:.0f} s)", flush=True)
    kept = model.n_iter_
    if best[1] is not None:
        model.coefs_, model.intercepts_ = best[1]
        kept = best[2]
    return model, curves, fit_time, kept


def pretrained_only_error(params, budget, X_train, X_test, seed, n_jobs):
    """Test error of the unrolled RBM stack before any fine-tuning (what pretraining gives)."""
    from skdae import RBMStackAutoencoder

    model = RBMStackAutoencoder(**params, pretrain_epochs=budget["pretrain_epochs"], random_state=seed,
                                n_jobs=n_jobs, learning_rate=1e-12, max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X_train)
    return quality(X_test, model.inverse_transform(model.transform(X_test)))["squared_error"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small smoke run (minutes)")
    parser.add_argument("--only", nargs="+", help="run only these experiments (names in the JSON)")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="hs",
                        help="fine-tuning recipe pinned on every run (see the docstring)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=None, help="BLAS threads (default: all cores)")
    parser.add_argument("--verbose", type=int, default=0)
    parser.add_argument("--output", default=None, help="JSON file name under benchmarks/results/")
    parser.add_argument("--no-train-curve", action="store_true",
                        help="skip the training error after every epoch (a third of an epoch's time)")
    parser.add_argument("--time-budget-minutes", type=float, default=None,
                        help="fine-tune for as many epochs as fit in this much fit time "
                             "(pretraining included), measured after the third epoch")
    args = parser.parse_args(argv)

    use_local_mnist()
    from sklearn.decomposition import PCA

    from skdae.datasets import load_mnist

    load_start = list(os.getloadavg())
    command = " ".join(["python benchmarks/reproduce.py", *(argv if argv is not None else sys.argv[1:])])
    rows, curves, figures = [], {}, {}
    data_cache = {}
    for name, setting, params, budget in experiments(args.quick, args.recipe):
        if args.only and name not in args.only:
            continue
        key = (budget["n_train"], budget["n_test"])
        if key not in data_cache:
            train = load_mnist("train").data
            data_cache[key] = (
                train[: budget["n_train"]],
                load_mnist("test", n_samples=budget["n_test"]).data,
                # Validation for the paper setting: the next training images after the
                # paper's first n_train, never the test images.
                train[budget["n_train"] : budget["n_train"] + budget["n_val"]],
            )
        X_train, X_test = data_cache[key][:2]
        code = params["hidden_layer_sizes"][-1]
        print(f"\n== {name}: {'-'.join(map(str, (784, *params['hidden_layer_sizes'])))}, "
              f"{params.get('code_units')} code, pretrain={params.get('pretrain', True)}, "
              f"{budget['n_train']} train / {budget['n_test']} test", flush=True)
        X_val = data_cache[key][2] if setting == "paper" else None
        model, curve, fit_time, kept = train_with_curves(
            params, budget, X_train, X_test, X_val, args.seed, args.n_jobs, args.verbose,
            train_curve=not args.no_train_curve,
            time_budget=None if args.time_budget_minutes is None else 60 * args.time_budget_minutes)
        X_rec = model.inverse_transform(model.transform(X_test))
        base = dict(experiment=name, setting=setting, code=code, n_train=budget["n_train"],
                    n_test=budget["n_test"], pretrain_epochs=budget["pretrain_epochs"] if params.get("pretrain", True) else 0,
                    epochs=model.n_iter_, epoch_kept=kept, fit_seconds=round(fit_time, 1), command=command)
        ae_row = {**base, "model": f"autoencoder ({params.get('code_units')} code"
                  + ("" if params.get("pretrain", True) else ", no pretraining")
                  + (f", alpha {params['alpha']:g}" if params.get("alpha") else "")
                  + ("" if args.recipe == "hs" else f", {args.recipe} recipe") + ")", **quality(X_test, X_rec)}
        # Training error of the weights kept (the gap to the test error is the overfitting).
        ae_row["train_error"] = float(-model.score(X_train))
        rows.append(ae_row)
        curves[name] = curve
        if name == f"paper_sigmoid{'' if args.recipe == 'hs' else '_' + args.recipe}":
            binary = (X_rec >= 0.5).astype(np.float32)
            rows.append({**base, "model": "autoencoder, binarised output (0/255)", **quality(X_test, binary)})
            figures["paper"] = (X_test, X_rec, binary)
        if name == ("hs" if args.recipe == "hs" else f"hs_{args.recipe}"):
            figures["hs"] = (X_test, X_rec, None)
        if params.get("pretrain", True) and args.recipe == "hs":
            ae_row["error_before_finetuning"] = pretrained_only_error(
                params, budget, X_train, X_test, args.seed, args.n_jobs)
        pca_key = ("pca", code, key)
        if pca_key not in data_cache:
            tic = time.perf_counter()
            pca = PCA(n_components=code, random_state=args.seed).fit(X_train)
            pca_time = time.perf_counter() - tic
            X_pca = pca.inverse_transform(pca.transform(X_test))
            data_cache[pca_key] = X_pca
            rows.append(dict(experiment=f"pca_{code}", setting=setting, code=code, n_train=budget["n_train"],
                             n_test=budget["n_test"], epochs=None, fit_seconds=round(pca_time, 1), command=command,
                             model=f"PCA-{code}", **quality(X_test, X_pca)))
            figures.setdefault(f"pca_{code}", X_pca)

    columns = [("setting", "setting", ""), ("model", "model", ""), ("code", "code", "d"),
               ("n_train", "train", "d"), ("n_test", "test", "d"), ("epochs", "epochs", ""), ("epoch_kept", "kept", ""),
               ("squared_error", "error", ".3f"), ("train_error", "train error", ".3f"), ("error_before_finetuning", "before fine-tuning", ".2f"),
               ("psnr_db", "PSNR dB", ".2f"), ("mse_per_pixel", "MSE/pixel", ".5f"),
               ("fit_seconds", "fit s", "")]
    table = markdown_table(rows, columns)
    print("\n" + table)
    print(f"\nPublished (Hinton & Salakhutdinov 2006, Fig. 2): autoencoder {PUBLISHED['hs_autoencoder']}, "
          f"logistic PCA {PUBLISHED['hs_logistic_pca']}, PCA {PUBLISHED['hs_pca']}")
    out = args.output or ("reproduce" + ("_quick" if args.quick else "")
                          + ("" if args.recipe == "hs" else f"_{args.recipe}") + ".json")
    suffix = out[len("reproduce"):-len(".json")] if out.startswith("reproduce") else "_" + out[:-5]
    write_json(out, {"command": command, "recipe": {"name": args.recipe, **RECIPES[args.recipe]},
                     "load_average": {"start": load_start, "end": list(os.getloadavg())},
                     # A niced run on the shared machine gives curves, not timings.
                     "nice": os.nice(0), "n_jobs": args.n_jobs,
                     "machine": machine(), "published": PUBLISHED, "rows": rows,
                     "learning_curves": curves})
    (RESULTS / out.replace(".json", ".md")).write_text(f"Command: `{command}`\n\n{table}\n")
    _figures(figures, curves, suffix)
    return 0


def _figures(figures, curves, suffix):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no figures (pip install skdae[bench])")
        return
    if "paper" in figures:
        X_test, X_ae, X_bin = figures["paper"]
        X_pca = figures.get("pca_196")
        rows = [("test images", X_test), ("autoencoder 196", X_ae)]
        if X_pca is not None:
            rows.append(("PCA-196", X_pca))
        rows.append(("binarised", X_bin))
        if "hs" in figures:  # the H&S model's test set starts with the same images
            rows.append(("autoencoder 30 (H&S)", figures["hs"][1]))
        n = 10
        fig, axes = plt.subplots(len(rows), n, figsize=(n * 0.9, len(rows) * 1.0))
        for r, (label, X) in enumerate(rows):
            for c in range(n):
                ax = axes[r, c]
                ax.imshow(np.clip(X[c].reshape(28, 28), 0, 1), cmap="gray_r", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
            axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        fig.tight_layout()
        fig.savefig(RESULTS / f"reconstructions{suffix}.png", dpi=80)
        plt.close(fig)
    if curves:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name, curve in curves.items():
            epochs = np.arange(1, len(curve["test"]) + 1)
            (line,) = ax.plot(epochs, curve["test"], label=f"{name} test")
            if curve["train"]:
                ax.plot(epochs, curve["train"], "--", color=line.get_color(), label=f"{name} train")
            if curve["validation"]:
                ax.plot(epochs, curve["validation"], ":", color=line.get_color(),
                        label=f"{name} held-out training images")
        save_error_curves(fig, ax, "fine-tuning epoch", f"learning_curves{suffix}.png")


if __name__ == "__main__":
    sys.exit(main())
