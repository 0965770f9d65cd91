"""Compute primitives of an MLP, twice: `kernels.reference` (NumPy, reads like the maths) and
`kernels.jit` (Numba, fast). Both export the same names with the same signatures; they know
nothing of models beyond the flat parameter layout below. `JIT_OPTIONS` is the one place where
Numba compiler options are set.
"""

import numpy as np

KERNEL_NAMES = (
    "gather_rows",
    "linear_forward",
    "relu_forward",
    "relu_backward",
    "softmax",
    "cross_entropy",
    "softmax_xent_backward",
    "softmax_cross_entropy",
    "linear_backward",
    "mlp_gradients",
    "mlp_adam_step",
    "mlp_logits",
    "adam_update",
    "sgd_update",
    "all_finite",
)

# Numba options for every kernel in kernels.jit. cache: compiled code is kept on disk (in
# __pycache__ beside the source, or Numba's user-wide cache directory where that is read-only),
# so a second run does not compile again. nogil: kernels may run beside other threads.
# error_model "numpy": division by zero gives inf/nan instead of raising, which removes a branch
# from every inner loop. fastmath is not global: FASTMATH below is opt-in per kernel, and leaves
# out nnan and ninf (with them LLVM may assume no NaN exists and fold isfinite checks to True).
JIT_OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy"}
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


def layer_views(flat, sizes):
    """Split a flat (P,) buffer into per-layer views W[l] (D_l, D_l+1) and b[l] (D_l+1,).

    The layout every whole-network kernel assumes: W0, b0, W1, b1, ... back to back, row-major.
    """
    Ws, bs, at = [], [], 0
    for d_in, d_out in zip(sizes, sizes[1:]):
        Ws.append(flat[at : at + d_in * d_out].reshape(d_in, d_out))
        at += d_in * d_out
        bs.append(flat[at : at + d_out])
        at += d_out
    return Ws, bs


def parameter_count(sizes):
    """P, the length of the flat buffer of a network with these layer sizes."""
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


def mlp_workspace(sizes, rows, dtype):
    """Scratch buffers for mlp_gradients and mlp_logits on batches of up to `rows` rows.

    Returns flat (inputs, activations, deltas, labels): inputs rows·D0; activations and deltas hold
    one rows·D_l block per layer l = 1..L, back to back; labels rows. Allocated once per run; the
    reference ignores it.
    """
    width = sum(sizes[1:])
    return (np.zeros(rows * sizes[0], dtype), np.zeros(rows * width, dtype), np.zeros(rows * width, dtype),
            np.zeros(rows, np.intp))
