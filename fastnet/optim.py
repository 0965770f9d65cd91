"""Optimisers over a model's flat parameter buffer, and learning-rate schedules.

An optimiser's train_step runs one whole training step through a backend: the gradients of a
batch, then the update; train_steps runs many, in one kernel call (mlp_train_steps) whatever the
optimiser: its update is chosen inside the kernel by its name. Both minimise the mean cross-entropy
plus an L2 penalty of the weights, alpha (0: none), as scikit-learn's MLPClassifier does
(kernels.reference.mlp_gradients); alpha is a setting of the run, like Adam's betas.
"""

import math

import numpy as np

from kernels import OPTIMIZER_HYPER, OPTIMIZER_STATE


def _alpha(alpha):
    """alpha as a float, or ValueError unless it is finite and >= 0."""
    if not 0 <= alpha < float("inf"):
        raise ValueError(f"alpha (the L2 penalty) must be a finite number >= 0, got {alpha}")
    return float(alpha)


class Optimizer:
    """An update rule of the kernels (kernels.OPTIMIZERS: `name`), its state per parameter and its
    hyper-parameters. Training steps run through one kernel for every optimiser (mlp_train_steps),
    so the numba backend updates each band of parameters while its gradients are still in cache,
    and runs many steps without returning to Python. A new optimiser: its update rule in each
    backend, its name, state and hyper-parameters in kernels, and a subclass here."""

    name = None
    HYPER = ("alpha",)  # hyper-parameters taken from the run's settings

    def __init__(self, size, dtype, alpha=0.0):
        self.alpha = _alpha(alpha)
        self.buffers = tuple(np.zeros(size, dtype) for _ in OPTIMIZER_STATE[self.name])
        self.step = 0

    def hyper(self):
        """The hyper-parameters the kernels take (kernels.OPTIMIZER_HYPER), in their order."""
        return tuple(getattr(self, k) for k in OPTIMIZER_HYPER[self.name])

    def train_steps(self, backend, model, images, order, starts, labels, ws, lrs, limit, correct=None):
        """Training steps on the batches images[order[starts[k]:starts[k + 1]]] with learning rates
        lrs, in one kernel call, stopping after a step whose loss is not finite or above limit, or
        that leaves a parameter not finite: (the steps' losses, float64; the last step's parameters
        finite). correct: where each step's count of rows predicted right goes (mlp_train_steps)."""
        losses, finite = backend.mlp_train_steps(images, order, starts, labels, model.input_scale, model.input_shift,
                                                 ws.sizes, model.activation_codes, model.params, ws.grads, self.name,
                                                 self.buffers, self.hyper(), self.step + 1, lrs, ws.buffers,
                                                 self.alpha, limit, correct)
        self.step += len(losses)
        return losses, finite

    def train_step(self, backend, model, images, index, labels, ws, lr):
        """One training step on the batch images[index]: (loss, every parameter finite)."""
        losses, finite = self.train_steps(backend, model, images, index, [0, len(index)], labels, ws, [lr], math.inf)
        return float(losses[0]), finite

    def state(self):
        return {"step": np.array(self.step), **dict(zip(OPTIMIZER_STATE[self.name], self.buffers))}

    def load_state(self, state):
        self.step = int(state["step"])
        for name, buffer in zip(OPTIMIZER_STATE[self.name], self.buffers):
            buffer[...] = state[name]


class GD(Optimizer):
    """Plain gradient descent: p = p - lr·g."""

    name = "gd"

    def update(self, backend, params, grads, lr):
        """One step from gradients already computed; True when every parameter is still finite."""
        self.step += 1
        return backend.sgd_update(params, grads, lr)


class Adam(Optimizer):
    """Adam with bias-corrected moments; beta1 drives the first moment, beta2 the second."""

    name = "adam"
    HYPER = ("beta1", "beta2", "eps", "alpha")

    def __init__(self, size, dtype, beta1=0.9, beta2=0.999, eps=1e-8, alpha=0.0):
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1 and 0 < eps < float("inf")):
            raise ValueError(f"Adam needs 0 <= beta1, beta2 < 1 and eps > 0, got {beta1}, {beta2}, {eps}")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        super().__init__(size, dtype, alpha)

    @property
    def m(self):
        return self.buffers[0]

    @property
    def v(self):
        return self.buffers[1]

    def update(self, backend, params, grads, lr):
        """One step from gradients already computed; True when every parameter is still finite."""
        self.step += 1
        return backend.adam_update(params, grads, self.m, self.v, self.step, lr, self.beta1, self.beta2, self.eps)


OPTIMIZERS = {"adam": Adam, "gd": GD}


def schedule_of(recipe):
    """The recipe's learning rate as rate(step, total_steps): what the training loop asks each step."""
    return lambda step, total_steps: learning_rate(recipe.lr, recipe.schedule, step, total_steps, recipe.warmup)


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
