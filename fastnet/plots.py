"""PNG pictures of models and data: learning curves, confusion matrices and grids of images.

matplotlib is an optional extra, so it is imported inside the drawing functions and its absence
is one InputError. Figures are built as matplotlib.figure.Figure objects rendered by Agg, never
through pyplot: nothing needs a display, and a caller's own pyplot backend is left untouched.
Every PNG is written to a temporary name in its destination folder and renamed into place, so a
reader never sees half a picture. Text that comes from data or a model file (class names) is drawn
as it is written (parse_math=False): a name such as `$\\foo$` is not matplotlib mathtext.
"""

import contextlib
import math
import os

import numpy as np

from .errors import InputError
from .files import atomic_write

MISSING = "matplotlib is not installed: pip install 'fastnet-mlp[plot]' (or pip install matplotlib pillow)"
DPI = 110
WRONG = "#c62828"
RIGHT = "#1b5e20"


def require_matplotlib():
    """Import matplotlib, or raise the one-line InputError saying how to install it."""
    try:
        import matplotlib.figure  # noqa: F401
    except ImportError:
        raise InputError(MISSING) from None


# The files training_plots writes into its folder.
TRAINING_PLOTS = ("learning_curves.png", "confusion_matrix.png")


def make_dir(folder):
    """Create folder (and its parents) if missing; InputError when that is impossible."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create plot directory {folder}: {exc.strerror or exc}") from None
    return folder


@contextlib.contextmanager
def plot_dir(folder, names=()):
    """make_dir(folder) for the duration of the block. When the block fails, what it made goes again:
    the files `names` in a folder made here, then the folders made here while they are empty. So a
    failed plot leaves nothing behind; a folder that was there before keeps what it had."""
    made = []
    parent = os.path.abspath(folder)
    while not os.path.isdir(parent) and parent != os.path.dirname(parent):
        made.append(parent)
        parent = os.path.dirname(parent)
    make_dir(folder)
    try:
        yield folder
    except BaseException:
        if made:
            for name in names:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(made[0], name))
        for path in made:  # deepest first
            with contextlib.suppress(OSError):
                os.rmdir(path)
        raise


SHOWN_CHARS = 40  # of a class name drawn in a picture; a longer one is cut (a file may hold up to 1024)


def shown(name):
    """A class name as a picture shows it: at most SHOWN_CHARS characters, a cut one ending in '…'."""
    name = str(name)
    return name if len(name) <= SHOWN_CHARS else name[: SHOWN_CHARS - 1] + "…"


def _figure(width, height):
    """A new matplotlib Figure of width x height inches; InputError when matplotlib is missing."""
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig, path):
    """Render fig as a PNG at path atomically (fastnet.files.atomic_write)."""
    with atomic_write(path, "wb", "plot") as f:
        fig.savefig(f, format="png", dpi=DPI, facecolor="white")
    return path


def confusion_matrix(labels, predictions, k):
    """Counts (k, k) int64: row = true class, column = predicted class.

    Raises ValueError when the two arrays differ in length or hold a class outside 0..k-1.
    """
    labels = np.asarray(labels).astype(np.int64).ravel()
    predictions = np.asarray(predictions).astype(np.int64).ravel()
    if labels.shape != predictions.shape:
        raise ValueError(f"{len(labels)} labels but {len(predictions)} predictions")
    for name, a in (("labels", labels), ("predictions", predictions)):
        if a.size and (a.min() < 0 or a.max() >= k):
            raise ValueError(f"{name} must lie in 0..{k - 1}, found {a.min()}..{a.max()}")
    return np.bincount(labels * k + predictions, minlength=k * k).reshape(k, k)


def plot_confusion_matrix(path, matrix, class_names, title="Confusion matrix"):
    """Draw a confusion matrix (rows true, columns predicted) with counts and a colour bar; returns path.

    The colour scale is square-root so that the off-diagonal mistakes, tens against a diagonal of
    hundreds, still show. Counts are written in the cells while they fit (up to 20 classes).
    """
    matrix = np.asarray(matrix)
    k = len(matrix)
    size = min(max(6.0, 0.62 * k + 3.0), 30.0)
    fig = _figure(size + 1.2, size)
    from matplotlib.colors import PowerNorm

    ax = fig.add_subplot()
    norm = PowerNorm(0.5, vmin=0, vmax=max(int(matrix.max()), 1))
    im = ax.imshow(matrix, cmap="Blues", norm=norm)
    ticks = np.arange(k)
    names = [shown(n) for n in class_names]
    ax.set_xticks(ticks, names, rotation=40, ha="right", rotation_mode="anchor", parse_math=False)
    ax.set_yticks(ticks, names, parse_math=False)
    ax.set_xlabel("Predicted class", fontsize=11)
    ax.set_ylabel("True class", fontsize=11)
    ax.set_title(title, fontsize=12)
    ax.tick_params(length=0)
    if k <= 20:
        _annotate_counts(ax, matrix, norm)
    bar = fig.colorbar(im, ax=ax, shrink=0.8)
    bar.set_label("images (square-root colour scale)")
    return _save(fig, path)


def _annotate_counts(ax, matrix, norm):
    """Write each count in its cell, white on dark cells and black on light ones; zeros are left blank."""
    fontsize = 9 if len(matrix) <= 12 else 7
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            colour = "white" if norm(count) > 0.6 else "black"
            ax.text(j, i, str(count), ha="center", va="center", color=colour, fontsize=fontsize)


def _smooth(values, window):
    """Centred moving average of values over an odd `window` of steps (fewer at the ends), the same length as values."""
    values = np.asarray(values, np.float64)
    csum = np.concatenate([[0.0], np.cumsum(values)])
    half = window // 2
    at = np.arange(len(values))
    starts = np.maximum(at - half, 0)
    ends = np.minimum(at + half + 1, len(values))
    return (csum[ends] - csum[starts]) / (ends - starts)


def plot_learning_curves(path, history):
    """Loss and accuracy per epoch (train and validation) and the per-step training loss; returns path."""
    epochs = np.arange(1, len(history.train_loss) + 1)
    has_val = bool(np.isfinite(np.asarray(history.val_loss, np.float64)).any())
    fig = _figure(11, 8)
    from matplotlib.ticker import PercentFormatter

    grid = fig.add_gridspec(2, 2)
    marks = len(epochs) <= 20
    panels = ((fig.add_subplot(grid[0, 0]), "loss", "Cross-entropy loss per epoch",
               "training set (mean during the epoch)"),
              (fig.add_subplot(grid[0, 1]), "accuracy", "Accuracy per epoch", "training set (after the epoch)"))
    for ax, field, title, train_label in panels:
        ax.plot(epochs, getattr(history, f"train_{field}"), "o-" if marks else "-", label=train_label)
        if has_val:
            ax.plot(epochs, getattr(history, f"val_{field}"), "s--" if marks else "--", label="validation set")
        ax.set_title(title if has_val else f"{title} (no validation split)")
        ax.set_xlabel("epoch")
        ax.set_ylabel(field)
        ax.set_xticks(_epoch_ticks(len(epochs)))
        ax.grid(alpha=0.3)
        ax.legend()
    panels[1][0].yaxis.set_major_formatter(PercentFormatter(xmax=1))
    _plot_step_loss(fig.add_subplot(grid[1, :]), history.step_loss, len(epochs))
    return _save(fig, path)


def _epoch_ticks(n):
    """At most about ten whole-epoch ticks from 1 to n."""
    return np.arange(1, n + 1, max(1, math.ceil(n / 10)))


def _plot_step_loss(ax, step_loss, epochs):
    """Per-step training loss against fractional epochs: raw steps faint, a moving average on top.

    The y axis shows all of the average and 99% of the raw steps: a few early spikes may be cut.
    """
    steps = len(step_loss)
    ax.set_title("Training loss per optimiser step")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mini-batch loss")
    ax.grid(alpha=0.3)
    if steps == 0 or epochs == 0:
        return
    x = np.arange(1, steps + 1) * (epochs / steps)
    window = int(np.clip(round(math.sqrt(steps)), 1, 101)) | 1
    smooth = _smooth(step_loss, window)
    ax.plot(x, step_loss, color="tab:blue", alpha=0.25, linewidth=0.6, label="each step")
    ax.plot(x, smooth, color="tab:blue", linewidth=1.8, label=f"centred moving average of {window} steps")
    ax.set_xlim(0, epochs)
    ax.set_ylim(0, max(float(smooth.max()), float(np.percentile(step_loss, 99))) * 1.05)
    ax.legend()


def image_grid(path, images, labels, class_names, predictions=None, confidences=None,
               title="Images and their classes", columns=None):
    """A grid of square grayscale images with their class names beneath; returns path.

    images are (n, side*side) or (n, side, side) pixels, drawn dark on light (cmap binary). With
    predictions (and optionally confidences in 0..1) each caption reads "pred (conf%)" over
    "true: class"; wrong predictions are written in red inside a red frame.
    """
    images = np.asarray(images)
    n = len(images)
    side = math.isqrt(images[0].size) if n else 0
    if n == 0 or side * side != images[0].size:
        raise InputError(f"image_grid needs square images, got {n} of {images.shape[1:]}")
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    cell_h = 2.0 if predictions is not None else 1.8
    fig = _figure(max(1.75 * cols, 5.0), cell_h * rows + 0.6)
    fig.suptitle(title, fontsize=12, parse_math=False)
    for i in range(rows * cols):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        ax.imshow(images[i].reshape(side, side), cmap="binary", vmin=0, vmax=255)
        _caption(ax, labels[i], class_names, predictions, confidences, i)
    return _save(fig, path)


def _caption(ax, label, class_names, predictions, confidences, i):
    """The class name under image i, or its prediction, confidence and true class (red frame when wrong)."""
    true = shown(class_names[int(label)])
    if predictions is None:
        ax.set_xlabel(true, fontsize=9, parse_math=False)
        return
    pred = shown(class_names[int(predictions[i])])
    conf = "" if confidences is None else f" ({100 * float(confidences[i]):.0f}%)"
    wrong = int(predictions[i]) != int(label)
    colour = WRONG if wrong else RIGHT
    ax.set_xlabel(f"{pred}{conf}\ntrue: {true}", fontsize=8.5, color=colour, parse_math=False)
    if wrong:
        for spine in ax.spines.values():
            spine.set_color(WRONG)
            spine.set_linewidth(2.5)


def accuracy_title(matrix, what="test set"):
    """'Confusion matrix on the test set: accuracy 85.32% (8532 of 10000 images)'."""
    correct, total = int(np.trace(matrix)), int(matrix.sum())
    accuracy = 100 * correct / total if total else float("nan")
    return f"Confusion matrix on the {what}: accuracy {accuracy:.2f}% ({correct} of {total} images)"


def training_plots(out_dir, history, predictions, test_labels, class_names, classes):
    """Write learning_curves.png and confusion_matrix.png (the test set's predicted classes against its
    labels, `classes` of them) into out_dir; returns their paths."""
    require_matplotlib()
    matrix = confusion_matrix(test_labels, predictions, classes)
    curves_png, confusion_png = TRAINING_PLOTS
    with plot_dir(out_dir, TRAINING_PLOTS):
        curves = plot_learning_curves(os.path.join(out_dir, curves_png), history)
        confusion = plot_confusion_matrix(os.path.join(out_dir, confusion_png), matrix, class_names,
                                          accuracy_title(matrix))
    return [curves, confusion]
