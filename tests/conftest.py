"""Shared test helpers: write IDX files, and point the user cache at a temporary directory."""

import gzip
import struct

import numpy as np
import pytest


def write_idx(path, array, gz=False):
    """Write array as a uint8 IDX file at path (gzip-compressed if gz) and return the path."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    data = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """A private, empty user cache for one test (via $FASTNET_CACHE_DIR)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("FASTNET_CACHE_DIR", str(cache))
    return cache


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
