"""Model files as an attacker, a crash or a careless user leaves them: every bad file is one clear error.

A model .npz is read with allow_pickle=False and checked array by array; whatever is wrong with it
(truncated, not a zip, empty, missing or misshapen arrays, wrong dtypes, non-finite values, a
future format, another network's sizes) ends as one InputError, which the commands print as one
line `error: ...` with exit status 2. A good file round-trips exactly.
"""

import ast
import io
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import kernels.reference as ref
from tests.conftest import write_idx
from fastnet import checkpoint, evaluate, training
from fastnet.cli import run
from fastnet.errors import InputError
from fastnet.model import MLP, predict_logits
from fastnet.optim import OPTIMIZERS
from fastnet.recipe import Recipe
from fastnet.training import TrainState

ROOT = Path(__file__).resolve().parents[1]
SIZES = (16, 8, 3)
NAMES = ["cat", "dog", "bird"]
RECIPE = Recipe(layers=SIZES, lr=2e-3, batch_size=8, epochs=3, warmup=2, beta1=0.9, beta2=0.999)  # Adam(): its defaults
TRAINED = {"dataset": "fashion-mnist", "data_dir": None, "input_dtype": "uint8"}


def make_state(dtype=np.float32, optimizer="adam", stop_after=3, seed=0):
    """A state `stop_after` steps into its second epoch (5 steps each) on random data: every field set."""
    rng = np.random.default_rng(seed)
    model = MLP.he_init(SIZES, rng, dtype, input_scale=1 / 255, input_shift=-0.25)
    state = TrainState(model, OPTIMIZERS[optimizer](model.params.size, model.dtype), rng)
    data = np.random.default_rng(99)
    images = data.integers(0, 256, (40, SIZES[0]), dtype=np.uint8)
    labels = data.integers(0, SIZES[-1], 40).astype(np.uint8)
    steps = iter(range(1, 10**9))
    done = training.fit(state, ref, (images, labels), (images[:10], labels[:10]), 3, 8, 1e-2,
                        "cosine", 2, stop=lambda: next(steps) == 5 + stop_after, max_chunk=1)
    assert not done and state.epoch == 1 and state.batch == stop_after
    return state


@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "model.npz"
    checkpoint.save(str(path), make_state(), RECIPE, TRAINED, NAMES)
    return path


