"""Out-of-core training at scale: time and private memory against the number of images.

    python benchmarks/scale.py            # full run (about an hour on a quiet 2-core machine)
    python benchmarks/scale.py --quick    # smoke run: 20k and 40k images, a few minutes
    python benchmarks/scale.py --only fit --sizes 60000 250000

Sections (``--only`` picks some of them):

fit       For N = 60k, 250k and 1M "infinite MNIST" images (random shifts, rotations and
          elastic distortions of the 60,000 training digits, :mod:`skdae.augment`, uint8,
          written once under ``--data-dir``), one ``RBMStackAutoencoder`` fit of
          Hinton & Salakhutdinov's 784-1000-500-250-30 with 1 pretraining epoch per RBM
          and 1 fine-tuning epoch, per input kind: an in-memory array (N <= 250k), an
          ``np.memmap``, a Zarr array and a Dask array over the Zarr store. Each fit runs
          in its own process: seconds per epoch of each phase (from ``verbose``), total
          time, and peak ``RssAnon`` (private memory, sampled every 10 ms from
          /proc/self/status; the data's page cache is file-backed and not counted).
upper     How upper RBMs of a streamed fit get their data: recomputed through the frozen
          layers below at every epoch, or spilled once to a temporary memmap. 250k
          memmapped images (``--upper-n``), 3 pretraining epochs per RBM
          (``--upper-epochs``) and 1 fine-tuning epoch.
quality   (only with ``--only quality``) MNIST 60,000 / 10,000, 784-500-250-30 with
          skdae's full schedule, 10 pretraining epochs per RBM and 50 fine-tuning epochs
          (``--quality-hidden``, ``--quality-epochs``), seeds 0, 1, 2: test error
          (squared error per image) of an in-memory fit (a full shuffle every epoch), of a
          fit streamed from a memmap in chunks of 5,000 rows (chunk order and rows within
          chunks shuffled), and of ``dask_ml.wrappers.Incremental`` over a Dask array of
          6,000-row blocks (``samples_per_pass=60000``, 3 x 10 + 50 passes). A run of
          one seed takes 11-15 minutes: run them as separate runs with ``--seeds 0
          --append``, ``--seeds 1 --append``, ... (the JSON keeps the other seeds).
grid      The README's ``GridSearchCV`` over a Pipeline (MinMaxScaler, then
          RBMStackAutoencoder with hidden_layer_sizes (500, 250, 30) or
          (1000, 500, 250, 30), 5 pretraining and 20 fine-tuning epochs, or PCA(30)) on
          6,000 MNIST images (``--grid-n``), cv=3, each fit on one core: wall time with
          n_jobs=1, n_jobs=2 and on a 2-worker ``distributed.LocalCluster`` (1 thread
          each, joblib's Dask backend); and a worker's first fit with a cold (fresh,
          empty ``NUMBA_CACHE_DIR``) and with a warm (the same folder, filled by the
          first) Numba cache.
sparse    ``RBM`` on a generated binary bag-of-words CSR matrix (Zipf word frequencies;
          20,000 documents x 50,000 words, 4 GB as dense float32), 2 epochs, in its
          own process: peak RssAnon of fit and of transform, against the matrix's dense
          and sparse sizes.

Writes benchmarks/results/scale.json (scale_quick.json with --quick) and scale.png (time
per epoch and peak private memory against N).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, markdown_table, use_local_mnist, write_json  # noqa: E402

SECTIONS = ("fit", "upper", "grid", "quality", "sparse")
DEFAULT_SECTIONS = ("fit", "upper", "grid", "sparse")
# quality: skdae's full schedule (10 epochs per RBM, 50 fine-tuning epochs) on
# 784-500-250-30, since nine fits of 784-1000-500-250-30 with it would take over an hour
# on 2 cores (see --quality-hidden and --quality-epochs for other budgets).
QUALITY_HIDDEN = (500, 250, 30)
QUALITY_EPOCHS = {"pretrain_epochs": 10, "max_iter": 50}
# grid: the README's search (its "Use" section), cv=3, on --grid-n images.
GRID_HIDDEN = [(500, 250, 30), (1000, 500, 250, 30)]
GRID_EPOCHS = {"pretrain_epochs": 5, "max_iter": 20}
GRID_CV = 3
QUALITY_CHUNK = 5000
QUALITY_BLOCK = 6000
KINDS = ("memory", "memmap", "zarr", "dask")
HIDDEN = (1000, 500, 250, 30)
PHASE = re.compile(r"^\[(RBM (\d)/\d [^\]]*|fine-tune)\] epoch \d+, .*, ([0-9.]+) s$")


class PeakRssAnon:
    """Peak private (anonymous) resident memory of this process, sampled in a thread."""

    def __init__(self, interval=0.01):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    @staticmethod
    def now():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            time.sleep(self.interval)

    def __enter__(self):
        self.peak = self.now()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


# ------------------------------------------------------------------------------ data


def mnist_uint8():
    from skdae.datasets import load_mnist

    return load_mnist("train", dtype=np.uint8, scale=False).data.reshape(-1, 28, 28)


def dataset(n, data_dir, kind):
    """The N augmented images as a memmap or a Zarr store, written on first use."""
    from skdae.augment import write_augmented

    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / f"mnist_augmented_{n}.{'zarr' if kind == 'zarr' else 'u8'}"
    done = path.with_name(path.name + ".done")
    tic = time.perf_counter()
    if not done.exists():
        if kind == "zarr":  # the same images as the memmap, copied chunk by chunk
            import zarr

            source = dataset(n, data_dir, "memmap")[0]
            z = zarr.create_array(store=str(path), shape=source.shape, dtype=np.uint8,
                                  chunks=(8192, 784), overwrite=True)
            for r0 in range(0, n, 65536):
                z[r0 : r0 + 65536] = source[r0 : r0 + 65536]
        else:
            write_augmented(mnist_uint8(), n, path, kind="memmap", random_state=0)
        done.write_text("ok")
    seconds = time.perf_counter() - tic
    if kind == "zarr":
        import zarr

        return zarr.open_array(str(path), mode="r"), seconds
    return np.memmap(path, np.uint8, mode="r", shape=(n, 784)), seconds


def open_input(n, data_dir, kind):
    if kind == "memmap":
        return dataset(n, data_dir, "memmap")[0]
    if kind == "memory":
        return np.array(dataset(n, data_dir, "memmap")[0])
    z = dataset(n, data_dir, "zarr")[0]
    if kind == "zarr":
        return z
    import dask.array as da

    return da.from_zarr(z)


# ------------------------------------------------------------------------- one fit


def child_fit(spec):
    """Run in a fresh process: one fit, its phase times and its peak RssAnon."""
    import contextlib
    import io

    import skdae._pretraining
    from skdae import RBMStackAutoencoder

    skdae._pretraining.UPPER_LAYERS = spec.get("upper", "auto")
    X = open_input(spec["n"], Path(spec["data_dir"]), spec["kind"])
    model = RBMStackAutoencoder(HIDDEN, pretrain_epochs=spec["pretrain_epochs"],
                                max_iter=spec["max_iter"], random_state=0, verbose=1)
    # Compile (or load from the cache) outside the measurement: in-memory arrays and the
    # read-only chunks of a streamed fit are different Numba types.
    warm = np.random.default_rng(0).random((400, 784), dtype=np.float32)
    RBMStackAutoencoder((8, 4), pretrain_epochs=1, max_iter=1).fit(warm)
    warm.flags.writeable = False
    RBMStackAutoencoder((8, 4), pretrain_epochs=2, max_iter=1, chunk_size=200).fit(warm)
    log = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(log):
        warnings.simplefilter("ignore")
        with PeakRssAnon() as memory:
            tic = time.perf_counter()
            model.fit(X)
            total = time.perf_counter() - tic
    phases = {}
    for line in log.getvalue().splitlines():
        match = PHASE.match(line.strip())
        if match:
            name = f"rbm{match.group(2)}" if match.group(2) else "finetune"
            phases.setdefault(name, []).append(float(match.group(3)))
    return {"n": spec["n"], "kind": spec["kind"], "upper": skdae._pretraining.UPPER_LAYERS,
            "seconds": total, "epoch_seconds": {k: float(np.mean(v)) for k, v in phases.items()},
            "other_seconds": total - sum(sum(v) for v in phases.values()),
            "peak_rss_anon_mb": memory.peak / 2**20,
            "reconstruction_error": float(model.loss_curve_[-1])}


def child_result(spec):
    """Run one measurement in a fresh process (its peak memory is its own) and return the
    JSON line it prints last, with the 1-minute load average before it started."""
    load = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"child failed for {spec}:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["load_before"] = load
    return result


def run_child(spec):
    if spec["n"] >= 1_000_000:  # each 1M-image fit is a heavy run of its own
        wait_for_quiet()
    result = child_result(spec)
    print(f"  {spec['kind']:>6} n={spec['n']:>8}: {result['seconds']:7.1f} s, peak RssAnon "
          f"{result['peak_rss_anon_mb']:6.0f} MB, epochs {result['epoch_seconds']}", flush=True)
    return result


WAIT = True


def wait_for_quiet(limit=1.0, patience=1200):
    """Wait (up to ``patience`` seconds, polling every 30 s) for a 1-minute load below
    ``limit`` before each section and each 1M-image fit (not with --quick or --no-wait):
    the machine is shared. The load at the start of each measurement is recorded.

    Under the project's benchmark lock (``flock /work/bench.lock ...``) pass --no-wait:
    the lock keeps benchmarks apart, the rest of the load is niced work that yields the
    cores, and waiting would only hold the lock idle."""
    start = time.time()
    if not WAIT:
        return
    while os.getloadavg()[0] >= limit and time.time() - start < patience:
        time.sleep(30)


# ------------------------------------------------------------------------ sections


def section_fit(args):
    rows = []
    for n in args.sizes:
        tic = time.perf_counter()
        dataset(n, args.data_dir, "memmap")
        if "zarr" in args.kinds or "dask" in args.kinds:
            dataset(n, args.data_dir, "zarr")
        print(f"data for n={n}: {time.perf_counter() - tic:.1f} s", flush=True)
        for kind in args.kinds:
            if kind == "memory" and n > args.max_in_memory:
                continue
            rows.append(run_child({"n": n, "kind": kind, "data_dir": str(args.data_dir),
                                   "pretrain_epochs": 1, "max_iter": 1}))
    return rows


def section_upper(args):
    n = args.upper_n
    dataset(n, args.data_dir, "memmap")
    return [run_child({"n": n, "kind": "memmap", "data_dir": str(args.data_dir),
                       "pretrain_epochs": args.upper_epochs, "max_iter": 1, "upper": upper})
            for upper in ("recompute", "spill")]


def reconstruction_score(pipe, X, y=None):
    return -float(((pipe.inverse_transform(pipe.transform(X)) - X) ** 2).sum(axis=1).mean())


def _grid(args):
    """The README's search: a Pipeline (MinMaxScaler, then the autoencoder or PCA) over
    the autoencoder's ``hidden_layer_sizes`` and PCA, on ``--grid-n`` MNIST images."""
    from sklearn.decomposition import PCA
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MinMaxScaler

    from skdae import RBMStackAutoencoder
    from skdae.datasets import load_mnist

    X = load_mnist("train", n_samples=args.grid_n).data
    pipe = Pipeline([("scale", MinMaxScaler()), ("reduce", PCA(30))])
    # n_jobs=1: each fit on one core, the search's own n_jobs (or the cluster's workers)
    # decides how many run at once.
    grid = [{"reduce": [RBMStackAutoencoder(pretrain_epochs=GRID_EPOCHS["pretrain_epochs"],
                                            max_iter=GRID_EPOCHS["max_iter"],
                                            random_state=0, n_jobs=1)],
             "reduce__hidden_layer_sizes": GRID_HIDDEN},
            {"reduce": [PCA(30)]}]
    return X, pipe, grid


