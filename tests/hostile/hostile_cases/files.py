"""Hostile sweep families of model files and the Python API (issue 21: M1-M6, A1-A3).

mf_*: files fastnet wrote itself at their limits (long histories, many classes, long names, text
and huge labels), files saved by the Python API then used by the command line (evaluate, predict,
--resume), hostile JSON members, mathtext class names, relative paths.
api_*: the Python API at the limits of float64 and with the wrong types, run by this module itself:
`python -m tests.hostile.hostile_cases.files SCENARIO` runs one scenario function below; a ValueError,
TypeError or FileNotFoundError is one line `error: ...` and exit 2 (what a caller gets), success exit 0,
anything else a traceback (a defect).
"""

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
RUNNER = ["tests.hostile.hostile_cases.files"]


# ----------------------------------------------------------------- the API scenarios (run in the case)

def _blobs(n=240, features=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    return rng.normal(scale=3, size=(classes, features))[y] + rng.normal(size=(n, features)), y


def _fit(X, y, **kw):
    import fastnet

    return fastnet.fit(X, y, **{"epochs": 2, "threads": 1, "validation": None, "backend": "numpy",
                                "hidden_layer_sizes": (8,), **kw})


def _finite_proba(model, rows):
    proba = model.predict_proba(rows)
    assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1), proba
    assert len(model.predict(rows)) == len(rows)


def _scaled(factor, dtype="float64", standardize=True, constant=False):
    """Fit X * factor: it must train as X does (the same score within two rows), or raise."""
    X, y = _blobs()
    if constant:
        X[:, -1] = 3.0
    plain = _fit(X, y, dtype=dtype, standardize=standardize).score(X, y)
    model = _fit(X * factor, y, dtype=dtype, standardize=standardize)
    assert np.isfinite(model.network.input_scale).all() and abs(model.score(X * factor, y) - plain) <= 2 / len(y)


def _save_labels(labels):
    X, y = _blobs(classes=len(labels))
    model = _fit(X, np.array(labels, dtype=object)[y])
    model.save("m.npz")
    import fastnet

    assert fastnet.load("m.npz").classes_.tolist() == sorted(labels)


def _load(path):
    import fastnet

    return fastnet.load(path)


def _saved_model():
    X, y = _blobs()
    return _fit(X, y), X, y


def _backend(value, call):
    model, X, _ = _saved_model()
    model.backend = value
    getattr(model, call)(X)


def _score(kind):
    X, y = _blobs()
    if kind == "text_vs_numbers":
        _fit(X, y).score(X, y.astype(str))
    else:
        _fit(X, np.array(["a", "b", "c"])[y]).score(X, y)


def _row(value, dtype="float32", standardize=True):
    X, y = _blobs()
    model = _fit(X, y, dtype=dtype, standardize=standardize)
    rows = np.vstack([X[:2], np.full((1, X.shape[1]), value), np.r_[value, np.zeros(X.shape[1] - 1)][None]])
    _finite_proba(model, rows)


