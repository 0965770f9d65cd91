"""Backprop against central differences, in float64, through every registered backend.

For a parameter θ_i the numerical derivative is (J(θ + ε e_i) - J(θ - ε e_i)) / 2ε, with J the mean
cross-entropy computed by the reference kernels (kernels.reference.cross_entropy of
kernels.reference.mlp_logits) plus the L2 penalty ½·alpha·Σ‖W‖²/N, written out here. The backprop
gradient comes from fastnet.model.loss_and_grads through the backend under test. The check is
||num - bp|| / (||num|| + ||bp||) < 1e-7.

Why 1e-7 holds with ε = 1e-6: the truncation error of central differences is ε²/6·|J'''| ~ 1e-13,
and rounding in J (~u·|J| = 1e-16·2.3) divided by 2ε gives ~1e-10 per coordinate, against
gradient coordinates of 1e-3..1e-1: relative differences ~1e-9 for a correct backward pass, while a
wrong one (a missing mask, a transposed product, a missing 1/N) gives O(1).

ReLU kinks: a finite difference across a kink (a pre-activation crossing 0) measures neither
one-sided derivative. A perturbation of ε = 1e-6 moves any pre-activation by at most ~1e-6·|x|, so
the tests keep only samples whose every pre-activation of a relu layer is at least 1e-4 from zero
(drawn from a larger pool; the assertion below says how many were kept). No coordinate is skipped.
tanh and logistic are smooth (third derivatives bounded by 2 and 1/8): the truncation bound holds.
The tiny network runs once per activation of kernels.ACTIVATIONS in its hidden layers, with and
without an L2 penalty, and once with different activations in its two hidden layers.
A third oracle, where installed: scikit-learn's own backprop (MLPClassifier._backprop), for the
activations and the L2 convention fastnet takes from it.
"""

import inspect
import zlib

import numpy as np
import pytest
from tests.kernels.tolerances import blas_threads

import kernels
from fastnet.model import MLP, Workspace, loss_and_grads
from kernels import reference

EPS = 1e-6
KINK_MARGIN = 1e-4
THRESHOLD = 1e-7


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """Hundreds of small products: one BLAS thread is far faster than several fighting for 2 cores."""
    with blas_threads(1):
        yield


def rng_for(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def model_with_biases(sizes, rng, activations=None):
    """He weights and small random biases (so b's gradient check is not at b = 0), float64."""
    model = MLP.he_init(sizes, rng, np.float64, activations=activations)
    for b in model.b:
        b[...] = rng.standard_normal(b.shape) * 0.1
    return model


def min_distance_to_kink(model, X):
    """Per sample, the smallest |pre-activation| over the units of relu layers (the only kinks)."""
    A, closest = X, np.full(len(X), np.inf)
    for W, b, activation in zip(model.W, model.b, model.activations):
        Z = reference.linear_forward(A, W, b, np.empty((len(X), W.shape[1])), "identity")
        if activation == "relu":
            closest = np.minimum(closest, np.abs(Z).min(axis=1))
        A = reference.activation_forward(Z, np.empty_like(Z), activation)
    return closest


def kink_free(model, pool, count):
    """The first `count` rows of pool whose hidden pre-activations all stay KINK_MARGIN from 0."""
    keep = np.flatnonzero(min_distance_to_kink(model, pool) > KINK_MARGIN)
    assert len(keep) >= count, f"only {len(keep)} of {len(pool)} samples are clear of ReLU kinks"
    return pool[keep[:count]]


def as_inputs(model):
    """A view of model that takes X as the network's input as is (scale 1, shift 0), same params."""
    raw = MLP(model.sizes, np.float64, input_scale=1.0, input_shift=0.0, activations=model.activations)
    raw.params = model.params
    return raw


def reference_loss(model, X, y, alpha=0.0):
    """J: mean cross-entropy of the reference's logits, plus ½·alpha·Σ‖W‖²/N over the weights."""
    raw = as_inputs(model)
    logits = reference.mlp_logits(X, np.arange(len(y)), raw.input_scale, raw.input_shift, raw.sizes,
                                  raw.activation_codes, raw.params, np.empty((len(y), raw.num_classes)), None)
    return reference.cross_entropy(logits, y) + 0.5 * alpha * sum(np.sum(W**2) for W in model.W) / len(y)


def central_differences(model, X, y, indices, alpha=0.0):
    numeric = np.empty(len(indices))
    for k, i in enumerate(indices):
        saved = model.params[i]
        model.params[i] = saved + EPS
        plus = reference_loss(model, X, y, alpha)
        model.params[i] = saved - EPS
        minus = reference_loss(model, X, y, alpha)
        model.params[i] = saved
        numeric[k] = (plus - minus) / (2 * EPS)
    return numeric


def backprop(model, backend, X, y, alpha=0.0):
    ws = Workspace(model.sizes, len(y), np.float64)
    ws.grads[...] = np.nan  # every gradient must be written
    loss_and_grads(as_inputs(model), backend, X, np.arange(len(y)), y, ws, alpha)
    return ws.grads.copy()


def relative_difference(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300))


