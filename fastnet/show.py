"""python -m fastnet.show: save a grid of randomly chosen images of a data set, each with its class name."""

import math
import os

import numpy as np

from . import data, plots
from .cli import ArgumentParser, non_negative_int, positive_int, run
from .errors import InputError

MAX_COUNT = 100
TITLES = {"fashion-mnist": "Fashion-MNIST", "mnist": "MNIST"}


def build_parser():
    """The command line of fastnet.show."""
    p = ArgumentParser(prog="python -m fastnet.show", description=__doc__)
    p.add_argument("--dataset", choices=tuple(data.DATASETS), default="fashion-mnist")
    p.add_argument("--data-dir", help=data.DATA_DIR_HELP)
    p.add_argument("--split", choices=("train", "test"), default="train",
                   help="which split to draw from (default train)")
    p.add_argument("--count", type=positive_int, default=25, help=f"images to show, at most {MAX_COUNT} (default 25)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the random choice of images (default 0)")
    p.add_argument("--out", default="fashion_samples.png", metavar="PATH",
                   help="PNG file to write (default fashion_samples.png)")
    return p


def check_out(path):
    """InputError unless path's folder exists, so a typo fails before the data is read."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"--out: directory {folder} does not exist")


def check_square(split):
    """InputError unless the split's rows are square images (side x side pixels), the only kind drawn."""
    pixels = split.images.shape[1]
    if math.isqrt(pixels) ** 2 != pixels:
        raise InputError(f"{split.source}: rows of {pixels} values are not square images (side x side pixels); "
                         "fastnet.show draws images only")


def drawable(images):
    """Pixels as the grid draws them (0 light .. 255 dark): uint8 as they are; other values stretched
    from the smallest of the chosen images (light) to the largest (dark)."""
    if images.dtype == np.uint8:
        return images
    if images.min() == images.max():
        return np.zeros(images.shape)
    scaled = images / np.abs(images).max()  # within -1..1 first: values near 1e308 do not overflow
    low = scaled.min()
    return (scaled - low) * (255 / (scaled.max() - low))


def main(argv=None):
    """Draw --count random images of the chosen split into --out and print the path written."""
    args = build_parser().parse_args(argv)
    if args.count > MAX_COUNT:
        raise InputError(f"--count is at most {MAX_COUNT} (a bigger grid is unreadable), got {args.count}")
    check_out(args.out)
    plots.require_matplotlib()
    chosen_split = data.load(args.dataset, args.split, args.data_dir)
    check_square(chosen_split)
    images, labels, names = chosen_split.images, chosen_split.labels, chosen_split.class_names
    count = min(args.count, len(labels))
    chosen = np.sort(np.random.default_rng(args.seed).choice(len(labels), count, replace=False))
    split = "training" if args.split == "train" else "test"
    shown = chosen_split.source.name if chosen_split.custom else TITLES.get(args.dataset, args.dataset)
    title = f"{shown}: {count} random {split} images with their classes (seed {args.seed})"
    print(plots.image_grid(args.out, drawable(images[chosen]), labels[chosen], names, title=title))
    return 0


if __name__ == "__main__":
    run(main)
