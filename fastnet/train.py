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

from . import blasinfo, checkpoint, data, run
from .backend import BACKEND_NAMES, DEFAULT_BACKEND, get_backend
from .cli import (
    ArgumentParser,
    StopRequest,
    check_outputs,
    non_negative_int,
    positive_float,
    positive_int,
    run as run_command,
    seconds_since_launch,
    validation_split,
)
from .errors import InputError
from .files import atomic_write
from .model import check_fits, parse_layers
from .progress import ProgressBar
from .provenance import check_inputs, fingerprint, output_labels, trained_on_arrays
from .optim import OPTIMIZERS
from .recipe import MAX_THREADS, FIELDS, PRESETS, Recipe, check_memory, eval_rows_of, held_out, make, new_state, split
from .threads import CoreShare, numba_threads, set_threads
from .run import epoch_line, warm_up

# The flags' own parsers where a recipe field's plain type would say less (the others: the field's rule).
FLAG_TYPES = {"epochs": positive_int, "batch_size": positive_int, "lr": positive_float, "seed": non_negative_int,
              "val_split": validation_split, "layers": str}
# Flags with a default of their own; the others come from --preset.
FLAG_DEFAULTS = {"epochs": 5, "batch_size": 128, "optimizer": "adam", "eps": 1e-8, "seed": 0, "layers": "784,128,10",
                 "activation": "relu", "alpha": 0.0, "dtype": "float32"}


def flag(field):
    """The command line's name of a recipe field: --batch-size for batch_size."""
    return f"--{field.replace('_', '-')}"


def build_parser():
    p = ArgumentParser(prog="python -m fastnet.train", description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=PRESETS, default="fastnet",
                   help="recipe for the flags left unset: fastnet (default) or seed (the blog's)")
    for field, (rule, text) in FIELDS.items():  # the recipe's flags, from its one table
        if field == "standardize":
            p.add_argument(flag(field), action=argparse.BooleanOptionalAction, help=text)
        elif rule.choices:
            p.add_argument(flag(field), choices=rule.choices, default=FLAG_DEFAULTS.get(field), help=text)
        else:
            p.add_argument(flag(field), type=FLAG_TYPES.get(field, rule.parse), default=FLAG_DEFAULTS.get(field),
                           help=text)
    p.add_argument("--backend", choices=BACKEND_NAMES, default=DEFAULT_BACKEND)
    p.add_argument("--threads", type=positive_int, help="threads for BLAS and kernels (default: all cores)")
    p.add_argument("--dataset", choices=tuple(data.DATASETS), default="fashion-mnist")
    p.add_argument("--data-dir", help="directory holding the four IDX files; or a .npz file, or a directory "
                                      "of *train*.csv and *test*.csv (see fastnet.data)")
    p.add_argument("--save", metavar="PATH", help="write the model (and its training state) to PATH (.npz)")
    p.add_argument("--checkpoint-every", type=positive_int, metavar="N", help="with --save, also save every N epochs")
    p.add_argument("--resume", metavar="PATH", help="continue the run saved in PATH up to --epochs in total")
    p.add_argument("--metrics-json", metavar="PATH", help="write the run's recipe and metrics as JSON")
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


def recipe_from(args):
    """The Recipe of the flags: the preset's for those left unset, --layers read from its text; a
    value out of range is one line naming its flag."""
    values = {k: getattr(args, k) for k in FIELDS if getattr(args, k) is not None}
    if not isinstance(args.layers, str):  # `--layers=--` gives [] on Pythons before 3.11.8 (CPython gh-109475)
        raise InputError(f"--layers must look like 784,128,10, got {args.layers!r}")
    values["layers"] = parse_layers(args.layers)
    try:
        return make(flag, **{**Recipe.preset(args.preset).as_stored(), **values})
    except (ValueError, TypeError) as exc:
        raise InputError(str(exc)) from None


def check_args(args):
    """InputError for flags that contradict each other."""
    if args.threads is not None and args.threads > MAX_THREADS:
        raise InputError(f"--threads must be an integer from 1 to {MAX_THREADS}, got {args.threads}")
    if args.checkpoint_every and not args.save:
        raise InputError("--checkpoint-every needs --save PATH")


