"""fastnet.export: a model as an ONNX graph, run in ONNX Runtime on real Fashion-MNIST against
Model.predict_proba (the "onnx_proba" tolerance); the estimator converted by skl2onnx inside a
pipeline; bad input as one line (exit 2) and no partial file; the command line's export of a trained
model gives the accuracy fastnet.evaluate prints."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastnet
from fastnet import export
from tests.helpers import ROOT, assert_one_line_error, needs_real, run_cli
from tests.kernels.tolerances import tolerance

needs_onnx = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime", "skl2onnx")),
    reason="the [onnx] extra is not installed (pip install '.[onnx]'; make test installs it)",
)
ONE = dict(epochs=1, seed=0, threads=1)
# a few epochs of the estimator are enough for a graph to compare against
pytestmark = pytest.mark.filterwarnings("ignore:Stochastic Optimizer. Maximum iterations")


@pytest.fixture(scope="module")
def fashion():
    """((X_train, y_train), (X_test, y_test)) of the real Fashion-MNIST: uint8 rows, uint8 labels."""
    return fastnet.datasets.load_fashion_mnist(download=False)


@pytest.fixture(scope="module")
def default_model(fashion):
    """The default recipe (784-128-10, standardised, 5% held out), one epoch on the whole training split."""
    (X, y), _ = fashion
    return fastnet.fit(X, y, epochs=1, seed=0)


def session(onnx_model):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(onnx_model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run_graph(onnx_model, X):
    """(output_label, output_probability) of the graph on rows X."""
    return session(onnx_model).run(["output_label", "output_probability"], {"X": X})


def assert_agrees(model, X, labels, proba, min_decided=0.9):
    """ONNX Runtime's outputs on X agree with the model's: probabilities float32 (N, K) within the
    "onnx_proba" tolerance of predict_proba; labels equal to predict on every row whose top two
    probabilities are further apart than twice it (neither can cross the other), which must be at
    least min_decided of the rows (a test on no rows would test nothing)."""
    atol, rtol = tolerance("onnx_proba", model.network.dtype)
    ref = model.predict_proba(X)
    assert proba.dtype == np.float32 and proba.shape == ref.shape
    err = np.abs(proba - ref)
    assert (err <= atol + rtol * ref).all(), f"max |difference| {err.max():.3g}, allowed {atol:g} + {rtol:g}·p"
    top2 = np.sort(ref, axis=1)[:, -2:]
    decided = top2[:, 1] - top2[:, 0] > 2 * (atol + rtol)
    assert decided.mean() >= min_decided, f"only {decided.mean():.1%} of the rows decide their label"
    assert labels.shape == (len(X),)
    assert (labels[decided] == model.predict(X)[decided]).all()
    assert labels.dtype == (object if model.classes_.dtype.kind == "U" else np.int64)


def onnx_input(X, kind):
    return X if kind == "uint8" else X.astype(np.float32)


# ---------------------------------------------------------------- real data, every kind of network


@pytest.mark.slow
@needs_real
@needs_onnx
@pytest.mark.parametrize("kind", ["float", "uint8"])
def test_default_recipe_agrees_on_the_whole_test_set(default_model, fashion, kind):
    _, (X, y) = fashion
    labels, proba = run_graph(default_model.to_onnx(input=kind), onnx_input(X, kind))
    assert_agrees(default_model, X, labels, proba)
    assert abs(np.mean(labels == y) - default_model.score(X, y)) <= 2e-4  # a tie or two at most


@needs_real
@needs_onnx
def test_a_batch_of_one_row(default_model, fashion):
    _, (X, _) = fashion
    sess = session(default_model.to_onnx(input="uint8"))
    rows = [sess.run(None, {"X": X[i : i + 1]}) for i in range(64)]
    labels = np.concatenate([r[0] for r in rows])
    proba = np.concatenate([r[1] for r in rows])
    assert_agrees(default_model, X[:64], labels, proba, min_decided=0.95)


@pytest.mark.slow
@needs_real
@needs_onnx
@pytest.mark.parametrize("activation, hidden, dtype", [
    ("relu", (), "float32"),  # softmax regression
    ("tanh", (64,), "float32"),
    ("logistic", (64, 32), "float32"),
    ("identity", (32, 32), "float32"),
    ("relu", (64, 32, 16), "float32"),
    ("tanh", (32, 32, 32), "float32"),
    ("relu", (64,), "float64"),
    ("logistic", (32,), "float64"),
])
def test_every_activation_depth_and_dtype(fashion, activation, hidden, dtype):
    (X_train, y_train), (X, _) = fashion
    model = fastnet.fit(X_train[:10000], y_train[:10000], hidden_layer_sizes=hidden, activation=activation,
                        dtype=dtype, lr=5e-3, validation=None, **ONE)
    for kind in ("float", "uint8"):
        labels, proba = run_graph(model.to_onnx(input=kind), onnx_input(X, kind))
        assert_agrees(model, X, labels, proba)


@needs_real
@needs_onnx
def test_string_labels_come_back_as_strings(fashion):
    (X_train, y_train), (X, _) = fashion
    names = np.array(fastnet.datasets.class_names())
    model = fastnet.fit(X_train[:10000], names[y_train[:10000]], hidden_layer_sizes=(32,), validation=None, **ONE)
    onnx_model = model.to_onnx()
    assert onnx_model.graph.output[0].type.tensor_type.elem_type == 8  # TensorProto.STRING
    labels, proba = run_graph(onnx_model, X.astype(np.float32))
    assert_agrees(model, X, labels, proba)
    assert set(labels) <= set(names)


# ---------------------------------------------------------------- the graph itself


def blobs(n=300, features=5, classes=3, seed=0):
    """Separable float64 clusters: (X, y) with y in 0..classes-1."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    return rng.normal(scale=4, size=(classes, features))[y] + rng.normal(size=(n, features)), y


