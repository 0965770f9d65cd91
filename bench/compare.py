"""python -m bench.compare: fastnet end to end against PyTorch and against its own floor.

Every contender trains 784-128-10 with Adam, batches of 128, float32 unless named, the same thread
count and the same data, in its own subprocess (`python -m fastnet.train ... --metrics-json` or
`python -m bench.torch_mlp`), round-robin over the contenders for --runs rounds (the order rotates
each round) so that a noisy neighbour hurts them alike. The shared recipe is fastnet's `--preset
seed` (lr 5e-4 constant, pixels in [0, 1], all 60,000 training images), so accuracies compare
directly; fastnet's default preset (its own lr, schedule, betas, standardisation, and fewer images:
some are held out for validation) is an extra row.
Epoch times are training passes only (evaluation excluded) and leave out each run's first epoch
(first touch of memory, warm caches) when there are several. The floor (bench.floor: the epoch's
matrix products alone) is sampled in this process at the start and after every round, and its
median taken, so that it sees the same neighbours as the runs; a row that trains on fewer images
gets the floor scaled by its share of the 60,000.

Also: cold start (two one-epoch runs sharing a fresh NUMBA_CACHE_DIR: the first compiles, the
second loads the cache) and, with --scale instead, epoch/floor at other batch sizes and widths.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata, util
from pathlib import Path

import numpy as np

from bench.floor import floor_samples
from fastnet.threads import set_threads
from fastnet.recipe import PRESETS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
N_TRAIN = 60000
TORCH = "pytorch f32"
SCALE = [(32, 128), (128, 128), (512, 128), (128, 512), (128, 1024)]  # (batch, width)


def fastnet(backend="numba", dtype="float32", preset="seed"):
    """Arguments of a fastnet.train run."""
    return ["-m", "fastnet.train", "--backend", backend, "--dtype", dtype, "--preset", preset, "--quiet"]


def contenders(with_torch):
    """(name, arguments, training images) of every contender; the shared recipe first."""
    rows = [
        ("fastnet numba f32", fastnet("numba"), N_TRAIN),
        ("fastnet numpy f32", fastnet("numpy"), N_TRAIN),
        ("fastnet numpy f64 (historical)", fastnet("numpy", "float64"), N_TRAIN),
    ]
    if with_torch:
        rows.append((TORCH, ["-m", "bench.torch_mlp", "--lr", "5e-4"], N_TRAIN))
    n = N_TRAIN - PRESETS["fastnet"]["val_split"]  # the default preset holds images out for validation
    rows.append((f"fastnet numba f32 (fastnet preset, {n // 1000}k)", fastnet("numba", preset="fastnet"), n))
    return rows


def run_once(argv, common, env=None):
    """Run one training subprocess; return its metrics JSON (exits with its stderr if it fails)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "metrics.json")
        done = subprocess.run([sys.executable, *argv, *common, "--metrics-json", path],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{' '.join(argv)} failed:\n{done.stderr[-2000:]}")
        with open(path) as f:
            return json.load(f)


def round_robin(entries, runs, common_of, between):
    """{name: [metrics of each run]}, running the entries in turn for `runs` rounds, rotating the start.

    between() runs before the first round and after each round (it samples the floor).
    """
    results = {name: [] for name, *_ in entries}
    between()
    for r in range(runs):
        for name, argv, *rest in entries[r % len(entries):] + entries[: r % len(entries)]:
            metrics = run_once(argv, common_of(name, *rest))
            results[name].append(metrics)
            print(f"  round {r + 1}/{runs}  {name:40} epochs {_fmt(metrics['epoch_seconds'])}  "
                  f"acc {metrics['test_accuracy']:.4f}", file=sys.stderr, flush=True)
        between()
    return results


def _fmt(seconds):
    """Epoch seconds as one short string."""
    return " ".join(f"{s:.2f}" for s in seconds)


def warm_epochs(runs):
    """Epoch seconds of all runs, without each run's first epoch when it has more than one."""
    return [s for m in runs for s in (m["epoch_seconds"][1:] or m["epoch_seconds"])]


def floor_sampler(shapes, repeats=3):
    """({(batch, width): [seconds...]}, a function adding `repeats` floor samples of each shape to it).

    Key "single" holds samples of the first shape on one BLAS thread: divided by the thread count,
    that is what a perfect split of the products over the cores would cost.
    """
    from threadpoolctl import threadpool_limits

    samples = {shape: [] for shape in shapes}
    samples["single"] = []

    def sample():
        for shape, times in samples.items():
            if shape != "single":
                times += floor_samples(shape[0], (784, shape[1], 10), N_TRAIN, repeats=repeats)
        with threadpool_limits(1, user_api="blas"):
            b, w = shapes[0]
            samples["single"] += floor_samples(b, (784, w, 10), N_TRAIN, repeats=repeats)

    return samples, sample


def summarise(name, runs, floor, torch_median):
    """One table row: epoch median/min/max, median test accuracy, ratio to floor, speedup vs torch."""
    epochs = warm_epochs(runs)
    median = float(np.median(epochs))
    return {
        "contender": name, "epoch_median": median, "epoch_min": min(epochs), "epoch_max": max(epochs),
        "test_accuracy": float(np.median([m["test_accuracy"] for m in runs])), "floor_seconds": floor,
        "ratio_to_floor": median / floor,
        "speedup_vs_torch": torch_median / median if torch_median else None,
        "runs": [{k: m.get(k) for k in ("epoch_seconds", "test_accuracy", "startup_seconds",
                                        "total_seconds", "peak_rss_mb", "lr", "preset")} for m in runs],
    }


def print_table(rows):
    """The comparison as one text table."""
    print(f"{'contender':40} {'epoch med':>9} {'min':>6} {'max':>6} {'test acc':>8} {'x floor':>7} {'vs torch':>8}")
    for r in rows:
        vs = f"{r['speedup_vs_torch']:.2f}x" if r["speedup_vs_torch"] else "-"
        print(f"{r['contender']:40} {r['epoch_median']:8.3f}s {r['epoch_min']:6.2f} {r['epoch_max']:6.2f} "
              f"{r['test_accuracy']:8.4f} {r['ratio_to_floor']:7.2f} {vs:>8}")


def cold_start(threads):
    """Two one-epoch numba runs sharing a fresh NUMBA_CACHE_DIR: the first compiles, the second loads.

    startup_seconds is the time before the first batch; kernel_load_seconds (its part spent on
    compiling or loading the kernels) where fastnet.train reports it.
    """
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        runs = [run_once(fastnet(), ["--epochs", "1", "--threads", str(threads)], env) for _ in range(2)]
    keys = ("startup_seconds", "kernel_load_seconds", "epoch_seconds", "total_seconds")
    return {label: {k: m.get(k) for k in keys} for label, m in zip(("compile", "cache"), runs)}


def print_cold_start(cold, warm_epoch):
    """Cold start: time before the first batch, of it the kernels' compile or load, and the first epoch."""
    print(f"cold start (numba, fresh NUMBA_CACHE_DIR; warm epoch {warm_epoch:.3f}s):")
    for label, m in cold.items():
        kernels = f"  (kernels {m['kernel_load_seconds']:.2f}s)" if m["kernel_load_seconds"] is not None else ""
        print(f"  {label:8} startup {m['startup_seconds']:.2f}s{kernels}  first epoch {m['epoch_seconds'][0]:.2f}s  "
              f"total {m['total_seconds']:.2f}s")


def machine():
    """What the numbers were measured on: CPU, cores, library versions, BLAS, date, load."""
    from threadpoolctl import threadpool_info

    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), platform.processor())
    return {
        "cpu": cpu, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(), "numpy": np.__version__, "numba": metadata.version("numba"),
        "torch": metadata.version("torch") if util.find_spec("torch") else None,
        "blas": threadpool_info(), "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "loadavg_start": os.getloadavg(),
    }


