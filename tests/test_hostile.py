"""Regression tests for the red-team's defect families (one section per item of the report).

Each reproduction must end with its documented exit status (2 bad input, 3 divergence, 130
interrupted) and one clear line on stderr, never a traceback; no file is lost or corrupted and
nothing is left behind. The fresh hostile cases live in tests/hostile_sweep.py (a fast subset
runs here, see test_hostile_sweep_fast_subset).
"""

import numpy as np
import pytest

from kernels import blas


# --- 11. NUMBA_DISABLE_JIT=1: gemm's Python body ------------------------------------------------

@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_python_body_when_the_last_row_is_shorter_than_its_stride(trans_a, trans_b):
    """The block of a flat buffer ends at the last row's last column, not at rows·ld: BLAS reads
    only that far, and so must the Python body that runs under NUMBA_DISABLE_JIT=1."""
    rng = np.random.default_rng(0)
    M, N, K, ld = 4, 3, 2, 5  # every block: rows of ld, of which only the first cols are used
    shape_a, shape_b = ((K, M) if trans_a else (M, K)), ((N, K) if trans_b else (K, N))

    def buffer(rows, cols, at):  # exactly at + (rows - 1)·ld + cols elements: the tail row is short
        flat = rng.standard_normal(at + (rows - 1) * ld + cols)
        block = np.lib.stride_tricks.as_strided(flat[at:], (rows, cols), (ld * 8, 8))
        return flat, block.copy()

    A, a = buffer(*shape_a, 1)
    B, b = buffer(*shape_b, 2)
    C = np.zeros(3 + (M - 1) * ld + N)
    blas.gemm(trans_a, trans_b, M, N, K, A, 1, ld, B, 2, ld, C, 3, ld)
    want = (a.T if trans_a else a) @ (b.T if trans_b else b)
    got = np.lib.stride_tricks.as_strided(C[3:], (M, N), (ld * 8, 8))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    untouched = np.ones(C.size, bool)
    for r in range(M):
        untouched[3 + r * ld : 3 + r * ld + N] = False
    assert (C[untouched] == 0).all()  # nothing written between the rows or before the block


def test_gemm_python_body_refuses_a_block_past_the_buffer():
    A = np.zeros(10)
    with pytest.raises(ValueError, match="overruns"):
        blas.gemm(False, False, 3, 4, 4, A, 0, 4, A, 0, 4, A, 0, 4)