def resume_state(args, r, given):
    """Load the checkpoint named by --resume. It keeps its recipe (but for --epochs): a flag that
    contradicts it is an error. --backend and --threads default to the checkpoint's, so the
    resumed run is exact; output paths and --data-dir come from the flags. Without --save, the run
    keeps saving to the checkpoint. Returns (state, recipe, trained record, class names, classes):
    classes are the labels its outputs stand for (None: 0..K-1)."""
    state, record, names, classes = checkpoint.load_resumable(args.resume, OPTIMIZERS)
    try:
        saved = Recipe.from_stored(record["recipe"])
    except (ValueError, TypeError) as exc:
        raise InputError(f"{args.resume}: the checkpoint's recipe is damaged ({exc})") from None
    trained = record["trained"]
    asked = {k: getattr(r, k) for k in FIELDS if k in given and k != "epochs"}
    if "preset" in given:  # what the preset sets, where no flag says otherwise
        preset = Recipe.preset(args.preset)
        asked.update({k: getattr(preset, k) for k in set().union(*PRESETS.values()) if k not in given})
    if "dataset" in given and "dataset" in trained:
        asked["dataset"] = args.dataset
    for key, value in asked.items():
        held = trained.get("dataset") if key == "dataset" else getattr(saved, key)
        if value != held:
            show = (lambda v: ",".join(map(str, v)) if isinstance(v, (tuple, list)) else v)
            raise InputError(f"{flag(key) if key in FIELDS else '--' + key} {show(value)} contradicts {args.resume}, "
                             f"which was trained with {show(held)}; a resumed run keeps its recipe (drop the flag)")
    trained_on_arrays(args.resume, trained, *(getattr(args, k) if k in given else None for k in ("data_dir", "dataset")))
    if isinstance(trained.get("dataset"), str):
        args.dataset = trained["dataset"]
    for key in ("backend", "threads"):  # how it ran: the flags' when given, else the checkpoint's
        if key not in given and trained.get(key) is not None:
            setattr(args, key, trained[key])
    if args.backend not in BACKEND_NAMES or not (args.threads is None or isinstance(args.threads, int)):
        raise InputError(f"{args.resume}: the checkpoint's backend or threads are damaged; pass --backend and --threads")
    if args.data_dir is None and isinstance(trained.get("data_dir"), str):
        args.data_dir = trained["data_dir"]
    args.save = args.save or args.resume
    if args.dataset not in data.DATASETS:
        raise InputError(f"{args.resume}: the checkpoint's dataset must be one of {', '.join(data.DATASETS)}, "
                         f"got {args.dataset!r}")
    r = saved.replace(epochs=r.epochs)
    if state.epoch >= r.epochs:
        raise InputError(f"{args.resume} already has {state.epoch} epochs; ask for more with --epochs")
    return state, r, trained, names, classes


def resume_command(args, r):
    """The command that continues this run exactly: the checkpoint, and how the run was made to run."""
    words = ["python", "-m", "fastnet.train", "--resume", args.save, "--epochs", str(r.epochs),
             "--backend", args.backend, "--threads", str(args.threads)]
    if args.data_dir is not None:
        words += ["--data-dir", args.data_dir]
    return " ".join(shlex.quote(w) for w in words)


