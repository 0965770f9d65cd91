"""One epoch of fastnet.sklearn.MLPClassifier beside one of scikit-learn's MLPClassifier, side by side.

Both get the same float32 Fashion-MNIST rows (the training split scaled to [0, 1]) and the same
network and recipe: 784-128-10, ReLU, softmax, Adam at 1e-3, batches of 128, no L2 penalty. A round
is one partial_fit, that is one epoch of an estimator that is already set up, so what is timed is
training (and each estimator's input checks), not initialisation. Each contender first trains one
untimed epoch (fastnet's kernels compile or load there) and must then reach 75% on the test split.
On 1 thread (fastnet's threads=1; scikit-learn's BLAS held to 1 by threadpoolctl) and on all
usable cores. extra_info gives samples/s. Run: pytest bench/test_sklearn_bench.py --benchmark-only
--benchmark-group-by=group (make bench does).
"""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install '.[sklearn]')")

from sklearn.neural_network import MLPClassifier as SkMLP  # noqa: E402

from fastnet import data  # noqa: E402
from fastnet.sklearn import MLPClassifier  # noqa: E402

GROUP = "estimator epoch 784-128-10 b128 f32, {}"
SHARED = dict(hidden_layer_sizes=(128,), solver="adam", alpha=0.0, batch_size=128, learning_rate_init=1e-3,
              random_state=0)


@pytest.fixture(scope="module")
def float32_split(train_data):
    """(X float32 in [0, 1], y) of the training split, and of the test split."""
    images, labels = train_data
    test_images, test_labels = data.load("fashion-mnist", "test")
    return (images.astype(np.float32) / 255, labels), (test_images.astype(np.float32) / 255, test_labels)


def estimator(contender, threads):
    if contender == "fastnet":
        return MLPClassifier(**SHARED, threads=threads)  # None: all usable cores (fastnet.threads.default_threads)
    return SkMLP(**SHARED)  # BLAS on all cores, as threadpoolctl finds it, unless limited below


@pytest.mark.parametrize("threads", [1, None], ids=["1 thread", "all cores"])
@pytest.mark.parametrize("contender", ["fastnet", "sklearn"])
def test_one_epoch(benchmark, contender, threads, float32_split):
    (X, y), (X_test, y_test) = float32_split
    est = estimator(contender, threads)
    classes = np.unique(y)
    with threadpool_limits(threads if contender == "sklearn" else None, user_api="blas"):
        est.partial_fit(X, y, classes=classes)  # warm-up epoch, untimed
        assert est.score(X_test, y_test) > 0.75
        benchmark.group = GROUP.format("1 thread" if threads == 1 else "all cores")
        benchmark.pedantic(est.partial_fit, args=(X, y), rounds=3, iterations=1)
    seconds = benchmark.stats.stats.median if benchmark.stats is not None else float("nan")
    benchmark.extra_info["samples/s"] = len(y) / seconds
