"""The train, gradcheck and evaluate commands as a user runs them: results, files, errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastnet import checkpoint
from fastnet.optim import OPTIMIZERS

ROOT = Path(__file__).resolve().parents[1]
REAL = Path("/usr/share/datasets/fashion-mnist")
needs_real = pytest.mark.skipif(
    not (REAL / "train-images-idx3-ubyte.gz").exists() and not os.environ.get("CI"),
    reason="real Fashion-MNIST not installed (CI installs it; a missing data set fails there)",
)


def fastnet(*args, timeout=600, **kw):
    """Run `python -m fastnet.<args>` from the repository root; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, **kw)


def assert_one_line_error(proc, code=2, *words):
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


@pytest.mark.parametrize("flag, value, word", [
    ("--batch-size", "0", "--batch-size"),
    ("--batch-size", "-5", "--batch-size"),
    ("--epochs", "0", "--epochs"),
    ("--epochs", "two", "--epochs"),
    ("--lr", "0", "--lr"),
    ("--lr", "-1e-3", "--lr"),
    ("--lr", "nan", "--lr"),
    ("--layers", "784", "--layers"),
    ("--layers", "784,0,10", "--layers"),
    ("--layers", "784,abc,10", "--layers"),
    ("--val-split", "-1", "--val-split"),
    ("--backend", "cuda", "--backend"),
])
def test_bad_flags_exit_2_with_one_line(flag, value, word):
    assert_one_line_error(fastnet("fastnet.train", flag, value), 2, word)


def test_missing_data_dir_exits_2(tmp_path):
    proc = fastnet("fastnet.train", "--data-dir", str(tmp_path / "nowhere"), "--backend", "numpy")
    assert_one_line_error(proc, 2)


@needs_real
@pytest.mark.parametrize("layers, word", [("785,128,10", "785"), ("784,128,9", "9")])
def test_layers_that_contradict_the_data(layers, word):
    assert_one_line_error(fastnet("fastnet.train", "--layers", layers, "--backend", "numpy"), 2, word)


@needs_real
def test_seed_recipe_numpy_reference_reaches_86_percent(tmp_path):
    """The blog's recipe on the reference backend: Adam, lr 5e-4, batch 128, 5 epochs -> >= 0.86."""
    metrics, model = tmp_path / "m.json", tmp_path / "model.npz"
    proc = fastnet("fastnet.train", "--preset", "seed", "--backend", "numpy",
                   "--metrics-json", str(metrics), "--save", str(model))
    assert proc.returncode == 0, proc.stderr
    assert len([l for l in proc.stdout.splitlines() if l.startswith("epoch ")]) == 5
    m = json.loads(metrics.read_text())
    for key in ("backend", "dtype", "layers", "epochs", "batch_size", "lr", "optimizer", "seed",
                "epoch_seconds", "train_loss", "train_accuracy", "test_accuracy", "total_seconds"):
        assert key in m
    assert (m["backend"], m["dtype"], m["layers"], m["epochs"], m["batch_size"], m["lr"]) == \
        ("numpy", "float32", "784,128,10", 5, 128, 5e-4)
    assert len(m["epoch_seconds"]) == len(m["train_loss"]) == 5
    assert m["train_loss"][-1] < m["train_loss"][0]
    assert m["test_accuracy"] >= 0.86, m["test_accuracy"]
    # the saved model evaluates to the same accuracy
    ev = fastnet("fastnet.evaluate", str(model), "--backend", "numpy")
    assert ev.returncode == 0, ev.stderr
    assert f"{m['test_accuracy']:.4f}" in ev.stdout


@needs_real
def test_gradcheck_cli_passes():
    proc = fastnet("fastnet.gradcheck", "--backend", "numpy")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("relative difference: ")
    assert float(last.split(": ")[1]) < 1e-7


@needs_real
def test_same_seed_same_backend_identical_loss_curve(tmp_path):
    curves = []
    for run in range(2):
        out = tmp_path / f"m{run}.json"
        proc = fastnet("fastnet.train", "--epochs", "1", "--threads", "2", "--metrics-json", str(out))
        assert proc.returncode == 0, proc.stderr
        curves.append(json.loads(out.read_text())["train_loss"])
    assert curves[0] == curves[1]


@needs_real
def test_divergence_stops_cleanly_and_keeps_the_saved_model(tmp_path):
    model = tmp_path / "model.npz"
    ok = fastnet("fastnet.train", "--epochs", "1", "--save", str(model))
    assert ok.returncode == 0, ok.stderr
    before = model.read_bytes()
    proc = fastnet("fastnet.train", "--epochs", "1", "--lr", "1e6", "--optimizer", "gd", "--save", str(model))
    assert_one_line_error(proc, 3, "epoch 1", "step", "learning rate")
    assert model.read_bytes() == before
    loaded, *_ = checkpoint.load(str(model))
    assert np.isfinite(loaded.params).all()


@needs_real
def test_resume_equals_straight_run_float64_numpy(tmp_path):
    """2 epochs + resume to 4 equals 4 straight epochs to 1e-12 (reference backend, float64)."""
    common = ["--backend", "numpy", "--dtype", "float64", "--val-split", "1000", "--threads", "2"]
    straight, part = tmp_path / "straight.npz", tmp_path / "part.npz"
    a = fastnet("fastnet.train", *common, "--epochs", "4", "--save", str(straight))
    b = fastnet("fastnet.train", *common, "--epochs", "2", "--save", str(part))
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    c = fastnet("fastnet.train", "--resume", str(part), "--epochs", "4", "--save", str(part))
    assert c.returncode == 0, c.stderr
    s, _ = checkpoint.load_state(str(straight), OPTIMIZERS)[:2]
    r, _ = checkpoint.load_state(str(part), OPTIMIZERS)[:2]
    assert r.epoch == s.epoch == 4
    np.testing.assert_allclose(r.model.params, s.model.params, rtol=0, atol=1e-12)
    np.testing.assert_allclose(r.optimizer.m, s.optimizer.m, rtol=0, atol=1e-12)
    assert r.history.train_loss[:2] == pytest.approx(s.history.train_loss[:2], abs=1e-12)
