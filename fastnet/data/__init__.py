"""The data sets fastnet reads: IDX files (Fashion-MNIST, MNIST, or any other IDX image data), a .npz
archive, or a directory of CSV files; and the arrays they become.

`load(name, split, data_dir)` returns a `Split`: the images and labels of one split together with its
class names, its class count and where it came from, so nothing about the data lives anywhere else.
Every command that reads a data set (train, evaluate, gradcheck, show) and fastnet.datasets call it.

The package, one concern a module:
  idx.py       reading and validating IDX files (raw or gzip), bounded decompression
  cache.py     the decoded, verified .npy cache (~/.cache/fastnet, $FASTNET_CACHE_DIR, $XDG_CACHE_HOME)
  sources.py   the known data sets (hashes, mirrors, class names), the search order, verification
  download.py  the verified download into the user cache
  formats.py   the other files that hold a data set: a .npz archive, a directory of two CSV files
  arrays.py    the rows fastnet trains on (dtypes, layout, finiteness) and their labels

What `data_dir` (--data-dir) names, see `kind`: a directory of the four IDX files; a .npz file; or a
directory of one *train*.csv and one *test*.csv. Where the four IDX files come from, in this order:
data_dir, the data set's environment variable, the system copy (Debian's dataset-fashion-mnist), the
user cache, and last a download from the official mirror into the user cache. Every problem with a
file is an InputError: one line naming the file and what is wrong.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from . import formats, sources
from .cache import cache_dir, load_file
from .idx import bad_file, read_header, read_idx
from .sources import DATASETS, SPLIT_FILES, DatasetInfo

__all__ = ["DATASETS", "DATA_DIR_HELP", "SPLIT_FILES", "DatasetInfo", "Split", "cache_dir", "kind", "load", "read_idx"]

DATA_DIR_HELP = ("directory holding the four IDX files; or a .npz file, or a directory of *train*.csv and "
                 "*test*.csv (see fastnet.data)")


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: arrays have no truth value, so == would raise
class Split:
    """One split of a data set, carrying all that is known about it.

    images       (N, D), C-contiguous: one flattened image a row; uint8 from IDX files, uint8, float32
                 or float64 from a .npz or CSV (fastnet.data.arrays)
    labels       (N,), each in 0..num_classes-1: uint8, or intp above 256 classes
    class_names  num_classes names; label c is class_names[c]: the known data set's names, or
                 "0", "1", ... for custom data
    num_classes  the known data set's class count; for custom IDX data the largest train label + 1,
                 for a .npz or CSV split its own largest label + 1
    dataset      the data set name asked for, e.g. "fashion-mnist"
    split        "train" or "test"
    source       the directory (or .npz file) the data were read from
    found_by     how that directory was found: "--data-dir", "$FASHION_MNIST_DIR", "system copy",
                 "user cache" or "downloaded from URL"
    custom       True when the files are other data (plain IDX, .npz, CSV) than the known data set
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple
    num_classes: int
    dataset: str
    split: str
    source: Path
    found_by: str
    custom: bool

    def __iter__(self):
        """A split unpacks as its arrays: images, labels = load(...)."""
        return iter((self.images, self.labels))


def load(name="fashion-mnist", split="train", data_dir=None, download=True) -> Split:
    """One split of a data set: its images, labels, class names and class count, and where it came from.

    IDX files are found in the search order, checked (IDX format, counts, known hashes, label range)
    and decoded through the decoded cache; a .npz file or a CSV directory is read and checked as
    untrusted (fastnet.data.formats): custom data whose classes are numbered by its labels.

    Parameters
    ----------
    name : str
        A data set of DATASETS: "fashion-mnist" or "mnist" (for a .npz or CSV, only its name).
    split : str
        "train" or "test".
    data_dir : str or Path, optional
        A directory holding the four IDX files (raw or .gz), a .npz file, or a directory of one
        *train*.csv and one *test*.csv (see kind); it must hold them, no falling through.
    download : bool
        Whether to download the data set into the user cache when it is found nowhere else (IDX only).

    Returns
    -------
    Split
        images (N, D), labels (N,), class_names, num_classes, and the source.

    Raises
    ------
    InputError
        One line naming the file and what is wrong with it, or saying how to get the data.

    Examples
    --------
    >>> from fastnet import data
    >>> test = data.load("fashion-mnist", "test", download=False)
    >>> test.images.shape, test.num_classes, test.class_names[9], test.custom
    ((10000, 784), 10, 'Ankle boot', False)
    """
    what = kind(data_dir)
    if what == "idx":
        return _load_idx(name, split, data_dir, download)
    if split not in ("train", "test"):
        raise InputError(f"unknown split {split!r}; expected train or test")
    path = os.path.expanduser(data_dir)
    images, labels = formats.read_npz(path, split) if what == "npz" else formats.read_csv(formats.csv_file(path, split))
    classes = int(labels.max()) + 1 if len(labels) else 0
    return Split(images, labels, tuple(str(c) for c in range(classes)), classes, name, split, Path(path),
                 "--data-dir", True)


