"""Photo patches, selection runs (issue 11): how the linear path's defaults were chosen
without looking at the other photograph.

Train on 30,000 random 12x12 grey patches of the LEFT three quarters (columns < 480) of
one sample photograph; score on 5,000 random patches of its RIGHT quarter (columns >=
480), which no training patch overlaps. The other photograph (the test of
``benchmarks/patches.py``) is never read. Fine-tuning variants (``--variants``, JSON
dicts for ``set_params``) start from one pretrained stack (cached in /tmp), so they
differ only in fine-tuning. Per epoch: PSNR on the right quarter minus PCA's
(``curve``), and the gain over the PCA start of the estimator's own validation rows
(random rows of the training patches, ``leaky``: they have near copies among the
training patches). ``kept_epoch`` is the epoch the estimator's early stopping keeps
(0: the PCA start) under the LINEAR_PATH_MARGIN of the code; ``shrink`` scales the
non-linear layers' output at that epoch. Quality only: run it niced, single-threaded.
Uses the estimator's private methods to share pretraining between variants.

Usage::

    python benchmarks/patches_selection.py china.jpg 24 --full --variants '{}' '{"alpha": 0.01}'
"""

import argparse
import copy
import hashlib
import json
import os
import pickle
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from patches import grey_image  # noqa: E402

from sklearn.decomposition import PCA  # noqa: E402
from sklearn.feature_extraction.image import extract_patches_2d  # noqa: E402
from sklearn.utils import check_random_state  # noqa: E402

from skdae import RBMStackAutoencoder  # noqa: E402
from skdae._base import stop_on_ctrl_c  # noqa: E402
from skdae._finetuning import LINEAR_PATH_MARGIN, validation_error  # noqa: E402

SPLIT = 480


def region_patches(grey, n, seed, size=12):
    p = extract_patches_2d(grey, (size, size), max_patches=n, random_state=seed)
    return p.reshape(n, -1).astype(np.float32)


def psnr(X, R):
    return 10 * np.log10(1.0 / np.mean((np.asarray(X, np.float64) - R) ** 2))


def rec(m, X):
    return m.inverse_transform(m.transform(X))


def shrunk(m, s):
    m = copy.deepcopy(m)
    n = len(m.coefs_) // 2
    for layer in (n - 1, 2 * n - 1):
        m.coefs_[layer] *= s
        m.intercepts_[layer] *= s
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("photo")
    ap.add_argument("code", type=int)
    ap.add_argument("--hidden", type=int, nargs="+", default=[1000, 500, 250])
    ap.add_argument("--n-train", type=int, default=30000)
    ap.add_argument("--variants", nargs="+", default=["{}"], help="JSON dicts of set_params")
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--full", action="store_true", help="run all epochs, not just to the stop")
    ap.add_argument("--pretrain-params", default="{}")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                  "patches_selection.jsonl"))
    args = ap.parse_args()

    grey = grey_image(args.photo)
    X = region_patches(grey[:, :SPLIT], args.n_train, 0)
    V = region_patches(grey[:, SPLIT:], 5000, 1)
    pca = PCA(args.code).fit(X)
    pca_v = psnr(V, rec(pca, V))
    pp = json.loads(args.pretrain_params)
    hidden = "-".join(map(str, args.hidden))
    tag = f"{args.photo}-{args.code}-{hidden}-{args.n_train}-{sorted(pp.items())}"
    cache = f"/tmp/patches-pretrained-{hashlib.sha1(tag.encode()).hexdigest()[:12]}.pkl"
    est = RBMStackAutoencoder((*args.hidden, args.code), visible_units="gaussian",
                              random_state=0, n_jobs=1, **pp)
    data = est._training_rows(X, reset=True)
    rng = check_random_state(0)
    if os.path.exists(cache):
        with open(cache, "rb") as f:
            base, holdout = pickle.load(f)
        data.holdout = holdout
    else:
        tic = time.perf_counter()
        with stop_on_ctrl_c() as stop:
            est._initialize(data, rng, stop, validation=True)
        print(f"pretrained in {time.perf_counter() - tic:.0f} s", flush=True)
        base = est
        with open(cache, "wb") as f:
            pickle.dump((base, data.holdout), f)
    print(f"{tag}: PCA spatial {pca_v:.3f} dB", flush=True)
    for variant in args.variants:
        params = json.loads(variant)
        m = copy.deepcopy(base)
        m.set_params(max_iter=args.epochs, **params)
        ft = m._fine_tuner(data)
        start_err = validation_error(m, data)
        m.best_validation_score_ = -start_err
        ft.start_bar = -start_err * (1.0 - LINEAR_PATH_MARGIN)
        leaky = []
        best_params, best_epoch, stop_epoch = m._params.copy(), 0, None
        curve = []
        tic = time.perf_counter()
        with stop_on_ctrl_c():
            for epoch in range(1, args.epochs + 1):
                loss = ft._epoch(data)
                before = m.best_validation_score_
                _, converged = ft._record(loss, data)
                if m.best_validation_score_ > before and stop_epoch is None:
                    best_params, best_epoch = m._params.copy(), epoch
                gain = psnr(V, rec(m, V)) - pca_v
                curve.append(round(gain, 3))
                leaky.append(round(10 * np.log10(start_err / -m.validation_scores_[-1]), 3))
                if converged and stop_epoch is None:
                    stop_epoch = epoch
                    if not args.full:
                        break
        secs = time.perf_counter() - tic
        kept = copy.deepcopy(m)
        kept._params[...] = best_params
        shrink = {s: round(psnr(V, rec(shrunk(kept, s), V)) - pca_v, 3)
                  for s in (0.25, 0.5, 0.75, 1.0)}
        row = dict(photo=args.photo, code=args.code, hidden=args.hidden, n_train=args.n_train,
                   pretrain=pp, params=params, kept_epoch=best_epoch, stop_epoch=stop_epoch,
                   kept_gain=shrink[1.0], shrink=shrink, curve=curve,
                   best_curve=max(curve), leaky=leaky, margin=LINEAR_PATH_MARGIN,
                   seconds=round(secs))
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
