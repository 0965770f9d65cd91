"""python -m fastnet.train: train an MLP on an IDX, .npz or CSV data set and report accuracy and timings.

Everything that can be checked is checked before the first step (flags, output paths, both data
splits, memory); once training has started, the model is saved before anything else can fail.
"""

import argparse
import json
import os
import resource
import shlex
import sys
import time

import numpy as np

from kernels import ACTIVATIONS

from . import blasinfo, checkpoint, data
from .backend import BACKEND_NAMES, DEFAULT_BACKEND, get_backend
from .cli import (
    ArgumentParser,
    StopRequest,
    check_outputs,
    non_negative_int,
    positive_float,
    positive_int,
    run,
    seconds_since_launch,
    validation_split,
)
from .errors import InputError
from .evaluate import check_inputs, fingerprint, output_labels, trained_on_arrays
from .files import atomic_write
from .model import check_fits, evaluate, parse_layers
from .optim import OPTIMIZERS
from .progress import ProgressBar
from .recipe import PRESETS, check, check_memory, eval_rows_of, held_out, new_state, run_training, split
from .threads import CoreShare, numba_threads, set_threads
from .training import warm_up

# Settings that define the recipe: a resumed run keeps the checkpoint's and refuses contradicting flags.
RECIPE = ("preset", "batch_size", "lr", "schedule", "warmup", "optimizer", "beta1", "beta2", "eps",
          "standardize", "val_split", "seed", "layers", "activation", "alpha", "dtype", "dataset")
# Settings that say how to run: a resumed run takes them from the flags, else from the checkpoint.
RUN = ("backend", "threads")


def build_parser():
    p = ArgumentParser(prog="python -m fastnet.train", description=__doc__.splitlines()[0])
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
    p.add_argument("--val-split", type=validation_split,
                   help="held out for validation: a fraction below 1 or a number of images "
                        "(preset: 0.05; seed 0)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of initialisation, split and order")
    p.add_argument("--layers", default="784,128,10",
                   help="layer sizes, input first (default: the data's inputs, 128, the data's classes)")
    p.add_argument("--activation", choices=ACTIVATIONS, default="relu",
                   help="activation of the hidden layers (default relu)")
    p.add_argument("--alpha", type=float, default=0.0,
                   help="L2 penalty of the weights, as scikit-learn's MLPClassifier (default 0)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--backend", choices=BACKEND_NAMES, default=DEFAULT_BACKEND)
    p.add_argument("--threads", type=positive_int, help="threads for BLAS and kernels (default: all cores)")
    p.add_argument("--dataset", choices=tuple(data.DATASETS), default="fashion-mnist")
    p.add_argument("--data-dir", help="directory holding the four IDX files; or a .npz file, or a directory "
                                      "of *train*.csv and *test*.csv (see fastnet.data)")
    p.add_argument("--save", metavar="PATH", help="write the model (and its training state) to PATH (.npz)")
    p.add_argument("--checkpoint-every", type=positive_int, metavar="N", help="with --save, also save every N epochs")
    p.add_argument("--resume", metavar="PATH", help="continue the run saved in PATH up to --epochs in total")
    p.add_argument("--metrics-json", metavar="PATH", help="write the run's settings and metrics as JSON")
    p.add_argument("--plot", metavar="DIR", help="write learning curves and a confusion matrix as PNG files")
    p.add_argument("--quiet", action="store_true", help="print only the final result")
    p.add_argument("--train-pass", action="store_true",
                   help="measure the training accuracy with a pass over the training rows after each epoch "
                        "(default: the running accuracy of the epoch's steps, which costs nothing)")
    return p


def given_flags(argv):
    """The settings named on the command line (not left to their defaults)."""
    bare = build_parser()
    bare.set_defaults(**{a.dest: None for a in bare._actions if a.dest != "help"})
    return {k for k, v in vars(bare.parse_args(argv)).items() if v is not None}


def settings_from(args):
    """Fill the flags left unset from the preset, then check them all."""
    s = dict(vars(args))
    for key, value in PRESETS[args.preset].items():
        if s[key] is None:
            s[key] = value
    check_settings(s)
    return s


