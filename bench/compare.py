"""python -m bench.compare: fastnet against the strongest peers, on the same recipe, and against its floor.

Every contender trains the seed recipe (pixels / 255, Adam lr 5e-4, betas 0.9/0.999, eps 1e-8,
batches of 128 with the last partial one kept: 469 steps over all 60,000 training images,
784-128-10 ReLU, mean softmax cross-entropy, float32) from the same initial weights: fastnet's
for seed 0 (fastnet.recipe.new_state), which bench.peers.common.write_init saves once for the
peers to load. Each run is its own process (`python -m fastnet.train ...` or `python -m
bench.peers.NAME ...`), in rounds that rotate the contenders' order, so a noisy neighbour hurts all
alike; the floor (bench.floor: the epoch's matrix products alone on NumPy's BLAS) is sampled in
this process before the first round and after each. Epoch times are training passes only and leave
out each run's first epoch (compilation, first touch) when there are several.

Threads, per thread count n: this process pins itself to the first n usable cores before starting
any run, and every run inherits that mask, so no contender can use more than n cores whatever its
library does; then each is told n the way its library listens (fastnet --threads; torch
set_num_threads; scikit-learn threadpoolctl; JAX and Keras-on-JAX only the mask, see
bench/peers, which also says how each pin was checked). fastnet's threads are all started after
the fork, so they all carry the mask (the kernel copies it to every new thread; checked: at 1
thread fastnet.train runs 1 OS thread, allowed on core 0 only). The `cores`
column (the process's CPU time / wall time, start-up included) shows what each really used.

Parts: the table (every contender), the scale table (fastnet, JAX lax.scan and the floor at
batch 32/128/512 and width 128/512/2048) and fastnet's cold start (time to the first batch with an
empty and with a warm Numba cache). All three by default; --table, --scale, --cold pick some.
--whole: every contender's whole run, exec to exit, a first one with every compile and data cache
empty and a later one (whole(); not part of the default).
Results go to bench/results/compare-DATE-threadsN.json, one file per thread count.
A contender whose library is missing is skipped with one line; one that fails is reported, not fatal.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata, util
from pathlib import Path

import numpy as np

from bench.floor import floor_samples

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SCALE = [(32, 128), (128, 128), (512, 128), (128, 512), (128, 2048)]  # (batch, width)
LIBRARIES = ("numpy", "numba", "threadpoolctl", "jax", "jaxlib", "keras", "scikit-learn", "torch")


@dataclass(frozen=True)
class Contender:
    """How to run one contender: `python -m module *flags` and the common flags."""

    module: str
    flags: tuple = ()
    needs: tuple = ()  # modules it imports: any missing skips it
    fastnet: bool = False  # fastnet.train takes --layers; a peer takes --init (its layers come from it)

    def argv(self, epochs, batch, width, threads, init, data_dir=None):
        shape = ["--layers", f"784,{width},10"] if self.fastnet else ["--init", str(init)]
        data = ["--data-dir", str(data_dir)] if data_dir else []
        return ["-m", self.module, *self.flags, "--epochs", str(epochs), "--batch-size", str(batch),
                "--threads", str(threads), *shape, *data]


FASTNET = ("--dtype", "float32", "--preset", "seed", "--quiet")
CONTENDERS = {
    "fastnet": Contender("fastnet.train", ("--backend", "numba", *FASTNET), ("numba",), fastnet=True),
    "fastnet-numpy": Contender("fastnet.train", ("--backend", "numpy", *FASTNET), fastnet=True),
    "jax-jit": Contender("bench.peers.jax_mlp", (), ("jax",)),
    "jax-scan": Contender("bench.peers.jax_mlp", ("--scan",), ("jax",)),
    "torch": Contender("bench.peers.torch_mlp", (), ("torch",)),
    "torch-compile": Contender("bench.peers.torch_mlp", ("--compile",), ("torch",)),
    "sklearn": Contender("bench.peers.sklearn_mlp", (), ("sklearn",)),
    "keras": Contender("bench.peers.keras_mlp", (), ("keras", "jax")),
}
REFERENCE = "fastnet"  # the speed-up column is every row's epoch over this one's
SCALE_CONTENDERS = ("fastnet", "jax-scan")


class Failed(Exception):
    """A run exited with an error: the message is the tail of its stderr."""


def available(names):
    """(the names whose libraries are importable, {name: 'lib not installed: skipped'} for the rest)."""
    ok, skipped = [], {}
    for name in names:
        missing = [m for m in CONTENDERS[name].needs if util.find_spec(m) is None]
        if missing:
            skipped[name] = f"{missing[0]} not installed: skipped"
            print(f"{name}: {skipped[name]}", file=sys.stderr)
        else:
            ok.append(name)
    return ok, skipped


def run_once(argv, env=None):
    """Run `python *argv --metrics-json TMP`; its metrics, plus the process's CPU and wall seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "metrics.json")
        before, t = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        done = subprocess.run([sys.executable, *argv, "--metrics-json", path], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        wall, after = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode or not os.path.exists(path):
            raise Failed(done.stderr.strip()[-2000:] or f"exit status {done.returncode}")
        with open(path) as f:
            metrics = json.load(f)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    metrics.update(process_cpu_seconds=cpu, process_wall_seconds=wall)
    return metrics


def round_robin(entries, runs, between):
    """({key: [metrics of each run]}, {key: why it failed}) running the (key, argv) entries in turn
    for `runs` rounds, the starting entry rotating; between() runs before the first round and after
    each (it samples the floor). A failed entry is left out of the later rounds."""
    results, failed = {key: [] for key, _ in entries}, {}
    between()
    for r in range(runs):
        for key, argv in entries[r % len(entries):] + entries[: r % len(entries)]:
            if key in failed:
                continue
            try:
                m = run_once(argv)
            except Failed as e:
                failed[key] = str(e)
                print(f"  {key}: failed: {str(e).splitlines()[-1]}", file=sys.stderr, flush=True)
                continue
            results[key].append(m)
            print(f"  round {r + 1}/{runs}  {key:22} epochs {' '.join(f'{s:.2f}' for s in m['epoch_seconds'])}"
                  f"  acc {m['test_accuracy']:.4f}", file=sys.stderr, flush=True)
        between()
    return results, failed


def warm_epochs(runs):
    """Epoch seconds of all runs, without each run's first epoch when it has more than one."""
    return [s for m in runs for s in (m["epoch_seconds"][1:] or m["epoch_seconds"])]


def floor_sampler(shapes, n_train, repeats=3):
    """({shape: [seconds...], "one thread": [...]}, a function adding `repeats` samples of each).

    Shapes are (batch, width), sampled on the BLAS threads in force; "one thread" holds the first
    shape on one BLAS thread: the 1-thread floor, which every thread count is also compared with.
    """
    from threadpoolctl import threadpool_limits

    samples = {shape: [] for shape in shapes}
    samples["one thread"] = []

    def sample():
        for shape in shapes:
            samples[shape] += floor_samples(shape[0], (784, shape[1], 10), n_train, repeats=repeats)
        with threadpool_limits(1, user_api="blas"):
            b, w = shapes[0]
            samples["one thread"] += floor_samples(b, (784, w, 10), n_train, repeats=repeats)

    return samples, sample


def summarise(name, runs, floor, floor_one, reference):
    """One table row: warm epochs' median (min, max), the two floor ratios, the reference's speed-up
    over this row (its median / the reference's), median test accuracy, cores used (process CPU/wall)."""
    epochs = warm_epochs(runs)
    median = float(np.median(epochs))
    return {
        "contender": name, "epoch_median": median, "epoch_min": min(epochs), "epoch_max": max(epochs),
        "x_floor_one_thread": median / floor_one, "x_floor": median / floor,
        "speedup_of_fastnet": median / reference if reference else None,
        "test_accuracy": float(np.median([m["test_accuracy"] for m in runs])),
        "cores": float(np.median([m["process_cpu_seconds"] / m["process_wall_seconds"] for m in runs])),
        "steps_per_epoch": sorted({s for m in runs for s in m.get("steps_per_epoch", [])}),
        "runs": runs,
    }


def format_table(rows, threads, floor, floor_one):
    """The comparison at one thread count as text lines."""
    lines = [f"{threads} thread{'s' * (threads > 1)}: floor {floor:.3f} s ({threads} BLAS thread"
             f"{'s' * (threads > 1)}), {floor_one:.3f} s (1)",
             f"{'contender':15} {'epoch median (min-max)':>24} {'x floor1':>8} {'x floor':>8} "
             f"{'fastnet speed-up':>16} {'test acc':>8} {'cores':>5}"]
    for r in rows:
        speedup = f"{r['speedup_of_fastnet']:.2f}x" if r["speedup_of_fastnet"] else "-"
        span = f"{r['epoch_median']:.3f} s ({r['epoch_min']:.2f}-{r['epoch_max']:.2f})"
        lines.append(f"{r['contender']:15} {span:>24} {r['x_floor_one_thread']:8.2f} {r['x_floor']:8.2f} "
                     f"{speedup:>16} {r['test_accuracy']:8.4f} {r['cores']:5.2f}")
    return lines


def table(names, args, threads, init, n_train):
    """Every contender in rounds, the floor between rounds: the rows, floor samples and failures."""
    samples, sample = floor_sampler([(128, 128)], n_train)
    entries = [(name, CONTENDERS[name].argv(args.epochs, 128, 128, threads, init(128), args.data_dir))
               for name in names]
    results, failed = round_robin(entries, args.runs, sample)
    floor, floor_one = (float(np.median(samples[k])) for k in ((128, 128), "one thread"))
    reference = results.get(REFERENCE)
    reference = float(np.median(warm_epochs(reference))) if reference else None
    rows = [summarise(name, results[name], floor, floor_one, reference) for name in names if results[name]]
    print("\n".join(format_table(rows, threads, floor, floor_one)))
    return {"rows": rows, "failed": failed,
            "floor": {"median": floor, "samples": samples[(128, 128)], "one_thread_median": floor_one,
                      "one_thread_samples": samples["one thread"]}}


def scale(names, args, threads, init, n_train):
    """fastnet and JAX lax.scan at other batch sizes and widths, with the floor of each shape."""
    names = [n for n in names if n in SCALE_CONTENDERS]
    samples, sample = floor_sampler(SCALE, n_train, repeats=2)
    def key(name, b, w):
        return f"{name} batch {b} width {w}"

    entries = [(key(name, b, w), CONTENDERS[name].argv(2, b, w, threads, init(w), args.data_dir))  # epoch 1: warm-up
               for b, w in SCALE for name in names]
    results, failed = round_robin(entries, args.runs, sample)
    rows = []
    print(f"scale, {threads} thread{'s' * (threads > 1)}:\n{'batch':>5} {'width':>5} {'floor':>8}"
          + "".join(f" {name + ' (x floor)':>22}" for name in names))
    for b, w in SCALE:
        floor = float(np.median(samples[(b, w)]))
        row = {"batch": b, "width": w, "floor_seconds": floor, "floor_samples": samples[(b, w)]}
        line = f"{b:5} {w:5} {floor:6.3f} s"
        for name in names:
            runs = results[key(name, b, w)]
            median = float(np.median(warm_epochs(runs))) if runs else None
            row[name] = {"epoch_median": median, "x_floor": median / floor if runs else None,
                         "test_accuracy": runs[0]["test_accuracy"] if runs else None, "runs": runs}
            line += f" {median:11.3f} s ({median / floor:5.2f})" if runs else f" {'failed':>22}"
        rows.append(row)
        print(line)
    return {"rows": rows, "failed": failed}


WHOLE_CACHES = {"NUMBA_CACHE_DIR": "numba", "FASTNET_CACHE_DIR": "data", "TORCHINDUCTOR_CACHE_DIR": "inductor",
                 "TRITON_CACHE_DIR": "triton", "JAX_COMPILATION_CACHE_DIR": "jax", "KERAS_HOME": "keras"}


def whole(names, args, threads, init):
    """Each contender's whole run, exec to exit: a first run with every compile and data cache
    empty (fastnet's prebuilt kernels are part of its install, as a peer's compiled library is),
    then a later run with those caches as the first left them. Rounds rotate the contenders."""
    entries = [(name, CONTENDERS[name].argv(args.epochs, 128, 128, threads, init(128), args.data_dir))
               for name in names]
    results, failed = {name: {"first": [], "later": []} for name in names}, {}
    for r in range(args.runs):
        for name, argv in entries[r % len(entries):] + entries[: r % len(entries)]:
            if name in failed:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                env = dict(os.environ, **{var: os.path.join(tmp, sub) for var, sub in WHOLE_CACHES.items()})
                try:
                    for kind in ("first", "later"):
                        results[name][kind].append(run_once(argv, env))
                except Failed as e:
                    failed[name] = str(e)
                    continue
            first, later = (results[name][k][-1]["process_wall_seconds"] for k in ("first", "later"))
            print(f"  round {r + 1}/{args.runs}  {name:15} first {first:6.2f} s  later {later:6.2f} s",
                  file=sys.stderr, flush=True)
    rows = []
    print(f"whole runs, {threads} thread{'s' * (threads > 1)}, {args.epochs} epochs (exec to exit, median):")
    for name in names:
        if name in failed or not results[name]["first"]:
            continue
        row = {"contender": name, **{f"{kind}_median": float(np.median([m["process_wall_seconds"] for m in runs]))
                                     for kind, runs in results[name].items()},
               "test_accuracy": float(np.median([m["test_accuracy"] for m in results[name]["later"]])),
               "runs": results[name]}
        rows.append(row)
        print(f"  {name:15} first {row['first_median']:6.2f} s  later {row['later_median']:6.2f} s  "
              f"test acc {row['test_accuracy']:.4f}")
    return {"rows": rows, "failed": failed}


def cold_start(threads, data_dir=None):
    """One-epoch fastnet runs: with an empty Numba cache and the prebuilt kernels set aside (a
    compile), with an empty cache (the prebuilt kernels: a first run after `make setup`), and again
    with the cache as that left it (a later run).

    startup_seconds is the time before the first batch; kernel_load_seconds its part spent on
    compiling or loading the kernels.
    """
    argv = CONTENDERS["fastnet"].argv(1, 128, 128, threads, None, data_dir)
    runs = {}
    with tempfile.TemporaryDirectory() as cache:
        runs["compile"] = run_once(argv, dict(os.environ, NUMBA_CACHE_DIR=cache, FASTNET_NO_PREBUILT="1"))
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        runs["first run"], runs["warm cache"] = (run_once(argv, env) for _ in range(2))
    keys = ("startup_seconds", "kernel_load_seconds", "epoch_seconds", "total_seconds")
    cold = {label: {k: m.get(k) for k in keys} for label, m in runs.items()}
    print(f"fastnet cold start, {threads} thread{'s' * (threads > 1)} (time to the first batch):")
    for label, m in cold.items():
        print(f"  {label:11} {m['startup_seconds']:6.2f} s (kernels {m['kernel_load_seconds']:.2f} s), "
              f"first epoch {m['epoch_seconds'][0]:.2f} s")
    return cold


def machine():
    """What the numbers were measured on: CPU model and AVX-512, cores, library versions, BLAS."""
    from threadpoolctl import threadpool_info

    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        model = platform.processor()
    with open("/proc/cpuinfo") as f:
        flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"cpu": model, "avx512": any(f.startswith("avx512") for f in flags),
            "avx512_flags": sorted(f for f in flags if f.startswith("avx512")), "cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)), "versions": versions, "blas": threadpool_info()}


def training_images(data_dir):
    """How many training images the contenders will see (the floor runs over as many rows)."""
    from fastnet import data

    return len(data.load("fashion-mnist", "train", data_dir).labels)


def parse_names(text):
    names = text.split(",") if text else list(CONTENDERS)
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown contender {', '.join(unknown)}; known: {', '.join(CONTENDERS)}")
    return names


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5, help="epochs per run of the table (default 5)")
    p.add_argument("--runs", type=int, default=3, help="rounds over the contenders (default 3)")
    p.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default 1,2)")
    p.add_argument("--only", type=parse_names, default=list(CONTENDERS), metavar="NAME,...",
                   help=f"contenders to run (default all: {','.join(CONTENDERS)})")
    p.add_argument("--table", action="store_true", help="the comparison table")
    p.add_argument("--scale", action="store_true", help="the batch-size and width table")
    p.add_argument("--cold", action="store_true", help="fastnet's cold start")
    p.add_argument("--whole", action="store_true", help="every contender's whole run, first and later (not by default)")
    p.add_argument("--data-dir", help="Fashion-MNIST IDX directory (default: fastnet's search)")
    p.add_argument("--results", default=str(RESULTS), help="directory of the results JSON (default bench/results)")
    args = p.parse_args(argv)
    parts = [part for part in ("table", "scale", "cold", "whole") if getattr(args, part)] or ["table", "scale", "cold"]
    from threadpoolctl import threadpool_limits

    from bench.peers.common import write_init

    names, skipped = available(args.only)
    n_train = training_images(args.data_dir)
    info, usable = machine(), sorted(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        def init(width):  # fastnet's initial weights for 784-width-10, written once
            path = Path(tmp) / f"init-{width}.npz"
            if not path.exists():
                write_init(path, f"784,{width},10")
            return path

        for threads in map(int, args.threads.split(",")):
            os.sched_setaffinity(0, usable[:threads])  # every run started from here inherits the mask
            out = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
                   "command": shlex.join([sys.executable, "-m", "bench.compare", *(sys.argv[1:] if argv is None else argv)]),
                   "machine": info, "threads": threads, "settings": {**vars(args), "parts": parts},
                   "training_images": n_train, "skipped": skipped, "loadavg_start": os.getloadavg()}
            with threadpool_limits(threads, user_api="blas"):  # for the floor, sampled in this process
                if "table" in parts:
                    out["table"] = table(names, args, threads, init, n_train)
                if "scale" in parts:
                    out["scale"] = scale(names, args, threads, init, n_train)
                if "cold" in parts and "fastnet" in names:
                    out["cold_start"] = cold_start(threads, args.data_dir)
                if "whole" in parts:
                    out["whole"] = whole(names, args, threads, init)
            out["loadavg_end"] = os.getloadavg()
            kind = next(k for k, part in (("compare", "table"), ("scale", "scale"), ("whole", "whole"), ("cold", "cold"))
                        if part in parts)  # a later --scale or --whole keeps the table
            path = Path(args.results) / f"{kind}-{datetime.date.today()}-threads{threads}.json"  # keeps the table
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(out, indent=2) + "\n")
            print(f"wrote {path}")
    os.sched_setaffinity(0, usable)


if __name__ == "__main__":
    main()
