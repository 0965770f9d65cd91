"""A training run as every front door runs it: compile on the run's own arrays, train, evaluate,
and one line per epoch.

python -m fastnet.train, fastnet.fit, Model.train and the scikit-learn estimator all run through
here, so that they compile the same kernels, train the same way and report alike. It sits below
every front door and imports none of them.
"""

import sys
import time

import numpy as np

from kernels import BACKENDS, REFERENCE

from .errors import InputError
from .model import MLP, Workspace, evaluate, predict_logits
from .optim import schedule_of
from .training import fit


def warm_up(backend, state, train, evaluated=()):
    """Compile (or load from the cache) every kernel the run will call, on its own arrays: one
    training step of a copy of state's network and optimiser on the first training row, and an
    evaluation of the first row of the training pair and of each (images, labels) pair in
    `evaluated` (validation, test).
    Numba compiles one specialisation per dtype and layout, so warming up on the arrays themselves
    (not stand-ins) keeps every compile out of the first epoch's time, whatever the data's dtype.

    When the backend says it must compile first (an empty cache), one line on stderr says so
    before it starts. A kernel that fails to compile becomes one line telling the user how to carry on.
    """
    seconds = getattr(backend, "compile_seconds", lambda: 0)()  # only compiled backends have it
    if seconds > 1:
        print(f"compiling kernels for this machine, once: about {seconds:.0f} s", file=sys.stderr, flush=True)
    started = time.perf_counter()
    try:
        with np.errstate(all="ignore"):  # a copy of the network, any numbers: only that the kernels run
            _exercise(backend, state.model, state.optimizer, train, evaluated)
        if seconds > 1:
            backend.remember_compile_seconds(time.perf_counter() - started)
    except Exception as exc:
        if backend.__name__ == BACKENDS[REFERENCE]:
            raise
        name = next((n for n, module in BACKENDS.items() if module == backend.__name__), backend.__name__)
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise InputError(f"the {name} backend failed to compile ({type(exc).__name__}: {first}); "
                         f"pass --backend {REFERENCE}") from None


def _exercise(backend, net, optimizer, train, evaluated):
    """One step of a small network like net (its inputs, classes, dtype, scaling and activations,
    two hidden units: the kernels' types, at a fraction of net's memory) and of a fresh optimiser of
    optimizer's kind on train's first row, and an evaluation of the first rows of each pair: slices
    keep the dtype, layout and read-only flag that the run passes."""
    images, labels = train
    sizes = (net.sizes[0], 2, net.sizes[-1]) if len(net.sizes) > 2 else net.sizes
    copy = MLP(sizes, net.dtype, net.input_scale, net.input_shift, (*net.activations[:len(sizes) - 2], "identity"))
    if optimizer is not None and len(labels):
        opt = type(optimizer)(copy.params.size, net.dtype, alpha=optimizer.alpha)
        opt.train_step(backend, copy, images, np.zeros(1, np.intp), labels, Workspace(sizes, 1, net.dtype), 0.0)
    for rows, classes in (train, *evaluated):
        if len(classes):  # two rows: a slice of one row is contiguous whatever the array's layout
            evaluate(copy, backend, rows[:2], classes[:2])


def train(state, backend, train_rows, val, recipe, on_epoch=None, on_batch=None, stop=None, parts=0, share=None,
          train_pass=False, shuffle=True):
    """Train state up to recipe.epochs (training.fit); True when all epochs ran, False when stop()
    cut the run short. Non-finite values raise DivergenceError in fit, so NumPy's warnings about
    them are silenced. parts, share, train_pass and shuffle: training.fit's."""
    with np.errstate(all="ignore"):
        return fit(state, backend, train_rows, val, recipe.epochs, recipe.batch_size, schedule_of(recipe),
                   on_epoch=on_epoch, on_batch=on_batch, stop=stop, parts=parts, share=share, train_pass=train_pass,
                   shuffle=shuffle)


def test(model, backend, images, labels):
    """(loss, accuracy, predicted classes) of model on a test set, its rows predicted once."""
    logits = predict_logits(model, backend, images)
    if not len(labels):
        return float("nan"), float("nan"), logits.argmax(axis=1)
    predictions = logits.argmax(axis=1)
    return backend.cross_entropy(logits, labels), float(np.mean(predictions == labels)), predictions


def epoch_line(state, epochs, n_train):
    """An epoch's metrics (loss and acc: the running means of its steps, unless the training rows
    were evaluated after it) and its whole wall time: training (with its rate) and evaluation."""
    h = state.history
    secs, evals = h.epoch_seconds[-1], h.eval_seconds[-1]
    val = f"  val_loss {h.val_loss[-1]:.4f}  val_acc {h.val_accuracy[-1]:.4f}" if not np.isnan(h.val_loss[-1]) else ""
    return (f"epoch {state.epoch}/{epochs}  loss {h.train_loss[-1]:.4f}  acc {h.train_accuracy[-1]:.4f}{val}"
            f"  {secs + evals:.2f}s (train {secs:.2f}s, {n_train / secs:,.0f} samples/s; eval {evals:.2f}s)")
