"""python -m fastnet.gradcheck: backprop gradients against central differences, in float64.

For a parameter θ_i the numerical derivative is (J(θ + ε e_i) − J(θ − ε e_i)) / 2ε. The check
reports ||numerical − backprop|| / (||numerical|| + ||backprop||) over the checked parameters;
below 1e-7 the hand-derived backward pass is right to the precision the differences allow.
J is the training loss: the mean cross-entropy plus the L2 penalty ½·alpha·Σ‖W‖²/N (--alpha).
"""

import numpy as np

from kernels import ACTIVATIONS

from . import data
from .backend import BACKEND_NAMES, DEFAULT_BACKEND, get_backend
from .cli import ArgumentParser, non_negative_int, positive_int, run
from .errors import InputError
from .model import MLP, Workspace, check_fits, hidden_layers, loss_and_grads, parse_layers, predict_logits
from .threads import set_threads

THRESHOLD = 1e-7


def choose_parameters(model, per_tensor, rng):
    """Flat indices of up to per_tensor random entries of every W and every b, so each layer is covered."""
    picks, at = [], 0
    for W, b in zip(model.W, model.b):
        for size in (W.size, b.size):
            picks.append(at + rng.choice(size, min(per_tensor, size), replace=False))
            at += size
    return np.concatenate(picks)


def kink_sides(model, images):
    """Which side of its kink each ReLU unit is on (pre-activation > 0), for each image: one bool
    array, computed in float64 with the reference's activations."""
    from kernels.reference import ACTIVATION_FUNCTIONS

    A = images * model.input_scale.astype(np.float64) + model.input_shift
    sides = []
    for W, b, name in zip(model.W[:-1], model.b[:-1], model.activations):
        Z = A @ W + b
        if name == "relu":
            sides.append((Z > 0).ravel())
        A = ACTIVATION_FUNCTIONS[name].forward(Z)
    return np.concatenate(sides) if sides else np.zeros(0, bool)


def gradient_check(model, kernels, images, labels, indices, eps=1e-6, alpha=0.0):
    """(relative difference between backprop and central differences at `indices`, probes skipped),
    for the loss with the L2 penalty alpha.

    model must be float64; images (N, D0) pixels, labels (N,). The loss is evaluated with the
    same kernels; the parameter is restored after each probe. A probe that switches a ReLU on or off
    (a unit within eps of its kink, such as zero inputs times zero biases) measures the average of
    two one-sided slopes, not the derivative: it is skipped and counted, as torch.autograd.gradcheck
    users do, instead of raising a false alarm.
    """
    ws = Workspace(model.sizes, len(labels), model.dtype)
    loss_and_grads(model, kernels, images, np.arange(len(labels)), labels, ws, alpha)
    base = kink_sides(model, images)

    def probe(value):
        model.params[i] = value
        penalty = 0.5 * alpha * sum(float(np.sum(W**2)) for W in model.W) / len(labels)
        loss = kernels.cross_entropy(predict_logits(model, kernels, images), labels) + penalty
        return loss, kink_sides(model, images)

    numeric, kept = [], []
    for i in indices:
        saved = model.params[i]
        (plus, plus_signs), (minus, minus_signs) = probe(saved + eps), probe(saved - eps)
        model.params[i] = saved
        if np.array_equal(plus_signs, base) and np.array_equal(minus_signs, base):
            numeric.append((plus - minus) / (2 * eps))
            kept.append(i)
    numeric, backprop = np.array(numeric), ws.grads[kept]
    diff = np.linalg.norm(numeric - backprop)
    return float(diff / max(np.linalg.norm(numeric) + np.linalg.norm(backprop), 1e-300)), len(indices) - len(kept)


def main(argv=None):
    p = ArgumentParser(prog="python -m fastnet.gradcheck", description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=positive_int, default=10, help="real training samples used (default 10)")
    p.add_argument("--per-tensor", type=positive_int, default=40, help="random entries checked per W and b")
    p.add_argument("--layers", default="784,128,10")
    p.add_argument("--activation", choices=ACTIVATIONS, default="relu", help="activation of the hidden layers")
    p.add_argument("--alpha", type=float, default=0.0, help="L2 penalty of the weights (default 0)")
    p.add_argument("--backend", choices=BACKEND_NAMES, default=DEFAULT_BACKEND)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--dataset", choices=tuple(data.DATASETS), default="fashion-mnist")
    p.add_argument("--data-dir", help=data.DATA_DIR_HELP)
    args = p.parse_args(argv)
    if not 0 <= args.alpha < float("inf"):
        raise InputError(f"--alpha must be a finite number >= 0, got {args.alpha}")
    kernels = get_backend(args.backend)
    set_threads(None, kernels.BLAS_THREADS)
    train = data.load(args.dataset, "train", args.data_dir)
    images, labels = train.images, train.labels
    rng = np.random.default_rng(args.seed)
    rows = rng.choice(len(labels), min(args.samples, len(labels)), replace=False)
    sizes = parse_layers(args.layers)
    model = MLP.he_init(sizes, rng, np.float64, activations=hidden_layers(sizes, args.activation))
    check_fits(model.sizes, images, labels, "the training set", "--layers")
    indices = choose_parameters(model, args.per_tensor, rng)
    diff, skipped = gradient_check(model, kernels, images[rows], labels[rows], indices, alpha=args.alpha)
    print(f"checked {len(indices) - skipped} of {model.params.size} parameters on {len(rows)} samples "
          f"(every layer's W and b), float64, backend {args.backend}, {args.activation} hidden layers, "
          f"alpha {args.alpha:g}")
    if skipped:
        print(f"skipped {skipped} probes that switched a ReLU on or off (a unit at its kink)")
    if skipped == len(indices):
        raise InputError("every probe crossed a ReLU kink: nothing could be checked (try another --seed)")
    print(f"relative difference: {diff:.3e}")
    return 0 if diff < THRESHOLD else 1


if __name__ == "__main__":
    run(main)
