"""The training loop: shuffled mini-batches, backprop, optimiser steps, per-epoch metrics."""

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .errors import DivergenceError
from .model import Workspace, evaluate
from .optim import learning_rate


# The most step losses a History keeps: a longer run keeps every other one of them, then every fourth,
# ..., so that a model file stays bounded however long the run (the first step's, which sets the
# divergence limit, is always kept).
MAX_STEP_LOSSES = 1 << 20


@dataclass
class History:
    """What each finished epoch measured; lists grow by one per epoch. step_loss holds the loss of
    steps 0, step_stride, 2·step_stride, ... of the `steps` run so far: every step's until there are
    more than MAX_STEP_LOSSES (record_steps)."""

    epoch_seconds: list = field(default_factory=list)
    eval_seconds: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    train_accuracy: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    step_loss: list = field(default_factory=list)
    steps: int = 0
    step_stride: int = 1


def record_steps(history, losses):
    """Add the losses of the next len(losses) steps to history.step_loss: those of steps that are a
    multiple of step_stride; when there are more than MAX_STEP_LOSSES, every other one is dropped and
    the stride doubles. What is kept depends only on the steps' losses, so a resumed run keeps what
    the straight run keeps."""
    start = -history.steps % history.step_stride
    history.step_loss.extend(losses[start :: history.step_stride])
    history.steps += len(losses)
    while len(history.step_loss) > MAX_STEP_LOSSES:
        history.step_loss = history.step_loss[::2]
        history.step_stride *= 2


@dataclass
class TrainState:
    """Everything a run needs to continue exactly: model, optimiser, data-order generator, progress."""

    model: object
    optimizer: object
    rng: np.random.Generator
    epoch: int = 0
    history: History = field(default_factory=History)
    batch: int = 0  # batches of the current epoch already done (non-zero only after an interrupt)
    epoch_rng: dict = None  # state.rng's state when the current epoch drew its order
    partial_losses: list = field(default_factory=list)  # step losses of the current epoch so far
    partial_correct: list = field(default_factory=list)  # its steps' rows predicted right, before each update


# Steps run in one call of the optimiser (Optimizer.train_steps): at most MAX_CHUNK, and as many as
# take about CHUNK_SECONDS; stop() and share polls are asked between chunks, so a signal still ends
# a run within about CHUNK_SECONDS. Where chunks are cut changes no result.
# docs/performance.md#constants-and-where-they-come-from
MAX_CHUNK = 64
CHUNK_SECONDS = 0.05


