"""Tests of python -m fastnet.evaluate on small IDX data sets: the report, JSON, plots and one-line errors."""

import json

import numpy as np
import pytest

from fastnet.evaluate import grid_sample, per_class, table
from tests.helpers import FASHION_NAMES as NAMES
from tests.helpers import assert_one_line_error, idx_set, model_file, run_cli, write_idx_set


def fashion_shaped(folder):
    """Random 28 x 28 images in 10 classes (60 training, 40 test) as an IDX data set; returns folder."""
    return idx_set(folder, 60, 40, side=28, classes=10)


def run_evaluate(*args):
    """`python -m fastnet.evaluate ARGS --backend numpy` from the repository root; returns the CompletedProcess."""
    return run_cli("fastnet.evaluate", *args, "--backend", "numpy")


@pytest.fixture
def model_and_data(tmp_path, tmp_cache):
    """A model file and a small IDX data directory for it, with a private user cache."""
    return model_file(tmp_path / "model.npz"), fashion_shaped(tmp_path / "data")


def test_report_lists_every_class_and_the_accuracy(model_and_data):
    model, data_dir = model_and_data
    proc = run_evaluate(model, "--data-dir", data_dir)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    accuracy = [line for line in lines if line.startswith("test accuracy ")]
    assert len(accuracy) == 1 and "test loss" in accuracy[0]
    value = float(accuracy[0].split()[2])
    assert 0 <= value <= 1
    rows = [line for line in lines if any(line.startswith(n + " ") for n in NAMES)]
    assert [r.split("  ")[0].strip() for r in rows] == NAMES
    assert all(r.rstrip().endswith("/ 4") for r in rows), "4 test images of each class"
    assert len({r.rindex("/") for r in rows}) == 1, "the table's columns line up"


