"""Tests of fastnet.plots: confusion-matrix counts, and PNG files that exist, open and have a sensible size."""

import math
import sys

import numpy as np
import pytest

from fastnet import plots
from fastnet.errors import InputError
from fastnet.training import History

NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


@pytest.fixture
def mpl():
    """Skip the test when matplotlib (the optional plot extra) cannot be imported."""
    return pytest.importorskip("matplotlib")


def open_png(path):
    """The (width, height) of the PNG at path, after Pillow has checked the file is a whole, valid PNG."""
    Image = pytest.importorskip("PIL.Image")
    with Image.open(path) as img:
        assert img.format == "PNG"
        img.verify()
    with Image.open(path) as img:
        img.load()
        return img.size


def history(epochs=3, steps_per_epoch=40, val=True):
    """A History of a plausible run: falling losses, rising accuracies, per-step losses with noise."""
    rng = np.random.default_rng(0)
    e = np.arange(1, epochs + 1)
    steps = np.arange(epochs * steps_per_epoch)
    nan = [math.nan] * epochs
    return History(
        epoch_seconds=[1.0] * epochs, eval_seconds=[0.1] * epochs,
        train_loss=list(0.6 / e), train_accuracy=list(0.8 + 0.03 * e),
        val_loss=list(0.65 / e) if val else nan, val_accuracy=list(0.78 + 0.03 * e) if val else nan,
        step_loss=list(2.3 * np.exp(-steps / 20) + 0.3 + 0.05 * rng.standard_normal(len(steps))),
    )


def test_confusion_matrix_hand_example():
    labels = [0, 0, 1, 2, 2, 2]
    predictions = [0, 1, 1, 2, 0, 2]
    m = plots.confusion_matrix(labels, predictions, 3)
    np.testing.assert_array_equal(m, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert m.sum() == 6 and np.trace(m) == 4


def test_confusion_matrix_unused_classes_and_empty_input():
    np.testing.assert_array_equal(plots.confusion_matrix(np.array([3], np.uint8), [3], 5)[3], [0, 0, 0, 1, 0])
    assert plots.confusion_matrix([], [], 4).sum() == 0


@pytest.mark.parametrize("labels, predictions", [([0, 3], [0, 1]), ([0, 1], [0, -1]), ([0, 1], [0])])
def test_confusion_matrix_rejects_bad_input(labels, predictions):
    with pytest.raises(ValueError):
        plots.confusion_matrix(labels, predictions, 3)


def test_accuracy_title_counts():
    title = plots.accuracy_title(np.array([[3, 1], [0, 4]]))
    assert "87.50%" in title and "7 of 8" in title


@pytest.mark.slow
@pytest.mark.parametrize("val", [True, False])
def test_training_plots_write_readable_pngs(mpl, tmp_path, val):
    rng = np.random.default_rng(1)
    labels = np.arange(300) % 10
    predictions = np.where(rng.random(300) < 0.8, labels, rng.integers(0, 10, 300))
    out = tmp_path / "new" / "plots"
    paths = plots.training_plots(str(out), history(val=val), predictions, labels, NAMES, 10)
    assert [p.rsplit("/", 1)[1] for p in paths] == ["learning_curves.png", "confusion_matrix.png"]
    for path in paths:
        width, height = open_png(path)
        assert 600 <= width <= 3000 and 400 <= height <= 3000
    assert sorted(p.name for p in out.iterdir()) == ["confusion_matrix.png", "learning_curves.png"]


def test_training_plots_after_one_epoch(mpl, tmp_path):
    paths = plots.training_plots(str(tmp_path), history(epochs=1, steps_per_epoch=3), np.zeros(20, np.intp),
                                 np.zeros(20, np.uint8), NAMES, 10)
    assert all(open_png(p)[0] >= 600 for p in paths)


@pytest.mark.parametrize("with_predictions", [False, True])
def test_image_grid_png(mpl, tmp_path, with_predictions):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    labels = np.arange(12) % 10
    kw = {}
    if with_predictions:
        kw = dict(predictions=(labels + (np.arange(12) % 4 == 0)) % 10, confidences=rng.random(12))
    path = plots.image_grid(str(tmp_path / "grid.png"), images, labels, NAMES, title="A grid", **kw)
    width, height = open_png(path)
    assert 400 <= width <= 2000 and 400 <= height <= 2000
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]


