"""Model files as an attacker, a crash or a careless user leaves them: every bad file is one clear error.

A model .npz is read with allow_pickle=False and checked array by array; whatever is wrong with it
(truncated, not a zip, empty, missing or misshapen arrays, wrong dtypes, non-finite values, a
future format, another network's sizes) ends as one InputError, which the commands print as one
line `error: ...` with exit status 2. A good file's round trip: test_checkpoint.py.
"""

import ast
import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from fastnet import checkpoint, evaluate
from fastnet.cli import run
from fastnet.errors import InputError
from fastnet.optim import OPTIMIZERS
from fastnet.recipe import Recipe
from tests.helpers import (ROOT, assert_one_line_error, idx_set, mid_epoch_state, model_arrays, rewrite_model,
                           run_cli)

SIZES = (16, 8, 3)
NAMES = ["cat", "dog", "bird"]
RECIPE = Recipe(layers=SIZES, lr=2e-3, batch_size=8, epochs=3, warmup=2, beta1=0.9, beta2=0.999)  # Adam(): its defaults
TRAINED = {"dataset": "fashion-mnist", "data_dir": None, "input_dtype": "uint8"}


@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "model.npz"
    checkpoint.save(str(path), mid_epoch_state(), RECIPE, TRAINED, NAMES)
    return path


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


def npy_named_npz(good, dst):
    buf = io.BytesIO()
    np.save(buf, np.zeros(P, np.float32))
    return write(dst, buf.getvalue())


def empty_zip(good, dst):
    zipfile.ZipFile(dst, "w").close()
    return dst


