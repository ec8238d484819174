"""Speed of skdae's training epochs against the GEMM floor, PyTorch and scikit-learn.

    python benchmarks/speed.py            # full run (10-20 minutes on a quiet machine)
    python benchmarks/speed.py --quick    # smoke run, a few minutes
    python benchmarks/speed.py --only cd finetune --repeats 5

Sections (``--only`` picks some of them):

blas      Single-threaded sgemm on the block shapes of skdae's kernels (batch 100, two
          column blocks, leading dimensions of the whole arrays), SciPy's OpenBLAS (LP64)
          against the one in NumPy's wheel (ILP64): what skdae._kernels._blas's choice of
          library per transposition rests on.

cd        One CD-1 epoch of an RBM 784 -> 1000 on the first 20,000 MNIST training images
          (batch 100, float32): skdae's ``RBM.fit`` (max_iter=1), the GEMM floor (the four
          matrix products a CD-1 batch needs, and nothing else, with NumPy's BLAS;
          also with SciPy's BLAS (skdae's kernels call both OpenBLAS builds) and with
          PyTorch's), scikit-learn's BernoulliRBM (n_iter=1), a plain NumPy CD-1 and the
          same algorithm in PyTorch.
finetune  One fine-tuning epoch of the unrolled 784-1000-500-196-500-1000-784 autoencoder
          (cross-entropy, batch 100, float32) with SGD + momentum and with Adam: skdae's
          ``partial_fit``, the GEMM floor (6 forward products, 6 weight gradients, 5 delta
          propagations; the same three BLAS libraries) and PyTorch autograd.
coldstart ``import skdae`` vs ``import sklearn.decomposition`` in fresh processes, and the
          first ``fit`` of a tiny model in a fresh process with an empty and with a warm
          Numba cache, against a second fit in the same process (``--cold-runs`` fresh
          processes with empty caches, 5 by default: the median CPU time is reported).
scaling   CD-1 epoch of skdae and of the GEMM floor against the number of samples and
          against the layer width.
memory    Peak resident memory of a process fitting the paper's model (1000, 500, 196) on
          60,000 images (pretrain_epochs=1, max_iter=1, and again with 2 epochs per RBM,
          when pretraining stores the 500-unit layer), against 2 x data + 300 MB.
profile   Where skdae's epochs lose time: CD-1 and fine-tuning epochs of skdae and of the
          floor on one thread and on all cores (work outside the GEMMs vs threading), and
          a cProfile of one RBM.fit (Python-level time around the compiled kernels).

Method: warm runs are timed apart from the first call (Numba compile or cache load, torch
start-up); within a section every implementation runs in the same process, interleaved
(A, B, C, A, B, C, ...), and the median of the repeats is reported, as a ratio to the
GEMM floor (NumPy's BLAS) and to the fastest of the three floors (NumPy's, SciPy's,
PyTorch's BLAS), as skdae's speedup over each peer (peer time / skdae time), and as the
fraction of the machine's peak single-precision FLOP rate (see ``peak_flops``) that the
epoch's matrix products reach.
BLAS thread pools are left at their defaults (all cores) for everyone; PyTorch is given
``os.cpu_count()`` threads. The thread counts are recorded in the JSON.

PyTorch is optional (``pip install torch``): without it its rows are null, with a notice.

Writes benchmarks/results/speed.json (speed_quick.json with --quick; a run restricted with
--only writes speed_<sections>[_quick].json unless --output is given, so a partial run never
overwrites a full one).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.linalg import blas as scipy_blas

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, use_local_mnist, write_json  # noqa: E402

SECTIONS = ("blas", "cd", "finetune", "coldstart", "scaling", "memory", "profile")
AUTOENCODER = (1000, 500, 196)
N_FEATURES = 784
BATCH = 100
# Hyper-parameters of every CD-1 implementation: skdae's defaults for a Bernoulli RBM in its
# first epoch (momentum switches from 0.5 to 0.9 only at epoch 5).
CD_LR = 0.1
CD_MOMENTUM = 0.5
CD_WEIGHT_DECAY = 2e-4
FT_LR = 1e-3
FT_MOMENTUM = 0.9

# The targets of issue 12 (issue 4's import target kept), checked at the end of the run.
# The floor ratio is taken against the fastest GEMM floor measured (NumPy's, SciPy's or
# PyTorch's BLAS), not only NumPy's.
TARGET_FLOOR_RATIO = 1.10
TARGET_TORCH_SPEEDUP = 1.10
TARGET_SKLEARN_SPEEDUP = 2.0
TARGET_IMPORT_RATIO = 1.2
TARGET_WARM_CACHE_OVERHEAD_S = 0.5
TARGET_COMPILE_S = 10.0
TARGET_MEMORY_EXTRA_MB = 300.0
FLOORS = ("gemm_floor", "gemm_floor_scipy", "gemm_floor_torch")

# Peak single-precision rate, for the fraction of it each epoch reaches: measured by
# benchmarks/fma_peak.c (12 independent 512-bit FMA chains per core, all cores at once)
# when a C compiler is at hand, else PEAK_FALLBACK (see peak_flops).
FMA_SOURCE = Path(__file__).resolve().parent / "fma_peak.c"


def settings(quick):
    if quick:
        return dict(n_samples=5000, repeats=2, import_runs=3, warm_cache_runs=2, cold_runs=2,
                    scaling_samples=(2000, 5000), scaling_widths=(250, 500),
                    scaling_width_samples=5000, scaling_repeats=1, memory_samples=10000)
    return dict(n_samples=20000, repeats=3, import_runs=5, warm_cache_runs=3, cold_runs=5,
                scaling_samples=(5000, 10000, 20000, 40000, 60000),
                scaling_widths=(250, 500, 1000, 2000, 4000), scaling_width_samples=20000,
                scaling_repeats=3, memory_samples=60000)


# --------------------------------------------------------------------------- helpers


def timed(fn):
    tic = time.perf_counter()
    fn()
    return time.perf_counter() - tic


def interleave(peers, repeats):
    """Time each of ``peers`` (name -> callable) ``repeats`` times, in turn: A, B, C, A, ..."""
    times = {name: [] for name in peers}
    for _ in range(repeats):
        for name, fn in peers.items():
            times[name].append(timed(fn))
    return times


def summarize(times, flops=None, peak=None, floor="gemm_floor", skdae="skdae"):
    """Median, min, ratio to the floor (NumPy's BLAS) and to the fastest floor, skdae's
    speedup and the fraction of the peak FLOP rate, of every peer (None when absent).

    ``flops`` is the epoch's matrix-product work (2 m n k summed over its GEMMs) and
    ``peak`` the machine's peak FLOP/s (:func:`peak_flops`)."""
    med = {k: (float(np.median(v)) if v else None) for k, v in times.items()}
    fastest = min((med[f] for f in FLOORS if med.get(f)), default=None)
    rows = {}
    for name, values in times.items():
        m = med[name]
        rows[name] = {
            "times_s": [float(t) for t in values] if values else None,
            "median_s": m,
            "min_s": float(min(values)) if values else None,
            "ratio_to_floor": (m / med[floor]) if m and med.get(floor) else None,
            "ratio_to_fastest_floor": (m / fastest) if m and fastest else None,
            "skdae_speedup": (m / med[skdae]) if m and med.get(skdae) else None,
            "gflops": (flops / m / 1e9) if m and flops else None,
            "peak_fraction": (flops / m / peak) if m and flops and peak else None,
        }
    return rows


def peer_table(rows, labels):
    # A floor is a reference, not a competitor: its "speedup" column stays empty.
    table = [dict(row, name=labels.get(name, name),
                  skdae_speedup=None if name.startswith("gemm_floor") else row["skdae_speedup"])
             for name, row in rows.items()]
    return markdown_table(table, [
        ("name", "implementation", ""), ("median_s", "median s", ".3f"), ("min_s", "min s", ".3f"),
        ("ratio_to_floor", "x NumPy floor", ".2f"), ("ratio_to_fastest_floor", "x fastest floor", ".2f"),
        ("skdae_speedup", "skdae speedup", ".2f"), ("peak_fraction", "of peak FLOP/s", ".1%"),
    ])


def load_data(n):
    from skdae.datasets import load_mnist

    X, _ = load_mnist("train", n_samples=n, return_X_y=True, dtype=np.float32)
    return np.ascontiguousarray(X, dtype=np.float32)


def import_torch(enabled):
    if not enabled:
        print("PyTorch disabled (--no-torch): its rows are null.", flush=True)
        return None
    try:
        import torch
    except ImportError:
        print("NOTICE: PyTorch is not installed: its rows are null. Install it (pip install "
              "torch) to include it.", flush=True)
        return None
    torch.set_num_threads(os.cpu_count())
    return torch


def numba_layer():
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run in this process
        return None


def skdae_blas():
    """Which BLAS skdae's kernels call in this process (see skdae._kernels._blas)."""
    from skdae._kernels import _blas

    return _blas.BLAS


def thread_info(torch):
    """Every thread pool in the process, as threadpoolctl sees it, plus PyTorch's and Numba's."""
    import numba
    from threadpoolctl import threadpool_info

    info = {
        "pools": [
            {k: d.get(k) for k in ("user_api", "internal_api", "prefix", "version", "num_threads",
                                   "threading_layer", "architecture")}
            | {"library": os.path.basename(d.get("filepath", ""))}
            for d in threadpool_info()
        ],
        "numba_threads": numba.get_num_threads(),
        "numba_threading_layer": numba_layer(),
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "torch": torch.__version__ if torch is not None else None,
        "skdae_blas": skdae_blas(),
        "note": "numpy.dot uses NumPy's OpenBLAS; skdae's Numba kernels call NumPy's OpenBLAS (ILP64) "
                "for products with an untransposed B and SciPy's for a transposed B, see skdae_blas; "
                "before issue 12 they called SciPy's only (through scipy.linalg.cython_blas).",
    }
    return info


def scipy_gemm(out, a, b):
    """``out[...] = a @ b`` with SciPy's BLAS sgemm/dgemm, in place: the library skdae's
    Numba kernels call (through ``scipy.linalg.cython_blas``), which is not NumPy's.

    ``out`` must be C-contiguous; ``a`` and ``b`` C- or F-contiguous (transposed views).
    In Fortran order the product is ``out.T = b.T @ a.T``.
    """

    def as_fortran(m):
        return (m, 0) if m.flags.f_contiguous else (m.T, 1)

    fa, ta = as_fortran(b.T)
    fb, tb = as_fortran(a.T)
    gemm = scipy_blas.sgemm if out.dtype == np.float32 else scipy_blas.dgemm
    gemm(1.0, fa, fb, beta=0.0, c=out.T, overwrite_c=1, trans_a=ta, trans_b=tb)


def numpy_gemm(out, a, b):
    np.dot(a, b, out=out)


def torch_gemm_for(torch):
    """``out[...] = a @ b`` with PyTorch's BLAS (MKL in its CPU wheels) on the same buffers."""
    from_numpy = torch.from_numpy

    def gemm(out, a, b):
        torch.mm(from_numpy(a), from_numpy(b), out=from_numpy(out))

    return gemm


def run_child(code, env=None, timeout=1800):
    """Run ``code`` in a fresh interpreter and return the JSON its last stdout line prints."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"child process failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peak_flops(fallback_gflops):
    """The machine's peak single-precision FLOP/s and how it was obtained.

    Compiles and runs benchmarks/fma_peak.c (independent FMA chains, no memory traffic:
    the rate the FMA units allow) on every core at once, best of three; without a C
    compiler, ``fallback_gflops``. On AMD Zen 4 a 512-bit FMA runs as two 256-bit halves,
    so both widths give 32 FLOP per cycle and core: the measured rate divided by 32 x cores
    is the clock the cores actually ran at.
    """
    import shutil

    cc = shutil.which("cc") or shutil.which("gcc")
    cores = os.cpu_count()
    if cc is not None and FMA_SOURCE.exists():
        with tempfile.TemporaryDirectory() as tmp:
            best = {}
            for width, flags in ((512, ["-mavx512f", "-mfma"]), (256, ["-mavx2", "-mfma"])):
                exe = os.path.join(tmp, f"fma{width}")
                built = subprocess.run([cc, "-O2", *flags, "-fopenmp", f"-DW={width}", str(FMA_SOURCE),
                                        "-o", exe], capture_output=True)
                if built.returncode:
                    continue
                runs = []
                for threads in (1, cores):
                    for _ in range(3):
                        out = subprocess.run([exe, "100000000", str(threads)], capture_output=True, text=True)
                        if out.returncode == 0:
                            runs.append((threads, json.loads(out.stdout)["gflops"]))
                if runs:
                    best[width] = {"one_core_gflops": max(g for t, g in runs if t == 1),
                                   "all_cores_gflops": max(g for t, g in runs if t == cores)}
            if best:
                width = max(best, key=lambda w: best[w]["all_cores_gflops"])
                one = best[width]["one_core_gflops"]
                return {"gflops": best[width]["all_cores_gflops"], "method": f"measured FMA throughput "
                        f"(benchmarks/fma_peak.c, {width}-bit, {cores} threads, best of 3)",
                        "one_core_gflops": one, "clock_ghz_at_32_flop_per_cycle": one / 32, "by_width": best}
    return {"gflops": fallback_gflops, "method": "--peak-gflops (no C compiler to measure it)"}


def cd_flops(n, n_visible=N_FEATURES, n_hidden=1000):
    """FLOPs of a CD-1 epoch's matrix products: three (b x n_vis x n_hid) products per
    batch and one (n_hid x 2b x n_vis) weight gradient."""
    return 2.0 * n * n_visible * n_hidden * 3 + 2.0 * n_hidden * 2 * n * n_visible


def ft_flops(n):
    """FLOPs of a fine-tuning epoch's matrix products: forward, weight gradient and (above
    the first layer) delta of every layer."""
    pairs = [a * b for a, b in layer_shapes()]
    return 2.0 * n * (2 * sum(pairs) + sum(pairs[1:]))


# --------------------------------------------------------------------- CD-1 peers


def cd_floor_fn(X, n_hidden, gemm, seed=0):
    """The matrix products of a CD-1 epoch alone, into buffers allocated once.

    Per batch: ``H = V W^T``, ``V' = H_s W``, ``H' = V' W^T`` and the weight gradient
    ``[H; -H']^T [V; V']`` as one (n_hidden x 2b) (2b x n_visible) GEMM, as skdae does.
    """
    n, n_vis = X.shape
    rng = np.random.default_rng(seed)
    W = (0.1 * rng.standard_normal((n_hidden, n_vis))).astype(X.dtype)
    V_stack = np.empty((2 * BATCH, n_vis), X.dtype)
    V_stack[:BATCH] = X[:BATCH]
    H_stack = rng.random((2 * BATCH, n_hidden), dtype=np.float32).astype(X.dtype)
    H_s = (rng.random((BATCH, n_hidden)) < 0.5).astype(X.dtype)
    G = np.empty_like(W)

    def epoch():
        for start in range(0, n, BATCH):
            b = min(BATCH, n - start)
            gemm(H_stack[:b], X[start : start + b], W.T)
            gemm(V_stack[b : 2 * b], H_s[:b], W)
            gemm(H_stack[b : 2 * b], V_stack[b : 2 * b], W.T)
            gemm(G, H_stack[: 2 * b].T, V_stack[: 2 * b])

    return epoch


def cd_skdae_fn(X, n_hidden):
    from skdae import RBM

    def epoch():
        RBM(n_components=n_hidden, max_iter=1, batch_size=BATCH, random_state=0).fit(X)

    return epoch


def cd_sklearn_fn(X, n_hidden):
    from sklearn.neural_network import BernoulliRBM

    def epoch():
        BernoulliRBM(n_components=n_hidden, batch_size=BATCH, n_iter=1, learning_rate=CD_LR,
                     random_state=0).fit(X)

    return epoch


def cd_numpy_fn(X, n_hidden, seed=0):
    """CD-1 as one would write it in NumPy: the same algorithm as skdae (sampled hidden
    states, mean-field visible reconstruction, momentum and weight decay)."""
    from scipy.special import expit

    n, n_vis = X.shape
    rng = np.random.default_rng(seed)
    W0 = (0.1 * rng.standard_normal((n_hidden, n_vis))).astype(X.dtype)

    def epoch():
        W = W0.copy()
        b_vis = np.zeros(n_vis, X.dtype)
        b_hid = np.zeros(n_hidden, X.dtype)
        vel_W = np.zeros_like(W)
        vel_vis = np.zeros_like(b_vis)
        vel_hid = np.zeros_like(b_hid)
        error = 0.0
        order = rng.permutation(n)
        for start in range(0, n, BATCH):
            v = X[order[start : start + BATCH]]
            b = v.shape[0]
            h = expit(v @ W.T + b_hid)
            h_sample = (rng.random(h.shape, dtype=np.float32) < h).astype(X.dtype)
            v_neg = expit(h_sample @ W + b_vis)
            h_neg = expit(v_neg @ W.T + b_hid)
            error += float(((v - v_neg) ** 2).sum())
            grad = h.T @ v
            grad -= h_neg.T @ v_neg
            vel_W *= CD_MOMENTUM
            vel_W += (CD_LR / b) * grad - (CD_LR * CD_WEIGHT_DECAY) * W
            W += vel_W
            vel_hid *= CD_MOMENTUM
            vel_hid += CD_LR * (h - h_neg).mean(axis=0)
            b_hid += vel_hid
            vel_vis *= CD_MOMENTUM
            vel_vis += CD_LR * (v - v_neg).mean(axis=0)
            b_vis += vel_vis
        return error

    return epoch


def cd_torch_fn(torch, X, n_hidden, seed=0):
    """The same CD-1 with torch ops on the CPU, in place where torch makes that natural."""
    Xt = torch.from_numpy(X)
    n, n_vis = X.shape
    gen = torch.Generator().manual_seed(seed)
    W0 = 0.1 * torch.randn(n_hidden, n_vis, generator=gen, dtype=Xt.dtype)

    def epoch():
        with torch.inference_mode():
            W = W0.clone()
            b_vis = torch.zeros(n_vis, dtype=Xt.dtype)
            b_hid = torch.zeros(n_hidden, dtype=Xt.dtype)
            vel_W = torch.zeros_like(W)
            vel_vis = torch.zeros_like(b_vis)
            vel_hid = torch.zeros_like(b_hid)
            error = torch.zeros((), dtype=torch.float64)
            order = torch.randperm(n, generator=gen)
            for start in range(0, n, BATCH):
                v = Xt.index_select(0, order[start : start + BATCH])
                b = v.shape[0]
                h = torch.sigmoid(torch.addmm(b_hid, v, W.t()))
                h_sample = torch.bernoulli(h, generator=gen)
                v_neg = torch.sigmoid(torch.addmm(b_vis, h_sample, W))
                h_neg = torch.sigmoid(torch.addmm(b_hid, v_neg, W.t()))
                error += (v - v_neg).pow(2).sum()
                grad = torch.mm(h.t(), v)
                grad.addmm_(h_neg.t(), v_neg, alpha=-1.0)
                vel_W.mul_(CD_MOMENTUM).add_(grad, alpha=CD_LR / b).add_(W, alpha=-CD_LR * CD_WEIGHT_DECAY)
                W.add_(vel_W)
                vel_hid.mul_(CD_MOMENTUM).add_((h - h_neg).mean(0), alpha=CD_LR)
                b_hid.add_(vel_hid)
                vel_vis.mul_(CD_MOMENTUM).add_((v - v_neg).mean(0), alpha=CD_LR)
                b_vis.add_(vel_vis)
            return float(error)

    return epoch


CD_LABELS = {
    "skdae": "skdae RBM.fit (1 epoch)",
    "gemm_floor": "GEMM floor (NumPy BLAS)",
    "gemm_floor_scipy": "GEMM floor (SciPy's OpenBLAS)",
    "numpy": "plain NumPy CD-1",
    "sklearn": "scikit-learn BernoulliRBM (1 epoch)",
    "gemm_floor_torch": "GEMM floor (PyTorch's BLAS)",
    "torch": "PyTorch CPU CD-1",
}


def bench_cd(X, repeats, torch, peak=None):
    n_hidden = 1000
    small = np.ascontiguousarray(X[:200])
    peers = {
        "skdae": cd_skdae_fn(X, n_hidden),
        "gemm_floor": cd_floor_fn(X, n_hidden, numpy_gemm),
        "gemm_floor_scipy": cd_floor_fn(X, n_hidden, scipy_gemm),
        "numpy": cd_numpy_fn(X, n_hidden),
        "sklearn": cd_sklearn_fn(X, n_hidden),
    }
    if torch is not None:
        peers["gemm_floor_torch"] = cd_floor_fn(X, n_hidden, torch_gemm_for(torch))
        peers["torch"] = cd_torch_fn(torch, X, n_hidden)
    # First calls on small data of the same dtype: Numba compiles (or loads its cache),
    # PyTorch and BLAS start their thread pools. Timed apart, never part of an epoch.
    first_call = {
        "skdae": timed(cd_skdae_fn(small, n_hidden)),
        "numpy": timed(cd_numpy_fn(small, n_hidden)),
        "sklearn": timed(cd_sklearn_fn(small, n_hidden)),
        "gemm_floor": timed(cd_floor_fn(small, n_hidden, numpy_gemm)),
        "gemm_floor_scipy": timed(cd_floor_fn(small, n_hidden, scipy_gemm)),
    }
    if torch is not None:
        first_call["gemm_floor_torch"] = timed(cd_floor_fn(small, n_hidden, torch_gemm_for(torch)))
        first_call["torch"] = timed(cd_torch_fn(torch, small, n_hidden))
    print("  first calls on 200 rows (skdae: Numba compile or cache load): "
          + ", ".join(f"{k} {v:.2f} s" for k, v in first_call.items()), flush=True)
    times = interleave(peers, repeats)
    if torch is None:
        times["gemm_floor_torch"] = times["torch"] = []
    rows = summarize(times, cd_flops(X.shape[0]), peak)
    print(peer_table(rows, CD_LABELS), flush=True)
    return {
        "n_samples": int(X.shape[0]), "n_visible": N_FEATURES, "n_hidden": n_hidden,
        "batch_size": BATCH, "dtype": "float32", "repeats": repeats,
        "learning_rate": CD_LR, "momentum": CD_MOMENTUM, "weight_decay": CD_WEIGHT_DECAY,
        "first_call_s": first_call, "peers": rows,
    }


# ----------------------------------------------------------------- fine-tuning peers


def layer_shapes():
    sizes = [N_FEATURES, *AUTOENCODER, *AUTOENCODER[-2::-1], N_FEATURES]
    return list(zip(sizes[:-1], sizes[1:]))


def ft_floor_fn(X, gemm, seed=0):
    """The matrix products of a fine-tuning epoch alone: per batch 6 forward layers, 6
    weight gradients ``A_{l-1}^T D_l`` and 5 delta propagations ``D_l W_l^T``."""
    n = X.shape[0]
    rng = np.random.default_rng(seed)
    shapes = layer_shapes()
    Ws = [(0.05 * rng.standard_normal(s)).astype(X.dtype) for s in shapes]
    gWs = [np.empty_like(W) for W in Ws]
    acts = [np.empty((BATCH, n_out), X.dtype) for _, n_out in shapes]
    width = max(max(s) for s in shapes)
    delta_a = np.empty(BATCH * width, X.dtype)
    delta_b = np.empty(BATCH * width, X.dtype)
    out_delta = (rng.random((BATCH, N_FEATURES), dtype=np.float32) - 0.5).astype(X.dtype)
    last = len(shapes) - 1

    def epoch():
        for start in range(0, n, BATCH):
            b = min(BATCH, n - start)
            inp = X[start : start + b]
            for layer, W in enumerate(Ws):
                gemm(acts[layer][:b], inp, W)
                inp = acts[layer][:b]
            delta = delta_a[: b * N_FEATURES].reshape(b, N_FEATURES)
            delta[...] = out_delta[:b]
            for layer in range(last, -1, -1):
                n_in = shapes[layer][0]
                layer_in = X[start : start + b] if layer == 0 else acts[layer - 1][:b]
                gemm(gWs[layer], layer_in.T, delta)
                if layer > 0:
                    buf = delta_b if (last - layer) % 2 == 0 else delta_a
                    new_delta = buf[: b * n_in].reshape(b, n_in)
                    gemm(new_delta, delta, Ws[layer].T)
                    delta = new_delta

    return epoch


def ft_skdae_model(X, solver):
    from skdae import RBMStackAutoencoder

    return RBMStackAutoencoder(AUTOENCODER, code_units="sigmoid", pretrain=False, max_iter=1,
                               solver=solver, learning_rate=FT_LR, momentum=FT_MOMENTUM,
                               batch_size=BATCH, random_state=0).fit(X)


def ft_torch_fn(torch, X, solver, seed=0):
    """Autograd on nn.Sequential of Linear + Sigmoid, BCE-with-logits summed over pixels and
    averaged over the batch: the same loss as skdae's cross-entropy."""
    torch.manual_seed(seed)
    layers = []
    for i, (n_in, n_out) in enumerate(layer_shapes()):
        layers.append(torch.nn.Linear(n_in, n_out))
        if i < len(layer_shapes()) - 1:
            layers.append(torch.nn.Sigmoid())
    model = torch.nn.Sequential(*layers)
    if solver == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=FT_LR, momentum=FT_MOMENTUM)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=FT_LR)
    Xt = torch.from_numpy(X)
    n = X.shape[0]
    gen = torch.Generator().manual_seed(seed)
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    def epoch():
        total = 0.0
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, BATCH):
            v = Xt.index_select(0, order[start : start + BATCH])
            opt.zero_grad(set_to_none=True)
            loss = bce(model(v), v, reduction="sum") / v.shape[0]
            loss.backward()
            opt.step()
            total += loss.item() * v.shape[0]
        return total

    return epoch


