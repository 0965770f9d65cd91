"""Every registered backend against kernels.reference: every kernel in KERNEL_NAMES, both dtypes.

Each test runs a kernel through a backend (the `backend` fixture, conftest.py: every module of
kernels.BACKENDS, the reference itself included, in the test's dtype) and judges it with
tolerances.assert_close against the oracle: the reference kernel run in float64 on the same inputs
upcast to float64. Inputs are seeded from the test's parameters (so every backend and both dtypes
see the same data), shapes are awkward (batches of 1, 7, 128 and the last partial batch of an
epoch, 60000 % 128 = 96 rows, as a view of the first rows of a 128-row buffer, which is how the
model's Workspace hands them over), and logits are hostile. Layer kernels run once per activation
of kernels.ACTIVATIONS.

Also run once as plain Python: `NUMBA_DISABLE_JIT=1 python -m pytest tests/kernels/test_kernels.py`
(shapes used for the 20-run determinism check shrink then; every other test is unchanged).
"""

import math
import os
import subprocess
import sys
import types
import zlib

import numba
import numpy as np
import pytest
from tests.kernels.tolerances import assert_close, blas_threads

import kernels
from fastnet.backend import get_backend
from fastnet.errors import InputError
from fastnet.model import MLP, Workspace, loss_and_grads
from fastnet.optim import OPTIMIZERS, Adam
from kernels import jit, layer_views, reference

NO_JIT = bool(numba.config.DISABLE_JIT)

DTYPES = [np.float32, np.float64]
# (rows used, rows in the buffer): the last case is the last partial batch, a view of a bigger buffer
BATCHES = pytest.mark.parametrize("n, rows", [(1, 1), (7, 7), (128, 128), (96, 128)],
                                  ids=["N1", "N7", "N128", "N96of128"])
# Row-wise kernels (softmax and the loss) treat rows independently: the partial batch stands for 128
ROW_BATCHES = pytest.mark.parametrize("n, rows", [(1, 1), (7, 7), (96, 128)], ids=["N1", "N7", "N96of128"])
# (D, H) of a layer: D covers 1, 13, 784; H covers 1, 7, 128; the last two are 784-128-10's layers
LAYERS = pytest.mark.parametrize("D, H", [(1, 7), (13, 1), (784, 128), (128, 10)])
CLASSES = pytest.mark.parametrize("C", [2, 10])
ACTIVATIONS = pytest.mark.parametrize("activation", kernels.ACTIVATIONS)
LOGITS = ["normal", "outliers_x20", "pm1e4", "all_equal", "one_huge", "equal_1e6"]

def rng_for(*key):
    """A generator seeded by the test's own parameters: the same data for every backend and dtype."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def take(full, n):
    """The first n rows of a buffer: a contiguous view, as the kernels use a workspace of more rows."""
    return full[:n]


def nan_rows(rows, cols, dtype, n):
    """An output: the first n rows of a NaN-filled (rows, cols) buffer (NaN shows unwritten cells)."""
    return np.full((rows, cols), np.nan, dtype)[:n]


def assert_rest_untouched(out, n):
    """Rows past the view (the rest of the buffer) must still hold the NaN they were filled with."""
    if out.base is not None and out.base.shape[0] > n:
        assert np.isnan(out.base[n:]).all(), "kernel wrote outside the rows it was given"


def up(a):
    """The float64 copy the oracle works on (exact for float32 values)."""
    return np.asarray(a, dtype=np.float64)


def labels_for(rng, rows, n, C):
    """Labels with the first class at row 0 and the last at row n-1 (a single row gets the last
    class for K = 10 and the first for K = 2, so both ends appear). uint8, like the data set's."""
    y = rng.integers(0, C, rows)
    y[0] = 0
    y[n - 1] = C - 1 if (n > 1 or C == 10) else 0
    return y.astype(np.uint8)