def tensor_slices(model):
    """(name, flat slice) of every W and b in the flat parameter buffer, in order."""
    out, at = [], 0
    for l, (W, b) in enumerate(zip(model.W, model.b)):
        out.append((f"W{l + 1}", slice(at, at + W.size)))
        at += W.size
        out.append((f"b{l + 1}", slice(at, at + b.size)))
        at += b.size
    return out


# (hidden activations, alpha): every activation without and with an L2 penalty (alpha 0.5 on 10
# samples: alpha·W/N ~ 0.05·W, the size of the cross-entropy's own gradients), and a mixed net
TINY = [((name, name), alpha) for name in kernels.ACTIVATIONS for alpha in (0.0, 0.5)] + [(("tanh", "logistic"), 0.3)]


@pytest.fixture(scope="module", params=TINY, ids=lambda case: f"{'-'.join(case[0])}-alpha{case[1]:g}")
def tiny(request):
    """(6, 5, 4, 3) with the hidden layers' activations and the L2 penalty of the parameter, 10
    kink-free samples, and central differences for all 74 parameters."""
    hidden, alpha = request.param
    with blas_threads(1):
        rng = rng_for("tiny")
        model = model_with_biases((6, 5, 4, 3), rng, (*hidden, "identity"))
        X = kink_free(model, rng.standard_normal((60, 6)), 10)
        y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 2])  # first and last class
        indices = np.arange(model.params.size)
        return model, X, y, indices, central_differences(model, X, y, indices, alpha), alpha


@pytest.fixture(scope="module", params=[("relu", 0.0), ("tanh", 0.1), ("logistic", 0.1), ("identity", 0.1)],
                ids=lambda case: f"{case[0]}-alpha{case[1]:g}")
def default_network(request):
    """784-128-10 with 10 kink-free samples, and central differences for 25 random entries of each
    W and b (all 10 of b2): every layer is covered. Once per hidden activation; the others than relu
    with an L2 penalty."""
    hidden, alpha = request.param
    with blas_threads(1):
        rng = rng_for("784-128-10")
        model = model_with_biases((784, 128, 10), rng, (hidden, "identity"))
        images = rng.integers(0, 256, (40, 784), dtype=np.uint8)
        pool = reference.gather_rows(images, np.arange(40), model.input_scale, model.input_shift,
                                     np.empty((40, 784)))
        X = kink_free(model, pool, 10)
        y = rng.integers(0, 10, 10)
        y[0], y[-1] = 0, 9
        indices = np.concatenate([s.start + rng.choice(s.stop - s.start, min(25, s.stop - s.start), replace=False)
                                  for _, s in tensor_slices(model)])
        return model, X, y, indices, central_differences(model, X, y, indices, alpha), alpha


def check(case, backend):
    model, X, y, indices, num, alpha = case
    bp = backprop(model, backend, X, y, alpha)
    assert np.isfinite(bp).all()
    assert relative_difference(num, bp[indices]) < THRESHOLD
    for name, s in tensor_slices(model):  # each W and b alone too, so none hides behind a bigger one
        mine = (indices >= s.start) & (indices < s.stop)
        assert mine.any() and np.abs(num[mine]).max() > 0, f"{name}: not checked, or all zero"
        assert relative_difference(num[mine], bp[indices[mine]]) < THRESHOLD, name


