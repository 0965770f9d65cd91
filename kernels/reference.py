"""NumPy reference kernels: the specification that the JIT twins in `kernels.jit` must match.

Each function reads like its maths. Where it is cheap, the reference is more precise than the
fast path: softmax and cross-entropy work in float64 and round once at the end. Outputs keep
the dtype of the inputs. Every function takes its output buffers as arguments (`out`, `dZ`, ...)
so a fast twin with the same signature can write in place; the reference may allocate freely.

Shapes: N rows in the batch, D inputs of a layer, H outputs of a layer, K classes, P parameters.
Rows are samples (row-major, samples x features): a batch is a contiguous block of rows.
"""

import math
from typing import Callable, NamedTuple

import numpy as np

from . import activation_names, layer_views

BLAS_THREADS = None  # BLAS may use every thread: the products are the only parallel work here


def _store(value, out):
    """Write value into out (rounding to out's dtype) and return out."""
    out[...] = value
    return out


def gather_rows(images, index, scale, shift, out):
    """out[i] = images[index[i]] * scale + shift: a shuffled batch of pixels as floats.

    images (M, D) uint8, index (N,) integer, scale and shift (D,) per pixel, out (N, D) float.
    scale and shift turn pixels into network inputs (1/255 and 0 for [0, 1]; or a standardisation).
    """
    rows = images[index].astype(np.float64)
    return _store(rows * scale + shift, out)


def _identity(Z):
    return Z


def _identity_backward(dA, A):
    return dA


def _relu(Z):
    return np.maximum(Z, 0)


def _relu_backward(dA, A):
    """relu' is 1 where A > 0 (exactly where Z > 0), else 0: dA passes where the unit was active."""
    return np.where(A > 0, dA, 0)


def _tanh(Z):
    return np.tanh(np.asarray(Z, np.float64))


def _tanh_backward(dA, A):
    """tanh' = 1 - A², written (1 - A)(1 + A): 1 - A is exact for A near ±1, where 1 - A² would cancel."""
    A = np.asarray(A, np.float64)
    return dA * (1 - A) * (1 + A)


def _logistic(Z):
    """1 / (1 + e^-z) through e = e^-|z| <= 1, which cannot overflow: 1/(1 + e) for z >= 0, e/(1 + e) below."""
    Z = np.asarray(Z, np.float64)
    E = np.exp(-np.abs(Z))
    return np.where(Z >= 0, 1, E) / (1 + E)


def _logistic_backward(dA, A):
    """logistic' = A·(1 - A)."""
    A = np.asarray(A, np.float64)
    return dA * A * (1 - A)


class Activation(NamedTuple):
    """An activation f: forward Z -> A = f(Z), and backward (dA, A) -> dZ = dA·f'(Z).

    The derivative is written through the output A, which the backward pass keeps anyway, so no
    layer has to store its Z (relu: A > 0; tanh: 1 - A²; logistic: A·(1 - A)). tanh and logistic
    are computed in float64 and rounded once when stored.
    """

    forward: Callable
    backward: Callable


# Every name of kernels.ACTIVATIONS; the kernels.jit twins are its _forward and _backward.
ACTIVATION_FUNCTIONS = {
    "identity": Activation(_identity, _identity_backward),
    "relu": Activation(_relu, _relu_backward),
    "tanh": Activation(_tanh, _tanh_backward),
    "logistic": Activation(_logistic, _logistic_backward),
}


def linear_forward(X, W, b, out, activation):
    """out = f(X·W + b), f the named activation. X (N, D), W (D, H), b (H,) -> out (N, H)."""
    return _store(ACTIVATION_FUNCTIONS[activation].forward(X @ W + b), out)


def activation_forward(Z, out, activation):
    """out = f(Z), f the named activation. Z (N, H) -> out (N, H)."""
    return _store(ACTIVATION_FUNCTIONS[activation].forward(Z), out)


def activation_backward(dA, A, out, activation):
    """out = dA·f'(Z), the gradient through the named activation, written through its output A = f(Z).

    dA (N, H) the gradient w.r.t. A, A (N, H) -> out (N, H).
    """
    return _store(ACTIVATION_FUNCTIONS[activation].backward(dA, A), out)


def softmax(Z, out):
    """out[n] = exp(Z[n] - max Z[n]) / sum exp(Z[n] - max Z[n]). Z (N, K) -> out (N, K).

    Subtracting the row maximum keeps exp from overflowing; the result is unchanged.
    """
    Z = Z.astype(np.float64)
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return _store(E / E.sum(axis=1, keepdims=True), out)


def cross_entropy(Z, y):
    """Mean over rows of -log softmax(Z[n])[y[n]] = log sum exp(Z[n] - m) - (Z[n, y[n]] - m).

    Z (N, K) logits, y (N,) class indices -> float. Computed from logits, never log(softmax):
    log sum exp(Z - m) >= 0 because the maximum's term is exp(0) = 1, so no log(0) can occur.
    Both terms are taken relative to the row maximum m, so K equal logits of 1e6 give exactly ln K.
    """
    Z = Z.astype(np.float64)
    shifted = Z - Z.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(shifted).sum(axis=1))
    picked = shifted[np.arange(len(y)), y]
    return float(np.mean(log_sum - picked))