def kind(data_dir) -> str:
    """What data_dir (--data-dir) names: "npz", "csv" or "idx" (also for None, a search for the IDX files)."""
    if data_dir is None:
        return "idx"
    path = os.path.expanduser(data_dir)
    if os.path.isfile(path) and (path.endswith(".npz") or formats.is_zip(path)):
        return "npz"
    if os.path.isfile(path) and path.endswith(".csv"):
        raise InputError(f"--data-dir {data_dir}: pass the directory holding *train*.csv and *test*.csv, "
                         "not one CSV file")
    if os.path.isdir(path) and not glob.glob(os.path.join(glob.escape(path), "*idx[13]-ubyte*")) \
            and glob.glob(os.path.join(glob.escape(path), "*.csv")):
        return "csv"
    return "idx"


def _load_idx(name, split, data_dir, download) -> Split:
    """One split of IDX files: found in the search order, checked and decoded through the cache (see load)."""
    info = sources.lookup(name)
    if split not in info.files:
        raise InputError(f"unknown split {split!r}; expected one of {', '.join(info.files)}")
    directory, found_by, trusted = sources.find(info, data_dir, download)
    dims = check_headers(info, directory)
    image_path, label_path = (sources.file_in(directory, base) for base in info.files[split])
    images, image_sha = load_file(image_path, name, 3)
    labels, label_sha = load_file(label_path, name, 1)
    known = sources.is_known(info, directory, {image_path: image_sha, label_path: label_sha}, trusted, dims)
    if len(images) != len(labels):  # the headers agreed; a file replaced meanwhile may not
        raise InputError(f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels")
    if len(labels) == 0 or images[0].size == 0:
        raise bad_file(image_path, "holds no images" if len(labels) == 0 else "holds images of 0 pixels")
    if known:
        classes, names = len(info.class_names), info.class_names
    else:
        classes = _custom_classes(info, directory, split, images, labels)
        names = tuple(str(i) for i in range(classes))
    top = int(labels.max())
    if top >= classes:
        raise bad_file(label_path, f"label {top} outside the class range 0..{classes - 1}")
    return Split(np.ascontiguousarray(images.reshape(len(images), -1)), labels, names, classes,
                 name, split, directory, found_by, not known)


def check_headers(info: DatasetInfo, directory: Path) -> dict:
    """The dims each of the four files' headers claims ({path: dims}), once they agree: as many images
    as labels in each split, test images the size of the train images. Only the headers are read
    (idx.read_header), so a mismatched or forged file fails before any body is decompressed or cached."""
    dims, shapes = {}, {}
    for split, (image_base, label_base) in info.files.items():
        image_path, label_path = (sources.file_in(directory, base) for base in (image_base, label_base))
        images, labels = read_header(image_path, 3), read_header(label_path, 1)
        if images[0] != labels[0]:
            raise InputError(f"{image_path} holds {images[0]} images but {label_path} holds {labels[0]} labels")
        dims.update({image_path: images, label_path: labels})
        shapes[split] = images[1:]
    first_path, first = sources.file_in(directory, info.bases()[0]), next(iter(shapes.values()))
    for split, shape in shapes.items():
        if shape != first:
            raise InputError(f"images of {shape[0]}x{shape[1]} pixels in the {split} set, "
                             f"{first[0]}x{first[1]} in {first_path}")
    return dims


def _custom_classes(info: DatasetInfo, directory: Path, split: str, images: np.ndarray, labels: np.ndarray) -> int:
    """Custom data's class count: the largest train label + 1 (check_headers made sure the test
    images are the size of the train images)."""
    if split == "train":
        return int(labels.max()) + 1
    train_labels = sources.file_in(directory, info.files["train"][1])
    train = load_file(train_labels, info.name, 1)[0]
    if len(train) == 0:
        raise bad_file(train_labels, "holds no labels")
    return int(train.max()) + 1