def compare(args):
    """The comparison table and cold start; returns the results to write."""
    entries = contenders(util.find_spec("torch") is not None)
    samples, sample = floor_sampler([(128, 128)])
    common = ["--epochs", str(args.epochs), "--batch-size", "128", "--threads", str(args.threads)]
    results = round_robin(entries, args.runs, lambda name, n: common, sample)
    floor = float(np.median(samples[(128, 128)]))
    torch_runs = results.get(TORCH)
    torch_median = float(np.median(warm_epochs(torch_runs))) if torch_runs else None
    # a row training on fewer images has a proportionally lower floor: products cost in proportion to rows
    rows = [summarise(name, results[name], floor * n / N_TRAIN, torch_median) for name, _, n in entries]
    cold = cold_start(args.threads)
    print_table(rows)
    times, single = samples[(128, 128)], samples["single"]
    print(f"floor (784-128-10, batch 128, 60000 images, {args.threads} BLAS threads): median {floor:.3f}s "
          f"of {len(times)} samples (min {min(times):.3f}s, max {max(times):.3f}s)")
    ideal = float(np.median(single)) / args.threads
    print(f"on 1 BLAS thread: median {np.median(single):.3f}s; a perfect split over {args.threads} cores would be "
          f"{ideal:.3f}s, and fastnet numba is {rows[0]['epoch_median'] / ideal:.2f}x that")
    print_cold_start(cold, rows[0]["epoch_median"])
    return {"rows": rows, "floor_seconds": {"median": floor, "samples": times, "one_thread_samples": single},
            "cold_start": cold}


def scale(args):
    """Epoch time and epoch/floor of the numba backend at other batch sizes and widths."""
    entries = [(f"batch {b} width {w}", fastnet(), b, w) for b, w in SCALE]
    samples, sample = floor_sampler(SCALE, repeats=2)

    def common_of(name, b, w):  # two epochs: the first is the warm-up, left out by warm_epochs
        return ["--epochs", "2", "--batch-size", str(b), "--layers", f"784,{w},10", "--threads", str(args.threads)]

    results = round_robin(entries, args.runs, common_of, sample)
    rows = [dict(batch=b, width=w, **summarise(name, results[name], float(np.median(samples[(b, w)])), None))
            for name, _, b, w in entries]
    print(f"{'batch':>5} {'width':>5} {'epoch med':>9} {'min':>6} {'max':>6} {'floor':>7} {'x floor':>7}")
    for r in rows:
        print(f"{r['batch']:5} {r['width']:5} {r['epoch_median']:8.3f}s {r['epoch_min']:6.2f} {r['epoch_max']:6.2f} "
              f"{r['floor_seconds']:6.3f}s {r['ratio_to_floor']:7.2f}")
    return {"rows": rows}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5, help="epochs per run (default 5)")
    p.add_argument("--runs", type=int, default=3, help="rounds over the contenders (default 3)")
    p.add_argument("--threads", type=int, default=2, help="threads for every contender (default 2)")
    p.add_argument("--scale", action="store_true", help="the batch-size and width table instead")
    p.add_argument("--out", help="results JSON (default bench/results/{compare,scale}-DATE.json)")
    args = p.parse_args(argv)
    set_threads(args.threads)  # for the floor, measured in this process
    info = machine()
    results = scale(args) if args.scale else compare(args)
    info["loadavg_end"] = os.getloadavg()
    out = Path(args.out or RESULTS / f"{'scale' if args.scale else 'compare'}-{datetime.date.today()}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "settings": vars(args), **results}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