@pytest.fixture(scope="module")
def small_model():
    X, y = blobs()
    return fastnet.fit(X, y * 10 - 5, hidden_layer_sizes=(8,), epochs=5, batch_size=32, validation=None, seed=0,
                       threads=1), X


@needs_onnx
def test_graph_checks_and_names_fastnet(small_model, tmp_path):
    import onnx

    model, X = small_model
    path = tmp_path / "small.onnx"
    onnx_model = model.to_onnx(path)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    assert onnx.load(path) == onnx_model
    meta = {p.key: p.value for p in onnx_model.metadata_props}
    assert meta["producer"] == "fastnet" and meta["fastnet_version"] == fastnet.__version__
    assert json.loads(meta["recipe"]) == model.recipe.as_stored()
    assert onnx_model.opset_import[0].version == export.DEFAULT_OPSET
    (x,) = onnx_model.graph.input
    assert [d.dim_param or d.dim_value for d in x.type.tensor_type.shape.dim] == ["N", 5]
    assert [o.name for o in onnx_model.graph.output] == ["output_label", "output_probability"]
    assert {n.op_type for n in onnx_model.graph.node} == {"Mul", "Add", "Gemm", "Relu", "Softmax", "ArgMax", "Gather"}
    labels, proba = run_graph(onnx_model, X.astype(np.float32))
    assert set(labels) == {-5, 5, 15}  # the labels themselves, not 0..K-1
    assert_agrees(model, X, labels, proba)


@needs_onnx
@pytest.mark.parametrize("labels, kind", [(["no", "yes", "maybe"], 8), ([-(2**40), 7, 2**62], 7)])
def test_labels_held_as_python_objects(labels, kind):
    X, y = blobs()
    model = fastnet.fit(X, np.array(labels, dtype=object)[y], hidden_layer_sizes=(), epochs=3, validation=None,
                        threads=1)
    assert model.classes_.dtype == object
    onnx_model = model.to_onnx()
    assert onnx_model.graph.output[0].type.tensor_type.elem_type == kind  # STRING, INT64
    predicted, _ = run_graph(onnx_model, X.astype(np.float32))
    assert (predicted == model.predict(X)).mean() > 0.99


@needs_onnx
@pytest.mark.parametrize("opset", [export.MIN_OPSET, 21])
def test_older_and_newer_opsets_run(small_model, opset):
    model, X = small_model
    onnx_model = model.to_onnx(opset=opset)
    assert onnx_model.opset_import[0].version == opset
    assert_agrees(model, X, *run_graph(onnx_model, X.astype(np.float32)))


@needs_onnx
def test_unscaled_model_has_no_scaling_nodes():
    X, y = blobs()
    model = fastnet.fit(X, y, hidden_layer_sizes=(), standardize=False, epochs=3, validation=None, threads=1)
    onnx_model = model.to_onnx()
    assert [n.op_type for n in onnx_model.graph.node] == ["Gemm", "Softmax", "ArgMax", "Gather"]
    assert_agrees(model, X, *run_graph(onnx_model, X.astype(np.float32)))


