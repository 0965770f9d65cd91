"""The files besides IDX that hold a data set: a .npz archive, or a directory of two CSV files.

- a .npz file holds X_train, y_train, X_test, y_test: images (N, D) or (N, rows, cols) of any
  real dtype, labels non-negative integers (classes 0..K-1);
- a directory holds one *train*.csv and one *test*.csv file: a header line, then one image a
  line, its label first, then its pixels (the layout of the Fashion-MNIST and MNIST CSV files that
  circulate, e.g. fashion-mnist_train.csv). Integer pixels in 0..255 become uint8 pixels.
Both are read as untrusted: every problem with such a file is an InputError, one line naming the
file and what is wrong.
"""

import glob
import math
import os
import warnings
import zipfile
import zlib

import numpy as np

from .. import memory
from ..errors import InputError
from ..files import npy_header
from .arrays import MAX_CLASSES, as_rows, small_labels
from .idx import DEFLATE_MAX_RATIO

NPZ_KEYS = ("X_train", "y_train", "X_test", "y_test")


def is_zip(path):
    """True when the file at path starts as a zip archive (a .npz) does."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def csv_file(directory, split):
    """The one *train*.csv (or *test*.csv) file in directory."""
    found = sorted(glob.glob(os.path.join(glob.escape(directory), f"*{split}*.csv")))
    other = "test" if split == "train" else "train"
    found = [f for f in found if other not in os.path.basename(f)] or found  # a name with both words: only if alone
    if not found:
        raise InputError(f"--data-dir {directory} holds no *{split}*.csv file (it needs one *train*.csv and "
                         "one *test*.csv)")
    if len(found) > 1:
        raise InputError(f"--data-dir {directory} holds {len(found)} *{split}*.csv files "
                         f"({', '.join(os.path.basename(f) for f in found)}); keep one")
    return found[0]


def read_npz(path, split):
    """X_<split> as rows and y_<split> as labels from the .npz file at path, checked, each member
    read within bounds (_read_member)."""
    x_key, y_key = f"X_{split}", f"y_{split}"
    _regular_file(path)
    if not is_zip(path):
        raise InputError(f"{path} is not a .npz (zip) file")
    try:
        with zipfile.ZipFile(path) as zf:
            missing = [k for k in NPZ_KEYS if f"{k}.npy" not in zf.NameToInfo]
            if missing:
                raise InputError(f"{path} lacks {', '.join(missing)} (a .npz for --data-dir holds "
                                 f"{', '.join(NPZ_KEYS)})")
            size = os.path.getsize(path)
            images, labels = (_read_member(zf, zf.getinfo(f"{key}.npy"), path, key, size) for key in (x_key, y_key))
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, ValueError, NotImplementedError,
            RuntimeError, MemoryError) as exc:
        raise InputError(f"{path} is not a readable .npz file ({type(exc).__name__})") from None
    if images.ndim == 3:
        images = images.reshape(len(images), -1)
    return _checked(path, x_key, images, y_key, labels)


# Compression methods a member may use, and the most that n stored bytes can inflate to (None: no
# useful bound; the reading is bounded by the header's claim then). numpy writes stored or deflate.
METHODS = {zipfile.ZIP_STORED: ("stored", 1), zipfile.ZIP_DEFLATED: ("deflate", DEFLATE_MAX_RATIO),
           zipfile.ZIP_BZIP2: ("bzip2", None), zipfile.ZIP_LZMA: ("lzma", None)}


def _read_member(zf, info, path, key, file_size):
    """Member key.npy of an untrusted .npz as an array, within bounds: no encryption and a known
    compression method; its compressed bytes inside the file; the sizes that its zip entry and its
    .npy header claim checked against each other, against what its compressed bytes can inflate to,
    and against the memory available, all before its data are read. The data are then read in
    bounded chunks into an array of the header's size, so a forged size costs no more than the
    bytes that really arrive (zipfile stops at the entry's size; a short member is an error)."""
    if info.flag_bits & 0x1:
        raise InputError(f"{path}: '{key}' is encrypted; fastnet reads no passwords")
    if info.compress_type not in METHODS:
        raise InputError(f"{path}: '{key}' uses zip compression method {info.compress_type}, which fastnet does "
                         "not read (numpy writes stored or deflate members)")
    method, ratio = METHODS[info.compress_type]
    if info.header_offset + info.compress_size > file_size:
        raise InputError(f"{path}: '{key}' claims {info.compress_size:,} compressed bytes, more than the file holds")
    if ratio is not None and info.file_size > ratio * info.compress_size + (1 << 10):
        raise InputError(f"{path}: '{key}' claims {info.file_size:,} bytes, more than its {info.compress_size:,} "
                         f"bytes of {method} data can hold; forged or damaged")
    shape, dtype = npy_header(zf, info, path, key)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > info.file_size:
        raise InputError(f"{path}: '{key}' claims a shape {shape} larger than its data")
    have = memory.available()
    if have is not None and nbytes > have:
        raise InputError(f"{path}: '{key}' holds {memory.describe(nbytes)}, more than the {memory.describe(have)} "
                         "of memory available; not read")
    try:
        with zf.open(info) as f:
            return np.lib.format.read_array(f, allow_pickle=False)  # in chunks of 256 KiB into its array
    except ValueError as exc:
        raise InputError(f"{path}: '{key}' is not a valid NumPy array ({str(exc).splitlines()[0]})") from None


def _regular_file(path):
    """InputError unless path is a regular file (a FIFO or a device would block or never end)."""
    if not os.path.isfile(path):
        raise InputError(f"{path} is not a regular file")


UTF16_MARKS = (b"\xff\xfe", b"\xfe\xff")  # byte-order marks of UTF-16 (and UTF-32) text


def read_csv(path):
    """(images, labels) of a CSV file: an optional header line, then label, pixels... per line."""
    _regular_file(path)
    try:  # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") is not part of the first cell
        with open(path, "rb") as f:
            if f.read(4).startswith(UTF16_MARKS):  # every other byte a NUL: not lines of numbers as UTF-8
                raise InputError(f"{path} is UTF-16 text; save it as UTF-8 (fastnet reads UTF-8 or ASCII CSV)")
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            first = f.readline()
            header = any(not _is_number(cell) for cell in first.strip().split(","))
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
            table = np.loadtxt(path, delimiter=",", skiprows=int(header), dtype=np.float32, ndmin=2,
                               encoding="utf-8-sig")
    except ValueError as exc:
        raise InputError(f"{path}: {_csv_problem(path, header) or str(exc).splitlines()[0]}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    if table.shape[0] == 0:
        raise InputError(f"{path} holds no rows of data")
    if table.shape[1] < 2:
        raise InputError(f"{path} has {table.shape[1]} column; expected the label, then the pixels")
    images, labels = table[:, 1:], table[:, 0]
    if np.all((images >= 0) & (images <= 255) & (images == np.round(images))):
        images = images.astype(np.uint8)
    return _checked(path, "the pixel columns", np.ascontiguousarray(images), "the label column", labels)


def _csv_problem(path, header):
    """The first line of a CSV file that np.loadtxt refused, and why, counting lines from 1 as an
    editor does (numpy's own messages count rows differently); None if no line is found wrong."""
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        width = None
        for number, line in enumerate(f, 1):
            if number == 1 and header or not line.strip():
                continue
            cells = line.rstrip("\r\n").split(",")
            width = width or len(cells)
            if len(cells) != width:
                return f"line {number} has {len(cells)} columns, the first data line {width}"
            bad = next((c for c in cells if not _is_number(c)), None)
            if bad is not None:
                return f"line {number} holds {bad.strip()[:20]!r}, not a number"
    return None


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _checked(path, x_name, images, y_name, labels):
    """InputError unless images are finite real rows and labels one non-negative integer per row."""
    try:
        images = as_rows(images, f"{path}: {x_name}")
    except (TypeError, ValueError) as exc:
        raise InputError(str(exc)) from None
    if labels.ndim != 1 or len(labels) != len(images):
        raise InputError(f"{path}: {y_name} has shape {labels.shape}; expected one label for each of the "
                         f"{len(images)} images")
    if labels.dtype.kind == "f" and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
        if len(labels) and labels.max() >= MAX_CLASSES:  # before the cast, which cannot hold 1e20
            raise InputError(f"{path}: {y_name} holds label {labels.max():g}; fastnet takes classes "
                             f"0..{MAX_CLASSES - 1}")
        labels = np.maximum(labels, -1).astype(np.int64)  # any negative label is reported below
    if labels.dtype.kind not in "iu" or (len(labels) and labels.min() < 0):
        raise InputError(f"{path}: {y_name} must be non-negative integers (classes 0..K-1)")
    if len(labels) and labels.max() >= MAX_CLASSES:
        raise InputError(f"{path}: {y_name} holds label {labels.max()}; fastnet takes classes 0..{MAX_CLASSES - 1}")
    return images, small_labels(labels)
