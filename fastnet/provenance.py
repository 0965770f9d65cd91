"""What a model was trained on, and whether data fit it: the model file's `trained` record
(fastnet.checkpoint.TRAINED) against a data split, shared by the commands that read data for a
saved model (train --resume, evaluate)."""

import hashlib

import numpy as np

from .data.arrays import small_labels
from .cli import printable
from .errors import InputError


def output_labels(classes, split, where, model):
    """The labels of a data split as the model's outputs 0..K-1. A model file with `classes` (one
    trained in Python) says which label each output stands for: a number stands for that label, a text
    for the class of that name (the data set's class name, or else the label written out: "3");
    without it output k is label k. InputError when the data hold a label the model does not know."""
    labels = split.labels
    if classes is None:
        return labels
    count = max(split.num_classes, int(labels.max()) + 1 if len(labels) else 0)
    names = list(split.class_names) + [str(j) for j in range(len(split.class_names), count)]
    spellings = [names, [str(j) for j in range(count)]] if classes.dtype.kind == "U" else [list(range(count))]
    output = {value: k for k, value in enumerate(classes.tolist())}
    present = np.unique(labels)
    tables = [np.array([output.get(value, -1) for value in spelling], np.int64) for spelling in spellings]
    for table in tables:
        if (table[present] >= 0).all():
            return small_labels(table[labels])
    unknown = [names[j] for j in present if tables[0][j] < 0][:5]
    raise InputError(f"{where} has classes {', '.join(map(printable, unknown))} that {printable(model)} was not "
                     f"trained on (its classes: {printable(', '.join(map(str, classes.tolist()[:10])))}"
                     f"{', ...' if len(classes) > 10 else ''})")


def check_inputs(trained, images, where, model):
    """InputError when the model's record of its inputs (trained["input_dtype"]: 0-255 pixels, uint8,
    or features of another dtype) and the data's disagree: fastnet cannot tell whether pixels and
    features are in the same units (X / 255 is not X). A file without the record is not checked."""
    kind = trained.get("input_dtype")
    if not isinstance(kind, str) or (kind == "uint8") == (images.dtype == np.uint8):
        return
    if kind == "uint8":
        raise InputError(f"{printable(model)} was trained on 0-255 pixels (uint8) but {where} holds {images.dtype} "
                         "features; pass data of the same kind (IDX files, or uint8 rows in a .npz)")
    raise InputError(f"{printable(model)} was trained on {printable(kind)} features but {where} holds 0-255 "
                     "pixels (uint8), which may be in other units; pass its test rows as floats "
                     "(--data-dir, a .npz or CSV), or score it in Python (fastnet.load)")


def trained_on_arrays(model, trained, data_dir, dataset):
    """InputError when MODEL was trained in Python (its file records its inputs but no data set) and
    no data were named (data_dir, dataset: the flags, None when not given): it was not trained on a
    data set that a command could find by itself."""
    if (data_dir is None and dataset is None and "input_dtype" in trained
            and "dataset" not in trained and not isinstance(trained.get("data_dir"), str)):
        raise InputError(f"{printable(model)} was trained in Python on arrays of {printable(trained['input_dtype'])} "
                         "features, not on a data set fastnet knows; pass --data-dir with its data "
                         "(IDX files, a .npz or a CSV directory), or --dataset")


def fingerprint(images, labels):
    """A short SHA-256 of a data split's pixels and labels, recorded with a model at training."""
    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    digest.update(np.ascontiguousarray(labels, np.int64).tobytes())
    return digest.hexdigest()[:16]