# ---------------------------------------------------------------- skl2onnx: the estimator in a pipeline


@pytest.fixture(scope="module")
def skl2onnx_ready():
    pytest.importorskip("sklearn")
    export.register_skl2onnx()
    export.register_skl2onnx()  # twice is harmless
    import skl2onnx

    return skl2onnx


def pipeline_agrees(pipe, X, y, onnx_model, classes):
    """ONNX Runtime reproduces the pipeline's predict and predict_proba (the onnx_proba tolerance)."""
    import onnxruntime

    sess = onnxruntime.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    labels, proba = sess.run(None, {"X": X})
    ref = pipe.predict_proba(X)
    atol, rtol = tolerance("onnx_proba", np.float32)
    assert proba.shape == ref.shape and (np.abs(proba - ref) <= atol + rtol * ref).all()
    top2 = np.sort(ref, axis=1)[:, -2:]
    decided = top2[:, 1] - top2[:, 0] > 2 * (atol + rtol)
    assert decided.mean() > 0.9
    assert (labels[decided] == pipe.predict(X)[decided]).all()
    assert set(np.unique(labels)) <= set(classes)


@pytest.mark.slow
@needs_onnx
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pipeline_on_digits(skl2onnx_ready, dtype):
    from sklearn.datasets import load_digits
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from fastnet.sklearn import MLPClassifier

    X, y = load_digits(return_X_y=True)
    X = X.astype(dtype)
    pipe = make_pipeline(StandardScaler(), MLPClassifier((32,), max_iter=30, random_state=0, threads=1)).fit(X, y)
    onnx_model = skl2onnx_ready.to_onnx(pipe, X[:1], options={MLPClassifier: {"zipmap": False}})
    pipeline_agrees(pipe, X, y, onnx_model, pipe.classes_)


@needs_onnx
def test_pipeline_zipmap_default_gives_dicts(skl2onnx_ready):
    import onnxruntime
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from fastnet.sklearn import MLPClassifier

    X, y = blobs()
    X, y = X.astype(np.float32), np.array(["a", "b", "c"])[y]
    pipe = make_pipeline(StandardScaler(), MLPClassifier((8,), max_iter=20, random_state=0, threads=1)).fit(X, y)
    sess = onnxruntime.InferenceSession(skl2onnx_ready.to_onnx(pipe, X[:1]).SerializeToString(),
                                        providers=["CPUExecutionProvider"])
    labels, dicts = sess.run(None, {"X": X})
    assert (labels == pipe.predict(X)).all()
    assert set(dicts[0]) == {"a", "b", "c"}
    assert np.allclose([[d[c] for c in "abc"] for d in dicts], pipe.predict_proba(X), atol=2.5e-4)


@needs_real
@needs_onnx
def test_pipeline_on_fashion_mnist(skl2onnx_ready, fashion):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from fastnet.sklearn import MLPClassifier

    (X_train, y_train), (X, _) = fashion
    X_train, X = X_train[:5000].astype(np.float32), X[:2000].astype(np.float32)
    pipe = make_pipeline(StandardScaler(), MLPClassifier((64,), max_iter=3, random_state=0, threads=1))
    pipe.fit(X_train, y_train[:5000])
    onnx_model = skl2onnx_ready.to_onnx(pipe, X[:1], options={MLPClassifier: {"zipmap": False}})
    pipeline_agrees(pipe, X, None, onnx_model, pipe.classes_)