def arrays_of(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def rewrite(good, dst, drop=(), **changes):
    """A copy of the good model file with arrays replaced, added or dropped."""
    arrays = arrays_of(good)
    arrays.update(changes)
    for key in drop:
        del arrays[key]
    with open(dst, "wb") as f:  # np.savez(path) would append .npz to some names; a file object keeps dst
        np.savez(f, **arrays)
    return dst


def zip_with_member(dst, good, member, payload):
    """The good file's members plus (or with a replaced) member holding raw payload bytes."""
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(dst, "w") as out:
        for info in src.infolist():
            if info.filename != member:
                out.writestr(info.filename, src.read(info.filename))
        out.writestr(member, payload)
    return dst


def write(dst, data):
    dst.write_bytes(data)
    return dst


def npy(dst):
    buf = io.BytesIO()
    np.save(buf, np.zeros(P, np.float32))
    return write(dst, buf.getvalue())


def empty_zip(dst):
    zipfile.ZipFile(dst, "w").close()
    return dst


P = sum(a * b + b for a, b in zip(SIZES, SIZES[1:]))

# name -> (how to make it from (good, dst), words the one-line error must contain)
BAD_FILES = {
    "truncated": (lambda g, d: write(d, g.read_bytes()[: g.stat().st_size // 2]), ["not a readable"]),
    "truncated_header": (lambda g, d: write(d, g.read_bytes()[:30]), ["not a readable"]),
    "not_a_zip": (lambda g, d: write(d, b"just some text, not a model\n"), ["not an .npz"]),
    "npy_named_npz": (lambda g, d: npy(d), ["not an .npz"]),
    "empty": (lambda g, d: write(d, b""), ["empty"]),
    "empty_zip": (lambda g, d: empty_zip(d), ["missing 'format'"]),
    "missing_params": (lambda g, d: rewrite(g, d, drop=["params"]), ["missing 'params'"]),
    "missing_sizes": (lambda g, d: rewrite(g, d, drop=["sizes"]), ["missing 'sizes'"]),
    "missing_class_names": (lambda g, d: rewrite(g, d, drop=["class_names"]), ["missing 'class_names'"]),
    "missing_recipe": (lambda g, d: rewrite(g, d, drop=["recipe"]), ["missing 'recipe'"]),
    "missing_trained": (lambda g, d: rewrite(g, d, drop=["trained"]), ["missing 'trained'"]),
    "missing_input_scale": (lambda g, d: rewrite(g, d, drop=["input_scale"]), ["missing 'input_scale'"]),
    "missing_version": (lambda g, d: rewrite(g, d, drop=["version"]), ["missing 'version'"]),
    "params_2d": (lambda g, d: rewrite(g, d, params=arrays_of(g)["params"].reshape(1, -1)), ["shape (1, "]),
    "sizes_2d": (lambda g, d: rewrite(g, d, sizes=np.array([SIZES])), ["layer sizes"]),
    "sizes_0d": (lambda g, d: rewrite(g, d, sizes=np.array(16)), ["layer sizes"]),
    "sizes_zero": (lambda g, d: rewrite(g, d, sizes=np.array([16, 0, 3])), ["layer sizes"]),
    "sizes_float": (lambda g, d: rewrite(g, d, sizes=np.array(SIZES, float)), ["'sizes'", "dtype"]),
    "input_scale_1d": (lambda g, d: rewrite(g, d, input_scale=np.array([1.0])), ["'input_scale'", "shape"]),
    "params_int": (lambda g, d: rewrite(g, d, params=np.zeros(P, np.int32)), ["'params'", "dtype"]),
    "params_complex": (lambda g, d: rewrite(g, d, params=np.zeros(P, np.complex64)), ["'params'", "dtype"]),
    "params_float16": (lambda g, d: rewrite(g, d, params=np.zeros(P, np.float16)), ["float16"]),
    "params_bytes": (lambda g, d: rewrite(g, d, params=np.zeros(P, "S4")), ["'params'", "dtype"]),
    "format_bytes": (lambda g, d: rewrite(g, d, format=np.array(b"fastnet-model")), ["'format'", "dtype"]),
    "other_format": (lambda g, d: rewrite(g, d, format=np.array("keras")), ["not a fastnet model"]),
    "params_nan": (lambda g, d: rewrite(g, d, params=np.where(np.arange(P) == 7, np.nan, 0).astype(np.float32)),
                   ["non-finite"]),
    "params_inf": (lambda g, d: rewrite(g, d, params=np.full(P, -np.inf, np.float64)), ["non-finite"]),
    "input_shift_nan": (lambda g, d: rewrite(g, d, input_shift=np.where(np.arange(SIZES[0]) == 3, np.nan, 0.0)),
                        ["non-finite"]),
    "input_scale_scalar": (lambda g, d: rewrite(g, d, input_scale=np.array(1 / 255)), ["'input_scale'", "shape"]),
    "future_version": (lambda g, d: rewrite(g, d, version=np.array(2)), ["version 2", "version 1"]),
    "other_network": (lambda g, d: rewrite(g, d, sizes=np.array([784, 128, 10])), ["do not fit", "784,128,10"]),
    # 20 billion parameters: must be refused by arithmetic, not by trying to allocate 80 GB
    "absurd_sizes": (lambda g, d: rewrite(g, d, sizes=np.array([200_000, 100_000, 3])), ["do not fit"]),
    "class_names_short": (lambda g, d: rewrite(g, d, class_names=np.array(["a", "b"])),
                          ["'class_names'", "shape"]),
    "class_names_long": (lambda g, d: rewrite(g, d, class_names=np.array(list("abcd"))), ["'class_names'"]),
    "recipe_not_json": (lambda g, d: rewrite(g, d, recipe=np.array("{lr: 1")), ["'recipe'", "JSON"]),
    "recipe_not_object": (lambda g, d: rewrite(g, d, recipe=np.array("[1, 2]")), ["'recipe'", "object"]),
    "recipe_deep": (lambda g, d: rewrite(g, d, recipe=np.array("[" * 100_000 + "]" * 100_000)), ["'recipe'"]),
    "trained_not_object": (lambda g, d: rewrite(g, d, trained=np.array("3")), ["'trained'", "object"]),
    "pickled_extra": (lambda g, d: rewrite(g, d, extra=np.array([{"evil": 1}, None], dtype=object)), ["pickle"]),
    "pickled_params": (lambda g, d: rewrite(g, d, params=np.array([1.0, "x"], dtype=object)), ["pickle"]),
    "member_not_npy": (lambda g, d: zip_with_member(d, g, "params.npy", b"not an npy payload"), ["'params'"]),
    "activations_unknown": (lambda g, d: rewrite(g, d, activations=np.array(["gelu", "identity"])),
                            ["unknown activation 'gelu'"]),
    "activations_relu_output": (lambda g, d: rewrite(g, d, activations=np.array(["relu", "relu"])),
                                ["output layer", "identity"]),
    "activations_too_many": (lambda g, d: rewrite(g, d, activations=np.array(["relu"] * 2 + ["identity"])),
                             ["'activations'", "shape"]),
    "activations_codes": (lambda g, d: rewrite(g, d, activations=np.array([1, 0])), ["'activations'", "dtype"]),
}


@pytest.fixture(params=sorted(BAD_FILES))
def bad_file(request, good_file, tmp_path):
    make, words = BAD_FILES[request.param]
    path = tmp_path / f"{request.param}.npz"
    make(good_file, path)
    assert path.exists()
    return path, words


def test_bad_model_file_is_one_input_error(bad_file):
    path, words = bad_file
    with pytest.raises(InputError) as info:
        checkpoint.load(str(path))
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for w in words:
        assert w in message, message


def test_bad_model_file_through_evaluate_cli_is_one_line_exit_2(bad_file, capsys):
    """fastnet.evaluate's command path (cli.run) in-process: `error: ...`, exit 2, no traceback."""
    path, words = bad_file
    with pytest.raises(SystemExit) as info:
        run(evaluate.main, [str(path), "--backend", "numpy"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    for w in words:
        assert w in err, err


@pytest.mark.parametrize("name", ["truncated", "pickled_extra", "other_network"])
def test_bad_model_file_evaluate_subprocess(name, good_file, tmp_path):
    """The real command line: `python -m fastnet.evaluate BADFILE` prints one line and exits 2."""
    path = BAD_FILES[name][0](good_file, tmp_path / "bad.npz")
    proc = subprocess.run([sys.executable, "-m", "fastnet.evaluate", str(path), "--backend", "numpy"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr
    assert proc.stdout == ""


class _Booby:
    """Unpickling this calls open(marker, "w"): a file that appears if anything ran the pickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_in_a_model_file_is_never_run(good_file, tmp_path, capsys):
    marker = tmp_path / "pickle-ran"
    path = rewrite(good_file, tmp_path / "trap.npz", params=np.array([_Booby(str(marker))], dtype=object))
    with pytest.raises(SystemExit) as info:
        run(evaluate.main, [str(path), "--backend", "numpy"])
    assert info.value.code == 2 and "pickled objects" in capsys.readouterr().err
    with pytest.raises(InputError, match="pickled objects"):
        checkpoint.load_state(str(path), OPTIMIZERS)
    assert not marker.exists()
    np.load(path, allow_pickle=True)["params"]  # the trap works: loading it with pickles springs it
    assert marker.exists()


def test_missing_and_directory_paths(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        checkpoint.load(str(tmp_path / "nope.npz"))
    with pytest.raises(InputError, match="not a file"):
        checkpoint.load(str(tmp_path))


def test_every_truncation_and_random_corruption_is_an_input_error(good_file, tmp_path):
    """Every prefix length of a model file, and bytes flipped at random in a plain and a compressed
    copy: nothing but InputError escapes (zlib, zipfile's NotImplementedError, ... included)."""
    raw = good_file.read_bytes()
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays_of(good_file))
    compressed = buf.getvalue()
    rng = np.random.default_rng(2024)
    bad = tmp_path / "bad.npz"
    cases = [raw[:n] for n in range(0, len(raw), max(1, len(raw) // 150))]
    for source in (raw, compressed):
        for _ in range(300):
            b = bytearray(source)
            for i in rng.integers(0, len(b), rng.integers(1, 4)):
                b[i] = rng.integers(256)
            cases.append(bytes(b))
    loaded = 0
    for case in cases:
        bad.write_bytes(case)
        try:
            checkpoint.load_state(str(bad), OPTIMIZERS)
            loaded += 1  # a flip inside the JSON text or a name can leave a valid file
        except InputError as exc:
            assert "\n" not in str(exc)
    assert loaded < len(cases) // 2


# checkpoints that load as a model but cannot be resumed
def _progress_with(good, **changes):
    progress = json.loads(str(arrays_of(good)["progress"]))
    progress.update(changes)
    return np.array(json.dumps(progress))


BAD_CHECKPOINTS = {
    "missing_adam_m": (lambda g, d: rewrite(g, d, drop=["opt_m"]), "incomplete"),
    "adam_v_nan": (lambda g, d: rewrite(g, d, opt_v=np.full(P, np.nan, np.float32)), "non-finite"),
    "adam_m_wrong_shape": (lambda g, d: rewrite(g, d, opt_m=np.zeros(P + 1, np.float32)), "'opt_m'"),
    "adam_m_complex": (lambda g, d: rewrite(g, d, opt_m=np.zeros(P, np.complex64)), "'opt_m'"),
    "unknown_optimizer": (lambda g, d: rewrite(g, d, progress=_progress_with(g, optimizer="lbfgs")), "incomplete"),
    "bad_rng": (lambda g, d: rewrite(g, d, progress=_progress_with(g, rng={"bit_generator": "MT19937"})),
                "incomplete"),
    "bad_epoch_rng": (lambda g, d: rewrite(g, d, progress=_progress_with(g, epoch_rng=None)), "incomplete"),
    "negative_epoch": (lambda g, d: rewrite(g, d, progress=_progress_with(g, epoch=-3)), "negative"),
    "epoch_text": (lambda g, d: rewrite(g, d, progress=_progress_with(g, epoch="two")), "incomplete"),
    "history_extra": (lambda g, d: rewrite(g, d, progress=_progress_with(g, history={"x": []})), "incomplete"),
    "progress_list": (lambda g, d: rewrite(g, d, progress=np.array("[]")), "'progress'"),
    "missing_progress": (lambda g, d: rewrite(g, d, drop=["progress"]), "missing 'progress'"),
}


@pytest.mark.parametrize("name", sorted(BAD_CHECKPOINTS))
def test_bad_checkpoint_cannot_be_resumed(name, good_file, tmp_path):
    make, word = BAD_CHECKPOINTS[name]
    path = make(good_file, tmp_path / f"{name}.npz")
    checkpoint.load(str(path))  # still a usable model for evaluate/predict
    with pytest.raises(InputError) as info:
        checkpoint.load_state(str(path), OPTIMIZERS)
    assert word in str(info.value) and "\n" not in str(info.value)


def idx_data(folder, side, classes=3):
    """A custom IDX data set of side x side images in `classes` classes."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 20)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, side, side)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", np.arange(n) % classes)
    return folder


@pytest.fixture
def tiny_data(tmp_path, tmp_cache):
    """25-pixel images in 3 classes, which a 16,8,3 model does not fit."""
    return idx_data(tmp_path / "data25", 5)


def resume(path, data, *extra):
    return subprocess.run([sys.executable, "-m", "fastnet.train", "--resume", str(path), "--epochs", "5",
                           "--data-dir", str(data), "--backend", "numpy", "--threads", "1", *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def assert_one_line_exit_2(proc):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_resume_model_whose_sizes_do_not_fit_the_data(good_file, tiny_data):
    """A 16,8,3 checkpoint resumed on 25-pixel images, or on 16-pixel images in 5 classes: one
    line naming both sizes, exit 2."""
    line = assert_one_line_exit_2(resume(good_file, tiny_data))
    assert "16" in line and "25" in line, line
    line = assert_one_line_exit_2(resume(good_file, idx_data(tiny_data.parent / "data16", 4, classes=5)))
    assert "3" in line and "5 classes" in line, line


@pytest.mark.parametrize("key, value", [("batch_size", 0), ("lr", "fast")])
def test_resume_checkpoint_with_bad_settings_is_one_line_error(good_file, tmp_path, tmp_cache, key, value):
    """A checkpoint whose recipe holds batch_size 0 (ZeroDivisionError in fit) or lr "fast"
    (ValueError formatting the banner) must be refused like the same flag would be: exit 2."""
    stored = np.array(json.dumps({**RECIPE.as_stored(), "val_split": 0, key: value}))
    bad = rewrite(good_file, tmp_path / "bad.npz", recipe=stored)
    assert_one_line_exit_2(resume(bad, idx_data(tmp_path / "data16", 4)))


@pytest.mark.parametrize("dtype, optimizer", [(np.float32, "adam"), (np.float64, "adam"), (np.float64, "gd")])
def test_round_trip_is_exact(tmp_path, dtype, optimizer):
    state = make_state(dtype, optimizer)
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
        assert arrays_of(path)["activations"].tolist() == list(activations)
        loaded, record, _, _ = checkpoint.load(str(path))
        back, _, _ = checkpoint.load_state(str(path), OPTIMIZERS)
        assert loaded.activations == back.model.activations == activations
        assert record["recipe"]["alpha"] == back.optimizer.alpha == 0.25


BEFORE_ACTIVATIONS = ROOT / "tests" / "data" / "model-before-activations.npz"


def test_a_file_from_before_activations_were_recorded_has_relu_hidden_layers(tmp_path, tmp_cache):
    """tests/data/model-before-activations.npz was written by fastnet before this file format recorded
    activations and alpha (commit e84de42: `python -m fastnet.train --layers 16,8,3 --epochs 1
    --batch-size 16 --backend numpy --threads 1 --save ...` on idx_data(folder, 4)). It loads with
    relu hidden layers and no L2 penalty, evaluates as relu, and resumes as what it was: relu with
    alpha 0, refusing a flag that says otherwise."""
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

    data = idx_data(tmp_path / "data16", 4)
    copy = tmp_path / "old.npz"
    copy.write_bytes(BEFORE_ACTIVATIONS.read_bytes())
    for flag in (["--activation", "tanh"], ["--alpha", "0.1"]):
        line = assert_one_line_exit_2(resume(copy, data, *flag))
        assert "contradicts" in line, line
    done = resume(copy, data, "--epochs", "2", "--activation", "relu", "--alpha", "0")
    assert done.returncode == 0, done.stderr
    model, record, _, arrays = checkpoint.load(str(copy))
    assert arrays["activations"].tolist() == ["relu", "identity"] and "settings" not in arrays
    assert (record["recipe"]["activation"], record["recipe"]["alpha"]) == ("relu", 0.0)


def test_saved_file_has_ordinary_permissions(tmp_path, good_file):
    """mkstemp creates 0600 files; the model file must get the umask's usual permissions."""
    path = tmp_path / "model.npz"
    checkpoint.save(str(path), make_state(), RECIPE, TRAINED, NAMES)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_save_failures_are_input_errors_and_leave_no_temporary_file(tmp_path):
    state = make_state()
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


@pytest.mark.parametrize("source", ["fastnet/checkpoint.py",
                                    *sorted(f"fastnet/data/{p.name}" for p in (ROOT / "fastnet" / "data").glob("*.py"))])
def test_reading_never_relies_on_assert(source):
    """`python -O` strips assert statements: validation must be real if/raise code."""
    tree = ast.parse((ROOT / source).read_text())
    asserts = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Assert)]
    assert asserts == [], f"{source} has assert statements at lines {asserts}"


def test_loading_works_and_validates_under_python_O(good_file, tmp_path):
    bad = []
    for name in ("truncated", "params_int", "other_network", "params_nan", "pickled_extra", "empty"):
        bad.append(str(BAD_FILES[name][0](good_file, tmp_path / f"{name}.npz")))
    script = (
        "import sys, json\n"
        "from fastnet import checkpoint\n"
        "from fastnet.errors import InputError\n"
        "from fastnet.optim import OPTIMIZERS\n"
        "state, settings, names = checkpoint.load_state(sys.argv[1], OPTIMIZERS)\n"
        "out = {'optimize': sys.flags.optimize, 'good': [list(state.model.sizes), names], 'bad': []}\n"
        "for path in sys.argv[2:]:\n"
        "    try:\n"
        "        checkpoint.load(path)\n"
        "        out['bad'].append('loaded')\n"
        "    except InputError:\n"
        "        out['bad'].append('InputError')\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([sys.executable, "-O", "-c", script, str(good_file), *bad], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["optimize"] == 1
    assert out["good"] == [list(SIZES), NAMES]
    assert out["bad"] == ["InputError"] * len(bad)


# --- what fastnet writes, it reads (issue 21: M1, M2) --------------------------------------------


def test_a_long_runs_history_is_stored_as_float_members_and_reads_back_exactly(tmp_path):
    """The history of 100,000 epochs lives in float64 members of its own, not in the progress JSON
    (which stays small however long the run), and the reader's bound of each is what the epoch count
    needs: it reads back exactly. Before, every step's loss was JSON text in `progress`: a run of
    about 3.3 million steps wrote a file that the reader's fixed bound of 256 MiB refused."""
    state = make_state()
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
    arrays = arrays_of(path)
    assert arrays["history_train_loss"].dtype == np.float64 and arrays["history_step_loss"].shape == (3 * epochs,)
    loaded, _, _ = checkpoint.load_state(str(path), OPTIMIZERS)
    assert loaded.history.train_loss == h.train_loss and loaded.history.step_loss == h.step_loss
    assert np.isnan(loaded.history.val_accuracy).all() and loaded.epoch == epochs
    assert loaded.partial_losses == state.partial_losses and loaded.batch == state.batch


def test_a_history_member_longer_than_its_epochs_is_refused_before_it_is_read(good_file, tmp_path):
    """Each history member is read within what its epoch count needs: a file whose train_loss holds
    a million entries for 2 epochs is one InputError, its data never read."""
    bad = rewrite(good_file, tmp_path / "long.npz", history_train_loss=np.zeros(10**6))
    with pytest.raises(InputError, match="history_train_loss"):
        checkpoint.load(str(bad))
    bad = rewrite(good_file, tmp_path / "text.npz", history_val_loss=np.array(["1.0"]))
    checkpoint.load(str(bad))  # a usable model, not a resumable one
    with pytest.raises(InputError, match="history_val_loss"):
        checkpoint.load_state(str(bad), OPTIMIZERS)


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
    checkpoint.save(str(path), half, RECIPE, TRAINED, NAMES)
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


def test_layer_sizes_are_bounded_by_what_a_file_holds():
    """--layers of more than MAX_LAYERS sizes is refused when it is given, not written and then refused."""
    from fastnet.files import NPY_HEADER
    from fastnet.model import MAX_LAYERS, parse_layers

    assert len(parse_layers(",".join(["1"] * MAX_LAYERS))) == MAX_LAYERS
    with pytest.raises(InputError, match="at most"):
        parse_layers(",".join(["1"] * (MAX_LAYERS + 1)))
    assert checkpoint.SMALL_MEMBERS["sizes"] >= 8 * MAX_LAYERS + NPY_HEADER


def test_class_names_longer_than_a_file_holds_are_refused_when_writing(tmp_path):
    state = make_state()
    with pytest.raises(InputError, match="longer than"):
        checkpoint.save(str(tmp_path / "m.npz"), state, RECIPE, TRAINED, ["a", "b", "x" * (checkpoint.MAX_NAME + 1)])
    assert not (tmp_path / "m.npz").exists()
    checkpoint.save(str(tmp_path / "m.npz"), state, RECIPE, TRAINED, ["a", "b", "x" * checkpoint.MAX_NAME])
    assert checkpoint.load(str(tmp_path / "m.npz"))[2][2] == "x" * checkpoint.MAX_NAME


HUGE_INTEGER = "1" + "0" * 5000  # past Python's 4300-digit limit of int(text)


@pytest.mark.parametrize("member", ["recipe", "trained", "progress"])
def test_a_json_integer_of_5000_digits_is_one_line_error(good_file, tmp_path, member):
    text = str(arrays_of(good_file)[member])
    bad = rewrite(good_file, tmp_path / "huge.npz", **{member: np.array(text[:-1] + f', "n": {HUGE_INTEGER}}}')})
    with pytest.raises(InputError) as info:
        checkpoint.load_state(str(bad), OPTIMIZERS)
    assert "not valid JSON" in str(info.value) and "\n" not in str(info.value)
    import fastnet

    with pytest.raises(ValueError, match="not valid JSON"):
        fastnet.load(bad)
    line = assert_one_line_exit_2(resume(bad, tmp_path))
    assert "not valid JSON" in line


def test_a_json_integer_of_5000_digits_through_evaluate_and_predict(good_file, tmp_path):
    text = str(arrays_of(good_file)["trained"])
    bad = rewrite(good_file, tmp_path / "huge.npz", trained=np.array(text[:-1] + f', "n": {HUGE_INTEGER}}}'))
    for command in (["fastnet.evaluate", str(bad), "--backend", "numpy"], ["fastnet.predict", str(bad), "x.png"]):
        proc = subprocess.run([sys.executable, "-m", *command], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert "not valid JSON" in assert_one_line_exit_2(proc)


# --- the data directory and the classes a file keeps (issue 21: M4, M6) ----------------------------


def test_a_relative_data_dir_is_stored_absolute(tmp_path, tmp_cache):
    """train --data-dir data (relative) records the absolute directory, so evaluate run from another
    directory finds it; before, it said the data 'is gone'."""
    idx_data(tmp_path / "data16", 4)
    done = subprocess.run([sys.executable, "-m", "fastnet.train", "--data-dir", "data16", "--layers", "16,8,3",
                           "--epochs", "1", "--backend", "numpy", "--threads", "1", "--quiet", "--save", "m.npz"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    trained = checkpoint.load(str(tmp_path / "m.npz"))[1]["trained"]
    assert trained["data_dir"] == str(tmp_path / "data16")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([sys.executable, "-m", "fastnet.evaluate", str(tmp_path / "m.npz"), "--backend", "numpy"],
                          cwd=elsewhere, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0 and "test accuracy" in done.stdout, done.stderr
