"""fastnet.training: the training loop. An epoch's steps and its last partial batch, the divergence limit
and its messages, the step-loss history kept bounded (record_steps), steps run in chunks of any size
giving the same bits, and a run stopped, saved, loaded and continued ending where the straight run ends."""

import math

import numpy as np
import pytest

import kernels.jit as jit
import kernels.reference as ref
from fastnet import checkpoint, training
from fastnet.errors import DivergenceError
from fastnet.model import MLP, Workspace
from fastnet.recipe import Recipe
from fastnet.optim import OPTIMIZERS, learning_rate
from fastnet.training import TrainState

SIZES = (16, 8, 3)
NAMES = ["cat", "dog", "bird"]


def recipe_of(state):
    """A recipe that a model file of state stores: its optimiser's hyper-parameters, which a resume reads."""
    opt = state.optimizer
    return Recipe(layers=state.model.sizes, optimizer=opt.name, **{k: getattr(opt, k) for k in opt.HYPER})


# --- one epoch: its steps, the last partial batch, the divergence limit ------------------------------

def tiny_state(optimizer="adam", sizes=(4, 5, 3), **model):
    """A fresh float64 state for a (4, 5, 3) network on the tiny rows of tiny_rows()."""
    rng = np.random.default_rng(1)
    net = MLP.he_init(sizes, rng, np.float64, input_scale=1 / 255, **model)
    return TrainState(net, OPTIMIZERS[optimizer](net.params.size, net.dtype), rng)


def tiny_rows(n=10):
    """n uint8 rows of 4 pixels, labels 0, 1, 2 in turn."""
    return np.random.default_rng(0).integers(0, 256, (n, 4), dtype=np.uint8), (np.arange(n) % 3).astype(np.uint8)


def one_epoch(state, lr, batch_size=4, rows=10, on_batch=None):
    images, labels = tiny_rows(rows)
    ws = Workspace(state.model.sizes, batch_size, state.model.dtype)
    return training.train_epoch(state, ref, images, labels, batch_size, lambda step: lr, ws, on_batch=on_batch)


def test_an_epoch_keeps_the_last_partial_batch_and_weighs_each_step_by_its_rows():
    """10 rows in batches of 4: three steps of 4, 4 and 2 rows; the epoch's loss is the mean over rows
    (each step's loss weighed by its rows), its accuracy a count of rows over 10."""
    state, seen = tiny_state(), []
    loss, accuracy = one_epoch(state, 1e-2, on_batch=lambda rows, step_loss: seen.append((rows, step_loss)))
    assert [rows for rows, _ in seen] == [4, 4, 2]
    assert loss == np.dot([step_loss for _, step_loss in seen], [4, 4, 2]) / 10
    assert loss != np.mean([step_loss for _, step_loss in seen])  # the partial batch weighs less
    assert (10 * accuracy).is_integer() and 0 <= accuracy <= 1
    assert (state.optimizer.step, state.batch, state.history.steps) == (3, 0, 3)
    assert state.history.step_loss == [step_loss for _, step_loss in seen]


def test_a_batch_as_large_as_the_rows_is_one_step():
    state, seen = tiny_state(), []
    one_epoch(state, 1e-2, batch_size=10, on_batch=lambda rows, step_loss: seen.append(rows))
    assert seen == [10] and state.optimizer.step == 1


@pytest.mark.parametrize("first, classes, limit", [
    (1.2, 10, 1e3 * math.log(10)),  # a uniform guess's loss bounds it from below
    (50.0, 10, 5000.0),             # else 100 times the first step's loss
    (0.5, 2, 1e3 * math.log(2)),
    (0.5, 1, 1e3 * math.log(2)),    # one class: ln 2, never ln 1 = 0
])
def test_loss_limit(first, classes, limit):
    assert training.loss_limit(first, classes) == pytest.approx(limit, rel=1e-15)


@pytest.mark.parametrize("optimizer", ["adam", "gd"])
def test_a_loss_that_explodes_while_finite_is_divergence_naming_the_step_and_the_first_loss(optimizer):
    state = tiny_state(optimizer)
    with pytest.raises(DivergenceError) as info:
        one_epoch(state, 1e6)
    message = str(info.value)
    first = state.history.step_loss[0] if state.history.step_loss else state.partial_losses[0]
    assert message.startswith("training diverged at epoch 1, step 2: loss ") and "exploded past" in message
    assert f"the first step's was {first:.3g}" in message and "learning rate too high" in message and "\n" not in message
    assert state.batch == 1 and state.partial_losses == [first]  # the exploded step is not counted


def test_a_loss_that_is_not_finite_is_divergence():
    with pytest.raises(DivergenceError, match=r"epoch 1, step 1: loss is not finite .*learning rate too high"):
        one_epoch(tiny_state(input_shift=np.nan), 1e-2)


