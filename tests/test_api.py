"""The Python API: fastnet.fit, fastnet.load, fastnet.Model and fastnet.datasets, as a user holding
arrays calls them: inputs of every kind, labels of any type, the stored standardisation, history,
model files shared with the command line, and errors as ValueError / TypeError."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import fastnet
from fastnet import checkpoint, recipe
from fastnet.data.arrays import as_rows
from tests.helpers import ROOT, needs_real, run_cli, write_idx_set

FAST = dict(threads=1, validation=None)  # one thread: deterministic and quick on a busy machine


def blobs(n=240, features=7, classes=3, seed=0):
    """Separable float64 clusters: (X, y) with y in 0..classes-1, classes in turn."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centres = rng.normal(scale=3, size=(classes, features))
    return centres[y] + rng.normal(size=(n, features)), y


def pixels(n=200, side=8, classes=4, seed=0):
    """uint8 images (n, side*side) whose class sets the bright quarter of the image, the top row black
    (a constant border, as Fashion-MNIST's); labels 0..classes-1."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    X = rng.integers(0, 60, (n, side, side))
    for c in range(classes):
        X[y == c, (c // 2) * side // 2 : (c // 2 + 1) * side // 2, (c % 2) * side // 2 : (c % 2 + 1) * side // 2] += 180
    X[:, 0, :] = 0
    return X.reshape(n, -1).astype(np.uint8), y


def params(model):
    return model.network.params


# ---------------------------------------------------------------- inputs


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_fit_learns_from_each_native_dtype(dtype):
    X, y = pixels()
    model = fastnet.fit(X.astype(dtype), y, hidden_layer_sizes=(16,), epochs=10, batch_size=32, lr=1e-2, **FAST)
    assert model.score(X.astype(dtype), y) > 0.95
    assert model.predict_proba(X[:5].astype(dtype)).shape == (5, 4)


def test_native_c_contiguous_rows_are_not_copied():
    X = np.zeros((4, 3), np.float32)
    assert as_rows(X) is X
    assert as_rows(np.asfortranarray(X)).flags.c_contiguous
    assert as_rows(np.arange(6).reshape(2, 3)).dtype == np.float64  # int64: converted, exactly
    assert as_rows(np.ones((2, 2), np.float16)).dtype == np.float32


def test_f_ordered_and_integer_inputs_train_the_same_network_as_their_c_ordered_float64():
    X, y = blobs()
    ref = fastnet.fit(X, y, epochs=2, **FAST)
    f_ordered = fastnet.fit(np.asfortranarray(X), y, epochs=2, **FAST)
    np.testing.assert_array_equal(params(f_ordered), params(ref))
    Xi = np.round(X * 10).astype(np.int32)
    np.testing.assert_array_equal(params(fastnet.fit(Xi, y, epochs=2, **FAST)),
                                  params(fastnet.fit(Xi.astype(np.float64), y, epochs=2, **FAST)))


def test_memory_mapped_npy_is_read_in_place(tmp_path):
    X, y = pixels()
    np.save(tmp_path / "X.npy", X)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    rows = as_rows(mapped)
    assert np.shares_memory(rows, mapped) and not rows.flags.writeable  # a view of the map, no copy
    model = fastnet.fit(mapped, y, hidden_layer_sizes=(16,), epochs=3, batch_size=32, **FAST)
    same = fastnet.fit(X, y, hidden_layer_sizes=(16,), epochs=3, batch_size=32, **FAST)
    np.testing.assert_array_equal(params(model), params(same))
    np.testing.assert_array_equal(model.predict(mapped), same.predict(X))


def test_string_labels_come_back_as_strings(tmp_path):
    X, y = blobs()
    names = np.array(["cat", "dog", "emu"])[y]
    model = fastnet.fit(X, names, epochs=5, batch_size=32, **FAST)
    assert model.classes_.tolist() == ["cat", "dog", "emu"]
    assert set(model.predict(X)) <= {"cat", "dog", "emu"}
    assert model.score(X, names) > 0.9
    model.save(tmp_path / "m.npz")
    loaded = fastnet.load(tmp_path / "m.npz")
    assert loaded.classes_.tolist() == ["cat", "dog", "emu"]
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_other_labels_keep_their_values_and_dtype(tmp_path):
    X, y = blobs(classes=2)
    for labels in (np.where(y == 1, 7, -3), y == 1, np.where(y == 1, 2.5, 0.5), np.where(y, "b", "a").astype(object)):
        model = fastnet.fit(X, labels, epochs=1, **FAST)
        model.save(tmp_path / "m.npz")
        loaded = fastnet.load(tmp_path / "m.npz")
        np.testing.assert_array_equal(loaded.classes_, np.unique(labels))
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
        assert set(model.predict(X)) <= set(np.unique(labels))


# ---------------------------------------------------------------- standardisation


def test_float_standardisation_is_stored_and_constant_features_are_only_centred():
    X, y = blobs()
    X[:, 3] = 5.0  # a constant feature
    model = fastnet.fit(X, y, epochs=1, **FAST)
    net = model.network
    sd = X.std(axis=0)
    sd[3] = 1.0
    np.testing.assert_allclose(net.input_scale, 1 / sd, rtol=1e-6)
    np.testing.assert_allclose(net.input_shift, -X.mean(axis=0) / sd, rtol=1e-6, atol=1e-6)


def test_uint8_standardisation_is_the_command_lines():
    X, y = pixels()
    model = fastnet.fit(X, y, epochs=1, **FAST)
    mean, sd = recipe.pixel_moments(X)
    assert sd.min() == recipe.SD_FLOOR  # the dark border is floored, not blown up
    np.testing.assert_array_equal(model.network.input_scale, (1 / (255 * sd)).astype(np.float32))
    np.testing.assert_array_equal(model.network.input_shift, (-mean / sd).astype(np.float32))


def test_pixel_moments_are_float64_moments_of_the_scaled_pixels():
    """Exact integer sums divided once: the float64 mean and deviation of pixels/255 within a few
    roundings, on random images and on hostile columns (all 255: deviation 0, floored; 0 and 255
    alternating: exactly 0.5), for one image and for more rows than a block."""
    rng = np.random.default_rng(7)
    for n in (1, 5, 5000):
        X = rng.integers(0, 256, (n, 6), dtype=np.uint8)
        X[:, 0] = 255
        X[:, 1] = np.arange(n) % 2 * 255
        mean, sd = recipe.pixel_moments(X)
        x = X / 255.0
        np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-13)
        np.testing.assert_allclose(sd, np.maximum(x.std(axis=0), recipe.SD_FLOOR), rtol=1e-12)
        assert mean[0] == 1.0 and sd[0] == recipe.SD_FLOOR
        if n % 2 == 0:
            assert mean[1] == 0.5 and sd[1] == 0.5


def test_without_standardisation_values_are_used_as_given():
    X, y = pixels()
    model = fastnet.fit(X, y, standardize=False, epochs=1, **FAST)
    assert (model.network.input_scale == 1).all() and (model.network.input_shift == 0).all()  # no hidden 1/255


def test_statistics_come_from_the_training_rows_alone():
    X, y = blobs()
    X_val = X[:40] * 100
    model = fastnet.fit(X, y, epochs=1, validation=(X_val, y[:40]), threads=1)
    np.testing.assert_allclose(model.network.input_scale, 1 / X.std(axis=0), rtol=1e-6)


def test_the_stored_standardisation_is_applied_by_predict():
    """predict_proba equals a NumPy forward pass on (X - mean) / sd through the stored weights, and a
    model trained on 1000·X + 5 predicts what the model trained on X does."""
    X, y = blobs()
    model = fastnet.fit(X, y, hidden_layer_sizes=(9,), epochs=3, dtype="float64", **FAST)
    net = model.network
    A = (X - X.mean(axis=0)) / X.std(axis=0)
    A = np.maximum(A @ net.W[0] + net.b[0], 0) @ net.W[1] + net.b[1]
    P = np.exp(A - A.max(axis=1, keepdims=True))
    np.testing.assert_allclose(model.predict_proba(X), P / P.sum(axis=1, keepdims=True), rtol=1e-9, atol=1e-12)
    shifted = fastnet.fit(1000 * X + 5, y, hidden_layer_sizes=(9,), epochs=3, dtype="float64", **FAST)
    np.testing.assert_allclose(shifted.predict_proba(1000 * X + 5), model.predict_proba(X), atol=1e-8)


# ---------------------------------------------------------------- history and validation


def test_history_holds_one_entry_per_epoch():
    X, y = blobs()
    model = fastnet.fit(X, y, epochs=4, validation=0.25, threads=1)
    h = model.history
    assert set(h) == {"loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds"}
    assert all(len(v) == 4 for v in h.values())
    assert h["loss"][-1] < h["loss"][0]
    assert all(0 <= a <= 1 for a in h["accuracy"] + h["val_accuracy"])
    assert all(s > 0 for s in h["epoch_seconds"])
    none = fastnet.fit(X, y, epochs=2, **FAST).history
    assert np.isnan(none["val_loss"]).all() and np.isnan(none["val_accuracy"]).all()


@pytest.mark.parametrize("validation, held", [(0.25, 60), (30, 30), (None, 0), (0, 0), (0.0, 0)])
def test_validation_as_a_fraction_a_count_or_none(validation, held):
    X, y = blobs()
    model = fastnet.fit(X, y, epochs=1, validation=validation, threads=1)
    assert model.recipe.val_split == (validation or 0)
    assert np.isnan(model.history["val_loss"][0]) == (held == 0)


def test_validation_pair_is_scored_each_epoch():
    X, y = blobs()
    model = fastnet.fit(X[:200], y[:200], epochs=2, validation=(X[200:], y[200:]), threads=1)
    assert model.history["val_accuracy"][-1] == pytest.approx(model.score(X[200:], y[200:]))


def test_verbose_prints_one_line_per_epoch(capsys):
    X, y = blobs()
    fastnet.fit(X, y, epochs=3, verbose=True, threads=1)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    assert all("loss" in line and "val_acc" in line for line in lines)


# ---------------------------------------------------------------- settings, backends, pickles


def test_numpy_backend_float64_and_gradient_descent():
    X, y = blobs()
    model = fastnet.fit(X, y, epochs=5, backend="numpy", dtype="float64", optimizer="gd", lr=0.1, **FAST)
    assert model.network.dtype == np.float64 and model.backend == "numpy"
    assert model.score(X, y) > 0.9


@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic"])
def test_a_model_pickles_with_identical_predictions(activation):
    """Before, the activations were not pickled: a tanh model came back as relu (joblib, Dask)."""
    X, y = blobs()
    model = fastnet.fit(X, np.array(["a", "b", "c"])[y], epochs=2, activation=activation, **FAST)
    again = pickle.loads(pickle.dumps(model))
    assert again.network.activations == (activation, "identity")
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))
    assert again.network.W[0].base is not None  # the per-layer views still view the flat buffer
    assert np.shares_memory(again.network.W[0], again.network.params)


def test_threads_are_restored_after_a_call():
    numba = pytest.importorskip("numba")
    from threadpoolctl import threadpool_info

    before = numba.get_num_threads(), [i["num_threads"] for i in threadpool_info()]
    fastnet.fit(*blobs(), epochs=1, **FAST)
    assert (numba.get_num_threads(), [i["num_threads"] for i in threadpool_info()]) == before


# ---------------------------------------------------------------- model files and the command line


def idx_data(directory, n_train=120, n_test=60):
    """A small IDX data set of 8x8 images in 4 classes (pixels()); returns the directory."""
    (X, y), (Xt, yt) = pixels(n_train, seed=0), pixels(n_test, seed=1)
    return write_idx_set(directory, (X.reshape(-1, 8, 8), y), (Xt.reshape(-1, 8, 8), yt))


@pytest.mark.slow
def test_model_files_go_both_ways_between_python_and_the_command_line(tmp_path, tmp_cache):
    data = idx_data(tmp_path / "data")
    (X, y), (X_test, y_test) = fastnet.datasets.load_idx(data)
    assert X.dtype == np.uint8 and X.shape == (120, 64)
    # Python -> python -m fastnet.evaluate
    model = fastnet.fit(X, y, hidden_layer_sizes=(16,), epochs=3, batch_size=16, lr=1e-2, **FAST)
    model.save(tmp_path / "api.npz")
    done = run_cli("fastnet.evaluate", tmp_path / "api.npz", "--data-dir", data, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["test_accuracy"] == pytest.approx(model.score(X_test, y_test))
    # python -m fastnet.train -> fastnet.load
    done = run_cli("fastnet.train", "--data-dir", data, "--layers", "64,16,4", "--epochs", "2", "--threads", "1",
               "--save", tmp_path / "cli.npz", "--metrics-json", tmp_path / "cli.json")
    assert done.returncode == 0, done.stderr
    cli = fastnet.load(tmp_path / "cli.npz")
    assert cli.classes_.tolist() == [0, 1, 2, 3] and len(cli.history["loss"]) == 2
    assert cli.score(X_test, y_test) == pytest.approx(json.loads((tmp_path / "cli.json").read_text())["test_accuracy"])


@pytest.mark.slow
@needs_real
def test_fit_on_fashion_mnist_arrays_trains_the_command_lines_network(tmp_path):
    """One epoch of the default recipe from Python and from python -m fastnet.train: the same bits."""
    (X, y), (X_test, y_test) = fastnet.datasets.load_fashion_mnist(download=False)
    assert X.shape == (60000, 784) and X.dtype == np.uint8
    done = run_cli("fastnet.train", "--epochs", "1", "--threads", "1", "--save", tmp_path / "cli.npz")
    assert done.returncode == 0, done.stderr
    model = fastnet.fit(X, y, epochs=1, threads=1)
    cli = fastnet.load(tmp_path / "cli.npz")
    np.testing.assert_array_equal(params(model), params(cli))
    np.testing.assert_array_equal(model.network.input_scale, cli.network.input_scale)
    assert f"test accuracy {model.score(X_test, y_test):.4f}" in done.stdout


def test_load_refuses_what_is_not_a_model_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastnet.load(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not an .npz"):
        fastnet.load(tmp_path / "bad.npz")


def test_classes_member_is_optional_and_checked(tmp_path):
    X, y = blobs()
    fastnet.fit(X, y, epochs=1, **FAST).save(tmp_path / "m.npz")
    arrays = dict(np.load(tmp_path / "m.npz"))
    arrays.pop("classes")  # as a command-line model file
    np.savez(tmp_path / "old.npz", **arrays)
    assert fastnet.load(tmp_path / "old.npz").classes_.tolist() == [0, 1, 2]
    np.savez(tmp_path / "twice.npz", **dict(arrays, classes=np.array(["a", "a", "b"])))
    with pytest.raises(ValueError, match="repeats"):
        fastnet.load(tmp_path / "twice.npz")
    model, *_ = checkpoint.load(str(tmp_path / "old.npz"))  # the command line's reader ignores it
    assert model.sizes == (7, 128, 3)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("X, error, words", [
    ([[1.0, np.nan], [0.0, 1.0], [2.0, 2.0]], ValueError, "NaN"),
    ([[1.0, np.inf], [0.0, 1.0], [2.0, 2.0]], ValueError, "infinite"),
    ([1.0, 2.0, 3.0], ValueError, "2-D"),
    (np.zeros((3, 2, 2)), ValueError, "2-D"),
    (np.zeros((3, 0)), ValueError, "feature"),
    ([["a", "b"], ["c", "d"], ["e", "f"]], TypeError, "real numbers"),
    (np.ones((3, 2), complex), TypeError, "complex"),
    ("text", TypeError, "array"),
])
def test_bad_inputs_raise_clear_errors(X, error, words):
    with pytest.raises(error, match=words):
        fastnet.fit(X, [0, 1, 0], epochs=1, **FAST)


@pytest.mark.parametrize("y, error, words", [
    ([0, 0, 0], ValueError, "1 class"),
    ([0, 1], ValueError, "2 labels but there are 3 samples"),
    ([[0], [1], [0]], ValueError, "1-D"),
    ([0.0, np.nan, 1.0], ValueError, "NaN"),
    (np.array([0, "a", 1], dtype=object), TypeError, "types"),
    (np.array([0, None, 1], dtype=object), ValueError, "missing"),
])
def test_bad_labels_raise_clear_errors(y, error, words):
    with pytest.raises(error, match=words):
        fastnet.fit(np.zeros((3, 2)), y, epochs=1, **FAST)


@pytest.mark.parametrize("setting, words", [
    (dict(epochs=0), "epochs must be an integer >= 1"),
    (dict(batch_size=2.5), "batch_size"),
    (dict(lr=-1.0), "lr must be a positive"),
    (dict(beta1=1.0), "beta1"),
    (dict(schedule="linear"), "schedule must be one of"),
    (dict(optimizer="rmsprop"), "optimizer"),
    (dict(dtype="float16"), "dtype"),
    (dict(backend="cuda"), "backend"),
    (dict(hidden_layer_sizes=(0,)), "hidden_layer_sizes"),
    (dict(validation=1.5), "validation"),
    (dict(validation=100), "leaves no training rows"),
    (dict(threads=0), "threads"),
])
def test_bad_settings_raise_value_errors_that_name_the_argument(setting, words):
    X, y = blobs(n=90)
    with pytest.raises(ValueError, match=words):
        fastnet.fit(X, y, **{"epochs": 1, "threads": 1, **setting})


def test_prediction_errors():
    X, y = blobs()
    model = fastnet.fit(X, y, epochs=1, **FAST)
    with pytest.raises(ValueError, match="X has 6 features, but the model takes 7"):
        model.predict(X[:, :6])
    with pytest.raises(ValueError, match="NaN"):
        model.predict(np.full((1, 7), np.nan))
    with pytest.raises(ValueError, match="does not know"):
        fastnet.fit(X, y, epochs=1, validation=(X[:3], [0, 1, 9]), threads=1)
    with pytest.raises(ValueError, match="learning rate too high.*smaller one"):
        fastnet.fit(X, y, optimizer="gd", lr=1e35, epochs=2, **FAST)


def test_import_fastnet_stays_light():
    done = subprocess.run([sys.executable, "-c", "import sys, fastnet; print(sorted(m for m in sys.modules "
                           "if m.split('.')[0] in ('numba', 'sklearn', 'numpy', 'fastnet')))"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['fastnet']"
    assert callable(fastnet.fit) and fastnet.datasets.load_fashion_mnist and "Model" in dir(fastnet)


@pytest.mark.slow
@pytest.mark.parametrize("module", ["fastnet.api", "fastnet.datasets", "fastnet.sklearn"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    if module == "fastnet.sklearn":
        pytest.importorskip("sklearn")
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_a_network_larger_than_the_memory_left_is_refused_before_allocating(monkeypatch):
    """A 100,000-unit hidden layer with 64 MB left: MemoryError in the API's words at once, not a
    MemoryError partway through allocating (nothing near its size is allocated)."""
    import tracemalloc

    from fastnet import memory

    X, y = blobs(100, 40)
    monkeypatch.setattr(memory, "available", lambda: 64 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(MemoryError, match="of memory but 64 MiB are available; use smaller hidden_layer_sizes"):
            fastnet.fit(X, y, hidden_layer_sizes=(100_000,), **FAST)
        assert tracemalloc.get_traced_memory()[1] < 4 << 20
    finally:
        tracemalloc.stop()
    assert fastnet.fit(X, y, hidden_layer_sizes=(16,), epochs=1, **FAST).score(X, y) > 0


@pytest.mark.parametrize("dtype", [">f4", ">f8"])
def test_big_endian_rows_fit_and_predict_as_native_ones(dtype):
    X, y = blobs()
    native = fastnet.fit(X.astype(dtype[1:]), y, epochs=2, **FAST)
    big = fastnet.fit(X.astype(dtype), y, epochs=2, **FAST)
    np.testing.assert_array_equal(big.network.params, native.network.params)
    np.testing.assert_array_equal(native.predict_proba(X.astype(dtype)), native.predict_proba(X.astype(dtype[1:])))


# ---------------------------------------------------------------- issue 21: A1-A3


def test_integer_labels_beyond_int64_are_stored_exactly_or_refused_in_the_apis_words(tmp_path):
    """Python ints up to 2**64 - 1 are kept exactly (uint64); beyond 64 bits Model.save raises a
    ValueError saying so. Before, an OverflowError."""
    X, y = blobs(classes=2)
    big = np.array([2**63 + 5, 2**64 - 1], dtype=object)
    model = fastnet.fit(X, big[y], epochs=1, **FAST)
    model.save(tmp_path / "u64.npz")
    assert fastnet.load(tmp_path / "u64.npz").classes_.tolist() == [2**63 + 5, 2**64 - 1]
    huge = fastnet.fit(X, np.array([-1, 2**70], dtype=object)[y], epochs=1, **FAST)
    with pytest.raises(ValueError, match="beyond 64 bits"):
        huge.save(tmp_path / "huge.npz")
    assert not (tmp_path / "huge.npz").exists()


def test_internal_errors_do_not_leak(tmp_path):
    """A backend set by hand, a bytes path, a path of another type: ValueError / TypeError in the API's
    words (before: fastnet's InputError, an AttributeError, 'empty path')."""
    X, y = blobs()
    model = fastnet.fit(X, y, epochs=1, **FAST)
    os.chdir(tmp_path)
    model.save(b"m.npz")
    loaded = fastnet.load(b"m.npz")
    assert (loaded.predict(X) == model.predict(X)).all()
    for bad in (3, None):
        with pytest.raises(TypeError, match="path must be a file path"):
            fastnet.load(bad)
        with pytest.raises(TypeError, match="path must be a file path"):
            model.save(bad)
    model.backend = "cuda"
    for call in (model.predict, model.predict_proba):
        with pytest.raises(ValueError, match="backend must be one of"):
            call(X)
    model.backend = "numpy"
    assert model.score(X, y) > 0.5


def test_score_refuses_labels_of_another_kind_than_the_classes():
    """Text labels scored against a model of number classes (or the other way) raise ValueError, as
    scikit-learn's accuracy does; before, 0.0."""
    X, y = blobs()
    numbers = fastnet.fit(X, y, epochs=1, **FAST)
    text = fastnet.fit(X, np.array(["a", "b", "c"])[y], epochs=1, **FAST)
    with pytest.raises(ValueError, match="text labels"):
        numbers.score(X, y.astype(str))
    with pytest.raises(ValueError, match="number labels"):
        text.score(X, y)
    assert numbers.score(X, y.astype(np.float32)) == numbers.score(X, y)
    assert text.score(X, np.array(["a", "b", "c"], dtype=object)[y]) == text.score(X, np.array(["a", "b", "c"])[y])


@pytest.mark.parametrize("factor", [1e200, 1e300])
def test_huge_finite_features_are_standardised_in_float64(factor):
    """X * 1e200 or 1e300 with a constant feature, in float64: the moments are measured in units of a
    power of two (no overflow), so the network is scaled as it is for X; the constant feature is
    centred to about 0. Before: 'training diverged' (1e200), or at chance with the variance taken as
    overflowed (1e300)."""
    X, y = blobs()
    X = np.c_[X, np.full(len(X), 3.0)]
    plain = fastnet.fit(X, y, epochs=3, dtype="float64", **FAST)
    model = fastnet.fit(X * factor, y, epochs=3, dtype="float64", **FAST)
    scale, shift = model.network.input_scale, model.network.input_shift
    np.testing.assert_allclose(scale[:-1] * factor, plain.network.input_scale[:-1], rtol=1e-12)
    np.testing.assert_allclose(shift[:-1], plain.network.input_shift[:-1], rtol=1e-9)
    assert abs(3.0 * factor * scale[-1] + shift[-1]) < 1e-6  # the constant feature: centred to about 0
    np.testing.assert_allclose(model.network.params, plain.network.params, atol=1e-8)
    assert abs(model.score(X * factor, y) - plain.score(X, y)) <= 1 / len(y)


def test_moments_of_ordinary_features_are_unchanged():
    """The overflow path is taken only where the plain float64 moments overflow: ordinary features
    give the very same bits as the two-pass sums (recipe.feature_moments' plain formula)."""
    X = np.random.default_rng(4).normal(size=(500, 6)) * [1, 1e-3, 1e3, 1e150, 7, 1]
    X[:, 5] = 2.5
    mean, sd = recipe.feature_moments(X)
    plain_mean = X.sum(axis=0) / len(X)
    np.testing.assert_array_equal(mean, plain_mean)
    np.testing.assert_array_equal(sd[:5], np.sqrt(((X - plain_mean) ** 2).sum(axis=0) / len(X))[:5])
    assert sd[5] == 1.0


def test_features_too_large_for_the_networks_dtype_are_refused_by_name():
    """float32 cannot hold the scaling of features near 1e200, and unstandardised inputs beyond the
    square root of the dtype's range overflow as they train: a ValueError naming the feature and its
    size, not 'training diverged ... try a smaller lr'."""
    X, y = blobs()
    X[:, 2] *= 1e200
    with pytest.raises(ValueError, match=r"feature 2 .*e\+200 in magnitude.*float32"):
        fastnet.fit(X, y, epochs=1, **FAST)
    with pytest.raises(ValueError, match=r"feature 2 .*float64"):
        fastnet.fit(X, y, epochs=1, dtype="float64", standardize=False, **FAST)
    assert fastnet.fit(X, y, epochs=1, dtype="float64", **FAST).score(X, y) > 0.5


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_finite_row_far_beyond_the_training_rows_predicts_without_nan(dtype):
    """predict_proba of a row of 1e308 (finite) saturates its inputs instead of overflowing to NaN;
    ordinary rows are predicted exactly as before."""
    X, y = blobs()
    model = fastnet.fit(X, y, epochs=2, dtype=dtype, **FAST)
    before = model.predict_proba(X)
    rows = np.vstack([X[:3], np.full((1, X.shape[1]), 1e308), np.full((1, X.shape[1]), -1e308),
                      np.r_[1e308, np.zeros(X.shape[1] - 1)][None]])
    proba = model.predict_proba(rows)
    assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1)
    np.testing.assert_array_equal(proba[:3], before[:3])
    assert model.predict(rows).shape == (6,)


