"""fastnet.checkpoint writing and reading back: a state mid-epoch round-trips bit for bit (model,
optimiser, generators, history), activations and alpha come back, a file from before they were stored
has their old defaults, files get ordinary permissions, failed saves leave nothing, and the readers'
bounds follow what the file holds. Hostile and damaged files: test_model_files.py."""

import json
import os
import signal
import stat
import zipfile

import numpy as np
import pytest

import kernels.reference as ref
from fastnet import checkpoint
from fastnet.errors import InputError
from fastnet.model import MLP, predict_logits
from fastnet.optim import OPTIMIZERS
from fastnet.recipe import Recipe
from fastnet.training import TrainState
from tests.helpers import ROOT, mid_epoch_state, model_arrays

SIZES = (16, 8, 3)
NAMES = ["cat", "dog", "bird"]
RECIPE = Recipe(layers=SIZES, lr=2e-3, batch_size=8, epochs=3, warmup=2, beta1=0.9, beta2=0.999)  # Adam(): its defaults
TRAINED = {"dataset": "fashion-mnist", "data_dir": None, "input_dtype": "uint8"}
BEFORE_ACTIVATIONS = ROOT / "tests" / "data" / "model-before-activations.npz"


@pytest.mark.parametrize("dtype, optimizer", [(np.float32, "adam"), (np.float64, "adam"), (np.float64, "gd")])
def test_round_trip_is_exact(tmp_path, dtype, optimizer):
    state = mid_epoch_state(dtype, optimizer)
    path = tmp_path / "model.npz"
    checkpoint.save(str(path), state, RECIPE, TRAINED, NAMES)
    model, record, names, _ = checkpoint.load(str(path))
    back, record2, names2 = checkpoint.load_state(str(path), OPTIMIZERS)
    assert record == record2 == {"recipe": RECIPE.as_stored(), "trained": TRAINED} and names == names2 == NAMES
    assert Recipe.from_stored(record["recipe"]) == RECIPE
    for m in (model, back.model):
        assert m.sizes == SIZES and m.dtype == np.dtype(dtype)
        assert m.params.tobytes() == state.model.params.tobytes()  # bit for bit
        assert m.input_scale.tobytes() == state.model.input_scale.tobytes()
        assert m.input_shift.tobytes() == state.model.input_shift.tobytes()
    opt, opt2 = state.optimizer, back.optimizer
    assert type(opt2) is type(opt) and opt2.step == opt.step > 0
    for key, value in opt.state().items():
        got = opt2.state()[key]
        assert got.dtype == value.dtype and got.tobytes() == value.tobytes(), key
    assert back.rng.bit_generator.state == state.rng.bit_generator.state
    assert back.rng.random(5).tolist() == state.rng.random(5).tolist()
    assert (back.epoch, back.batch, back.epoch_rng) == (state.epoch, state.batch, state.epoch_rng)
    assert back.partial_losses == state.partial_losses and len(back.partial_losses) == 3
    assert json.dumps(vars(back.history)) == json.dumps(vars(state.history))  # NaN-aware equality


def test_activations_and_alpha_round_trip(tmp_path):
    """The layers' activations are stored by name in the file, alpha among the settings; both come
    back, the activations into the model and alpha into the optimiser of a resumed run."""
    rng = np.random.default_rng(5)
    for activations, kind in ((("tanh", "identity"), "adam"), (("logistic", "identity"), "gd")):
        model = MLP.he_init(SIZES, rng, np.float32, activations=activations)
        state = TrainState(model, OPTIMIZERS[kind](model.params.size, model.dtype, alpha=0.25), rng)
        path = tmp_path / f"{activations[0]}.npz"
        checkpoint.save(str(path), state, RECIPE.replace(activation=activations[0], alpha=0.25), TRAINED, NAMES)
        assert model_arrays(path)["activations"].tolist() == list(activations)
        loaded, record, _, _ = checkpoint.load(str(path))
        back, _, _ = checkpoint.load_state(str(path), OPTIMIZERS)
        assert loaded.activations == back.model.activations == activations
        assert record["recipe"]["alpha"] == back.optimizer.alpha == 0.25


def test_a_file_from_before_activations_were_recorded_has_relu_hidden_layers():
    """tests/data/model-before-activations.npz was written by fastnet before this file format recorded
    activations and alpha (commit e84de42: `python -m fastnet.train --layers 16,8,3 --epochs 1
    --batch-size 16 --backend numpy --threads 1 --save ...` on 60 + 20 random 4 x 4 images in 3 classes,
    tests.helpers.idx_set). It loads with relu hidden layers and no L2 penalty, and evaluates as relu
    (test_model_files.py: it resumes so)."""
    model, record, names, arrays = checkpoint.load(str(BEFORE_ACTIVATIONS))
    assert "activations" not in arrays and "recipe" not in arrays  # one `settings` member held both records
    assert "alpha" not in record["recipe"] and "activation" not in record["recipe"]
    assert Recipe.from_stored(record["recipe"]).alpha == 0.0 and record["trained"]["dataset"] == "fashion-mnist"
    assert model.activations == ("relu", "identity")
    state, _, _ = checkpoint.load_state(str(BEFORE_ACTIVATIONS), OPTIMIZERS)
    assert state.optimizer.alpha == 0.0
    pixels = np.random.default_rng(0).integers(0, 256, (5, 16), dtype=np.uint8)
    X = pixels * model.input_scale.astype(np.float64) + model.input_shift
    hidden = np.maximum(X @ model.W[0] + model.b[0], 0)
    logits = predict_logits(model, ref, pixels)
    np.testing.assert_allclose(logits, hidden @ model.W[1] + model.b[1], rtol=1e-5, atol=1e-5)