def softmax_xent_backward(A, y, out):
    """out = (A - Y) / N: the gradient of the mean cross-entropy w.r.t. the logits.

    A (N, K) softmax output, y (N,) class indices (Y their one-hot rows) -> out (N, K).
    """
    Y = np.zeros(A.shape)
    Y[np.arange(len(y)), y] = 1.0
    return _store((A.astype(np.float64) - Y) / len(y), out)


def softmax_cross_entropy(Z, y, dZ):
    """Fused output layer: returns the mean cross-entropy of logits Z and writes dZ = (A - Y) / N."""
    A = softmax(Z, np.empty(Z.shape))
    softmax_xent_backward(A, y, dZ)
    return cross_entropy(Z, y)


def linear_backward(dZ, X, W, dW, db, dX, activation):
    """Gradients of a linear layer out = X·W + b, given dZ = dLoss/dout.

    dW = Xᵀ·dZ (D, H), db = sum over rows of dZ (H,), and unless dX is None (the input layer: no
    one needs dLoss/dX) dX = (dZ·Wᵀ)·f'(X's pre-activation), where X (N, D) is the output of the
    named activation f (identity for the network's input). dZ (N, H), W (D, H).
    """
    _store(X.T @ dZ, dW)
    _store(dZ.sum(axis=0), db)
    if dX is not None:
        _store(ACTIVATION_FUNCTIONS[activation].backward(dZ @ W.T, X), dX)


def mlp_gradients(images, index, labels, scale, shift, sizes, activations, params, grads, work, alpha=0.0):
    """Loss of the batch images[index] through the MLP; its gradient into grads.

    Loss = mean cross-entropy over the N rows + ½·alpha·Σ_l ‖W_l‖² / N, an L2 penalty of the
    weights (not the biases) exactly as scikit-learn's MLPClassifier adds it (its _backprop:
    loss += 0.5·alpha·Σ w·w / n_samples; dW = (Aᵀ·δ + alpha·W) / n_samples), so dW gains alpha·W/N.
    sizes (L+1,) = (D0, ..., K) and activations (L,) codes describe the network (kernels);
    params and grads (P,) hold W0, b0, W1, b1, ... (kernels.layer_views). Gather and scale the N
    rows, forward layer by layer, softmax, dZ = (A - Y)/N at the output, then backward layer by
    layer without the unused dX of the input layer. work is not needed here.
    """
    return _gradients(images, index, labels, scale, shift, sizes, activations, params, grads, alpha)[0]


def _gradients(images, index, labels, scale, shift, sizes, activations, params, grads, alpha):
    """mlp_gradients' loss, and the batch's logits (N, K)."""
    names = activation_names(sizes, activations)
    Ws, bs = layer_views(params, sizes)
    dWs, dbs = layer_views(grads, sizes)
    n, y = len(index), labels[index]
    acts = [gather_rows(images, index, scale, shift, np.empty((n, sizes[0]), params.dtype))]
    for W, b, name in zip(Ws, bs, names):
        acts.append(linear_forward(acts[-1], W, b, np.empty((n, W.shape[1]), params.dtype), name))
    Z = acts.pop()
    dZ = np.empty_like(Z)
    loss = softmax_cross_entropy(Z, y, dZ)
    for l in reversed(range(len(Ws))):
        dX = np.empty_like(acts[l]) if l > 0 else None
        linear_backward(dZ, acts[l], Ws[l], dWs[l], dbs[l], dX, names[l - 1] if l > 0 else "identity")
        dZ = dX
    if alpha:  # alpha = 0 leaves the gradient as it was (adding 0·W would turn a -0.0 into +0.0)
        for W, dW in zip(Ws, dWs):
            _store(dW + alpha / n * W.astype(np.float64), dW)
        loss += 0.5 * alpha * float(sum(np.sum(W.astype(np.float64) ** 2) for W in Ws)) / n
    return loss, Z


def mlp_adam_step(images, index, labels, scale, shift, sizes, activations, params, grads, m, v, step, lr, beta1,
                  beta2, eps, work, alpha=0.0):
    """One Adam training step on the batch: mlp_gradients (with its L2 penalty alpha), then adam_update.
    Returns (loss, p finite)."""
    losses, finite = mlp_train_steps(images, index, [0, len(index)], labels, scale, shift, sizes, activations, params,
                                     grads, "adam", (m, v), (beta1, beta2, eps), step, [lr], work, alpha)
    return float(losses[0]), finite


