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
          memmapped images (``--upper-n``), 3 pretraining epochs per RBM.
quality   (only with ``--only quality``) MNIST 60,000 / 10,000, 784-1000-500-250-30, 2
          pretraining epochs per RBM and 4 fine-tuning epochs, seeds 0, 1, 2: test error
          (squared error per image) of an in-memory fit (a full shuffle every epoch), of a
          fit streamed from a memmap in chunks of 5,000 rows (chunk order and rows within
          chunks shuffled), and of ``dask_ml.wrappers.Incremental`` over a Dask array of
          6,000-row blocks (``samples_per_pass=60000``, 4 x 2 + 4 passes).
grid      ``GridSearchCV`` over a Pipeline (MinMaxScaler, then RBMStackAutoencoder or PCA)
          on 10,000 MNIST images, cv=2: wall time with n_jobs=1, n_jobs=2 and on a
          2-worker ``distributed.LocalCluster`` (joblib's Dask backend); and a worker's
          first fit with a cold and with a warm Numba cache.

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

SECTIONS = ("fit", "upper", "grid", "quality")
DEFAULT_SECTIONS = ("fit", "upper", "grid")
# quality: Hinton & Salakhutdinov's model with fewer epochs than skdae's defaults (10 per
# RBM, 50 fine-tuning), so that 9 fits take minutes each, not hours.
QUALITY_EPOCHS = {"pretrain_epochs": 2, "max_iter": 4}
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
    # Compile (or load from the cache) outside the measurement.
    RBMStackAutoencoder((8, 4), pretrain_epochs=1, max_iter=1).fit(
        np.random.default_rng(0).random((200, 784), dtype=np.float32))
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


def run_child(spec):
    if spec["n"] >= 1_000_000:  # each 1M-image fit is a heavy run of its own
        wait_for_quiet()
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"child failed for {spec}:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["load_before"] = os.getloadavg()[0]
    print(f"  {spec['kind']:>6} n={spec['n']:>8}: {result['seconds']:7.1f} s, peak RssAnon "
          f"{result['peak_rss_anon_mb']:6.0f} MB, epochs {result['epoch_seconds']}", flush=True)
    return result


WAIT = True


def wait_for_quiet(limit=1.0, patience=1200):
    """Wait (up to ``patience`` seconds, polling every 30 s) for a 1-minute load below
    ``limit`` before each section and each 1M-image fit (not in --quick runs): the
    machine is shared. The load at the start of each measurement is recorded."""
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
                       "pretrain_epochs": 3, "max_iter": 1, "upper": upper})
            for upper in ("recompute", "spill")]


def reconstruction_score(pipe, X, y=None):
    return -float(((pipe.inverse_transform(pipe.transform(X)) - X) ** 2).sum(axis=1).mean())


