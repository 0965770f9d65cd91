"""Data sets as arrays, for fastnet.fit and scikit-learn: ((X_train, y_train), (X_test, y_test)).

The files are found, checked and cached exactly as python -m fastnet.train finds them
(fastnet.data): data_dir, then the data set's environment variable ($FASHION_MNIST_DIR,
$MNIST_DIR), the system copy (/usr/share/datasets/...), the user cache, and last (with download)
a download into the user cache. Images come as uint8 rows (N, rows*cols), labels as uint8 (N,).
"""

from . import data
from .api import python_errors


def _load(name, data_dir, download):
    with python_errors():
        return (tuple(data.load(name, "train", data_dir, download)),
                tuple(data.load(name, "test", data_dir, download)))


def load_fashion_mnist(data_dir=None, download=True):
    """Fashion-MNIST: 60,000 training and 10,000 test images of 28x28 pixels, 10 classes of clothing.

    Parameters
    ----------
    data_dir : str or None, default=None
        A directory holding the four IDX files (raw or .gz); None searches as the command line does.
    download : bool, default=True
        Whether to download the files into the user cache when they are nowhere else.

    Returns
    -------
    (X_train, y_train), (X_test, y_test) : tuples of ndarrays
        uint8 images (60000, 784) and (10000, 784), uint8 labels 0..9 (names in ``class_names``).

    Raises
    ------
    ValueError
        The files are missing (and not downloaded), damaged, or not the published ones.

    Examples
    --------
    >>> import fastnet
    >>> (X_train, y_train), (X_test, y_test) = fastnet.datasets.load_fashion_mnist()  # doctest: +SKIP
    >>> X_train.shape, X_train.dtype, y_test[:3]                                      # doctest: +SKIP
    ((60000, 784), dtype('uint8'), array([9, 2, 1], dtype=uint8))
    """
    return _load("fashion-mnist", data_dir, download)


def load_mnist(data_dir=None, download=True):
    """MNIST: 60,000 training and 10,000 test images of handwritten digits, 28x28 pixels.

    Parameters and returns as ``load_fashion_mnist``; the labels are the digits 0..9.

    Examples
    --------
    >>> import fastnet
    >>> (X_train, y_train), (X_test, y_test) = fastnet.datasets.load_mnist()  # doctest: +SKIP
    """
    return _load("mnist", data_dir, download)


def load_idx(directory):
    """Any directory of IDX files named as Fashion-MNIST's (train-images-idx3-ubyte, ...).

    Parameters
    ----------
    directory : str
        Holds train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
        t10k-labels-idx1-ubyte, raw or .gz. Each file is checked (IDX format, counts, label range);
        if they are Fashion-MNIST's, their published hashes too.

    Returns
    -------
    (X_train, y_train), (X_test, y_test) : tuples of ndarrays
        uint8 images (N, rows*cols), uint8 labels.

    Examples
    --------
    >>> import fastnet
    >>> train, test = fastnet.datasets.load_idx("/usr/share/datasets/fashion-mnist")  # doctest: +SKIP
    """
    return _load("fashion-mnist", directory, False)


def class_names(name="fashion-mnist"):
    """The class names of a known data set, by label: class_names()[9] == "Ankle boot"."""
    if name not in data.DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(data.DATASETS)}")
    return list(data.DATASETS[name].class_names)
