"""Where a cold start's compile time goes: exclusive CPU seconds per compiled function,
split into Numba's own passes (typing, inlining, parfor passes, lowering) and LLVM's
(function and module optimisation, machine-code emission, linking).

Runs the first ``fit`` of speed.py's cold-start model (RBMStackAutoencoder((16, 4),
pretrain_epochs=1, max_iter=1) on 200 x 64 float32) in a fresh process with an empty
Numba cache, and charges every timed step to the function being compiled when it ran
(nested compiles are charged to themselves, not to their caller). CPU time, so a loaded
machine inflates it less than wall time; compare runs made under similar load.

Usage: python benchmarks/compile_profile.py [--output compile_profile.json]
Writes benchmarks/results/compile_profile.json (or --output): seconds per function, per step
and for the 60 largest (function, step) pairs; prints the first two as tables.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, write_json  # noqa: E402

CHILD = r'''
import collections, json, time, warnings
import numpy as np
from llvmlite import binding
from llvmlite.binding import newpassmanagers
from numba.core import codegen, compiler_machinery, event

seconds = collections.Counter()
steps = []       # [key, start] of the timed steps running, innermost last
compiling = []   # the functions being compiled, innermost last


class Compiles(event.Listener):
    def on_start(self, ev):
        fn = getattr(ev.data.get("dispatcher"), "py_func", None)
        compiling.append(getattr(fn, "__qualname__", "?"))

    def on_end(self, ev):
        compiling.pop()


event.register("numba:compile", Compiles())


def timed(owner, name, what):
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        now = time.process_time()
        if steps:
            seconds[steps[-1][0]] += now - steps[-1][1]
        step = what(args) if callable(what) else what
        steps.append([(compiling[-1] if compiling else "-", step), now])
        try:
            return original(*args, **kwargs)
        finally:
            now = time.process_time()
            key, start = steps.pop()
            seconds[key] += now - start
            if steps:
                steps[-1][1] = now

    setattr(owner, name, wrapper)


timed(newpassmanagers.ModulePassManager, "run", "LLVM: module optimisation")
timed(newpassmanagers.FunctionPassManager, "run", "LLVM: function optimisation")
timed(codegen.JITCodeLibrary, "_finalize_specific", "LLVM: machine code")
timed(binding.ModuleRef, "link_in", "LLVM: linking")
timed(binding, "parse_assembly", "LLVM: parsing")
timed(compiler_machinery.PassManager, "_runPass", lambda a: "Numba: " + type(a[2]).__name__)

from skdae import RBMStackAutoencoder

X = np.random.RandomState(0).rand(200, 64).astype(np.float32)
tic = time.process_time()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    RBMStackAutoencoder((16, 4), pretrain_epochs=1, max_iter=1, random_state=0).fit(X)
total = time.process_time() - tic
print(json.dumps({"total_cpu_s": total,
                  "rows": [[f, s, v] for (f, s), v in seconds.items()]}))
'''


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="compile_profile.json",
                        help="JSON file name under benchmarks/results/")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="skdae-numba-cache-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, SKDAE_NUMBA_CACHE="1")
        load_before = os.getloadavg()
        # In the cache's folder, so that the skdae imported is the one on PYTHONPATH (or
        # installed), never one in the current directory.
        proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                              env=env, cwd=cache, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"the profiled fit failed:\n{proc.stderr[-3000:]}")
    import json

    child = json.loads(proc.stdout.strip().splitlines()[-1])
    per_function = {}
    for function, step, value in child["rows"]:
        row = per_function.setdefault(function, {"function": function, "cpu_s": 0.0,
                                                 "llvm_s": 0.0, "numba_s": 0.0})
        row["cpu_s"] += value
        row["llvm_s" if step.startswith("LLVM") else "numba_s"] += value
    functions = sorted(per_function.values(), key=lambda r: -r["cpu_s"])
    per_step = {}
    for _, step, value in child["rows"]:
        per_step[step] = per_step.get(step, 0.0) + value
    steps = sorted(({"step": k, "cpu_s": v} for k, v in per_step.items()),
                   key=lambda r: -r["cpu_s"])
    print(f"First fit, empty Numba cache: {child['total_cpu_s']:.2f} s CPU\n")
    print(markdown_table(functions[:25], [("function", "compiled function (exclusive)", ""),
                                          ("cpu_s", "CPU s", ".2f"), ("numba_s", "Numba s", ".2f"),
                                          ("llvm_s", "LLVM s", ".2f")]))
    print()
    print(markdown_table(steps[:20], [("step", "step", ""), ("cpu_s", "CPU s", ".2f")]))
    path = write_json(args.output, {
        "command": "python benchmarks/compile_profile.py " + " ".join(sys.argv[1:]),
        "total_cpu_s": child["total_cpu_s"], "functions": functions, "steps": steps,
        "function_steps": [{"function": f, "step": s, "cpu_s": v} for f, s, v in
                           sorted(child["rows"], key=lambda r: -r[2])[:60]],
        "load_before": load_before, "load_after": os.getloadavg(), "machine": machine(),
    })
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
