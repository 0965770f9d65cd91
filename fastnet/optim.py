"""Optimisers over a model's flat parameter buffer, and learning-rate schedules.

An optimiser's train_step runs one whole training step through a backend: the gradients of a
batch, then the update; train_steps runs many. Adam's are one kernel call (mlp_adam_step,
mlp_adam_steps), so the numba backend can update each band of parameters while its gradients are
still in cache, and run many steps without returning to Python. Both minimise the mean cross-entropy
plus an L2 penalty of the weights, alpha (0: none), as scikit-learn's MLPClassifier does
(kernels.reference.mlp_gradients); alpha is a setting of the run, like Adam's betas.
"""

import math

import numpy as np

from .model import loss_and_grads


def _alpha(alpha):
    """alpha as a float, or ValueError unless it is finite and >= 0."""
    if not 0 <= alpha < float("inf"):
        raise ValueError(f"alpha (the L2 penalty) must be a finite number >= 0, got {alpha}")
    return float(alpha)


class GD:
    """Plain gradient descent: p = p - lr·g."""

    name = "gd"
    HYPER = ("alpha",)  # hyper-parameters taken from the run's settings

    def __init__(self, size, dtype, alpha=0.0):
        self.alpha = _alpha(alpha)
        self.step = 0

    def update(self, backend, params, grads, lr):
        """One step; True when every parameter is still finite."""
        self.step += 1
        return backend.sgd_update(params, grads, lr)

    def train_step(self, backend, model, images, index, labels, ws, lr):
        """Gradients of the batch images[index], then one step: (loss, every parameter finite)."""
        loss = loss_and_grads(model, backend, images, index, labels, ws, self.alpha)
        return loss, self.update(backend, model.params, ws.grads, lr)

    def train_steps(self, backend, model, images, order, starts, labels, ws, lrs, limit):
        """train_step on the batches images[order[starts[k]:starts[k + 1]]] with learning rates lrs,
        stopping after a step whose loss is not finite or above limit, or that leaves a parameter
        not finite: (the steps' losses, float64; the last step's parameters finite)."""
        losses, finite = [], True
        for k, lr in enumerate(lrs):
            loss, finite = self.train_step(backend, model, images, order[starts[k] : starts[k + 1]], labels, ws, lr)
            losses.append(loss)
            if not (finite and math.isfinite(loss) and loss <= limit):
                break
        return np.array(losses, np.float64), finite

    def state(self):
        return {"step": np.array(self.step)}

    def load_state(self, state):
        self.step = int(state["step"])


class Adam:
    """Adam with bias-corrected moments; beta1 drives the first moment, beta2 the second."""

    name = "adam"
    HYPER = ("beta1", "beta2", "eps", "alpha")

    def __init__(self, size, dtype, beta1=0.9, beta2=0.999, eps=1e-8, alpha=0.0):
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1 and 0 < eps < float("inf")):
            raise ValueError(f"Adam needs 0 <= beta1, beta2 < 1 and eps > 0, got {beta1}, {beta2}, {eps}")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.alpha = _alpha(alpha)
        self.m = np.zeros(size, dtype)
        self.v = np.zeros(size, dtype)
        self.step = 0

    def update(self, backend, params, grads, lr):
        self.step += 1
        return backend.adam_update(params, grads, self.m, self.v, self.step, lr, self.beta1, self.beta2, self.eps)

    def train_step(self, backend, model, images, index, labels, ws, lr):
        """Gradients of the batch images[index] and the Adam step, in one kernel call: (loss, finite)."""
        self.step += 1
        return backend.mlp_adam_step(images, index, labels, model.input_scale, model.input_shift, ws.sizes,
                                     model.activation_codes, model.params, ws.grads, self.m, self.v, self.step, lr,
                                     self.beta1, self.beta2, self.eps, ws.buffers, self.alpha)

    def train_steps(self, backend, model, images, order, starts, labels, ws, lrs, limit):
        """GD.train_steps's steps, all in one kernel call (mlp_adam_steps): no Python between them."""
        losses, finite = backend.mlp_adam_steps(images, order, starts, labels, model.input_scale, model.input_shift,
                                                ws.sizes, model.activation_codes, model.params, ws.grads, self.m,
                                                self.v, self.step + 1, lrs, self.beta1, self.beta2, self.eps,
                                                ws.buffers, self.alpha, limit)
        self.step += len(losses)
        return losses, finite

    def state(self):
        return {"step": np.array(self.step), "m": self.m, "v": self.v}

    def load_state(self, state):
        self.step = int(state["step"])
        self.m[...] = state["m"]
        self.v[...] = state["v"]


OPTIMIZERS = {"adam": Adam, "gd": GD}


def learning_rate(base, schedule, step, total_steps, warmup=0):
    """The learning rate at optimiser step `step` (0-based) of `total_steps`.

    constant: base. cosine: linear warm-up over `warmup` steps, then base·(1 + cos(pi·t))/2 with
    t going from 0 to 1 over the remaining steps, so the last step's rate is near zero.
    """
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    if schedule == "constant":
        return base
    t = (step - warmup) / max(total_steps - warmup, 1)
    return base * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
