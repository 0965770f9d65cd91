"""A ReLU multilayer perceptron with a softmax output, and its forward and backward passes.

Shapes: N rows in a batch, sizes = (D0, D1, ..., DL): D0 inputs, DL classes.
Layout: samples are rows (N, D), weights are (D_in, D_out), so a layer is X·W + b. A shuffled
batch is then a gather of whole rows into one contiguous block, the products are plain row-major
GEMMs that BLAS likes, and per-sample work (softmax, loss) walks contiguous rows.

All parameters live in one flat buffer (and all gradients in another) with per-layer views, so
an optimiser updates the whole network in one kernel call.
"""

import numpy as np

from .errors import InputError


def parse_layers(text):
    """'784,128,10' -> (784, 128, 10); at least an input and an output size, all positive."""
    try:
        sizes = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise InputError(f"--layers must be comma-separated integers like 784,128,10, got {text!r}") from None
    if len(sizes) < 2 or min(sizes) <= 0:
        raise InputError(f"--layers needs at least two positive sizes (inputs and classes), got {text!r}")
    if sum(a * b + b for a, b in zip(sizes, sizes[1:])) > 500_000_000:
        raise InputError(f"--layers {text} would need more than 500 million parameters")
    return sizes


def _layer_views(flat, sizes):
    """Split a flat (P,) buffer into per-layer views W[l] (D_l, D_l+1) and b[l] (D_l+1,)."""
    Ws, bs, at = [], [], 0
    for d_in, d_out in zip(sizes, sizes[1:]):
        Ws.append(flat[at : at + d_in * d_out].reshape(d_in, d_out))
        at += d_in * d_out
        bs.append(flat[at : at + d_out])
        at += d_out
    return Ws, bs


class MLP:
    """Parameters and gradients of the network, plus how raw pixels become inputs.

    Inputs are pixels * input_scale + input_shift, per pixel: (D0,) vectors in the model's dtype
    (1/255 and 0 map uint8 pixels to [0, 1]; a standardisation stores 1/(255·sd) and -mean/sd).
    """

    def __init__(self, sizes, dtype=np.float32, input_scale=1 / 255, input_shift=0.0):
        self.sizes = tuple(int(s) for s in sizes)
        self.dtype = np.dtype(dtype)
        self.input_scale = np.broadcast_to(np.asarray(input_scale, self.dtype), self.sizes[:1]).copy()
        self.input_shift = np.broadcast_to(np.asarray(input_shift, self.dtype), self.sizes[:1]).copy()
        count = sum(a * b + b for a, b in zip(self.sizes, self.sizes[1:]))
        self.params = np.zeros(count, self.dtype)
        self.grads = np.zeros(count, self.dtype)
        self.W, self.b = _layer_views(self.params, self.sizes)
        self.dW, self.db = _layer_views(self.grads, self.sizes)

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
    """Activation and gradient buffers for batches of up to `rows` rows, allocated once.

    acts[l] holds layer l's output (ReLU applied for hidden layers, logits for the last);
    deltas[l] holds dLoss/d(layer l's pre-activation). A smaller batch uses their first rows.
    """

    def __init__(self, sizes, rows, dtype):
        self.rows = rows
        self.inputs = np.empty((rows, sizes[0]), dtype)
        self.acts = [np.empty((rows, d), dtype) for d in sizes[1:]]
        self.deltas = [np.empty((rows, d), dtype) for d in sizes[1:]]

    def first(self, n):
        """Views of the first n rows of every buffer (contiguous, since rows are the outer axis)."""
        return [a[:n] for a in self.acts], [d[:n] for d in self.deltas]


def forward(model, K, X, acts):
    """Logits for X (N, D0) via kernel module K, writing each layer's output into acts; returns acts[-1]."""
    A = X
    last = len(model.W) - 1
    for l, (W, b) in enumerate(zip(model.W, model.b)):
        K.linear_forward(A, W, b, acts[l], l < last)
        A = acts[l]
    return A


def loss_and_grads(model, K, X, y, ws):
    """Mean cross-entropy of batch (X, y); fills model.grads by backpropagation. Returns the loss.

    The output layer's delta is the fused dZ = (softmax(Z) - Y) / N. No gradient is formed for
    the network's input X: the first layer's linear_backward gets dX = None.
    """
    acts, deltas = ws.first(len(y))
    forward(model, K, X, acts)
    loss = K.softmax_cross_entropy(acts[-1], y, deltas[-1])
    inputs = [X] + acts[:-1]
    for l in reversed(range(len(model.W))):
        dX = deltas[l - 1] if l > 0 else None
        K.linear_backward(deltas[l], inputs[l], model.W[l], model.dW[l], model.db[l], dX, l > 0)
    return loss


def predict_logits(model, K, images, batch=2000):
    """Logits for uint8 images (M, D0), computed in batches so memory stays bounded."""
    out = np.empty((len(images), model.num_classes), model.dtype)
    ws = Workspace(model.sizes, min(batch, max(len(images), 1)), model.dtype)
    for start in range(0, len(images), ws.rows):
        n = min(ws.rows, len(images) - start)
        X = ws.inputs[:n]
        K.gather_rows(images, np.arange(start, start + n), model.input_scale, model.input_shift, X)
        acts, _ = ws.first(n)
        out[start : start + n] = forward(model, K, X, acts)
    return out


def evaluate(model, K, images, labels):
    """(mean cross-entropy, accuracy) of the model on uint8 images and integer labels."""
    if len(labels) == 0:
        return float("nan"), float("nan")
    logits = predict_logits(model, K, images)
    loss = K.cross_entropy(logits, labels)
    accuracy = float(np.mean(logits.argmax(axis=1) == labels))
    return loss, accuracy