def check_settings(s, where="--"):
    """InputError unless every recipe value has its type and range (flags, or a checkpoint's copy).

    `where` starts each message: "--" for flags, "the checkpoint's " for a resumed file.
    """
    def name(key):
        return f"{where}{key.replace('_', '-')}" if where == "--" else f"{where}{key}"

    check(s, name)
    if s.get("dataset") not in data.DATASETS:
        raise InputError(f"{name('dataset')} must be one of {', '.join(data.DATASETS)}, got {s.get('dataset')!r}")
    if s.get("checkpoint_every") and not s.get("save"):
        raise InputError("--checkpoint-every needs --save PATH")


def resume_state(s, given):
    """Load the checkpoint named by --resume. It keeps its recipe: a flag that contradicts it is an
    error. --backend and --threads default to the checkpoint's, so the resumed run is exact; output
    paths and --data-dir come from the flags. Without --save, the run keeps saving to the checkpoint.
    Returns (state, class names, classes): the labels its outputs stand for (None: 0..K-1)."""
    state, saved, names, classes = checkpoint.load_resumable(s["resume"], OPTIMIZERS)
    saved = {"activation": "relu", "alpha": 0.0, **saved}  # what checkpoints from before these settings used
    for key in RECIPE:
        if key in given and key in saved and s[key] != saved[key]:
            raise InputError(f"--{key.replace('_', '-')} {s[key]} contradicts {s['resume']}, which was trained "
                             f"with {saved[key]}; a resumed run keeps its recipe (drop the flag)")
    trained_on_arrays(s["resume"], saved, *(s[k] if k in given else None for k in ("data_dir", "dataset")))
    s.update({k: saved[k] for k in RECIPE if k in saved})
    if "input_dtype" in saved:  # what its inputs were: the data must be of the same kind (check_inputs)
        s["input_dtype"] = saved["input_dtype"]
    s.update({k: saved[k] for k in RUN if k not in given and saved.get(k) is not None})
    if s["data_dir"] is None and isinstance(saved.get("data_dir"), str):
        s["data_dir"] = saved["data_dir"]
    s["save"] = s["save"] or s["resume"]
    check_settings(s, f"{s['resume']}: the checkpoint's ")
    if state.epoch >= s["epochs"]:
        raise InputError(f"{s['resume']} already has {state.epoch} epochs; ask for more with --epochs")
    return state, names, classes


def resume_command(s):
    """The command that continues this run exactly: the checkpoint, and how the run was made to run."""
    words = ["python", "-m", "fastnet.train", "--resume", s["save"], "--epochs", str(s["epochs"]),
             "--backend", s["backend"], "--threads", str(s["threads"])]
    if s["data_dir"] is not None:
        words += ["--data-dir", s["data_dir"]]
    return " ".join(shlex.quote(w) for w in words)


def epoch_line(state, epochs, n_train):
    """An epoch's metrics (loss and acc: the running means of its steps, unless --train-pass) and its
    whole wall time, training (with its rate) and evaluation."""
    h = state.history
    secs, evals = h.epoch_seconds[-1], h.eval_seconds[-1]
    val = f"  val_loss {h.val_loss[-1]:.4f}  val_acc {h.val_accuracy[-1]:.4f}" if not np.isnan(h.val_loss[-1]) else ""
    return (f"epoch {state.epoch}/{epochs}  loss {h.train_loss[-1]:.4f}  acc {h.train_accuracy[-1]:.4f}{val}"
            f"  {secs + evals:.2f}s (train {secs:.2f}s, {n_train / secs:,.0f} samples/s; eval {evals:.2f}s)")