FT_LABELS = {
    "skdae": "skdae partial_fit (1 epoch)",
    "gemm_floor": "GEMM floor (NumPy BLAS)",
    "gemm_floor_scipy": "GEMM floor (SciPy's OpenBLAS)",
    "gemm_floor_torch": "GEMM floor (PyTorch's BLAS)",
    "torch": "PyTorch autograd",
}


def bench_finetune(X, repeats, torch, peak=None):
    small = np.ascontiguousarray(X[:200])
    result = {"n_samples": int(X.shape[0]), "layers": [N_FEATURES, *AUTOENCODER, *AUTOENCODER[-2::-1], N_FEATURES],
              "batch_size": BATCH, "dtype": "float32", "loss": "cross_entropy", "repeats": repeats,
              "learning_rate": FT_LR, "momentum": FT_MOMENTUM}
    for solver in ("sgd", "adam"):
        first_call = {"skdae": timed(lambda: ft_skdae_model(small, solver))}
        # The first full epoch builds the model: fit(X) runs exactly one epoch.
        tic = time.perf_counter()
        model = ft_skdae_model(X, solver)
        first_epoch = time.perf_counter() - tic
        peers = {
            "skdae": lambda: model.partial_fit(X),
            "gemm_floor": ft_floor_fn(X, numpy_gemm),
            "gemm_floor_scipy": ft_floor_fn(X, scipy_gemm),
        }
        first_call["gemm_floor"] = timed(ft_floor_fn(small, numpy_gemm))
        first_call["gemm_floor_scipy"] = timed(ft_floor_fn(small, scipy_gemm))
        if torch is not None:
            first_call["gemm_floor_torch"] = timed(ft_floor_fn(small, torch_gemm_for(torch)))
            first_call["torch"] = timed(ft_torch_fn(torch, small, solver))
            peers["gemm_floor_torch"] = ft_floor_fn(X, torch_gemm_for(torch))
            peers["torch"] = ft_torch_fn(torch, X, solver)
            peers["torch"]()  # its first full epoch, like skdae's fit above
        print(f"  {solver}: first calls on 200 rows: "
              + ", ".join(f"{k} {v:.2f} s" for k, v in first_call.items())
              + f"; skdae fit (first epoch, builds the model) {first_epoch:.2f} s", flush=True)
        times = interleave(peers, repeats)
        if torch is None:
            times["gemm_floor_torch"] = times["torch"] = []
        rows = summarize(times, ft_flops(X.shape[0]), peak)
        print(f"\nFine-tuning epoch, {solver}:\n" + peer_table(rows, FT_LABELS), flush=True)
        result[solver] = {"first_call_s": first_call, "skdae_first_epoch_s": first_epoch, "peers": rows}
    return result


