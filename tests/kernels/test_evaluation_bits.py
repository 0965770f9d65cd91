"""Evaluation gives a row its own bits: logits, probabilities, loss and accuracy are the same on any
number of threads, and a row's logits the same wherever it stands in the batch.

Before, both backends computed the products on BLAS, which computes a row of a block with other
code depending on where the row stands and on how many rows the block has (its micro-kernels' edge
cases; OpenBLAS's small-matrix kernels below 100³ multiply-adds on AVX-512 CPUs), and the numba
backend cut a batch into as many parts as threads ran. So the bits followed the threads and the
row's neighbours: one model evaluated to test loss 1.1783268605 on one thread and 1.1783268630 on
two, and scikit-learn's check_methods_sample_order_invariance failed for the estimator on two
threads. Checked for both backends, float32 and float64, OpenBLAS's kernels for this CPU and, in a
fresh process, its Haswell (AVX2) kernels.
"""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import llvmlite.binding as llvm
import numpy as np
import pytest
from threadpoolctl import threadpool_info

from fastnet.model import MLP, evaluate, predict_logits
from fastnet.threads import limited
from kernels import jit, reference
from tests.kernels.tolerances import assert_close

DTYPES = [np.float32, np.float64]
THREADS = (1, 2, 3)  # Numba's are capped by NUMBA_NUM_THREADS: the fresh process below has 3
# one row, a few, an odd count, one more than a tile, several tiles and a partial one
ROWS = (1, 2, 5, 37, jit.TILE_ROWS + 1, 3 * jit.TILE_ROWS + 7)
# 784-33-17-10 on uint8 pixels; 3-100-3 on float features, the network of scikit-learn's check
NETS = {"784-33-17-10": ((784, 33, 17, 10), ("relu", "tanh", "identity")),
        "3-100-3": ((3, 100, 3), ("relu", "identity"))}


def net_and_rows(name, dtype, n):
    """A He-initialised network of NETS[name] in dtype (biases nudged off zero), n rows for it, and
    their labels."""
    sizes, activations = NETS[name]
    rng = np.random.default_rng([n, sizes[0]])
    if sizes[0] == 784:
        model = MLP.he_init(sizes, rng, dtype, activations=activations)
        images = rng.integers(0, 256, (n, sizes[0]), dtype=np.uint8)
    else:
        model = MLP.he_init(sizes, rng, dtype, input_scale=1.0, input_shift=0.0, activations=activations)
        images = 3 * rng.uniform(size=(n, sizes[0]))
    model.params[...] += (rng.standard_normal(model.params.size) * 0.01).astype(dtype)
    return model, images, rng.integers(0, sizes[-1], n)


def evaluated(backend, backend_name, model, images, labels, threads):
    """(logits, probabilities, loss, accuracy) of the model on `threads` threads, as fastnet runs them."""
    with limited(threads, backend.BLAS_THREADS, backend_name):
        logits = predict_logits(model, backend, images)
        return logits, backend.softmax(logits, np.empty_like(logits)), *evaluate(model, backend, images, labels)


GRID = [pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"]),
        pytest.mark.parametrize("net", list(NETS)), pytest.mark.parametrize("n", ROWS)]


def grid(test):
    for mark in GRID:
        test = mark(test)
    return test


@grid
def test_logits_probabilities_loss_and_accuracy_are_the_same_bits_on_any_thread_count(backend, backend_name, dtype,
                                                                                      net, n):
    """(a) The threads only change who computes a tile, never what: a batch is cut into tiles of a
    fixed size (numba), and every row is computed alike (both backends)."""
    model, images, labels = net_and_rows(net, dtype, n)
    first = evaluated(backend, backend_name, model, images, labels, THREADS[0])
    for threads in THREADS[1:]:
        again = evaluated(backend, backend_name, model, images, labels, threads)
        for name, a, b in zip(("logits", "probabilities", "loss", "accuracy"), first, again):
            assert np.array_equal(a, b), f"{name} on {threads} threads differ from 1 thread's"


@grid
def test_a_rows_logits_are_the_same_bits_wherever_it_stands(backend, backend_name, dtype, net, n):
    """(b) Rows in another order give the same logits in that order, bit for bit, and a row alone
    the logits it has among the others."""
    model, images, labels = net_and_rows(net, dtype, n)
    order = np.random.default_rng(n).permutation(n)
    with limited(2, backend.BLAS_THREADS, backend_name):
        logits = predict_logits(model, backend, images)
        assert np.array_equal(predict_logits(model, backend, images[order]), logits[order])
        for i in sorted({0, n // 2, n - 1}):
            assert np.array_equal(predict_logits(model, backend, images[i : i + 1])[0], logits[i]), f"row {i}"


@grid
def test_logits_agree_with_the_float64_reference(backend, backend_name, dtype, net, n):
    """(d) Both backends' logits, in dtype, within the "network" tolerance of the reference's on the
    same parameters in float64 (tests/kernels/tolerances.py)."""
    model, images, _ = net_and_rows(net, dtype, n)
    oracle = MLP(model.sizes, np.float64, model.input_scale, model.input_shift, model.activations)
    oracle.params[...] = model.params
    with limited(2, backend.BLAS_THREADS, backend_name):
        assert_close(predict_logits(model, backend, images), predict_logits(oracle, reference, images), "network",
                     dtype)


def test_scikit_learns_sample_order_check_passes_on_two_threads(backend_name):
    """scikit-learn's own check_methods_sample_order_invariance on the estimator with two threads
    (its checks in tests/test_sklearn.py use one): 20 rows, predict_proba of the rows permuted."""
    pytest.importorskip("sklearn")
    from sklearn.utils.estimator_checks import check_methods_sample_order_invariance

    from fastnet.sklearn import MLPClassifier

    for seed in range(3):  # the check permutes with NumPy's global generator
        np.random.seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # 20 epochs do not converge
            check_methods_sample_order_invariance(
                "MLPClassifier", MLPClassifier(max_iter=20, random_state=0, threads=2, backend=backend_name))


def test_blas_runs_the_kernels_the_environment_names():
    """Where OPENBLAS_CORETYPE is set (the fresh process below), OpenBLAS runs those kernels: the
    checks above ran on them, not on the CPU's own."""
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    if not coretype:
        pytest.skip("OPENBLAS_CORETYPE is not set")
    found = [info.get("architecture") for info in threadpool_info() if info.get("internal_api") == "openblas"]
    assert found and all(str(a).lower() == coretype.lower() for a in found), found


@pytest.mark.slow
def test_the_same_in_a_fresh_process_on_openblas_haswell_kernels_and_three_numba_threads():
    """(c) The checks of this file again in a process whose OpenBLAS runs its Haswell (AVX2) kernels
    (OPENBLAS_CORETYPE, read when NumPy loads) and whose Numba may run 3 threads."""
    if os.environ.get("OPENBLAS_CORETYPE"):
        pytest.skip("this is the fresh process")
    if not any(info.get("internal_api") == "openblas" for info in threadpool_info()):
        pytest.skip("NumPy's BLAS is not OpenBLAS")
    if "+avx2" not in llvm.get_host_cpu_features().flatten():
        pytest.skip("this CPU cannot run OpenBLAS's Haswell kernels (no AVX2)")
    env = {**os.environ, "OPENBLAS_CORETYPE": "Haswell", "NUMBA_NUM_THREADS": "3"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", __file__,
                           "-k", "not fresh_process"], env=env, capture_output=True, text=True, timeout=900,
                          cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