def mlp_train_steps(images, order, starts, labels, scale, shift, sizes, activations, params, grads, optimizer, state,
                    hyper, step, lrs, work, alpha=0.0, limit=math.inf, correct=None):
    """Training steps on the batches images[order[starts[k]:starts[k + 1]]], k = 0, 1, ...: mlp_gradients
    (with its L2 penalty alpha), then the update of `optimizer` (kernels.OPTIMIZERS) with its state
    (kernels.OPTIMIZER_STATE: Adam's m, v; nothing for gd) and hyper-parameters (OPTIMIZER_HYPER:
    Adam's beta1, beta2, eps), as optimiser step number step + k with learning rate lrs[k]. Stops
    after a step whose loss is not finite or above limit, or that leaves a parameter not finite.
    Returns (the steps' losses, float64, one per step taken; p finite). correct (an int64 array of a
    length per step), when given, gets each step's count of rows whose logits (before its update)
    are largest at the row's label: an epoch's running accuracy with no pass of its own (np.argmax's
    rule: the first of equal largest). A training loop runs many steps a call: the JIT twin runs
    them all in one compiled call, without Python between steps."""
    bounds = np.asarray(starts).tolist()
    if len(bounds) < 2 or bounds[0] < 0 or bounds[-1] > len(order) or min(np.diff(bounds)) < 1:
        raise ValueError(f"starts must be 2 or more increasing offsets into the {len(order)} rows of order")
    if len(lrs) != len(bounds) - 1:
        raise ValueError(f"{len(bounds) - 1} steps need as many learning rates, got {len(lrs)}")
    if optimizer not in UPDATES:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(UPDATES)}")
    losses, finite = [], True
    for k, lr in enumerate(lrs):
        index = order[starts[k] : starts[k + 1]]
        loss, logits = _gradients(images, index, labels, scale, shift, sizes, activations, params, grads, alpha)
        if correct is not None:
            correct[k] = np.count_nonzero(logits.argmax(axis=1) == labels[index])
        finite = UPDATES[optimizer](params, grads, state, step + k, lr, hyper)
        losses.append(loss)
        if not (finite and math.isfinite(loss) and loss <= limit):
            break
    return np.array(losses, np.float64), finite


def mlp_logits(images, index, scale, shift, sizes, activations, params, out, work):
    """Logits of images[index] through the MLP of mlp_gradients, into out (N, K). work is not needed.

    A row's logits are its own bits: the same wherever the row stands in index, and on any number
    of threads. So each layer is linear_forward with its product X·W summed by np.einsum, which runs
    the same loop for every row, instead of BLAS (X @ W), whose blocked kernels compute a row with
    other code depending on its place in the block, the block's size and BLAS's threads.
    """
    names = activation_names(sizes, activations)
    Ws, bs = layer_views(params, sizes)
    A = gather_rows(images, index, scale, shift, np.empty((len(index), sizes[0]), params.dtype))
    for W, b, name in zip(Ws, bs, names):
        Z = np.einsum("nd,dh->nh", A, W) + b
        A = _store(ACTIVATION_FUNCTIONS[name].forward(Z), np.empty(Z.shape, params.dtype))
    return _store(A, out)


def adam_update(p, g, m, v, step, lr, beta1, beta2, eps):
    """One Adam step (Kingma & Ba, 2015) on flat buffers p, g, m, v of shape (P,), in place.

    m = beta1·m + (1 - beta1)·g          first moment, decays with beta1
    v = beta2·v + (1 - beta2)·g²         second moment, decays with beta2
    p = p - lr · m̂ / (sqrt(v̂) + eps),   m̂ = m / (1 - beta1^step), v̂ = v / (1 - beta2^step)
    step counts from 1. Computed in p's dtype, as the JIT twin does: float64 here would cost more
    than the whole forward pass. Returns True when every updated parameter is finite.

    Moments below the dtype's smallest normal number are flushed to 0. A weight whose gradient is
    exactly 0 from some step on (the weight of a pixel that is 0 in every later image) has moments
    that decay geometrically into the subnormal range and stay there (0.9 times the smallest
    subnormal rounds back to it), where x86 arithmetic is slow (docs/performance.md#subnormal-numbers).
    The flush changes such a weight's step by less than lr·tiny/eps (1e-33 in float32): far below
    any tolerance.
    """
    tiny = np.finfo(p.dtype).tiny
    m[...] = beta1 * m + (1 - beta1) * g
    v[...] = beta2 * v + (1 - beta2) * g**2
    m[np.abs(m) < tiny] = 0
    v[v < tiny] = 0
    m_hat = m / (1 - beta1**step)
    v_hat = v / (1 - beta2**step)
    p -= lr * m_hat / (np.sqrt(v_hat) + eps)
    return all_finite(p)


def sgd_update(p, g, lr):
    """Plain gradient descent on flat buffers, in place: p = p - lr·g. True when p stays finite."""
    p -= lr * g
    return all_finite(p)


def all_finite(x):
    """True when no element of x is NaN or infinite."""
    return bool(np.isfinite(x).all())


# The update rules of kernels.OPTIMIZERS, as mlp_train_steps calls them: (p, g, state, step, lr, hyper).
UPDATES = {
    "gd": lambda p, g, state, step, lr, hyper: sgd_update(p, g, lr),
    "adam": lambda p, g, state, step, lr, hyper: adam_update(p, g, *state, step, lr, *hyper),
}
