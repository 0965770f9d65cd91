"""Helpers of the hostile tests: tiny IDX data sets, `python -m` in a subprocess, model-file rewrites."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_idx

ROOT = Path(__file__).resolve().parents[2]
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
    """A copy of model file src at dst with members replaced (arrays) or, for progress, recipe
    and trained, their JSON updated with the dict given."""
    arrays = dict(np.load(src))
    for key, value in changes.items():
        if isinstance(value, dict) and key in ("progress", "recipe", "trained"):
            doc = json.loads(str(arrays[key]))
            doc.update(value)
            value = np.array(json.dumps(doc))
        arrays[key] = value
    np.savez(dst, **arrays)
    return dst


def progress_of(path):
    return json.loads(str(np.load(path)["progress"]))


