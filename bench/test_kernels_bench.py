"""Every kernel of kernels.KERNEL_NAMES on every registered backend, at the shapes training uses.

The shapes are one float32 step of the 784-128-10 network with batches of N = 128: the parameters,
gradients and optimiser moments are the model's flat buffers of P = 101,770 (weights as views
into them, as in training), labels are uint8 as fastnet.data.load returns them, a batch index is int64
as a slice of rng.permutation. Each benchmark first runs its backend and the reference on
identical inputs and checks one against the other (which also compiles the JIT for exactly these
dtypes and layouts), then times the backend (the `backend_name` fixture, conftest.py). Units in
extra_info: GFLOP/s for kernels with matrix products, ns per element for element-wise ones, µs
per call for all.
"""

from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest

import kernels
from fastnet.model import MLP, Workspace
from fastnet.threads import set_threads

N, D, H, K = 128, 784, 128, 10
M = 60000  # training images


@dataclass
class Case:
    """One kernel call: fresh identical arguments on every make(), what it writes, how much work it is."""

    kernel: str
    make: object  # () -> tuple of arguments, seeded: every call gives the same values
    written: tuple = ()  # indices of the arguments the kernel writes
    flop: int = 0  # flops of its matrix products (2·m·n·k each); 0 for element-wise kernels
    elements: int = 0  # elements of its largest operand
    shape: str = ""  # names the case where a kernel has several


@cache
def _images():
    """Random uint8 pixels (M, D), made once: gather_rows only reads them."""
    return np.random.default_rng(1).integers(0, 256, (M, D), dtype=np.uint8)


def _rng():
    """The generator every case draws from, seeded so each make() repeats the same arguments."""
    return np.random.default_rng(0)


def _normal(rng, shape, scale=1.0):
    """float32 normal values of the given spread."""
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _relu_output(rng, shape):
    """What a ReLU layer emits: float32, about half of it exact zeros."""
    return np.maximum(_normal(rng, shape), 0)


def _labels(rng):
    """A batch of uint8 class labels, as fastnet.data.load gives them."""
    return rng.integers(0, K, N).astype(np.uint8)


def _logits(rng):
    """Output-layer logits (N, K), spread like a trained network's."""
    return _normal(rng, (N, K), 3.0)


def _net(rng):
    """A He-initialised 784-128-10 float32 MLP, and a Workspace whose gradients are small random values."""
    model = MLP.he_init((D, H, K), rng)
    ws = Workspace(model.sizes, N, model.dtype)
    ws.grads[...] = _normal(rng, model.params.shape, 1e-2)
    return model, ws


def _gather_rows():
    """A shuffled batch of 128 of 60000 images into float32 (index int64, a slice of a permutation;
    scale and shift per pixel in float32, as the model keeps them)."""
    rng = _rng()
    net, ws = _net(rng)
    index = rng.permutation(M)[:N]
    return _images(), index, net.input_scale, net.input_shift, np.empty((N, D), np.float32)


def _forward_hidden():
    """Pixels (N, D) through the 784->128 layer, ReLU on."""
    rng = _rng()
    net, ws = _net(rng)
    return rng.random((N, D), dtype=np.float32), net.W[0], net.b[0], np.empty((N, H), np.float32), "relu"


def _forward_output():
    """Hidden activations (N, H) through the 128->10 layer to logits."""
    rng = _rng()
    net, ws = _net(rng)
    return _relu_output(rng, (N, H)), net.W[1], net.b[1], np.empty((N, K), np.float32), "identity"


def _backward_hidden():
    """The 784->128 layer's gradients: dW and db only (dX = None, nobody needs dLoss/dpixels)."""
    rng = _rng()
    net, ws = _net(rng)
    X = rng.random((N, D), dtype=np.float32)
    dW, db = kernels.layer_views(ws.grads, net.sizes)
    return _normal(rng, (N, H), 1 / N), X, net.W[0], dW[0], db[0], None, "identity"


def _backward_output():
    """The 128->10 layer's gradients: dW, db and dX masked by the hidden ReLU."""
    rng = _rng()
    net, ws = _net(rng)
    dX = np.empty((N, H), np.float32)
    dW, db = kernels.layer_views(ws.grads, net.sizes)
    return _normal(rng, (N, K), 1 / N), _relu_output(rng, (N, H)), net.W[1], dW[1], db[1], dX, "relu"


def _activation_forward():
    """ReLU, max(Z, 0), over a hidden layer (N, H)."""
    return _normal(_rng(), (N, H)), np.empty((N, H), np.float32), "relu"


def _activation_backward():
    """The ReLU mask over a hidden layer's gradient (N, H)."""
    rng = _rng()
    return _normal(rng, (N, H)), _relu_output(rng, (N, H)), np.empty((N, H), np.float32), "relu"


def _softmax():
    """Row softmax of the logits (N, K)."""
    return _logits(_rng()), np.empty((N, K), np.float32)