def test_a_parameter_that_is_not_finite_after_the_step_is_divergence():
    """The step's loss is finite; the update (an infinite learning rate) is not."""
    with pytest.raises(DivergenceError, match=r"epoch 1, step 1: a parameter is not finite"):
        with np.errstate(all="ignore"):
            one_epoch(tiny_state("gd"), math.inf)


def test_split_validation_holds_out_n_val_rows_sorted_and_disjoint():
    train, val = training.split_validation(50, 12, np.random.default_rng(0))
    assert len(val) == 12 and len(train) == 38
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(50))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    again = training.split_validation(50, 12, np.random.default_rng(0))
    assert np.array_equal(again[1], val)
    assert not np.array_equal(training.split_validation(50, 12, np.random.default_rng(1))[1], val)


# --- the step-loss history ---------------------------------------------------------------------------

def test_the_step_history_is_bounded_and_a_resumed_run_keeps_what_the_straight_one_keeps(tmp_path, monkeypatch):
    """With room for 16 step losses, a run of 3 epochs of 10 steps keeps every step's loss, then every
    2nd (the first always), its file loads, and a run stopped and resumed mid-way keeps the very same
    losses as the straight run."""
    monkeypatch.setattr(training, "MAX_STEP_LOSSES", 16, raising=False)
    monkeypatch.setattr(checkpoint, "MAX_STEP_LOSSES", 16, raising=False)
    data = np.random.default_rng(5)
    images = data.integers(0, 256, (80, SIZES[0]), dtype=np.uint8)
    labels = data.integers(0, SIZES[-1], 80).astype(np.uint8)

    def run(stop=None, state=None):
        if state is None:
            rng = np.random.default_rng(0)
            model = MLP.he_init(SIZES, rng, np.float64, input_scale=1 / 255)
            state = TrainState(model, OPTIMIZERS["adam"](model.params.size, model.dtype), rng)
        training.fit(state, ref, (images, labels), (images[:0], labels[:0]), 3, 8, 1e-2, stop=stop, max_chunk=1)
        return state

    straight = run()
    h = straight.history
    assert (h.steps, h.step_stride, len(h.step_loss)) == (30, 2, 15)
    steps = iter(range(1, 10**9))
    half = run(stop=lambda: next(steps) == 13)
    path = tmp_path / "half.npz"
    checkpoint.save(str(path), half, recipe_of(half), {}, NAMES)
    resumed = run(state=checkpoint.load_state(str(path), OPTIMIZERS)[0])
    assert resumed.history.step_loss == h.step_loss and resumed.history.step_stride == 2
    np.testing.assert_array_equal(resumed.model.params, straight.model.params)


def test_training_records_one_loss_a_step_below_the_bound():
    """record_steps: below MAX_STEP_LOSSES every step's loss is kept in order (stride 1); above, the
    stride doubles and only multiples of it stay, the first step's always among them."""
    h = training.History()
    training.record_steps(h, [1.0, 2.0, 3.0])
    training.record_steps(h, [4.0])
    assert (h.step_loss, h.steps, h.step_stride) == ([1.0, 2.0, 3.0, 4.0], 4, 1)
    h = training.History(step_loss=list(map(float, range(training.MAX_STEP_LOSSES))),
                         steps=training.MAX_STEP_LOSSES)
    training.record_steps(h, [-1.0, -2.0, -3.0])
    assert h.step_stride == 2 and len(h.step_loss) == training.MAX_STEP_LOSSES // 2 + 2
    assert h.step_loss[:3] == [0.0, 2.0, 4.0] and h.step_loss[-2:] == [-1.0, -3.0]


def test_record_steps_keeps_the_same_losses_however_the_steps_are_split_into_calls(monkeypatch):
    """What is kept depends only on the steps' losses, not on how many each call reported (a chunk, a
    resumed epoch): 100 steps in calls of 1, 7 or 100 keep the same losses at the same stride."""
    monkeypatch.setattr(training, "MAX_STEP_LOSSES", 10)
    losses = [float(k) for k in range(100)]
    kept = []
    for size in (1, 7, 100):
        h = training.History()
        for start in range(0, 100, size):
            training.record_steps(h, losses[start : start + size])
        kept.append((h.step_loss, h.step_stride, h.steps))
    assert kept[0] == kept[1] == kept[2]
    step_loss, stride, steps = kept[0]
    assert steps == 100 and stride == 16 and step_loss == losses[::16] and len(step_loss) <= 10


# --- resume == straight run, at library level -------------------------------------------------

