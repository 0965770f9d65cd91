"""Compute primitives of an MLP, twice: `kernels.reference` (NumPy, reads like the maths) and
`kernels.jit` (Numba, fast). Both export the same names with the same signatures; they know
nothing of models. `JIT_OPTIONS` is the one place where Numba compiler options are set.
"""

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
