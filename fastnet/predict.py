"""python -m fastnet.predict: classify image files (PNG, JPEG, ...) with a saved model.

An image is first turned into what Fashion-MNIST's images are, following the data set's own
conversion of product photos (trim, resize the longest edge to 28, sharpen, extend to 28x28,
negate, grayscale): grayscale, the garment light on a black background (a picture whose border
is mostly light, such as a photo on white, is negated), trimmed to the garment's bounding box,
its longer side resized to 28 pixels keeping the aspect ratio, and centred on a 28x28 black canvas.
The NumPy reference kernels do the arithmetic: a handful of images is not worth Numba's compile time.
"""

import json
import math
import os
import warnings

import numpy as np

from . import checkpoint
from .backend import get_backend
from .cli import ArgumentParser, positive_int, printable, run
from .errors import InputError
from .model import predict_logits, probabilities

OBJECT_MIN = 4  # grey levels above a clean background that count as garment
OBJECT_MAX = 64  # and at most this many, for a garment that covers part of the frame
NOISE_FACTOR = 3  # times the frame's 95th-percentile deviation: above a noisy background's speckle
MAX_PIXELS = 25_000_000  # 5000 x 5000: far above any photo of one garment, far below a decompression bomb


def build_parser():
    """The command line of fastnet.predict."""
    p = ArgumentParser(prog="python -m fastnet.predict", description=__doc__.split("\n")[0])
    p.add_argument("model", metavar="MODEL", help="model file written by python -m fastnet.train --save")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files to classify (PNG, JPEG, ...)")
    p.add_argument("--top", type=positive_int, default=3, help="classes to list per image (default 3)")
    p.add_argument("--json", action="store_true", help="print a JSON list of {file, top: [{class, probability}]}")
    return p


def read_image(path):
    """The image at path as 8-bit grayscale (transparent parts made white); InputError naming the file otherwise.

    The size is checked from the header before any pixel is decoded (MAX_PIXELS). Images of more
    than 8 bits per sample (16-bit PNG, 32-bit integer or float TIFF) are scaled to 0..255 by their
    sample type's range, never clipped.
    """
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise InputError("Pillow is not installed: pip install 'fastnet-mlp[plot]' (or pip install pillow)") from None
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        if os.path.exists(path) and not os.path.isdir(path) and not os.path.isfile(path):
            raise InputError(f"{printable(path)} is not a regular file (a device or a pipe?); not read")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise _too_large(path, width, height)
                img.load()
                if img.mode in WIDE_MODES:
                    return to_8bit(np.asarray(img), img.mode)
                if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                    rgba = img.convert("RGBA")
                    img = Image.new("RGBA", rgba.size, "white")
                    img.alpha_composite(rgba)
                return np.asarray(img.convert("L"))
    except Image.DecompressionBombError:
        raise InputError(f"{printable(path)} is larger than {MAX_PIXELS:,} pixels; not read") from None
    except FileNotFoundError:
        raise InputError(f"{printable(path)}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{printable(path)} is a directory, not an image") from None
    except UnidentifiedImageError:
        raise InputError(f"{printable(path)} is not an image file Pillow can read") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"cannot read image {printable(path)}: {exc}") from None


def _too_large(path, width, height):
    return InputError(f"{printable(path)} is {width}x{height} pixels; fastnet.predict reads images of at most "
                      f"{MAX_PIXELS:,} pixels")


# Pillow modes of one sample wider than 8 bits, with the range their samples span.
WIDE_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": None, "F": None}


def to_8bit(samples, mode):
    """Grayscale samples of a wide mode scaled to uint8 0..255 by their type's range.

    16-bit modes span 0..65535. Mode "I" (32-bit integers, also what Pillow gives for some 16-bit
    files) spans 0..255 when every value fits, else 0..65535 when they fit, else 0..2^31-1. Mode "F"
    (floats) spans 0..1 when every value lies in [0, 1], else 0..255 when they fit, else its own
    minimum..maximum.
    """
    x = samples.astype(np.float64)
    if not np.isfinite(x).all():
        raise InputError("the image holds non-finite samples")
    top = WIDE_MODES[mode]
    low = 0.0
    if top is None:
        small, large = x.min(initial=0), x.max(initial=0)
        if mode == "F" and small >= 0 and large <= 1:
            top = 1.0
        elif small >= 0 and large <= 255:
            top = 255.0
        elif mode == "I" and small >= 0 and large <= 65535:
            top = 65535.0
        elif mode == "I" and small >= 0:
            top = 2.0**31 - 1
        else:
            low, top = small, max(large, small + 1)
    return np.clip(np.rint((x - low) * (255 / (top - low))), 0, 255).astype(np.uint8)


