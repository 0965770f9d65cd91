"""The data sets fastnet knows, where their files are looked for, and how they are verified.

The search order: the data_dir argument (--data-dir), the data set's environment variable, the
system copy (Debian's dataset-fashion-mnist), the user cache, and last a download from the official
mirror into the user cache. A directory the user named must hold the four files (no falling
through). Files of a known data set are checked by the SHA-256 of their decompressed bytes; a
directory of other IDX files is just data.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from types import MappingProxyType

from ..errors import InputError
from . import cache, download
from .idx import bad_file

SPLIT_FILES = MappingProxyType({
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
})
# The IDX dims of the published files, the same for MNIST and Fashion-MNIST.
MNIST_DIMS = MappingProxyType({"train-images-idx3-ubyte": (60000, 28, 28), "train-labels-idx1-ubyte": (60000,),
                               "t10k-images-idx3-ubyte": (10000, 28, 28), "t10k-labels-idx1-ubyte": (10000,)})


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What fastnet knows about a published data set: its files, their hashes, class names, where to look.

    files maps a split to its (images, labels) base names; sha256 maps a file's base name (no .gz)
    to the SHA-256 of its decompressed bytes, IDX header included; gz_md5 maps a .gz name to the
    MD5 its publisher lists, checked on download only. The mappings are read-only views.
    """

    name: str
    files: dict
    sha256: dict
    class_names: tuple
    env_var: str
    system_dir: Path
    mirror: str
    gz_md5: dict = dataclasses.field(default_factory=dict)
    debian_package: str = ""
    dims: dict = dataclasses.field(default_factory=dict)  # base name -> the published file's IDX dims

    def __post_init__(self):
        for field in ("files", "sha256", "gz_md5", "dims"):  # read-only, so a DatasetInfo is a constant
            object.__setattr__(self, field, MappingProxyType(dict(getattr(self, field))))
        object.__setattr__(self, "class_names", tuple(self.class_names))

    def bases(self) -> list[str]:
        """The base names of the four files, images before labels, train before test."""
        return [base for pair in self.files.values() for base in pair]

    def rank(self, base: str) -> int:
        """3 for an images file, 1 for a labels file."""
        return 3 if any(base == pair[0] for pair in self.files.values()) else 1

    def how_to_get(self) -> str:
        """One sentence telling a person how to get the data without a download."""
        local = f"pass --data-dir DIR or set {self.env_var}=DIR for a directory holding the four IDX files"
        if self.debian_package:
            return f"install it with 'apt-get install {self.debian_package}' (Debian), or {local}"
        return local


DATASETS = MappingProxyType({
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        files=SPLIT_FILES,
        sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        env_var="FASHION_MNIST_DIR",
        system_dir=Path("/usr/share/datasets/fashion-mnist"),
        mirror="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        debian_package="dataset-fashion-mnist",
        dims=MNIST_DIMS,
    ),
    # MNIST: no trustworthy SHA-256 of the decompressed files was at hand, so its payloads are not
    # checked; a download is checked against the MD5 of the .gz files that torchvision publishes.
    # Without payload hashes, MNIST from --data-dir or MNIST_DIR is treated as plain IDX data
    # (the same class names "0".."9"; the class count comes from the labels).
    "mnist": DatasetInfo(
        name="mnist",
        files=SPLIT_FILES,
        sha256={},
        class_names=tuple(str(i) for i in range(10)),
        env_var="MNIST_DIR",
        system_dir=Path("/usr/share/datasets/mnist"),
        mirror="https://ossci-datasets.s3.amazonaws.com/mnist/",
        gz_md5={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        dims=MNIST_DIMS,
    ),
})


def lookup(name: str) -> DatasetInfo:
    """The DatasetInfo of a data set name, or an InputError listing the known names."""
    if name not in DATASETS:
        raise InputError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def file_in(directory: Path, base: str):
    """The file holding base in directory, raw preferred over .gz, or None."""
    for candidate in (directory / base, directory / f"{base}.gz"):
        if os.path.isfile(candidate):
            return candidate
    return None


def missing(info: DatasetInfo, directory: Path) -> list[str]:
    """The base names of the four files that directory lacks."""
    return [base for base in info.bases() if file_in(directory, base) is None]


def find(info: DatasetInfo, data_dir=None, download_ok=True):
    """(directory, how it was found, whether its files must be the known ones), in the search order."""
    if data_dir is not None:
        return _explicit(info, Path(data_dir).expanduser(), "--data-dir"), "--data-dir", False
    env = os.environ.get(info.env_var)
    if env:
        return _explicit(info, Path(env).expanduser(), f"${info.env_var}"), f"${info.env_var}", False
    user_cache = cache.cache_dir() / info.name
    for directory, how in ((info.system_dir, "system copy"), (user_cache, "user cache")):
        if not missing(info, directory):
            return directory, how, True
    if not download_ok:
        raise InputError(f"{info.name} not found in {info.system_dir} or {user_cache}; {info.how_to_get()}")
    mirror = os.environ.get("FASTNET_MIRROR") or info.mirror
    download.download(info, mirror, user_cache, missing(info, user_cache))
    return user_cache, f"downloaded from {mirror}", True


def _explicit(info: DatasetInfo, directory: Path, how: str) -> Path:
    """A directory the user named: it must hold the four files, else an InputError (no falling through)."""
    if not os.path.isdir(directory):
        raise InputError(f"{how} {directory}: no such directory")
    absent = missing(info, directory)
    if absent:
        raise InputError(f"{how} {directory} lacks {', '.join(absent)} (raw or .gz)")
    return directory


def is_known(info: DatasetInfo, directory: Path, loaded: dict, trusted: bool, dims: dict) -> bool:
    """Whether directory holds the known data set, raising InputError on a file that breaks the rules.

    loaded maps the paths already read to their payload SHA-256, dims every file's header dims.
    Trusted places (system copy, cache, download) must match. Elsewhere the set is the known one
    when all four files match their hashes, and just data when none does. When some match, a file
    that does not is a damaged copy if it has the published file's dims (corrupt or modified: an
    error), and other data if it has not (a subset, say): the set is then custom data.
    """
    if not info.sha256:  # no payload hashes known (MNIST): trust the named places, the rest is just data
        return trusted
    if trusted:
        for path, digest in loaded.items():
            _verify(info, path, digest)
        return True
    paths = {file_in(directory, base): base for base in info.bases()}
    published = {p: info.dims.get(base, dims[p]) == dims[p] for p, base in paths.items()}  # unknown: alike
    digests = {p: loaded.get(p) or cache.payload_digest(p, info.name, info.rank(base))
               for p, base in paths.items() if published[p]}  # other dims cannot match: not read
    matching = [p for p, d in digests.items() if info.sha256.get(paths[p]) == d]
    if len(matching) == len(paths):
        return True
    if matching:
        for path, digest in digests.items():
            _verify(info, path, digest)
    return False


def _verify(info: DatasetInfo, path: Path, digest: str) -> None:
    """InputError unless path's payload SHA-256 is the published one (when one is known)."""
    expected = info.sha256.get(path.name.removesuffix(".gz"))
    if expected and digest != expected:
        raise bad_file(path, f"corrupt or modified: its payload SHA-256 is {digest[:16]}..., "
                             f"the published {info.name} file's is {expected[:16]}...")
