"""A multilayer perceptron with a softmax output, and its forward and backward passes.

Shapes: N rows in a batch, sizes = (D0, D1, ..., DL): D0 inputs, DL classes.
Layout: samples are rows (N, D), weights are (D_in, D_out), so a layer is X·W + b. A shuffled
batch is then a gather of whole rows into one contiguous block, the products are plain row-major
GEMMs that BLAS likes, and per-sample work (softmax, loss) walks contiguous rows.

Each layer has an activation (kernels.ACTIVATIONS): relu, tanh, logistic or identity for the
hidden layers (relu unless told otherwise), identity for the output layer, whose logits go into
softmax-cross-entropy.

All parameters live in one flat buffer with per-layer views (layout: W0, b0, W1, b1, ...), so
one kernel call runs a whole batch and an optimiser updates the whole network in one pass.
The forward and backward passes themselves are kernels (mlp_logits, mlp_gradients): the numpy
backend spells them out layer by layer, the numba backend runs a batch in one compiled call.
"""

import numpy as np

from kernels import (
    activation_codes,
    activation_names,
    layer_views,
    mlp_workspace,
    parameter_count,
)

from .errors import InputError


MAX_LAYERS = 4096  # layer sizes a network may have: far more than any trainable MLP, and a model file's bound


def parse_layers(text):
    """'784,128,10' -> (784, 128, 10); at least an input and an output size, all positive, at most MAX_LAYERS."""
    if text.count(",") >= MAX_LAYERS:
        raise InputError(f"--layers may list at most {MAX_LAYERS} sizes, got {text.count(',') + 1}")
    try:
        sizes = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise InputError(f"--layers must be comma-separated integers like 784,128,10, got {text[:80]!r}") from None
    if len(sizes) < 2 or min(sizes) <= 0:
        raise InputError(f"--layers needs at least two positive sizes (inputs and classes), got {text!r}")
    if parameter_count(sizes) > 500_000_000:
        raise InputError(f"--layers {text} would need more than 500 million parameters")
    return sizes


def hidden_layers(sizes, activation="relu"):
    """The activations of a network of `sizes` with `activation` in each hidden layer, identity at the
    output; relu is the default (and what a model file without activations holds)."""
    return (activation,) * (len(sizes) - 2) + ("identity",)


class MLP:
    """Parameters of the network, its layers' activations, and how raw pixels become inputs.

    Inputs are pixels * input_scale + input_shift, per pixel: (D0,) vectors in the model's dtype
    (1/255 and 0 map uint8 pixels to [0, 1]; a standardisation stores 1/(255·sd) and -mean/sd).
    activations: one name per layer (kernels.ACTIVATIONS), the last identity; default relu hidden
    layers (what a model file without activations holds). Like sizes, fixed once made:
    activation_codes is what the kernels are given.
    """

    def __init__(self, sizes, dtype=np.float32, input_scale=1 / 255, input_shift=0.0, activations=None):
        self.sizes = tuple(int(s) for s in sizes)
        self.activations = hidden_layers(self.sizes) if activations is None else tuple(activations)
        self.activation_codes = activation_codes(self.activations)
        activation_names(self.sizes, self.activation_codes)  # one per layer, the last identity, or ValueError
        self.dtype = np.dtype(dtype)
        self.input_scale = np.broadcast_to(np.asarray(input_scale, self.dtype), self.sizes[:1]).copy()
        self.input_shift = np.broadcast_to(np.asarray(input_shift, self.dtype), self.sizes[:1]).copy()
        self.params = np.zeros(parameter_count(self.sizes), self.dtype)
        self.W, self.b = layer_views(self.params, self.sizes)

    @classmethod
    def he_init(cls, sizes, rng, dtype=np.float32, **kw):
        """He initialisation: W ~ N(0, 2 / fan_in), b = 0, drawn in float64 from rng then rounded."""
        model = cls(sizes, dtype, **kw)
        for W in model.W:
            W[...] = rng.standard_normal(W.shape) * np.sqrt(2.0 / W.shape[0])
        return model

    @property
    def num_classes(self):
        return self.sizes[-1]


class Workspace:
    """What a training step writes, for batches of up to `rows` rows, allocated once per run.

    sizes: the layer sizes as the kernels take them, (L+1,) int64; grads (P,): the batch gradient,
    laid out like the parameters (kernels.layer_views); buffers: the kernels' scratch
    (kernels.mlp_workspace).
    """

    def __init__(self, sizes, rows, dtype, parts=0):
        self.sizes = np.asarray(sizes, np.int64)
        self.buffers = mlp_workspace(tuple(sizes), rows, dtype, parts)
        self.grads = np.zeros(parameter_count(sizes), dtype)


def loss_and_grads(model, backend, images, index, labels, ws, alpha=0.0):
    """Mean cross-entropy of the batch images[index] plus the L2 penalty ½·alpha·Σ‖W‖²/N of the
    weights (scikit-learn's convention, kernels.reference.mlp_gradients); its gradient into ws.grads.

    images are raw pixels (M, D0), mapped to inputs by the model's scale and shift on the way in.
    """
    return backend.mlp_gradients(images, index, labels, model.input_scale, model.input_shift, ws.sizes,
                                 model.activation_codes, model.params, ws.grads, ws.buffers, alpha)


def predict_logits(model, backend, images, batch=2048):
    """Logits for images (M, D0), computed in blocks of rows so memory stays bounded."""
    out = np.empty((len(images), model.num_classes), model.dtype)
    rows = min(batch, max(len(images), 1))
    buffers = mlp_workspace(model.sizes, rows, model.dtype, training=False)
    sizes = np.asarray(model.sizes, np.int64)
    for start in range(0, len(images), rows):
        index = np.arange(start, min(start + rows, len(images)))
        backend.mlp_logits(images, index, model.input_scale, model.input_shift, sizes, model.activation_codes,
                           model.params, out[start : start + len(index)], buffers)
    return out


def probabilities(backend, logits):
    """Softmax class probabilities (N, classes) of logits (N, classes), via the backend's softmax."""
    return backend.softmax(logits, np.empty_like(logits))


def evaluate(model, backend, images, labels):
    """(mean cross-entropy, accuracy) of the model on images and integer labels."""
    if len(labels) == 0:
        return float("nan"), float("nan")
    logits = predict_logits(model, backend, images)
    loss = backend.cross_entropy(logits, labels)
    accuracy = float(np.mean(logits.argmax(axis=1) == labels))
    return loss, accuracy


def check_fits(sizes, images, labels, where, what="the model", classes=None):
    """InputError unless `what` (layer sizes) fits the data `where`: as many inputs as the images have
    pixels, as many outputs as `classes` (when given), and every label one of its classes."""
    if images.ndim != 2 or images.shape[1] != sizes[0]:
        raise InputError(f"{what} takes {sizes[0]} inputs but {where} has images of "
                         f"{images.shape[1] if images.ndim == 2 else '?'} pixels")
    if classes is not None and sizes[-1] != classes:
        raise InputError(f"{what} ends with {sizes[-1]} outputs but {where} has {classes} classes")
    if len(labels) != len(images):
        raise InputError(f"{where} has {len(images)} images but {len(labels)} labels")
    if len(labels) and int(labels.max()) >= sizes[-1]:
        raise InputError(f"{where} has label {int(labels.max())} but {what} has only {sizes[-1]} "
                         f"classes (0..{sizes[-1] - 1})")
