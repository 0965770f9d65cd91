"""Find, check and decode the IDX files of Fashion-MNIST, MNIST, or any other IDX image data.

`load_split(name, split)` returns a `Split`: the images and labels of one split together with its
class names, its class count and where it came from, so nothing about the data lives anywhere else.

The package, one concern a module:
  idx.py       reading and validating IDX files (raw or gzip), bounded decompression
  cache.py     the decoded, verified .npy cache (~/.cache/fastnet, $FASTNET_CACHE_DIR, $XDG_CACHE_HOME)
  sources.py   the known data sets (hashes, mirrors, class names), the search order, verification
  download.py  the verified download into the user cache

Where the four files come from, in this order: the data_dir argument (--data-dir), the data set's
environment variable, the system copy (Debian's dataset-fashion-mnist), the user cache, and last a
download from the official mirror into the user cache. Every problem with a file is an
InputError: one line naming the file and what is wrong.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..errors import InputError
from . import sources
from .cache import cache_dir, load_file
from .idx import bad_file, read_header, read_idx
from .sources import DATASETS, SPLIT_FILES, DatasetInfo

__all__ = ["DATASETS", "SPLIT_FILES", "DatasetInfo", "Split", "cache_dir", "load_split", "read_idx"]


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: arrays have no truth value, so == would raise
class Split:
    """One split of a data set, carrying all that is known about it.

    images       uint8 (N, rows*cols), C-contiguous: one flattened image a row
    labels       uint8 (N,), each in 0..num_classes-1
    class_names  num_classes names; label c is class_names[c]: the known data set's names, or
                 "0", "1", ... for custom data
    num_classes  the known data set's class count, or for custom data the largest train label + 1
    dataset      the data set name asked for, e.g. "fashion-mnist"
    split        "train" or "test"
    source       the directory the files were read from
    found_by     how that directory was found: "--data-dir", "$FASHION_MNIST_DIR", "system copy",
                 "user cache" or "downloaded from URL"
    custom       True when the files are plain IDX data rather than the known data set
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
        """A split unpacks as its arrays: images, labels = load_split(...)."""
        return iter((self.images, self.labels))


def load_split(name="fashion-mnist", split="train", data_dir=None, download=True) -> Split:
    """One split of a data set: its images, labels, class names and class count, and where it came from.

    Finds the four files in the search order, checks them (IDX format, counts, known hashes, label
    range) and decodes them through the decoded cache.

    Parameters
    ----------
    name : str
        A data set of DATASETS: "fashion-mnist" or "mnist".
    split : str
        "train" or "test".
    data_dir : str or Path, optional
        A directory holding the four IDX files (raw or .gz); it must hold them, no falling through.
    download : bool
        Whether to download the data set into the user cache when it is found nowhere else.

    Returns
    -------
    Split
        images uint8 (N, rows*cols), labels uint8 (N,), class_names, num_classes, and the source.

    Raises
    ------
    InputError
        One line naming the file and what is wrong with it, or saying how to get the data.

    Examples
    --------
    >>> from fastnet import data
    >>> test = data.load_split("fashion-mnist", "test", download=False)
    >>> test.images.shape, test.num_classes, test.class_names[9], test.custom
    ((10000, 784), 10, 'Ankle boot', False)
    """
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