def _first_fit_on_worker(cache_dir):
    """Seconds of a worker's first (tiny) fit, the Numba cache in ``cache_dir``."""
    import distributed

    def first_fit():
        import time as t

        tic = t.perf_counter()
        import numpy
        from skdae import RBMStackAutoencoder

        X = numpy.random.default_rng(0).random((500, 64), dtype=numpy.float32)
        RBMStackAutoencoder((32, 8), pretrain_epochs=1, max_iter=1).fit(X)
        return t.perf_counter() - tic

    env = {"NUMBA_CACHE_DIR": str(cache_dir)}
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None,
                                  env=env) as cluster, distributed.Client(cluster) as client:
        return client.submit(first_fit, pure=False).result()


def section_grid(args):
    import joblib
    import distributed
    from sklearn.model_selection import GridSearchCV

    X, pipe, grid = _grid(args)
    rows = []
    for label in ("n_jobs=1", "n_jobs=2", "LocalCluster 2x1"):
        load = os.getloadavg()[0]
        tic = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if label.startswith("Local"):
                with distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                              dashboard_address=None) as cluster, \
                        distributed.Client(cluster), joblib.parallel_config("dask"):
                    search = GridSearchCV(pipe, grid, scoring=reconstruction_score, cv=GRID_CV)
                    search.fit(X)
            else:
                search = GridSearchCV(pipe, grid, scoring=reconstruction_score, cv=GRID_CV,
                                      n_jobs=int(label[-1])).fit(X)
        seconds = time.perf_counter() - tic
        rows.append({"setting": label, "seconds": seconds, "refit_seconds": search.refit_time_,
                     "search_seconds": seconds - search.refit_time_,
                     "best": str(search.best_params_["reduce__hidden_layer_sizes"]
                                 if "reduce__hidden_layer_sizes" in search.best_params_
                                 else search.best_params_["reduce"]),
                     "mean_test_scores": search.cv_results_["mean_test_score"].tolist(),
                     "mean_fit_seconds": search.cv_results_["mean_fit_time"].tolist(),
                     "load_before": load})
        print(f"  grid {label}: {seconds:.1f} s (refit {search.refit_time_:.1f} s)",
              flush=True)
    candidates = [str(p["reduce__hidden_layer_sizes"]) if "reduce__hidden_layer_sizes" in p
                  else "PCA(30)" for p in search.cv_results_["params"]]
    # A fresh, empty NUMBA_CACHE_DIR for the worker (it compiles every kernel its first
    # fit needs), then the same folder again in a new cluster (it loads them).
    with tempfile.TemporaryDirectory() as cache:
        cold = _first_fit_on_worker(cache)
        warm = _first_fit_on_worker(cache)
    print(f"  worker's first fit: cold cache {cold:.1f} s, warm cache {warm:.1f} s")
    return {"n": args.grid_n, "cv": GRID_CV, "epochs": GRID_EPOCHS, "candidates": candidates,
            "search": rows, "worker_first_fit_cold_s": cold, "worker_first_fit_warm_s": warm}