def make_logits(case, rng, rows, C, y):
    """Logits (rows, C) in float64 for one of the LOGITS cases."""
    if case == "normal":
        return rng.standard_normal((rows, C)) * 3
    if case == "outliers_x20":  # a few logits scaled x20 so softmax is far from uniform
        Z = rng.standard_normal((rows, C))
        for i in range(rows):
            Z[i, rng.choice(C, max(1, C // 5), replace=False)] *= 20
        return Z
    if case == "pm1e4":
        return rng.choice([-1e4, 1e4], (rows, C))
    if case == "all_equal":
        return np.repeat(rng.choice([0.0, 1.5, -7.0, 1e4, -1e4], rows)[:, None], C, axis=1)
    if case == "one_huge":  # 1e4 among zeros: on the label for even rows, next to it for odd rows
        Z = np.zeros((rows, C))
        Z[np.arange(rows), (y.astype(np.int64) + np.arange(rows) % 2) % C] = 1e4
        return Z
    if case == "equal_1e6":
        return np.full((rows, C), 1e6)
    raise ValueError(case)


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """Single-threaded BLAS for speed; the determinism test below runs on every core again."""
    with blas_threads(1):
        yield


# ---------------------------------------------------------------------------------------------
# Pairing


def test_every_registered_backend_keeps_the_contract(backend_name):
    """Every kernel of KERNEL_NAMES with the reference's signature, and every BACKEND_ATTRIBUTES."""
    module = kernels.load_backend(backend_name)  # raises ContractError, naming each problem
    assert not kernels.contract_problems(module)


def test_contract_check_names_a_missing_kernel_a_changed_signature_and_a_missing_attribute(monkeypatch):
    broken = types.ModuleType("kernels.broken")
    for name in kernels.KERNEL_NAMES:
        setattr(broken, name, getattr(reference, name))
    del broken.softmax
    broken.linear_forward = lambda X, W, b, out, relu: out
    monkeypatch.setitem(sys.modules, "kernels.broken", broken)
    monkeypatch.setitem(kernels.BACKENDS, "broken", "kernels.broken")
    with pytest.raises(kernels.ContractError) as caught:
        kernels.load_backend("broken")
    for problem in ("no kernel softmax", "linear_forward(X, W, b, out, relu) differs", "no attribute BLAS_THREADS"):
        assert problem in str(caught.value)
    with pytest.raises(ValueError, match="unknown backend"):
        kernels.load_backend("nonesuch")


def test_get_backend_turns_a_bad_backend_into_one_input_error_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "kernels.empty", types.ModuleType("kernels.empty"))
    monkeypatch.setitem(kernels.BACKENDS, "empty", "kernels.empty")
    for name, words in (("empty", "breaks the kernel contract"), ("nonesuch", "unknown backend")):
        with pytest.raises(InputError) as caught:
            get_backend(name)
        assert words in str(caught.value) and "\n" not in str(caught.value)


def test_every_activation_has_a_reference_forward_and_backward():
    assert set(reference.ACTIVATION_FUNCTIONS) == set(kernels.ACTIVATIONS)
    codes = {"identity": kernels.IDENTITY, "relu": kernels.RELU, "tanh": kernels.TANH, "logistic": kernels.LOGISTIC}
    assert all(kernels.ACTIVATIONS[code] == name for name, code in codes.items())


# ---------------------------------------------------------------------------------------------
# Data and layers


@pytest.mark.parametrize("dtype", DTYPES)
@BATCHES
@pytest.mark.parametrize("D", [1, 13, 784])
@pytest.mark.parametrize("scale, shift", [(1 / 255, 0.0), (1 / (255 * 0.353), -0.286 / 0.353), ("pixel", None)],
                         ids=["unit", "standardised", "per_pixel"])
def test_gather_rows(backend, dtype, n, rows, D, scale, shift):
    rng = rng_for("gather", n, D)
    M = 50
    images = rng.integers(0, 256, (M, D), dtype=np.uint8)
    images[0, 0], images[-1, -1] = 0, 255
    index = rng.integers(0, M, n)
    index[-1] = M - 1  # the last row
    if n > 2:
        index[1] = index[0]  # a repeat
    if isinstance(scale, str):  # per-pixel standardisation, deviations floored as fastnet.train does
        scale, shift = 1 / (255 * rng.uniform(0.05, 0.5, D)), -rng.uniform(0, 3, D)
    scale = np.broadcast_to(np.asarray(scale, dtype), (D,)).copy()  # the model keeps (D,) vectors
    shift = np.broadcast_to(np.asarray(shift, dtype), (D,)).copy()  # in its own dtype
    out = nan_rows(rows, D, dtype, n)
    got = backend.gather_rows(images, index, scale, shift, out)
    assert got is out
    ref = reference.gather_rows(images, index, up(scale), up(shift), np.empty((n, D)))
    assert_close(got, ref, "gather_rows", dtype)
    assert_rest_untouched(out, n)


def layer_inputs(n, rows, D, H, dtype):
    """X (a ReLU output or pixels in [0, 1]: ~30% exact zeros, a few -0.0), He weights, small bias."""
    rng = rng_for("layer", n, D, H)
    X = rng.random((rows, D))
    X[rng.random((rows, D)) < 0.3] = 0.0
    X[rng.random((rows, D)) < 0.05] = -0.0
    W = rng.standard_normal((D, H)) * np.sqrt(2.0 / D)
    b = rng.standard_normal(H) * 0.1
    return take(X.astype(dtype), n), W.astype(dtype), b.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@BATCHES
@LAYERS
@ACTIVATIONS
def test_linear_forward(backend, dtype, n, rows, D, H, activation):
    X, W, b = layer_inputs(n, rows, D, H, dtype)
    out = nan_rows(rows, H, dtype, n)
    got = backend.linear_forward(X, W, b, out, activation)
    assert got is out
    ref = reference.linear_forward(up(X), up(W), up(b), np.empty((n, H)), activation)
    assert_close(got, ref, "linear_forward", dtype)
    if activation == "relu":
        assert (got >= 0).all()
    assert_rest_untouched(out, n)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@BATCHES
@LAYERS
@pytest.mark.parametrize("with_dX", [False, True], ids=["noDX", "dX"])  # noDX: the input layer
@ACTIVATIONS  # the activation whose output X is
def test_linear_backward(backend, dtype, n, rows, D, H, with_dX, activation):
    X, W, _ = layer_inputs(n, rows, D, H, dtype)
    rng = rng_for("dZ", n, D, H)
    dZ = take((rng.standard_normal((rows, H)) / n).astype(dtype), n)  # mean-loss gradients: O(1/N)
    grads = np.full(D * H + H, np.nan, dtype)  # dW and db as views of one flat buffer, as in MLP
    dW, db = grads[: D * H].reshape(D, H), grads[D * H :]
    dX = nan_rows(rows, D, dtype, n) if with_dX else None
    assert backend.linear_backward(dZ, X, W, dW, db, dX, activation) is None
    rdW, rdb, rdX = np.empty((D, H)), np.empty(H), (np.empty((n, D)) if with_dX else None)
    reference.linear_backward(up(dZ), up(X), up(W), rdW, rdb, rdX, activation)
    assert_close(dW, rdW, "linear_backward", dtype)
    assert_close(db, rdb, "linear_backward", dtype)
    if with_dX:
        assert_close(dX, rdX, "linear_backward", dtype)
        if activation == "relu":
            assert (dX[X <= 0] == 0).all(), "the ReLU mask must zero dX exactly where X <= 0"
        assert_rest_untouched(dX, n)


# Hostile pre-activations: ±1e4 (e^1e4 overflows; the stable forms never form it), ±90 (logistic(-90)
# = 8e-40 is subnormal in float32), ±20 (tanh and logistic within an ulp of ±1 and 1)
HOSTILE_Z = (-1e4, 1e4, -90.0, 90.0, -20.0, 20.0)


def activation_input(n, rows, H, dtype):
    """Z with exact zeros, negative zeros, tiny values of both signs, ordinary ones, and HOSTILE_Z:
    15% of the entries, and the first row starts with them (a 1 x 1 Z is -1e4)."""
    rng = rng_for("relu", n, H)
    Z = rng.standard_normal((rows, H))
    pick = rng.random((rows, H))
    Z[pick < 0.2] = 0.0
    Z[(pick >= 0.2) & (pick < 0.4)] = -0.0
    Z[(pick >= 0.4) & (pick < 0.45)] *= 1e-30
    hostile = (pick >= 0.45) & (pick < 0.6)
    Z[hostile] = rng.choice(HOSTILE_Z, hostile.sum())
    Z[0, : len(HOSTILE_Z)] = HOSTILE_Z[:H]
    return take(Z.astype(dtype), n)


@pytest.mark.parametrize("dtype", DTYPES)
@BATCHES
@pytest.mark.parametrize("H", [1, 7, 128])
@ACTIVATIONS
def test_activation_forward(backend, dtype, n, rows, H, activation):
    Z = activation_input(n, rows, H, dtype)
    out = nan_rows(rows, H, dtype, n)
    got = backend.activation_forward(Z, out, activation)
    assert got is out
    # relu (and identity) exact: compared with ==, under which -0.0 == 0.0 (the JIT returns -0.0 for
    # an input of -0.0, NumPy +0.0; both are zero to every later comparison, A > 0 or X <= 0)
    ref = reference.activation_forward(up(Z), np.empty((n, H)), activation)
    assert_close(got, ref, f"{activation}_forward", dtype)
    if activation == "relu":
        assert np.array_equal(got, np.where(Z > 0, Z, 0))
        assert not (got < 0).any()
    assert_rest_untouched(out, n)


@pytest.mark.parametrize("dtype", DTYPES)
@BATCHES
@pytest.mark.parametrize("H", [1, 7, 128])
@ACTIVATIONS
def test_activation_backward(backend, dtype, n, rows, H, activation):
    Z = activation_input(n, rows, H, dtype)
    A = reference.activation_forward(Z, np.empty_like(Z), activation)  # the output, in the dtype
    A[np.signbit(Z) & (A == 0)] = -0.0  # keep some -0.0 in A too
    dA = take(rng_for("dA", n, H).standard_normal((rows, H)).astype(dtype), n)
    out = nan_rows(rows, H, dtype, n)
    got = backend.activation_backward(dA, A, out, activation)
    assert got is out
    ref = reference.activation_backward(up(dA), up(A), np.empty((n, H)), activation)
    assert_close(got, ref, f"{activation}_backward", dtype)
    if activation == "relu":
        active = A > 0
        assert np.array_equal(got[active].view(np.uint8), dA[active].view(np.uint8)), "active: dA bit for bit"
        assert (got[~active] == 0).all()
    assert_rest_untouched(out, n)


# ---------------------------------------------------------------------------------------------
# Output layer: softmax and cross-entropy on hostile logits


def output_case(case, n, rows, C, dtype):
    rng = rng_for("logits", case, n, C)
    y = labels_for(rng, rows, n, C)
    Z = make_logits(case, rng, rows, C, y)
    return take(Z.astype(dtype), n), y[:n]


@pytest.mark.parametrize("dtype", DTYPES)
@ROW_BATCHES
@CLASSES
@pytest.mark.parametrize("case", LOGITS)
def test_softmax(backend, dtype, n, rows, C, case):
    Z, _ = output_case(case, n, rows, C, dtype)
    out = nan_rows(rows, C, dtype, n)
    got = backend.softmax(Z, out)
    assert got is out
    assert_close(got, reference.softmax(up(Z), np.empty((n, C))), "softmax", dtype)
    assert not np.isnan(got).any() and (got >= 0).all()
    row_sums = got.astype(np.float64).sum(axis=1)
    assert np.abs(row_sums - 1).max() <= 2 * C * np.finfo(dtype).eps, "rows must sum to 1"
    assert_rest_untouched(out, n)


@pytest.mark.parametrize("dtype", DTYPES)
@ROW_BATCHES
@CLASSES
@pytest.mark.parametrize("case", LOGITS)
def test_cross_entropy(backend, dtype, n, rows, C, case):
    Z, y = output_case(case, n, rows, C, dtype)
    got = backend.cross_entropy(Z, y)
    ref = reference.cross_entropy(up(Z), y)
    assert math.isfinite(got)
    assert_close(got, ref, "cross_entropy", dtype)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("C", [2, 3, 7, 10])
def test_cross_entropy_of_equal_huge_logits_is_log_k(backend, dtype, C):
    """K equal logits of 1e6: every class has probability 1/K, the loss is ln K to a few ulp of
    the dtype (both backends accumulate in float64, but as plain Python the float32 JIT code rounds
    each row's loss to float32: NumPy 2 keeps float - float32 in float32)."""
    Z = np.full((5, C), 1e6, dtype)
    y = np.arange(5) % C
    for loss in (backend.cross_entropy(Z, y), backend.softmax_cross_entropy(Z, y, np.empty_like(Z))):
        assert abs(loss - math.log(C)) <= 4 * np.finfo(dtype).eps * math.log(C), loss - math.log(C)


@pytest.mark.parametrize("dtype", DTYPES)
@ROW_BATCHES
@CLASSES
@pytest.mark.parametrize("case", LOGITS)
def test_softmax_xent_backward(backend, dtype, n, rows, C, case):
    Z, y = output_case(case, n, rows, C, dtype)
    A = reference.softmax(Z, np.empty_like(Z))  # a softmax output in the dtype, as the model has it
    out = nan_rows(rows, C, dtype, n)
    got = backend.softmax_xent_backward(A, y, out)
    assert got is out
    assert_close(got, reference.softmax_xent_backward(up(A), y, np.empty((n, C))), "softmax_xent_backward", dtype)
    assert_rest_untouched(out, n)


@pytest.mark.parametrize("dtype", DTYPES)
@ROW_BATCHES
@CLASSES
@pytest.mark.parametrize("case", LOGITS)
def test_softmax_cross_entropy(backend, dtype, n, rows, C, case):
    Z, y = output_case(case, n, rows, C, dtype)
    dZ = nan_rows(rows, C, dtype, n)
    loss = backend.softmax_cross_entropy(Z, y, dZ)
    ref_dZ = np.empty((n, C))
    ref_loss = reference.softmax_cross_entropy(up(Z), y, ref_dZ)
    assert_close(loss, ref_loss, "softmax_cross_entropy", dtype)
    assert_close(dZ, ref_dZ, "softmax_cross_entropy", dtype)
    # each row of dZ is (A - Y)/N: it sums to 0
    assert np.abs(dZ.astype(np.float64).sum(axis=1)).max() <= 4 * C * np.finfo(dtype).eps / n
    assert_rest_untouched(dZ, n)


@pytest.mark.parametrize("label_dtype", [np.int64, np.intp, np.int32, np.uint8])
def test_output_layer_accepts_every_label_integer_type(backend, label_dtype):
    Z, y = output_case("outliers_x20", 7, 7, 10, np.float32)
    y = y.astype(label_dtype)
    ref_dZ = np.empty((7, 10))
    ref = reference.softmax_cross_entropy(up(Z), y, ref_dZ)
    dZ = np.empty_like(Z)
    assert_close(backend.softmax_cross_entropy(Z, y, dZ), ref, "softmax_cross_entropy", np.float32)
    assert_close(dZ, ref_dZ, "softmax_cross_entropy", np.float32)
    assert_close(backend.cross_entropy(Z, y), ref, "cross_entropy", np.float32)


# ---------------------------------------------------------------------------------------------
# Optimisers and the divergence check

SIZES = pytest.mark.parametrize("P", [1, 7, 1001])


def flat_gradients(rng, P, dtype):
    """O(1) gradients with exact zeros and a few tiny and large entries."""
    g = rng.standard_normal(P)
    pick = rng.random(P)
    g[pick < 0.1] = 0.0
    g[(pick >= 0.1) & (pick < 0.15)] *= 1e-9
    g[(pick >= 0.15) & (pick < 0.2)] *= 1e3
    return g.astype(dtype)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@SIZES
@pytest.mark.parametrize("lr, beta1, beta2, eps", [(1e-3, 0.9, 0.999, 1e-8), (3e-2, 0.8, 0.99, 1e-6)],
                         ids=["default", "other"])
def test_adam_update_steps_1_to_5(backend, dtype, P, lr, beta1, beta2, eps):
    rng = rng_for("adam", P, lr)
    p = rng.standard_normal(P).astype(dtype)
    m, v = np.zeros(P, dtype), np.zeros(P, dtype)
    rp, rm, rv = up(p), np.zeros(P), np.zeros(P)
    for step in range(1, 6):
        g = flat_gradients(rng, P, dtype)
        before = g.copy()
        ok = backend.adam_update(p, g, m, v, step, lr, beta1, beta2, eps)
        assert np.array_equal(g, before), "the gradient must be left as it was"
        assert reference.adam_update(rp, up(g), rm, rv, step, lr, beta1, beta2, eps) is True
        assert ok is True, f"step {step}: finite parameters reported as diverged"
        for name, got, ref in (("p", p, rp), ("m", m, rm), ("v", v, rv)):
            assert got.dtype == dtype, f"step {step}: {name} became {got.dtype}"
            assert_close(got, ref, "adam_update", dtype)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_moments_are_never_subnormal(backend, dtype):
    """Once a weight's gradient is exactly 0 its moments decay geometrically; below the smallest
    normal number they become 0 instead of lingering in the slow subnormal range (0.5 times the
    smallest subnormal rounds back to it, so without the flush they would stay there for good)."""
    tiny = np.finfo(dtype).tiny
    P = 37
    p = np.linspace(-1, 1, P).astype(dtype)
    m, v = np.zeros(P, dtype), np.zeros(P, dtype)
    g = np.linspace(-2, 3, P).astype(dtype)
    assert backend.adam_update(p, g, m, v, 1, 1e-3, 0.5, 0.5, 1e-8) is True
    g[:] = 0
    for step in range(2, 1200):  # 0.5^1100 is far below float64's smallest subnormal
        assert backend.adam_update(p, g, m, v, step, 1e-3, 0.5, 0.5, 1e-8) is True
        for name, x in (("m", m), ("v", v)):
            assert ((x == 0) | (np.abs(x) >= tiny)).all(), f"step {step}: a subnormal {name}"
    assert not m.any() and not v.any(), "the moments of a zero gradient must reach exactly 0"
    assert np.isfinite(p).all()


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@SIZES
def test_sgd_update(backend, dtype, P):
    rng = rng_for("sgd", P)
    p = rng.standard_normal(P).astype(dtype)
    rp = up(p)
    for _ in range(3):
        g = flat_gradients(rng, P, dtype)
        assert backend.sgd_update(p, g, 0.1) is True
        assert reference.sgd_update(rp, up(g), 0.1) is True
        assert_close(p, rp, "sgd_update", dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("P, at", [(1, 0), (1001, 0), (1001, 500), (1001, 1000)])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_update_reports_a_nan_gradient(backend, dtype, P, at, optimizer):
    p = np.ones(P, dtype)
    g = np.full(P, 0.5, dtype)
    g[at] = np.nan
    if optimizer == "adam":
        ok = backend.adam_update(p, g, np.zeros(P, dtype), np.zeros(P, dtype), 1, 1e-3, 0.9, 0.999, 1e-8)
    else:
        ok = backend.sgd_update(p, g, 0.1)
    assert ok is False
    assert np.isnan(p[at])
    assert np.isfinite(np.delete(p, at)).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_update_reports_overflow_to_inf(backend, dtype, optimizer):
    """lr huge and p near the largest float: p overflows to inf, and the flag says so."""
    big = np.finfo(dtype).max
    p = np.array([0.9 * big, 1.0, -0.9 * big], dtype)
    g = np.array([-1.0, 0.0, 1.0], dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        if optimizer == "adam":
            ok = backend.adam_update(p, g, np.zeros(3, dtype), np.zeros(3, dtype), 1, float(0.5 * big), 0.9, 0.999,
                                     1e-8)
        else:
            ok = backend.sgd_update(p, g, float(0.5 * big))
    assert ok is False
    assert p[0] == np.inf and p[2] == -np.inf


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf * 0, as plain Python
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7,), (1001,), (13, 7)])
@pytest.mark.parametrize("bad, where", [(None, None), (np.nan, "first"), (np.nan, "middle"), (np.nan, "last"),
                                        (np.inf, "middle"), (np.inf, "last"), (-np.inf, "first"),
                                        (-np.inf, "middle")])
def test_all_finite(backend, dtype, shape, bad, where):
    x = rng_for("finite", shape).standard_normal(shape).astype(dtype)
    x.flat[0] = np.finfo(dtype).max  # huge but finite values are finite
    x.flat[-1] = -0.0 if x.size > 1 else x.flat[-1]
    if bad is not None:
        x.flat[{"first": 0, "middle": x.size // 2, "last": x.size - 1}[where]] = bad
    got = backend.all_finite(x)
    assert got is (bad is None)
    assert_close(got, reference.all_finite(up(x)), "all_finite", dtype)
    if x.ndim == 2:  # a strided view
        assert backend.all_finite(x[:, ::2]) is bool(np.isfinite(x[:, ::2]).all())


# ---------------------------------------------------------------------------------------------
# Determinism: the same input 20 times gives bit-identical output (a race would show)

DET_N, DET_D, DET_H = (128, 784, 128) if not NO_JIT else (16, 40, 12)


def determinism_case(name, dtype):
    """A callable running kernel `name` on fresh copies of fixed inputs, returning its outputs."""
    rng = rng_for("det", name)
    N, D, H, C, P = DET_N, DET_D, DET_H, 10, 4 * DET_D + 1
    X = rng.random((N, D)).astype(dtype)
    W = (rng.standard_normal((D, H)) * np.sqrt(2 / D)).astype(dtype)
    b = rng.standard_normal(H).astype(dtype)
    Z = (rng.standard_normal((N, H)) * 3).astype(dtype)
    L = (rng.standard_normal((N, C)) * 5).astype(dtype)
    y = rng.integers(0, C, N).astype(np.uint8)
    A = reference.softmax(L, np.empty_like(L))
    dZ = (rng.standard_normal((N, H)) / N).astype(dtype)
    images = rng.integers(0, 256, (200, D), dtype=np.uint8)
    index = rng.integers(0, 200, N)
    order = np.concatenate([rng.permutation(200), rng.permutation(200)])
    p, g = rng.standard_normal(P).astype(dtype), rng.standard_normal(P).astype(dtype)
    net = MLP.he_init((D, H, C), rng, dtype)
    smooth = MLP(net.sizes, dtype, activations=("tanh", "identity"))  # the same weights through tanh
    smooth.params[...] = net.params
    y_all = rng.integers(0, C, 200).astype(np.uint8)
    e = np.empty
    scale, shift = np.full(D, 1 / 255, dtype), np.zeros(D, dtype)
    codes = net.activation_codes
    def gather_rows(backend):
        return [backend.gather_rows(images, index, scale, shift, e((N, D), dtype))]

    def linear_forward(backend):
        return [backend.linear_forward(X, W, b, e((N, H), dtype), "relu")]

    def activation_forward(backend):
        return [backend.activation_forward(Z, e_like(Z), name) for name in kernels.ACTIVATIONS]

    def activation_backward(backend):
        return [backend.activation_backward(dZ, backend.activation_forward(Z, e_like(Z), name), e_like(Z), name)
                for name in kernels.ACTIVATIONS]

    def softmax(backend):
        return [backend.softmax(L, e_like(L))]

    def cross_entropy(backend):
        return [backend.cross_entropy(L, y)]

    def softmax_xent_backward(backend):
        return [backend.softmax_xent_backward(A, y, e_like(A))]

    def softmax_cross_entropy(backend):
        d = e_like(L)
        return [backend.softmax_cross_entropy(L, y, d), d]

    def linear_backward(backend):
        out = (e((D, H), dtype), e(H, dtype), e((N, D), dtype))
        return [backend.linear_backward(dZ, X, W, *out, "relu"), *out]

    def adam_update(backend):
        q, m, v = p.copy(), np.abs(g) * 0.1, g * g * 0.01
        return [backend.adam_update(q, g, m, v, 3, 1e-3, 0.9, 0.999, 1e-8), q, m, v]

    def sgd_update(backend):
        q = p.copy()
        return [backend.sgd_update(q, g, 0.1), q]

    def all_finite(backend):
        return [backend.all_finite(p)]

    def mlp_gradients(backend):
        ws = Workspace(net.sizes, N, dtype)
        return [loss_and_grads(net, backend, images, index, y_all, ws), ws.grads]

    def fresh_network():
        """A workspace, and fresh copies of the parameters and of Adam's moments."""
        return Workspace(net.sizes, N, dtype), net.params.copy(), np.abs(net.params) * 0.1, net.params**2 * 0.01

    def mlp_adam_step(backend):  # tanh, with an L2 penalty
        ws, q, m, v = fresh_network()
        return [*backend.mlp_adam_step(images, index, y_all, net.input_scale, net.input_shift, ws.sizes,
                                       smooth.activation_codes, q, ws.grads, m, v, 3, 1e-3, 0.9, 0.999, 1e-8,
                                       ws.buffers, 1e-3), q, m, v, ws.grads]

    def mlp_train_steps(backend):  # three Adam steps, the last one partial
        ws, q, m, v = fresh_network()
        return [*backend.mlp_train_steps(images, order, [0, N, 2 * N, 2 * N + 3], y_all, net.input_scale,
                                         net.input_shift, ws.sizes, smooth.activation_codes, q, ws.grads, "adam",
                                         (m, v), (0.9, 0.999, 1e-8), 3, [1e-3, 2e-3, 5e-4], ws.buffers, 1e-3),
                q, m, v, ws.grads]

    def mlp_logits(backend):
        ws, out = Workspace(net.sizes, N, dtype), e((N, C), dtype)
        return [backend.mlp_logits(images, index, net.input_scale, net.input_shift, ws.sizes, codes, net.params, out,
                                   ws.buffers)]

    cases = {case.__name__: case for case in (
        gather_rows, linear_forward, activation_forward, activation_backward, softmax, cross_entropy,
        softmax_xent_backward, softmax_cross_entropy, linear_backward, adam_update, sgd_update, all_finite,
        mlp_gradients, mlp_adam_step, mlp_train_steps, mlp_logits)}
    return cases[name]


def e_like(a):
    return np.empty_like(a)


def as_bytes(outputs):
    return b"|".join(np.asarray(o).tobytes() for o in outputs)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", kernels.KERNEL_NAMES)
def test_every_kernel_is_deterministic(backend, dtype, name):
    run = determinism_case(name, dtype)  # a KeyError here: a new kernel needs a case above
    with blas_threads(None):  # every core: threaded BLAS is where a race could show
        first = as_bytes(run(backend))
        for attempt in range(19):
            assert as_bytes(run(backend)) == first, f"{name}: run {attempt + 2} differs from run 1"


# ---------------------------------------------------------------------------------------------
# The whole network through each backend

SIZES_NET = (784, 33, 17, 10)


def network_batch(n, seed=0, sizes=SIZES_NET, images=None):
    """n uint8 images and labels (first class first, last class last) for a network of `sizes`."""
    rng = np.random.default_rng([seed, n])
    images = rng.integers(0, 256, (max(n, 2), sizes[0]), dtype=np.uint8) if images is None else images
    labels = rng.integers(0, sizes[-1], len(images)).astype(np.uint8)
    labels[0], labels[n - 1] = 0, sizes[-1] - 1
    return images, labels


def run_network(backend, model, images, index, labels, rows, threads=None, alpha=0.0):
    """loss_and_grads (with the L2 penalty alpha) and mlp_logits on images[index] through a Workspace
    of `rows` rows, on `threads` Numba threads (the JIT cuts rows and parameters by it): (logits,
    loss, gradient). Buffers start as NaN so that unwritten cells show."""
    ws = Workspace(model.sizes, rows, model.dtype)
    ws.grads[...] = np.nan
    for buffer in ws.buffers[:3]:
        buffer[...] = np.nan
    saved = numba.get_num_threads()
    numba.set_num_threads(threads or saved)
    try:
        loss = loss_and_grads(model, backend, images, index, labels, ws, alpha)
        logits = np.full((len(index), model.num_classes), np.nan, model.dtype)
        backend.mlp_logits(images, index, model.input_scale, model.input_shift, ws.sizes, model.activation_codes,
                           model.params, logits, ws.buffers)
    finally:
        numba.set_num_threads(saved)
    return logits, loss, ws.grads.copy()


def network_pair(sizes, dtype, hostile=False, activations=None):
    """A He-initialised model of `dtype` (biases nudged off zero) and its float64 twin, equal values.

    hostile: the output layer's weights x2000, so logits reach ~1e4 and softmax saturates.
    activations: the layers' (default relu hidden layers).
    """
    model = MLP.he_init(sizes, np.random.default_rng(1), dtype, activations=activations)
    model.params[...] += (np.random.default_rng(2).standard_normal(model.params.size) * 0.01).astype(dtype)
    if hostile:
        model.W[-1][...] *= 2000
    oracle = MLP(sizes, np.float64, model.input_scale, model.input_shift, model.activations)
    oracle.params[...] = model.params  # the same (dtype-valued) parameters, exactly
    return model, oracle


# (sizes, rows used, rows in the buffer, threads): 784-33-17-10 at the awkward batch sizes (one
# thread without rows when N = 1, uneven parts, the last partial batch in a 128-row workspace,
# more threads than the 10 classes have bias entries to share); no hidden layer; a hidden layer of
# width 1 (fewer weight rows than threads); 784-128-10 itself.
NETWORKS = pytest.mark.parametrize("sizes, n, rows, threads", [
    (SIZES_NET, 1, 1, 1), (SIZES_NET, 1, 128, 2), (SIZES_NET, 7, 7, 1), (SIZES_NET, 7, 7, 3),
    (SIZES_NET, 96, 128, 2), (SIZES_NET, 128, 128, 16), ((13, 4), 5, 8, 2), ((5, 1, 3), 6, 6, 4),
    ((784, 128, 10), 96, 128, 2),
], ids=["N1", "N1of128_t2", "N7", "N7_t3", "N96of128_t2", "N128_t16", "no_hidden", "width1_t4", "784-128-10"])


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@NETWORKS
@pytest.mark.parametrize("hostile", [False, True], ids=["normal", "logits1e4"])
def test_network_gradients_and_logits_match_float64_reference(backend, dtype, sizes, n, rows, threads, hostile):
    threads = min(threads, numba.config.NUMBA_NUM_THREADS)  # capped here; the test below lifts the cap
    model, oracle = network_pair(sizes, dtype, hostile)
    images, labels = network_batch(n, sizes=sizes)
    index = np.random.default_rng(n).permutation(len(images))[:n]
    logits, loss, grads = run_network(backend, model, images, index, labels, rows, threads)
    ref_logits, ref_loss, ref_grads = run_network(reference, oracle, images, index, labels, rows)
    kernel = "network_hostile" if hostile else "network"
    assert_close(logits, ref_logits, kernel, dtype)
    assert_close(loss, ref_loss, kernel, dtype)
    assert_close(grads, ref_grads, kernel, dtype)
    assert np.isfinite(loss) and loss > 0
    assert all(np.abs(dW).max() > 0 for dW in layer_views(ref_grads, sizes)[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden", kernels.ACTIVATIONS)
@pytest.mark.parametrize("first", [True, False], ids=["first_hidden", "second_hidden"])
def test_network_of_other_activations_matches_float64_reference(backend, dtype, hidden, first):
    """784-33-17-10 with `hidden` as one hidden layer's activation and relu as the other's: each
    layer's code reaches its own layer, forward and backward (96 of 128 rows, 2 threads)."""
    activations = (hidden, "relu", "identity") if first else ("relu", hidden, "identity")
    model, oracle = network_pair(SIZES_NET, dtype, activations=activations)
    images, labels = network_batch(96)
    index = np.random.default_rng(96).permutation(len(images))[:96]
    got = run_network(backend, model, images, index, labels, 128, min(2, numba.config.NUMBA_NUM_THREADS))
    for fast, ref in zip(got, run_network(reference, oracle, images, index, labels, 128)):
        assert_close(fast, ref, "network", dtype)


# Every activation in one net, each in a layer of its own (and identity in a hidden layer too)
SIZES_MIXED = (784, 33, 17, 13, 11, 10)
MIXED = ("tanh", "logistic", "relu", "identity", "identity")
# (rows used, rows in the buffer, threads): one row, uneven parts, the last partial batch
MIXED_BATCHES = pytest.mark.parametrize("n, rows, threads", [(1, 1, 1), (7, 7, 3), (96, 128, 2)],
                                        ids=["N1", "N7_t3", "N96of128_t2"])


@pytest.mark.parametrize("dtype", DTYPES)
@MIXED_BATCHES
@pytest.mark.parametrize("alpha", [0.0, 1e-4, 0.5])
def test_network_of_mixed_activations_with_l2_matches_float64_reference(backend, dtype, n, rows, threads, alpha):
    """SIZES_MIXED with MIXED activations and an L2 penalty alpha (0; scikit-learn's default 1e-4;
    0.5, where the penalty is a sizeable part of loss and gradient): logits, loss, every gradient."""
    threads = min(threads, numba.config.NUMBA_NUM_THREADS)
    model, oracle = network_pair(SIZES_MIXED, dtype, activations=MIXED)
    images, labels = network_batch(n, sizes=SIZES_MIXED)
    index = np.random.default_rng(n).permutation(len(images))[:n]
    got = run_network(backend, model, images, index, labels, rows, threads, alpha)
    for fast, ref in zip(got, run_network(reference, oracle, images, index, labels, rows, alpha=alpha)):
        assert_close(fast, ref, "network", dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_network_l2_penalty_is_scikit_learns_on_the_weights_only(backend, dtype):
    """alpha adds ½·alpha·Σ‖W‖²/N to the loss and alpha·W/N to each dW (scikit-learn's MLPClassifier:
    loss += 0.5·alpha·Σ w·w / n_samples, coef_grads += alpha·W, then / n_samples), nothing to the
    biases: against the same backend's alpha = 0 results plus those terms formed in float64."""
    alpha, n = 0.3, 7
    model, _ = network_pair(SIZES_NET, dtype)
    images, labels = network_batch(n)
    index = np.arange(n)
    _, loss0, grads0 = run_network(backend, model, images, index, labels, n, alpha=0.0)
    _, loss, grads = run_network(backend, model, images, index, labels, n, alpha=alpha)
    W64 = [up(W) for W in model.W]
    assert_close(loss, loss0 + 0.5 * alpha * sum(float((W**2).sum()) for W in W64) / n, "network", dtype)
    (dWs, dbs), (dWs0, dbs0) = layer_views(grads, SIZES_NET), layer_views(grads0, SIZES_NET)
    for dW, dW0, W, db, db0 in zip(dWs, dWs0, W64, dbs, dbs0):
        assert_close(dW, up(dW0) + alpha / n * W, "network", dtype)
        assert np.array_equal(db, db0), "the biases carry no penalty"


@pytest.mark.parametrize("activations", [(1, 1, 1), (1, 0), (7, 1, 0), (-1, 1, 0)],
                         ids=["relu_output", "too_few", "unknown", "negative"])
def test_network_kernels_refuse_a_bad_network_description(backend, activations):
    """One known code per layer, the last identity (softmax-cross-entropy follows), or ValueError."""
    model, _ = network_pair(SIZES_NET, np.float32)
    images, labels = network_batch(8)
    ws, codes = Workspace(model.sizes, 8, model.dtype), np.array(activations, np.int64)
    with pytest.raises(ValueError):
        backend.mlp_gradients(images, np.arange(8), labels, model.input_scale, model.input_shift, ws.sizes, codes,
                              model.params, ws.grads, ws.buffers)
    with pytest.raises(ValueError):
        backend.mlp_logits(images, np.arange(8), model.input_scale, model.input_shift, ws.sizes, codes,
                           model.params, np.empty((8, 10), np.float32), ws.buffers)


def test_jit_network_kernels_agree_on_any_thread_count():
    """Threads only change which thread computes which rows and which weight-gradient band. BLAS
    may round a product of 18 rows differently from one of 37 (other kernels for the edges), so
    the results agree to the float32 network tolerance, not bit for bit."""
    model, _ = network_pair(SIZES_NET, np.float32)
    images, labels = network_batch(37)
    index = np.random.default_rng(0).permutation(37)
    one = run_network(jit, model, images, index, labels, 64, 1)
    for threads in (2, 3, 4, MANY_THREADS):
        if threads > numba.config.NUMBA_NUM_THREADS:
            break
        other = run_network(jit, model, images, index, labels, 64, threads)
        for a, b in zip(one, other):
            assert_close(b, a, "network", np.float32)


@pytest.mark.skipif(NO_JIT, reason="threads do not exist without the JIT")
@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_fixed_parts_give_identical_results_on_any_number_of_running_threads(alpha):
    """A workspace cut into `parts` parts fixes which rows and bands go together, and so every
    rounding: one running thread doing all parts gives the very bits of one thread per part. This
    is what lets a run give up threads to other work (threads.CoreShare) without changing results.
    With an L2 penalty, each band's Σ W² is summed in band order: the loss keeps its bits too."""
    model, _ = network_pair(SIZES_NET, np.float32)
    images, labels = network_batch(37)
    index = np.random.default_rng(0).permutation(37)
    results = []
    for running in range(1, numba.config.NUMBA_NUM_THREADS + 1):
        ws, m, v = Workspace(model.sizes, 64, model.dtype, parts=3), *np.zeros((2, model.params.size), np.float32)
        params = model.params.copy()
        saved = numba.get_num_threads()
        numba.set_num_threads(running)
        try:
            loss, ok = jit.mlp_adam_step(images, index, labels, model.input_scale, model.input_shift, ws.sizes,
                                         model.activation_codes, params, ws.grads, m, v, 1, 1e-3, 0.9, 0.999, 1e-8,
                                         ws.buffers, alpha)
        finally:
            numba.set_num_threads(saved)
        assert ok
        results.append((loss, params, ws.grads.copy(), m, v))
    for other in results[1:]:
        assert other[0] == results[0][0]
        for a, b in zip(other[1:], results[0][1:]):
            assert np.array_equal(a, b)


MANY_THREADS = 16


@pytest.mark.slow
@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS >= MANY_THREADS, reason="already run with many threads")
@pytest.mark.skipif(NO_JIT, reason="threads do not exist without the JIT")
def test_network_kernels_with_more_threads_than_cores():
    """The thread-count cases above are capped at this machine's Numba threads (2 here). Run them
    again in a process allowed 16, so that 3, 4 and 16 parts (uneven rows, empty bands) run too."""
    env = dict(os.environ, NUMBA_NUM_THREADS=str(MANY_THREADS))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k",
                           "network or fused or thread_count"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and " failed" not in done.stdout


@pytest.mark.parametrize("dtype", DTYPES)
@NETWORKS
def test_fused_adam_step_matches_gradients_then_update(backend, dtype, sizes, n, rows, threads):
    """mlp_adam_step, three steps in a row (m and v carry over), at every thread count of NETWORKS:
    its gradients against the float64 reference's, and its update against the float64 reference
    adam_update applied to those same gradients. (Against a float64 run of its own, Adam would
    amplify the gradients' rounding where a gradient is ~0: at step 1 the update is lr·sign(g).)"""
    check_fused_adam_step(backend, dtype, sizes, n, rows, threads)


@pytest.mark.parametrize("dtype", DTYPES)
@MIXED_BATCHES
def test_fused_adam_step_with_l2_and_mixed_activations(backend, dtype, n, rows, threads):
    """As above on SIZES_MIXED with MIXED activations and alpha = 0.5: the L2 term reaches the
    gradients before Adam reads them, and the loss carries the penalty."""
    check_fused_adam_step(backend, dtype, SIZES_MIXED, n, rows, threads, 0.5, MIXED)


def check_fused_adam_step(backend, dtype, sizes, n, rows, threads, alpha=0.0, activations=None):
    threads = min(threads, numba.config.NUMBA_NUM_THREADS)
    model, oracle = network_pair(sizes, dtype, activations=activations)
    images, labels = network_batch(n, sizes=sizes)
    ws, ref_ws = Workspace(model.sizes, rows, dtype), Workspace(model.sizes, rows, np.float64)
    m, v = np.zeros_like(model.params), np.zeros_like(model.params)
    hyper = (1e-2, 0.8, 0.99, 1e-8)
    saved = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        for step in range(1, 4):
            index = np.random.default_rng([n, step]).permutation(len(images))[:n]
            before = [np.array(a, np.float64) for a in (model.params, m, v)]  # copies, also of float64
            loss, finite = backend.mlp_adam_step(images, index, labels, model.input_scale, model.input_shift,
                                                 ws.sizes, model.activation_codes, model.params, ws.grads, m, v,
                                                 step, *hyper, ws.buffers, alpha)
            oracle.params[...] = before[0]
            ref_loss = reference.mlp_gradients(images, index, labels, oracle.input_scale, oracle.input_shift,
                                               ref_ws.sizes, oracle.activation_codes, oracle.params, ref_ws.grads,
                                               None, alpha)
            assert finite is True
            assert_close(loss, ref_loss, "network", dtype)
            assert_close(ws.grads, ref_ws.grads, "network", dtype)
            assert reference.adam_update(*before[:1], up(ws.grads), *before[1:], step, *hyper)
            for got, ref in zip((model.params, m, v), before):
                assert_close(got, ref, "adam_update", dtype)
    finally:
        numba.set_num_threads(saved)


# ---------------------------------------------------------------------------------------------
# Many steps in one call (mlp_train_steps), as training runs them

# (sizes, activations, images, rows a batch, threads): an epoch of batches of `rows`, the last one
# partial; 1-row batches; mixed activations (with alpha); more parts than Numba may run here.
STEP_RUNS = pytest.mark.parametrize("sizes, activations, n, rows, threads", [
    (SIZES_NET, None, 37, 8, 1), (SIZES_NET, None, 37, 8, 2), ((13, 4), None, 5, 1, 1),
    (SIZES_MIXED, MIXED, 50, 16, 3),
], ids=["N37by8", "N37by8_t2", "rows1", "mixed_t3"])


def run_steps(backend, model, images, labels, order, starts, lrs, rows, threads, alpha, chunked, limit=np.inf,
              optimizer="adam"):
    """`optimizer` (Adam from zero moments) over the batches order[starts[k]:starts[k + 1]] with a
    fresh workspace of `rows` rows on `threads` threads: all in one mlp_train_steps call (chunked),
    or a step a batch through the single-step kernels (Adam: mlp_adam_step; GD: mlp_gradients, then
    sgd_update), stopping where mlp_train_steps would. (losses, finite, params, m, v, grads)."""
    params, m, v = model.params.copy(), np.zeros_like(model.params), np.zeros_like(model.params)
    ws = Workspace(model.sizes, rows, model.dtype)
    net = (model.input_scale, model.input_shift, ws.sizes, model.activation_codes, params, ws.grads)
    adam = optimizer == "adam"
    saved = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        if chunked:
            state, hyper = ((m, v), (0.8, 0.99, 1e-8)) if adam else ((), ())
            losses, finite = backend.mlp_train_steps(images, order, starts, labels, *net, optimizer, state, hyper, 1,
                                                     lrs, ws.buffers, alpha, limit)
        else:
            losses, finite = [], True
            for k, lr in enumerate(lrs):
                index = order[starts[k] : starts[k + 1]]
                if adam:
                    loss, finite = backend.mlp_adam_step(images, index, labels, *net, m, v, k + 1, lr, 0.8, 0.99,
                                                         1e-8, ws.buffers, alpha)
                else:
                    loss = backend.mlp_gradients(images, index, labels, *net, ws.buffers, alpha)
                    finite = backend.sgd_update(params, ws.grads, lr)
                losses.append(loss)
                if not (finite and np.isfinite(loss) and loss <= limit):
                    break
    finally:
        numba.set_num_threads(saved)
    return np.array(losses), finite, params, m, v, ws.grads


def step_batches(n, rows, steps=None):
    """A shuffled order of n images and the starts of its batches of `rows` (the last one partial)."""
    order = np.random.default_rng([n, rows]).permutation(n)
    starts = np.append(np.arange(0, n, rows), n)
    return order, starts if steps is None else starts[: steps + 1]


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", kernels.OPTIMIZERS)
@pytest.mark.parametrize("dtype", DTYPES)
@STEP_RUNS
def test_steps_in_one_call_give_the_bits_of_one_step_a_call(backend, dtype, sizes, activations, n, rows, threads,
                                                           optimizer):
    """An epoch of steps in one mlp_train_steps call, each with its own learning rate (a warm-up),
    equals the single-step kernels called once a batch, bit for bit: the losses, parameters, moments
    and the last step's gradients. Adam's: mlp_adam_step, checked against the float64 reference above;
    gradient descent's: mlp_gradients, then sgd_update, the road it took before it ran fused."""
    model, _ = network_pair(sizes, dtype, activations=activations)
    images, labels = network_batch(n, sizes=sizes)
    order, starts = step_batches(n, rows)
    lrs = [1e-2 * (k + 1) / len(starts) for k in range(len(starts) - 1)]
    alpha = 0.5 if activations else 0.0
    chunked, single = (run_steps(backend, model, images, labels, order, starts, lrs, rows, threads, alpha, c,
                                 optimizer=optimizer) for c in (True, False))
    assert len(chunked[0]) == len(starts) - 1 and chunked[1] is True
    for got, want in zip(chunked, single):
        assert np.array_equal(got, want)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the reference's inf * 0
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("failure", ["loss_above_limit", "parameter_not_finite"])
def test_adam_steps_stop_after_the_first_step_that_fails(backend, dtype, failure):
    """Step 1 (of 0..4) takes a huge learning rate: the loss of step 2 explodes past the limit, or
    (an infinite rate) step 1 leaves parameters that are not finite. The call returns after that
    step, with the losses of the steps taken and the state a one-step-a-call loop stopping there
    leaves (NaN where it is NaN)."""
    model, _ = network_pair(SIZES_NET, dtype)
    images, labels = network_batch(40)
    order, starts = step_batches(40, 8)
    huge, stops_after = (10.0, 2) if failure == "loss_above_limit" else (np.inf, 1)
    lrs = [1e-3, huge, 1e-3, 1e-3, 1e-3]
    calm = run_steps(backend, model, images, labels, order, starts, [1e-3] * 5, 8, 1, 0.0, True)[0]
    limit = 100 * calm[0]
    runs = [run_steps(backend, model, images, labels, order, starts, lrs, 8, 1, 0.0, c, limit) for c in (True, False)]
    losses, finite = runs[0][:2]
    assert len(losses) == stops_after + 1 and np.all(calm[: stops_after] <= limit)
    if failure == "loss_above_limit":
        assert finite is True and losses[-1] > limit
    else:
        assert finite is False
    for got, want in zip(runs[0], runs[1]):
        assert np.array_equal(got, want, equal_nan=True)


@pytest.mark.skipif(NO_JIT, reason="the reference takes the steps before a bad batch, as numpy indexing allows")
@pytest.mark.parametrize("problem", ["index", "negative_index", "label", "too_many_rows", "empty_batch", "lrs"])
def test_adam_steps_refuse_a_bad_later_batch_before_taking_any_step(problem):
    """The compiled steps do no bounds checks: a bad row, label or batch in the third step is refused
    with a ValueError before the first step changes anything."""
    model, _ = network_pair(SIZES_NET, np.float32)
    images, labels = network_batch(40)
    order, starts = step_batches(40, 8)
    lrs = [1e-3] * (len(starts) - 1)
    if problem == "index":
        order[18] = len(images)
    elif problem == "negative_index":
        order[18] = -1
    elif problem == "label":
        labels[order[18]] = SIZES_NET[-1]
    elif problem == "too_many_rows":
        starts = np.array([0, 8, 16, 25, 32])
        lrs = lrs[:4]
    elif problem == "empty_batch":
        starts = np.array([0, 8, 16, 16, 24])
        lrs = lrs[:4]
    else:
        lrs = lrs[:-1]
    params, m, v = model.params.copy(), np.zeros_like(model.params), np.zeros_like(model.params)
    ws = Workspace(model.sizes, 8, model.dtype)
    with pytest.raises(ValueError):
        jit.mlp_train_steps(images, order, starts, labels, model.input_scale, model.input_shift, ws.sizes,
                            model.activation_codes, params, ws.grads, "adam", (m, v), (0.9, 0.999, 1e-8), 1, lrs,
                            ws.buffers)
    assert np.array_equal(params, model.params) and not m.any() and not v.any()


@pytest.mark.parametrize("problem", ["label", "index", "negative_index", "small_work", "wrong_grads", "ragged_partials",
                                     "float64_partials"])
def test_compiled_network_kernels_refuse_what_would_leave_their_buffers(problem):
    """The compiled kernels do no bounds checks of their own: the wrappers must refuse first."""
    model, _ = network_pair(SIZES_NET, np.float32)
    images, labels = network_batch(8)
    index, ws = np.arange(8), Workspace(model.sizes, 8, model.dtype)
    grads = ws.grads
    if problem.endswith("partials"):  # pieces of the first layer's product: whole (8, 33) blocks of the params' dtype
        partials = np.zeros(8 * 33 + 5, np.float32) if problem == "ragged_partials" else np.zeros(8 * 33)
        ws.buffers = ws.buffers._replace(parts=2, partials=partials)
    if problem == "label":
        labels[3] = SIZES_NET[-1]
    elif problem == "index":
        index[5] = len(images)
    elif problem == "negative_index":
        index[2] = -1
    elif problem == "small_work":
        ws = Workspace(model.sizes, 4, model.dtype)
    else:
        grads = np.zeros((2, model.params.size), model.dtype)
    codes = model.activation_codes
    with pytest.raises(ValueError):
        jit.mlp_gradients(images, index, labels, model.input_scale, model.input_shift, ws.sizes, codes,
                          model.params, grads, ws.buffers)
    if problem in ("index", "negative_index", "small_work"):
        with pytest.raises(ValueError):
            jit.mlp_logits(images, index, model.input_scale, model.input_shift, ws.sizes, codes, model.params,
                           np.empty((8, 10), np.float32), ws.buffers)


@pytest.mark.skipif(NO_JIT, reason="threads do not exist without the JIT")
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_step_cut_in_parts_without_room_for_first_layer_pieces_multiplies_it_whole(dtype):
    """A workspace made without partials (training=False, as for logits) still trains in 2 parts:
    the first layer's product is then one piece (rows and bands still cut in 2). Its results are
    the reference's, and within rounding those of a workspace that cuts the product in 2 pieces."""
    model, oracle = network_pair(SIZES_NET, dtype)
    images, labels = network_batch(37)
    index = np.random.default_rng(0).permutation(37)
    results = []
    for training in (False, True):
        buffers = kernels.mlp_workspace(model.sizes, 64, dtype, parts=2, training=training)
        assert buffers.partials.size == (64 * 33 if training else 0)
        grads = np.full_like(model.params, np.nan)
        loss = jit.mlp_gradients(images, index, labels, model.input_scale, model.input_shift,
                                 np.asarray(model.sizes, np.int64), model.activation_codes, model.params, grads,
                                 buffers)
        results.append((loss, grads))
    ref_ws = Workspace(model.sizes, 64, np.float64)
    ref_loss = reference.mlp_gradients(images, index, labels, oracle.input_scale, oracle.input_shift, ref_ws.sizes,
                                       oracle.activation_codes, oracle.params, ref_ws.grads, None)
    for loss, grads in results:
        assert_close(loss, ref_loss, "network", dtype)
        assert_close(grads, ref_ws.grads, "network", dtype)


@pytest.mark.skipif(NO_JIT, reason="the passes are one compiled call only with the JIT")
@pytest.mark.parametrize("optimizer", [*kernels.OPTIMIZERS, None])
@pytest.mark.parametrize("parts", [1, 2, 3])
def test_a_steps_passes_run_one_call_each_give_the_whole_steps_bits(parts, optimizer):
    """bench.profile_step times the three passes of a step (first layer, rows, bands) as separate
    calls (jit.step_pass): they must do exactly the work of the whole step, bit for bit; with no
    optimizer, the step's gradients (mlp_gradients)."""
    model, _ = network_pair(SIZES_NET, np.float32)
    images, labels = network_batch(37)
    index = np.random.default_rng(0).permutation(37)
    net = (model.input_scale, model.input_shift, np.asarray(model.sizes, np.int64), model.activation_codes)
    results = []
    for apart in (False, True):
        ws, m, v = Workspace(model.sizes, 64, model.dtype, parts=parts), *np.full((2, model.params.size), 1e-3,
                                                                                   np.float32)
        params = model.params.copy()
        state, hyper = ((m, v), (0.9, 0.999, 1e-8)) if optimizer == "adam" else ((), ())
        if not apart and optimizer is None:
            jit.mlp_gradients(images, index, labels, *net, params, ws.grads, ws.buffers)
        elif not apart:
            jit.mlp_train_steps(images, index, [0, 37], labels, *net, params, ws.grads, optimizer, state, hyper, 3,
                                [1e-3], ws.buffers)
        else:
            for name in jit.STEP_PASSES:
                jit.step_pass(name, images, index, labels, *net, params, ws.grads, optimizer, state, hyper, 3, 1e-3,
                              ws.buffers)
        results.append((params, ws.grads, m, v))
    for whole, apart in zip(*results):
        assert np.array_equal(whole, apart)
    assert np.array_equal(results[0][0], model.params) == (optimizer is None)  # the step updated, if it should


def loss_curve(backend, dtype, steps=20, batch=32):
    """Losses of `steps` Adam steps (lr 1e-3) on random uint8 images with random labels."""
    model = MLP.he_init(SIZES_NET, np.random.default_rng(3), dtype)
    opt = Adam(model.params.size, dtype)
    images, labels = network_batch(256, seed=4)
    ws = Workspace(model.sizes, batch, dtype)
    order = np.random.default_rng(5).permutation(256)
    losses = []
    for step in range(steps):
        index = order[(step * batch) % 256 :][:batch]
        losses.append(loss_and_grads(model, backend, images, index, labels, ws))
        assert opt.update(backend, model.params, ws.grads, 1e-3)
    return np.array(losses)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
def test_loss_curve_agrees_between_backends(backend, dtype):
    fast, ref = loss_curve(backend, dtype), loss_curve(reference, dtype)
    for step, (f, r) in enumerate(zip(fast, ref)):
        try:
            assert_close(float(f), float(r), "loss_curve", dtype)
        except AssertionError as exc:
            raise AssertionError(f"step {step + 1} of {len(ref)}: {exc}") from None
    assert ref[-5:].mean() < ref[:5].mean(), "the curve should go down, or it proves little"


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_both_optimizers_minimise_the_loss_with_its_l2_penalty(kind):
    """GD (mlp_gradients, then sgd_update) and Adam (mlp_adam_step) pass their alpha to the kernels:
    a step reports the loss with the penalty and leaves its gradient in ws.grads, bit for bit what
    loss_and_grads gives with that alpha (the reference backend, the same buffers' shapes)."""
    model, _ = network_pair(SIZES_NET, np.float64, activations=("tanh", "logistic", "identity"))
    images, labels = network_batch(16)
    index = np.arange(16)
    ws, ref_ws = Workspace(model.sizes, 16, model.dtype), Workspace(model.sizes, 16, model.dtype)
    unpenalised = loss_and_grads(model, reference, images, index, labels, ref_ws)
    expected = loss_and_grads(model, reference, images, index, labels, ref_ws, 0.5)
    loss, finite = OPTIMIZERS[kind](model.params.size, model.dtype, alpha=0.5).train_step(
        reference, model, images, index, labels, ws, 1e-3)
    assert finite and loss == expected > unpenalised
    assert np.array_equal(ws.grads, ref_ws.grads)


@pytest.mark.parametrize("dtype", DTYPES)
def test_steps_count_the_rows_their_logits_predict_right_before_the_update(backend, dtype):
    """mlp_train_steps' correct[k]: step k's rows whose logits, before its update, are largest at the
    label (an epoch's running accuracy, with no pass of its own). Checked one step at a time against
    mlp_logits on the parameters the step started from (1 part: the same products), and the counts
    of one call of many steps against those of one step a call."""
    model, _ = network_pair(SIZES_NET, dtype)
    images, labels = network_batch(50)
    order, starts = step_batches(50, 16)
    lrs = [0.05] * (len(starts) - 1)
    ws = Workspace(model.sizes, 16, dtype, parts=1)
    net = (model.input_scale, model.input_shift, ws.sizes, model.activation_codes)
    params, expected, single = model.params.copy(), [], np.zeros(len(lrs), np.int64)
    for k, lr in enumerate(lrs):
        index = order[starts[k] : starts[k + 1]]
        logits = backend.mlp_logits(images, index, *net, params, np.empty((len(index), 10), dtype),
                                    kernels.mlp_workspace(model.sizes, 16, dtype, parts=1, training=False))
        expected.append(int(np.count_nonzero(logits.argmax(axis=1) == labels[index])))
        backend.mlp_train_steps(images, index, [0, len(index)], labels, *net, params, ws.grads, "gd", (), (), k + 1,
                                [lr], ws.buffers, correct=single[k:])
    many, params = np.full(len(lrs) + 2, -1, np.int64), model.params.copy()
    backend.mlp_train_steps(images, order, starts, labels, *net, params, ws.grads, "gd", (), (), 1, lrs, ws.buffers,
                            correct=many)
    assert single.tolist() == expected and 0 < sum(expected) < 50
    assert many[: len(lrs)].tolist() == expected and many[len(lrs) :].tolist() == [-1, -1]  # no more than asked
