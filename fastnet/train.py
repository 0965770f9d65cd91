"""python -m fastnet.train: train an MLP on an IDX data set and report accuracy and timings."""

import argparse
import json
import os
import resource
import signal
import sys
import time

import numpy as np

from . import checkpoint, data
from .backend import BACKENDS, DEFAULT_BACKEND, get_backend
from .cli import ArgumentParser, positive_float, positive_int, run
from .errors import InputError
from .model import MLP, evaluate, parse_layers
from .optim import OPTIMIZERS
from .progress import ProgressBar
from .threads import set_threads
from .recipe import PRESETS, new_state
from .training import fit, split_validation, warm_up

START = time.perf_counter()

def build_parser():
    p = ArgumentParser(prog="python -m fastnet.train", description=__doc__)
    p.add_argument("--preset", choices=PRESETS, default="fastnet",
                   help="recipe for the flags left unset: fastnet (default) or seed (the blog's)")
    p.add_argument("--epochs", type=positive_int, default=5, help="total epochs (default 5)")
    p.add_argument("--batch-size", type=positive_int, default=128, help="samples per step (default 128)")
    p.add_argument("--lr", type=positive_float, help="base learning rate (preset: 2e-3; seed 5e-4)")
    p.add_argument("--schedule", choices=("constant", "cosine"), help="learning-rate schedule")
    p.add_argument("--warmup", type=int, help="steps of linear learning-rate warm-up (default 0)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    p.add_argument("--beta1", type=float, help="Adam's first-moment decay (preset: 0.8; seed 0.9)")
    p.add_argument("--beta2", type=float, help="Adam's second-moment decay (preset: 0.99; seed 0.999)")
    p.add_argument("--eps", type=float, default=1e-8, help="Adam's epsilon (default 1e-8)")
    p.add_argument("--standardize", action=argparse.BooleanOptionalAction,
                   help="standardise each pixel with the training images' mean and deviation (preset: on)")
    p.add_argument("--val-split", type=int, help="training images held out for validation (preset: 3000; seed 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, validation split and order")
    p.add_argument("--layers", default="784,128,10", help="layer sizes, input first (default 784,128,10)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--backend", choices=tuple(BACKENDS), default=DEFAULT_BACKEND)
    p.add_argument("--threads", type=positive_int, help="threads for BLAS and kernels (default: all cores)")
    p.add_argument("--dataset", choices=tuple(data.DATASETS), default="fashion-mnist")
    p.add_argument("--data-dir", help="directory holding the four IDX files")
    p.add_argument("--save", metavar="PATH", help="write the model (and its training state) to PATH (.npz)")
    p.add_argument("--checkpoint-every", type=positive_int, metavar="N", help="with --save, also save every N epochs")
    p.add_argument("--resume", metavar="PATH", help="continue the run saved in PATH up to --epochs in total")
    p.add_argument("--metrics-json", metavar="PATH", help="write the run's settings and metrics as JSON")
    p.add_argument("--plot", metavar="DIR", help="write learning curves and a confusion matrix as PNG files")
    p.add_argument("--quiet", action="store_true", help="print only the final result")
    return p


def settings_from(args):
    """Fill the flags left unset from the preset, then check them all."""
    s = dict(vars(args))
    for key, value in PRESETS[args.preset].items():
        if s[key] is None:
            s[key] = value
    check_settings(s)
    return s


def _is_int(x, least):
    return isinstance(x, int) and not isinstance(x, bool) and x >= least


def check_settings(s):
    """InputError unless every recipe value has its type and range (flags, or a checkpoint's copy)."""
    rules = {"epochs": 1, "batch_size": 1, "warmup": 0, "val_split": 0, "seed": 0}
    for key, least in rules.items():
        if not _is_int(s.get(key), least):
            raise InputError(f"--{key.replace('_', '-')} must be an integer >= {least}, got {s.get(key)!r}")
    for key in ("beta1", "beta2"):
        if not (isinstance(s.get(key), float) and 0 <= s[key] < 1):
            raise InputError(f"--{key} must be a number in [0, 1), got {s.get(key)!r}")
    if not (isinstance(s.get("eps"), float) and 0 < s["eps"] < float("inf")):
        raise InputError(f"--eps must be a positive number, got {s.get('eps')!r}")
    lr = s.get("lr")
    if not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and 0 < lr < float("inf")):
        raise InputError(f"--lr must be a positive finite number, got {lr!r}")
    choices = {"schedule": ("constant", "cosine"), "optimizer": tuple(OPTIMIZERS),
               "dtype": ("float32", "float64"), "dataset": tuple(data.DATASETS)}
    for key, allowed in choices.items():
        if s.get(key) not in allowed:
            raise InputError(f"--{key} must be one of {', '.join(allowed)}, got {s.get(key)!r}")
    if not isinstance(s.get("layers"), str):
        raise InputError(f"--layers must look like 784,128,10, got {s.get('layers')!r}")
    parse_layers(s["layers"])
    if s.get("threads") is not None and not _is_int(s["threads"], 1):
        raise InputError(f"--threads must be a positive integer, got {s['threads']!r}")
    if s.get("checkpoint_every") and not s.get("save"):
        raise InputError("--checkpoint-every needs --save PATH")
    for key in ("save", "metrics_json"):
        if s.get(key):
            folder = os.path.dirname(os.path.abspath(s[key]))
            if not os.path.isdir(folder):
                raise InputError(f"--{key.replace('_', '-')}: directory {folder} does not exist")


