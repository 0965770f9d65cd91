"""The floor of a training epoch: its unavoidable matrix products on BLAS, timed alone.

Per batch of N rows and per layer X (N, D) -> Z (N, H): the forward product X·W, the weight gradient
Xᵀ·dZ, and, for every layer but the first, the input gradient dZ·Wᵀ (nobody needs dLoss/dX of the
network's input). Each product costs 2·N·D·H flops. An epoch runs ceil(n / N) batches, the last one
partial, with `out=` buffers allocated once, as fastnet does. Everything else an epoch does (gather,
bias, ReLU, softmax, Adam, Python) is overhead above this floor.
"""

import time

import numpy as np


def _buffers(batch_size, sizes, dtype):
    """Random operands and output buffers for every product of one batch, allocated once."""
    rng = np.random.default_rng(0)
    acts = [rng.standard_normal((batch_size, d)).astype(dtype) for d in sizes]
    deltas = [rng.standard_normal((batch_size, d)).astype(dtype) for d in sizes[1:]]
    Ws = [rng.standard_normal((a, b)).astype(dtype) for a, b in zip(sizes, sizes[1:])]
    dWs = [np.empty_like(W) for W in Ws]
    outs = [np.empty((batch_size, d), dtype) for d in sizes]
    return acts, deltas, Ws, dWs, outs


def _batch(bufs, m):
    """The products of one batch of m rows (views of the first m rows of each buffer)."""
    acts, deltas, Ws, dWs, outs = bufs
    for l, W in enumerate(Ws):
        np.matmul(acts[l][:m], W, out=outs[l + 1][:m])
        np.matmul(acts[l][:m].T, deltas[l][:m], out=dWs[l])
        if l > 0:
            np.matmul(deltas[l][:m], W.T, out=outs[l][:m])


def _batch_rows(batch_size, n):
    """Rows of each batch of an epoch over n samples: full batches, then the partial last one."""
    rows = [batch_size] * (n // batch_size)
    return rows + [n % batch_size] if n % batch_size else rows


def epoch_gflop(batch_size=128, sizes=(784, 128, 10), n=60000):
    """GFLOP of one epoch's products: 2·N·D·H per product, three per layer but two for the first."""
    per_row = sum(2 * a * b * (2 if l == 0 else 3) for l, (a, b) in enumerate(zip(sizes, sizes[1:])))
    return per_row * n / 1e9


def floor_epoch(batch_size=128, sizes=(784, 128, 10), n=60000, dtype=np.float32):
    """A function that runs one epoch of products on buffers allocated here, once."""
    bufs = _buffers(batch_size, tuple(sizes), dtype)
    rows = _batch_rows(batch_size, n)

    def run():
        for m in rows:
            _batch(bufs, m)

    return run


def floor_samples(batch_size=128, sizes=(784, 128, 10), n=60000, dtype=np.float32, repeats=5):
    """Seconds of `repeats` epochs of products, each timed alone after one untimed warm-up epoch."""
    run = floor_epoch(batch_size, sizes, n, dtype)
    run()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return times


def floor_seconds(batch_size=128, sizes=(784, 128, 10), n=60000, dtype=np.float32, repeats=5):
    """(median seconds, GFLOP) of one epoch's unavoidable products at these shapes."""
    times = floor_samples(batch_size, sizes, n, dtype, repeats)
    return float(np.median(times)), epoch_gflop(batch_size, sizes, n)
