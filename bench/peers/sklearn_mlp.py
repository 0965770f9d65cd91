"""python -m bench.peers.sklearn_mlp: the seed recipe in scikit-learn's MLPClassifier, one partial_fit an epoch.

solver adam with the recipe's rate, betas and eps, batch_size 128, alpha 0 (no L2 term: the recipe
has none), shuffle on, no early stopping, float32 arrays (MLPClassifier then trains in float32).
fastnet's initial weights go in through a first partial_fit on one batch, which builds coefs_ and
intercepts_; their values are then overwritten in place and the Adam state it made is dropped, so
the first timed partial_fit starts a fresh AdamOptimizer (t = 0) on exactly fastnet's weights.
partial_fit, not fit(warm_start=True, max_iter=1): fit makes a new optimiser on every call, which
would reset Adam's moments each epoch. Each partial_fit is one epoch over all samples, in an order
MLPClassifier draws itself (from NumPy's global generator, seeded here); it also checks the 60,000
inputs again, which belongs to training with sklearn this way: a few percent of an epoch
(docs/performance.md#constants-and-where-they-come-from).
Its Adam folds the bias corrections into the step size (lr·sqrt(1-β2^t)/(1-β1^t)), so eps is
added to sqrt(v) rather than to sqrt(v̂): with eps 1e-8 the two differ in the last bits.

Threads: scikit-learn's MLP is NumPy products plus element-wise NumPy, so its only threads are
BLAS's; threadpoolctl limits them to --threads and the process is pinned to that many cores.
Checked in the metrics: at 1 thread both BLAS pools (NumPy's and SciPy's OpenBLAS) report
num_threads 1 (library_threads), the process has 1 OS thread, allowed on core 0 only.
"""

import time

START = time.perf_counter()

from bench.peers import pin_from_argv  # noqa: E402  (stdlib only: nothing has started threads yet)

if __name__ == "__main__":
    pin_from_argv()

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

from bench.peers import common  # noqa: E402


def build(layers, X, y, batch_size):
    """An MLPClassifier holding fastnet's initial weights and no optimiser state yet."""
    clf = MLPClassifier(hidden_layer_sizes=[W.shape[1] for W, _ in layers[:-1]], solver="adam",
                        learning_rate_init=common.LR, beta_1=common.BETA1, beta_2=common.BETA2,
                        epsilon=common.EPS, alpha=0.0, batch_size=batch_size, shuffle=True,
                        early_stopping=False, random_state=None)
    clf.partial_fit(X[:batch_size], y[:batch_size], classes=np.arange(layers[-1][0].shape[1]))
    for coef, intercept, (W, b) in zip(clf.coefs_, clf.intercepts_, layers):
        coef[...], intercept[...] = W, b  # in place: the optimiser is handed these same arrays
    del clf._optimizer  # the next partial_fit builds a fresh AdamOptimizer over them
    return clf


def main(argv=None):
    args = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    threadpool_limits(args.threads, user_api="blas")  # in force from here to the end of the run
    np.random.seed(0)  # MLPClassifier(random_state=None) shuffles with NumPy's global generator
    layers, rng = common.initial(args)
    X, y = common.load("train", args.data_dir)
    clf = build(layers, X, y, args.batch_size)

    def epoch(order):  # MLPClassifier draws its own order
        steps = clf._optimizer.t if hasattr(clf, "_optimizer") else 0
        clf.partial_fit(X, y)
        return clf.loss_, clf._optimizer.t - steps

    def logits(images):  # log-probabilities are logits (softmax gives the probabilities back)
        return np.log(np.maximum(clf.predict_proba(images).astype(np.float64), 1e-300))

    common.run(args, START, rng, len(y), epoch, logits, peer="sklearn",
               version=sklearn.__version__, coefs_dtype=str(clf.coefs_[0].dtype),
               library_threads=[p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"])


if __name__ == "__main__":
    main()
