"""Quantization-aware fine-tuning of a converged autoencoder: which step size, for how long?

A codec's fine-tuning (``Codec(fine_tune_epochs=...)``) is a new phase on a copy of the
model. On networks trained to convergence under a cosine schedule (the rate-distortion
benchmark's ``--recipe axis_shifts`` models), a fresh phase at the model's own
``learning_rate`` ended several dB *below* not fine-tuning at all. This study measures,
epoch by epoch, the codec fitted on training rows ``--fit-rows`` and evaluated on the
held-out training rows ``--held-out`` (never the test set) at ``--n-bits`` coded bits per
unit (rate-distortion allocation), for each combination of

* ``fine_tune_learning_rate`` (``--learning-rates``),
* ``fine_tune_method`` (``--methods``), ``rate_weight`` (``--rate-weights``) and
  ``fine_tune_loss`` (``--losses``),

beside the codec without fine-tuning at several budgets (``--envelope-budgets``: its
envelope; ``gain_db`` is a point's PSNR less the envelope's at the same rate). The
per-epoch points are the weights after each epoch; ``final`` is the codec's result, the
weights it keeps (the best epoch on its training objective, the start included). Each
point also records the fraction of held-out codes outside the codec's ranges
(``clipped``). The model file is one of the rate-distortion benchmark's cache
(``--model``). Quality only: not timed, run niced without the lock::

    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 nice -n 19 \\
        python benchmarks/codec_qat_learning_rate.py --model CACHE/ae-1000-500-250-64-....skdae
"""

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))
from _common import add_held_out_arguments, held_out_split, log, machine, write_study  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_held_out_arguments(parser)
    parser.add_argument("--n-bits", type=float, default=3.0, help="coded bits per unit (rd)")
    parser.add_argument("--envelope-budgets", default="2,2.5,3,3.5,4,5",
                        help="budgets of the codec without fine-tuning (its envelope)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of a constant phase")
    parser.add_argument("--learning-rates", default="1e-3,1e-4,1e-5")
    parser.add_argument("--methods", default="straight_through,noise")
    parser.add_argument("--rate-weights", default="0,0.05")
    parser.add_argument("--decorrelate", action="store_true",
                        help="Codec(decorrelate=True): every codec, the envelope's too")
    parser.add_argument("--losses", default="model",
                        help="comma-separated fine_tune_loss values (model, squared_error)")
    parser.add_argument("--out", type=Path, default=RESULTS / "codec_qat_learning_rate.json")
    parser.add_argument("--merge", action="store_true", help="add to --out's runs")
    return parser.parse_args(argv)


def evaluate(codec, X_fit, X_val):
    """Held-out bpp (one archive) and PSNR of ``codec`` (its tables refitted on ``X_fit``
    through its current model)."""
    from skdae._codec_fit import fit_tables
    from skdae._metrics import psnr
    from skdae.codec import archive_info

    fit_tables([codec], X_fit)
    data = codec.compress(X_val)
    out = codec.decompress(data)
    return {"bpp": archive_info(data).bits_per_pixel,
            "psnr": float(psnr(X_val, np.clip(out, 0, 1)))}


def gain(point, envelope):
    """PSNR of ``point`` less the envelope's at the same bpp (linear interpolation;
    None outside the envelope's rates)."""
    rates = [p["bpp"] for p in envelope]
    if not rates[0] <= point["bpp"] <= rates[-1]:
        return None
    return point["psnr"] - float(np.interp(point["bpp"], rates, [p["psnr"] for p in envelope]))


