"""The gradcheck command as a user runs it; it reads every kind of --data-dir that train reads (IDX,
.npz, CSV), through the same loader: the same help, the same one-line errors."""

import os
from pathlib import Path

import numpy as np
import pytest

from fastnet import data
from tests.helpers import assert_one_line_error, idx_set, needs_real, run_cli



def command(*args):
    """`python -m ARGS` (tests.helpers.run_cli), help unwrapped."""
    return run_cli(*args, env={**os.environ, "COLUMNS": "400"})


def gradcheck(data_dir, *args):
    return command("fastnet.gradcheck", "--data-dir", data_dir, "--backend", "numpy", *args)



@pytest.mark.parametrize("kind", ["idx", "npz", "float-npz", "csv"])
def test_gradcheck_passes_on_every_kind_of_data_dir(data_dirs, kind):
    """16 inputs: the check runs on the tiny set itself (Fashion-MNIST's 784 pixels would not fit)."""
    proc = gradcheck(data_dirs[kind], "--layers", "16,6,3", "--samples", "6")
    assert proc.returncode == 0, proc.stderr
    assert "on 6 samples" in proc.stdout and "relative difference" in proc.stdout, proc.stdout


def test_gradcheck_layers_that_do_not_fit_a_npz_are_one_line(data_dirs):
    assert "--layers takes 784 inputs" in assert_one_line_error(gradcheck(data_dirs["npz"]))


def test_gradcheck_refuses_bad_data_in_the_words_of_train(data_dirs, tmp_path):
    """A .npz without y_test, one CSV file instead of its folder: the same line as train's."""
    arrays = dict(np.load(data_dirs["npz"]))
    del arrays["y_test"]
    np.savez(tmp_path / "partial.npz", **arrays)
    for bad in (tmp_path / "partial.npz", Path(data_dirs["csv"]) / "train.csv"):
        line = assert_one_line_error(gradcheck(bad, "--layers", "16,6,3"))
        assert line == assert_one_line_error(command("fastnet.train", "--data-dir", bad, "--layers", "16,6,3"))
        assert str(bad) in line


def test_gradcheck_help_describes_data_dir_as_train_does():
    assert " ".join(data.DATA_DIR_HELP.split()) in " ".join(command("fastnet.gradcheck", "--help").stdout.split())


@pytest.mark.parametrize("activation", ["tanh", "logistic", "identity"])
def test_gradcheck_cli_takes_activation_and_alpha(tmp_path, tmp_cache, activation):
    proc = run_cli("fastnet.gradcheck", "--data-dir", str(idx_set(tmp_path / "data")), "--layers", "16,8,3",
                   "--backend", "numpy", "--activation", activation, "--alpha", "0.5")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{activation} hidden layers, alpha 0.5" in proc.stdout
    assert float(proc.stdout.strip().splitlines()[-1].split(": ")[1]) < 1e-7


@needs_real
def test_gradcheck_cli_passes():
    proc = run_cli("fastnet.gradcheck", "--backend", "numpy")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("relative difference: ")
    assert float(last.split(": ")[1]) < 1e-7
