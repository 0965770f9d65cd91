"""python -m bench.sklearn_overhead: the epoch of fastnet.sklearn.MLPClassifier against the CLI's.

Both train the same network with the same recipe on Fashion-MNIST's uint8 training split (784-128-10,
batches of 128, Adam 2e-3 with beta1 0.8, beta2 0.99, cosine schedule, standardised pixels, nothing
held out, seed 0), each in a fresh process with the default threads, rounds interleaved so that a
noisy neighbour hurts both alike. Reported: the median training epoch (shuffle, forward, backward,
update) of each, and, timed in the estimator's process, the wall time per epoch of fit() from call
to return (input checks, labels, standardisation, the epochs and their evaluations) against the
command line's own steps from arrays to trained network (recipe.split, recipe.new_state, run.train).
Both train the same network: the same test accuracy, and the same parameters bit for bit.
The machine, its load and the date go into bench/results/sklearn-overhead-DATE.json.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ESTIMATOR = """
import json, sys, time, warnings
import numpy as np
from fastnet import data, recipe, run
from fastnet.backend import get_backend
from fastnet.sklearn import MLPClassifier
from fastnet.threads import limited
warnings.simplefilter("ignore")
X, y = data.load("fashion-mnist", "train")
X_test, y_test = data.load("fashion-mnist", "test")
epochs, threads = int(sys.argv[1]), (int(sys.argv[2]) or None)
clf = MLPClassifier(hidden_layer_sizes=(128,), batch_size=128, learning_rate_init=2e-3, beta_1=0.8, beta_2=0.99,
                    schedule="cosine", max_iter=epochs, random_state=0, threads=threads,
                    alpha=0.0)  # the command line's default; the estimator's is scikit-learn's 1e-4
MLPClassifier(hidden_layer_sizes=(128,), max_iter=1, random_state=0).fit(X[:256], y[:256])  # load the kernels
t = time.perf_counter()
clf.fit(X, y)
wall = time.perf_counter() - t
# the command line's own steps from the data to the trained network (fastnet.train.prepare and main)
r = recipe.Recipe(epochs=epochs, val_split=0)
K = get_backend("numba")
with limited(threads, K.BLAS_THREADS, "numba"):
    t = time.perf_counter()
    train, val = recipe.split(X, y, r.val_split, r.seed)
    state = recipe.new_state(r, train[0])
    run.train(state, K, train, val, r)
    cli_wall = time.perf_counter() - t
h = clf.model_._state.history
print(json.dumps({"epoch_seconds": h.epoch_seconds, "eval_seconds": h.eval_seconds, "wall_seconds": wall,
                  "cli_path_wall_seconds": cli_wall, "cli_path_epoch_seconds": state.history.epoch_seconds,
                  "same_network": bool((state.model.params == clf.model_.network.params).all()),
                  "test_accuracy": clf.score(X_test, y_test)}))
"""


def machine():
    """What the numbers were measured on: CPU, cores, versions, date, load."""
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "python": platform.python_version(), "numpy": np.__version__,
            "date": datetime.datetime.now().isoformat(timespec="seconds"), "loadavg_start": os.getloadavg(),
            "note": "shared 2-core machine: other sessions' jobs ran beside this one (see the load averages)"}


def run_cli(epochs, threads):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "m.json")
        subprocess.run([sys.executable, "-m", "fastnet.train", "--epochs", str(epochs), "--val-split", "0",
                        "--quiet", "--metrics-json", out, *(["--threads", str(threads)] if threads else [])],
                       cwd=ROOT, check=True, capture_output=True)
        m = json.loads(Path(out).read_text())
    return {"epoch_seconds": m["epoch_seconds"], "eval_seconds": m["eval_seconds"], "test_accuracy": m["test_accuracy"]}


def run_estimator(epochs, threads):
    done = subprocess.run([sys.executable, "-c", ESTIMATOR, str(epochs), str(threads or 0)], cwd=ROOT, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.sklearn_overhead", description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, help="threads of both (default: fastnet's default, all usable cores)")
    args = p.parse_args(argv)
    info = machine()
    runs = {"cli": [], "estimator": []}
    for r in range(args.rounds):
        for name, run in (("cli", run_cli), ("estimator", run_estimator)):
            runs[name].append(run(args.epochs, args.threads))
            print(f"round {r + 1} {name:9} epochs {[round(s, 3) for s in runs[name][-1]['epoch_seconds']]}  "
                  f"test {runs[name][-1]['test_accuracy']:.4f}", flush=True)
    info["loadavg_end"] = os.getloadavg()
    summary = {name: {"median_epoch_seconds": float(np.median([s for r in rs for s in r["epoch_seconds"]])),
                      "test_accuracy": sorted({r["test_accuracy"] for r in rs})} for name, rs in runs.items()}
    est, cli = runs["estimator"], summary["cli"]
    ours = summary["estimator"]
    ours["median_fit_wall_per_epoch"] = float(np.median([r["wall_seconds"] for r in est])) / args.epochs
    ours["median_cli_path_wall_per_epoch"] = float(np.median([r["cli_path_wall_seconds"] for r in est])) / args.epochs
    ours["same_network_as_cli_path"] = all(r["same_network"] for r in est)
    epoch = ours["median_epoch_seconds"] / cli["median_epoch_seconds"] - 1
    wall = ours["median_fit_wall_per_epoch"] / ours["median_cli_path_wall_per_epoch"] - 1
    print(f"median training epoch: CLI {cli['median_epoch_seconds']:.3f}s, "
          f"estimator {ours['median_epoch_seconds']:.3f}s ({epoch:+.1%}); "
          f"whole fit per epoch: the CLI's steps {ours['median_cli_path_wall_per_epoch']:.3f}s, "
          f"estimator {ours['median_fit_wall_per_epoch']:.3f}s ({wall:+.1%}); same network: "
          f"{ours['same_network_as_cli_path']}; load average at start {info['loadavg_start']}, "
          f"end {info['loadavg_end']}")
    tag = f"-threads{args.threads}" if args.threads else ""
    out = ROOT / "bench" / "results" / f"sklearn-overhead{tag}-{time.strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps({"machine": info, "settings": vars(args), "runs": runs, "summary": summary,
                               "epoch_overhead": epoch, "wall_overhead": wall}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
