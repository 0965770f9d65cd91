"""python -m bench.peers.keras_mlp: the seed recipe in Keras 3 on the JAX backend, through model.fit.

Dense layers (kernel (D_in, D_out), as fastnet's) with ReLU, loaded with fastnet's initial weights;
SparseCategoricalCrossentropy on logits (mean over the batch); keras.optimizers.Adam with the
recipe's rate, betas and epsilon (Keras folds the bias corrections into the step size, as
scikit-learn does: eps then meets sqrt(v), not sqrt(v̂), a last-bits difference at 1e-8).
One model.fit(epochs=1, shuffle=True) per epoch: Keras draws the order itself (from NumPy's
global generator, seeded here), keeps the partial last batch, and jit-compiles its train step
(jit_compile is on by default on JAX); a callback counts the steps. One fit per epoch rather than
one fit(epochs=N) timed by a callback: fit's own set-up outside its epoch is small, and the epochs
were no slower (docs/performance.md#constants-and-where-they-come-from).

Threads: Keras computes with JAX here, and XLA only honours the process's CPU affinity, so the
process is pinned to --threads cores before keras (and with it jax) is imported. Checked in the
metrics: at 1 thread all 15 OS threads may run on core 0 only (cores_of_all_threads), at 2 on [0, 1].
"""

import os
import time

START = time.perf_counter()

from bench.peers import pin_from_argv  # noqa: E402  (stdlib only: nothing has started threads yet)

if __name__ == "__main__":
    pin_from_argv()

from bench.peers import common  # noqa: E402

os.environ["KERAS_BACKEND"] = "jax"

import keras  # noqa: E402  (after the pin and the backend choice)
import numpy as np  # noqa: E402


class StepCounter(keras.callbacks.Callback):
    steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1


def build(layers):
    """Dense layers with ReLU between them, holding fastnet's initial weights."""
    inputs = keras.Input((layers[0][0].shape[0],))
    x = inputs
    for l, (W, _) in enumerate(layers):
        x = keras.layers.Dense(W.shape[1], activation="relu" if l < len(layers) - 1 else None)(x)
    model = keras.Model(inputs, x)
    model.set_weights([a for W, b in layers for a in (W, b)])
    return model


def main(argv=None):
    args = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    keras.utils.set_random_seed(0)  # seeds NumPy's global generator too, which Keras shuffles with
    layers, rng = common.initial(args)
    X, y = common.load("train", args.data_dir)
    model = build(layers)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=common.LR, beta_1=common.BETA1,
                                                  beta_2=common.BETA2, epsilon=common.EPS),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    counter = StepCounter()

    def epoch(order):  # model.fit draws its own order
        before = counter.steps
        history = model.fit(X, y, batch_size=args.batch_size, epochs=1, shuffle=True, verbose=0,
                            callbacks=[counter])
        return history.history["loss"][-1], counter.steps - before

    common.run(args, START, rng, len(y), epoch, lambda images: np.asarray(model.predict(images, 2048, verbose=0)),
               peer="keras jax", version=keras.__version__, backend=keras.backend.backend(),
               library_threads=len(os.sched_getaffinity(0)))


if __name__ == "__main__":
    main()