def check_layers(sizes, images, k):
    if sizes[0] != images.shape[1]:
        raise InputError(f"--layers starts with {sizes[0]} inputs but the images have {images.shape[1]} pixels")
    if sizes[-1] != k:
        raise InputError(f"--layers ends with {sizes[-1]} outputs but the data has {k} classes")


def resume_state(s):
    """Load the checkpoint named by --resume. Its recipe and data wins over flags, except the
    flags that say how to run (--epochs, --backend, --threads, output paths, and --data-dir when
    given). Without --save, the run keeps saving to the checkpoint it resumed."""
    state, saved, names = checkpoint.load_state(s["resume"], OPTIMIZERS)
    keep = {k: s[k] for k in ("epochs", "resume", "save", "checkpoint_every", "metrics_json", "plot",
                              "quiet", "backend", "threads")}
    keep["save"] = s["save"] or s["resume"]
    if s["data_dir"] is not None or not isinstance(saved.get("data_dir"), str):
        keep["data_dir"] = s["data_dir"]
    s.update(saved)
    s.update(keep)
    check_settings(s)
    if state.epoch >= s["epochs"]:
        raise InputError(f"{s['resume']} already has {state.epoch} epochs; ask for more with --epochs")
    return state, names


class Interrupt:
    """Turns the first Ctrl-C into a request to stop after the current step; a second one aborts."""

    def __init__(self):
        self.requested = False
        self.previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __call__(self):
        return self.requested

    def restore(self):
        signal.signal(signal.SIGINT, self.previous)


def epoch_line(state, epochs, n_train):
    h = state.history
    secs = h.epoch_seconds[-1]
    val = f"  val_loss {h.val_loss[-1]:.4f}  val_acc {h.val_accuracy[-1]:.4f}" if not np.isnan(h.val_loss[-1]) else ""
    return (f"epoch {state.epoch}/{epochs}  loss {h.train_loss[-1]:.4f}  acc {h.train_accuracy[-1]:.4f}{val}"
            f"  {secs:.2f}s ({n_train / secs:,.0f} samples/s)  eval {h.eval_seconds[-1]:.2f}s")