# --------------------------------------------------------------------- cold start

IMPORT_CHILD = """
import time
tic = time.perf_counter()
import {module}
print(time.perf_counter() - tic)
"""

FIRST_FIT_CHILD = """
import json, time, warnings
import numpy as np
from numba.core import event
from skdae import RBMStackAutoencoder

class Compiles(event.Listener):
    # Every Numba compile in the process, with its wall and CPU time (nested compiles
    # are counted inside their caller's, and apart).
    def __init__(self):
        self.open, self.rows = [], []
    def on_start(self, ev):
        self.open.append((time.perf_counter(), time.process_time()))
    def on_end(self, ev):
        wall, cpu = self.open.pop()
        fn = getattr(ev.data.get("dispatcher"), "py_func", None)
        self.rows.append({"kernel": getattr(fn, "__qualname__", "?"), "depth": len(self.open),
                          "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu})

compiles = Compiles()
event.register("numba:compile", compiles)
X = np.random.RandomState(0).rand(200, 64).astype(np.float32)
def fit():
    tic, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        RBMStackAutoencoder((16, 4), pretrain_epochs=1, max_iter=1, random_state=0).fit(X)
    return time.perf_counter() - tic, time.process_time() - cpu
first = fit()
second = fit()
print(json.dumps({"first_fit_s": first[0], "first_fit_cpu_s": first[1], "second_fit_s": second[0],
                  "second_fit_cpu_s": second[1], "compiles": compiles.rows}))
"""


