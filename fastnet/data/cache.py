"""The decoded cache: a verified .npy copy of each decompressed IDX file, for a fast cold start.

Decompressing the train images takes ~0.4 s; loading their .npy copy and re-hashing it ~30 ms.
An entry is keyed by its source file's absolute path, size, mtime and ctime (a replaced file never
hits) and named after its payload's SHA-256, which is checked on every load (a damaged entry is only
a miss). The cache lives in $FASTNET_CACHE_DIR, else $XDG_CACHE_HOME/fastnet, else ~/.cache/fastnet;
a cache that cannot be written is skipped silently. The copies of all data sets together are kept
within MAX_BYTES: storing a new one drops the least recently used (a hit marks an entry used).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files import atomic_write
from .idx import payload_sha256, read_idx_file

MAX_BYTES = 256 << 20  # of decoded copies, all data sets together: four copies of Fashion-MNIST (55 MB each)


def cache_dir() -> Path:
    """The user cache: $FASTNET_CACHE_DIR, else $XDG_CACHE_HOME/fastnet, else ~/.cache/fastnet."""
    if os.environ.get("FASTNET_CACHE_DIR"):
        return Path(os.environ["FASTNET_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):  # the XDG spec says to ignore a relative path
        return Path(xdg) / "fastnet"
    home = os.path.expanduser("~")
    return (Path(home) / ".cache" if home != "~" else Path(tempfile.gettempdir())) / "fastnet"


def load_file(path: Path, name: str, rank):
    """The array and payload SHA-256 of one IDX file of data set name: from the cache, else read (and cache a .gz)."""
    hit = _load_cached(path, name, rank)
    if hit is not None:
        return hit
    array, digest, gz = read_idx_file(path, rank)
    if gz:
        store(path, name, array, digest)
    return array, digest


def payload_digest(path: Path, name: str, rank) -> str:
    """The payload SHA-256 of path, by the cache entry's name when there is one (no loading)."""
    digest = _entry(path, name)[1]
    return digest if digest is not None else load_file(path, name, rank)[1]


def store(path: Path, name: str, array: np.ndarray, digest: str) -> None:
    """Keep array as path's decoded copy (an atomic write); skip silently if the cache is not writable."""
    try:
        folder, prefix, stem = _names(path, name)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_write(folder / f"{stem}{digest}.npy", "wb", "decoded cache") as f:
            np.save(f, array, allow_pickle=False)
        for entry in os.listdir(folder):  # drop copies of older versions of this source file
            if entry.startswith(prefix) and not entry.startswith(stem):
                os.unlink(folder / entry)
        mark_used(folder / f"{stem}{digest}.npy")
        prune(folder / f"{stem}{digest}.npy")
    except (OSError, InputError):  # atomic_write reports a failed write as an InputError
        pass


def prune(keep: Path) -> None:
    """Drop the least recently used decoded copies (of every data set) until all of them together
    hold at most MAX_BYTES, never `keep`, the copy just written. Each source path has its own copy,
    so without this every copy of a data set ever read would stay."""
    entries = []
    for entry in cache_dir().glob("*/decoded/*.npy"):
        try:
            st = entry.stat()
        except OSError:  # removed meanwhile
            continue
        entries.append((st.st_mtime_ns, st.st_size, entry))
    total = sum(size for _, size, _ in entries)
    for _, size, entry in sorted(entries):
        if total <= MAX_BYTES:
            break
        if entry != keep:
            try:
                entry.unlink()
                total -= size
            except OSError:
                pass


def _names(path: Path, name: str):
    """(decoded dir, prefix of every entry for this source path, name of its entry less the hash).

    The key is the source's absolute path, size, mtime and ctime: a replaced file never hits.
    """
    st = os.stat(path)
    tag = hashlib.sha256(os.fsencode(os.path.realpath(path))).hexdigest()[:16]
    prefix = f"{path.name}.{tag}."
    return cache_dir() / name / "decoded", prefix, f"{prefix}{st.st_size}-{st.st_mtime_ns}-{st.st_ctime_ns}."


def _entry(path: Path, name: str):
    """The cache file holding path's decoded payload, and that payload's SHA-256; (None, None) on a miss."""
    try:
        folder, _, stem = _names(path, name)
        for entry in os.listdir(folder):
            digest = entry[len(stem):-len(".npy")]
            if entry.startswith(stem) and entry.endswith(".npy") and len(digest) == 64:
                return folder / entry, digest
    except (OSError, ValueError):
        pass
    return None, None


def _load_cached(path: Path, name: str, rank):
    """path's decoded array and payload SHA-256 from the cache, or None on a miss or a damaged entry.

    The entry is re-hashed on load (~30 ms for the train images), so a damaged one is ignored.
    """
    entry, digest = _entry(path, name)
    if entry is None:
        return None
    try:
        array = np.load(entry, allow_pickle=False)
    except Exception:  # noqa: BLE001 - a damaged cache entry of any kind is only a miss
        return None
    if array.dtype != np.uint8 or (rank is not None and array.ndim != rank) or payload_sha256(array) != digest:
        return None
    try:
        mark_used(entry)
    except OSError:  # a cache we may not write
        pass
    return array, digest


def mark_used(entry: Path) -> None:
    """Set entry's times to now, by the clock itself (a file's own times may be a few ms coarse):
    prune drops the entries used longest ago first."""
    now = time.time_ns()
    os.utime(entry, ns=(now, now))
