"""python -m bench.peers.jax_mlp: the seed recipe in JAX, a jitted step per batch or one lax.scan per epoch.

The step (gather of the batch from the images held by XLA, forward, mean cross-entropy, its
gradient by jax.grad, Adam as fastnet's adam_update) is one function of the training state
(params, m, v, step, loss sum). Without --scan it is jitted with the state donated and called once
per batch from Python; with --scan one jitted, donated call runs the epoch: lax.scan over the full
batches, then the partial last one. Either way the loss is summed on the device and read once an
epoch, so Python never waits on a step.

Threads: XLA's CPU thread pools take their size from the process's CPU affinity, and ignore every
other knob, so the process is pinned to --threads cores before jax is imported. Checked: at 1
thread all 14 OS threads of the process may run on core 0 only at the end (cores_of_all_threads in
the metrics), and each epoch's CPU/wall ratio stays under the thread count. XLA_FLAGS
--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1 made no difference at 1 thread,
so none are set (docs/performance.md#constants-and-where-they-come-from).
"""

import time

START = time.perf_counter()

from bench.peers import pin_from_argv  # noqa: E402  (stdlib only: nothing has started threads yet)

if __name__ == "__main__":
    pin_from_argv()

import os  # noqa: E402
from functools import partial  # noqa: E402

import jax  # noqa: E402  (after the pin: XLA sizes its pools by the mask it sees)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench.peers import common  # noqa: E402


def forward(params, x):
    """Logits (N, K) of inputs x (N, D0): ReLU after every layer but the last."""
    for W, b in params[:-1]:
        x = jax.nn.relu(x @ W + b)
    W, b = params[-1]
    return x @ W + b


def loss_fn(params, x, y):
    """Mean cross-entropy as logsumexp(z) - z[y] (logsumexp subtracts the row max: no overflow)."""
    z = forward(params, x)
    return jnp.mean(jax.nn.logsumexp(z, axis=1) - jnp.take_along_axis(z, y[:, None], axis=1)[:, 0])


def step(state, X, Y, index):
    """One Adam step on the samples X[index]; adds the batch's loss times its rows to the loss sum."""
    params, m, v, t, total = state
    loss, g = jax.value_and_grad(loss_fn)(params, X[index], Y[index])
    t = t + 1
    m = jax.tree.map(lambda m, g: common.BETA1 * m + (1 - common.BETA1) * g, m, g)
    v = jax.tree.map(lambda v, g: common.BETA2 * v + (1 - common.BETA2) * g * g, v, g)
    c1, c2 = 1 - common.BETA1**t, 1 - common.BETA2**t  # bias corrections m̂ = m / c1, v̂ = v / c2
    params = jax.tree.map(lambda p, m, v: p - common.LR * (m / c1) / (jnp.sqrt(v / c2) + common.EPS), params, m, v)
    return (params, m, v, t, total + loss * index.shape[0])


jit_step = jax.jit(step, donate_argnums=0)


@partial(jax.jit, donate_argnums=0, static_argnames="batch_size")
def scan_epoch(state, X, Y, order, batch_size):
    """A whole epoch in one call: lax.scan over the full batches of `order`, then the partial last one."""
    full = len(order) // batch_size * batch_size
    state, _ = jax.lax.scan(lambda s, index: (step(s, X, Y, index), None), state,
                            order[:full].reshape(-1, batch_size))
    return step(state, X, Y, order[full:]) if full < len(order) else state


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--scan", action="store_true", help="one lax.scan call per epoch")
    args = p.parse_args(argv)
    layers, rng = common.initial(args)
    X, Y = (jnp.asarray(a) for a in common.load("train", args.data_dir))
    params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in layers]
    state = (params, jax.tree.map(jnp.zeros_like, params), jax.tree.map(jnp.zeros_like, params),
             jnp.float32(0), jnp.float32(0))  # params, m, v, step, loss sum
    B = args.batch_size

    def epoch(order):
        nonlocal state
        order, steps = order.astype(np.int32), int(state[3])
        state = (*state[:4], jnp.float32(0))  # a fresh loss sum
        if args.scan:
            state = scan_epoch(state, X, Y, order, B)
        else:
            for index in common.batches(order, B):
                state = jit_step(state, X, Y, index)
        return float(state[4]) / len(order), int(state[3]) - steps  # float() waits for the last step

    logits = jax.jit(forward)
    common.run(args, START, rng, len(Y), epoch, lambda images: np.asarray(logits(state[0], images)),
               peer="jax scan" if args.scan else "jax jit", version=jax.__version__,
               library_threads=len(os.sched_getaffinity(0)))


if __name__ == "__main__":
    main()