def section_quality(args):
    from dask_ml.wrappers import Incremental
    import dask.array as da

    from skdae import RBMStackAutoencoder
    from skdae.datasets import load_mnist

    n_train = 6000 if args.quick else 60000
    X = load_mnist("train", n_samples=n_train).data
    X_test = load_mnist("test", n_samples=1000 if args.quick else None).data
    path = args.data_dir / f"mnist_train_{n_train}.f32"
    args.data_dir.mkdir(parents=True, exist_ok=True)
    mm = np.memmap(path, np.float32, "w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    mm = np.memmap(path, np.float32, "r", shape=X.shape)
    hidden, epochs = tuple(args.quality_hidden), dict(zip(QUALITY_EPOCHS, args.quality_epochs))
    n_layers = len(hidden)
    rows = []
    for seed in args.seeds:
        def model(**extra):
            return RBMStackAutoencoder(hidden, random_state=seed, **epochs, **extra)

        runs = {"in-memory fit (full shuffle)": lambda: model().fit(X),
                f"memmap, chunks of {QUALITY_CHUNK}":
                    lambda: model(chunk_size=QUALITY_CHUNK).fit(mm)}

        def incremental():
            inc = Incremental(model(samples_per_pass=n_train), shuffle_blocks=True,
                              random_state=seed)
            dX = da.from_array(X, chunks=(QUALITY_BLOCK, X.shape[1]))
            inc.fit(dX)
            for _ in range(n_layers * epochs["pretrain_epochs"] + epochs["max_iter"] - 1):
                inc.partial_fit(dX)
            return inc.estimator_

        runs[f"Incremental, blocks of {QUALITY_BLOCK}"] = incremental
        for label, run in runs.items():
            load = os.getloadavg()[0]
            tic = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ae = run()
            rows.append({"seed": seed, "setting": label, "test_error": -ae.score(X_test),
                         "train_error": -ae.score(X[:10000]), "seconds": time.perf_counter() - tic,
                         "n_iter": ae.n_iter_, "load_before": load})
            print(f"  seed {seed} {label}: test error {rows[-1]['test_error']:.3f} "
                  f"({rows[-1]['seconds']:.0f} s)", flush=True)
    del mm
    path.unlink()
    config = {"model": [784, *hidden], "epochs": epochs, "chunk_size": QUALITY_CHUNK,
              "block": QUALITY_BLOCK, "n_train": n_train}
    if args.append and args.previous.get("quality", {}).get("config") == config:
        # Seeds run in separate (locked) runs add up: keep the other seeds' rows.
        rows = [r for r in args.previous["quality"]["runs"] if r["seed"] not in args.seeds] + rows
    rows.sort(key=lambda r: r["seed"])
    summary = {}
    for label in dict.fromkeys(r["setting"] for r in rows):
        errors = [r["test_error"] for r in rows if r["setting"] == label]
        summary[label] = {"mean_test_error": float(np.mean(errors)), "test_errors": errors}
    base = summary["in-memory fit (full shuffle)"]["mean_test_error"]
    for value in summary.values():
        value["relative_to_full_shuffle"] = value["mean_test_error"] / base - 1
    return {"config": config, "seeds": sorted({r["seed"] for r in rows}), "runs": rows,
            "summary": summary}


def bag_of_words(n_docs, vocabulary, words_per_doc, seed=0):
    """Binary bag-of-words (CSR, float32) with Zipf word frequencies."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n_docs), words_per_doc)
    cols = np.minimum(rng.zipf(1.3, size=rows.size) - 1, vocabulary - 1)
    X = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(n_docs, vocabulary))
    X.sum_duplicates()
    X.data[:] = 1
    return X


SPARSE_SHAPE, SPARSE_WORDS, SPARSE_COMPONENTS, SPARSE_EPOCHS = (20_000, 50_000), 100, 64, 2


def child_sparse(spec):
    """Run in a fresh process: peak RssAnon of an RBM's fit and transform on CSR input."""
    from skdae import RBM

    X = bag_of_words(*SPARSE_SHAPE, SPARSE_WORDS)
    params = {"n_components": SPARSE_COMPONENTS, "batch_size": 100, "random_state": 0}
    RBM(max_iter=1, **params).fit(X[:500])  # compile (or load) outside the measurement
    model = RBM(max_iter=SPARSE_EPOCHS, **params)
    before = PeakRssAnon.now()
    with PeakRssAnon() as fit_memory:
        tic = time.perf_counter()
        model.fit(X)
        fit_seconds = time.perf_counter() - tic
    with PeakRssAnon() as transform_memory:
        codes = model.transform(X)
    sparse_bytes = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    return {"shape": list(X.shape), "nnz": int(X.nnz), "n_components": SPARSE_COMPONENTS,
            "epochs": SPARSE_EPOCHS, "dense_float32_mb": X.shape[0] * X.shape[1] * 4 / 2**20,
            "csr_mb": sparse_bytes / 2**20, "codes_mb": codes.nbytes / 2**20,
            "rss_anon_before_fit_mb": before / 2**20,
            "peak_rss_anon_fit_mb": fit_memory.peak / 2**20,
            "peak_rss_anon_transform_mb": transform_memory.peak / 2**20,
            "fit_seconds": fit_seconds}


def section_sparse(args):
    result = child_result({"sparse": True})
    print(f"  sparse {result['shape']}: dense {result['dense_float32_mb']:.0f} MB, CSR "
          f"{result['csr_mb']:.0f} MB, peak RssAnon fit {result['peak_rss_anon_fit_mb']:.0f} MB"
          f" (before {result['rss_anon_before_fit_mb']:.0f} MB), transform "
          f"{result['peak_rss_anon_transform_mb']:.0f} MB", flush=True)
    return result


# --------------------------------------------------------------------------- report


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4))
    for kind in KINDS:
        mine = sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["n"])
        if not mine:
            continue
        ns = [r["n"] for r in mine]
        ax_t.plot(ns, [r["seconds"] for r in mine], "o-", label=kind)
        ax_m.plot(ns, [r["peak_rss_anon_mb"] for r in mine], "o-", label=kind)
    ax_t.set(xscale="log", yscale="log", xlabel="images", ylabel="fit seconds (1 epoch/phase)",
             title="time")
    ax_m.set(xscale="log", xlabel="images", ylabel="peak RssAnon (MB)", title="private memory")
    ax_m.axhline(1024, color="grey", ls=":", lw=1)
    for ax in (ax_t, ax_m):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def report(payload):
    fit_rows = payload.get("fit", [])
    for r in fit_rows + payload.get("upper", []):
        r.update({f"epoch_{k}": v for k, v in r["epoch_seconds"].items()})
    columns = [("n", "images", ","), ("kind", "input", ""), ("epoch_rbm1", "RBM 1 s", ".1f"),
               ("epoch_rbm2", "RBM 2 s", ".1f"), ("epoch_rbm3", "RBM 3 s", ".1f"),
               ("epoch_rbm4", "RBM 4 s", ".1f"), ("epoch_finetune", "fine-tune s", ".1f"),
               ("seconds", "fit s", ".1f"), ("peak_rss_anon_mb", "peak RssAnon MB", ".0f")]
    if fit_rows:
        print(markdown_table(fit_rows, columns))
    if payload.get("upper"):
        print(markdown_table(payload["upper"], [("upper", "upper layers", "")] + columns[2:]))
    if payload.get("quality"):
        table = [{"setting": k, **v} for k, v in payload["quality"]["summary"].items()]
        print(markdown_table(table, [("setting", "MNIST 60k/10k", ""),
                                     ("mean_test_error", "mean test error", ".3f"),
                                     ("relative_to_full_shuffle", "vs full shuffle", "+.2%")]))
    if payload.get("grid"):
        print(markdown_table(payload["grid"]["search"],
                             [("setting", "grid search", ""), ("seconds", "wall s", ".1f")]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--only", nargs="+", choices=SECTIONS)
    parser.add_argument("--sizes", nargs="+", type=int, default=None)
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--data-dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "skdae-scale",
                        help="where the augmented images are written (default: "
                        "/tmp/skdae-scale)")
    parser.add_argument("--max-in-memory", type=int, default=250_000,
                        help="largest N fitted as an in-memory array")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--quality-hidden", nargs="+", type=int, default=list(QUALITY_HIDDEN))
    parser.add_argument("--quality-epochs", nargs=2, type=int, metavar=("PRETRAIN", "FINETUNE"),
                        default=list(QUALITY_EPOCHS.values()))
    parser.add_argument("--append", action="store_true",
                        help="quality: add these seeds to the output JSON's other seeds "
                        "(same model and epochs), so seeds can run in separate runs")
    parser.add_argument("--grid-n", type=int, default=None,
                        help="MNIST images of the grid search (default 6,000)")
    parser.add_argument("--upper-n", type=int, default=None)
    parser.add_argument("--upper-epochs", type=int, default=3,
                        help="pretraining epochs per RBM in the upper section")
    parser.add_argument("--no-wait", action="store_true",
                        help="do not wait for a quiet machine (under a benchmark lock)")
    parser.add_argument("--output", default=None,
                        help="JSON file name under benchmarks/results/")
    parser.add_argument("--plot", nargs="+", default=None, metavar="JSON",
                        help="only draw scale.png from the fit rows of these result files")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    use_local_mnist()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(child_sparse(spec) if spec.get("sparse") else child_fit(spec)))
        return 0
    global WAIT
    WAIT = not (args.quick or args.no_wait)
    args.sizes = args.sizes or ([20_000, 40_000] if args.quick else [60_000, 250_000, 1_000_000])
    args.upper_n = args.upper_n or (20_000 if args.quick else 250_000)
    args.grid_n = args.grid_n or (2_000 if args.quick else 6_000)
    if args.plot:
        rows = [r for f in args.plot for r in json.loads((RESULTS / f).read_text())["fit"]]
        plot(rows, RESULTS / "scale.png")
        print("wrote", RESULTS / "scale.png")
        return 0
    sections = args.only or DEFAULT_SECTIONS
    name = args.output or ("scale_quick.json" if args.quick else
                           "scale.json" if not args.only else f"scale_{'_'.join(sections)}.json")
    args.previous = {}
    if args.append and (RESULTS / name).exists():
        args.previous = json.loads((RESULTS / name).read_text())
    payload = {"machine": machine(), "model": list(HIDDEN), "quick": args.quick,
               "command": " ".join(["python", "benchmarks/scale.py", *(argv or sys.argv[1:])]),
               "load_at_start": list(os.getloadavg())}
    if args.append and args.previous:  # the runs of the other seeds, for the record
        payload["earlier_commands"] = (args.previous.get("earlier_commands", [])
                                       + [args.previous.get("command")])
    for section in sections:
        wait_for_quiet()  # each section is a heavy run: start it on a quiet machine
        print(f"== {section} (load {os.getloadavg()[0]:.2f})", flush=True)
        payload[section] = globals()[f"section_{section}"](args)
    report(payload)
    print("wrote", write_json(name, payload))
    if payload.get("fit") and name in ("scale.json", "scale_quick.json"):
        plot(payload["fit"], RESULTS / name.replace(".json", ".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