def _sklearn(kind):
    from fastnet.sklearn import MLPClassifier

    X, y = _blobs()
    clf = MLPClassifier((8,), max_iter=3, backend="numpy", threads=1, random_state=0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: three epochs on purpose
        if kind == "huge_float32":
            clf.fit(X * 1e300, y)
        elif kind == "huge":
            clf.set_params(dtype="float64").fit(X * 1e300, y)
            _finite_proba(clf.model_, np.full((2, X.shape[1]), 1e308))
            assert np.isfinite(clf.predict_proba(np.full((2, X.shape[1]), 1e308))).all()
        elif kind == "warm_start":
            clf.set_params(warm_start=True).fit(X, y)
            clf.set_params(hidden_layer_sizes=(4, 4), dtype="float64", standardize=False).fit(X, y)
            assert [c.shape for c in clf.coefs_] == [(6, 8), (8, 3)]
        else:
            clf.fit(X, y)
            clf.model_.save("m.npz")


SCENARIOS = {
    "save_int_beyond_int64": lambda: _save_labels([-1, 2**70]),
    "save_uint64_labels": lambda: _save_labels([2**63, 2**64 - 1]),
    "save_int64_extremes": lambda: _save_labels([-(2**63), 2**63 - 1]),
    "save_text_labels_at_name_limit": lambda: _save_labels(["x" * 1024, "y"]),
    "save_text_labels_beyond_name_limit": lambda: _save_labels(["x" * 1025, "y"]),
    "load_bytes_path": lambda: _saved_model()[0].save("m.npz") or _load(b"m.npz"),
    "save_bytes_path": lambda: _saved_model()[0].save(b"m.npz") or _load("m.npz"),
    "load_int_path": lambda: _load(3),
    "save_none_path": lambda: _saved_model()[0].save(None),
    "save_empty_path": lambda: _saved_model()[0].save(""),
    "load_old_file": lambda: _load(ROOT / "tests" / "data" / "model-before-activations.npz"),
    "load_json_huge_int": lambda: _load("model.npz"),
    "backend_cuda_predict": lambda: _backend("cuda", "predict"),
    "backend_none_predict_proba": lambda: _backend(None, "predict_proba"),
    "backend_list_score": lambda: _backend(["numpy"], "predict"),
    "score_text_vs_numbers": lambda: _score("text_vs_numbers"),
    "score_numbers_vs_text": lambda: _score("numbers_vs_text"),
    "fit_x_1e200_float64": lambda: _scaled(1e200),
    "fit_x_1e300_float64_constant": lambda: _scaled(1e300, constant=True),
    "fit_x_1e154_float64": lambda: _scaled(1e154),
    "fit_x_1e20_float32": lambda: _scaled(1e20, "float32"),
    "fit_x_1e300_float32": lambda: _scaled(1e300, "float32"),
    "fit_x_1e40_float32": lambda: _scaled(1e40, "float32"),
    "fit_x_1e200_unstandardised": lambda: _scaled(1e200, standardize=False),
    "fit_x_1e_minus_300_float64": lambda: _scaled(1e-300),
    "fit_x_at_float64_max": lambda: _fit(np.r_[np.full((5, 2), np.finfo(np.float64).max),
                                               np.full((5, 2), -np.finfo(np.float64).max)], np.arange(10) % 2),
    "fit_mixed_scales_float64": lambda: _fit(np.c_[_blobs()[0][:, :3] * 1e-300, _blobs()[0][:, 3:] * 1e300],
                                             _blobs()[1], dtype="float64"),
    "predict_row_1e308_float32": lambda: _row(1e308),
    "predict_row_minus_1e308_float64": lambda: _row(-1e308, "float64"),
    "predict_row_float64_max": lambda: _row(np.finfo(np.float64).max, "float64"),
    "predict_row_3e38_float32": lambda: _row(3e38),
    "predict_row_1e308_unstandardised": lambda: _row(1e308, "float32", standardize=False),
    "predict_row_subnormal": lambda: _row(5e-324, "float64"),
    "sklearn_fit_1e300": lambda: _sklearn("huge"),
    "sklearn_fit_1e300_float32": lambda: _sklearn("huge_float32"),
    "sklearn_warm_start_set_params": lambda: _sklearn("warm_start"),
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        SCENARIOS[argv[0]]()
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


# ----------------------------------------------------------------- workspace helpers (run in the sweep)

def _fastnet():
    sys.path.insert(0, str(ROOT))
    import fastnet

    return fastnet


def _data(ws, split="train"):
    from fastnet.data.idx import read_idx

    prefix = "train" if split == "train" else "t10k"
    X = read_idx(ws / f"data/{prefix}-images-idx3-ubyte").reshape(-1, 64)
    return X, read_idx(ws / f"data/{prefix}-labels-idx1-ubyte")


def api_model(rel="api.npz", labels=None, scale=None, **kw):
    """Setup: a model fit with fastnet.fit on data/'s training rows (labels mapped through `labels`;
    rows divided by `scale` as floats when given), saved at rel."""
    def setup(ws):
        fastnet = _fastnet()
        X, y = _data(ws)
        if scale is not None:
            X = X / scale
        target = y if labels is None else np.array(labels)[y]
        model = fastnet.fit(X, target, **{"epochs": 2, "threads": 1, "validation": None, "backend": "numpy",
                                          "hidden_layer_sizes": (8,), **kw})
        model.save(ws / rel)
    return setup


def sklearn_model(rel="sk.npz"):
    def setup(ws):
        _fastnet()
        import warnings

        from fastnet.sklearn import MLPClassifier

        X, y = _data(ws)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            MLPClassifier((8,), max_iter=2, backend="numpy", threads=1, random_state=0).fit(X, y).model_.save(ws / rel)
    return setup


def twelve_classes(rel="data12"):
    """Setup: rel/, an IDX set of 8x8 images in 12 classes (as text, "10" sorts before "2")."""
    def setup(ws):
        from fastnet.data.idx import read_idx  # noqa: F401 (the sweep's path is set)

        rng = np.random.default_rng(2)
        (ws / rel).mkdir()
        for prefix, n in (("train", 240), ("t10k", 48)):
            y = np.arange(n) % 12
            X = rng.integers(0, 60, (n, 8, 8))
            X[np.arange(n), y // 8 * 4 + 2, y % 8] = 250
            _write_idx(ws / rel / f"{prefix}-images-idx3-ubyte", X)
            _write_idx(ws / rel / f"{prefix}-labels-idx1-ubyte", y)
    return setup


def _write_idx(path, array):
    import struct

    array = np.ascontiguousarray(array, np.uint8)
    path.write_bytes(bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes())


def api_model_on(rel_data, rel="api.npz", text=True):
    """Setup: a model fit in Python on rel_data's training rows with their labels as text."""
    def setup(ws):
        fastnet = _fastnet()
        from fastnet.data.idx import read_idx

        X = read_idx(ws / rel_data / "train-images-idx3-ubyte").reshape(-1, 64)
        y = read_idx(ws / rel_data / "train-labels-idx1-ubyte")
        model = fastnet.fit(X, y.astype(str) if text else y, epochs=3, threads=1, validation=None,
                            backend="numpy", hidden_layer_sizes=(16,), lr=1e-2)
        model.save(ws / rel)
    return setup


def npz_floats(rel="floats.npz", scale=255.0):
    def setup(ws):
        _fastnet()
        (X, y), (X_test, y_test) = _data(ws), _data(ws, "test")
        np.savez(ws / rel, X_train=X / scale, y_train=y, X_test=X_test / scale, y_test=y_test)
    return setup


def with_history(epochs=None, step_losses=None, stride=1, steps=None, rel="model.npz"):
    """Setup: model.npz (the sweep's checkpoint, one epoch) rewritten by fastnet with a history of
    `epochs` epochs and `step_losses` kept step losses (every `stride`-th of `steps`)."""
    def setup(ws):
        _fastnet()
        from fastnet import checkpoint
        from fastnet.optim import OPTIMIZERS
        from fastnet.recipe import Recipe

        state, record, names = checkpoint.load_state(str(ws / rel), OPTIMIZERS)
        h = state.history
        if epochs is not None:
            for key in ("epoch_seconds", "eval_seconds", "train_loss", "train_accuracy", "val_loss", "val_accuracy"):
                setattr(h, key, [getattr(h, key)[0]] * epochs)
            h.step_loss = h.step_loss * epochs
            h.steps, state.epoch = len(h.step_loss), epochs
        if step_losses is not None:
            h.step_loss = [h.step_loss[0]] + [1.0] * (step_losses - 1)
            h.step_stride = stride
            h.steps = steps if steps is not None else step_losses * stride
        checkpoint.save(str(ws / rel), state, Recipe.from_stored(record["recipe"]), record["trained"], names)
    return setup


def members(**changes):
    """Setup: model.npz with members replaced (None drops one), written as they are."""
    def setup(ws):
        arrays = dict(np.load(ws / "model.npz"))
        for key, value in changes.items():
            if value is None:
                arrays.pop(key, None)
            else:
                arrays[key] = value(arrays[key]) if callable(value) else value
        (ws / "model.npz").unlink()
        np.savez(ws / "model.npz", **arrays)
    return setup


def json_text(key, text):
    """Setup: model.npz's JSON member `key` replaced by raw text."""
    return members(**{key: np.array(text)})


def json_extra(key, raw):
    """Setup: model.npz's JSON member `key` with one more field whose value is raw JSON text."""
    def setup(ws):
        arrays = dict(np.load(ws / "model.npz"))
        arrays[key] = np.array(str(arrays[key])[:-1] + f', "extra": {raw}}}')
        (ws / "model.npz").unlink()
        np.savez(ws / "model.npz", **arrays)
    return setup


def class_names(*names):
    def setup(ws):
        arrays = dict(np.load(ws / "model.npz"))
        arrays["class_names"] = np.array(names)
        (ws / "model.npz").unlink()
        np.savez(ws / "model.npz", **arrays)
    return setup


def wide_model(classes=1000, name_chars=None):
    """Setup: model.npz replaced by a fresh 64,8,classes model (names of name_chars characters)."""
    def setup(ws):
        _fastnet()
        from fastnet import checkpoint
        from fastnet.model import MLP
        from fastnet.optim import OPTIMIZERS
        from fastnet.recipe import Recipe
        from fastnet.training import TrainState

        model = MLP.he_init((64, 8, classes), np.random.default_rng(0))
        state = TrainState(model, OPTIMIZERS["adam"](model.params.size, model.dtype), np.random.default_rng(0))
        names = [str(i) if name_chars is None else f"{i}".ljust(name_chars, "x") for i in range(classes)]
        record = checkpoint.load(str(ws / "model.npz"))[1]
        recipe = Recipe.from_stored(record["recipe"]).replace(layers=(64, 8, classes))
        checkpoint.save(str(ws / "model.npz"), state, recipe, record["trained"], names)
    return setup


def has_classes(rel, expected):
    def check(ws):
        _fastnet()
        import fastnet

        got = fastnet.load(ws / rel).classes_.tolist()
        return None if got == expected else f"{rel} has classes {got}, expected {expected}"
    return check


def evaluates_from_elsewhere(rel):
    """Check: `python -m fastnet.evaluate ws/rel` run from / finds its data (a stored absolute --data-dir)."""
    def check(ws):
        import os
        import subprocess

        env = dict(os.environ, PYTHONPATH=str(ROOT), FASTNET_CACHE_DIR=str(ws / "cache"),
                   FASTNET_MIRROR="http://127.0.0.1:9/")
        proc = subprocess.run([sys.executable, "-m", "fastnet.evaluate", str(ws / rel), "--backend", "numpy"],
                              cwd="/", env=env, capture_output=True, text=True, timeout=60, check=False)
        return None if proc.returncode == 0 else f"evaluate from / failed: {proc.stderr.strip()[:150]}"
    return check


# ----------------------------------------------------------------- the cases

def add(case, sweep):
    evaluate = sweep.EVALUATE
    resume = [a for a in sweep.TRAIN if a not in ("--layers", "64,8,4")] + ["--resume", "model.npz", "--epochs", "2"]
    resume_api = ["fastnet.train", "--resume", "api.npz", "--epochs", "4", "--backend", "numpy", "--threads", "1",
                  "--quiet"]
    eval_api = ["fastnet.evaluate", "api.npz", "--backend", "numpy"]
    both = sweep.both
    huge = "1" + "0" * 5000

    # models saved by the Python API, then used by the command line (M4, M5)
    for name, argv, code, setup, kw in [
        ("api_uint8_evaluate_data_dir", eval_api + ["--data-dir", "data"], 0, api_model(), {}),
        ("api_uint8_evaluate_no_data", eval_api, 2, api_model(), {}),
        ("api_uint8_evaluate_dataset_flag_offline", eval_api + ["--dataset", "fashion-mnist"], 2, api_model(), {}),
        ("api_text_classes_12_evaluate", eval_api + ["--data-dir", "data12", "--json"], 0,
         both(twelve_classes(), api_model_on("data12")), {}),
        ("api_text_classes_12_plot", eval_api + ["--data-dir", "data12", "--plot", "p"], 0,
         both(twelve_classes(), api_model_on("data12")), {"writes": ("p", "p/test_predictions.png",
                                                                      "p/confusion_matrix.png")}),
        ("api_text_names_unknown_to_data", eval_api + ["--data-dir", "data"], 2,
         api_model(labels=["cat", "dog", "cow", "pig"]), {}),
        ("api_float_model_no_data", eval_api, 2, api_model(scale=255.0), {}),
        ("api_float_model_idx_pixels", eval_api + ["--data-dir", "data"], 2, api_model(scale=255.0), {}),
        ("api_float_model_npz_floats", eval_api + ["--data-dir", "floats.npz"], 0,
         both(api_model(scale=255.0), npz_floats()), {}),
        ("api_uint8_model_npz_floats", eval_api + ["--data-dir", "floats.npz"], 2,
         both(api_model(), npz_floats()), {}),
        ("api_uint8_predict_image", ["fastnet.predict", "api.npz", "img.png"], 0, api_model(), {}),
        ("api_float_predict_image", ["fastnet.predict", "api.npz", "img.png"], 2, api_model(scale=255.0), {}),
        ("api_float32_model_predict_image", ["fastnet.predict", "api.npz", "img.png"], 2,
         api_model(scale=1.0, dtype="float32"), {}),
        ("api_resume_on_data", resume_api + ["--data-dir", "data"], 0, api_model(),
         {"writes": ("api.npz",), "check": has_classes("api.npz", [0, 1, 2, 3])}),
        ("api_text_resume_keeps_classes", resume_api + ["--data-dir", "data12"], 0,
         both(twelve_classes(), api_model_on("data12")),
         {"writes": ("api.npz",), "check": has_classes("api.npz", sorted(str(i) for i in range(12)))}),
        ("api_resume_no_data", resume_api, 2, api_model(), {}),
        ("api_float_resume_on_pixels", resume_api + ["--data-dir", "data"], 2, api_model(scale=255.0), {}),
        ("api_text_resume_on_unknown_names", resume_api + ["--data-dir", "data"], 2,
         api_model(labels=["cat", "dog", "cow", "pig"]), {}),
        ("api_sklearn_model_evaluate", ["fastnet.evaluate", "sk.npz", "--backend", "numpy", "--data-dir", "data"],
         0, sklearn_model(), {}),
        ("api_sklearn_model_no_data", ["fastnet.evaluate", "sk.npz", "--backend", "numpy"], 2, sklearn_model(), {}),
    ]:
        case(f"mf_{name}", "model files", argv, code, setup=setup, **kw)

    # files fastnet wrote itself at their limits; hostile members of today's layout (M1)
    for name, argv, code, setup, kw in [
        ("history_5000_epochs_resume", resume[:-1] + ["5001"], 0, with_history(epochs=5000),
         {"writes": ("model.npz",), "check": sweep.loads_as_model("model.npz", 5001)}),
        ("history_5000_epochs_evaluate", evaluate, 0, with_history(epochs=5000), {}),
        ("step_losses_at_the_bound_resume", resume, 0,
         with_history(step_losses=1 << 20, stride=1), {"writes": ("model.npz",)}),
        ("step_losses_thinned_resume", resume, 0, with_history(step_losses=1000, stride=1024, steps=1000 * 1024),
         {"writes": ("model.npz",)}),
        ("step_losses_beyond_the_bound_evaluate", evaluate, 2,
         members(history_step_loss=np.ones((1 << 20) + 10**5)), {}),
        ("step_losses_wrong_count_resume", resume, 2, members(history_step_loss=np.ones(4)), {}),
        ("history_member_as_integers_resume", resume, 2,
         members(history_train_loss=lambda a: a.astype(np.int64)), {}),
        ("history_member_as_integers_evaluate", evaluate, 0,
         members(history_train_loss=lambda a: a.astype(np.int64)), {}),
        ("history_member_two_dim_resume", resume, 2, members(history_val_loss=lambda a: a.reshape(1, -1)), {}),
        ("history_member_missing_resume", resume, 2, members(history_eval_seconds=None), {}),
        ("history_member_missing_evaluate", evaluate, 0, members(history_eval_seconds=None), {}),
        ("history_member_longer_than_epochs", evaluate, 2, members(history_train_loss=np.ones(10**5)), {}),
        ("partial_losses_longer_than_batch", evaluate, 2, members(partial_losses=np.ones(10**5)), {}),
        ("partial_losses_nan_resume", resume, 2,
         both(sweep.model_with(progress={"batch": 1}), members(partial_losses=np.array([np.nan]))), {}),
        ("steps_negative_resume", resume, 2, sweep.model_with(progress={"steps": -1}), {}),
        ("stride_three_resume", resume, 2, sweep.model_with(progress={"step_stride": 3}), {}),
        ("stride_2_pow_70_resume", resume, 2, sweep.model_with(progress={"step_stride": 2**70}), {}),
        ("steps_text_resume", resume, 2, sweep.model_with(progress={"steps": "many"}), {}),
        ("old_layout_history_in_json_resume", resume, 0, old_layout(), {"writes": ("model.npz",)}),
        ("classes_1000_evaluate", evaluate, 0, wide_model(1000), {}),
        ("classes_1000_predict", ["fastnet.predict", "model.npz", "img.png"], 0, wide_model(1000), {}),
        ("class_names_1024_chars_evaluate", evaluate, 0, wide_model(16, 1024), {}),
        ("class_names_1024_chars_plot", evaluate + ["--plot", "p"], 0, wide_model(16, 1024),
         {"writes": ("p", "p/test_predictions.png", "p/confusion_matrix.png"), "timeout": 120}),
        ("class_names_2000_chars_old_bound", evaluate, 0, class_names(*["x" * 2000] * 4), {}),
    ]:
        case(f"mf_{name}", "model files", argv, code, setup=setup, **kw)

    # hostile JSON members (M2): `trained` is what evaluate and predict read, `recipe` what a resume reads too
    for name, argv, code, setup in [
        ("json_trained_huge_int_evaluate", evaluate, 2, json_extra("trained", huge)),
        ("json_trained_huge_int_predict", ["fastnet.predict", "model.npz", "img.png"], 2,
         json_extra("trained", huge)),
        ("json_recipe_huge_int_resume", resume, 2, json_extra("recipe", huge)),
        ("json_progress_huge_int_resume", resume, 2, json_extra("progress", huge)),
        ("json_progress_huge_int_evaluate", evaluate, 0, json_extra("progress", huge)),
        ("json_progress_huge_epoch_resume", resume, 2, json_text("progress", '{"epoch": ' + huge + "}")),
        ("json_trained_negative_huge_int", evaluate, 2, json_extra("trained", "-" + huge)),
        ("json_trained_deep_nesting", evaluate, 2, json_extra("trained", "[" * 100_000 + "]" * 100_000)),
        ("json_trained_infinity_evaluate", evaluate, 0, json_extra("trained", "Infinity")),
        ("json_recipe_lr_infinity_resume", resume, 2, sweep.model_with(recipe={"lr": float("inf")})),
        ("json_trained_input_dtype_unknown", evaluate, 2, sweep.model_with(trained={"input_dtype": "float16x"})),
        ("json_trained_input_dtype_list", evaluate, 0, sweep.model_with(trained={"input_dtype": ["uint8"]})),
        ("json_trained_input_dtype_float_predict", ["fastnet.predict", "model.npz", "img.png"], 2,
         sweep.model_with(trained={"input_dtype": "float64"})),
        ("json_trained_not_an_object", evaluate, 2, json_text("trained", "[1, 2]")),
        ("json_huge_float_exponent", evaluate, 0, json_extra("trained", "1e" + huge[:400])),
    ]:
        case(f"mf_{name}", "model files", argv, code, setup=setup)

    # class names that look like mathtext, drawn as text (M3); relative paths (M6)
    plot_writes = ("p", "p/test_predictions.png", "p/confusion_matrix.png")
    for i, name in enumerate(["$\\foo$", "a$b", "$x^$", "$\\frac{1}{$", "\\begin{x}$$", "$$", "%$_^{}$", "50$ and $5"]):
        case(f"mf_mathtext_name_{i}", "model files", evaluate + ["--plot", "p"], 0,
             setup=class_names(name, "b", "c", "d"), writes=plot_writes)
    case("mf_plot_dir_new_nested", "model files", evaluate + ["--plot", "a/b/c"], 0,
         writes=("a", "a/b", "a/b/c", "a/b/c/test_predictions.png", "a/b/c/confusion_matrix.png"))
    train = [a if a != "{data}" else "data" for a in sweep.TRAIN]
    for name, data in (("plain", "data"), ("dot", "./data"), ("trailing_slash", "data/")):
        argv = [a if a != "data" else data for a in train]
        case(f"mf_relative_data_dir_{name}", "model files", argv + ["--save", "m.npz"], 0, writes=("m.npz",),
             check=evaluates_from_elsewhere("m.npz"))
    case("mf_relative_data_dir_resume", "model files", resume[:-4] + ["--data-dir", "data", "--resume", "model.npz",
                                                                       "--epochs", "2"], 0,
         writes=("model.npz",), check=evaluates_from_elsewhere("model.npz"))

    # the Python API at the limits of float64 and with the wrong types (A1-A3)
    expected = {"save_int_beyond_int64": 2, "save_text_labels_beyond_name_limit": 2, "load_int_path": 2,
                "save_none_path": 2, "save_empty_path": 2, "load_json_huge_int": 2, "backend_cuda_predict": 2,
                "backend_none_predict_proba": 2, "backend_list_score": 2, "score_text_vs_numbers": 2,
                "score_numbers_vs_text": 2, "fit_x_1e300_float32": 2, "fit_x_1e40_float32": 2,
                "fit_x_1e200_unstandardised": 2, "fit_x_at_float64_max": 2, "sklearn_fit_1e300_float32": 2}
    writes = {"load_bytes_path": ("m.npz",), "save_bytes_path": ("m.npz",), "save_uint64_labels": ("m.npz",),
              "save_int64_extremes": ("m.npz",), "save_text_labels_at_name_limit": ("m.npz",)}
    setups = {"load_json_huge_int": json_extra("trained", huge)}
    for name in SCENARIOS:
        case(f"api_{name}", "python api", RUNNER + [name], expected.get(name, 0), setup=setups.get(name),
             writes=writes.get(name, ()))


def old_layout():
    """Setup: model.npz rewritten as fastnet wrote it before the history had members of its own: the
    history and partial losses in the progress JSON, no steps or step_stride, and the recipe and what
    it was trained on in one `settings` member (layers as text)."""
    def setup(ws):
        arrays = dict(np.load(ws / "model.npz"))
        settings = {**json.loads(str(arrays.pop("recipe"))), **json.loads(str(arrays.pop("trained")))}
        arrays["settings"] = np.array(json.dumps({**settings, "layers": ",".join(map(str, settings["layers"]))}))
        progress = json.loads(str(arrays["progress"]))
        history = {k[8:]: arrays.pop(k).tolist() for k in list(arrays) if k.startswith("history_")}
        progress["history"] = history
        progress["partial_losses"] = arrays.pop("partial_losses").tolist()
        progress.pop("steps")
        progress.pop("step_stride")
        arrays["progress"] = np.array(json.dumps(progress))
        (ws / "model.npz").unlink()
        np.savez(ws / "model.npz", **arrays)
    return setup


if __name__ == "__main__":
    sys.exit(main())
