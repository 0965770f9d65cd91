"""Inference of an exported model in ONNX Runtime beside Model.predict_proba on both backends.

The model: the default recipe (784-128-10, standardised pixels) trained one epoch on Fashion-MNIST,
exported with input="uint8" so that every contender takes the same uint8 pixel rows. A round is one
call on a batch of 1 row or of the 10,000 test rows: ONNX Runtime's session.run (labels and float32
probabilities; its CPU provider with intra_op_num_threads = threads), or Model.predict_proba (input
checks, the kernels' logits, a float64 softmax) with backend numba or numpy and `threads`. Before
timing, each contender's probabilities must agree with the others' (the test's onnx_proba bound).
extra_info gives rows/s. Run: pytest bench/test_onnx_bench.py --benchmark-only --benchmark-group-by=group
(make bench does).
"""

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed (pip install '.[onnx]')")
pytest.importorskip("onnx", reason="the [onnx] extra is not installed (pip install '.[onnx]')")

import onnxruntime  # noqa: E402

import fastnet  # noqa: E402
from fastnet import data  # noqa: E402

GROUP = "inference 784-128-10, batch {}, {} thread{}"


@pytest.fixture(scope="module")
def trained(train_data):
    """(model, ONNX bytes with uint8 input, the test images, their probabilities by predict_proba)."""
    images, labels = train_data
    model = fastnet.fit(images, labels, epochs=1, seed=0)
    test = data.load("fashion-mnist", "test")
    return model, model.to_onnx(input="uint8").SerializeToString(), test.images, model.predict_proba(test.images)


def contender(name, threads, model, graph):
    """A function of uint8 rows returning (N, K) probabilities, for contender `name` on `threads`."""
    if name == "onnxruntime":
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        return lambda X: session.run(["output_probability"], {"X": X})[0]
    model.backend, model.threads = name, threads
    return model.predict_proba


@pytest.mark.parametrize("rows", [1, 10000], ids=["batch 1", "batch 10000"])
@pytest.mark.parametrize("threads", [1, 2], ids=["1 thread", "2 threads"])
@pytest.mark.parametrize("name", ["onnxruntime", "numba", "numpy"])
def test_inference(benchmark, trained, name, threads, rows):
    model, graph, images, expected = trained
    X = np.ascontiguousarray(images[:rows])
    predict = contender(name, threads, model, graph)
    proba = predict(X)  # warm-up, untimed: compiles or loads the kernels, builds ORT's kernels
    assert np.abs(proba - expected[:rows]).max() < 2.5e-4
    benchmark.group = GROUP.format(rows, threads, "s" if threads > 1 else "")
    benchmark(predict, X)
    seconds = benchmark.stats.stats.median if benchmark.stats is not None else float("nan")
    benchmark.extra_info["rows/s"] = rows / seconds