def _data(n=300, px=64, k=3):
    rng = np.random.default_rng(5)
    y = rng.integers(0, k, n).astype(np.uint8)
    x = np.clip(rng.integers(0, 256, (k, px))[y] + rng.normal(0, 50, (n, px)), 0, 255).astype(np.uint8)
    return (x[:250], y[:250]), (x[250:], y[250:])


def _fresh(dtype, optimizer="adam"):
    rng = np.random.default_rng(11)
    model = MLP.he_init((64, 32, 16, 3), rng, dtype, input_scale=1 / 255, input_shift=-0.3)
    return TrainState(model, OPTIMIZERS[optimizer](model.params.size, model.dtype), rng)


def _stop_after(k):
    count = iter(range(1, 10**9))
    return lambda: next(count) == k


FIT = dict(epochs=4, batch_size=32, lr=3e-3, schedule="cosine", warmup=5)  # 8 steps an epoch


@pytest.mark.slow
@pytest.mark.parametrize("K, dtype, optimizer, atol", [
    (ref, np.float64, "adam", 1e-12),
    (ref, np.float64, "gd", 1e-12),
    (jit, np.float32, "adam", 0.0),  # found: bit-identical (same kernels, same order of operations)
    (jit, np.float64, "adam", 0.0),
])
@pytest.mark.parametrize("k", [1, 8, 13, 31])  # first step, an epoch's last step, mid-epoch, the last but one
def test_interrupt_save_load_continue_equals_straight_fit(tmp_path, K, dtype, optimizer, atol, k):
    train, val = _data()
    straight = _fresh(dtype, optimizer)
    assert training.fit(straight, K, train, val, **FIT)

    part = _fresh(dtype, optimizer)  # one step a call, so that stop() is asked after every step (the straight
    #                                  run's chunks of many steps must give the very same bits)
    assert not training.fit(part, K, train, val, **FIT, stop=_stop_after(k), max_chunk=1)
    assert part.epoch * 8 + part.batch == k
    path = tmp_path / "part.npz"
    checkpoint.save(str(path), part, recipe_of(part), {}, ["a", "b", "c"])
    resumed, _, _ = checkpoint.load_state(str(path), OPTIMIZERS)
    assert training.fit(resumed, K, train, val, **FIT)

    np.testing.assert_allclose(resumed.model.params, straight.model.params, rtol=0, atol=atol)
    for key, value in straight.optimizer.state().items():
        np.testing.assert_allclose(resumed.optimizer.state()[key], value, rtol=0, atol=atol)
    assert resumed.rng.bit_generator.state == straight.rng.bit_generator.state
    h, g = resumed.history, straight.history
    np.testing.assert_allclose(h.train_loss, g.train_loss, rtol=0, atol=atol)
    np.testing.assert_allclose(h.step_loss, g.step_loss, rtol=0, atol=atol)
    assert h.val_accuracy == g.val_accuracy and len(h.epoch_seconds) == 4


@pytest.mark.parametrize("K, dtype", [(ref, np.float64), (jit, np.float32)])
@pytest.mark.parametrize("calls", [1, 2, 3])
def test_a_stop_with_an_epochs_last_step_ends_between_epochs(tmp_path, K, dtype, calls):
    """One step an epoch: every stop comes as an epoch ends (issue 21 S1). The run stops after that
    epoch's bookkeeping, at batch 0 of the next, a place check_position accepts, and resumes to the
    straight run's bits."""
    train, val = _data()
    one_step = dict(FIT, batch_size=len(train[1]))
    straight = _fresh(dtype)
    assert training.fit(straight, K, train, val, **one_step)
    part = _fresh(dtype)
    seen = []
    assert not training.fit(part, K, train, val, **one_step, stop=_stop_after(calls),
                            on_epoch=lambda st: seen.append(st.epoch))
    assert (part.epoch, part.batch, part.partial_losses) == (calls, 0, []) and seen == list(range(1, calls + 1))
    assert len(part.history.train_loss) == calls and part.optimizer.step == calls
    checkpoint.check_position(part, len(train[1]), len(train[1]), "part.npz")
    path = tmp_path / "part.npz"
    checkpoint.save(str(path), part, recipe_of(part), {}, ["a", "b", "c"])
    resumed, _, _ = checkpoint.load_state(str(path), OPTIMIZERS)
    assert training.fit(resumed, K, train, val, **one_step)
    atol = 0.0 if K is jit else 1e-12
    np.testing.assert_allclose(resumed.model.params, straight.model.params, rtol=0, atol=atol)
    np.testing.assert_allclose(resumed.history.step_loss, straight.history.step_loss, rtol=0, atol=atol)


def test_no_stop_is_asked_after_the_runs_last_step():
    """A stop can only cut a run short: after the last epoch's last step fit has nothing left to stop."""
    train, val = _data()
    state = _fresh(np.float64)
    asked = []
    assert training.fit(state, ref, train, val, **dict(FIT, epochs=2), max_chunk=1,
                        stop=lambda: asked.append(state.epoch * 8 + state.batch) or False)
    assert asked == list(range(1, 16))


