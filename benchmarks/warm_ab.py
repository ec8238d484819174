"""Warm epochs of two versions of skdae, interleaved in one process: is a change slower?

    python benchmarks/warm_ab.py --before c06c3d3 --repeats 7
    python benchmarks/warm_ab.py --before main --only sgd adam

The version checked out (whatever ``import skdae`` finds) is "after"; ``--before`` names a
git revision whose ``skdae/`` is extracted to a temporary folder and imported as
``skdae_before`` (the package's imports are relative, so the two never mix; each compiles
its own kernels, in ``NUMBA_CACHE_DIR``). Every repeat runs each epoch of both versions
and the GEMM floor of a CD-1 epoch, alternating the order (before first, then after first),
so that both see the same machine: on a shared machine the speed of every multi-threaded
program drifts over minutes, which separate runs would read as a difference between
versions. Reports each epoch's per-repeat ratio after / before and its median.

Epochs (speed.py's settings, first 20,000 MNIST training images, batch 100, float32):
``cd`` and ``pcd`` one CD-1 (persistent) epoch of an RBM 784 -> 1000 (``RBM.fit``),
``sgd`` and ``adam`` one fine-tuning epoch of the 784-1000-500-196-500-1000-784
autoencoder (``partial_fit``). Compiles and first calls are made before any timing.

Writes benchmarks/results/warm_ab.json (or --output).
"""

import argparse
import importlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import speed  # noqa: E402
from _common import machine, markdown_table, use_local_mnist, write_json  # noqa: E402

EPOCHS = ("cd", "pcd", "sgd", "adam")


def extract(revision, folder):
    """``skdae/`` of git ``revision`` into ``folder/skdae_before``; returns the commit."""
    root = HERE.parent
    commit = subprocess.run(["git", "rev-parse", revision], cwd=root, check=True,
                            capture_output=True, text=True).stdout.strip()
    archive = Path(folder) / "before.tar"
    subprocess.run(["git", "archive", "-o", str(archive), commit, "skdae"], cwd=root, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    (Path(folder) / "skdae").rename(Path(folder) / "skdae_before")
    return commit


def epoch_fns(package, X, which):
    """name -> callable running one warm epoch with ``package``."""
    fns = {}

    def cd(persistent):
        def run():
            package.RBM(n_components=1000, max_iter=1, batch_size=speed.BATCH, random_state=0,
                        persistent=persistent).fit(X)
        return run

    def finetune(solver):
        model = package.RBMStackAutoencoder(
            speed.AUTOENCODER, code_units="sigmoid", pretrain=False, max_iter=1, solver=solver,
            learning_rate=speed.FT_LR, momentum=speed.FT_MOMENTUM, batch_size=speed.BATCH,
            random_state=0).fit(X[:200])
        return lambda: model.partial_fit(X)

    for name in which:
        fns[name] = cd(name == "pcd") if name in ("cd", "pcd") else finetune(name)
    return fns


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="git revision to compare against")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="+", choices=EPOCHS, default=list(EPOCHS))
    parser.add_argument("--n-samples", type=int, default=20000)
    parser.add_argument("--output", default="warm_ab.json",
                        help="JSON file name under benchmarks/results/")
    args = parser.parse_args(argv)

    use_local_mnist()
    X = np.ascontiguousarray(speed.load_data(args.n_samples)[: args.n_samples])
    with tempfile.TemporaryDirectory(prefix="skdae-before-") as folder:
        commit = extract(args.before, folder)
        sys.path.insert(0, folder)
        versions = {"before": importlib.import_module("skdae_before"),
                    "after": importlib.import_module("skdae")}
        import warnings

        from sklearn.exceptions import ConvergenceWarning

        warnings.simplefilter("ignore", ConvergenceWarning)
        small = np.ascontiguousarray(X[:300])
        for package in versions.values():  # compile (or load) every kernel on small data
            for fn in epoch_fns(package, small, args.only).values():
                fn()
        fns = {(name, tag): fn for tag, package in versions.items()
               for name, fn in epoch_fns(package, X, args.only).items()}
        for fn in fns.values():  # first full epochs: buffers, thread pools
            fn()
        floor = speed.cd_floor_fn(X, 1000, speed.numpy_gemm)
        floor()
        load_before = os.getloadavg()
        times = {f"{name}_{tag}": [] for name, tag in fns}
        times["cd_gemm_floor"] = []
        for r in range(args.repeats):
            order = list(fns) if r % 2 == 0 else list(fns)[::-1]
            times["cd_gemm_floor"].append(speed.timed(floor))
            for name, tag in order:
                times[f"{name}_{tag}"].append(speed.timed(fns[(name, tag)]))
            print(f"repeat {r + 1}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in times.items()),
                  flush=True)
    rows = []
    for name in args.only:
        before, after = np.array(times[f"{name}_before"]), np.array(times[f"{name}_after"])
        ratios = after / before
        rows.append({"epoch": name, "before_s": float(np.median(before)),
                     "after_s": float(np.median(after)), "ratio": float(np.median(ratios)),
                     "ratios": [round(float(v), 4) for v in ratios]})
    print(markdown_table(rows, [("epoch", "epoch", ""), ("before_s", "before, median s", ".3f"),
                                ("after_s", "after, median s", ".3f"),
                                ("ratio", "median of after / before", ".3f")]))
    path = write_json(args.output, {
        "command": "python benchmarks/warm_ab.py "
                   + " ".join(argv if argv is not None else sys.argv[1:]),
        "before": {"revision": args.before, "commit": commit},
        "after": "the checked-out tree", "n_samples": args.n_samples, "repeats": args.repeats,
        "times_s": times, "epochs": rows, "load_before": load_before,
        "load_after": os.getloadavg(), "threads": speed.thread_info(None), "machine": machine(),
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