def test_image_grid_rejects_non_square_images(mpl, tmp_path):
    with pytest.raises(InputError):
        plots.image_grid(str(tmp_path / "g.png"), np.zeros((4, 30), np.uint8), [0] * 4, NAMES)


def test_missing_matplotlib_is_one_input_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(InputError, match="matplotlib is not installed: pip install"):
        plots.image_grid(str(tmp_path / "g.png"), np.zeros((1, 784), np.uint8), [0], NAMES)
    assert not list(tmp_path.iterdir())


# A failed --plot leaves nothing it made (issue 21, item 3)

def _failing_confusion(monkeypatch):
    def fail(*args, **kw):
        raise InputError("plot: cannot draw")
    monkeypatch.setattr(plots, "plot_confusion_matrix", fail)


@pytest.mark.slow
@pytest.mark.parametrize("nested", [False, True])
def test_a_failed_training_plot_removes_the_folders_and_pictures_it_made(mpl, tmp_path, monkeypatch, nested):
    _failing_confusion(monkeypatch)  # learning_curves.png is written, then the second picture fails
    out = tmp_path / "new" / "plots" if nested else tmp_path / "plots"
    with pytest.raises(InputError, match="cannot draw"):
        plots.training_plots(str(out), history(), np.zeros(20, np.intp), np.zeros(20, np.uint8), NAMES, 10)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_plot_into_an_existing_folder_keeps_what_was_there(mpl, tmp_path, monkeypatch):
    _failing_confusion(monkeypatch)
    (tmp_path / "notes.txt").write_text("mine\n")
    (tmp_path / "confusion_matrix.png").write_bytes(b"an older picture")
    with pytest.raises(InputError):
        plots.training_plots(str(tmp_path), history(), np.zeros(20, np.intp), np.zeros(20, np.uint8), NAMES, 10)
    assert (tmp_path / "notes.txt").read_text() == "mine\n"
    assert (tmp_path / "confusion_matrix.png").read_bytes() == b"an older picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion_matrix.png", "learning_curves.png", "notes.txt"]


def test_ctrl_c_while_plotting_removes_the_new_folder(tmp_path):
    out = tmp_path / "plots"
    with pytest.raises(KeyboardInterrupt):
        with plots.plot_dir(str(out), ("a.png",)):
            (out / "a.png").write_bytes(b"png")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_gained_other_files_is_left(tmp_path):
    """Only this call's pictures are removed: a file something else put in the new folder stays."""
    out = tmp_path / "plots"
    with pytest.raises(OSError):
        with plots.plot_dir(str(out), ("a.png",)):
            (out / "other.txt").write_text("not ours")
            raise OSError("disk full")
    assert [p.name for p in out.iterdir()] == ["other.txt"]


@pytest.mark.slow
def test_long_class_names_are_cut_in_pictures_and_drawn_as_text(tmp_path, recwarn):
    """A model file may hold class names of 1024 characters: a picture shows 40 of them, without a
    layout warning (before, 'constrained_layout not applied' on stderr); mathtext is drawn as text."""
    pytest.importorskip("matplotlib")
    names = [f"{i}".ljust(1024, "x") for i in range(15)] + ["$\\foo$"]
    assert plots.shown(names[0]) == names[0][:39] + "…" and plots.shown("$\\foo$") == "$\\foo$"
    matrix = np.arange(256).reshape(16, 16)
    plots.plot_confusion_matrix(tmp_path / "c.png", matrix, names)
    images = np.random.default_rng(0).integers(0, 256, (16, 64))
    plots.image_grid(tmp_path / "g.png", images, np.arange(16), names, np.arange(16)[::-1])
    assert (tmp_path / "c.png").stat().st_size > 0 and (tmp_path / "g.png").stat().st_size > 0
    assert not [w for w in recwarn if "layout" in str(w.message)]