def frame(gray):
    """The pixels of the image's outer one-pixel frame, as a flat array."""
    return np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])


def border_is_light(gray):
    """True when most pixels of the image's outer frame are light (above mid-grey): a photo on white."""
    return bool(np.mean(frame(gray) > 127) > 0.5)


def bounding_box(gray):
    """(top, bottom, left, right) of the pixels brighter than the background; the whole image if none.

    Like ImageMagick's -trim with a little fuzz: the background is the frame's median, and a pixel
    is garment when it rises above it by more than the frame's own noise (JPEG speckle, grain).
    """
    edge = frame(gray).astype(np.int16)
    background = int(np.median(edge))
    noise = float(np.percentile(np.abs(edge - background), 95))
    level = min(max(OBJECT_MIN, NOISE_FACTOR * noise), OBJECT_MAX)
    rows, cols = np.nonzero(gray > background + level)
    if len(rows) == 0:
        return 0, gray.shape[0], 0, gray.shape[1]
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


def to_fashion_mnist(gray, side=28):
    """uint8 (side*side,) pixels of a grayscale image converted the way Fashion-MNIST was made (see module doc).

    An image that already has that form (side x side, dark border) is taken as it is: re-trimming
    a data set image would shift or stretch it by a pixel, and the model knows the original framing.
    """
    from PIL import Image, ImageFilter

    gray = np.asarray(gray, np.uint8)
    if border_is_light(gray):
        gray = 255 - gray
    elif gray.shape == (side, side):
        return gray.reshape(-1).copy()
    top, bottom, left, right = bounding_box(gray)
    gray = np.clip(gray.astype(np.int16) - int(np.median(frame(gray))), 0, 255).astype(np.uint8)
    crop = Image.fromarray(gray[top:bottom, left:right])
    scale = side / max(crop.size)
    size = tuple(max(1, min(side, round(d * scale))) for d in crop.size)
    if size != crop.size:
        crop = crop.resize(size, Image.Resampling.LANCZOS)
        if scale < 1:
            crop = crop.filter(ImageFilter.UnsharpMask(radius=1, percent=60, threshold=0))
    canvas = Image.new("L", (side, side), 0)
    canvas.paste(crop, ((side - size[0]) // 2, (side - size[1]) // 2))
    return np.asarray(canvas).reshape(-1)


def top_classes(probs, names, k):
    """The k most probable classes of one probability row, as [{class, probability}], most probable first."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [{"class": names[i], "probability": float(probs[i])} for i in order]


def main(argv=None):
    """Classify each IMAGE with MODEL and print its most probable classes (or a JSON list)."""
    args = build_parser().parse_args(argv)
    model, record, names, _ = checkpoint.load(args.model)
    trained = record["trained"]
    if trained.get("input_dtype", "uint8") != "uint8":  # recorded by files of today (provenance.check_inputs)
        raise InputError(f"{printable(args.model)} was trained on {printable(trained['input_dtype'])} features, "
                         "not on 0-255 pixels: fastnet.predict classifies images; use it in Python (fastnet.load)")
    side = math.isqrt(model.sizes[0])
    if side * side != model.sizes[0]:
        raise InputError(f"{args.model} takes {model.sizes[0]} inputs, not a square image")
    pixels = np.stack([to_fashion_mnist(read_image(path), side) for path in args.images])
    kernels = get_backend("numpy")
    probs = probabilities(kernels, predict_logits(model, kernels, pixels))
    results = [{"file": path, "top": top_classes(p, names, args.top)} for path, p in zip(args.images, probs)]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    shown = [printable(n) for n in names]
    width = max(len(n) for n in shown)
    for r, p in zip(results, probs):
        print(printable(r["file"]))
        for i in np.argsort(-p, kind="stable")[: args.top]:
            print(f"  {shown[i]:<{width}}  {100 * p[i]:5.1f}%")
    return 0


if __name__ == "__main__":
    run(main)