def test_json_agrees_with_itself(model_and_data):
    model, data_dir = model_and_data
    proc = run_evaluate(model, "--data-dir", data_dir, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["test_images"] == 40 and [r["class"] for r in result["per_class"]] == NAMES
    correct = sum(r["correct"] for r in result["per_class"])
    assert result["test_accuracy"] == pytest.approx(correct / 40)
    assert np.isfinite(result["test_loss"]) and result["plots"] == []


@pytest.mark.slow
def test_plot_writes_two_pngs(model_and_data, tmp_path):
    pytest.importorskip("matplotlib")
    Image = pytest.importorskip("PIL.Image")
    model, data_dir = model_and_data
    out = tmp_path / "plots" / "here"
    proc = run_evaluate(model, "--data-dir", data_dir, "--plot", out)
    assert proc.returncode == 0, proc.stderr
    for name in ("test_predictions.png", "confusion_matrix.png"):
        assert f"wrote {out / name}" in proc.stdout
        with Image.open(out / name) as img:
            assert img.format == "PNG" and min(img.size) >= 400


@pytest.mark.parametrize("make", ["missing", "text", "npz"])
def test_bad_model_file_exits_2_with_one_line(tmp_path, make):
    path = tmp_path / "model.npz"
    if make == "text":
        path.write_text("not a model")
    elif make == "npz":
        np.savez(path, weights=np.zeros(3))
    assert_one_line_error(run_evaluate(path), 2, str(path))


def test_image_size_must_match_the_model(tmp_path, tmp_cache):
    model = model_file(tmp_path / "small.npz", sizes=(100, 8, 10))
    proc = run_evaluate(model, "--data-dir", fashion_shaped(tmp_path / "data"))
    assert_one_line_error(proc, 2, "784 pixels", "100 inputs")


def test_labels_must_be_classes_of_the_model(tmp_path, tmp_cache):
    model = model_file(tmp_path / "three.npz", sizes=(784, 8, 3))
    proc = run_evaluate(model, "--data-dir", fashion_shaped(tmp_path / "data"))
    assert_one_line_error(proc, 2, "label 9", "3 classes")


def test_per_class_table_and_grid_sample():
    labels = np.array([0, 0, 1, 1, 1, 2])
    predictions = np.array([0, 1, 1, 1, 0, 2])
    rows = per_class(labels, predictions, ["a", "bb", "c", "dddd"])
    assert [(r["correct"], r["count"]) for r in rows] == [(1, 2), (2, 3), (1, 1), (0, 0)]
    assert rows[3]["accuracy"] is None
    lines = table(rows)
    assert lines[1].startswith("a     ") and lines[4].split()[1] == "-"
    idx = grid_sample(labels, predictions, np.random.default_rng(0), size=4, wrong=2)
    assert len(idx) == 4 and list(idx) == sorted(idx)
    assert (predictions[idx] != labels[idx]).sum() == 2


# --- models trained in Python, class names from files (issue 21: M3, M4, M5) ----------------------


def learnable_data(directory, classes=12, n_train=360, n_test=120):
    """Four IDX files of 784-pixel images whose class (0..classes-1, at most 12) lights a band of rows
    of the image: a network learns them in a few epochs. Returns (directory, (X, y), (X_test, y_test))."""
    rng = np.random.default_rng(3)
    splits = []
    for n in (n_train, n_test):
        y = rng.permutation(np.arange(n) % classes)
        X = rng.integers(0, 40, (n, 28, 28))
        for c in range(classes):
            X[y == c, 2 * c + 2 : 2 * c + 4, 4:24] += 200
        splits.append((X.astype(np.uint8), y))
    write_idx_set(directory, *splits)
    return directory, *((X.reshape(len(X), -1), y) for X, y in splits)


# A custom data set's classes are named "0", "1", ...: as text, "10" sorts before "2", so a model fit
# on them in Python has its outputs in another order than the labels' numbers.
TEXT = np.array([str(c) for c in range(12)])


def test_evaluate_honours_a_python_models_text_classes(tmp_path, tmp_cache):
    """A model fit in Python on the class names (classes_ sorted as text, not in the data set's
    order) scores through evaluate what model.score gives, with each class's row right. Before,
    evaluate compared output k with label k (0.344 against 0.829 in the report)."""
    import fastnet

    data, (X, y), (X_test, y_test) = learnable_data(tmp_path / "data")
    model = fastnet.fit(X, TEXT[y], hidden_layer_sizes=(32,), epochs=6, batch_size=32, lr=1e-2, threads=1,
                        validation=None, backend="numpy")
    assert model.classes_.tolist() == sorted(TEXT) != TEXT.tolist()
    model.save(tmp_path / "api.npz")
    proc = run_evaluate(tmp_path / "api.npz", "--data-dir", data, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["test_accuracy"] == model.score(X_test, TEXT[y_test]) > 0.5
    truth, predicted = TEXT[y_test], model.predict(X_test)
    rows = {r["class"]: (r["correct"], r["count"]) for r in result["per_class"]}
    assert rows == {c: (int(((truth == c) & (predicted == c)).sum()), int((truth == c).sum())) for c in TEXT}


def test_output_labels_match_text_classes_by_the_data_sets_names():
    """Fashion-MNIST's labels stand for its class names: a model fit on the names (sorted by name)
    gets label 9 ("Ankle boot") as its output 0; numbers stand for themselves."""
    from fastnet.data import Split
    from fastnet.evaluate import output_labels

    split = Split(np.zeros((3, 4), np.uint8), np.array([9, 0, 8], np.uint8), tuple(NAMES), 10, "fashion-mnist",
                  "test", None, None, False)
    assert output_labels(np.array(sorted(NAMES)), split, "here", "m").tolist() == [0, 8, 1]
    assert output_labels(np.arange(10) * 1.0, split, "here", "m").tolist() == [9, 0, 8]
    assert output_labels(None, split, "here", "m") is split.labels


def test_resume_keeps_a_python_models_classes_and_their_encoding(tmp_path, tmp_cache):
    """--resume of a model fit in Python on names keeps its `classes` in the file and trains output k
    on classes_[k]: the resumed model scores as well on the names, in Python and through evaluate.
    Before, it retrained on the labels' numbers and dropped `classes`."""
    import fastnet

    data, (X, y), (X_test, y_test) = learnable_data(tmp_path / "data")
    model = fastnet.fit(X, TEXT[y], hidden_layer_sizes=(32,), epochs=1, batch_size=32, lr=1e-2, threads=1,
                        validation=None, backend="numpy")
    model.save(tmp_path / "api.npz")
    done = run_cli("fastnet.train", "--resume", tmp_path / "api.npz", "--epochs", "6", "--data-dir", data,
                   "--backend", "numpy")
    assert done.returncode == 0, done.stderr
    resumed = fastnet.load(tmp_path / "api.npz")
    assert resumed.classes_.tolist() == sorted(TEXT) and len(resumed.history["loss"]) == 6
    score = resumed.score(X_test, TEXT[y_test])
    assert score > 0.5 and f"test accuracy {score:.4f}" in done.stdout
    proc = run_evaluate(tmp_path / "api.npz", "--json")  # its data directory is in the file now
    assert proc.returncode == 0 and json.loads(proc.stdout)["test_accuracy"] == score, proc.stderr


def test_labels_that_a_python_model_was_not_trained_on_are_one_line(tmp_path, tmp_cache):
    import fastnet

    data, (X, y), _ = learnable_data(tmp_path / "data")
    model = fastnet.fit(X, np.array(["odd", "even"])[y % 2], epochs=1, threads=1, validation=None,
                        backend="numpy", hidden_layer_sizes=(4,))
    model.save(tmp_path / "api.npz")
    assert_one_line_error(run_evaluate(tmp_path / "api.npz", "--data-dir", data), 2, "not trained on", "0, 1")


@pytest.mark.slow
def test_a_python_model_of_float_features_asks_for_its_data(tmp_path, tmp_cache):
    """A model fit in Python records its inputs (dtype): evaluate without --data-dir does not assume
    Fashion-MNIST for it, and 0-255 pixels are not taken for the X / 255 features it was fit on
    (0.832 in Python, 0.707 through evaluate before). The same model on float rows in a .npz works."""
    import fastnet

    data, (X, y), (X_test, y_test) = learnable_data(tmp_path / "data")
    model = fastnet.fit(X / 255, y, hidden_layer_sizes=(16,), epochs=4, batch_size=32, threads=1, validation=None,
                        backend="numpy")
    model.save(tmp_path / "float.npz")
    assert_one_line_error(run_evaluate(tmp_path / "float.npz"), 2, "trained in Python", "--data-dir")
    assert_one_line_error(run_evaluate(tmp_path / "float.npz", "--data-dir", data), 2, "float64 features", "pixels")
    npz = tmp_path / "floats.npz"
    np.savez(npz, X_train=X / 255, y_train=y, X_test=X_test / 255, y_test=y_test)
    proc = run_evaluate(tmp_path / "float.npz", "--data-dir", npz, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["test_accuracy"] == model.score(X_test / 255, y_test)
    proc = run_cli("fastnet.predict", tmp_path / "float.npz", tmp_path / "x.png")
    assert_one_line_error(proc, 2, "float64 features", "images")
    # a model fit on pixels still evaluates on pixels, with --data-dir
    pixels = fastnet.fit(X, y, hidden_layer_sizes=(4,), epochs=1, threads=1, validation=None, backend="numpy")
    pixels.save(tmp_path / "pixels.npz")
    assert_one_line_error(run_evaluate(tmp_path / "pixels.npz"), 2, "trained in Python")
    assert run_evaluate(tmp_path / "pixels.npz", "--data-dir", data).returncode == 0


@pytest.mark.slow
def test_mathtext_in_a_class_name_is_drawn_as_text(tmp_path, tmp_cache):
    """A class name `$\\foo$` (matplotlib mathtext that does not parse) is drawn as written: exit 0,
    two PNGs. Before, a traceback, and an empty plot folder left behind."""
    pytest.importorskip("matplotlib")
    model = model_file(tmp_path / "model.npz")
    arrays = dict(np.load(model))
    arrays["class_names"] = np.array(["$\\foo$", "a$b", "$x^$", *NAMES[3:]])
    np.savez(model, **arrays)
    out = tmp_path / "plots"
    proc = run_evaluate(model, "--data-dir", fashion_shaped(tmp_path / "data"), "--plot", out)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["confusion_matrix.png", "test_predictions.png"]


@pytest.mark.slow
def test_a_failed_plot_leaves_no_folder_it_made(tmp_path, tmp_cache, monkeypatch):
    """When a picture cannot be drawn, the plot folders evaluate created are removed again, with the
    picture already drawn in them (a folder that was there before is kept)."""
    pytest.importorskip("matplotlib")
    from fastnet import evaluate, plots
    from fastnet.errors import InputError

    def fail(*args, **kwargs):
        raise InputError("cannot draw")

    monkeypatch.setattr(plots, "plot_confusion_matrix", fail)
    model, data = model_file(tmp_path / "model.npz"), fashion_shaped(tmp_path / "data")
    for out in (tmp_path / "new" / "plots", tmp_path):
        with pytest.raises(InputError, match="cannot draw"):
            evaluate.main([str(model), "--data-dir", str(data), "--backend", "numpy", "--plot", str(out)])
    assert not (tmp_path / "new").exists() and tmp_path.is_dir()