def prepare(s, given):
    """Everything before the first step: backend, threads, checkpoint, both data splits, the split
    into training and validation rows, the model, and the memory check. Returns the run's pieces;
    `classes` is a resumed file's (its labels are mapped to its outputs as evaluate maps them), else None."""
    kernels = get_backend(s["backend"])
    state = names = saved_classes = None
    if s["resume"]:
        state, names, saved_classes = resume_state(s, given)
        kernels = get_backend(s["backend"])
    if s["data_dir"] is not None:  # stored with the model: evaluate finds it from any directory
        s["data_dir"] = os.path.abspath(s["data_dir"])
    check_outputs(s)
    s["threads"], s["threads_note"] = set_threads(s["threads"], kernels.BLAS_THREADS, s["backend"])
    train_split = data.load(s["dataset"], "train", s["data_dir"])
    test_split = data.load(s["dataset"], "test", s["data_dir"])
    images, classes = train_split.images, train_split.num_classes
    if state is None:
        labels = train_split.labels
        sizes = parse_layers(s["layers"])
        if "layers" not in given:  # the default's hidden layers, between the data's inputs and classes
            sizes = (images.shape[1], *sizes[1:-1], classes)
        check_fits(sizes, images, labels, "the training set", "--layers", classes)
    else:
        check_inputs(s, images, "the training set", s["resume"])
        labels = output_labels(saved_classes, train_split, "the training set", s["resume"])
        sizes = state.model.sizes
        check_fits(sizes, images, labels, "the training set", f"{s['resume']}'s layers",
                   classes if saved_classes is None else None)
    test = test_split.images, output_labels(saved_classes, test_split, "the test set", s["resume"])
    check_fits(sizes, *test, "the test set", "the model")
    s["test_fingerprint"] = fingerprint(test_split.images, test_split.labels)
    s["input_dtype"] = images.dtype.name
    s["layers"] = ",".join(map(str, sizes))
    copies = images.nbytes if held_out(len(labels), s["val_split"]) else 0  # split gathers the rows
    check_memory(sizes, min(s["batch_size"], len(labels)), s["dtype"], copies, scaled_rows=len(labels),
                 eval_rows=eval_rows_of(len(labels), s["val_split"], len(test[1]), s.get("train_pass", False)),
                 threads=s["threads"], backend=s["backend"], optimizer=s["optimizer"], pixels=images.dtype == np.uint8)
    train_rows, val = split(images, labels, s["val_split"], s["seed"])
    if s["resume"]:
        checkpoint.check_position(state, len(train_rows[1]), s["batch_size"], s["resume"])
    if state is None:
        state = new_state(s, sizes, train_rows[0])
        names = list(train_split.class_names)
    return kernels, state, names, saved_classes, train_rows, val, test


def main(argv=None):
    args = build_parser().parse_args(argv)
    given = given_flags(argv)
    s = settings_from(args)
    with CoreShare(numba_threads) as share:  # registered first: runs already going make room early
        kernels, state, names, classes, train_rows, val, test = prepare(s, given)
        # BLAS's own split of a product changes its rounding, so only Numba's threads are shared:
        # the numpy backend keeps the BLAS threads it was given.
        share.start(s["threads"] if kernels.BLAS_THREADS == 1 else 1)
        return train_and_report(s, kernels, state, names, train_rows, val, test, share, classes)


def threads_line(s, share):
    """How many threads the run is cut for and how many run now, and why fewer."""
    line = f"{s['threads']} threads{s['threads_note']}"
    if share.running < share.wanted:
        line += f" (the cores are busy with other work: {share.running} running now)"
    return line