# ---------------------------------------------------------------- Model.train: more epochs, one public door


def test_train_continues_a_fit_bit_for_bit():
    """fit for 1 epoch, then train 2 more, is fit for 3 (a constant rate: the schedule spans the epochs)."""
    X, y = blobs()
    kw = dict(FAST, schedule="constant", batch_size=32, seed=3)
    straight = fastnet.fit(X, y, epochs=3, **kw)
    stepwise = fastnet.fit(X, y, epochs=1, **kw).train(X, y, epochs=2)
    assert stepwise.network.params.tobytes() == straight.network.params.tobytes()
    for key in ("loss", "accuracy"):
        assert stepwise.history[key] == straight.history[key]
    assert stepwise.recipe == straight.recipe and stepwise.recipe.epochs == 3


def test_train_takes_labels_as_classes_and_measures_a_validation_pair():
    X, y = blobs()
    names = np.array(["a", "b", "c"])[y]
    model = fastnet.fit(X, names, epochs=1, **FAST)
    model.train(X[:200], names[:200], epochs=2, validation=(X[200:], names[200:]))
    assert len(model.history["val_accuracy"]) == 3 and np.isnan(model.history["val_accuracy"][0])
    assert model.history["val_accuracy"][-1] == model.score(X[200:], names[200:])
    with pytest.raises(ValueError, match="does not know"):
        model.train(X, np.where(names == "a", "z", names))


