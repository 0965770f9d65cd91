"""python -m bench.profile_step: where a numba training step's time goes, pass by pass, against the floor.

One process, the seed recipe's shapes (784-128-10, batch 128, float32, pixels/255) on the real
training images, --threads Numba threads (BLAS one thread each, as training runs it). Each epoch
is timed whole, then again with the step's three passes (kernels.jit._mlp) called one at a time
and timed apart, then without Adam; and beside them the floor (bench.floor), the gather alone and
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
    times add up in."""
    images, labels, net, batches = _setup(threads, data_dir)
    p, g, m, v, work = net["params"], net["grads"], net["m"], net["v"], net["work"]
    sizes, codes = np.array(SIZES, np.int64), np.array([1, 0], np.int64)  # relu, then identity
    order = np.concatenate(batches)
    starts = np.arange(0, len(order) + BATCH, BATCH).clip(max=len(order))  # one step a batch
    adam = jit._adam_constants(DTYPE, 10, 5e-4, 0.9, 0.999, 1e-8)
    losses = np.empty(1)
    passes = {kind: np.array([kind], np.int64) for kind in (jit.FIRST_LAYER, jit.ROWS, jit.BANDS)}
    split = {name: 0.0 for name in ("first layer", "rows", "bands + Adam")}

    one_step = {n: (np.array([0, n]), jit._step_constants(DTYPE, 10, [5e-4], 0.9, 0.999, [n], 0.0))
                for n in {len(index) for index in batches}}  # a batch's starts and constants, made once

    def run_pass(kind, index, update):
        starts, consts = one_step[len(index)]
        jit._mlp(passes[kind], threads, g, *work[:4], work.partials, work.activations, images, index, starts, labels,
                 net["scale"], net["shift"], sizes, codes, p, m, v, adam, consts, update, 0.0, np.inf, losses)

    def step():
        for t, index in enumerate(batches, 1):
            jit.mlp_adam_step(images, index, labels, net["scale"], net["shift"], sizes, codes, p, g, m, v, t, 5e-4,
                              0.9, 0.999, 1e-8, work)

    def steps():  # as training runs them: many steps a call
        for k in range(0, len(batches), CHUNK_STEPS):
            chunk = starts[k : k + CHUNK_STEPS + 1]
            jit.mlp_adam_steps(images, order, chunk, labels, net["scale"], net["shift"], sizes, codes, p, g, m, v,
                               k + 1, [5e-4] * (len(chunk) - 1), 0.9, 0.999, 1e-8, work)

    def passes_apart():
        for index in batches:
            for name, kind in zip(split, passes):
                t0 = time.perf_counter()
                run_pass(kind, index, True)
                split[name] += time.perf_counter() - t0

    def no_adam():
        for index in batches:
            for kind in passes:
                run_pass(kind, index, False)

    def gather():
        out = work.inputs.reshape(BATCH, SIZES[0])
        for index in batches:
            jit._gather(out[: len(index)], images, index, net["scale"], net["shift"], np.int64(0), SIZES[0])

    def adam_in_cache():
        for _ in batches:
            jit._adam(p, g, m, v, adam)

    epochs = {"whole step, one a call": step, f"whole steps, {CHUNK_STEPS} a call": steps, "passes apart": passes_apart, "passes apart, no Adam": no_adam,
              "gather alone": gather, "Adam alone, in cache": adam_in_cache,
              "floor (products alone)": floor_epoch(BATCH, SIZES, len(labels), DTYPE)}
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