def _cross_entropy():
    """Mean cross-entropy of the logits (N, K)."""
    rng = _rng()
    return _logits(rng), _labels(rng)


def _softmax_xent_backward():
    """(A - Y) / N from softmax outputs (N, K)."""
    rng = _rng()
    Z = _logits(rng)
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True), _labels(rng), np.empty((N, K), np.float32)


def _softmax_cross_entropy():
    """The fused output layer: loss and dZ from logits (N, K)."""
    rng = _rng()
    return _logits(rng), _labels(rng), np.empty((N, K), np.float32)


def _mlp_gradients():
    """A whole training batch of 784-128-10: gather, forward, loss, backward, all gradients."""
    rng = _rng()
    net, ws = _net(rng)
    index = rng.permutation(M)[:N]
    labels = rng.integers(0, K, M).astype(np.uint8)
    return (_images(), index, labels, net.input_scale, net.input_shift, ws.sizes, net.activation_codes, net.params,
            ws.grads, ws.buffers)


def _mlp_adam_step():
    """A whole training step: mlp_gradients and the Adam update (the tenth step), fused in the JIT."""
    args = _mlp_gradients()
    rng = np.random.default_rng(2)
    m = _normal(rng, args[7].shape, 1e-2)
    return (*args[:9], m, m * m, 10, 1e-3, 0.9, 0.999, 1e-8, args[9])


STEPS = 8  # steps of one mlp_train_steps call here (training runs up to 64: fastnet.training.MAX_CHUNK)


def _mlp_train_steps(optimizer):
    """STEPS training steps in one call, as training runs them: no Python between the steps."""
    args = _mlp_adam_step()
    order = np.random.default_rng(3).permutation(M)[: STEPS * N]
    state, hyper = ((args[9], args[10]), args[13:16]) if optimizer == "adam" else ((), ())
    return (args[0], order, np.arange(0, STEPS * N + 1, N), *args[2:9], optimizer, state, hyper, 10, [1e-3] * STEPS,
            args[16])


def _mlp_logits():
    """Logits of a block of 2048 images, as evaluation runs them."""
    rng = _rng()
    net, ws = _net(rng)
    ws = Workspace(net.sizes, 2048, net.dtype)
    return (_images(), np.arange(2048), net.input_scale, net.input_shift, ws.sizes, net.activation_codes, net.params,
            np.empty((2048, K), np.float32), ws.buffers)


def _adam_update():
    """One Adam step (the tenth) over the network's flat buffers (P,)."""
    rng = _rng()
    net, ws = _net(rng)
    m = _normal(rng, net.params.shape, 1e-2)
    return net.params, ws.grads, m, m * m, 10, 1e-3, 0.9, 0.999, 1e-8


def _sgd_update():
    """One gradient-descent step over the flat buffers (P,)."""
    net, ws = _net(_rng())
    return net.params, ws.grads, 1e-3


def _all_finite():
    """The divergence check over the flat parameters (P,)."""
    return (_net(_rng())[0].params,)


P = D * H + H + H * K + K  # 101,770 parameters
CASES = {
    "gather_rows": Case("gather_rows", _gather_rows, (4,), elements=N * D),
    "linear_forward 784x128 relu": Case("linear_forward", _forward_hidden, (3,), 2 * N * D * H, N * H, "784x128 relu"),
    "linear_forward 128x10": Case("linear_forward", _forward_output, (3,), 2 * N * H * K, N * K, "128x10"),
    "linear_backward 784x128": Case("linear_backward", _backward_hidden, (3, 4), 2 * N * D * H, D * H, "784x128"),
    "linear_backward 128x10": Case("linear_backward", _backward_output, (3, 4, 5), 4 * N * H * K, N * H, "128x10"),
    "activation_forward relu": Case("activation_forward", _activation_forward, (1,), elements=N * H, shape="relu"),
    "activation_backward relu": Case("activation_backward", _activation_backward, (2,), elements=N * H, shape="relu"),
    "softmax": Case("softmax", _softmax, (1,), elements=N * K),
    "cross_entropy": Case("cross_entropy", _cross_entropy, elements=N * K),
    "softmax_xent_backward": Case("softmax_xent_backward", _softmax_xent_backward, (2,), elements=N * K),
    "softmax_cross_entropy": Case("softmax_cross_entropy", _softmax_cross_entropy, (2,), elements=N * K),
    "mlp_gradients": Case("mlp_gradients", _mlp_gradients, (8,), 2 * N * (2 * D * H + 3 * H * K), P),
    "mlp_adam_step": Case("mlp_adam_step", _mlp_adam_step, (7, 8, 9, 10), 2 * N * (2 * D * H + 3 * H * K), P),
    **{f"mlp_train_steps {o}": Case("mlp_train_steps", lambda o=o: _mlp_train_steps(o), (8, 9, 11),
                                    STEPS * 2 * N * (2 * D * H + 3 * H * K), P, o) for o in ("adam", "gd")},
    "mlp_logits": Case("mlp_logits", _mlp_logits, (7,), 2 * 2048 * (D * H + H * K), 2048 * D),
    "adam_update": Case("adam_update", _adam_update, (0, 2, 3), elements=P),
    "sgd_update": Case("sgd_update", _sgd_update, (0,), elements=P),
    "all_finite": Case("all_finite", _all_finite, elements=P),
}


