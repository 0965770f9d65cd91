"""NumPy's own BLAS, callable from inside Numba-compiled code: `gemm` for float32 and float64.

Numba's np.dot goes through SciPy's BLAS, a second OpenBLAS with a thread pool of its own. This
finds the CBLAS gemm in the library NumPy loaded (the one threadpoolctl controls and the floor
benchmark times) and registers it with LLVM under a fixed name. Compiled code calls it by that
name, so it still loads from Numba's on-disk cache in a later process: only the address changes.

`gemm` is row-major C = op(A)·op(B) with op a transpose when asked; A, B, C are C-contiguous arrays
addressed by element offsets, so a kernel can multiply blocks inside flat buffers without views.
"""

import ctypes

import llvmlite.binding as llvm
import numpy as np
from numba import types
from numba.extending import overload

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
# Symbol names tried in order: NumPy >= 2 wheels ship OpenBLAS with a prefix and 64-bit ints.
_CANDIDATES = (("scipy_cblas_{}64_", types.int64), ("cblas_{}64_", types.int64), ("cblas_{}", types.int32))


def _find():
    """(sgemm address, dgemm address, int type) of NumPy's BLAS; ImportError if it has none."""
    from threadpoolctl import threadpool_info

    for info in threadpool_info():
        if info.get("user_api") != "blas":
            continue
        lib = ctypes.CDLL(info["filepath"])
        for pattern, int_type in _CANDIDATES:
            try:
                s, d = getattr(lib, pattern.format("sgemm")), getattr(lib, pattern.format("dgemm"))
            except AttributeError:
                continue
            address = ctypes.cast(s, ctypes.c_void_p).value, ctypes.cast(d, ctypes.c_void_p).value
            return (*address, int_type)
    raise ImportError("no CBLAS sgemm/dgemm found in NumPy's BLAS library")


np.ones(1)  # NumPy's BLAS is loaded with numpy itself; threadpoolctl lists what is loaded
_s_address, _d_address, _int = _find()
# The int width is part of the name: code cached against one width never links to the other.
_bits = _int.bitwidth
llvm.add_symbol(f"fastnet_sgemm{_bits}", _s_address)
llvm.add_symbol(f"fastnet_dgemm{_bits}", _d_address)
_P = types.uintp  # pointers pass as address-sized integers (same calling convention on x86-64, arm64)
_sgemm = types.ExternalFunction(f"fastnet_sgemm{_bits}", types.void(
    types.int32, types.int32, types.int32, _int, _int, _int, types.float32, _P, _int, _P, _int,
    types.float32, _P, _int))
_dgemm = types.ExternalFunction(f"fastnet_dgemm{_bits}", types.void(
    types.int32, types.int32, types.int32, _int, _int, _int, types.float64, _P, _int, _P, _int,
    types.float64, _P, _int))


def gemm(trans_a, trans_b, M, N, inner, A, a_at, lda, B, b_at, ldb, C, c_at, ldc):
    """C[c_at:] (M, N) = op(A[a_at:]) (M, inner) · op(B[b_at:]) (inner, N), row-major, ld* the row strides.

    A, B, C share one float dtype and are C-contiguous. Compiled code calls BLAS (the overload
    below); this Python body, the same operation in NumPy, runs only under NUMBA_DISABLE_JIT=1.
    """

    def block(X, at, rows, cols, ld):
        """The (rows, cols) view of flat X starting at `at`, rows `ld` apart. Only (rows-1)·ld + cols
        elements need follow `at` (the last row's tail may be the end of the buffer), as in BLAS."""
        flat = X.reshape(-1)
        if at < 0 or cols > ld or (rows and at + (rows - 1) * ld + cols > flat.size):
            raise ValueError(f"gemm: a ({rows}, {cols}) block with row stride {ld} at {at} "
                             f"overruns a buffer of {flat.size}")
        return np.lib.stride_tricks.as_strided(flat[at:], (rows, cols), (ld * flat.itemsize, flat.itemsize))

    a = block(A, a_at, inner, M, lda).T if trans_a else block(A, a_at, M, inner, lda)
    b = block(B, b_at, N, inner, ldb).T if trans_b else block(B, b_at, inner, N, ldb)
    block(C, c_at, M, N, ldc)[...] = a @ b


@overload(gemm)
def _gemm_overload(trans_a, trans_b, M, N, inner, A, a_at, lda, B, b_at, ldb, C, c_at, ldc):
    if A.dtype == types.float32:
        call, one, zero, size = _sgemm, np.float32(1), np.float32(0), 4
    elif A.dtype == types.float64:
        call, one, zero, size = _dgemm, 1.0, 0.0, 8
    else:
        return None

    def impl(trans_a, trans_b, M, N, inner, A, a_at, lda, B, b_at, ldb, C, c_at, ldc):
        call(_ROW_MAJOR, _TRANS if trans_a else _NO_TRANS, _TRANS if trans_b else _NO_TRANS, M, N, inner,
             one, A.ctypes.data + size * a_at, lda, B.ctypes.data + size * b_at, ldb,
             zero, C.ctypes.data + size * c_at, ldc)

    return impl
