"""The arrays fastnet trains on: rows (N, D) of real numbers, one sample a row, and their labels.

uint8, float32 and float64 rows are read as they are, without a copy when C-contiguous (a read-only
memory-mapped .npy included): the compiled step gathers raw rows and scales them on the way in.
Other dtypes are converted once: integers and booleans to float64 (exact), float16 to float32,
other byte orders to the machine's; each dtype the step reads is one more compilation.
"""

import numpy as np

NATIVE = (np.uint8, np.float32, np.float64)  # dtypes the compiled step reads without a conversion
MAX_CLASSES = 65536  # labels above are a typo or hostile: one name and one output each


def as_rows(X, what="X", finite=True):
    """X as rows (N, D) that the kernels read: a NATIVE dtype, C-contiguous. Converts only when
    needed; raises TypeError for what is not an array of real numbers and ValueError for a wrong
    shape, no rows or features, or (with `finite`) NaN or infinite values."""
    if not isinstance(X, np.ndarray):
        if hasattr(X, "__array__") or isinstance(X, (list, tuple)):
            try:
                X = np.asarray(X)
            except (ValueError, TypeError) as exc:
                raise TypeError(f"{what} must be an array of numbers ({exc})") from None
        else:
            raise TypeError(f"{what} must be a 2-D array of numbers, got {type(X).__name__}")
    if X.dtype.kind not in "biuf":
        kind = "complex" if X.dtype.kind == "c" else str(X.dtype)
        raise TypeError(f"{what} must hold real numbers, got {kind} values")
    if X.ndim != 2:
        raise ValueError(f"{what} must be 2-D (samples, features), got shape {X.shape}"
                         + ("; reshape a single sample with X.reshape(1, -1)" if X.ndim == 1 else ""))
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{what} has shape {X.shape}: it needs at least one sample and one feature")
    if X.dtype.type not in NATIVE:
        X = X.astype(np.float32 if X.dtype == np.float16 else np.float64)
    elif not X.dtype.isnative:  # big-endian float32/64 (a file written elsewhere): the same values, native
        X = X.astype(X.dtype.newbyteorder("="))
    X = np.ascontiguousarray(X)  # no copy when it already is, memory maps included
    if finite and X.dtype.kind == "f" and not all_finite(X):
        raise ValueError(f"{what} holds NaN or infinite values; remove or impute them first")
    return X


def all_finite(X, chunk=4096):
    """True when no value of float rows X is NaN or infinite: one float64 sum (NaN or inf propagate),
    then, only if that sum is not finite (an overflow is possible), an exact pass in chunks."""
    with np.errstate(over="ignore"):  # finite values near 1e308 may overflow the sum: no warning, the exact pass
        if np.isfinite(X.sum(dtype=np.float64)):
            return True
    return all(np.isfinite(X[i : i + chunk]).all() for i in range(0, len(X), chunk))


def small_labels(labels):
    """Class indices 0..K-1 in the smallest type the kernels share: uint8 (as IDX labels are, so the
    same compiled step serves) while K <= 256, else intp."""
    return labels.astype(np.uint8 if len(labels) == 0 or labels.max() < 256 else np.intp)
