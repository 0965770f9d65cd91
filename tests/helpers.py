"""Shared test helpers: tiny data sets (IDX, .npz, CSV), model files, the command line in a subprocess and
the check of its one-line errors. Fixtures live in conftest.py; tests import these by name.

Each data builder is seeded, so a test sees the same arrays on every run.
"""

import gzip
import json
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL = Path("/usr/share/datasets/fashion-mnist")
needs_real = pytest.mark.skipif(
    not (REAL / "train-images-idx3-ubyte.gz").exists() and not os.environ.get("CI"),
    reason="real Fashion-MNIST not installed (CI installs it; a missing data set fails there)",
)
FASHION_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"]
# A one-epoch training run on a tiny set: numpy backend (no compile time), one thread, 20 rows held out.
TINY_ARGS = ["--epochs", "1", "--quiet", "--val-split", "20", "--layers", "64,8,4", "--backend", "numpy",
             "--threads", "1"]


# --------------------------------------------------------------------------------------------- data files

def write_idx(path, array, gz=False):
    """Write array as a uint8 IDX file at path (gzip-compressed if gz) and return the path."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    data = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_idx_set(folder, train, test):
    """The four raw IDX files of a data set in folder from (images, labels) pairs; returns folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, (images, labels) in (("train", train), ("t10k", test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels)
    return folder


def idx_set(folder, n_train=90, n_test=30, side=4, classes=3, seed=0):
    """An IDX data set of uniformly random side x side images, labels 0..classes-1 in turn: files to read
    and run, not to learn from. Returns folder."""
    rng = np.random.default_rng(seed)
    splits = [(rng.integers(0, 256, (n, side, side)), np.arange(n) % classes) for n in (n_train, n_test)]
    return write_idx_set(folder, *splits)


def clustered_idx_set(folder, n_train=300, n_test=60, side=8, classes=4, seed=0, shuffled=False):
    """An IDX data set that a network learns: each image is its class's random centre plus noise (sd 60),
    labels 0..classes-1 in turn (random if shuffled). Returns folder."""
    rng = np.random.default_rng(seed)
    centers = rng.integers(0, 256, (classes, side * side))
    splits = []
    for n in (n_train, n_test):
        y = rng.integers(0, classes, n) if shuffled else np.arange(n) % classes
        x = np.clip(centers[y] + rng.normal(0, 60, (n, side * side)), 0, 255)
        splits.append((x.reshape(n, side, side), y))
    return write_idx_set(folder, *splits)


def banded_images(n, classes, side=8, seed=0):
    """uint8 images (n, side, side) where class c brightens row c % side; labels 0..classes-1 in turn."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    X = rng.integers(0, 50, (n, side, side), dtype=np.uint8)
    for c in range(classes):
        X[y == c, c % side] += 200
    return X, y


def npz_set(path, n_train=60, n_test=30, classes=3, side=8):
    """A .npz data set of banded images (X_train, y_train, X_test, y_test); returns path."""
    (X, y), (Xt, yt) = banded_images(n_train, classes, side), banded_images(n_test, classes, side, seed=1)
    np.savez(path, X_train=X, y_train=y, X_test=Xt, y_test=yt)
    return path


def write_csv(path, X, y, header=True):
    """The common CSV layout: 'label,pixel1,...' then one image a line, its label first; returns path."""
    rows = np.column_stack([y, X.reshape(len(X), -1)])
    head = ",".join(["label"] + [f"pixel{i + 1}" for i in range(rows.shape[1] - 1)])
    np.savetxt(path, rows, fmt="%d", delimiter=",", header=head if header else "", comments="")
    if not header:  # savetxt writes an empty first line for an empty header
        path.write_text(path.read_text().lstrip("\n"))
    return path


def zip_bytes(members):
    """A zip archive written by hand, so that tests can forge what zipfile never writes: members is a
    list of dicts with name and data (the stored bytes), and optionally method (0 stored, 8
    deflate, or any number), flags (bit 0: encrypted), crc, and the sizes the directory claims
    (size: uncompressed, compressed). Every size is written in a zip64 extra field."""
    local, central = bytearray(), bytearray()
    for m in members:
        name, data = m["name"].encode(), m["data"]
        size, compressed = m.get("size", len(data)), m.get("compressed", len(data))
        fields = struct.pack("<HHHHHI", 45, m.get("flags", 0), m.get("method", 0), 0, 0x21, m.get("crc", 0))
        extra = struct.pack("<HHQQ", 1, 16, size, compressed)
        offset = len(local)
        local += b"PK\x03\x04" + fields + struct.pack("<IIHH", 0xFFFFFFFF, 0xFFFFFFFF, len(name), len(extra))
        local += name + extra + data
        central += b"PK\x01\x02" + struct.pack("<H", 45) + fields + struct.pack(
            "<IIHHHHHII", 0xFFFFFFFF, 0xFFFFFFFF, len(name), len(extra), 0, 0, 0, 0, offset) + name + extra
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(local), 0)
    return bytes(local + central + end)


# -------------------------------------------------------------------------------------------- model files

def model_file(path, model=None, sizes=(784, 16, 10), names=None):
    """A model file at path (returned) holding model, or an untrained one of sizes, with Adam's state and
    class names (Fashion-MNIST's for 10 classes, else '0', '1', ...)."""
    from fastnet import checkpoint
    from fastnet.model import MLP
    from fastnet.optim import Adam
    from fastnet.recipe import Recipe
    from fastnet.training import TrainState

    model = MLP.he_init(sizes, np.random.default_rng(0)) if model is None else model
    classes = model.sizes[-1]
    names = names or (FASHION_NAMES if classes == 10 else [str(i) for i in range(classes)])
    state = TrainState(model, Adam(model.params.size, model.dtype), np.random.default_rng(0))
    checkpoint.save(str(path), state, Recipe(layers=model.sizes), {"dataset": "fashion-mnist"}, names)
    return path


def mid_epoch_state(dtype=np.float32, optimizer="adam", stop_after=3, seed=0, sizes=(16, 8, 3)):
    """A TrainState stopped `stop_after` steps into its second epoch (5 steps each, cosine schedule with
    warm-up) on random data, so that every field a model file stores is set."""
    import kernels.reference as ref
    from fastnet import training
    from fastnet.model import MLP
    from fastnet.optim import OPTIMIZERS

    rng = np.random.default_rng(seed)
    model = MLP.he_init(sizes, rng, dtype, input_scale=1 / 255, input_shift=-0.25)
    state = training.TrainState(model, OPTIMIZERS[optimizer](model.params.size, model.dtype), rng)
    data = np.random.default_rng(99)
    images = data.integers(0, 256, (40, sizes[0]), dtype=np.uint8)
    labels = data.integers(0, sizes[-1], 40).astype(np.uint8)
    steps = iter(range(1, 10**9))
    done = training.fit(state, ref, (images, labels), (images[:10], labels[:10]), 3, 8, 1e-2,
                        "cosine", 2, stop=lambda: next(steps) == 5 + stop_after, max_chunk=1)
    assert not done and state.epoch == 1 and state.batch == stop_after
    return state


def model_arrays(path):
    """Every member of a model file, by name."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def rewrite_model(src, dst, drop=(), **changes):
    """A copy of model file src at dst (returned) with members replaced or added (arrays; for the JSON
    members progress, recipe and trained a dict updates their JSON) and the members in drop left out."""
    arrays = model_arrays(src)
    for key, value in changes.items():
        if isinstance(value, dict) and key in ("progress", "recipe", "trained"):
            value = np.array(json.dumps({**json.loads(str(arrays[key])), **value}))
        arrays[key] = value
    for key in drop:
        del arrays[key]
    with open(dst, "wb") as f:  # np.savez(path) would append .npz to some names; a file object keeps dst
        np.savez(f, **arrays)
    return dst


def progress_of(path):
    """The progress JSON of a model file, as a dict."""
    return json.loads(str(np.load(path)["progress"]))


def leftovers(folder):
    """The temporary files (.tmp-*) left in folder."""
    return [p.name for p in Path(folder).iterdir() if p.name.startswith(".tmp-")]


# ----------------------------------------------------------------------------------------- the command line

def run_cli(*args, env=None, timeout=600, **kw):
    """`python -m ARGS` from the repository root; returns the CompletedProcess (text, output captured
    unless stdout or stderr is given). timeout only guards against a hang."""
    kw.setdefault("capture_output", "stdout" not in kw and "stderr" not in kw)
    return subprocess.run([sys.executable, "-m", *map(str, args)], cwd=ROOT, env=env, text=True,
                          timeout=timeout, **kw)


def train_tiny(env, data_dir, *args, **kw):
    """`python -m fastnet.train` with TINY_ARGS on data_dir, then args."""
    return run_cli("fastnet.train", *TINY_ARGS, "--data-dir", data_dir, *args, env=env, **kw)


def assert_one_line_error(proc, code=2, *words):
    """The command exited with code and wrote one line on stderr, no traceback, holding every word.
    Returns the line."""
    assert proc.returncode == code, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


# ------------------------------------------------------------------------------------------------ hang guards

HANG_SECONDS = 300  # far beyond what any guarded call takes, on the busiest machine: only a hang reaches it


def hang_guard(func, *args, seconds=HANG_SECONDS, **kw):
    """func(*args, **kw) run in a thread: its result, or the exception it raised. Fails the test only when
    func has not returned after `seconds`, so that a hang (a stall never detected) cannot stop the suite;
    it measures nothing else. (Tests assert no relation between timings: those are benchmarks.)"""
    outcome = {}

    def call():
        try:
            outcome["result"] = func(*args, **kw)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        pytest.fail(f"hang guard: {getattr(func, '__name__', func)} still running after {seconds} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
