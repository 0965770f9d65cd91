"""python -m fastnet.gradcheck: backprop gradients against central differences, in float64.

For a parameter θ_i the numerical derivative is (J(θ + ε e_i) − J(θ − ε e_i)) / 2ε. The check
reports ||numerical − backprop|| / (||numerical|| + ||backprop||) over the checked parameters;
below 1e-7 the hand-derived backward pass is right to the precision the differences allow.
"""

import numpy as np

from . import data
from .backend import BACKENDS, DEFAULT_BACKEND, get_backend
from .cli import ArgumentParser, positive_int, run
from .errors import InputError
from .model import MLP, Workspace, loss_and_grads, parse_layers, predict_logits
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


def gradient_check(model, K, images, labels, indices, eps=1e-6):
    """Relative difference between backprop and central-difference gradients at `indices`.

    model must be float64; images (N, D0) pixels, labels (N,). The loss is evaluated with the
    same kernels K; the parameter is restored after each probe.
    """
    ws = Workspace(model.sizes, len(labels), model.dtype)
    loss_and_grads(model, K, images, np.arange(len(labels)), labels, ws)
    backprop = ws.grads[indices].copy()

    def loss():
        return K.cross_entropy(predict_logits(model, K, images), labels)

    numeric = np.empty(len(indices))
    for k, i in enumerate(indices):
        saved = model.params[i]
        model.params[i] = saved + eps
        plus = loss()
        model.params[i] = saved - eps
        minus = loss()
        model.params[i] = saved
        numeric[k] = (plus - minus) / (2 * eps)
    diff = np.linalg.norm(numeric - backprop)
    return float(diff / max(np.linalg.norm(numeric) + np.linalg.norm(backprop), 1e-300))


def main(argv=None):
    p = ArgumentParser(prog="python -m fastnet.gradcheck", description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=positive_int, default=10, help="real training samples used (default 10)")
    p.add_argument("--per-tensor", type=positive_int, default=40, help="random entries checked per W and b")
    p.add_argument("--layers", default="784,128,10")
    p.add_argument("--backend", choices=tuple(BACKENDS), default=DEFAULT_BACKEND)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset", choices=tuple(data.DATASETS), default="fashion-mnist")
    p.add_argument("--data-dir")
    args = p.parse_args(argv)
    K = get_backend(args.backend)
    set_threads(None, K.BLAS_THREADS)
    images, labels = data.load_split(args.dataset, "train", args.data_dir)
    rng = np.random.default_rng(args.seed)
    rows = rng.choice(len(labels), min(args.samples, len(labels)), replace=False)
    model = MLP.he_init(parse_layers(args.layers), rng, np.float64)
    if model.sizes[0] != images.shape[1] or model.num_classes <= int(labels.max()):
        raise InputError(f"--layers {args.layers} does not fit the data "
                         f"({images.shape[1]} pixels, labels up to {int(labels.max())})")
    indices = choose_parameters(model, args.per_tensor, rng)
    diff = gradient_check(model, K, images[rows], labels[rows], indices)
    print(f"checked {len(indices)} of {model.params.size} parameters on {len(rows)} samples "
          f"(every layer's W and b), float64, backend {args.backend}")
    print(f"relative difference: {diff:.3e}")
    return 0 if diff < THRESHOLD else 1


if __name__ == "__main__":
    run(main)
