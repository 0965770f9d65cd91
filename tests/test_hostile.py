"""Regression tests for the red-team's defect families, one section per item of its report.

Each reproduction must end with its documented exit status (2 bad input, 3 divergence, 130
interrupted) and one clear line on stderr, never a traceback; no file is lost or corrupted and
nothing is left behind. Commands run in subprocesses on tiny IDX data sets built here, on the
numpy backend (no compile time), one thread, a private cache and no network. The fresh hostile
cases live in tests/hostile_sweep.py; a fast subset of them runs here (the last test).
"""

import dataclasses
import json
import os
import re
import shlex
import shutil
import stat
import struct
import subprocess
import sys
import time
import tracemalloc
import types
import zipfile
import zlib
from pathlib import Path

import hostile_sweep
import numpy as np
import pytest

from conftest import write_idx
from fastnet import checkpoint, data, predict
from fastnet.data import download, idx, sources
from fastnet.errors import InputError
from fastnet.optim import OPTIMIZERS
from kernels import blas
from test_train_cli import assert_one_line_error

ROOT = Path(__file__).resolve().parents[1]
REAL = Path("/usr/share/datasets/fashion-mnist")
needs_real = pytest.mark.skipif(not (REAL / "t10k-images-idx3-ubyte.gz").exists() and not os.environ.get("CI"),
                                reason="real Fashion-MNIST not installed (CI installs it)")
TINY = ["--epochs", "1", "--quiet", "--val-split", "20", "--layers", "64,8,4", "--backend", "numpy", "--threads", "1"]


