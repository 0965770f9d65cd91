"""python -m bench.profile_step: where a numba training step's time goes, pass by pass, against the floor.

One process, the seed recipe's shapes (784-128-10, batch 128, float32, pixels/255) on the real
training images, --threads Numba threads (BLAS one thread each, as training runs it). Each epoch
is timed whole, then again with the step's three passes called one at a time and timed apart
(kernels.jit.step_pass), then without Adam; and beside them the floor (bench.floor), the gather alone and
Adam alone on buffers already in cache. Rounds alternate between these, so a noisy neighbour hurts
all of them alike; medians are printed, in ms an epoch.

Calling the passes apart adds a dispatch and a wake-up of the threads per pass: their sum is a bit
above the whole step. What each pass holds: first layer (gather of a share of the input columns,
X·W1 in pieces), rows (the pieces summed, bias, ReLU, the output layer, softmax-cross-entropy,
deltas), bands (dW = Aᵀ·dZ, db, and Adam when updating).
"""

import argparse
import time

import numba
import numpy as np

from fastnet.datasets import load_fashion_mnist
from fastnet.threads import set_threads
from kernels import jit, mlp_workspace, parameter_count

from .floor import floor_epoch

CHUNK_STEPS = 64  # steps a call, as fastnet.training runs them

SIZES, BATCH, DTYPE = (784, 128, 10), 128, np.float32


def _setup(threads, data_dir):
    """Data, a network, Adam's state and a workspace, as a run of `threads` threads has them."""
    (images, labels), _ = load_fashion_mnist(data_dir, download=False)
    rng = np.random.default_rng(0)
    count = parameter_count(SIZES)
    net = dict(params=(rng.standard_normal(count) * 0.05).astype(DTYPE), grads=np.zeros(count, DTYPE),
               m=np.zeros(count, DTYPE), v=np.zeros(count, DTYPE), scale=np.full(SIZES[0], 1 / 255, DTYPE),
               shift=np.zeros(SIZES[0], DTYPE), work=mlp_workspace(SIZES, BATCH, DTYPE, threads))
    batches = [rng.permutation(len(labels))[i : i + BATCH] for i in range(0, len(labels), BATCH)]
    return images, labels, net, batches


def _epochs(threads, data_dir=None):
    """name -> a function running one epoch of that variant (the floor too), and the dict the passes'
    times add up in. Everything goes through public kernels (kernels.jit.step_pass for the passes)."""
    images, labels, net, batches = _setup(threads, data_dir)
    p, g, m, v, work = net["params"], net["grads"], net["m"], net["v"], net["work"]
    sizes, codes = np.array(SIZES, np.int64), np.array([1, 0], np.int64)  # relu, then identity
    shape = (net["scale"], net["shift"], sizes, codes)
    order = np.concatenate(batches)
    starts = np.arange(0, len(order) + BATCH, BATCH).clip(max=len(order))  # one step a batch
    adam = ("adam", (m, v), (0.9, 0.999, 1e-8))
    split = dict.fromkeys(("first layer", "rows", "bands + Adam"), 0.0)

    def step():
        for t, index in enumerate(batches, 1):
            jit.mlp_train_steps(images, index, [0, len(index)], labels, *shape, p, g, *adam, t, [5e-4], work)

    def steps():  # as training runs them: many steps a call
        for k in range(0, len(batches), CHUNK_STEPS):
            chunk = starts[k : k + CHUNK_STEPS + 1]
            jit.mlp_train_steps(images, order, chunk, labels, *shape, p, g, *adam, k + 1, [5e-4] * (len(chunk) - 1),
                                work)

    def passes_apart():
        for t, index in enumerate(batches, 1):
            for name, kind in zip(split, jit.STEP_PASSES):
                t0 = time.perf_counter()
                jit.step_pass(kind, images, index, labels, *shape, p, g, *adam, t, 5e-4, work)
                split[name] += time.perf_counter() - t0

    def no_adam():
        for index in batches:
            for kind in jit.STEP_PASSES:
                jit.step_pass(kind, images, index, labels, *shape, p, g, None, (), (), 1, 0.0, work)

    def gather():
        out = work.inputs.reshape(BATCH, SIZES[0])
        for index in batches:
            jit.gather_rows(images, index, net["scale"], net["shift"], out[: len(index)])

    def adam_in_cache():
        for t, _ in enumerate(batches, 1):
            jit.adam_update(p, g, m, v, t, 5e-4, 0.9, 0.999, 1e-8)

    epochs = {"whole step, one a call": step, f"whole steps, {CHUNK_STEPS} a call": steps,
              "passes apart": passes_apart, "passes apart, no Adam": no_adam, "gather alone": gather,
              "Adam alone, in cache": adam_in_cache, "floor (products alone)": floor_epoch(BATCH, SIZES, len(labels),
                                                                                         DTYPE)}
    return epochs, split


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.profile_step", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="Numba threads (default 1)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds over the variants (default 5)")
    parser.add_argument("--data-dir", help="Fashion-MNIST IDX directory (default: fastnet's search)")
    args = parser.parse_args(argv)
    set_threads(args.threads, jit.BLAS_THREADS)
    epochs, split = _epochs(args.threads, args.data_dir)
    for run in epochs.values():  # compile, load, warm up
        run()
    for name in split:
        split[name] = 0.0
    times = {name: [] for name in epochs}
    for _ in range(args.rounds):
        for name, run in epochs.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    print(f"{args.threads} thread(s), {numba.threading_layer()} threading layer, ms an epoch (median of "
          f"{args.rounds} rounds):")
    for name, ts in times.items():
        print(f"  {name:24s} {1e3 * np.median(ts):7.1f}")
    for name, total in split.items():  # summed over all rounds: their mean per epoch
        print(f"    {name:22s} {1e3 * total / args.rounds:7.1f}")


if __name__ == "__main__":
    main()