def _grid(n):
    from sklearn.decomposition import PCA
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MinMaxScaler

    from skdae import RBMStackAutoencoder
    from skdae.datasets import load_mnist

    X = load_mnist("train", n_samples=n).data
    pipe = Pipeline([("scale", MinMaxScaler()), ("reduce", PCA(30))])
    grid = [{"reduce": [RBMStackAutoencoder(pretrain_epochs=1, max_iter=2, random_state=0,
                                            n_jobs=1)],
             "reduce__hidden_layer_sizes": [(256, 30), (500, 250, 30)]},
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

    X, pipe, grid = _grid(args.grid_n)
    rows = []
    for label in ("n_jobs=1", "n_jobs=2", "LocalCluster 2x1"):
        tic = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if label.startswith("Local"):
                with distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                              dashboard_address=None) as cluster, \
                        distributed.Client(cluster), joblib.parallel_config("dask"):
                    search = GridSearchCV(pipe, grid, scoring=reconstruction_score, cv=2)
                    search.fit(X)
            else:
                search = GridSearchCV(pipe, grid, scoring=reconstruction_score, cv=2,
                                      n_jobs=int(label[-1])).fit(X)
        rows.append({"setting": label, "seconds": time.perf_counter() - tic,
                     "best": str(search.best_params_), "load_before": os.getloadavg()[0]})
        print(f"  grid {label}: {rows[-1]['seconds']:.1f} s", flush=True)
    with tempfile.TemporaryDirectory() as cache:
        cold = _first_fit_on_worker(cache)
        warm = _first_fit_on_worker(cache)
    print(f"  worker's first fit: cold cache {cold:.1f} s, warm cache {warm:.1f} s")
    return {"search": rows, "worker_first_fit_cold_s": cold, "worker_first_fit_warm_s": warm}


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
    n_layers = len(HIDDEN)
    rows = []
    for seed in args.seeds:
        def model(**extra):
            return RBMStackAutoencoder(HIDDEN, random_state=seed, **QUALITY_EPOCHS, **extra)

        runs = {"in-memory fit (full shuffle)": lambda: model().fit(X),
                f"memmap, chunks of {QUALITY_CHUNK}":
                    lambda: model(chunk_size=QUALITY_CHUNK).fit(mm)}

        def incremental():
            inc = Incremental(model(samples_per_pass=n_train), shuffle_blocks=True,
                              random_state=seed)
            dX = da.from_array(X, chunks=(QUALITY_BLOCK, X.shape[1]))
            inc.fit(dX)
            for _ in range(n_layers * QUALITY_EPOCHS["pretrain_epochs"]
                           + QUALITY_EPOCHS["max_iter"] - 1):
                inc.partial_fit(dX)
            return inc.estimator_

        runs[f"Incremental, blocks of {QUALITY_BLOCK}"] = incremental
        for label, run in runs.items():
            tic = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ae = run()
            rows.append({"seed": seed, "setting": label, "test_error": -ae.score(X_test),
                         "train_error": -ae.score(X[:10000]), "seconds": time.perf_counter() - tic,
                         "n_iter": ae.n_iter_, "load_before": os.getloadavg()[0]})
            print(f"  seed {seed} {label}: test error {rows[-1]['test_error']:.3f} "
                  f"({rows[-1]['seconds']:.0f} s)", flush=True)
    del mm
    path.unlink()
    summary = {}
    for label in dict.fromkeys(r["setting"] for r in rows):
        errors = [r["test_error"] for r in rows if r["setting"] == label]
        summary[label] = {"mean_test_error": float(np.mean(errors)), "test_errors": errors}
    base = summary["in-memory fit (full shuffle)"]["mean_test_error"]
    for value in summary.values():
        value["relative_to_full_shuffle"] = value["mean_test_error"] / base - 1
    return {"epochs": QUALITY_EPOCHS, "runs": rows, "summary": summary}


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
    parser.add_argument("--upper-n", type=int, default=None)
    parser.add_argument("--output", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    use_local_mnist()
    if args.child:
        print(json.dumps(child_fit(json.loads(args.child))))
        return 0
    global WAIT
    WAIT = not args.quick
    args.sizes = args.sizes or ([20_000, 40_000] if args.quick else [60_000, 250_000, 1_000_000])
    args.upper_n = args.upper_n or (20_000 if args.quick else 250_000)
    args.grid_n = 2_000 if args.quick else 10_000
    sections = args.only or DEFAULT_SECTIONS
    payload = {"machine": machine(), "model": list(HIDDEN), "quick": args.quick}
    for name in sections:
        wait_for_quiet()  # each section is a heavy run: start it on a quiet machine
        print(f"== {name} (load {os.getloadavg()[0]:.2f})", flush=True)
        payload[name] = globals()[f"section_{name}"](args)
    report(payload)
    name = args.output or ("scale_quick.json" if args.quick else
                           "scale.json" if not args.only else f"scale_{'_'.join(sections)}.json")
    print("wrote", write_json(name, payload))
    if payload.get("fit"):
        plot(payload["fit"], RESULTS / name.replace(".json", ".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
