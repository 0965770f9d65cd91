"""Find, check and decode the IDX files of Fashion-MNIST, MNIST, or any other IDX image data.

Where the four files come from, in this order: the data_dir argument (--data-dir), the data set's
environment variable, the system copy (Debian's dataset-fashion-mnist), the user cache, and last a
download from the official mirror into the user cache. Files of a known data set are checked by the
SHA-256 of their decompressed bytes; a directory of other IDX files is just data. Decompressing the
train images takes ~0.4 s, so a decoded copy is kept as .npy in the cache for a fast cold start.
Every problem with a file is an InputError: one line naming the file and what is wrong.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import struct
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np

from .errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
READ_CHUNK = 1 << 18  # compressed bytes read at a time
OUT_CHUNK = 1 << 20  # most decompressed bytes produced at a time, so a gzip bomb stops early
MAX_PAYLOAD = 1 << 32  # 4 GiB: far above any data set this trainer can hold, far below a forged header
DEFLATE_MAX_RATIO = 1032  # deflate cannot expand n bytes to more than ~1032 n
DOWNLOAD_TIMEOUT = 30  # seconds without progress before a download gives up
MAX_DOWNLOAD = 1 << 30  # no data set file we fetch is near 1 GiB compressed
IDX_TYPES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "short", 0x0C: "int", 0x0D: "float", 0x0E: "double"}
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What fastnet knows about a published data set: its files, their hashes, class names, where to look.

    sha256 maps a file's base name (no .gz) to the SHA-256 of its decompressed bytes, IDX header
    included; gz_md5 maps a .gz name to the MD5 its publisher lists, checked on download only.
    """

    name: str
    files: dict
    sha256: dict
    class_names: list
    env_var: str
    system_dir: Path
    mirror: str
    gz_md5: dict = dataclasses.field(default_factory=dict)
    debian_package: str = ""


DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        files=SPLIT_FILES,
        sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        class_names=["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
        env_var="FASHION_MNIST_DIR",
        system_dir=Path("/usr/share/datasets/fashion-mnist"),
        mirror="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        debian_package="dataset-fashion-mnist",
    ),
    # MNIST: no trustworthy SHA-256 of the decompressed files was at hand, so its payloads are not
    # checked; a download is checked against the MD5 of the .gz files that torchvision publishes.
    # Without payload hashes, MNIST from --data-dir or MNIST_DIR is treated as plain IDX data
    # (the same class names "0".."9"; the class count comes from the labels).
    "mnist": DatasetInfo(
        name="mnist",
        files=SPLIT_FILES,
        sha256={},
        class_names=[str(i) for i in range(10)],
        env_var="MNIST_DIR",
        system_dir=Path("/usr/share/datasets/mnist"),
        mirror="https://ossci-datasets.s3.amazonaws.com/mnist/",
        gz_md5={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
}

# Whether the last load_split(name) found custom IDX data rather than the known data set; read by
# num_classes and class_names so that callers need not carry it around.
_custom: dict[str, bool] = {}


# ---------------------------------------------------------------- reading IDX files


def read_idx(path, rank=None) -> np.ndarray:
    """Read an IDX file of unsigned bytes, gzip or raw (told apart by magic bytes), as an array of its dims.

    rank, if given, is the number of dimensions the file must have. The header is checked against
    the file's real size before anything large is allocated, so a forged header fails fast.
    """
    return _read_idx(Path(path), rank)[0]


def _bad(path, problem) -> InputError:
    """The one-line error for a bad file."""
    return InputError(f"{path}: {problem}")


def _read_idx(path: Path, rank=None):
    """read_idx, also returning the SHA-256 of the decompressed bytes and whether the file was gzip."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise _bad(path, "is empty")
            gz = f.read(2) == GZIP_MAGIC
            f.seek(0)
            chunks = _gunzip(f, path) if gz else iter(lambda: f.read(OUT_CHUNK), b"")
            array, digest = _assemble(chunks, path, rank, size, gz)
            return array, digest, gz
    except OSError as exc:
        raise _bad(path, f"cannot read: {exc.strerror or exc}") from None


def _gunzip(f, path):
    """Yield the decompressed bytes of gzip file f, at most OUT_CHUNK at a time; any gzip fault is an InputError."""
    d = zlib.decompressobj(31)
    data, at_end = b"", False
    try:
        while True:
            if not data:
                data = f.read(READ_CHUNK)
                at_end = not data
            out = d.decompress(data, OUT_CHUNK)
            data = d.unconsumed_tail
            if out:
                yield out
            if d.eof:  # a member ended: only another gzip member may follow
                data = d.unused_data or f.read(READ_CHUNK)
                if len(data) == 1:
                    data += f.read(1)
                if not data:
                    return
                if data[:2] != GZIP_MAGIC:
                    raise _bad(path, "has unexpected bytes after the end of its gzip data")
                d = zlib.decompressobj(31)
            elif at_end and not out:
                raise _bad(path, "is truncated: its gzip data ends early")
    except zlib.error as exc:
        raise _bad(path, f"is corrupt gzip data ({exc})") from None


def _fill(chunks, data: bytearray, n: int) -> bool:
    """Append chunks to data until it holds at least n bytes; False if they run out first."""
    while len(data) < n:
        chunk = next(chunks, None)
        if chunk is None:
            return False
        data += chunk
    return True


def _header(chunks, data, path, rank, gz):
    """Read and check the IDX header from chunks into data; return (header length, dims)."""
    if not _fill(chunks, data, 4):
        raise _bad(path, f"is too short for an IDX header ({len(data)} bytes)")
    if data[0] or data[1]:
        hint = " (and not gzip data despite its .gz name)" if path.name.endswith(".gz") and not gz else ""
        raise _bad(path, f"is not an IDX file: magic bytes {data[0]:02x} {data[1]:02x}, expected 00 00{hint}")
    if data[2] != 0x08:
        kind = IDX_TYPES.get(data[2], "unknown")
        raise _bad(path, f"has IDX element type 0x{data[2]:02x} ({kind}); only 0x08 (unsigned byte) is supported")
    ndim = data[3]
    if ndim == 0 or (rank is not None and ndim != rank):
        raise _bad(path, f"has {ndim} dimensions, expected {rank or 'at least 1'}")
    hlen = 4 + 4 * ndim
    if not _fill(chunks, data, hlen):
        raise _bad(path, f"is truncated inside its IDX header ({len(data)} of {hlen} bytes)")
    return hlen, struct.unpack(f">{ndim}I", bytes(data[4:hlen]))


def _assemble(chunks, path, rank, size, gz):
    """Collect the IDX bytes, checking the header first and the length as bytes arrive; return (array, sha256)."""
    chunks = iter(chunks)
    data = bytearray()
    hlen, dims = _header(chunks, data, path, rank, gz)
    nbytes = math.prod(dims)
    total = hlen + nbytes
    claim = f"its header claims {' x '.join(map(str, dims))} = {nbytes} bytes"
    if nbytes > MAX_PAYLOAD:
        raise _bad(path, f"{claim}, over the {MAX_PAYLOAD >> 30} GiB limit")
    if not gz and size != total:
        if size < total:
            raise _bad(path, f"is truncated: {claim} but only {size - hlen} follow")
        raise _bad(path, f"has {size - total} bytes of trailing data: {claim} but {size - hlen} follow")
    if gz and total > DEFLATE_MAX_RATIO * size + 1024:
        raise _bad(path, f"is truncated or forged: {claim}, more than its {size} bytes of gzip data can hold")
    while len(data) <= total:
        chunk = next(chunks, None)
        if chunk is None:
            break
        data += chunk
    if len(data) > total:
        raise _bad(path, f"has trailing data: {claim} but more follow")
    if len(data) < total:
        raise _bad(path, f"is truncated: {claim} but only {len(data) - hlen} follow")
    digest = hashlib.sha256(data).hexdigest()
    return np.frombuffer(data, np.uint8, nbytes, hlen).reshape(dims), digest


# ---------------------------------------------------------------- the decoded cache


def cache_dir() -> Path:
    """The user cache: $FASTNET_CACHE_DIR, else $XDG_CACHE_HOME/fastnet, else ~/.cache/fastnet."""
    if os.environ.get("FASTNET_CACHE_DIR"):
        return Path(os.environ["FASTNET_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):  # the XDG spec says to ignore a relative path
        return Path(xdg) / "fastnet"
    home = os.path.expanduser("~")
    return (Path(home) / ".cache" if home != "~" else Path(tempfile.gettempdir())) / "fastnet"


def _cache_names(path: Path, name: str):
    """(decoded dir, prefix of every entry for this source path, name of its entry less the hash).

    The key is the source's absolute path, size, mtime and ctime: a replaced file never hits.
    """
    st = os.stat(path)
    tag = hashlib.sha256(os.fsencode(os.path.realpath(path))).hexdigest()[:16]
    prefix = f"{path.name}.{tag}."
    return cache_dir() / name / "decoded", prefix, f"{prefix}{st.st_size}-{st.st_mtime_ns}-{st.st_ctime_ns}."


def _payload_sha256(array: np.ndarray) -> str:
    """The SHA-256 of the IDX file (header and bytes) that array was decoded from."""
    digest = hashlib.sha256(bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape))
    digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def _cache_entry(path: Path, name: str):
    """The cache file holding path's decoded payload, and that payload's SHA-256; (None, None) on a miss."""
    try:
        folder, _, stem = _cache_names(path, name)
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
    entry, digest = _cache_entry(path, name)
    if entry is None:
        return None
    try:
        array = np.load(entry, allow_pickle=False)
    except Exception:  # noqa: BLE001 - a damaged cache entry of any kind is only a miss
        return None
    if array.dtype != np.uint8 or (rank is not None and array.ndim != rank) or _payload_sha256(array) != digest:
        return None
    return array, digest


def _store_cached(path: Path, name: str, array: np.ndarray, digest: str) -> None:
    """Keep array as path's decoded copy (temp name, then atomic rename); skip silently if the cache is not writable."""
    try:
        folder, prefix, stem = _cache_names(path, name)
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".part-", suffix=".npy")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, array, allow_pickle=False)
            os.replace(tmp, folder / f"{stem}{digest}.npy")
        except BaseException:
            os.unlink(tmp)
            raise
        for entry in os.listdir(folder):  # drop copies of older versions of this source file
            if entry.startswith(prefix) and not entry.startswith(stem):
                os.unlink(folder / entry)
    except OSError:
        pass


