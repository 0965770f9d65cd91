"""The train and evaluate commands as a user runs them: results, files, errors (gradcheck: test_gradcheck.py)."""

import json
import os

import numpy as np
import pytest

from fastnet import checkpoint
from fastnet.optim import OPTIMIZERS
from tests.helpers import assert_one_line_error, idx_set, needs_real, run_cli


@pytest.mark.slow
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
    ("--activation", "gelu", "--activation"),
    ("--alpha", "-1", "--alpha"),
    ("--alpha", "nan", "--alpha"),
    ("--alpha", "inf", "--alpha"),
])
def test_bad_flags_exit_2_with_one_line(flag, value, word):
    assert_one_line_error(run_cli("fastnet.train", flag, value), 2, word)


def test_missing_data_dir_exits_2(tmp_path):
    proc = run_cli("fastnet.train", "--data-dir", str(tmp_path / "nowhere"), "--backend", "numpy")
    assert_one_line_error(proc, 2)


@needs_real
@pytest.mark.parametrize("layers, word", [("785,128,10", "785"), ("784,128,9", "9")])
def test_layers_that_contradict_the_data(layers, word):
    assert_one_line_error(run_cli("fastnet.train", "--layers", layers, "--backend", "numpy"), 2, word)


@pytest.mark.slow
@needs_real
def test_seed_recipe_numpy_reference_reaches_86_percent(tmp_path):
    """The blog's recipe on the reference backend: Adam, lr 5e-4, batch 128, 5 epochs -> >= 0.86."""
    metrics, model = tmp_path / "m.json", tmp_path / "model.npz"
    proc = run_cli("fastnet.train", "--preset", "seed", "--backend", "numpy",
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
    ev = run_cli("fastnet.evaluate", str(model), "--backend", "numpy")
    assert ev.returncode == 0, ev.stderr
    assert f"{m['test_accuracy']:.4f}" in ev.stdout


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_activation_and_alpha_reach_the_model_file_and_evaluate(tmp_path, tmp_cache, backend):
    """--activation tanh --alpha 0.01: the file records the activations and both settings, and
    fastnet.evaluate computes the test loss the run reported, through tanh (the same file relabelled
    relu gives another loss)."""
    data, model, metrics = idx_set(tmp_path / "data"), tmp_path / "model.npz", tmp_path / "m.json"
    proc = run_cli("fastnet.train", "--data-dir", str(data), "--layers", "16,8,3", "--epochs", "2",
                   "--batch-size", "16", "--backend", backend, "--activation", "tanh", "--alpha", "0.01",
                   "--save", str(model), "--metrics-json", str(metrics), "--quiet")
    assert proc.returncode == 0, proc.stderr
    m = json.loads(metrics.read_text())
    assert (m["activation"], m["alpha"]) == ("tanh", 0.01)
    loaded, record, _, arrays = checkpoint.load(str(model))
    assert arrays["activations"].tolist() == ["tanh", "identity"] and loaded.activations == ("tanh", "identity")
    assert (record["recipe"]["activation"], record["recipe"]["alpha"]) == ("tanh", 0.01)

    def evaluated(path):
        ev = run_cli("fastnet.evaluate", str(path), "--backend", backend, "--json")
        assert ev.returncode == 0, ev.stderr
        return json.loads(ev.stdout)["test_loss"]

    assert evaluated(model) == m["test_loss"]
    with np.load(model) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["activations"] = np.array(["relu", "identity"])
    relu = tmp_path / "relu.npz"
    with open(relu, "wb") as f:
        np.savez(f, **arrays)
    assert evaluated(relu) != m["test_loss"]


@pytest.mark.slow
@needs_real
def test_same_seed_same_backend_identical_loss_curve(tmp_path):
    curves = []
    for run in range(2):
        out = tmp_path / f"m{run}.json"
        proc = run_cli("fastnet.train", "--epochs", "1", "--threads", "2", "--metrics-json", str(out))
        assert proc.returncode == 0, proc.stderr
        curves.append(json.loads(out.read_text())["train_loss"])
    assert curves[0] == curves[1]


@pytest.mark.slow
@needs_real
def test_divergence_stops_cleanly_and_keeps_the_saved_model(tmp_path):
    model = tmp_path / "model.npz"
    ok = run_cli("fastnet.train", "--epochs", "1", "--save", str(model))
    assert ok.returncode == 0, ok.stderr
    before = model.read_bytes()
    proc = run_cli("fastnet.train", "--epochs", "1", "--lr", "1e6", "--optimizer", "gd", "--save", str(model))
    assert_one_line_error(proc, 3, "epoch 1", "step", "learning rate")
    assert model.read_bytes() == before
    loaded, *_ = checkpoint.load(str(model))
    assert np.isfinite(loaded.params).all()


@pytest.mark.slow
@needs_real
@pytest.mark.parametrize("backend, dtype, atol", [
    ("numpy", "float64", 1e-12),  # the bound for the reference
    # numba float32: the same kernels on the same inputs in the same order are bit-identical; the
    # bound allows one float32 ulp of a parameter of size ~1 should BLAS pick another code path
    ("numba", "float32", 1.2e-7),
])
def test_resume_equals_straight_run(tmp_path, backend, dtype, atol):
    """2 epochs, then --resume to 4, equals 4 straight epochs.

    The schedule is constant here: a cosine schedule's horizon is the run's --epochs, so a run
    planned for 2 epochs decays differently from one planned for 4 (an interrupted run resumed
    to its own --epochs is exact with any schedule: see tests/test_training.py)."""
    common = ["--backend", backend, "--dtype", dtype, "--schedule", "constant", "--val-split", "1000",
              "--threads", "2"]
    straight, part = tmp_path / "straight.npz", tmp_path / "part.npz"
    a = run_cli("fastnet.train", *common, "--epochs", "4", "--save", str(straight))
    b = run_cli("fastnet.train", *common, "--epochs", "2", "--save", str(part))
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    c = run_cli("fastnet.train", "--resume", str(part), "--epochs", "4", "--backend", backend)
    assert c.returncode == 0, c.stderr
    assert len([l for l in c.stdout.splitlines() if l.startswith("epoch ")]) == 2
    s, _, _ = checkpoint.load_state(str(straight), OPTIMIZERS)
    r, _, _ = checkpoint.load_state(str(part), OPTIMIZERS)  # the resumed run kept saving to part
    assert r.epoch == s.epoch == 4
    np.testing.assert_allclose(r.model.params, s.model.params, rtol=0, atol=atol)
    np.testing.assert_allclose(r.optimizer.m, s.optimizer.m, rtol=0, atol=atol)
    np.testing.assert_allclose(r.history.train_loss, s.history.train_loss, rtol=0, atol=atol)


@pytest.mark.slow
@needs_real
def test_seed_recipe_on_the_jit_backend_reaches_86_percent(tmp_path):
    """The blog's recipe through the default (numba) backend, like the reference: >= 0.86."""
    out = tmp_path / "m.json"
    proc = run_cli("fastnet.train", "--preset", "seed", "--metrics-json", str(out))
    assert proc.returncode == 0, proc.stderr
    m = json.loads(out.read_text())
    assert (m["backend"], m["preset"], m["lr"], m["schedule"], m["standardize"]) == \
        ("numba", "seed", 5e-4, "constant", False)
    assert m["test_accuracy"] >= 0.86, m["test_accuracy"]


@pytest.mark.slow
@needs_real
@pytest.mark.parametrize("seed", [0, 1])
def test_default_recipe_reaches_88_5_percent(tmp_path, seed):
    """python -m fastnet.train with no recipe flags: 784-128-10, 5 epochs, batch 128 -> >= 0.885,
    with validation reported every epoch from the held-out images."""
    out = tmp_path / "m.json"
    proc = run_cli("fastnet.train", "--seed", str(seed), "--metrics-json", str(out))
    assert proc.returncode == 0, proc.stderr
    m = json.loads(out.read_text())
    assert (m["layers"], m["epochs"], m["batch_size"]) == ("784,128,10", 5, 128)
    assert m["val_split"] > 0 and len(m["val_accuracy"]) == 5 and all(0 < a < 1 for a in m["val_accuracy"])
    assert all("val_acc" in l for l in proc.stdout.splitlines() if l.startswith("epoch "))
    assert m["test_accuracy"] >= 0.885, m["test_accuracy"]


# --plot is checked before the first step, as --save and --metrics-json are (issue 21 O1)

def _plot_case(tmp_path, name):
    """(flags, folder the run must leave as it was) of a --plot that cannot be written."""
    if name == "proc":
        return ["--plot", "/proc/fastnet-plots"], None
    if name == "proc_itself":
        return ["--plot", "/proc"], None
    if name == "read_only":
        if os.geteuid() == 0:  # permission bits do not stop root: a folder of a read-only file system
            return ["--plot", "/sys/fastnet-plots"], None
        folder = tmp_path / "ro"
        folder.mkdir(mode=0o555)
        return ["--plot", str(folder / "plots")], folder
    if name == "same_as_save":
        return ["--plot", str(tmp_path / "out"), "--save", str(tmp_path / "out")], None
    if name == "same_as_metrics":
        return ["--plot", str(tmp_path / "out"), "--metrics-json", str(tmp_path / "out")], None
    if name == "save_inside_as_a_plot":
        (tmp_path / "out").mkdir()
        return ["--plot", str(tmp_path / "out"), "--save", str(tmp_path / "out" / "confusion_matrix.png")], None
    if name == "a_plot_is_a_directory":
        (tmp_path / "out" / "learning_curves.png").mkdir(parents=True)
        return ["--plot", str(tmp_path / "out")], None
    if name == "dangling_link":
        (tmp_path / "out").symlink_to(tmp_path / "nowhere")
        return ["--plot", str(tmp_path / "out")], None
    raise AssertionError(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["proc", "proc_itself", "read_only", "same_as_save", "same_as_metrics",
                                  "save_inside_as_a_plot", "a_plot_is_a_directory", "dangling_link"])
def test_an_unwritable_plot_folder_is_refused_before_training(tmp_path, tmp_cache, name):
    pytest.importorskip("matplotlib")
    data = idx_set(tmp_path / "data")
    flags, _ = _plot_case(tmp_path, name)
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = run_cli("fastnet.train", "--data-dir", str(data), "--layers", "16,8,3", "--backend", "numpy",
                   "--epochs", "1", *flags)
    assert_one_line_error(proc, 2, "--plot")
    assert proc.stdout == "", "refused before the first step"
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "nothing made"


@pytest.mark.slow
def test_evaluate_checks_its_plot_folder_before_evaluating(tmp_path, tmp_cache):
    pytest.importorskip("matplotlib")
    data = idx_set(tmp_path / "data")
    model = tmp_path / "m.npz"
    proc = run_cli("fastnet.train", "--data-dir", str(data), "--layers", "16,8,3", "--backend", "numpy",
                   "--epochs", "1", "--quiet", "--save", str(model))
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "out" / "test_predictions.png").mkdir(parents=True)
    proc = run_cli("fastnet.evaluate", str(model), "--data-dir", str(data), "--backend", "numpy",
                   "--plot", "/proc/fastnet-plots")
    assert_one_line_error(proc, 2, "--plot", "/proc")
    proc = run_cli("fastnet.evaluate", str(model), "--data-dir", str(data), "--backend", "numpy",
                   "--plot", str(tmp_path / "out"))
    assert_one_line_error(proc, 2, "--plot", "test_predictions.png")
    assert proc.stdout == ""


@pytest.mark.slow
def test_a_plot_folder_made_by_the_run_holds_its_pictures(tmp_path, tmp_cache):
    pytest.importorskip("matplotlib")
    data = idx_set(tmp_path / "data")
    proc = run_cli("fastnet.train", "--data-dir", str(data), "--layers", "16,8,3", "--backend", "numpy",
                   "--epochs", "1", "--quiet", "--plot", str(tmp_path / "plots"))
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["confusion_matrix.png", "learning_curves.png"]