def prepare(args, r, given):
    """Everything before the first step: backend, threads, checkpoint, both data splits, the split
    into training and validation rows, the model, and the memory check. Returns the run's pieces;
    `classes` is a resumed file's (its labels are mapped to its outputs as evaluate maps them), else None;
    `trained` what the model file records of the data and of how it ran."""
    kernels = get_backend(args.backend)
    state = names = saved_classes = None
    trained = {}
    if args.resume:
        state, r, trained, names, saved_classes = resume_state(args, r, given)
        kernels = get_backend(args.backend)
    if args.data_dir is not None:  # stored with the model: evaluate finds it from any directory
        args.data_dir = os.path.abspath(args.data_dir)
    check_outputs(vars(args))
    args.threads, args.threads_note = set_threads(args.threads, kernels.BLAS_THREADS, args.backend)
    train_split = data.load(args.dataset, "train", args.data_dir)
    test_split = data.load(args.dataset, "test", args.data_dir)
    images, classes = train_split.images, train_split.num_classes
    if state is None:
        labels = train_split.labels
        sizes = r.layers
        if "layers" not in given:  # the default's hidden layers, between the data's inputs and classes
            sizes = (images.shape[1], *sizes[1:-1], classes)
        check_fits(sizes, images, labels, "the training set", "--layers", classes)
        r = r.replace(layers=sizes)
    else:
        check_inputs(trained, images, "the training set", args.resume)
        labels = output_labels(saved_classes, train_split, "the training set", args.resume)
        check_fits(r.layers, images, labels, "the training set", f"{args.resume}'s layers",
                   classes if saved_classes is None else None)
    test = test_split.images, output_labels(saved_classes, test_split, "the test set", args.resume)
    check_fits(r.layers, *test, "the test set", "the model")
    trained = {**trained, "dataset": args.dataset, "data_dir": args.data_dir, "input_dtype": images.dtype.name,
               "test_fingerprint": fingerprint(test_split.images, test_split.labels),
               "backend": args.backend, "threads": args.threads}
    copies = images.nbytes if held_out(len(labels), r.val_split) else 0  # split gathers the rows
    check_memory(r.layers, min(r.batch_size, len(labels)), r.dtype, copies, scaled_rows=len(labels),
                 eval_rows=eval_rows_of(len(labels), r.val_split, len(test[1]), args.train_pass),
                 threads=args.threads, backend=args.backend, optimizer=r.optimizer, pixels=images.dtype == np.uint8)
    train_rows, val = split(images, labels, r.val_split, r.seed)
    if args.resume:
        checkpoint.check_position(state, len(train_rows[1]), r.batch_size, args.resume)
    if state is None:
        state = new_state(r, train_rows[0])
        names = list(train_split.class_names)
    return kernels, r, trained, state, names, saved_classes, train_rows, val, test


def main(argv=None):
    args = build_parser().parse_args(argv)
    given = given_flags(argv)
    r = recipe_from(args)
    check_args(args)
    with CoreShare(numba_threads) as share:  # registered first: runs already going make room early
        kernels, r, trained, state, names, classes, train_rows, val, test = prepare(args, r, given)
        # BLAS's own split of a product changes its rounding, so only Numba's threads are shared:
        # the numpy backend keeps the BLAS threads it was given.
        share.start(args.threads if kernels.BLAS_THREADS == 1 else 1)
        return train_and_report(args, r, trained, kernels, state, names, train_rows, val, test, share, classes)


def threads_line(args, share):
    """How many threads the run is cut for and how many run now, and why fewer."""
    line = f"{args.threads} threads{args.threads_note}"
    if share.running < share.wanted:
        line += f" (the cores are busy with other work: {share.running} running now)"
    return line


