"""fastnet.run: a run warms up on its own arrays, trains, tests its rows once, reports each epoch."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastnet import run
from fastnet.backend import get_backend
from fastnet.model import evaluate
from fastnet.recipe import Recipe, new_state

ROOT = Path(__file__).resolve().parents[1]


def rows_and_labels(rows_dtype, labels_dtype, n=64, features=5, classes=3):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (n, features)) if rows_dtype == np.uint8 else rng.normal(size=(n, features))
    return X.astype(rows_dtype), (np.arange(n) % classes).astype(labels_dtype)


# Warms up on a run's arrays of each kind, then trains and tests, in a fresh Numba cache (loading from
# a cache compiles nothing, so only an empty one shows what the warm-up missed); prints what compiled.
WARMED = """
import numpy as np
from numba.core import event
from fastnet import run
from fastnet.backend import get_backend
from fastnet.recipe import Recipe, new_state
K = get_backend("numba")
rng = np.random.default_rng(0)
for rows, labels, dtype in [(np.uint8, np.uint8, "float32"), (np.float64, np.uint8, "float32"),
                            (np.float32, np.intp, "float64")]:
    X = (rng.integers(0, 256, (64, 5)) if rows == np.uint8 else rng.normal(size=(64, 5))).astype(rows)
    y = (np.arange(64) % 3).astype(labels)
    val, test = (X[:7], y[:7]), (np.ascontiguousarray(X[::3]), y[::3])  # test labels: a strided view
    r = Recipe(layers=(5, 4, 3), epochs=2, batch_size=16, val_split=0, dtype=dtype)
    state = new_state(r, X)
    run.warm_up(K, state, (X, y), [val, test])
    with event.install_recorder("numba:compile") as compiles:
        run.train(state, K, (X, y), val, r, train_pass=True)
        run.test(state.model, K, *test)
    print([e.data["dispatcher"].py_func.__name__ for _, e in compiles.buffer if e.is_start])
"""


@pytest.mark.slow
def test_a_warm_up_on_the_runs_arrays_leaves_nothing_to_compile(tmp_path):
    """After run.warm_up, training (running accuracy, a validation set, a pass over the training
    rows) and the test evaluation compile no kernel, for IDX pixels, float rows (a .npz: before,
    epoch 1 compiled its step) and wide labels: the first epoch's time is training alone."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "FASTNET_NO_PREBUILT": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", WARMED], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:3] == ["[]", "[]", "[]"], proc.stdout


def test_the_warm_up_changes_nothing_of_the_run():
    """The warm-up steps a copy: the network, the optimiser and the generator are untouched."""
    K = get_backend("numba")
    X, y = rows_and_labels(np.float32, np.uint8)
    state = new_state(Recipe(layers=(5, 4, 3), val_split=0), X)
    before = (state.model.params.copy(), state.optimizer.step, state.rng.bit_generator.state)
    run.warm_up(K, state, (X, y), [(X[:3], y[:3])])
    assert state.model.params.tobytes() == before[0].tobytes()
    assert (state.optimizer.step, state.rng.bit_generator.state) == before[1:]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_the_test_set_is_predicted_once_and_agrees_with_evaluate(backend):
    K = get_backend(backend)
    X, y = rows_and_labels(np.float32, np.uint8)
    model = new_state(Recipe(layers=(5, 4, 3), val_split=0), X).model
    loss, accuracy, predictions = run.test(model, K, X, y)
    assert (loss, accuracy) == evaluate(model, K, X, y)
    assert accuracy == np.mean(predictions == y) and predictions.shape == y.shape


def test_an_epoch_line_reports_metrics_and_whole_wall_time():
    K = get_backend("numpy")
    X, y = rows_and_labels(np.float32, np.uint8)
    r = Recipe(layers=(5, 4, 3), epochs=1, batch_size=16, val_split=0)
    state = new_state(r, X)
    run.train(state, K, (X, y), (X[:8], y[:8]), r)
    h = state.history
    line = run.epoch_line(state, 1, len(y))
    assert line.startswith(f"epoch 1/1  loss {h.train_loss[0]:.4f}  acc {h.train_accuracy[0]:.4f}  val_loss ")
    assert f"{h.epoch_seconds[0] + h.eval_seconds[0]:.2f}s (train {h.epoch_seconds[0]:.2f}s" in line
