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
