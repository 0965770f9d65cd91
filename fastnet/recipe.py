"""The training recipe: presets, input standardisation, and a fresh model + optimiser state.

Shared by the command line, the benchmarks and the Python API, so that all of them train the
same way from the same settings.
"""

import numpy as np

from kernels import parameter_count
from .errors import InputError
from .model import MLP, hidden_layers
from .optim import OPTIMIZERS
from .training import TrainState

# Recipes: `seed` is the blog walkthrough's, `fastnet` the measured default (see README).
PRESETS = {
    "fastnet": dict(lr=2e-3, schedule="cosine", warmup=0, standardize=True, val_split=0.05,
                    beta1=0.8, beta2=0.99),
    "seed": dict(lr=5e-4, schedule="constant", warmup=0, standardize=False, val_split=0,
                 beta1=0.9, beta2=0.999),
}


def new_state(s, sizes, train_images):
    """A fresh model (He initialisation), optimiser and generator for settings s.

    With standardisation, the input scaling comes from the training images alone (never the
    validation or test images): per pixel, x = (p/255 - mean) / max(sd, SD_FLOOR). The hidden layers
    get s["activation"] (relu where s has none); the optimiser's hyper-parameters that s lacks (alpha,
    say) keep the optimiser's defaults, as when a checkpoint is loaded.
    """
    rng = np.random.default_rng(s["seed"])
    scale, shift = 1 / 255, 0.0
    if s["standardize"]:
        mean, sd = pixel_moments(train_images)
        scale, shift = 1 / (255 * sd), -mean / sd
    model = MLP.he_init(sizes, rng, np.dtype(s["dtype"]), input_scale=scale, input_shift=shift,
                        activations=hidden_layers(sizes, s.get("activation", "relu")))
    kind = OPTIMIZERS[s["optimizer"]]
    opt = kind(model.params.size, model.dtype, **{k: s[k] for k in kind.HYPER if k in s})
    return TrainState(model, opt, rng)


# Border pixels of Fashion-MNIST are nearly always 0: dividing by their tiny deviation would
# turn a rare faint pixel into a huge input. Measured: a floor of 0.05 (on the [0, 1] scale).
SD_FLOOR = 0.05


def pixel_moments(images, chunk=4096):
    """Per-pixel mean and deviation (floored at SD_FLOOR) of uint8 images scaled to [0, 1]."""
    total = np.zeros(images.shape[1])
    squares = np.zeros(images.shape[1])
    for start in range(0, len(images), chunk):  # float64 sums without a float copy of the set
        block = images[start : start + chunk].astype(np.float64) / 255
        total += block.sum(axis=0)
        squares += (block**2).sum(axis=0)
    mean = total / len(images)
    sd = np.sqrt(np.maximum(squares / len(images) - mean**2, 0))
    return mean, np.maximum(sd, SD_FLOOR)


def held_out(n, val_split):
    """How many of n training images to hold out for validation: a count as given, or a fraction of
    n, rounded, keeping at least one image on each side when the fraction is above 0."""
    if isinstance(val_split, int):
        if val_split >= n:
            raise InputError(f"--val-split {val_split} leaves no training images (the set has {n})")
        return val_split
    if val_split <= 0 or n < 2:
        return 0
    return min(max(round(val_split * n), 1), n - 1)


def peak_bytes(sizes, batch_size, dtype, data_bytes):
    """A generous estimate of a training run's peak memory: the data twice (loaded, then the training
    rows gathered), parameters with gradients and two optimiser moments, the step's and evaluation's
    activation buffers, and the reference backend's float64 temporaries of a batch."""
    item = np.dtype(dtype).itemsize
    params = parameter_count(sizes)
    width = sum(sizes)
    rows = batch_size
    return (2 * data_bytes + 4 * params * item + 3 * rows * width * item + 2048 * width * item
            + 4 * rows * max(sizes) * 8)


def available_bytes():
    """Memory the machine can still give this process (MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(sizes, batch_size, dtype, data_bytes):
    """InputError, before any work, when the run would need more memory than is available."""
    need, have = peak_bytes(sizes, batch_size, dtype, data_bytes), available_bytes()
    if have is not None and need > have:
        raise InputError(f"this run needs about {need / 2**30:.1f} GiB of memory but {have / 2**30:.1f} GiB "
                         "are available; use smaller --layers or --batch-size, or float32")