def train_and_report(args, r, trained, kernels, state, names, train_rows, val, test, share, classes=None):
    """Train (announcing the run, saving as asked, stopping cleanly on a signal), then report.
    classes: the labels the outputs stand for, kept in the saved file (None: 0..K-1)."""
    say = (lambda *a: None) if args.quiet else print
    source = args.dataset if data.kind(args.data_dir) == "idx" else args.data_dir
    blas = blasinfo.blas_info()
    note = blasinfo.forced_warning(blas)
    if note:
        print(note, file=sys.stderr)
    say(f"fastnet: {source} {len(train_rows[1])} train / {len(val[1])} val, layers {','.join(map(str, r.layers))}, "
        f"{r.dtype}, backend {args.backend}, {threads_line(args, share)}, "
        f"{r.optimizer} lr {r.lr:g} {r.schedule}, batch {r.batch_size}, {blasinfo.blas_text(blas)}")

    def save(what):
        checkpoint.save(args.save, state, r, trained, names, classes)
        return f"; {what} saved to {args.save}"

    bar = ProgressBar(len(train_rows[1]))

    def on_epoch(st):
        bar.close()
        say(epoch_line(st, r.epochs, len(train_rows[1])))
        if args.save and args.checkpoint_every and st.epoch % args.checkpoint_every == 0:
            save("checkpoint")
        bar.reset(f"epoch {st.epoch + 1}/{r.epochs}")

    with StopRequest() as stop:
        timing = compiled(kernels, state, train_rows, [val, test], stop)
        if timing is None:
            kept = f"; {args.resume} is as it was" if args.resume else "; nothing saved"
            print(f"{stop.name} before the first step{kept}", file=sys.stderr)
            return 130
        bar.reset(f"epoch {state.epoch + 1}/{r.epochs}")
        try:
            done = run.train(state, kernels, train_rows, val, r, on_epoch, bar.update, stop, parts=args.threads,
                             share=share, train_pass=args.train_pass)
        finally:
            bar.close()
        saved = save("model") if args.save else ""
        if not done:
            more = f". Resume with: {resume_command(args, r)}" if args.save else \
                   " (pass --save PATH to keep a resumable checkpoint)"
            where = f"at epoch {state.epoch + 1}, step {state.batch}" if state.batch else f"after epoch {state.epoch}"
            print(f"{stop.name} {where}{saved or '; nothing saved'}{more}", file=sys.stderr)
            return 130
        if stop():
            print(f"{stop.name} after the last epoch{saved}; the test evaluation was skipped", file=sys.stderr)
            return 130
        code = report(args, r, state, kernels, names, test, stop, timing)
    if stop():
        print(f"{stop.name} during the report{saved}", file=sys.stderr)
        return 130
    return code


def compiled(kernels, state, train_rows, evaluated, stop):
    """Compile (or load) the kernels the run uses, on its own arrays (run.warm_up), under the run's
    StopRequest: {"kernel_load_seconds", "startup_seconds"}, or None when a stop was asked meanwhile.
    No signal raises there, not even a second one (stop.hold): Numba compiles through llvmlite's
    ctypes callbacks, which swallow an exception ("Exception ignored on calling ctypes callback
    function") and go on, to train or to report a compile error. The run stops once the compile is
    over (the time it announced), having written nothing."""
    t = time.perf_counter()
    stop.hold = True
    try:
        warm_up(kernels, state, train_rows, evaluated)
    finally:
        stop.hold = False
    timing = {"kernel_load_seconds": time.perf_counter() - t, "startup_seconds": seconds_since_launch()}
    return None if stop() else timing


def report(args, r, state, kernels, names, test, stop, timing):
    """Evaluate on the test set (its rows predicted once), print the summary, write the metrics and plots."""
    t = time.perf_counter()
    test_images, test_labels = test
    test_loss, test_acc, predictions = run.test(state.model, kernels, test_images, test_labels)
    if stop():
        return 130
    h = state.history
    print(f"test accuracy {test_acc:.4f}  test loss {test_loss:.4f}  train time {sum(h.epoch_seconds):.2f}s "
          f"(median epoch {np.median(h.epoch_seconds):.3f}s)  total {seconds_since_launch():.1f}s")
    metrics = {**r.as_stored(), "layers": ",".join(map(str, r.layers)), "preset": args.preset,
               "backend": args.backend, "threads": args.threads}
    metrics.update({
        "epoch_seconds": h.epoch_seconds, "eval_seconds": h.eval_seconds, "train_loss": h.train_loss,
        "train_accuracy": h.train_accuracy[-1], "train_accuracy_per_epoch": h.train_accuracy,
        "val_loss": h.val_loss, "val_accuracy": h.val_accuracy,
        "test_loss": test_loss, "test_accuracy": test_acc, "test_eval_seconds": time.perf_counter() - t,
        **timing, "blas": blasinfo.blas_info(),
        "total_seconds": seconds_since_launch(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    })
    if args.metrics_json:
        write_json(args.metrics_json, metrics)
    if args.plot:
        from . import plots

        plots.training_plots(args.plot, h, predictions, test_labels, names, state.model.num_classes)
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
    run_command(main)
