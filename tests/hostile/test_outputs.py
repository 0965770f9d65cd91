"""Hostile outputs: devices, shared or unwritable destinations, a full disk, and what the run says.

Commands run in subprocesses on tiny IDX data sets (tests/helpers.py), on the numpy backend,
one thread, a private cache and no network (the env, tiny and model fixtures: tests/hostile/conftest.py).
The numbers in the section comments are the red-team report's item numbers.
"""

import os
import shutil
import stat
import subprocess

import numpy as np
import pytest

from fastnet import checkpoint
from tests.helpers import TINY_ARGS, assert_one_line_error, leftovers, rewrite_model, run_cli, train_tiny


# --- 3. outputs that are not regular files, or the same file twice -------------------------------

@pytest.mark.parametrize("args, word", [
    (["--save", "/dev/null"], "not a regular file"),
    (["--save", "/dev/full"], "not a regular file"),
    (["--metrics-json", "/dev/null"], "not a regular file"),
    (["--save", ""], "empty path"),
    (["--save", "SAME", "--metrics-json", "SAME"], "same file"),
])
def test_outputs_that_are_devices_empty_or_shared_are_refused(tmp_path, env, tiny, args, word):
    args = [str(tmp_path / "x.npz") if a == "SAME" else a for a in args]
    assert_one_line_error(train_tiny(env, tiny, *args), 2, word)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and stat.S_ISCHR(os.stat("/dev/full").st_mode)
    assert os.listdir(tmp_path) == []


# --- 4. unwritable destinations are refused before training; a full disk leaves no debris --------

def immutable(folder):
    """Make folder unwritable, for root too where chattr works; returns the undo, or None."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return lambda: folder.chmod(0o755)
    if shutil.which("chattr") and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        return lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)
    return None


def loud(env, data_dir, *args):
    """train without --quiet, so stdout shows whether any epoch ran."""
    return run_cli("fastnet.train", *[a for a in TINY_ARGS if a != "--quiet"], "--data-dir", data_dir, *args, env=env)


@pytest.mark.parametrize("flag, path, word", [
    ("--metrics-json", "TMP", "a directory"),
    ("--metrics-json", "/proc/fastnet-metrics.json", "/proc"),
    ("--metrics-json", "/sys/fastnet-metrics.json", "/sys"),
    ("--save", "/proc/self/fastnet.npz", "/proc/self"),
])
def test_unwritable_destinations_are_refused_before_training(tmp_path, env, tiny, flag, path, word):
    proc = loud(env, tiny, flag, tmp_path if path == "TMP" else path)
    assert_one_line_error(proc, 2, word)
    assert "epoch 1/1" not in proc.stdout  # refused before the first step, root included


def test_an_immutable_directory_is_refused_before_training(tmp_path, env, tiny):
    folder = tmp_path / "locked"
    folder.mkdir()
    undo = immutable(folder)
    if undo is None:
        pytest.skip("cannot make a directory unwritable for root here")
    try:
        for flag in ("--save", "--metrics-json"):
            proc = loud(env, tiny, flag, folder / "out")
            assert_one_line_error(proc, 2, str(folder))
            assert "epoch 1/1" not in proc.stdout
        assert os.listdir(folder) == []
    finally:
        undo()


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs (root only, where mounting is allowed)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_keeps_the_earlier_model_and_leaves_no_debris(tiny_disk, env, tiny, tmp_path):
    path = tiny_disk / "m.npz"
    assert train_tiny(env, tiny, "--save", path).returncode == 0  # 64,8,4 with Adam's moments: ~7 KB
    before = path.read_bytes()
    proc = train_tiny(env, tiny, "--save", path, "--layers", "64,512,4")  # ~420 KB: does not fit
    assert_one_line_error(proc, 2, "No space left")
    assert path.read_bytes() == before and leftovers(tiny_disk) == []
    with open(tiny_disk / "filler", "wb", buffering=0) as f:  # fill the disk to the last block
        try:
            while f.write(b"\0" * 4096):
                pass
        except OSError:
            pass
    proc = train_tiny(env, tiny, "--save", tmp_path / "elsewhere.npz", "--metrics-json", tiny_disk / "m.json")
    assert_one_line_error(proc, 2, "No space left")
    assert checkpoint.load(str(tmp_path / "elsewhere.npz")) and leftovers(tiny_disk) == []



# --- 15. messages that say what happened ------------------------------------------------------------

def test_an_eps_below_the_dtype_is_refused_not_reported_as_divergence(env, tiny):
    assert_one_line_error(train_tiny(env, tiny, "--eps", "1e-50"), 2, "--eps", "float32")




# --- 18. what the run says: unwritable stdout, encodings, escapes ---------------------------------

def test_standard_output_on_a_full_device_is_one_line_and_the_model_is_saved(tmp_path, env, tiny):
    """The header line fails before training starts; with --quiet the first line written is the
    test result, after the model is saved."""
    for quiet in (False, True):
        with open("/dev/full", "w") as full:
            proc = run_cli("fastnet.train", *[a for a in TINY_ARGS if a != "--quiet" or quiet], "--data-dir", tiny,
                           "--save", tmp_path / f"{quiet}.npz", env=env, stdout=full, stderr=subprocess.PIPE)
        assert_one_line_error(proc, 2, "cannot write to standard output")
        assert (tmp_path / f"{quiet}.npz").exists() == quiet
    assert checkpoint.load(str(tmp_path / "True.npz")) and leftovers(tmp_path) == []


@pytest.mark.slow
def test_an_ascii_terminal_and_a_unicode_file_name(tmp_path, env, tiny):
    folder = tmp_path / "ünï ☃"
    folder.mkdir()
    e = dict(env, PYTHONIOENCODING="ascii", LC_ALL="C")
    proc = train_tiny(e, tiny, "--save", folder / "mödel.npz", "--quiet")
    assert proc.returncode == 0, proc.stderr
    for args in (["fastnet.evaluate", folder / "mödel.npz", "--backend", "numpy"],
                 ["fastnet.evaluate", folder / "absent-ñ.npz"]):
        proc = run_cli(*args, env=e)
        assert "Traceback" not in proc.stderr and proc.returncode in (0, 2), proc.stderr
    assert "absent-\\xf1" in proc.stderr


def test_class_names_with_terminal_escapes_are_printed_escaped(model, tmp_path, env, tiny):
    names = np.array(["\x1b[31mred", "bell\x07", "ok", "new\nline"])
    path = rewrite_model(model, tmp_path / "escapes.npz", class_names=names)
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "x.png")
    for args in (["fastnet.evaluate", path, "--backend", "numpy", "--data-dir", tiny],
                 ["fastnet.predict", path, tmp_path / "x.png", "--top", "4"]):
        proc = run_cli(*args, env=env)
        assert proc.returncode == 0, proc.stderr
        assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout and "\\x1b[31mred" in proc.stdout



# --- 19. a loss that explodes while finite is divergence; the earlier model is kept -----------------

def test_adam_with_a_huge_learning_rate_stops_as_divergence(tmp_path, env, tiny):
    path = tmp_path / "m.npz"
    assert train_tiny(env, tiny, "--save", path).returncode == 0
    before = path.read_bytes()
    proc = train_tiny(env, tiny, "--lr", "1e6", "--save", path)
    assert_one_line_error(proc, 3, "diverged", "exploded", "learning rate too high")
    assert path.read_bytes() == before and leftovers(tmp_path) == []