def train_epoch(state, backend, images, labels, batch_size, lr_at, ws, on_batch=None, stop=None, max_chunk=MAX_CHUNK,
                shuffle=True):
    """One pass over (images, labels) in a fresh order drawn from state.rng (shuffle False: in their
    order, state.rng untouched); the last partial batch is kept.

    lr_at(step) gives the learning rate of optimiser step `step` (0-based). Returns the mean loss
    over the epoch's samples and the fraction of them predicted right, each step's rows by the
    network as it was before that step (the running means Keras reports: no pass of their own).
    Raises DivergenceError as soon as the loss or a parameter is non-finite, or the loss explodes
    past loss_limit of the run's first step loss. Steps run in chunks of up to
    max_chunk (MAX_CHUNK above); on_batch(rows, loss) is called for each step after its chunk, and
    stop() after each chunk but the epoch's last: when it returns True the epoch ends early and None
    is returned (fit asks stop() between epochs: a stopped run is always at a step it can resume from).
    """
    model, opt = state.model, state.optimizer
    n = len(labels)
    if state.batch == 0:
        state.epoch_rng = state.rng.bit_generator.state
        state.partial_losses, state.partial_correct = [], []
        order = state.rng.permutation(n) if shuffle else np.arange(n)
    else:  # resuming mid-epoch: draw the same order again, skip what was done
        rng = np.random.default_rng()
        rng.bit_generator.state = state.epoch_rng
        order = rng.permutation(n) if shuffle else np.arange(n)
    starts = np.append(np.arange(0, n, batch_size), n)  # step k's batch: order[starts[k]:starts[k + 1]]
    first = (state.history.step_loss or state.partial_losses or [None])[0]
    limit = None if first is None else loss_limit(first, model.sizes[-1])
    chunk = 1
    while state.batch < len(starts) - 1:
        k = state.batch
        # the run's first step alone: its loss sets the limit of all later ones
        count = 1 if limit is None else min(chunk, max_chunk, len(starts) - 1 - k)
        t0 = time.perf_counter()
        lrs = [lr_at(opt.step + j) for j in range(count)]
        correct = np.zeros(count, np.int64)
        losses, finite = opt.train_steps(backend, model, images, order, starts[k : k + count + 1], labels, ws, lrs,
                                         math.inf if limit is None else limit, correct)
        seconds = time.perf_counter() - t0
        for j, loss in enumerate(losses.tolist()):
            if not (np.isfinite(loss) and (finite or j < len(losses) - 1)):
                raise DivergenceError(
                    f"training diverged at epoch {state.epoch + 1}, step {state.batch + 1}: "
                    f"{'loss' if not np.isfinite(loss) else 'a parameter'} is not finite "
                    "(is the learning rate too high? try a smaller one)"
                )
            if limit is None:
                first, limit = loss, loss_limit(loss, model.sizes[-1])
            if loss > limit:
                raise DivergenceError(
                    f"training diverged at epoch {state.epoch + 1}, step {state.batch + 1}: loss {loss:.3g} "
                    f"exploded past {limit:.3g} (the first step's was {first:.3g}; "
                    "is the learning rate too high? try a smaller one)"
                )
            state.batch += 1
            state.partial_losses.append(loss)
            state.partial_correct.append(int(correct[j]))
            if on_batch is not None:
                on_batch(int(starts[state.batch] - starts[state.batch - 1]), loss)
        # a stop asked as the epoch's last chunk ends is fit's to honour, once the epoch is complete
        if state.batch < len(starts) - 1 and stop is not None and stop():
            return None
        if seconds < CHUNK_SECONDS / 2:  # grow while chunks are short (the first of a run also compiles)
            chunk *= 2
        elif seconds > 2 * CHUNK_SECONDS:
            chunk = max(chunk // 2, 1)
    losses, correct = np.array(state.partial_losses), state.partial_correct
    record_steps(state.history, state.partial_losses)
    state.batch, state.partial_losses, state.partial_correct = 0, [], []
    sizes = np.full(len(losses), batch_size)
    sizes[-1] = n - batch_size * (len(losses) - 1)
    accuracy = sum(correct) / n if len(correct) == len(losses) else math.nan  # nan: resumed from an older file
    return float(np.dot(losses, sizes) / n), accuracy


def loss_limit(first_loss, classes):
    """The loss above which a run has exploded while still finite (Adam with a huge learning rate
    stays finite): 100 times the run's first step loss, and at least 1000 times ln(classes), the
    loss of a uniform guess."""
    return max(100 * first_loss, 1e3 * math.log(max(classes, 2)))


def fit(state, backend, train, val, epochs, batch_size, lr, schedule="constant", warmup=0,
        on_epoch=None, on_batch=None, stop=None, parts=0, share=None, max_chunk=MAX_CHUNK, train_pass=False,
        shuffle=True):
    """Train until state.epoch == epochs, evaluating train and validation accuracy after each epoch.

    lr: the base learning rate of `schedule` (with `warmup`), or a function rate(step, total steps)
    (optim.schedule_of) that replaces all three.
    train and val are (images, labels) pairs. on_epoch(state) runs after each epoch (print,
    checkpoint, a stopping rule): when it returns True the run ends there. shuffle: train_epoch's. Epoch time covers shuffle, forward, backward and update only; evaluation is timed
    apart. parts: the parts a batch is cut into (kernels.mlp_workspace; 0: one per running thread).
    share: a threads.CoreShare, asked after each step (as a chunk's steps are reported) how many
    threads may run now. max_chunk: the most steps run in one call (train_epoch). The history's
    train_loss and train_accuracy are the epoch's running means (train_epoch); train_pass: the
    accuracy from a pass over the training rows after each epoch instead (its time in eval_seconds).
    Returns True when all epochs ran, False when stop() or on_epoch cut the run short: inside an epoch
    (state.batch > 0), or between two (state.batch == 0): stop() is asked after every chunk of steps
    but the run's last.
    """
    images, labels = train
    steps_per_epoch = (len(labels) + batch_size - 1) // batch_size
    total = steps_per_epoch * epochs

    def lr_at(step):
        return lr(step, total) if callable(lr) else learning_rate(lr, schedule, step, total, warmup)

    ws = Workspace(state.model.sizes, min(batch_size, len(labels)), state.model.dtype, parts)
    if share is not None:
        report_batch = on_batch

        def on_batch(n, loss):
            share.poll()
            if report_batch is not None:
                report_batch(n, loss)

    h = state.history
    while state.epoch < epochs:
        t0 = time.perf_counter()
        done = train_epoch(state, backend, images, labels, batch_size, lr_at, ws, on_batch, stop, max_chunk, shuffle)
        t1 = time.perf_counter()
        if done is None:
            return False
        state.epoch += 1
        h.epoch_seconds.append(t1 - t0)
        h.train_loss.append(done[0])
        h.train_accuracy.append(evaluate(state.model, backend, images, labels)[1] if train_pass else done[1])
        val_loss, val_acc = evaluate(state.model, backend, *val) if len(val[1]) else (float("nan"),) * 2
        h.val_loss.append(val_loss)
        h.val_accuracy.append(val_acc)
        h.eval_seconds.append(time.perf_counter() - t1)
        if on_epoch is not None and on_epoch(state) and state.epoch < epochs:
            return False
        if state.epoch < epochs and stop is not None and stop():  # between epochs: resumes at batch 0
            return False
    return True


def split_validation(n, n_val, rng):
    """Shuffle 0..n-1 with rng and hold out n_val of them: returns (train_index, val_index), sorted."""
    order = rng.permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