def test_saved_file_has_ordinary_permissions(tmp_path):
    """mkstemp creates 0600 files; the model file must get the umask's usual permissions."""
    path = tmp_path / "model.npz"
    checkpoint.save(str(path), mid_epoch_state(), RECIPE, TRAINED, NAMES)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_save_failures_are_input_errors_and_leave_no_temporary_file(tmp_path):
    state = mid_epoch_state()
    target = tmp_path / "a_directory"
    target.mkdir()
    with pytest.raises(InputError, match="cannot write"):
        checkpoint.save(str(target), state, RECIPE, TRAINED, NAMES)
    with pytest.raises(InputError, match="cannot write"):
        checkpoint.save(str(tmp_path / "missing" / "m.npz"), state, RECIPE, TRAINED, NAMES)
    good = tmp_path / "m.npz"
    checkpoint.save(str(good), state, RECIPE, TRAINED, NAMES)
    before = good.read_bytes()
    state.model.params[3] = np.inf
    with pytest.raises(InputError, match="non-finite"):
        checkpoint.save(str(good), state, RECIPE, TRAINED, NAMES)
    assert good.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_directory", "m.npz"]


@pytest.mark.parametrize("where", [("ZipFile", "close"), ("_ZipWriteFile", "close"), ("_ZipWriteFile", "write")])
def test_a_ctrl_c_while_the_zip_is_written_cancels_the_save_cleanly(tmp_path, monkeypatch, where):
    """A second Ctrl-C while a checkpoint is saved (python -m fastnet.train raises KeyboardInterrupt
    on it) lands inside zipfile: it waits for np.savez to finish, then cancels the save, leaving the
    file as it was and no temporary file. Before, a KeyboardInterrupt inside a member's close made
    zipfile raise ValueError ("Can't close the ZIP file while there is an open writing handle"): a
    traceback and exit status 1 (the hostile sweep's sig_sigterm_then_sigint_while_saving_a_checkpoint)."""
    state, good = mid_epoch_state(), tmp_path / "m.npz"
    checkpoint.save(str(good), state, RECIPE, TRAINED, NAMES)
    before = good.read_bytes()
    owner, name = getattr(zipfile, where[0]), where[1]
    real = getattr(owner, name)

    def interrupted(self, *args, **kw):
        os.kill(os.getpid(), signal.SIGINT)  # Python runs the handler at its next chance
        return real(self, *args, **kw)

    monkeypatch.setattr(owner, name, interrupted)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        state.model.params[0] += 1
        with pytest.raises(KeyboardInterrupt):
            checkpoint.save(str(good), state, RECIPE, TRAINED, NAMES)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert good.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


def test_a_long_runs_history_is_stored_as_float_members_and_reads_back_exactly(tmp_path):
    """The history of 100,000 epochs lives in float64 members of its own, not in the progress JSON
    (which stays small however long the run), and the reader's bound of each is what the epoch count
    needs: it reads back exactly. Before, every step's loss was JSON text in `progress`: a run of
    about 3.3 million steps wrote a file that the reader's fixed bound of 256 MiB refused."""
    state = mid_epoch_state()
    epochs = 100_000
    rng = np.random.default_rng(1)
    h = state.history
    for key in ("epoch_seconds", "eval_seconds", "train_loss", "val_loss"):
        setattr(h, key, rng.random(epochs).tolist())
    h.train_accuracy, h.val_accuracy = rng.random(epochs).tolist(), [float("nan")] * epochs
    h.step_loss, h.steps, state.epoch = rng.random(3 * epochs).tolist(), 3 * epochs, epochs
    path = tmp_path / "long.npz"
    checkpoint.save(str(path), state, RECIPE, TRAINED, NAMES)
    with zipfile.ZipFile(path) as zf:
        assert zf.getinfo("progress.npy").file_size < 8192
    arrays = model_arrays(path)
    assert arrays["history_train_loss"].dtype == np.float64 and arrays["history_step_loss"].shape == (3 * epochs,)
    loaded, _, _ = checkpoint.load_state(str(path), OPTIMIZERS)
    assert loaded.history.train_loss == h.train_loss and loaded.history.step_loss == h.step_loss
    assert np.isnan(loaded.history.val_accuracy).all() and loaded.epoch == epochs
    assert loaded.partial_losses == state.partial_losses and loaded.batch == state.batch


@pytest.mark.slow
def test_a_model_with_more_inputs_than_the_old_fixed_bound_loads(tmp_path):
    """8.4 million float64 inputs: the input scaling (67 MB) was refused by a fixed 64 MiB bound; the
    bound now follows the stored layer sizes."""
    sizes = (8_400_000, 1, 2)
    model = MLP(sizes, np.float64, 0.5, 0.25)
    state = TrainState(model, OPTIMIZERS["gd"](model.params.size, model.dtype), np.random.default_rng(0))
    path = tmp_path / "wide.npz"
    checkpoint.save(str(path), state, RECIPE, TRAINED, ["a", "b"])
    del model, state
    loaded, _, _, _ = checkpoint.load(str(path))
    assert loaded.sizes == sizes and loaded.input_scale[-1] == 0.5


def test_class_names_longer_than_a_file_holds_are_refused_when_writing(tmp_path):
    state = mid_epoch_state()
    with pytest.raises(InputError, match="longer than"):
        checkpoint.save(str(tmp_path / "m.npz"), state, RECIPE, TRAINED, ["a", "b", "x" * (checkpoint.MAX_NAME + 1)])
    assert not (tmp_path / "m.npz").exists()
    checkpoint.save(str(tmp_path / "m.npz"), state, RECIPE, TRAINED, ["a", "b", "x" * checkpoint.MAX_NAME])
    assert checkpoint.load(str(tmp_path / "m.npz"))[2][2] == "x" * checkpoint.MAX_NAME