def _load_file(path: Path, name: str, rank):
    """The array and payload SHA-256 of one IDX file: from the decoded cache, else read (and cache a .gz)."""
    hit = _load_cached(path, name, rank)
    if hit is not None:
        return hit
    array, digest, gz = _read_idx(path, rank)
    if gz:
        _store_cached(path, name, array, digest)
    return array, digest


def _sha_of(path: Path, name: str, rank) -> str:
    """The payload SHA-256 of path, by the cache entry's name when there is one (no loading)."""
    digest = _cache_entry(path, name)[1]
    return digest if digest is not None else _load_file(path, name, rank)[1]


# ---------------------------------------------------------------- finding and downloading


def _info(name: str) -> DatasetInfo:
    """The DatasetInfo of a data set name, or an InputError listing the known names."""
    if name not in DATASETS:
        raise InputError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def _all_files(info: DatasetInfo) -> list[str]:
    """The base names of the four files, images before labels, train before test."""
    return [base for pair in info.files.values() for base in pair]


def _rank(info: DatasetInfo, base: str) -> int:
    """3 for an images file, 1 for a labels file."""
    return 3 if any(base == pair[0] for pair in info.files.values()) else 1


def _file_in(directory: Path, base: str):
    """The file holding base in directory, raw preferred over .gz, or None."""
    for candidate in (directory / base, directory / f"{base}.gz"):
        if os.path.isfile(candidate):
            return candidate
    return None


def _missing(info: DatasetInfo, directory: Path) -> list[str]:
    """The base names of the four files that directory lacks."""
    return [base for base in _all_files(info) if _file_in(directory, base) is None]


def _how_to_get(info: DatasetInfo) -> str:
    """One sentence telling a person how to get the data without a download."""
    apt = f"'apt-get install {info.debian_package}' (Debian), or " if info.debian_package else ""
    return f"get it with {apt}pass --data-dir DIR or set {info.env_var}=DIR for a directory holding the four IDX files"


def _explicit(info: DatasetInfo, directory: Path, how: str) -> Path:
    """A directory the user named: it must hold the four files, else an InputError (no falling through)."""
    if not os.path.isdir(directory):
        raise InputError(f"{how} {directory}: no such directory")
    missing = _missing(info, directory)
    if missing:
        raise InputError(f"{how} {directory} lacks {', '.join(missing)} (raw or .gz)")
    return directory