def _backend(name):
    """The kernel module, with the threading plan it is meant to run under (fastnet.threads)."""
    backend = kernels.load_backend(name)
    set_threads(None, backend.BLAS_THREADS)
    return backend


def _outputs(backend_name, case):
    """Run the kernel once on fresh arguments; its return value (unless None) and what it wrote."""
    args = case.make()
    result = getattr(_backend(backend_name), case.kernel)(*args)
    returned = [] if result is None else list(result) if isinstance(result, tuple) else [result]
    written = [a for i in case.written for a in (args[i] if isinstance(args[i], tuple) else (args[i],))]
    return returned + [a.copy() for a in written]  # a tuple argument: an optimiser's state


def _assert_close(got, want):
    """Same shape and dtype, values within float32 rounding (atol + rtol·|want|)."""
    for g, w in zip(got, want, strict=True):
        g, w = np.asarray(g), np.asarray(w)
        assert (g.shape, g.dtype) == (w.shape, w.dtype)
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def check_then_time(benchmark, backend_name, case, report):
    """Check the backend against the reference (compiling it), then time it on fresh arguments."""
    _assert_close(_outputs(backend_name, case), _outputs(kernels.REFERENCE, case))
    benchmark.group = f"{case.kernel} {case.shape}".strip()
    benchmark(getattr(_backend(backend_name), case.kernel), *case.make())
    seconds = benchmark.stats.stats.median if benchmark.stats is not None else float("nan")
    benchmark.extra_info["us_per_call"] = seconds * 1e6
    if case.flop:
        benchmark.extra_info["GFLOP/s"] = case.flop / seconds / 1e9
    else:
        benchmark.extra_info["ns_per_element"] = seconds / case.elements * 1e9
    report(benchmark, backend_name)


def test_cases_cover_every_kernel():
    """A kernel added to kernels.KERNEL_NAMES needs a case here."""
    assert {c.kernel for c in CASES.values()} == set(kernels.KERNEL_NAMES)


def test_gather_rows(benchmark, backend_name, report):
    check_then_time(benchmark, backend_name, CASES["gather_rows"], report)


@pytest.mark.parametrize("shape", ["784x128 relu", "128x10"])
def test_linear_forward(benchmark, backend_name, shape, report):
    check_then_time(benchmark, backend_name, CASES[f"linear_forward {shape}"], report)


@pytest.mark.parametrize("shape", ["784x128", "128x10"])
def test_linear_backward(benchmark, backend_name, shape, report):
    check_then_time(benchmark, backend_name, CASES[f"linear_backward {shape}"], report)


def test_activation_forward(benchmark, backend_name, report):
    check_then_time(benchmark, backend_name, CASES["activation_forward relu"], report)


def test_activation_backward(benchmark, backend_name, report):
    check_then_time(benchmark, backend_name, CASES["activation_backward relu"], report)


def test_softmax(benchmark, backend_name, report):
    check_then_time(benchmark, backend_name, CASES["softmax"], report)


def test_cross_entropy(benchmark, backend_name, report):
    check_then_time(benchmark, backend_name, CASES["cross_entropy"], report)


def test_softmax_xent_backward(benchmark, backend_name, report):
    check_then_time(benchmark, backend_name, CASES["softmax_xent_backward"], report)


def test_softmax_cross_entropy(benchmark, backend_name, report):
    check_then_time(benchmark, backend_name, CASES["softmax_cross_entropy"], report)


def test_mlp_gradients(benchmark, backend_name, report):
    check_then_time(benchmark, backend_name, CASES["mlp_gradients"], report)


def test_mlp_adam_step(benchmark, backend_name, report):
    check_then_time(benchmark, backend_name, CASES["mlp_adam_step"], report)


@pytest.mark.parametrize("optimizer", ["adam", "gd"])
def test_mlp_train_steps(benchmark, backend_name, optimizer, report):
    check_then_time(benchmark, backend_name, CASES[f"mlp_train_steps {optimizer}"], report)


def test_mlp_logits(benchmark, backend_name, report):
    check_then_time(benchmark, backend_name, CASES["mlp_logits"], report)


def test_adam_update(benchmark, backend_name, report):
    check_then_time(benchmark, backend_name, CASES["adam_update"], report)


def test_sgd_update(benchmark, backend_name, report):
    check_then_time(benchmark, backend_name, CASES["sgd_update"], report)


def test_all_finite(benchmark, backend_name, report):
    check_then_time(benchmark, backend_name, CASES["all_finite"], report)