@pytest.mark.slow
def test_every_parameter_of_a_tiny_network(tiny, backend):
    check(tiny, backend)


def test_a_subset_of_every_layer_of_784_128_10(default_network, backend):
    check(default_network, backend)


# (hidden activations, alpha) for the other oracles: today's relu net, and the smooth ones with a penalty
ORACLE_CASES = pytest.mark.parametrize("hidden, alpha", [(("relu", "relu"), 0.0), (("tanh", "logistic"), 0.3),
                                                         (("identity", "tanh"), 1e-4)],
                                       ids=["relu", "tanh-logistic-alpha0.3", "identity-tanh-alpha1e-4"])


@pytest.mark.slow
@ORACLE_CASES
def test_backprop_against_torch_autograd_where_installed(hidden, alpha):
    """A second oracle, PyTorch autograd in float64; skipped cleanly where torch is not installed."""
    torch = pytest.importorskip("torch")
    rng = rng_for("torch")
    model = model_with_biases((6, 5, 4, 3), rng, (*hidden, "identity"))
    X = rng.standard_normal((10, 6))
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 2])
    bp = backprop(model, reference, X, y, alpha)
    Ws = [torch.tensor(W, requires_grad=True) for W in model.W]
    bs = [torch.tensor(b, requires_grad=True) for b in model.b]
    A = torch.tensor(X)
    functions = {"relu": torch.relu, "tanh": torch.tanh, "logistic": torch.sigmoid, "identity": lambda Z: Z}
    for W, b, activation in zip(Ws, bs, model.activations):
        A = functions[activation](A @ W + b)
    penalty = 0.5 * alpha * sum((W**2).sum() for W in Ws) / len(y)
    (torch.nn.functional.cross_entropy(A, torch.tensor(y)) + penalty).backward()
    auto = np.concatenate([t.grad.numpy().ravel() for pair in zip(Ws, bs) for t in pair])
    assert relative_difference(auto, bp) < 1e-12


@ORACLE_CASES
def test_loss_and_gradients_match_scikit_learns_backprop_where_installed(backend, hidden, alpha):
    """A third oracle, and the convention's source: scikit-learn's MLPClassifier handed the same weights
    (its hidden activation the same name as fastnet's, one for all hidden layers; a mixed net is
    checked through its first activation) computes the same loss, with its L2 term
    0.5·alpha·Σ w·w / n_samples, and the same gradients, coef_grads = (Aᵀ·δ + alpha·W) / n_samples.
    _backprop is private: read with the installed version's signature; skipped where not installed."""
    neural_network = pytest.importorskip("sklearn.neural_network")
    hidden = (hidden[0],) * len(hidden)  # scikit-learn has one activation for all hidden layers
    rng = rng_for("sklearn")
    model = model_with_biases((6, 5, 4, 3), rng, (*hidden, "identity"))
    X = rng.standard_normal((10, 6))
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 2])
    ws = Workspace(model.sizes, len(y), np.float64)
    loss = loss_and_grads(as_inputs(model), backend, X, np.arange(len(y)), y, ws, alpha)

    sk = neural_network.MLPClassifier(hidden_layer_sizes=model.sizes[1:-1], activation=hidden[0], alpha=alpha)
    sk.coefs_, sk.intercepts_ = [W.copy() for W in model.W], [b.copy() for b in model.b]
    sk.n_layers_, sk.out_activation_ = len(model.sizes), "softmax"
    activations = [X] + [None] * (len(model.sizes) - 1)
    grads = [np.empty_like(W) for W in model.W], [np.empty_like(b) for b in model.b]
    weights = (None,) if "sample_weight" in inspect.signature(sk._backprop).parameters else ()
    sk_loss, coef_grads, intercept_grads = sk._backprop(X, np.eye(3)[y], *weights, activations,
                                                        [None] * (len(activations) - 1), *grads)
    sk_grads = np.concatenate([g.ravel() for pair in zip(coef_grads, intercept_grads) for g in pair])
    assert abs(loss - sk_loss) <= 1e-14 * sk_loss
    assert relative_difference(sk_grads, ws.grads) < 1e-13