def _find(info: DatasetInfo, data_dir=None, download=True):
    """(directory, how it was found, whether its files must be the known ones), in the search order."""
    if data_dir is not None:
        return _explicit(info, Path(data_dir).expanduser(), "--data-dir"), "--data-dir", False
    env = os.environ.get(info.env_var)
    if env:
        return _explicit(info, Path(env).expanduser(), f"${info.env_var}"), f"${info.env_var}", False
    cache = cache_dir() / info.name
    for directory, how in ((info.system_dir, "system copy"), (cache, "user cache")):
        if not _missing(info, directory):
            return directory, how, True
    if not download:
        raise InputError(f"{info.name} not found in {info.system_dir} or {cache}; {_how_to_get(info)}")
    mirror = os.environ.get("FASTNET_MIRROR") or info.mirror
    _download(info, mirror, cache)
    return cache, f"downloaded from {mirror}", True


def _download(info: DatasetInfo, mirror: str, dest: Path) -> None:
    """Fetch the files that dest lacks from mirror, each checked before it takes its final name."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {dest}: {exc.strerror or exc}; {_how_to_get(info)}") from None
    for base in _missing(info, dest):
        _download_file(info, f"{mirror.rstrip('/')}/{base}.gz", dest / f"{base}.gz")


def _download_file(info: DatasetInfo, url: str, final: Path) -> None:
    """Download url to a temp name beside final, check its MD5 and payload hash, then rename it to final."""
    base = final.name[: -len(".gz")]
    try:
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".part")
    except OSError as exc:
        raise InputError(f"cannot write into {final.parent}: {exc.strerror or exc}; {_how_to_get(info)}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            md5 = _fetch(info, url, out)
        expected_md5 = info.gz_md5.get(final.name)
        if expected_md5 and md5 != expected_md5:
            raise InputError(f"downloaded {url} is corrupt or modified: MD5 {md5}, expected {expected_md5}")
        try:
            array, digest, _ = _read_idx(Path(tmp), _rank(info, base))
        except InputError as exc:
            raise InputError(f"downloaded {url} is not a valid IDX file ({exc})") from None
        expected = info.sha256.get(base)
        if expected and digest != expected:
            raise InputError(f"downloaded {url} is corrupt or modified: payload SHA-256 {digest}, expected {expected}")
        os.replace(tmp, final)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):  # the disk, not the network: _fetch turns network errors into InputError
            raise InputError(f"cannot save {final}: {exc.strerror or exc}") from None
        raise
    _store_cached(final, info.name, array, digest)


def _fetch(info: DatasetInfo, url: str, out) -> str:
    """Copy url into the open file out, with progress on stderr; return the MD5 of the bytes."""
    import http.client  # imported here: they cost ~50 ms, and most runs never download
    import urllib.request

    md5 = hashlib.md5(usedforsecurity=False)
    print(f"downloading {url}", file=sys.stderr)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:
            length, done = response.headers.get("Content-Length", ""), 0
            length = int(length) if length.isdigit() else None
            while chunk := response.read(READ_CHUNK):
                done += len(chunk)
                if done > MAX_DOWNLOAD:
                    raise InputError(f"download of {url} exceeds {MAX_DOWNLOAD >> 20} MiB; giving up")
                out.write(chunk)
                md5.update(chunk)
                _progress(done, length)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        _progress(None, None)
        raise InputError(f"cannot download {url} ({_reason(exc)}); {_how_to_get(info)}") from None
    _progress(None, None)
    return md5.hexdigest()


def _reason(exc: Exception) -> str:
    """A short one-line reason for a failed download."""
    import urllib.error

    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    reason = getattr(exc, "reason", None) or exc
    return " ".join(str(reason).split()) or type(exc).__name__


def _progress(done, length) -> None:
    """Show download progress on stderr when it is a terminal; (None, None) ends the line."""
    if not sys.stderr.isatty():
        return
    if done is None:
        sys.stderr.write("\n")
    else:
        sys.stderr.write(f"\r  {done >> 10} KiB" + (f" of {length >> 10} KiB" if length else ""))
    sys.stderr.flush()


def locate(name="fashion-mnist", data_dir=None, download=True) -> Path:
    """The directory holding the four files of data set name, searched for (and downloaded) as described above."""
    return _find(_info(name), data_dir, download)[0]


def describe_source(name="fashion-mnist", data_dir=None, download=True) -> str:
    """Where the data is and how it was found, e.g. 'data: /usr/share/datasets/fashion-mnist (system copy)'."""
    directory, how, _ = _find(_info(name), data_dir, download)
    kind = ", custom IDX data" if _custom.get(name) else ""
    return f"data: {directory} ({how}{kind})"


# ---------------------------------------------------------------- loading a split


def _verify(info: DatasetInfo, path: Path, digest: str) -> None:
    """InputError unless path's payload SHA-256 is the published one (when one is known)."""
    expected = info.sha256.get(path.name.removesuffix(".gz"))
    if expected and digest != expected:
        raise _bad(path, f"corrupt or modified: its payload SHA-256 is {digest[:16]}..., "
                         f"the published {info.name} file's is {expected[:16]}...")