@pytest.mark.slow
@pytest.mark.parametrize("K, dtype, optimizer", [
    (ref, np.float64, "adam"), (ref, np.float64, "gd"), (jit, np.float32, "adam"), (jit, np.float64, "gd"),
])
def test_steps_run_in_chunks_of_any_size_give_the_same_bits(K, dtype, optimizer):
    """fit runs its steps in chunks, one optimiser call each (Adam's: one compiled call), sized by
    time: where the chunks are cut changes nothing. 1, 3 and up to 64 steps a call give the same
    parameters, optimiser state and step losses, with a learning rate that changes every step."""
    train, val = _data()
    runs = []
    for max_chunk in (1, 3, 64):
        state = _fresh(dtype, optimizer)
        assert training.fit(state, K, train, val, **FIT, max_chunk=max_chunk)
        runs.append(state)
    for other in runs[1:]:
        assert np.array_equal(other.model.params, runs[0].model.params)
        for key, value in runs[0].optimizer.state().items():
            assert np.array_equal(other.optimizer.state()[key], value)
        assert other.history.step_loss == runs[0].history.step_loss
        assert other.history.val_accuracy == runs[0].history.val_accuracy


@pytest.mark.slow
@pytest.mark.parametrize("K, dtype", [(ref, np.float64), (jit, np.float32)])
@pytest.mark.parametrize("calls", [1, 2, 5])
def test_a_stop_between_chunks_resumes_exactly(tmp_path, K, dtype, calls):
    """With the default chunks (many steps a call), stop() is asked after each call: a run stopped
    after its first, second or fifth call stops on a chunk's last step, and saved, loaded and
    continued, it ends where a straight run ends, bit for bit for the JIT."""
    train, val = _data()
    straight = _fresh(dtype)
    assert training.fit(straight, K, train, val, **FIT)
    part = _fresh(dtype)
    assert not training.fit(part, K, train, val, **FIT, stop=_stop_after(calls))
    assert 1 <= part.epoch * 8 + part.batch <= 32 and part.optimizer.step == part.epoch * 8 + part.batch
    path = tmp_path / "part.npz"
    checkpoint.save(str(path), part, recipe_of(part), {}, ["a", "b", "c"])
    resumed, _, _ = checkpoint.load_state(str(path), OPTIMIZERS)
    assert training.fit(resumed, K, train, val, **FIT)
    atol = 0.0 if K is jit else 1e-12
    np.testing.assert_allclose(resumed.model.params, straight.model.params, rtol=0, atol=atol)
    np.testing.assert_allclose(resumed.history.step_loss, straight.history.step_loss, rtol=0, atol=atol)


@pytest.mark.parametrize("K, dtype", [(ref, np.float64), (jit, np.float32)])
def test_the_running_accuracy_counts_each_steps_rows_and_the_pass_over_the_rows_changes_no_training(K, dtype):
    """fit reports each epoch's running accuracy: the rows each step predicted right before its
    update, over the epoch's rows (recounted here by replaying the steps one at a time with the
    kernels' own count). fit(train_pass=True) measures it with a pass over the training rows after
    the epoch instead, and trains the very same network."""
    train, val = _data()
    runs = []
    for train_pass in (False, True):
        state = _fresh(dtype)
        assert training.fit(state, K, train, val, **FIT, train_pass=train_pass)
        runs.append(state)
    assert np.array_equal(runs[0].model.params, runs[1].model.params)
    assert runs[0].history.step_loss == runs[1].history.step_loss
    assert runs[0].history.val_accuracy == runs[1].history.val_accuracy
    assert all(0 <= a <= 1 for a in runs[0].history.train_accuracy + runs[1].history.train_accuracy)
    assert runs[0].history.train_accuracy != runs[1].history.train_accuracy  # a running mean, not the pass

    (images, labels), n, batch = train, len(train[1]), FIT["batch_size"]
    replay, expected = _fresh(dtype), []
    ws = Workspace(replay.model.sizes, batch, replay.model.dtype)
    total = -(-n // batch) * FIT["epochs"]
    for _ in range(FIT["epochs"]):
        order, right = replay.rng.permutation(n), 0
        for start in range(0, n, batch):
            lr = learning_rate(FIT["lr"], FIT["schedule"], replay.optimizer.step, total, FIT["warmup"])
            count = np.zeros(1, np.int64)
            replay.optimizer.train_steps(K, replay.model, images, order, [start, min(start + batch, n)], labels, ws,
                                         [lr], np.inf, count)
            right += int(count[0])
        expected.append(right / n)
    assert runs[0].history.train_accuracy == expected
