"""python -m fastnet.evaluate: test accuracy, loss and per-class accuracy of a saved model, with optional plots."""

import json
import os
import sys

import numpy as np

from . import checkpoint, data, plots
from .backend import BACKEND_NAMES, DEFAULT_BACKEND, get_backend
from .cli import ArgumentParser, check_plot_folder, printable, run
from .errors import InputError
from .model import check_fits, predict_logits, probabilities
from .provenance import check_inputs, fingerprint, output_labels, trained_on_arrays
from .threads import set_threads

GRID_SIZE = 25
GRID_WRONG = 8
PICTURES = ("test_predictions.png", "confusion_matrix.png")  # what --plot writes


def build_parser():
    """The command line of fastnet.evaluate."""
    p = ArgumentParser(prog="python -m fastnet.evaluate", description=__doc__)
    p.add_argument("model", metavar="MODEL", help="model file written by python -m fastnet.train --save")
    p.add_argument("--dataset", choices=tuple(data.DATASETS),
                   help="data set to test on (default: the one the model was trained on)")
    p.add_argument("--data-dir", help="directory holding the four IDX files, or a .npz file or CSV directory")
    p.add_argument("--backend", choices=BACKEND_NAMES, default=DEFAULT_BACKEND)
    p.add_argument("--plot", metavar="DIR", help="write test_predictions.png and confusion_matrix.png into DIR")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    return p


def data_dir(args, trained):
    """Where to find the test set: --data-dir when given; else the directory the model was trained
    from (an InputError when it is gone: evaluating on other data must be asked for); else None,
    the usual search for the known data set."""
    saved = trained.get("data_dir")
    if args.data_dir is not None or not isinstance(saved, str):
        return args.data_dir
    if not os.path.exists(saved):
        raise InputError(f"{args.model} was trained on the data in {saved}, which is gone; "
                         "pass --data-dir DIR to evaluate on other data")
    return saved


def per_class(labels, predictions, names):
    """One dict per class: its name, test images, correct predictions and accuracy (None with no images)."""
    rows = []
    for c, name in enumerate(names):
        mask = labels == c
        count, correct = int(mask.sum()), int((predictions[mask] == c).sum())
        rows.append({"class": name, "count": count, "correct": correct,
                     "accuracy": correct / count if count else None})
    return rows


def table(rows):
    """The per-class results as aligned text lines, the class names left-aligned in their own column."""
    names = [printable(r["class"]) for r in rows]
    width = max(len("class"), *(len(n) for n in names))
    lines = [f"{'class':<{width}}  accuracy  correct / images"]
    for name, r in zip(names, rows):
        acc = f"{r['accuracy']:.4f}" if r["accuracy"] is not None else "-"
        lines.append(f"{name:<{width}}  {acc:>8}  {r['correct']:>7} / {r['count']}")
    return lines


def grid_sample(labels, predictions, rng, size=GRID_SIZE, wrong=GRID_WRONG):
    """Indices of up to `size` test images, about `wrong` of them misclassified, in test-set order.

    A purely random sample of a good model shows one or two mistakes; a few are picked on purpose
    so the picture shows what the model gets wrong as well as right.
    """
    bad = np.flatnonzero(predictions != labels)
    good = np.flatnonzero(predictions == labels)
    n_bad = min(wrong, len(bad), size)
    n_good = min(size - n_bad, len(good))
    n_bad = min(size - n_good, len(bad))
    chosen = np.concatenate([rng.choice(bad, n_bad, replace=False), rng.choice(good, n_good, replace=False)])
    return np.sort(chosen).astype(np.int64)


def write_plots(folder, images, labels, probs, names, matrix):
    """test_predictions.png (a sample with predictions, mistakes included) and confusion_matrix.png in
    folder; a folder made here is removed again when they cannot be written."""
    with plots.plot_dir(folder, PICTURES):
        return _draw(folder, images, labels, probs, names, matrix)


def _draw(folder, images, labels, probs, names, matrix):
    predictions = probs.argmax(axis=1)
    idx = grid_sample(labels, predictions, np.random.default_rng(0))
    n_wrong = int((predictions[idx] != labels[idx]).sum())
    mistakes = (f"the {n_wrong} in red are mistakes, included on purpose" if n_wrong
                else "the model got all of them right")
    title = f"{len(idx)} test images: the model's prediction (confidence) and the true class\n{mistakes}"
    grid = plots.image_grid(os.path.join(folder, PICTURES[0]), images[idx], labels[idx], names,
                            predictions[idx], probs[idx, predictions[idx]], title)
    confusion = plots.plot_confusion_matrix(os.path.join(folder, PICTURES[1]), matrix, names,
                                            plots.accuracy_title(matrix))
    return [grid, confusion]


def main(argv=None):
    """Evaluate MODEL on its data set's test split; print the report (or JSON) and write any plots."""
    args = build_parser().parse_args(argv)
    kernels = get_backend(args.backend)
    set_threads(None, kernels.BLAS_THREADS)
    if args.plot:
        check_plot_folder(args.plot, PICTURES, parents=True)  # evaluate makes missing parents too
    model, record, names, arrays = checkpoint.load(args.model)
    trained = record["trained"]
    classes = checkpoint.classes(arrays, args.model, model.num_classes)
    trained_on_arrays(args.model, trained, args.data_dir, args.dataset)
    dataset = args.dataset or trained.get("dataset", "fashion-mnist")
    if not isinstance(dataset, str) or dataset not in data.DATASETS:
        raise InputError(f"{args.model} was trained on {dataset!r}, which this fastnet does not know; pass --dataset")
    test = data.load(dataset, "test", data_dir(args, trained))
    images = test.images
    where = f"the test set in {test.source}" if test.custom else f"the {dataset} test set"
    check_inputs(trained, images, where, args.model)
    labels = output_labels(classes, test, where, args.model)
    check_fits(model.sizes, images, labels, where)
    if trained.get("test_fingerprint") not in (None, fingerprint(images, test.labels)):
        print(f"note: {where} is not the test set {printable(args.model)} was trained beside", file=sys.stderr)
    logits = predict_logits(model, kernels, images)
    probs = probabilities(kernels, logits)
    predictions = probs.argmax(axis=1)
    loss = kernels.cross_entropy(logits, labels)
    accuracy = float(np.mean(predictions == labels))
    rows = per_class(labels, predictions, names)
    plotted = []
    if args.plot:
        matrix = plots.confusion_matrix(labels, predictions, model.num_classes)
        plotted = write_plots(args.plot, images, labels, probs, names, matrix)
    if args.json:
        print(json.dumps({"model": args.model, "dataset": dataset, "test_images": len(labels),
                          "test_accuracy": accuracy, "test_loss": loss, "per_class": rows, "plots": plotted},
                         indent=2))
        return 0
    print(f"{printable(args.model)}: layers {','.join(map(str, model.sizes))}, {where}: {len(labels)} images")
    print(f"test accuracy {accuracy:.4f} ({int(np.sum(predictions == labels))} / {len(labels)})  test loss {loss:.4f}")
    print()
    print("\n".join(table(rows)))
    for path in plotted:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    run(main)
