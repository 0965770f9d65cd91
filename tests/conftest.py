"""Fixtures shared by the tests (helpers to import are in tests/helpers.py)."""

import numpy as np
import pytest

from tests.helpers import write_idx


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """A private, empty user cache for one test (via $FASTNET_CACHE_DIR)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("FASTNET_CACHE_DIR", str(cache))
    return cache

@pytest.fixture
def data_dirs(tmp_path):
    """One tiny data set (4 x 4-pixel images in 3 classes: 30 training and 12 test images) in each kind
    of --data-dir: "idx" (a folder of the four IDX files), "npz", "float-npz" (float32 pixels in
    0..1) and "csv" (a folder of train.csv and test.csv, a header line first); {kind: path as text}."""
    rng = np.random.default_rng(0)
    splits = {split: (rng.integers(0, 256, (n, 4, 4), dtype=np.uint8), (np.arange(n) % 3).astype(np.uint8))
              for split, n in (("train", 30), ("test", 12))}
    idx, csv = tmp_path / "idx", tmp_path / "csv"
    idx.mkdir()
    csv.mkdir()
    for split, prefix in (("train", "train"), ("test", "t10k")):
        X, y = splits[split]
        write_idx(idx / f"{prefix}-images-idx3-ubyte", X)
        write_idx(idx / f"{prefix}-labels-idx1-ubyte", y)
        rows = np.column_stack([y, X.reshape(len(X), -1)])
        np.savetxt(csv / f"{split}.csv", rows, fmt="%d", delimiter=",", comments="",
                   header=",".join(["label"] + [f"pixel{i + 1}" for i in range(16)]))
    arrays = {f"{x}_{split}": splits[split][i] for split in splits for i, x in enumerate("Xy")}
    np.savez(tmp_path / "data.npz", **arrays)
    np.savez(tmp_path / "float.npz", **{k: (v / 255).astype(np.float32) if k[0] == "X" else v
                                         for k, v in arrays.items()})
    return {"idx": str(idx), "npz": str(tmp_path / "data.npz"), "float-npz": str(tmp_path / "float.npz"),
            "csv": str(csv)}
