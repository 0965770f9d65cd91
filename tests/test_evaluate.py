"""Tests of python -m fastnet.evaluate on small IDX data sets: the report, JSON, plots and one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import write_idx
from fastnet import checkpoint
from fastnet.evaluate import grid_sample, per_class, table
from fastnet.model import MLP
from fastnet.optim import Adam
from fastnet.training import TrainState

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def run_evaluate(*args):
    """`python -m fastnet.evaluate ARGS --backend numpy` from the repository root; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "fastnet.evaluate", *map(str, args), "--backend", "numpy"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def make_data(directory, pixels=784, n_train=60, n_test=40):
    """Four IDX files of random images with labels 0..9 in turn; returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    side = int(np.sqrt(pixels))
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(directory / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, side, pixels // side)))
        write_idx(directory / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    return directory


def save_model(path, sizes=(784, 16, 10)):
    """An untrained model file with Fashion-MNIST's class names; returns the path."""
    model = MLP.he_init(sizes, np.random.default_rng(0))
    state = TrainState(model, Adam(model.params.size, model.dtype), np.random.default_rng(0))
    names = NAMES if sizes[-1] == 10 else [str(i) for i in range(sizes[-1])]
    checkpoint.save(str(path), state, {"dataset": "fashion-mnist"}, names)
    return path


@pytest.fixture
def model_and_data(tmp_path, tmp_cache):
    """A model file and a small IDX data directory for it, with a private user cache."""
    return save_model(tmp_path / "model.npz"), make_data(tmp_path / "data")


def assert_one_line_error(proc, *words):
    """The command failed with exit status 2 and one line on stderr holding every word."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert all(w in lines[0] for w in words), lines[0]


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
    assert_one_line_error(run_evaluate(path), str(path))


def test_image_size_must_match_the_model(tmp_path, tmp_cache):
    model = save_model(tmp_path / "small.npz", (100, 8, 10))
    proc = run_evaluate(model, "--data-dir", make_data(tmp_path / "data"))
    assert_one_line_error(proc, "784 pixels", "100 inputs")


def test_labels_must_be_classes_of_the_model(tmp_path, tmp_cache):
    model = save_model(tmp_path / "three.npz", (784, 8, 3))
    proc = run_evaluate(model, "--data-dir", make_data(tmp_path / "data"))
    assert_one_line_error(proc, "label 9", "3 classes")


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