@needs_onnx
def test_docstring_examples_run():
    import doctest

    pytest.importorskip("sklearn")
    result = doctest.testmod(export, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.slow
def test_importing_fastnet_imports_no_onnx():
    code = ("import sys, fastnet, fastnet.api, fastnet.export\n"
            "try:\n    import fastnet.sklearn\nexcept ImportError:\n    pass\n"
            "print(sorted(m for m in ('onnx', 'onnxruntime', 'skl2onnx') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# ---------------------------------------------------------------- bad input


def fastnet_export(*args, prelude=""):
    """Run the fastnet.export command line in a fresh interpreter (after prelude, if any)."""
    code = (f"{prelude}\nfrom fastnet.cli import run\nfrom fastnet.export.__main__ import main\n"
            f"run(main, {list(map(str, args))!r})")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


def leftovers(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.suffix == ".onnx" or p.name.startswith(".tmp-"))


@pytest.fixture
def saved(small_model, tmp_path):
    path = tmp_path / "model.npz"
    small_model[0].save(path)
    return path


@pytest.mark.slow
@needs_onnx
def test_cli_writes_what_the_api_returns(saved, small_model, tmp_path):
    import onnx

    done = fastnet_export(saved, tmp_path / "m.onnx", "--input", "uint8", "--opset", "15")
    assert done.returncode == 0 and done.stdout.startswith("wrote "), done.stderr
    assert onnx.load(tmp_path / "m.onnx") == small_model[0].to_onnx(input="uint8", opset=15)


@pytest.mark.slow
@pytest.mark.parametrize("args, words", [
    (["{bad}", "{out}"], ["not an .npz"]),
    (["{tmp}/absent.npz", "{out}"], ["does not exist"]),
    (["{model}", "{out}", "--opset", "5"], ["opset must be an integer from 13"]),
    (["{model}", "{out}", "--input", "int8"], ["invalid choice"]),
    (["{model}", "{model}"], ["is the model file itself"]),
    (["{model}", "{tmp}/no/such/dir/m.onnx"], ["does not exist"]),
    (["{floats}", "{out}"], ["cannot be ONNX class labels"]),
])
@needs_onnx
def test_cli_bad_input_is_one_line(saved, tmp_path, args, words):
    X, y = blobs()
    fastnet.fit(X, y + 0.5, hidden_layer_sizes=(), epochs=1, validation=None, threads=1).save(tmp_path / "floats.npz")
    (tmp_path / "bad.npz").write_text("not a model\n")
    before = saved.read_bytes()
    names = dict(bad=tmp_path / "bad.npz", model=saved, out=tmp_path / "out.onnx", tmp=tmp_path,
                 floats=tmp_path / "floats.npz")
    assert_one_line_error(fastnet_export(*[a.format(**names) for a in args]), 2, *words)
    assert leftovers(tmp_path) == [] and saved.read_bytes() == before


def test_cli_without_onnx_names_the_extra(saved, tmp_path):
    done = fastnet_export(saved, tmp_path / "out.onnx", prelude="import sys; sys.modules['onnx'] = None")
    assert_one_line_error(done, 2, "needs the onnx package", "fastnet-mlp[onnx]")
    assert leftovers(tmp_path) == []


def test_api_without_onnx_raises_import_error(small_model, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"fastnet-mlp\[onnx\]"):
        small_model[0].to_onnx(tmp_path / "m.onnx")
    monkeypatch.setitem(sys.modules, "skl2onnx", None)
    with pytest.raises(ImportError, match=r"fastnet-mlp\[onnx\]"):
        export.register_skl2onnx()
    assert leftovers(tmp_path) == []


@needs_onnx
def test_api_bad_input_raises_and_keeps_the_old_file(small_model, tmp_path, monkeypatch):
    model, X = small_model
    path = tmp_path / "m.onnx"
    path.write_bytes(b"an earlier export")
    with pytest.raises(ValueError, match="input must be one of float, uint8"):
        model.to_onnx(path, input="int8")
    with pytest.raises(ValueError, match="opset must be"):
        model.to_onnx(path, opset=12)
    X, y = blobs()
    for labels in (y * 0.5, np.array([2**70, 1, 2], dtype=object)[y]):
        with pytest.raises(ValueError, match="cannot be ONNX class labels"):
            fastnet.fit(X, labels, hidden_layer_sizes=(), epochs=1, validation=None, threads=1).to_onnx(path)
    monkeypatch.setattr(export, "PROTOBUF_LIMIT", 2 << 20)
    with pytest.raises(ValueError, match="does not fit one ONNX file"):
        fastnet.fit(X, y, hidden_layer_sizes=(1000, 1000), epochs=1, validation=None, threads=1).to_onnx(path)
    assert path.read_bytes() == b"an earlier export" and leftovers(tmp_path) == ["m.onnx"]


# ---------------------------------------------------------------- done when: train, export, evaluate


@pytest.mark.slow
@needs_real
@needs_onnx
def test_exported_cli_model_scores_what_evaluate_prints(tmp_path, fashion):
    def command(*args):
        done = run_cli(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    model, out = tmp_path / "model.npz", tmp_path / "model.onnx"
    command("fastnet.train", "--epochs", "1", "--save", model, "--quiet")
    command("fastnet.export", model, out)
    printed = json.loads(command("fastnet.evaluate", model, "--json"))["test_accuracy"]
    _, (X, y) = fashion
    import onnx

    labels, _ = run_graph(onnx.load(out), X.astype(np.float32))
    assert f"{np.mean(labels == y):.4f}" == f"{printed:.4f}"