def run_phase(model, X_fit, X_val, n_bits, epochs, lr, method, rate_weight, envelope,
              loss="model", decorrelate=False):
    """One codec fit; the held-out point after every epoch (and the kept weights')."""
    from skdae import _codec_fit
    from skdae.codec import Codec

    curve = []
    codec = Codec(model, n_bits=n_bits, fine_tune_epochs=epochs, fine_tune_method=method,
                  rate_weight=rate_weight, fine_tune_learning_rate=lr, fine_tune_loss=loss,
                  decorrelate=decorrelate)
    original = _codec_fit.quantization_aware_fine_tune

    def on_epoch(epoch, ae):
        probe = copy.copy(codec)
        probe.model_ = ae
        point = evaluate(probe, X_fit, X_val)
        codes = ae.transform(X_val)
        clipped = float(np.mean((codes < codec.code_min_) | (codes > codec.code_max_)))
        point.update(epoch=epoch, loss=ae.loss_curve_[-1], gain_db=gain(point, envelope),
                     clipped=clipped)
        curve.append(point)
        log(f"    epoch {epoch}: {point['bpp']:.4f} bpp, {point['psnr']:.2f} dB, "
            f"gain {point['gain_db']}, clipped {clipped:.4f}, loss {point['loss']:.3f}")

    def instrumented(codec_, X, codes):
        return original(codec_, X, codes, on_epoch=on_epoch)

    _codec_fit.quantization_aware_fine_tune = instrumented
    start = time.perf_counter()
    try:
        codec.fit(X_fit)
    finally:
        _codec_fit.quantization_aware_fine_tune = original
    seconds = time.perf_counter() - start
    final = evaluate(codec, X_fit, X_val)
    final["gain_db"] = gain(final, envelope)
    return {"learning_rate": lr, "method": method, "rate_weight": rate_weight, "loss": loss,
            "decorrelate": decorrelate,
            "epochs": epochs, "curve": curve,
            "final": final, "seconds": seconds}


def main(argv=None):
    args = parse_args(argv)
    model, X_fit, X_val = held_out_split(args)
    log(f"{args.model.name}: max_iter={model.max_iter}, n_iter_={model.n_iter_}, "
        f"learning_rate={model.learning_rate}, schedule={model.learning_rate_schedule}")
    started = time.perf_counter()
    from skdae.codec import fit_codecs

    budgets = sorted({args.n_bits, *(float(v) for v in args.envelope_budgets.split(","))})
    envelope = []
    for codec in fit_codecs(model, X_fit, budgets, decorrelate=args.decorrelate):
        envelope.append({"n_bits": codec.n_bits, **evaluate(codec, X_fit, X_val)})
        log(f"no fine-tuning, n_bits={codec.n_bits:g}: {envelope[-1]['bpp']:.4f} bpp, "
            f"{envelope[-1]['psnr']:.2f} dB")
    envelope.sort(key=lambda p: p["bpp"])
    base = next(p for p in envelope if p["n_bits"] == args.n_bits)
    runs = []
    for lr in (float(v) for v in args.learning_rates.split(",")):
        for method in args.methods.split(","):
            for rate_weight in (float(v) for v in args.rate_weights.split(",")):
                for loss in args.losses.split(","):
                    log(f"lr={lr:g} {method} rate_weight={rate_weight:g} loss={loss} "
                        f"epochs={args.epochs}")
                    result = run_phase(model, X_fit, X_val, args.n_bits, args.epochs, lr,
                                       method, rate_weight, envelope, loss,
                                       args.decorrelate)
                    log(f"  kept: {result['final']['bpp']:.4f} bpp, "
                        f"{result['final']['psnr']:.2f} dB ({result['seconds']:.0f} s)")
                    runs.append(result)
    report = {
        "description": "quantization-aware fine-tuning of a converged autoencoder's codec "
        "(rd allocation) by step size, method and rate term: fitted on "
        "training rows fit_rows, bpp (one archive) and PSNR (peak 1, clipped) on the "
        "held-out training rows after every epoch; the test set is never read",
        "command": "python benchmarks/codec_qat_learning_rate.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "model": {"file": args.model.name, "hidden": list(model.hidden_layer_sizes),
                  "max_iter": model.max_iter, "n_iter_": model.n_iter_,
                  "learning_rate": model.learning_rate,
                  "learning_rate_schedule": model.learning_rate_schedule,
                  "solver": model.solver},
        "fit_rows": args.fit_rows, "held_out": args.held_out, "n_bits": args.n_bits,
        "decorrelate": args.decorrelate,
        "no_fine_tuning": base,
        "no_fine_tuning_envelope": envelope,
        "runs": runs,
        "seconds": time.perf_counter() - started,
        "loadavg": list(os.getloadavg()),
        "machine": machine(),
        "timed": False,
    }
    write_study(args, report)
    print(f"no fine-tuning: {base['bpp']:.4f} bpp {base['psnr']:.2f} dB")
    for r in runs:
        print(f"lr={r['learning_rate']:g} "
              f"{r['method']} rw={r['rate_weight']:g} {r.get('loss', 'model')} "
              f"E={r['epochs']}: "
              + " ".join(f"{p['psnr']:.2f}@{p['bpp']:.3f}" for p in r["curve"])
              + f" -> {r['final']['bpp']:.4f} bpp {r['final']['psnr']:.2f} dB, "
              f"gain {r['final']['gain_db']}")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