def make_set(folder, n_train=300, n_test=60, side=8, classes=4, seed=0):
    """Four raw IDX files: n_train and n_test side x side images around one centre per class."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    centers = rng.integers(0, 256, (classes, side * side))
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        y = np.arange(n) % classes
        x = np.clip(centers[y] + rng.normal(0, 60, (n, side * side)), 0, 255)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", x.reshape(n, side, side))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", y)
    return folder


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The subprocesses' environment: a private cache, one thread, no network, no user NUMBA_ settings."""
    root = tmp_path_factory.mktemp("hostile-env")
    e = dict(os.environ, PYTHONUNBUFFERED="1", FASTNET_CACHE_DIR=str(root / "cache"),
             FASTNET_MIRROR="http://127.0.0.1:9", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    for var in ("FASHION_MNIST_DIR", "MNIST_DIR", "NUMBA_NUM_THREADS", "NUMBA_DISABLE_JIT"):
        e.pop(var, None)
    return e


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """300 training and 60 test images of 8x8 pixels in 4 classes."""
    return make_set(tmp_path_factory.mktemp("tiny") / "data")


@pytest.fixture(scope="module")
def model(tmp_path_factory, env, tiny):
    """A model trained one epoch on tiny (a finished run's checkpoint)."""
    path = tmp_path_factory.mktemp("model") / "model.npz"
    proc = fastnet("fastnet.train", *TINY, "--data-dir", tiny, "--save", path, env=env)
    assert proc.returncode == 0, proc.stderr
    return path


def fastnet(*args, env, timeout=120, **kw):
    """`python -m ARGS` from the repository root; returns the CompletedProcess (text)."""
    kw.setdefault("capture_output", "stdout" not in kw and "stderr" not in kw)
    return subprocess.run([sys.executable, "-m", *map(str, args)], cwd=ROOT, env=env, text=True,
                          timeout=timeout, **kw)


def train(env, data_dir, *args, **kw):
    return fastnet("fastnet.train", *TINY, "--data-dir", data_dir, *args, env=env, **kw)


def debris(folder):
    """Temporary files left in folder."""
    return [p.name for p in Path(folder).iterdir() if p.name.startswith(".tmp-")]


def rewrite(src, dst, **changes):
    """A copy of model file src at dst with members replaced (arrays) or, for progress and
    settings, their JSON updated with the dict given."""
    arrays = dict(np.load(src))
    for key, value in changes.items():
        if isinstance(value, dict) and key in ("progress", "settings"):
            doc = json.loads(str(arrays[key]))
            doc.update(value)
            value = np.array(json.dumps(doc))
        arrays[key] = value
    np.savez(dst, **arrays)
    return dst


def progress_of(path):
    return json.loads(str(np.load(path)["progress"]))


# --- 1. the test set is checked before the first step; the model is saved before the test evaluation

def test_a_test_class_unseen_in_training_is_refused_before_the_first_step(tmp_path, env):
    data_dir = make_set(tmp_path / "unseen", classes=3)
    write_idx(data_dir / "t10k-labels-idx1-ubyte", np.arange(60) % 4)  # the test set has class 3
    model = tmp_path / "m.npz"
    proc = fastnet("fastnet.train", *[a for a in TINY if a != "--quiet"], "--epochs", "2", "--layers", "64,8,3",
                   "--data-dir", data_dir, "--save", model, env=env)
    assert_one_line_error(proc, 2, "label 3")
    assert "epoch" not in proc.stdout and not model.exists()


def test_a_test_count_mismatch_is_refused_before_the_first_step(tmp_path, env):
    data_dir = make_set(tmp_path / "mismatch")
    write_idx(data_dir / "t10k-labels-idx1-ubyte", np.arange(59) % 4)
    proc = train(env, data_dir, "--save", tmp_path / "m.npz")
    assert_one_line_error(proc, 2, "60 images", "59 labels")
    assert not (tmp_path / "m.npz").exists()


# --- 2. a signal at any moment: stop at a safe point, the model saved and complete, exit 130

SIGNAL_AT = """
import os, signal, sys
from fastnet import checkpoint, cli, train, training
from fastnet.progress import ProgressBar

phase, sig, held_out = sys.argv[1], getattr(signal, sys.argv[2]), int(sys.argv[3])

def before(owner, name, when=lambda *args: True):
    real = getattr(owner, name)
    def wrapped(*args, **kw):
        if when(*args):
            os.kill(os.getpid(), sig)
        return real(*args, **kw)
    setattr(owner, name, wrapped)

if phase == "step":  # after the third optimiser step of the first epoch
    calls = iter(range(10**9))
    before(ProgressBar, "update", lambda *args: next(calls) == 2)
elif phase == "validation":  # the last epoch's validation
    before(training, "evaluate", lambda model, backend, images, labels: len(labels) == held_out)
elif phase == "save":  # the final save
    before(checkpoint, "save")
elif phase == "test":  # the test evaluation after the save
    before(train, "evaluate")
cli.run(train.main, sys.argv[4:])
"""


def signalled(env, data_dir, phase, sig, *args):
    return subprocess.run([sys.executable, "-c", SIGNAL_AT, phase, sig, "20", *TINY, "--data-dir", str(data_dir),
                           *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("sig, word", [("SIGINT", "interrupted"), ("SIGTERM", "terminated")])
@pytest.mark.parametrize("phase", ["step", "validation", "save", "test"])
def test_a_signal_in_any_phase_keeps_the_model(tmp_path, env, tiny, phase, sig, word):
    path = tmp_path / "m.npz"
    proc = signalled(env, tiny, phase, sig, "--epochs", "2" if phase == "step" else "1", "--save", path)
    assert_one_line_error(proc, 130, word, f"saved to {path}")
    state, _, _ = checkpoint.load_state(str(path), OPTIMIZERS)
    if phase == "step":  # the third step ends the first epoch: the run stops after it (issue 21 S1)
        assert (state.epoch, state.batch) == (1, 0) and "Resume with:" in proc.stderr
    else:  # every epoch ran: the model is the finished one
        assert (state.epoch, state.batch) == (1, 0) and len(state.history.val_loss) == 1
    assert debris(tmp_path) == []


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
    assert_one_line_error(train(env, tiny, *args), 2, word)
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
    return fastnet("fastnet.train", *[a for a in TINY if a != "--quiet"], "--data-dir", data_dir, *args, env=env)


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
    assert train(env, tiny, "--save", path).returncode == 0  # 64,8,4 with Adam's moments: ~7 KB
    before = path.read_bytes()
    proc = train(env, tiny, "--save", path, "--layers", "64,512,4")  # ~420 KB: does not fit
    assert_one_line_error(proc, 2, "No space left")
    assert path.read_bytes() == before and debris(tiny_disk) == []
    with open(tiny_disk / "filler", "wb", buffering=0) as f:  # fill the disk to the last block
        try:
            while f.write(b"\0" * 4096):
                pass
        except OSError:
            pass
    proc = train(env, tiny, "--save", tmp_path / "elsewhere.npz", "--metrics-json", tiny_disk / "m.json")
    assert_one_line_error(proc, 2, "No space left")
    assert checkpoint.load(str(tmp_path / "elsewhere.npz")) and debris(tiny_disk) == []


# --- 5. tampered checkpoints; --resume keeps its recipe; errors name what the user gave -----------

def _history(**lists):
    good = {"epoch_seconds": [0.1], "eval_seconds": [0.1], "train_loss": [1.0], "train_accuracy": [0.5],
            "val_loss": [1.0], "val_accuracy": [0.5], "step_loss": [1.2, 1.1, 1.0]}
    return {**good, **lists}


TAMPERED_PROGRESS = {
    "history_of_strings": ({"history": _history(train_loss=["x"])}, "not a number"),
    "batch_1e9": ({"batch": 10**9}, "partial losses"),
    "batch_float": ({"batch": 1.5}, "whole counts"),
    "epoch_bool": ({"epoch": True}, "whole counts"),
    "epoch_float": ({"epoch": 1.0}, "whole counts"),
    "epoch_beyond_history": ({"epoch": 10**9}, "entries for"),
    "history_short": ({"history": _history(val_loss=[])}, "entries for"),
    "history_infinite": ({"history": _history(train_loss=[float("inf")])}, "outside"),
    "history_nan_loss": ({"history": _history(train_loss=[float("nan")])}, "outside"),
    "accuracy_above_1": ({"history": _history(train_accuracy=[1.5])}, "outside"),
    "negative_seconds": ({"history": _history(epoch_seconds=[-1.0])}, "outside"),
    "history_a_list": ({"history": []}, "fields"),
    "history_missing_field": ({"history": {k: v for k, v in _history().items() if k != "step_loss"}}, "fields"),
    "too_few_step_losses": ({"history": _history(step_loss=[])}, "step_loss"),
    "partial_losses_text": ({"batch": 1, "partial_losses": ["1.0"]}, "not a number"),
    "rng_text": ({"rng": "PCG64"}, "objects"),
    "rng_bad_state": ({"rng": {"bit_generator": "PCG64", "state": {"state": "x", "inc": 1}}}, "incomplete"),
    "no_batch": (None, "no batch"),
}


@pytest.mark.parametrize("name", sorted(TAMPERED_PROGRESS))
def test_a_tampered_checkpoint_is_one_error_before_resuming(name, model, tmp_path, env, tiny):
    change, word = TAMPERED_PROGRESS[name]
    progress = progress_of(model)
    if change is None:
        del progress["batch"]
    else:
        progress.update(change)
    bad = rewrite(model, tmp_path / f"{name}.npz", progress=np.array(json.dumps(progress)))
    with pytest.raises(InputError) as info:
        checkpoint.load_state(str(bad), OPTIMIZERS)
    assert word in str(info.value) and "\n" not in str(info.value)
    if name in ("history_of_strings", "batch_1e9"):  # the report's two reproductions, end to end
        proc = fastnet("fastnet.train", "--resume", bad, "--epochs", "2", "--data-dir", tiny, env=env)
        assert_one_line_error(proc, 2, "cannot be resumed")


def test_a_batch_past_the_end_of_an_epoch_is_refused_once_the_data_is_known(model, tmp_path, env, tiny):
    progress = progress_of(model)  # 280 training images in batches of 128: 3 steps an epoch
    progress.update(batch=4, partial_losses=[1.0] * 4, epoch_rng=progress["rng"])
    bad = rewrite(model, tmp_path / "bad.npz", progress=np.array(json.dumps(progress)))
    proc = fastnet("fastnet.train", "--resume", bad, "--epochs", "2", "--data-dir", tiny, env=env)
    assert_one_line_error(proc, 2, "batch 4", "has 3")


def test_a_checkpoint_stopped_after_an_epochs_last_batch_resumes(model, tmp_path, env, tiny):
    """batch == steps: what a stop right after an epoch's last chunk used to write (issue 21 S1).
    Resuming completes that epoch's bookkeeping, then trains on."""
    progress = progress_of(model)
    progress.update(batch=3, partial_losses=[1.0] * 3, epoch_rng=progress["rng"])
    old = rewrite(model, tmp_path / "old.npz", progress=np.array(json.dumps(progress)))
    proc = fastnet("fastnet.train", "--resume", old, "--epochs", "3", "--data-dir", tiny, env=env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    state, _, _ = checkpoint.load_state(str(old), OPTIMIZERS)
    assert (state.epoch, state.batch) == (3, 0) and state.history.step_loss[3:6] == [1.0] * 3


@pytest.mark.parametrize("flag, value", [("--layers", "64,16,4"), ("--lr", "0.5"), ("--batch-size", "7")])
def test_resume_refuses_recipe_flags_that_contradict_the_checkpoint(model, tmp_path, env, tiny, flag, value):
    mine = shutil.copy(model, tmp_path / "m.npz")
    proc = fastnet("fastnet.train", "--resume", mine, "--epochs", "2", "--data-dir", tiny, flag, value, env=env)
    assert_one_line_error(proc, 2, flag, "contradicts")
    assert Path(mine).read_bytes() == Path(model).read_bytes()


def test_errors_name_the_checkpoint_not_flags_the_user_never_passed(model, tmp_path, env, tiny):
    bad = rewrite(model, tmp_path / "bad.npz", settings={"batch_size": 0})
    proc = fastnet("fastnet.train", "--resume", bad, "--epochs", "2", "--data-dir", tiny, env=env)
    assert_one_line_error(proc, 2, "the checkpoint's batch_size")
    assert "--batch-size" not in proc.stderr


# --- 6. a model file padded with a huge member, or claiming more than its layers need ------------

LOAD = "import sys; from fastnet import checkpoint; checkpoint.load(sys.argv[1]); print('loaded')"


def peak_rss_mb(*argv):
    """(CompletedProcess-like stdout+stderr, peak RSS in MB) of `python argv` (os.wait4's own rusage)."""
    proc = subprocess.Popen([sys.executable, *map(str, argv)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    return out, proc.returncode, usage.ru_maxrss / 1024


def test_a_huge_extra_member_is_never_read(model, tmp_path):
    padded = shutil.copy(model, tmp_path / "padded.npz")
    header = io_npy_header((200 << 20,), "|u1")
    with zipfile.ZipFile(padded, "a", zipfile.ZIP_DEFLATED) as zf:
        for name in ("padding.npy", "padding.bin"):  # 200 MB of zeros each, ~200 KB deflated
            with zf.open(name, "w", force_zip64=True) as f:
                f.write(header if name.endswith(".npy") else b"")
                block = bytes(1 << 20)
                for _ in range(200):
                    f.write(block)
    assert os.path.getsize(padded) < 2 << 20
    out, code, base = peak_rss_mb("-c", LOAD, model)
    assert code == 0, out
    out, code, peak = peak_rss_mb("-c", LOAD, padded)
    assert code == 0 and "loaded" in out, out
    assert peak < base + 50, (peak, base)  # not 200 MB more


def io_npy_header(shape, descr):
    """The bytes of a version 1.0 .npy header for an array of shape and dtype descr."""
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def test_a_params_member_claiming_more_than_the_layers_need_is_refused(model, tmp_path, env, tiny):
    big = rewrite(model, tmp_path / "big.npz", params=np.zeros(10**6, np.float32))  # 556 needed
    with zipfile.ZipFile(shutil.copy(model, tmp_path / "liar.npz")) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members["params.npy"] = io_npy_header((10**9,), "<f4") + bytes(64)  # claims 4 GB, holds 64 bytes
    with zipfile.ZipFile(tmp_path / "liar.npz", "w") as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    for path, word in ((big, "more than a model file of these layers needs"), (tmp_path / "liar.npz", "larger")):
        proc = fastnet("fastnet.evaluate", path, "--data-dir", tiny, "--backend", "numpy", env=env)
        assert_one_line_error(proc, 2, word)


# --- 7. a gzip IDX bomb: the four headers are cross-checked before any body is inflated ----------

def gzip_of_zeros(path, header, nbytes):
    """A gzip file holding header and nbytes of zeros, compressed in 1 MiB blocks (no big buffer)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    with open(path, "wb") as f:
        f.write(c.compress(header))
        for start in range(0, nbytes, len(block)):
            f.write(c.compress(block[: min(len(block), nbytes - start)]))
        f.write(c.flush())
    return path


@pytest.fixture
def bomb(tmp_path):
    """A data set whose train-images.gz (~150 KB) claims 200000 x 28 x 28 (157 MB) consistently with
    its size, beside 300 training labels."""
    folder = make_set(tmp_path / "bomb", side=28)
    (folder / "train-images-idx3-ubyte").unlink()
    gzip_of_zeros(folder / "train-images-idx3-ubyte.gz", struct.pack(">BBBBIII", 0, 0, 8, 3, 200000, 28, 28),
                  200000 * 28 * 28)
    return folder


def test_a_gzip_bomb_is_refused_from_its_header_before_inflating(bomb, tmp_cache):
    tracemalloc.start()
    t = time.perf_counter()
    try:
        with pytest.raises(InputError, match="200000 images but .* 300 labels"):
            data.load(data_dir=bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20 and time.perf_counter() - t < 5, peak
    assert not tmp_cache.exists() or not list(tmp_cache.rglob("*.npy"))  # nothing decoded, nothing cached


def test_a_claim_beyond_the_available_memory_is_refused(tmp_path, tmp_cache, monkeypatch):
    folder = make_set(tmp_path / "set", side=28)
    monkeypatch.setattr(idx, "available_memory", lambda: 100_000)  # the 300 x 784 images need 235 KB
    with pytest.raises(InputError, match="memory available"):
        data.load(data_dir=folder)
    assert not tmp_cache.exists() or not list(tmp_cache.rglob("*.npy"))


def test_a_gzip_bomb_through_train_is_one_line_and_leaves_no_cache(bomb, env, tmp_path):
    e = dict(env, FASTNET_CACHE_DIR=str(tmp_path / "cache"))
    proc = fastnet("fastnet.train", *TINY, "--layers", "784,8,4", "--data-dir", bomb, env=e)
    assert_one_line_error(proc, 2, "200000 images")
    assert not (tmp_path / "cache").exists() or not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


# --- 8, 9. predict: the image size is checked from the header; wide samples are scaled, not clipped

def png_header_claiming(path, width, height):
    """A PNG whose IHDR claims width x height 8-bit grey pixels, with one tiny (wrong) IDAT."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side", [20000, 10000])
def test_predict_refuses_a_huge_image_from_its_header(tmp_path, model, env, side):
    pytest.importorskip("PIL")
    image = png_header_claiming(tmp_path / "huge.png", side, side)
    proc = fastnet("fastnet.predict", model, image, env=env)
    assert_one_line_error(proc, 2, "25,000,000 pixels")


def test_predict_reads_16_bit_int32_and_float_images_as_the_8_bit_one(tmp_path, model, env):
    Image = pytest.importorskip("PIL.Image")
    gray = np.random.default_rng(3).integers(0, 256, (8, 8)).astype(np.uint8)
    gray[0, :] = gray[-1, :] = gray[:, 0] = gray[:, -1] = 0  # a dark frame, as data set images have
    paths = {
        "8-bit png": (gray, "png"),
        "16-bit png": (gray.astype(np.uint16) * 257, "png"),
        "int32 tiff": (gray.astype(np.int32) * 257, "tiff"),
        "float tiff": (gray.astype(np.float32) / 255, "tiff"),
    }
    files = []
    for i, (name, (array, fmt)) in enumerate(paths.items()):
        files.append(tmp_path / f"{i}.{fmt}")
        Image.fromarray(array).save(files[-1])
        np.testing.assert_array_equal(predict.read_image(files[-1]), gray, err_msg=name)
    proc = fastnet("fastnet.predict", model, *files, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    tops = [r["top"] for r in json.loads(proc.stdout)]
    assert all(t == tops[0] for t in tops), tops


# --- 10. the printed "Resume with:" command reproduces the uninterrupted run exactly -------------

def test_following_the_printed_resume_command_equals_the_straight_run(tmp_path, env, tiny):
    straight, part = tmp_path / "straight.npz", tmp_path / "part.npz"
    args = ["--epochs", "2", "--batch-size", "32"]  # 9 steps an epoch; stopped after step 3
    assert train(env, tiny, *args, "--save", straight).returncode == 0
    proc = signalled(env, tiny, "step", "SIGINT", *args, "--save", part)
    assert proc.returncode == 130, proc.stderr
    command = re.search(r"Resume with: (.*)$", proc.stderr.strip()).group(1)
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "fastnet.train"], command
    assert "--backend numpy" in command and "--threads 1" in command, command
    resumed = subprocess.run([sys.executable, *argv[1:]], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    a, _, _ = checkpoint.load_state(str(straight), OPTIMIZERS)
    b, _, _ = checkpoint.load_state(str(part), OPTIMIZERS)
    assert (b.epoch, b.batch, b.optimizer.step) == (a.epoch, a.batch, a.optimizer.step) == (2, 0, 18)
    np.testing.assert_array_equal(b.model.params, a.model.params)
    np.testing.assert_array_equal(b.optimizer.m, a.optimizer.m)
    assert b.history.step_loss == a.history.step_loss and b.history.val_loss == a.history.val_loss


# --- 11. NUMBA_DISABLE_JIT=1: gemm's Python body (make test-nojit runs the kernel tests so) -------

@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_python_body_when_the_last_row_is_shorter_than_its_stride(trans_a, trans_b):
    """The block of a flat buffer ends at the last row's last column, not at rows·ld: BLAS reads
    only that far, and so must the Python body that runs under NUMBA_DISABLE_JIT=1."""
    rng = np.random.default_rng(0)
    M, N, K, ld = 4, 3, 2, 5  # every block: rows of ld, of which only the first cols are used
    shape_a, shape_b = ((K, M) if trans_a else (M, K)), ((N, K) if trans_b else (K, N))

    def buffer(rows, cols, at):  # exactly at + (rows - 1)·ld + cols elements: the tail row is short
        flat = rng.standard_normal(at + (rows - 1) * ld + cols)
        block = np.lib.stride_tricks.as_strided(flat[at:], (rows, cols), (ld * 8, 8))
        return flat, block.copy()

    A, a = buffer(*shape_a, 1)
    B, b = buffer(*shape_b, 2)
    C = np.zeros(3 + (M - 1) * ld + N)
    blas.gemm(trans_a, trans_b, M, N, K, A, 1, ld, B, 2, ld, C, 3, ld)
    want = (a.T if trans_a else a) @ (b.T if trans_b else b)
    got = np.lib.stride_tricks.as_strided(C[3:], (M, N), (ld * 8, 8))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    untouched = np.ones(C.size, bool)
    for r in range(M):
        untouched[3 + r * ld : 3 + r * ld + N] = False
    assert (C[untouched] == 0).all()  # nothing written between the rows or before the block


def test_gemm_python_body_refuses_a_block_past_the_buffer():
    A = np.zeros(10)
    with pytest.raises(ValueError, match="overruns"):
        blas.gemm(False, False, 3, 4, 4, A, 0, 4, A, 0, 4, A, 0, 4)



# --- 12. Numba's environment: nowhere to cache, NUMBA_NUM_THREADS that is not a count ------------

# The package folder and the user cache unwritable (for root too: the locators' write probe fails).
NO_CACHE = """
import numba.core.caching as caching
def read_only(self):
    raise PermissionError(13, "Permission denied", self._cache_path)
for name in dir(caching):
    if ("InTree" in name or "UserWide" in name) and name.endswith("Locator"):
        getattr(caching, name).ensure_cache_path = read_only
import numpy as np
from fastnet.backend import get_backend
K = get_backend("numba")
Z = np.zeros((3, 4), np.float32)
print(K.softmax(Z, np.empty_like(Z))[0, 0])
"""


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="needs the JIT")
def test_no_writable_numba_cache_compiles_for_the_run_with_a_note(env, tmp_path):
    e = {k: v for k, v in env.items() if k != "NUMBA_CACHE_DIR"}
    proc = subprocess.run([sys.executable, "-c", NO_CACHE], cwd=tmp_path, env={**e, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.split() == ["0.25"], proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("note: ") and "this run only" in lines[0], proc.stderr


@pytest.mark.parametrize("value", ["0", "-2", "abc", ""])
def test_numba_num_threads_that_is_not_a_count_is_one_line(env, tiny, value):
    proc = fastnet("fastnet.train", *TINY, "--backend", "numba", "--data-dir", tiny,
                   env={**env, "NUMBA_NUM_THREADS": value})
    assert_one_line_error(proc, 2, "NUMBA_NUM_THREADS")


# --- 13. a negative seed ---------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["fastnet.show", "fastnet.gradcheck"])
def test_a_negative_seed_is_one_line(env, tiny, command):
    assert_one_line_error(fastnet(command, "--seed", "-1", "--data-dir", tiny, env=env), 2, "--seed")


# --- 14. a run that cannot fit in memory is refused before it starts ------------------------------

def test_a_run_larger_than_memory_is_refused_up_front(env, tmp_path):
    """The report's case: 60000 images, 200000 hidden units, batches of 60000 in float64 (~290 GB)."""
    many = make_set(tmp_path / "many", n_train=60000, side=2)
    proc = train(env, many, "--layers", "4,200000,4", "--batch-size", "60000", "--dtype", "float64")
    assert_one_line_error(proc, 2, "GiB of memory")


def test_a_batch_larger_than_the_training_set_is_not_counted_as_memory(env, tiny):
    assert train(env, tiny, "--batch-size", "1000000000").returncode == 0


# --- 15. messages that say what happened ------------------------------------------------------------

def test_an_eps_below_the_dtype_is_refused_not_reported_as_divergence(env, tiny):
    assert_one_line_error(train(env, tiny, "--eps", "1e-50"), 2, "--eps", "float32")


def register_toy(monkeypatch, pub, arrays, dims=True):
    info = data.DatasetInfo(
        name="toy", files=data.SPLIT_FILES, class_names=("a", "b", "c", "d"), env_var="TOY_DIR",
        sha256={b: idx.payload_sha256(a) for b, a in arrays.items()}, system_dir=pub / "absent",
        mirror="http://127.0.0.1:9/", dims={b: a.shape for b, a in arrays.items()} if dims else {})
    monkeypatch.setattr(sources, "DATASETS", types.MappingProxyType({**sources.DATASETS, "toy": info}))


def published(folder):
    return {p.name: idx.read_idx(p) for p in folder.iterdir()}


def test_published_test_files_beside_a_training_subset_are_custom_data(tmp_path, tmp_cache, monkeypatch):
    pub = make_set(tmp_path / "pub", n_train=40, n_test=20)
    register_toy(monkeypatch, pub, published(pub))
    mine = shutil.copytree(pub, tmp_path / "mine")
    for base in data.SPLIT_FILES["train"]:  # a subset of the published training files
        write_idx(mine / base, idx.read_idx(pub / base)[:10])
    for split in ("train", "test"):
        result = data.load("toy", split, mine)
        assert result.custom and result.class_names == ("0", "1", "2", "3")
    assert not data.load("toy", "test", pub).custom
    # the same dims as the published file but other bytes: a damaged copy, still an error
    damaged = shutil.copytree(pub, tmp_path / "damaged")
    labels = idx.read_idx(pub / "train-labels-idx1-ubyte")
    write_idx(damaged / "train-labels-idx1-ubyte", (labels + 1) % 4)
    with pytest.raises(InputError, match="corrupt or modified"):
        data.load("toy", "test", damaged)


@needs_real
def test_the_real_test_files_beside_a_500_image_training_subset_are_custom_data(tmp_path, tmp_cache):
    for base in data.SPLIT_FILES["test"]:
        os.symlink(REAL / f"{base}.gz", tmp_path / f"{base}.gz")
    for base in data.SPLIT_FILES["train"]:
        write_idx(tmp_path / base, idx.read_idx(REAL / f"{base}.gz")[:500])
    result = data.load("fashion-mnist", "test", tmp_path)
    assert result.custom and len(result.labels) == 10000


def test_the_download_hint_reads_as_a_sentence(tmp_path, env):
    assert data.DATASETS["mnist"].how_to_get().startswith("pass --data-dir DIR or set MNIST_DIR=DIR")
    assert data.DATASETS["fashion-mnist"].how_to_get().startswith(
        "install it with 'apt-get install dataset-fashion-mnist' (Debian), or pass --data-dir DIR")
    e = dict(env, FASTNET_CACHE_DIR=str(tmp_path / "cache"))
    proc = fastnet("fastnet.train", *TINY, "--dataset", "mnist", env=e)
    if Path("/usr/share/datasets/mnist").exists():
        pytest.skip("MNIST is installed: nothing to download")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    notice, error = proc.stderr.strip().splitlines()  # "downloading URL", then the one error line
    assert notice.startswith("downloading ") and "cannot download" in error, proc.stderr
    assert "; pass --data-dir DIR or set MNIST_DIR=DIR" in error and "with pass" not in error
    assert debris(tmp_path / "cache" / "mnist") == []


def test_evaluate_on_custom_data_names_its_directory(model, env, tiny):
    proc = fastnet("fastnet.evaluate", model, "--backend", "numpy", env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"the test set in {tiny}" in proc.stdout and "fashion-mnist test set" not in proc.stdout


# --- 16. evaluate never silently swaps the test set -------------------------------------------------

def test_evaluate_refuses_a_vanished_training_directory_and_notes_another_test_set(tmp_path, env, tiny):
    gone = shutil.copytree(tiny, tmp_path / "gone")
    path = tmp_path / "m.npz"
    assert train(env, gone, "--save", path).returncode == 0
    shutil.rmtree(gone)
    assert_one_line_error(fastnet("fastnet.evaluate", path, "--backend", "numpy", env=env), 2, "gone", "--data-dir")
    other = make_set(tmp_path / "other", seed=7)
    proc = fastnet("fastnet.evaluate", path, "--backend", "numpy", "--data-dir", other, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("note: ") and "not the test set" in lines[0], proc.stderr
    same = fastnet("fastnet.evaluate", path, "--backend", "numpy", "--data-dir", tiny, env=env)
    assert same.returncode == 0 and same.stderr == "", same.stderr


# --- 17. gradcheck at ReLU kinks ------------------------------------------------------------------

def test_gradcheck_on_one_pixel_data_skips_probes_at_a_kink(tmp_path, env):
    folder = tmp_path / "one-pixel"
    folder.mkdir()
    for prefix, n in (("train", 40), ("t10k", 10)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", (np.arange(n) % 2 * 255).reshape(n, 1, 1))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    proc = fastnet("fastnet.gradcheck", "--layers", "1,3,10", "--backend", "numpy", "--data-dir", folder,
                   "--samples", "20", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "skipped" in proc.stdout and "Traceback" not in proc.stderr


# --- 18. what the run says: threads, unwritable stdout, encodings, escapes, a trickling mirror -----

@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="needs the JIT")
def test_the_header_says_how_many_threads_run(env, tiny):
    proc = fastnet("fastnet.train", *[a for a in TINY if a != "--quiet"], "--backend", "numba", "--threads", "1000",
                   "--data-dir", tiny, env=env)
    assert proc.returncode == 0, proc.stderr
    header = proc.stdout.splitlines()[0]
    assert re.search(r"\d+ threads \(asked for 1000; Numba runs at most \d+\)", header), header
    assert " 1000 threads" not in header


def test_standard_output_on_a_full_device_is_one_line_and_the_model_is_saved(tmp_path, env, tiny):
    """The header line fails before training starts; with --quiet the first line written is the
    test result, after the model is saved."""
    for quiet in (False, True):
        with open("/dev/full", "w") as full:
            proc = fastnet("fastnet.train", *[a for a in TINY if a != "--quiet" or quiet], "--data-dir", tiny,
                           "--save", tmp_path / f"{quiet}.npz", env=env, stdout=full, stderr=subprocess.PIPE)
        assert_one_line_error(proc, 2, "cannot write to standard output")
        assert (tmp_path / f"{quiet}.npz").exists() == quiet
    assert checkpoint.load(str(tmp_path / "True.npz")) and debris(tmp_path) == []


def test_an_ascii_terminal_and_a_unicode_file_name(tmp_path, env, tiny):
    folder = tmp_path / "ünï ☃"
    folder.mkdir()
    e = dict(env, PYTHONIOENCODING="ascii", LC_ALL="C")
    proc = train(e, tiny, "--save", folder / "mödel.npz", "--quiet")
    assert proc.returncode == 0, proc.stderr
    for args in (["fastnet.evaluate", folder / "mödel.npz", "--backend", "numpy"],
                 ["fastnet.evaluate", folder / "absent-ñ.npz"]):
        proc = fastnet(*args, env=e)
        assert "Traceback" not in proc.stderr and proc.returncode in (0, 2), proc.stderr
    assert "absent-\\xf1" in proc.stderr


def test_class_names_with_terminal_escapes_are_printed_escaped(model, tmp_path, env, tiny):
    names = np.array(["\x1b[31mred", "bell\x07", "ok", "new\nline"])
    path = rewrite(model, tmp_path / "escapes.npz", class_names=names)
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "x.png")
    for args in (["fastnet.evaluate", path, "--backend", "numpy", "--data-dir", tiny],
                 ["fastnet.predict", path, tmp_path / "x.png", "--top", "4"]):
        proc = fastnet(*args, env=env)
        assert proc.returncode == 0, proc.stderr
        assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout and "\\x1b[31mred" in proc.stdout


@pytest.fixture
def trickle():
    """A loopback mirror that trickles (hostile_sweep.Trickle); stops with the test."""
    server = hostile_sweep.trickle_server(0.2)
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("mode", ["stall", "deadline"])
def test_a_trickling_mirror_gives_up_and_leaves_no_file(tmp_path, tmp_cache, monkeypatch, trickle, mode):
    mnist = data.DATASETS["mnist"]
    monkeypatch.setattr(sources, "DATASETS", types.MappingProxyType(
        {**sources.DATASETS, "mnist": dataclasses.replace(mnist, system_dir=tmp_path / "absent")}))
    monkeypatch.setenv("FASTNET_MIRROR", f"http://127.0.0.1:{trickle.server_address[1]}/")
    monkeypatch.setattr(download, "STALL_SECONDS", 1)
    if mode == "deadline":  # enough bytes to pass the stall check, never the whole file
        trickle.burst = 64
        monkeypatch.setattr(download, "STALL_BYTES", 16)
        monkeypatch.setattr(download, "DEADLINE_SECONDS", 1.5)
    t = time.perf_counter()
    with pytest.raises(InputError, match="stalled" if mode == "stall" else "unfinished after 1.5 s") as info:
        data.load("mnist")
    assert time.perf_counter() - t < 10 and "\n" not in str(info.value)
    assert os.listdir(tmp_cache / "mnist") == []


# --- 19. a loss that explodes while finite is divergence; the earlier model is kept -----------------

def test_adam_with_a_huge_learning_rate_stops_as_divergence(tmp_path, env, tiny):
    path = tmp_path / "m.npz"
    assert train(env, tiny, "--save", path).returncode == 0
    before = path.read_bytes()
    proc = train(env, tiny, "--lr", "1e6", "--save", path)
    assert_one_line_error(proc, 3, "diverged", "exploded", "--lr")
    assert path.read_bytes() == before and debris(tmp_path) == []


# --- the fresh hostile sweep (tests/hostile_sweep.py): its FAST subset runs with the tests ---------

def test_hostile_sweep_fast_subset():
    """About 20 of the sweep's 200-odd cases, one or more per family; `make hostile` runs them all."""
    import io

    cases = [c for c in hostile_sweep.CASES if c.fast]
    assert len(cases) >= 15 and len(hostile_sweep.CASES) >= 100
    report = io.StringIO()
    defects = hostile_sweep.sweep(cases, out=report)
    assert not defects, report.getvalue()
