"""The reference kernels against formulas written out independently here.

kernels.reference is the specification the JIT twins are held to, so it gets its own oracle: the
same maths spelled differently (explicit loops, einsum, scipy.special, hand-computed numbers), in
float64. float32 inputs are judged the same way, on the float64 formula of the upcast inputs.
"""

import math
import zlib

import numpy as np
import pytest
from scipy.special import expit, logsumexp
from scipy.special import softmax as scipy_softmax
from tests.kernels.tolerances import assert_close

import kernels
from kernels import reference

DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64])


def up(a):
    return np.asarray(a, dtype=np.float64)


def rng_for(*key):
    """A generator seeded by the test's own parameters (repeatable across runs and machines)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


# ---------------------------------------------------------------------------------------------
# Layers


@DTYPES
@pytest.mark.parametrize("scale, shift", [(1 / 255, 0.0), (1 / (255 * 0.353), -0.286 / 0.353)])
def test_gather_rows_is_an_indexed_affine_map(dtype, scale, shift):
    rng = rng_for("gather", scale)
    images = rng.integers(0, 256, (9, 13), dtype=np.uint8)
    index = np.array([8, 0, 3, 3, 8])  # the last row, the first, a repeat
    out = np.empty((5, 13), dtype)
    assert reference.gather_rows(images, index, scale, shift, out) is out
    expected = np.empty((5, 13))
    for i, row in enumerate(index):
        for j in range(13):
            expected[i, j] = int(images[row, j]) * scale + shift
    assert_close(out, expected, "gather_rows", dtype)


# Each activation of kernels.ACTIVATIONS written out again: f(Z), and f'(Z) as a function of A = f(Z)
# (tanh through libm's math.tanh, logistic through scipy's expit; their derivatives as textbooks write them).
ORACLE = {
    "identity": (lambda Z: Z, lambda A: np.ones_like(A)),
    "relu": (lambda Z: np.where(Z > 0, Z, 0.0), lambda A: (A > 0).astype(np.float64)),
    "tanh": (np.vectorize(math.tanh, otypes=[np.float64]), lambda A: 1 - A**2),
    "logistic": (expit, lambda A: A * (1 - A)),
}
ACTIVATIONS = pytest.mark.parametrize("activation", kernels.ACTIVATIONS)


def test_every_activation_has_an_oracle():
    assert set(ORACLE) == set(kernels.ACTIVATIONS)


@DTYPES
@ACTIVATIONS
def test_linear_forward_is_xw_plus_b(dtype, activation):
    rng = rng_for("linear", activation)
    X = rng.random((7, 13)).astype(dtype)
    W = (rng.standard_normal((13, 5)) * math.sqrt(2 / 13)).astype(dtype)
    b = (rng.standard_normal(5) * 0.1).astype(dtype)
    out = np.empty((7, 5), dtype)
    assert reference.linear_forward(X, W, b, out, activation) is out
    Z = np.einsum("nd,dh->nh", up(X), up(W)) + up(b)[None, :]
    assert_close(out, ORACLE[activation][0](Z), "linear_forward", dtype)


@DTYPES
def test_relu_forward_and_backward_by_loops(dtype):
    Z = np.array([[-1.5, -0.0, 0.0, 1e-30, 2.0], [3.0, -1e-30, -7.0, 0.25, 0.0]], dtype)
    dA = np.arange(1, 11, dtype=dtype).reshape(2, 5)
    A = reference.activation_forward(Z, np.empty_like(Z), "relu")
    dZ = reference.activation_backward(dA, A, np.empty_like(Z), "relu")
    for i in range(2):
        for j in range(5):
            assert A[i, j] == (Z[i, j] if Z[i, j] > 0 else 0)
            assert dZ[i, j] == (dA[i, j] if Z[i, j] > 0 else 0)
    assert A.dtype == dZ.dtype == dtype


@DTYPES
def test_tanh_and_logistic_saturate_exactly_without_overflow(dtype):
    """±1e4 saturates to exactly ±1 (tanh) and 1 or 0 (logistic) with no overflow on the way (an
    error here: overflow, division by zero and invalid operations raise; e^-1e4 underflowing to 0
    is the intended result), and the derivative there is exactly 0;
    logistic(-90) = e^-90 / (1 + e^-90), subnormal in float32, keeps its value; 0 gives 0 and 1/2."""
    Z = np.array([[-1e4, -90.0, -0.0, 0.0, 90.0, 1e4]], dtype)
    dA = np.ones_like(Z)
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        t = reference.activation_forward(Z, np.empty_like(Z), "tanh")
        s = reference.activation_forward(Z, np.empty_like(Z), "logistic")
        dt = reference.activation_backward(dA, t, np.empty_like(Z), "tanh")
        ds = reference.activation_backward(dA, s, np.empty_like(Z), "logistic")
    assert t.tolist() == [[-1.0, -1.0, 0.0, 0.0, 1.0, 1.0]] and dt.tolist() == [[0.0, 0.0, 1.0, 1.0, 0.0, 0.0]]
    tiny = math.exp(-90) / (1 + math.exp(-90))
    assert s[0, [0, 2, 3, 4, 5]].tolist() == [0.0, 0.5, 0.5, 1.0, 1.0] and s[0, 1] == dtype(tiny)
    assert ds[0, [0, 2, 3, 5]].tolist() == [0.0, 0.25, 0.25, 0.0] and ds[0, 1] == dtype(tiny * (1 - tiny))
    assert t.dtype == s.dtype == dt.dtype == ds.dtype == dtype


@DTYPES
@pytest.mark.parametrize("with_dX", [False, True])
@ACTIVATIONS  # the activation whose output X is
def test_linear_backward_by_einsum(dtype, with_dX, activation):
    rng = rng_for("backward", with_dX, activation)
    X = ORACLE[activation][0](rng.standard_normal((7, 13))).astype(dtype)  # relu: exact zeros
    W = (rng.standard_normal((13, 5)) * math.sqrt(2 / 13)).astype(dtype)
    dZ = (rng.standard_normal((7, 5)) / 7).astype(dtype)
    dW, db = np.empty((13, 5), dtype), np.empty(5, dtype)
    dX = np.empty((7, 13), dtype) if with_dX else None
    reference.linear_backward(dZ, X, W, dW, db, dX, activation)
    assert_close(dW, np.einsum("nd,nh->dh", up(X), up(dZ)), "linear_backward", dtype)
    assert_close(db, np.einsum("nh->h", up(dZ)), "linear_backward", dtype)
    if with_dX:
        G = np.einsum("nh,dh->nd", up(dZ), up(W))
        assert_close(dX, G * ORACLE[activation][1](up(X)), "linear_backward", dtype)


# ---------------------------------------------------------------------------------------------
# Output layer


def tame_logits(rng, n=7, k=10):
    y = rng.integers(0, k, n)
    y[0], y[-1] = 0, k - 1
    return rng.standard_normal((n, k)) * 2, y


def softmax_by_loops(Z):
    out = np.empty(Z.shape)
    for i, row in enumerate(up(Z)):
        e = [math.exp(z - max(row)) for z in row]
        out[i] = [x / math.fsum(e) for x in e]
    return out


@DTYPES
def test_softmax_against_scipy_and_loops(dtype):
    Z, _ = tame_logits(rng_for("softmax"))
    Z = Z.astype(dtype)
    out = np.empty_like(Z)
    assert reference.softmax(Z, out) is out
    assert_close(out, scipy_softmax(up(Z), axis=1), "softmax", dtype)
    assert_close(out, softmax_by_loops(Z), "softmax", dtype)


@DTYPES
def test_softmax_of_hostile_rows(dtype):
    Z = np.array([[1e4, 0, 0, 0], [-1e4, 1e4, -1e4, 1e4], [5.0, 5.0, 5.0, 5.0], [1e6, 1e6, 1e6, 1e6]], dtype)
    out = reference.softmax(Z, np.empty_like(Z))
    expected = [[1, 0, 0, 0], [0, 0.5, 0, 0.5], [0.25] * 4, [0.25] * 4]
    assert_close(out, np.array(expected), "softmax", dtype)


@DTYPES
def test_cross_entropy_is_minus_log_softmax_on_tame_logits(dtype):
    Z, y = tame_logits(rng_for("xent"))
    Z = Z.astype(dtype)
    P = scipy_softmax(up(Z), axis=1)
    expected = float(np.mean([-math.log(P[i, y[i]]) for i in range(len(y))]))
    assert_close(reference.cross_entropy(Z, y), expected, "cross_entropy", dtype)


@DTYPES
def test_cross_entropy_is_logsumexp_minus_picked_logit_on_hostile_logits(dtype):
    Z = np.array([[1e4, 0, 0], [0, 1e4, 0], [-1e4, 1e4, 1e4], [1e6, 1e6, 1e6], [-3.0, -3.0, -3.0]], dtype)
    y = np.array([0, 2, 0, 1, 2])
    expected = float(np.mean(logsumexp(up(Z), axis=1) - up(Z)[np.arange(5), y]))  # 1e4, 1e4, 2e4+ln2, ln3, ln3
    assert_close(reference.cross_entropy(Z, y), expected, "cross_entropy", dtype)
    equal = np.full((3, 3), 1e6, dtype)
    assert reference.cross_entropy(equal, np.array([0, 1, 2])) == pytest.approx(math.log(3), abs=1e-15)


@DTYPES
def test_softmax_xent_backward_by_loops(dtype):
    Z, y = tame_logits(rng_for("xent_backward"))
    A = scipy_softmax(Z, axis=1).astype(dtype)
    out = np.empty_like(A)
    assert reference.softmax_xent_backward(A, y, out) is out
    expected = np.empty(A.shape)
    for n in range(A.shape[0]):
        for k in range(A.shape[1]):
            expected[n, k] = (float(A[n, k]) - (1.0 if k == y[n] else 0.0)) / len(y)
    assert_close(out, expected, "softmax_xent_backward", dtype)


@DTYPES
def test_softmax_cross_entropy_is_loss_and_gradient(dtype):
    Z, y = tame_logits(rng_for("fused"))
    Z = Z.astype(dtype)
    dZ = np.empty_like(Z)
    loss = reference.softmax_cross_entropy(Z, y, dZ)
    P = scipy_softmax(up(Z), axis=1)
    assert_close(loss, float(np.mean(-np.log(P[np.arange(len(y)), y]))), "softmax_cross_entropy", dtype)
    assert_close(dZ, (P - np.eye(Z.shape[1])[y]) / len(y), "softmax_cross_entropy", dtype)


# ---------------------------------------------------------------------------------------------
# Optimisers

# Adam, lr 0.1, beta1 0.9 (first moment), beta2 0.999 (second moment), eps 1e-8, on
# p0 = (1, -2, 0.5) with g1 = (0.5, -1, 0) then g2 = (-0.25, 2, 1). By hand (exact decimals):
# step 1: m1 = 0.9·0 + 0.1·g1          = (0.05, -0.1, 0)
#         v1 = 0.999·0 + 0.001·g1²     = (0.00025, 0.001, 0)       (beta1 here would give 0.025, 0.1, 0)
#         m̂ = m1/(1-0.9) = g1; v̂ = v1/(1-0.999) = g1², sqrt(v̂) = |g1| = (0.5, 1, 0)
#         p1 = p0 - 0.1·m̂/(sqrt(v̂)+1e-8) = (1 - 0.05/0.50000001, -2 + 0.1/1.00000001, 0.5 - 0)
#            = (0.90000000199999996, -1.90000000099999999, 0.5)
# step 2: m2 = 0.9·m1 + 0.1·g2         = (0.045-0.025, -0.09+0.2, 0+0.1) = (0.02, 0.11, 0.1)
#         v2 = 0.999·v1 + 0.001·g2²    = (0.00024975+0.0000625, 0.000999+0.004, 0+0.001)
#                                      = (0.00031225, 0.004999, 0.001)
#         m̂ = m2/(1-0.9²) = m2/0.19   = (0.105263157894736842, 0.578947368421052632, 0.526315789473684211)
#         v̂ = v2/(1-0.999²) = v2/0.001999
#                                      = (0.156203101550775388, 2.50075037518759380, 0.500250125062531266)
#         sqrt(v̂)                     = (0.395225380701664184, 1.58137610175049559, 0.707283624200738346)
#         p2 = p1 - 0.1·m̂/(sqrt(v̂)+1e-8)
#            = (0.873366298707846163, -1.93661035347207509, 0.425586318695406514)
ADAM_P0, ADAM_G = (1.0, -2.0, 0.5), ((0.5, -1.0, 0.0), (-0.25, 2.0, 1.0))
ADAM_EXPECTED = [  # (m, v, p) after each step
    ((0.05, -0.1, 0.0), (0.00025, 0.001, 0.0), (0.90000000199999996, -1.90000000099999999, 0.5)),
    ((0.02, 0.11, 0.1), (0.00031225, 0.004999, 0.001),
     (0.873366298707846163, -1.93661035347207509, 0.425586318695406514)),
]


@DTYPES
def test_adam_against_hand_computed_steps(dtype):
    p = np.array(ADAM_P0, dtype)
    m, v = np.zeros(3, dtype), np.zeros(3, dtype)
    for step, (g, (m_exp, v_exp, p_exp)) in enumerate(zip(ADAM_G, ADAM_EXPECTED), start=1):
        assert reference.adam_update(p, np.array(g, dtype), m, v, step, 0.1, 0.9, 0.999, 1e-8) is True
        assert_close(m, np.array(m_exp), "adam_update", dtype)
        assert_close(v, np.array(v_exp), "adam_update", dtype)  # beta1 in v: 0.025, not 0.00025
        assert_close(p, np.array(p_exp), "adam_update", dtype)


@DTYPES
def test_sgd_is_p_minus_lr_g(dtype):
    rng = rng_for("sgd")
    p0, g = rng.standard_normal(11).astype(dtype), rng.standard_normal(11).astype(dtype)
    p = p0.copy()
    assert reference.sgd_update(p, g, 0.05) is True
    assert p.dtype == dtype
    # rounded once from the float64 result: exact
    assert np.array_equal(p, (up(p0) - 0.05 * up(g)).astype(dtype))


@DTYPES
@pytest.mark.parametrize("value, finite", [(0.0, True), ("max", True), (-0.0, True), (np.nan, False),
                                           (np.inf, False), (-np.inf, False)])
def test_all_finite(dtype, value, finite):
    x = np.ones((3, 4), dtype)
    x[1, 2] = np.finfo(dtype).max if value == "max" else value
    assert reference.all_finite(x) is finite