def train_and_report(s, kernels, state, names, train_rows, val, test, share, classes=None):
    """Train (announcing the run, saving as asked, stopping cleanly on a signal), then report.
    classes: the labels the outputs stand for, kept in the saved file (None: 0..K-1)."""
    say = (lambda *a: None) if s["quiet"] else print
    source = s["dataset"] if data.kind(s["data_dir"]) == "idx" else s["data_dir"]
    blas = blasinfo.blas_info()
    note = blasinfo.forced_warning(blas)
    if note:
        print(note, file=sys.stderr)
    say(f"fastnet: {source} {len(train_rows[1])} train / {len(val[1])} val, layers {s['layers']}, "
        f"{s['dtype']}, backend {s['backend']}, {threads_line(s, share)}, "
        f"{s['optimizer']} lr {s['lr']:g} {s['schedule']}, batch {s['batch_size']}, {blasinfo.blas_text(blas)}")

    def save(what):
        checkpoint.save(s["save"], state, s, names, classes)
        return f"; {what} saved to {s['save']}"

    bar = ProgressBar(len(train_rows[1]))

    def on_epoch(st):
        bar.close()
        say(epoch_line(st, s["epochs"], len(train_rows[1])))
        if s["save"] and s["checkpoint_every"] and st.epoch % s["checkpoint_every"] == 0:
            save("checkpoint")
        bar.reset(f"epoch {st.epoch + 1}/{s['epochs']}")

    with StopRequest() as stop:
        if not compiled(s, kernels, state, stop):
            kept = f"; {s['resume']} is as it was" if s["resume"] else "; nothing saved"
            print(f"{stop.name} before the first step{kept}", file=sys.stderr)
            return 130
        bar.reset(f"epoch {state.epoch + 1}/{s['epochs']}")
        try:
            done = run_training(state, kernels, train_rows, val, s, on_epoch, bar.update, stop, parts=s["threads"],
                                share=share, train_pass=s.get("train_pass", False))
        finally:
            bar.close()
        saved = save("model") if s["save"] else ""
        if not done:
            more = f". Resume with: {resume_command(s)}" if s["save"] else \
                   " (pass --save PATH to keep a resumable checkpoint)"
            where = f"at epoch {state.epoch + 1}, step {state.batch}" if state.batch else f"after epoch {state.epoch}"
            print(f"{stop.name} {where}{saved or '; nothing saved'}{more}", file=sys.stderr)
            return 130
        if stop():
            print(f"{stop.name} after the last epoch{saved}; the test evaluation was skipped", file=sys.stderr)
            return 130
        code = report(s, state, kernels, names, test, stop)
    if stop():
        print(f"{stop.name} during the report{saved}", file=sys.stderr)
        return 130
    return code


def compiled(s, kernels, state, stop):
    """Compile (or load) the kernels the run uses (training.warm_up) under the run's StopRequest;
    False when a stop was asked meanwhile. No signal raises there, not even a second one (stop.hold):
    Numba compiles through llvmlite's ctypes callbacks, which swallow an exception ("Exception ignored
    on calling ctypes callback function") and go on, to train or to report a compile error. The
    run stops once the compile is over (the time it announced), having written nothing."""
    t = time.perf_counter()
    stop.hold = True
    try:
        warm_up(kernels, state.model.dtype, s["optimizer"])
    finally:
        stop.hold = False
    s["kernel_load_seconds"] = time.perf_counter() - t
    s["startup_seconds"] = seconds_since_launch()
    return not stop()


def report(s, state, kernels, names, test, stop):
    """Evaluate on the test set, print the summary, write the metrics and plots."""
    t = time.perf_counter()
    test_images, test_labels = test
    test_loss, test_acc = evaluate(state.model, kernels, test_images, test_labels)
    if stop():
        return 130
    h = state.history
    print(f"test accuracy {test_acc:.4f}  test loss {test_loss:.4f}  train time {sum(h.epoch_seconds):.2f}s "
          f"(median epoch {np.median(h.epoch_seconds):.3f}s)  total {seconds_since_launch():.1f}s")
    metrics = {key: s[key] for key in ("backend", "dtype", "layers", "activation", "epochs", "batch_size", "lr",
                                        "optimizer", "seed", "beta1", "beta2", "eps", "alpha", "schedule", "warmup",
                                        "standardize", "preset", "threads", "val_split")}
    metrics.update({
        "epoch_seconds": h.epoch_seconds, "eval_seconds": h.eval_seconds, "train_loss": h.train_loss,
        "train_accuracy": h.train_accuracy[-1], "train_accuracy_per_epoch": h.train_accuracy,
        "val_loss": h.val_loss, "val_accuracy": h.val_accuracy,
        "test_loss": test_loss, "test_accuracy": test_acc, "test_eval_seconds": time.perf_counter() - t,
        "startup_seconds": s["startup_seconds"], "kernel_load_seconds": s["kernel_load_seconds"],
        "blas": blasinfo.blas_info(),
        "total_seconds": seconds_since_launch(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    })
    if s["metrics_json"]:
        write_json(s["metrics_json"], metrics)
    if s["plot"]:
        from . import plots

        plots.training_plots(s["plot"], h, state.model, kernels, test_images, test_labels, names)
    return 0


def write_json(path, obj):
    """Write obj as JSON to path atomically."""
    with atomic_write(path, "w", "--metrics-json") as f:
        json.dump(_no_nan(obj), f, indent=2)
        f.write("\n")


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