def _is_known(info: DatasetInfo, directory: Path, loaded: dict, trusted: bool) -> bool:
    """Whether directory holds the known data set, raising InputError on a file that breaks the rules.

    Trusted places (system copy, cache, download) must match. Elsewhere, if any of the four files
    matches its hash the set is the known one and all four must match; if none does, it is just data.
    """
    if not info.sha256:  # no payload hashes known (MNIST): trust the named places, the rest is just data
        return trusted
    if trusted:
        for path, digest in loaded.items():
            _verify(info, path, digest)
        return True
    paths = [_file_in(directory, base) for base in _all_files(info)]
    digests = {p: loaded.get(p) or _sha_of(p, info.name, _rank(info, p.name.removesuffix(".gz"))) for p in paths}
    if not any(info.sha256.get(p.name.removesuffix(".gz")) == d for p, d in digests.items()):
        return False
    for path, digest in digests.items():
        _verify(info, path, digest)
    return True


def _check_labels(labels: np.ndarray, classes: int, path: Path) -> None:
    """InputError if a label is outside 0..classes-1."""
    top = int(labels.max())
    if top >= classes:
        raise _bad(path, f"label {top} outside the class range 0..{classes - 1}")


def _custom_classes(info: DatasetInfo, directory: Path, split: str, images: np.ndarray):
    """Custom data: the class count (max train label + 1); test images must be the size of the train images."""
    if split == "train":
        return None
    train_images, train_labels = (_file_in(directory, base) for base in info.files["train"])
    labels = _load_file(train_labels, info.name, 1)[0]
    if len(labels) == 0:
        raise _bad(train_labels, "holds no labels")
    shape = _load_file(train_images, info.name, 3)[0].shape[1:]
    if images.shape[1:] != shape:
        raise InputError(f"images of {images.shape[1]}x{images.shape[2]} pixels in the test set, "
                         f"{shape[0]}x{shape[1]} in {train_images}")
    return int(labels.max()) + 1


def load_split(name="fashion-mnist", split="train", data_dir=None, download=True):
    """The images, uint8 (N, rows*cols) C-contiguous, and labels, uint8 (N,), of one split of a data set.

    Finds the files (see locate), checks them (IDX format, counts, known hashes, label range) and
    decodes them through the decoded cache. Every problem is an InputError naming the file.
    """
    info = _info(name)
    if split not in info.files:
        raise InputError(f"unknown split {split!r}; expected one of {', '.join(info.files)}")
    directory, _, trusted = _find(info, data_dir, download)
    image_path, label_path = (_file_in(directory, base) for base in info.files[split])
    images, image_sha = _load_file(image_path, name, 3)
    labels, label_sha = _load_file(label_path, name, 1)
    known = _is_known(info, directory, {image_path: image_sha, label_path: label_sha}, trusted)
    _custom[name] = not known
    if len(images) != len(labels):
        raise InputError(f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels")
    if len(labels) == 0 or images[0].size == 0:
        raise _bad(image_path, "holds no images" if len(labels) == 0 else "holds images of 0 pixels")
    classes = len(info.class_names) if known else _custom_classes(info, directory, split, images)
    if classes is not None:
        _check_labels(labels, classes, label_path)
    return np.ascontiguousarray(images.reshape(len(images), -1)), labels


def is_custom(name: str) -> bool:
    """Whether the last load_split(name) found plain IDX data rather than the known data set name."""
    return name not in DATASETS or _custom.get(name, False)


def num_classes(name: str, train_labels: np.ndarray, custom=None) -> int:
    """The class count: the known data set's, or for custom data (see is_custom) the max train label + 1."""
    if custom is None:
        custom = is_custom(name)
    if not custom:
        return len(DATASETS[name].class_names)
    return int(train_labels.max()) + 1 if len(train_labels) else 0


def class_names(name: str, num_classes: int, custom=None) -> list[str]:
    """The known data set's class names; str(i) for custom data or a class count they do not fit."""
    if custom is None:
        custom = is_custom(name)
    names = [] if custom else list(DATASETS[name].class_names)
    return names if len(names) == num_classes else [str(i) for i in range(num_classes)]