def truncated(good, dst):
    return write(dst, good.read_bytes()[: good.stat().st_size // 2])


def truncated_header(good, dst):
    return write(dst, good.read_bytes()[:30])


def not_a_zip(good, dst):
    return write(dst, b"just some text, not a model\n")


def empty(good, dst):
    return write(dst, b"")


def params_2d(good, dst):
    return rewrite_model(good, dst, params=model_arrays(good)["params"].reshape(1, -1))


def params_member_not_npy(good, dst):
    return zip_with_member(dst, good, "params.npy", b"not an npy payload")


P = sum(a * b + b for a, b in zip(SIZES, SIZES[1:]))

# name -> (how to make it from the good file: a function of (good, dst), or the changes rewrite_model makes;
#          words the one-line error must contain)
BAD_FILES = {
    "truncated": (truncated, ["not a readable"]),
    "truncated_header": (truncated_header, ["not a readable"]),
    "not_a_zip": (not_a_zip, ["not an .npz"]),
    "npy_named_npz": (npy_named_npz, ["not an .npz"]),
    "empty": (empty, ["empty"]),
    "empty_zip": (empty_zip, ["missing 'format'"]),
    "missing_params": (dict(drop=["params"]), ["missing 'params'"]),
    "missing_sizes": (dict(drop=["sizes"]), ["missing 'sizes'"]),
    "missing_class_names": (dict(drop=["class_names"]), ["missing 'class_names'"]),
    "missing_recipe": (dict(drop=["recipe"]), ["missing 'recipe'"]),
    "missing_trained": (dict(drop=["trained"]), ["missing 'trained'"]),
    "missing_input_scale": (dict(drop=["input_scale"]), ["missing 'input_scale'"]),
    "missing_version": (dict(drop=["version"]), ["missing 'version'"]),
    "params_2d": (params_2d, ["shape (1, "]),
    "sizes_2d": (dict(sizes=np.array([SIZES])), ["layer sizes"]),
    "sizes_0d": (dict(sizes=np.array(16)), ["layer sizes"]),
    "sizes_zero": (dict(sizes=np.array([16, 0, 3])), ["layer sizes"]),
    "sizes_float": (dict(sizes=np.array(SIZES, float)), ["'sizes'", "dtype"]),
    "input_scale_1d": (dict(input_scale=np.array([1.0])), ["'input_scale'", "shape"]),
    "params_int": (dict(params=np.zeros(P, np.int32)), ["'params'", "dtype"]),
    "params_complex": (dict(params=np.zeros(P, np.complex64)), ["'params'", "dtype"]),
    "params_float16": (dict(params=np.zeros(P, np.float16)), ["float16"]),
    "params_bytes": (dict(params=np.zeros(P, "S4")), ["'params'", "dtype"]),
    "format_bytes": (dict(format=np.array(b"fastnet-model")), ["'format'", "dtype"]),
    "other_format": (dict(format=np.array("keras")), ["not a fastnet model"]),
    "params_nan": (dict(params=np.where(np.arange(P) == 7, np.nan, 0).astype(np.float32)),
                   ["non-finite"]),
    "params_inf": (dict(params=np.full(P, -np.inf, np.float64)), ["non-finite"]),
    "input_shift_nan": (dict(input_shift=np.where(np.arange(SIZES[0]) == 3, np.nan, 0.0)),
                        ["non-finite"]),
    "input_scale_scalar": (dict(input_scale=np.array(1 / 255)), ["'input_scale'", "shape"]),
    "future_version": (dict(version=np.array(2)), ["version 2", "version 1"]),
    "other_network": (dict(sizes=np.array([784, 128, 10])), ["do not fit", "784,128,10"]),
    # 20 billion parameters: must be refused by arithmetic, not by trying to allocate 80 GB
    "absurd_sizes": (dict(sizes=np.array([200_000, 100_000, 3])), ["do not fit"]),
    "class_names_short": (dict(class_names=np.array(["a", "b"])),
                          ["'class_names'", "shape"]),
    "class_names_long": (dict(class_names=np.array(list("abcd"))), ["'class_names'"]),
    "recipe_not_json": (dict(recipe=np.array("{lr: 1")), ["'recipe'", "JSON"]),
    "recipe_not_object": (dict(recipe=np.array("[1, 2]")), ["'recipe'", "object"]),
    "recipe_deep": (dict(recipe=np.array("[" * 100_000 + "]" * 100_000)), ["'recipe'"]),
    "trained_not_object": (dict(trained=np.array("3")), ["'trained'", "object"]),
    "pickled_extra": (dict(extra=np.array([{"evil": 1}, None], dtype=object)), ["pickle"]),
    "pickled_params": (dict(params=np.array([1.0, "x"], dtype=object)), ["pickle"]),
    "member_not_npy": (params_member_not_npy, ["'params'"]),
    "activations_unknown": (dict(activations=np.array(["gelu", "identity"])),
                            ["unknown activation 'gelu'"]),
    "activations_relu_output": (dict(activations=np.array(["relu", "relu"])),
                                ["output layer", "identity"]),
    "activations_too_many": (dict(activations=np.array(["relu"] * 2 + ["identity"])),
                             ["'activations'", "shape"]),
    "activations_codes": (dict(activations=np.array([1, 0])), ["'activations'", "dtype"]),
}


def made(how, good, dst):
    """dst made from the good file as a BAD_FILES or BAD_CHECKPOINTS entry says: a function, or changes."""
    return how(good, dst) if callable(how) else rewrite_model(good, dst, **how)


@pytest.fixture(params=sorted(BAD_FILES))
def bad_file(request, good_file, tmp_path):
    how, words = BAD_FILES[request.param]
    path = made(how, good_file, tmp_path / f"{request.param}.npz")
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
    path = made(BAD_FILES[name][0], good_file, tmp_path / "bad.npz")
    proc = run_cli("fastnet.evaluate", path, "--backend", "numpy")
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
    path = rewrite_model(good_file, tmp_path / "trap.npz", params=np.array([_Booby(str(marker))], dtype=object))
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


@pytest.mark.slow
def test_every_truncation_and_random_corruption_is_an_input_error(good_file, tmp_path):
    """Every prefix length of a model file, and bytes flipped at random in a plain and a compressed
    copy: nothing but InputError escapes (zlib, zipfile's NotImplementedError, ... included)."""
    raw = good_file.read_bytes()
    buf = io.BytesIO()
    np.savez_compressed(buf, **model_arrays(good_file))
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
BAD_CHECKPOINTS = {
    "missing_adam_m": (dict(drop=["opt_m"]), "incomplete"),
    "adam_v_nan": (dict(opt_v=np.full(P, np.nan, np.float32)), "non-finite"),
    "adam_m_wrong_shape": (dict(opt_m=np.zeros(P + 1, np.float32)), "'opt_m'"),
    "adam_m_complex": (dict(opt_m=np.zeros(P, np.complex64)), "'opt_m'"),
    "unknown_optimizer": (dict(progress=dict(optimizer="lbfgs")), "incomplete"),
    "bad_rng": (dict(progress=dict(rng={"bit_generator": "MT19937"})),
                "incomplete"),
    "bad_epoch_rng": (dict(progress=dict(epoch_rng=None)), "incomplete"),
    "negative_epoch": (dict(progress=dict(epoch=-3)), "negative"),
    "epoch_text": (dict(progress=dict(epoch="two")), "incomplete"),
    "history_extra": (dict(progress=dict(history={"x": []})), "incomplete"),
    "progress_list": (dict(progress=np.array("[]")), "'progress'"),
    "missing_progress": (dict(drop=["progress"]), "missing 'progress'"),
}


@pytest.mark.parametrize("name", sorted(BAD_CHECKPOINTS))
def test_bad_checkpoint_cannot_be_resumed(name, good_file, tmp_path):
    how, word = BAD_CHECKPOINTS[name]
    path = made(how, good_file, tmp_path / f"{name}.npz")
    checkpoint.load(str(path))  # still a usable model for evaluate/predict
    with pytest.raises(InputError) as info:
        checkpoint.load_state(str(path), OPTIMIZERS)
    assert word in str(info.value) and "\n" not in str(info.value)


@pytest.fixture
def tiny_data(tmp_path, tmp_cache):
    """25-pixel images in 3 classes, which a 16,8,3 model does not fit."""
    return idx_set(tmp_path / "data25", 60, 20, side=5)


def resume(path, data, *extra):
    return run_cli("fastnet.train", "--resume", path, "--epochs", "5", "--data-dir", data, "--backend", "numpy",
                   "--threads", "1", *extra)


def assert_one_line_exit_2(proc):
    line = assert_one_line_error(proc, 2)
    assert line.startswith("error: "), line
    return line


def test_resume_model_whose_sizes_do_not_fit_the_data(good_file, tiny_data):
    """A 16,8,3 checkpoint resumed on 25-pixel images, or on 16-pixel images in 5 classes: one
    line naming both sizes, exit 2."""
    line = assert_one_line_exit_2(resume(good_file, tiny_data))
    assert "16" in line and "25" in line, line
    other = idx_set(tiny_data.parent / "data16", 60, 20, side=4, classes=5)
    line = assert_one_line_exit_2(resume(good_file, other))
    assert "3" in line and "5 classes" in line, line


@pytest.mark.parametrize("key, value", [("batch_size", 0), ("lr", "fast")])
def test_resume_checkpoint_with_bad_settings_is_one_line_error(good_file, tmp_path, tmp_cache, key, value):
    """A checkpoint whose recipe holds batch_size 0 (ZeroDivisionError in fit) or lr "fast"
    (ValueError formatting the banner) must be refused like the same flag would be: exit 2."""
    stored = np.array(json.dumps({**RECIPE.as_stored(), "val_split": 0, key: value}))
    bad = rewrite_model(good_file, tmp_path / "bad.npz", recipe=stored)
    assert_one_line_exit_2(resume(bad, idx_set(tmp_path / "data16", 60, 20, side=4)))


BEFORE_ACTIVATIONS = ROOT / "tests" / "data" / "model-before-activations.npz"


def test_a_file_from_before_activations_were_recorded_resumes_as_relu_without_penalty(tmp_path, tmp_cache):
    """tests/data/model-before-activations.npz (test_checkpoint.py: its defaults when loaded) resumes as
    what it was: relu with alpha 0, refusing a flag that says otherwise."""
    data = idx_set(tmp_path / "data16", 60, 20, side=4)
    copy = tmp_path / "old.npz"
    copy.write_bytes(BEFORE_ACTIVATIONS.read_bytes())
    for flag in (["--activation", "tanh"], ["--alpha", "0.1"]):
        line = assert_one_line_exit_2(resume(copy, data, *flag))
        assert "contradicts" in line, line
    done = resume(copy, data, "--epochs", "2", "--activation", "relu", "--alpha", "0")
    assert done.returncode == 0, done.stderr
    model, record, _, arrays = checkpoint.load(str(copy))
    assert arrays["activations"].tolist() == ["relu", "identity"]
    assert "settings" not in arrays and (record["recipe"]["activation"], record["recipe"]["alpha"]) == ("relu", 0.0)


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
        bad.append(str(made(BAD_FILES[name][0], good_file, tmp_path / f"{name}.npz")))
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


def test_a_history_member_longer_than_its_epochs_is_refused_before_it_is_read(good_file, tmp_path):
    """Each history member is read within what its epoch count needs: a file whose train_loss holds
    a million entries for 2 epochs is one InputError, its data never read."""
    bad = rewrite_model(good_file, tmp_path / "long.npz", history_train_loss=np.zeros(10**6))
    with pytest.raises(InputError, match="history_train_loss"):
        checkpoint.load(str(bad))
    bad = rewrite_model(good_file, tmp_path / "text.npz", history_val_loss=np.array(["1.0"]))
    checkpoint.load(str(bad))  # a usable model, not a resumable one
    with pytest.raises(InputError, match="history_val_loss"):
        checkpoint.load_state(str(bad), OPTIMIZERS)


def test_layer_sizes_are_bounded_by_what_a_file_holds():
    """--layers of more than MAX_LAYERS sizes is refused when it is given, not written and then refused."""
    from fastnet.model import MAX_LAYERS, parse_layers

    assert len(parse_layers(",".join(["1"] * MAX_LAYERS))) == MAX_LAYERS
    with pytest.raises(InputError, match="at most"):
        parse_layers(",".join(["1"] * (MAX_LAYERS + 1)))
    assert checkpoint.SMALL_MEMBERS["sizes"] >= 8 * MAX_LAYERS + checkpoint.NPY_HEADER


HUGE_INTEGER = "1" + "0" * 5000  # past Python's 4300-digit limit of int(text)


@pytest.mark.parametrize("member", ["recipe", "trained", "progress"])
def test_a_json_integer_of_5000_digits_is_one_line_error(good_file, tmp_path, member):
    text = str(model_arrays(good_file)[member])
    bad = rewrite_model(good_file, tmp_path / "huge.npz", **{member: np.array(text[:-1] + f', "n": {HUGE_INTEGER}}}')})
    with pytest.raises(InputError) as info:
        checkpoint.load_state(str(bad), OPTIMIZERS)
    assert "not valid JSON" in str(info.value) and "\n" not in str(info.value)
    import fastnet

    with pytest.raises(ValueError, match="not valid JSON"):
        fastnet.load(bad)
    line = assert_one_line_exit_2(resume(bad, tmp_path))
    assert "not valid JSON" in line


def test_a_json_integer_of_5000_digits_through_evaluate_and_predict(good_file, tmp_path):
    text = str(model_arrays(good_file)["trained"])
    bad = rewrite_model(good_file, tmp_path / "huge.npz", trained=np.array(text[:-1] + f', "n": {HUGE_INTEGER}}}'))
    for command in (["fastnet.evaluate", str(bad), "--backend", "numpy"], ["fastnet.predict", str(bad), "x.png"]):
        proc = subprocess.run([sys.executable, "-m", *command], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert "not valid JSON" in assert_one_line_exit_2(proc)


# --- the data directory and the classes a file keeps (issue 21: M4, M6) ----------------------------


def test_a_relative_data_dir_is_stored_absolute(tmp_path, tmp_cache):
    """train --data-dir data (relative) records the absolute directory, so evaluate run from another
    directory finds it; before, it said the data 'is gone'."""
    idx_set(tmp_path / "data16", 60, 20, side=4)
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