def test_an_epoch_callback_that_returns_true_stops_training_there():
    X, y = blobs()
    seen = []
    model = fastnet.fit(X, y, epochs=1, **FAST)
    model.train(X, y, epochs=10, on_epoch=lambda m: seen.append(len(m.history["loss"])) or len(seen) == 2)
    assert seen == [2, 3] and len(model.history["loss"]) == 3 and model.recipe.epochs == 3


def test_shuffle_false_draws_no_order():
    X, y = blobs()
    model = fastnet.fit(X, y, epochs=1, **FAST)
    rng = model._state.rng.bit_generator.state
    model.train(X, y, epochs=2, shuffle=False)
    assert model._state.rng.bit_generator.state == rng
    model.train(X, y, epochs=1)
    assert model._state.rng.bit_generator.state != rng


def test_ctrl_c_leaves_the_model_as_after_its_last_complete_epoch():
    X, y = blobs()
    kw = dict(FAST, schedule="constant", batch_size=32)
    one = fastnet.fit(X, y, epochs=1, **kw).train(X, y, epochs=1)

    def ctrl_c(model):
        if len(model.history["loss"]) == 3:
            raise KeyboardInterrupt

    cut = fastnet.fit(X, y, epochs=1, **kw)
    with pytest.raises(KeyboardInterrupt):
        cut.train(X, y, epochs=5, on_epoch=ctrl_c)
    assert cut.network.params.tobytes() == one.network.params.tobytes()
    assert len(cut.history["loss"]) == 2 and cut.recipe.epochs == 2 and cut._state.optimizer.step == \
        one._state.optimizer.step


def test_a_new_recipe_changes_the_steps_not_the_network():
    X, y = blobs()
    model = fastnet.fit(X, y, epochs=1, **FAST)
    steps = model._state.optimizer.step
    new = recipe.Recipe(layers=(7, 5, 3), activation="tanh", dtype="float64", lr=1e-4, batch_size=16)
    model.train(X, y, recipe=new, fresh_optimizer=True)
    assert model.recipe.lr == 1e-4 and model.recipe.batch_size == 16
    assert model.recipe.layers == (7, 128, 3) and model.recipe.activation == "relu"
    assert model.recipe.dtype == "float32" and model.network.dtype == np.float32
    assert model._state.optimizer.step == len(X) // 16 + (len(X) % 16 > 0) != steps