def bench_coldstart(import_runs, warm_cache_runs, cold_runs=1):
    times = {"skdae": [], "sklearn.decomposition": []}
    for _ in range(import_runs):
        for module in times:
            times[module].append(run_child(IMPORT_CHILD.format(module=module)))
    imports = {m: {"times_s": t, "median_s": float(np.median(t))} for m, t in times.items()}
    import_ratio = imports["skdae"]["median_s"] / imports["sklearn.decomposition"]["median_s"]

    # Each empty-cache run in a fresh process with a cache folder of its own; the warm-cache
    # runs load what the first of them compiled.
    colds = []
    with tempfile.TemporaryDirectory(prefix="skdae-numba-cache-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, SKDAE_NUMBA_CACHE="1")
        colds.append(run_child(FIRST_FIT_CHILD, env=env))
        warm = [run_child(FIRST_FIT_CHILD, env=env) for _ in range(warm_cache_runs)]
    for _ in range(cold_runs - 1):
        with tempfile.TemporaryDirectory(prefix="skdae-numba-cache-") as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache, SKDAE_NUMBA_CACHE="1")
            colds.append(run_child(FIRST_FIT_CHILD, env=env))
    # CPU time does not grow with other processes' load, as wall time does.
    overheads = [c["first_fit_cpu_s"] - c["second_fit_cpu_s"] for c in colds]
    cold = colds[int(np.argsort(overheads)[len(colds) // 2])]  # the median run's details
    second = [c["second_fit_s"] for c in colds] + [w["second_fit_s"] for w in warm]
    fits = {
        "empty_cache_first_fit_s": float(np.median([c["first_fit_s"] for c in colds])),
        "empty_cache_first_fit_cpu_s": float(np.median([c["first_fit_cpu_s"] for c in colds])),
        "warm_process_fit_cpu_s": float(np.median([c["second_fit_cpu_s"] for c in colds])),
        "empty_cache_compiles": len(cold["compiles"]),
        "empty_cache_runs": [{"first_fit_s": c["first_fit_s"], "first_fit_cpu_s": c["first_fit_cpu_s"],
                              "second_fit_cpu_s": c["second_fit_cpu_s"], "compiles": len(c["compiles"])}
                             for c in colds],
        "warm_cache_first_fit_s": float(np.median([w["first_fit_s"] for w in warm])),
        "warm_process_fit_s": float(np.median(second)),
        "warm_cache_runs": [w["first_fit_s"] for w in warm],
        "model": "RBMStackAutoencoder((16, 4), pretrain_epochs=1, max_iter=1) on 200 x 64 float32",
    }
    fits["warm_cache_overhead_s"] = fits["warm_cache_first_fit_s"] - fits["warm_process_fit_s"]
    fits["empty_cache_overhead_s"] = fits["empty_cache_first_fit_s"] - fits["warm_process_fit_s"]
    fits["empty_cache_overhead_cpu_s_runs"] = overheads
    fits["empty_cache_overhead_cpu_s"] = float(np.median(overheads))
    top = [c for c in cold["compiles"] if c["depth"] == 0]
    fits["top_level_compiles"] = top
    fits["slowest_compiles"] = sorted(cold["compiles"], key=lambda c: -c["cpu_s"])[:15]

    rows = [
        {"what": "import skdae", "s": imports["skdae"]["median_s"], "ratio": import_ratio},
        {"what": "import sklearn.decomposition", "s": imports["sklearn.decomposition"]["median_s"], "ratio": 1.0},
        {"what": "first fit, empty Numba cache", "s": fits["empty_cache_first_fit_s"],
         "extra": fits["empty_cache_overhead_s"]},
        {"what": "first fit, warm Numba cache", "s": fits["warm_cache_first_fit_s"],
         "extra": fits["warm_cache_overhead_s"]},
        {"what": "fit in a warm process", "s": fits["warm_process_fit_s"], "extra": 0.0},
    ]
    print(markdown_table(rows, [("what", "cold start (median of fresh processes)", ""), ("s", "s", ".3f"),
                                ("ratio", "x sklearn import", ".2f"), ("extra", "s over warm process", ".2f")]),
          flush=True)
    print(f"\nEmpty cache: {fits['empty_cache_overhead_cpu_s']:.1f} s of CPU compiling, median of "
          f"{len(overheads)} fresh processes ({', '.join(f'{v:.2f}' for v in overheads)}); "
          f"{fits['empty_cache_compiles']} Numba compiles; kernels compiled by fit itself "
          "(inclusive of what they call):\n" + markdown_table(top, [
              ("kernel", "kernel", ""), ("cpu_s", "CPU s", ".2f"), ("wall_s", "wall s", ".2f")]), flush=True)
    return {"imports": imports, "import_ratio": import_ratio, "import_runs": import_runs, "first_fit": fits}


# ------------------------------------------------------------------------ scaling


def bench_scaling(X_all, cfg):
    from skdae import RBM

    RBM(n_components=16, max_iter=1, random_state=0).fit(np.ascontiguousarray(X_all[:200]))  # compile
    repeats = cfg["scaling_repeats"]
    out = {"repeats": repeats, "samples": [], "width": []}

    def point(X, width):
        times = interleave({"skdae": cd_skdae_fn(X, width), "gemm_floor": cd_floor_fn(X, width, numpy_gemm)},
                           repeats)
        sk, fl = float(np.median(times["skdae"])), float(np.median(times["gemm_floor"]))
        return {"n_samples": int(X.shape[0]), "n_hidden": width, "skdae_s": sk, "gemm_floor_s": fl,
                "ratio_to_floor": sk / fl, "skdae_s_per_10k": sk * 1e4 / X.shape[0],
                "floor_s_per_10k": fl * 1e4 / X.shape[0]}

    for n in cfg["scaling_samples"]:
        out["samples"].append(point(X_all[:n], 1000))
    n_width = cfg["scaling_width_samples"]
    for width in cfg["scaling_widths"]:
        out["width"].append(point(X_all[:n_width], width))
    base = out["width"][0]
    for row in out["width"]:
        row["skdae_vs_narrowest"] = row["skdae_s"] / base["skdae_s"]
        row["floor_vs_narrowest"] = row["gemm_floor_s"] / base["gemm_floor_s"]
    cols = [("n_samples", "samples", "d"), ("n_hidden", "hidden", "d"), ("skdae_s", "skdae s", ".3f"),
            ("gemm_floor_s", "floor s", ".3f"), ("ratio_to_floor", "x floor", ".2f"),
            ("skdae_s_per_10k", "skdae s / 10k samples", ".3f"), ("floor_s_per_10k", "floor s / 10k samples", ".3f")]
    print("CD-1 epoch against the number of samples (784 -> 1000):\n" + markdown_table(out["samples"], cols))
    print(f"\nCD-1 epoch against the layer width ({n_width} samples):\n"
          + markdown_table(out["width"], cols[:5] + [("skdae_vs_narrowest", "skdae / narrowest", ".2f"),
                                                     ("floor_vs_narrowest", "floor / narrowest", ".2f")]),
          flush=True)
    return out


# ------------------------------------------------------------------------- memory

MEMORY_CHILD = """
import json, resource, sys, time, warnings
sys.path.insert(0, {bench_dir!r})
from _common import use_local_mnist
use_local_mnist()
import numpy as np
from skdae import RBMStackAutoencoder
from skdae.datasets import load_mnist
X, _ = load_mnist("train", n_samples={n}, return_X_y=True, dtype=np.float32)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tic = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    RBMStackAutoencoder({layers!r}, code_units="sigmoid", pretrain_epochs={epochs},
                        max_iter=1, random_state=0).fit(X)
print(json.dumps({{"maxrss_before_fit_kb": before, "fit_s": time.perf_counter() - tic,
                  "data_bytes": X.nbytes}}))
"""

# A go-between process, so that RUSAGE_CHILDREN sees exactly one child: the fit.
MEMORY_WRAPPER = """
import json, resource, subprocess, sys
proc = subprocess.run([sys.executable, "-c", sys.argv[1]], capture_output=True, text=True)
if proc.returncode:
    sys.exit(proc.stderr[-3000:])
out = json.loads(proc.stdout.strip().splitlines()[-1])
out["maxrss_children_kb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps(out))
"""


def memory_run(n, pretrain_epochs=1):
    """Peak RSS (MB) of a fresh process that loads ``n`` images and fits the paper's model."""
    code = MEMORY_CHILD.format(bench_dir=str(Path(__file__).resolve().parent), n=n, layers=AUTOENCODER,
                               epochs=pretrain_epochs)
    proc = subprocess.run([sys.executable, "-c", MEMORY_WRAPPER, code], capture_output=True, text=True,
                          timeout=3600)
    if proc.returncode:
        raise RuntimeError(f"memory child failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    peak_mb = out["maxrss_children_kb"] * 1024 / 1e6
    before_mb = out["maxrss_before_fit_kb"] * 1024 / 1e6
    return {"n_samples": n, "pretrain_epochs": pretrain_epochs, "data_mb": out["data_bytes"] / 1e6,
            "peak_before_fit_mb": before_mb,
            "peak_rss_mb": peak_mb, "fit_adds_mb": peak_mb - before_mb, "fit_s": out["fit_s"]}


def bench_memory(n):
    # A first run on a few images loads (or compiles into) the Numba cache, so that compiler
    # memory is not counted as the fit's; a second gives the fixed cost of a fit (imports,
    # the loader's cache of the raw file, compiled kernels) to read the big run against.
    small = 2 * BATCH
    memory_run(small)
    baseline = memory_run(small)
    result = memory_run(n)
    # Two epochs per RBM: in memory, pretraining then stores the hidden means of the
    # layers no wider than the input (the 500-unit layer) instead of recomputing them at
    # every epoch (skdae._pretraining.pretrain_stack), so a long fit peaks higher.
    multi_epoch = memory_run(n, pretrain_epochs=2)
    target = 2 * result["data_mb"] + TARGET_MEMORY_EXTRA_MB
    multi_epoch.update(target_mb=target, peak_over_data=multi_epoch["peak_rss_mb"] / multi_epoch["data_mb"])
    result.update(
        model=f"RBMStackAutoencoder({AUTOENCODER}, code_units='sigmoid', pretrain_epochs=1, max_iter=1)",
        target_mb=target,
        peak_over_data=result["peak_rss_mb"] / result["data_mb"],
        baseline=baseline,
        pretrain_epochs_2=multi_epoch,
    )
    print(markdown_table([baseline, result, multi_epoch], [
        ("n_samples", "images", "d"), ("pretrain_epochs", "epochs per RBM", "d"), ("data_mb", "data MB", ".0f"),
        ("peak_before_fit_mb", "peak RSS after imports + load, MB", ".0f"),
        ("peak_rss_mb", "peak RSS of the process, MB", ".0f"), ("fit_adds_mb", "fit adds, MB", ".0f"),
        ("target_mb", "target MB", ".0f"), ("fit_s", "fit s", ".1f"),
    ]), flush=True)
    return result


# ------------------------------------------------------------------------ profile


def bench_profile(X, repeats):
    """Where skdae's epochs lose time to the floor, through the public API only.

    The same epochs are timed on one thread (``n_jobs=1``; BLAS limited to one thread for
    the floor) and on all cores: on one thread, skdae minus the floor is the work outside
    the matrix products; on all cores it also holds what the threading arrangement costs.
    The floor here uses SciPy's BLAS (one of the two skdae's kernels call), so a difference
    between BLAS builds does not pass for skdae's own overhead. A cProfile of one
    ``RBM.fit`` shows the Python-level time around the compiled kernels.
    """
    import cProfile
    import pstats

    from threadpoolctl import threadpool_limits

    from skdae import RBM, RBMStackAutoencoder

    n_hidden = 1000
    small = np.ascontiguousarray(X[:200])

    def one_thread(fn):
        def run():
            with threadpool_limits(limits=1, user_api="blas"):
                fn()

        return run

    def cd_skdae(n_jobs):
        return lambda: RBM(n_components=n_hidden, max_iter=1, batch_size=BATCH, n_jobs=n_jobs,
                           random_state=0).fit(X)

    def ft_skdae(n_jobs):
        model = RBMStackAutoencoder(AUTOENCODER, code_units="sigmoid", pretrain=False, max_iter=1, solver="sgd",
                                    learning_rate=FT_LR, batch_size=BATCH, n_jobs=n_jobs, random_state=0)
        model.fit(small)
        return lambda: model.partial_fit(X)

    RBM(n_components=n_hidden, max_iter=1, n_jobs=1, random_state=0).fit(small)  # compile / load
    result = {"n_samples": int(X.shape[0]), "repeats": repeats, "cores": os.cpu_count()}
    rows = []
    for epoch, skdae_fn, floor_fn in (
        ("CD-1", cd_skdae, lambda: cd_floor_fn(X, n_hidden, scipy_gemm)),
        ("fine-tune sgd", ft_skdae, lambda: ft_floor_fn(X, scipy_gemm)),
    ):
        times = interleave({"skdae_1": skdae_fn(1), "floor_1": one_thread(floor_fn()),
                            "skdae_all": skdae_fn(None), "floor_all": floor_fn()}, repeats)
        med = {k: float(np.median(v)) for k, v in times.items()}
        for threads in ("1", "all"):
            sk, fl = med[f"skdae_{threads}"], med[f"floor_{threads}"]
            rows.append({"epoch": epoch, "threads": "1" if threads == "1" else f"all ({os.cpu_count()})",
                         "skdae_s": sk, "floor_s": fl, "outside_gemm_s": sk - fl, "ratio": sk / fl,
                         "skdae_parallel": med["skdae_1"] / sk, "floor_parallel": med["floor_1"] / fl})
        result[epoch] = {"times_s": times, "median_s": med}
    print(f"One thread vs all cores ({X.shape[0]} images; floor with SciPy's BLAS):\n" + markdown_table(rows, [
        ("epoch", "epoch", ""), ("threads", "threads", ""), ("skdae_s", "skdae s", ".3f"),
        ("floor_s", "floor s", ".3f"), ("outside_gemm_s", "skdae - floor s", ".3f"), ("ratio", "x floor", ".2f"),
        ("skdae_parallel", "skdae speedup over 1 thread", ".2f"),
        ("floor_parallel", "floor speedup over 1 thread", ".2f"),
    ]), flush=True)
    result["rows"] = rows

    profiler = cProfile.Profile()
    profiler.enable()
    cd_skdae(None)()
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt
    top = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:8]
    prof_rows = [{"function": f"{Path(f).name}:{line} {name}", "s": st[2], "share": st[2] / total}
                 for (f, line, name), st in top]
    print("\ncProfile of one RBM.fit epoch (own time; a Numba kernel is one opaque call):\n"
          + markdown_table(prof_rows, [("function", "function", ""), ("s", "s", ".3f"), ("share", "share", ".1%")]),
          flush=True)
    result["cprofile_top"] = prof_rows
    result["cprofile_total_s"] = total
    return result


# --------------------------------------------------------------------------- BLAS

# (label, trans_a, trans_b, m, n, k): a block of each of the kernels' products.
BLAS_CASES = (
    ("CD hidden V W^T", False, True, 100, 500, 784),
    ("CD visible H W", False, False, 100, 392, 1000),
    ("CD gradient H^T V", True, False, 500, 784, 200),
    ("FT forward 784 -> 1000", False, False, 100, 500, 784),
    ("FT forward 1000 -> 500", False, False, 100, 250, 1000),
    ("FT forward 1000 -> 784", False, False, 100, 392, 1000),
    ("FT gradient 784 x 1000", True, False, 392, 1000, 100),
    ("FT gradient 1000 x 500", True, False, 500, 500, 100),
    ("FT delta D W^T (500)", False, True, 100, 500, 500),
    ("FT delta D W^T (1000)", False, True, 100, 392, 1000),
)


def bench_blas(repeats):
    """sgemm of SciPy's and NumPy's OpenBLAS called the way the kernels call them."""
    import ctypes

    from numba.extending import get_cython_function_address
    from threadpoolctl import threadpool_limits

    from skdae._kernels import _blas

    ilp64 = _blas._numpy_ilp64_gemm()
    if ilp64 is None:
        print("NumPy's ILP64 OpenBLAS not found: nothing to compare.", flush=True)
        return None
    proto = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 13)
    libs = {"scipy": (proto(get_cython_function_address("scipy.linalg.cython_blas", "sgemm")), np.int32),
            "numpy": (proto(ilp64["sgemm"]), np.int64)}

    def call(fn, itype, ta, tb, m, n, k, A, B, C):
        ints = np.array([n, m, k, B.shape[1], A.shape[1], C.shape[1]], itype)
        flags = np.array([84 if tb else 78, 84 if ta else 78], np.uint8)
        scalars = np.array([1.0, 0.0], np.float32)

        def at(a, i):
            return a.ctypes.data + i * a.itemsize

        def run():
            fn(at(flags, 0), at(flags, 1), at(ints, 0), at(ints, 1), at(ints, 2), at(scalars, 0), B.ctypes.data,
               at(ints, 3), A.ctypes.data, at(ints, 4), at(scalars, 1), C.ctypes.data, at(ints, 5))

        return run

    rng = np.random.default_rng(0)
    rows = []
    with threadpool_limits(1, user_api="blas"):
        for label, ta, tb, m, n, k in BLAS_CASES:
            A = rng.random((k, m) if ta else (m, k), dtype=np.float32)
            B = rng.random((2 * n, k) if tb else (k, 2 * n), dtype=np.float32)
            C = np.zeros((m, 2 * n), np.float32)
            runs = {name: call(fn, it, ta, tb, m, n, k, A, B, C) for name, (fn, it) in libs.items()}
            flops = 2.0 * m * n * k
            calls = max(20, int(1e9 / flops))
            for run in runs.values():
                run()
            times = {name: [] for name in runs}
            for _ in range(max(5, 2 * repeats)):
                for name, run in runs.items():
                    times[name].append(timed(lambda: [run() for _ in range(calls)]) / calls)
            med = {name: float(np.median(t)) for name, t in times.items()}
            rows.append({"product": label, "trans_a": ta, "trans_b": tb, "m": m, "n": n, "k": k,
                         "scipy_us": med["scipy"] * 1e6, "numpy_us": med["numpy"] * 1e6,
                         "scipy_gflops": flops / med["scipy"] / 1e9, "numpy_gflops": flops / med["numpy"] / 1e9,
                         "scipy_over_numpy": med["scipy"] / med["numpy"]})
    print(markdown_table(rows, [
        ("product", "block product (one thread)", ""), ("trans_b", "B transposed", ""), ("m", "m", "d"),
        ("n", "n", "d"), ("k", "k", "d"), ("scipy_gflops", "SciPy GFLOP/s", ".1f"),
        ("numpy_gflops", "NumPy GFLOP/s", ".1f"), ("scipy_over_numpy", "SciPy / NumPy time", ".3f"),
    ]), flush=True)
    return {"rows": rows, "skdae_blas": skdae_blas()}


# ------------------------------------------------------------------------ targets


def check_targets(results):
    checks = []

    def add(name, value, goal, met):
        # A peer that did not run (PyTorch absent) leaves its target unmeasured, not failed.
        checks.append({"target": name, "value": value, "goal": goal, "met": None if value is None else bool(met)})

    cd = results.get("cd_epoch")
    if cd:
        p = cd["peers"]
        r = p["skdae"]["ratio_to_fastest_floor"]
        add("CD-1: skdae / fastest GEMM floor", r, f"<= {TARGET_FLOOR_RATIO}",
            r is not None and r <= TARGET_FLOOR_RATIO)
        s = p["torch"]["skdae_speedup"]
        add("CD-1: PyTorch / skdae", s, f">= {TARGET_TORCH_SPEEDUP}", s is not None and s >= TARGET_TORCH_SPEEDUP)
        s = p["sklearn"]["skdae_speedup"]
        add("CD-1: BernoulliRBM / skdae", s, f">= {TARGET_SKLEARN_SPEEDUP}",
            s is not None and s >= TARGET_SKLEARN_SPEEDUP)
    ft = results.get("finetune_epoch")
    if ft:
        for solver in ("sgd", "adam"):
            p = ft[solver]["peers"]
            r = p["skdae"]["ratio_to_fastest_floor"]
            add(f"fine-tune {solver}: skdae / fastest GEMM floor", r, f"<= {TARGET_FLOOR_RATIO}",
                r is not None and r <= TARGET_FLOOR_RATIO)
            s = p["torch"]["skdae_speedup"]
            add(f"fine-tune {solver}: PyTorch / skdae", s, f">= {TARGET_TORCH_SPEEDUP}",
                s is not None and s >= TARGET_TORCH_SPEEDUP)
    cs = results.get("cold_start")
    if cs:
        add("import skdae / import sklearn.decomposition", cs["import_ratio"], f"<= {TARGET_IMPORT_RATIO}",
            cs["import_ratio"] <= TARGET_IMPORT_RATIO)
        o = cs["first_fit"]["warm_cache_overhead_s"]
        add("first fit with warm cache - warm process fit (s)", o, f"<= {TARGET_WARM_CACHE_OVERHEAD_S}",
            o <= TARGET_WARM_CACHE_OVERHEAD_S)
        c = cs["first_fit"]["empty_cache_overhead_cpu_s"]
        add("first fit with empty cache - warm process fit (CPU s)", c, f"<= {TARGET_COMPILE_S}",
            c <= TARGET_COMPILE_S)
    mem = results.get("memory")
    if mem:
        add(f"peak RSS MB ({mem['n_samples']} images)", mem["peak_rss_mb"], f"<= {mem['target_mb']:.0f}",
            mem["peak_rss_mb"] <= mem["target_mb"])
        multi = mem.get("pretrain_epochs_2")
        if multi:
            add(f"peak RSS MB ({multi['n_samples']} images, 2 epochs per RBM)", multi["peak_rss_mb"],
                f"<= {multi['target_mb']:.0f}", multi["peak_rss_mb"] <= multi["target_mb"])
    return checks


# --------------------------------------------------------------------------- main


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small smoke run (a few minutes)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repeats per implementation (default 3, quick 2)")
    parser.add_argument("--n-samples", type=int, default=None,
                        help="MNIST images for the cd, finetune and profile sections (default 20000, quick 5000)")
    parser.add_argument("--cold-runs", type=int, default=None,
                        help="fresh processes with an empty Numba cache in the coldstart section "
                             "(default 5, quick 2); the median is reported")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even when it is installed")
    parser.add_argument("--output", default=None, help="JSON file name under benchmarks/results/")
    parser.add_argument("--peak-gflops", type=float, default=None,
                        help="peak single-precision GFLOP/s when it cannot be measured (no C compiler)")
    args = parser.parse_args(argv)

    cfg = settings(args.quick)
    if args.repeats is not None:
        cfg["repeats"] = cfg["scaling_repeats"] = args.repeats
    if args.n_samples is not None:
        cfg["n_samples"] = args.n_samples
    if args.cold_runs is not None:
        cfg["cold_runs"] = max(1, args.cold_runs)
    sections = [s for s in SECTIONS if not args.only or s in args.only]
    suffix = "_quick" if args.quick else ""
    output = args.output or (f"speed{suffix}.json" if not args.only else f"speed_{'-'.join(sections)}{suffix}.json")
    command = "python benchmarks/speed.py " + " ".join(argv if argv is not None else sys.argv[1:])

    use_local_mnist()
    torch = import_torch(not args.no_torch) if {"cd", "finetune"} & set(sections) else None
    needs_data = {"cd", "finetune", "scaling", "profile"} & set(sections)
    n_data = max([cfg["n_samples"]] + ([*cfg["scaling_samples"], cfg["scaling_width_samples"]]
                                       if "scaling" in sections else []))
    X_all = load_data(n_data) if needs_data else None
    X = np.ascontiguousarray(X_all[: cfg["n_samples"]]) if needs_data else None

    results = {"command": command.strip(), "quick": args.quick, "sections": sections, "settings": cfg,
               "load_before": os.getloadavg()}
    started = time.perf_counter()
    peak = None
    if {"cd", "finetune"} & set(sections):
        results["peak"] = peak_flops(args.peak_gflops)
        peak = results["peak"]["gflops"] * 1e9 if results["peak"]["gflops"] else None
        print(f"Peak single-precision rate: {results['peak']['gflops'] or float('nan'):.0f} GFLOP/s "
              f"({results['peak']['method']})", flush=True)
    with warnings.catch_warnings():
        # skdae's fits here run a fixed number of epochs on purpose.
        from sklearn.exceptions import ConvergenceWarning

        warnings.simplefilter("ignore", ConvergenceWarning)
        if "blas" in sections:
            print("\n## BLAS: SciPy's vs NumPy's OpenBLAS on the kernels' block shapes", flush=True)
            results["blas"] = bench_blas(cfg["repeats"])
        if "cd" in sections:
            print(f"\n## CD-1 epoch: RBM 784 -> 1000, {X.shape[0]} images, batch {BATCH}, float32", flush=True)
            results["cd_epoch"] = bench_cd(X, cfg["repeats"], torch, peak)
        if "finetune" in sections:
            print(f"\n## Fine-tuning epoch: 784-1000-500-196-500-1000-784, {X.shape[0]} images, batch {BATCH}",
                  flush=True)
            results["finetune_epoch"] = bench_finetune(X, cfg["repeats"], torch, peak)
        if "coldstart" in sections:
            print("\n## Cold start", flush=True)
            results["cold_start"] = bench_coldstart(cfg["import_runs"], cfg["warm_cache_runs"],
                                                    cfg["cold_runs"])
        if "scaling" in sections:
            print("\n## Scaling", flush=True)
            results["scaling"] = bench_scaling(X_all, cfg)
        if "memory" in sections:
            print(f"\n## Memory: fitting {AUTOENCODER} on {cfg['memory_samples']} images", flush=True)
            results["memory"] = bench_memory(cfg["memory_samples"])
        if "profile" in sections:
            print("\n## Profile: where the time goes", flush=True)
            results["profile"] = bench_profile(X, cfg["repeats"])

    results["targets"] = check_targets(results)
    if results["targets"]:
        print("\n## Targets (issue 12)\n" + markdown_table(
            [dict(t, met={True: "yes", False: "NO", None: "not measured"}[t["met"]]) for t in results["targets"]],
            [("target", "target", ""), ("value", "measured", ".3f"), ("goal", "goal", ""), ("met", "met", "")]))
    results["load_after"] = os.getloadavg()
    results["threads"] = thread_info(torch)
    results["machine"] = machine()
    results["wall_s"] = time.perf_counter() - started
    path = write_json(output, results)
    print(f"\nwrote {path} ({results['wall_s']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
