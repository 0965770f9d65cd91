"""Hostile environments: NUMBA_DISABLE_JIT, no writable Numba cache, NUMBA_NUM_THREADS, a negative seed,
runs larger than memory, the threads the header reports.

Commands run in subprocesses on tiny IDX data sets (tests/helpers.py), on the numpy backend,
one thread, a private cache and no network (the env, tiny and model fixtures: tests/hostile/conftest.py).
The numbers in the section comments are the red-team report's item numbers.
"""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from kernels import blas
from tests.helpers import ROOT, TINY_ARGS, assert_one_line_error, clustered_idx_set, run_cli, train_tiny


# --- 11. NUMBA_DISABLE_JIT=1: gemm's Python body (make test-nojit runs the kernel tests so) -------

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



# --- 12. Numba's environment: nowhere to cache, NUMBA_NUM_THREADS that is not a count ------------

# The package folder and the user cache unwritable (for root too: the locators' write probe fails).
NO_CACHE = """
import numba.core.caching as caching
def read_only(self):
    raise PermissionError(13, "Permission denied", self._cache_path)
for name in dir(caching):
    if ("InTree" in name or "UserWide" in name) and name.endswith("Locator"):
        getattr(caching, name).ensure_cache_path = read_only
import numpy as np
from fastnet.backend import get_backend
K = get_backend("numba")
Z = np.zeros((3, 4), np.float32)
print(K.softmax(Z, np.empty_like(Z))[0, 0])
"""


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="needs the JIT")
def test_no_writable_numba_cache_compiles_for_the_run_with_a_note(env, tmp_path):
    e = {k: v for k, v in env.items() if k != "NUMBA_CACHE_DIR"}
    proc = subprocess.run([sys.executable, "-c", NO_CACHE], cwd=tmp_path, env={**e, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.split() == ["0.25"], proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("note: ") and "this run only" in lines[0], proc.stderr


@pytest.mark.parametrize("value", ["0", "-2", "abc", ""])
def test_numba_num_threads_that_is_not_a_count_is_one_line(env, tiny, value):
    proc = run_cli("fastnet.train", *TINY_ARGS, "--backend", "numba", "--data-dir", tiny,
                   env={**env, "NUMBA_NUM_THREADS": value})
    assert_one_line_error(proc, 2, "NUMBA_NUM_THREADS")


# --- 13. a negative seed ---------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["fastnet.show", "fastnet.gradcheck"])
def test_a_negative_seed_is_one_line(env, tiny, command):
    assert_one_line_error(run_cli(command, "--seed", "-1", "--data-dir", tiny, env=env), 2, "--seed")


# --- 14. a run that cannot fit in memory is refused before it starts ------------------------------

def test_a_run_larger_than_memory_is_refused_up_front(env, tmp_path):
    """The report's case: 60000 images, 200000 hidden units, batches of 60000 in float64 (~290 GB)."""
    many = clustered_idx_set(tmp_path / "many", n_train=60000, side=2)
    proc = train_tiny(env, many, "--layers", "4,200000,4", "--batch-size", "60000", "--dtype", "float64")
    assert_one_line_error(proc, 2, "GiB of memory")


def test_a_batch_larger_than_the_training_set_is_not_counted_as_memory(env, tiny):
    assert train_tiny(env, tiny, "--batch-size", "1000000000").returncode == 0



# --- 18. what the run says: threads -----------------------------------------------------------------

@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="needs the JIT")
def test_the_header_says_how_many_threads_run(env, tiny):
    proc = run_cli("fastnet.train", *[a for a in TINY_ARGS if a != "--quiet"], "--backend", "numba", "--threads", "1000",
                   "--data-dir", tiny, env=env)
    assert proc.returncode == 0, proc.stderr
    header = proc.stdout.splitlines()[0]
    assert re.search(r"\d+ threads \(asked for 1000; Numba runs at most \d+\)", header), header
    assert " 1000 threads" not in header