def main(argv=None):
    args = build_parser().parse_args(argv)
    s = settings_from(args)
    K = get_backend(s["backend"])
    threads = s["threads"] = set_threads(s["threads"], K.BLAS_THREADS)
    say = (lambda *a: None) if s["quiet"] else print
    state = names = None
    if s["resume"]:
        state, names = resume_state(s)
    images, labels = data.load_split(s["dataset"], "train", s["data_dir"])
    k = data.num_classes(s["dataset"], labels)
    sizes = parse_layers(s["layers"]) if state is None else state.model.sizes
    check_layers(sizes, images, k)
    if s["val_split"] >= len(labels):
        raise InputError(f"--val-split {s['val_split']} leaves no training images (the set has {len(labels)})")
    s["layers"] = ",".join(map(str, sizes))
    train_idx, val_idx = split_validation(len(labels), s["val_split"], np.random.default_rng([s["seed"], 1]))
    train = (np.ascontiguousarray(images[train_idx]), labels[train_idx])
    val = (images[val_idx], labels[val_idx])
    if state is None:
        state = new_state(s, sizes, train[0])
        names = data.class_names(s["dataset"], k)
    say(f"fastnet: {s['dataset']} {len(train[1])} train / {len(val[1])} val, layers {s['layers']}, "
        f"{s['dtype']}, backend {s['backend']}, {threads} threads, {s['optimizer']} lr {s['lr']:g} "
        f"{s['schedule']}, batch {s['batch_size']}")

    bar = ProgressBar(len(train[1]))

    def on_epoch(st):
        bar.close()
        say(epoch_line(st, s["epochs"], len(train[1])))
        if s["save"] and s["checkpoint_every"] and st.epoch % s["checkpoint_every"] == 0:
            checkpoint.save(s["save"], st, s, names)
        bar.reset(f"epoch {st.epoch + 1}/{s['epochs']}")

    t = time.perf_counter()
    warm_up(K, state.model.dtype)
    s["kernel_load_seconds"] = time.perf_counter() - t
    stop = Interrupt()
    bar.reset(f"epoch {state.epoch + 1}/{s['epochs']}")
    s["startup_seconds"] = time.perf_counter() - START
    try:
        with np.errstate(all="ignore"):  # divergence is detected and reported by fit, not by warnings
            done = fit(state, K, train, val, s["epochs"], s["batch_size"], s["lr"], s["schedule"],
                       s["warmup"], on_epoch, bar.update, stop)
    finally:
        bar.close()
        stop.restore()
    if not done:
        if s["save"]:
            checkpoint.save(s["save"], state, s, names)
            print(f"interrupted at epoch {state.epoch + 1}, step {state.batch}; saved to {s['save']}. "
                  f"Resume with: python -m fastnet.train --resume {s['save']} --epochs {s['epochs']}",
                  file=sys.stderr)
        else:
            print("interrupted; nothing saved (pass --save PATH to keep a resumable checkpoint)", file=sys.stderr)
        return 130
    return report(s, state, K, names, train)


def report(s, state, K, names, train):
    """Evaluate on the test set, print the summary, write the model, metrics and plots."""
    t = time.perf_counter()
    test_images, test_labels = data.load_split(s["dataset"], "test", s["data_dir"])
    if len(test_labels) and int(test_labels.max()) >= state.model.num_classes:
        raise InputError(f"test label {int(test_labels.max())} is outside the model's "
                         f"{state.model.num_classes} classes")
    test_loss, test_acc = evaluate(state.model, K, test_images, test_labels)
    h = state.history
    train_seconds = sum(h.epoch_seconds)
    print(f"test accuracy {test_acc:.4f}  test loss {test_loss:.4f}  train time {train_seconds:.2f}s "
          f"(median epoch {np.median(h.epoch_seconds):.3f}s)  total {time.perf_counter() - START:.1f}s")
    if s["save"]:
        checkpoint.save(s["save"], state, s, names)
    metrics = {
        "backend": s["backend"], "dtype": s["dtype"], "layers": s["layers"], "epochs": s["epochs"],
        "batch_size": s["batch_size"], "lr": s["lr"], "optimizer": s["optimizer"], "seed": s["seed"],
        "beta1": s["beta1"], "beta2": s["beta2"], "eps": s["eps"],
        "schedule": s["schedule"], "warmup": s["warmup"], "standardize": s["standardize"],
        "preset": s["preset"], "threads": s["threads"], "val_split": s["val_split"],
        "epoch_seconds": h.epoch_seconds, "eval_seconds": h.eval_seconds, "train_loss": h.train_loss,
        "train_accuracy": h.train_accuracy[-1], "train_accuracy_per_epoch": h.train_accuracy,
        "val_loss": h.val_loss, "val_accuracy": h.val_accuracy,
        "test_loss": test_loss, "test_accuracy": test_acc, "test_eval_seconds": time.perf_counter() - t,
        "startup_seconds": s["startup_seconds"], "kernel_load_seconds": s["kernel_load_seconds"],
        "total_seconds": time.perf_counter() - START,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if s["metrics_json"]:
        write_json(s["metrics_json"], metrics)
    if s["plot"]:
        from . import plots

        plots.training_plots(s["plot"], h, state.model, K, test_images, test_labels, names)
    return 0


def write_json(path, obj):
    """Write obj as JSON to path via a temporary file and a rename."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(_no_nan(obj), f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def _no_nan(obj):
    """NaN is not JSON: write null instead."""
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_no_nan(v) for v in obj]
    return obj


if __name__ == "__main__":
    run(main)
