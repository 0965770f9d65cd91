"""fastnet.export: a model as an ONNX graph, to run in ONNX Runtime or any ONNX runtime (its command
line, python -m fastnet.export MODEL OUT: __main__.py).

The graph is the whole prediction: the stored input scaling (x·scale + shift, per feature; uint8
input is Cast to float first), each layer's Gemm and activation, the softmax, and the labels.
Inputs: `X`, (N, features), float32 or uint8, N dynamic. Outputs, named as skl2onnx names a
classifier's: `output_label` (N,), int64 or string as the model's classes_, the argmax of the logits
as Model.predict takes it; `output_probability` (N, K) float32, a tensor (as skl2onnx gives it with
zipmap=False, where it names it `probabilities`). Arithmetic is float32, also for a float64 model.
Needs the `onnx` extra: pip install 'fastnet-mlp[onnx]'.

`register_skl2onnx()` teaches skl2onnx to convert fastnet.sklearn.MLPClassifier, also inside a
pipeline, with the same graph (in float64 where the pipeline runs in float64).
"""

import importlib
import json

import numpy as np

from .. import __version__
from ..errors import InputError
from ..files import atomic_write, check_destination

INPUTS = ("float", "uint8")
MIN_OPSET = 13  # Softmax over one axis (its opset-13 meaning); every other operator used is older
DEFAULT_OPSET = 17  # run by ONNX Runtime since 1.11 (2022) and by the other common runtimes
PROTOBUF_LIMIT = 2**31 - 1  # bytes: a protobuf message, so an ONNX file without external data, is below 2 GiB
EXTRA = "pip install 'fastnet-mlp[onnx]'"
ACTIVATION_OPS = {"relu": "Relu", "tanh": "Tanh", "logistic": "Sigmoid", "identity": None}
SKL2ONNX_ALIAS = "FastnetMLPClassifier"


class MissingPackage(InputError):
    """onnx (or skl2onnx) is not installed: the message names the extra that installs it."""


def require(package):
    """The module `package` (onnx, skl2onnx), or MissingPackage naming the [onnx] extra."""
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise MissingPackage(f"ONNX export needs the {package} package ({exc}); install the extra: {EXTRA}") from None


def label_tensor(classes, name):
    """classes_ as the ONNX tensor output_label is looked up in: int64 for integers, booleans and
    whole floats (as skl2onnx's classifiers have it), string for text; InputError for other labels."""
    onnx = require("onnx")
    classes = np.asarray(classes)
    if classes.dtype.kind == "O" and all(isinstance(c, str) for c in classes):  # labels from a list of str
        classes = classes.astype(str)
    elif classes.dtype.kind == "O" and all(isinstance(c, (int, np.integer)) for c in classes):
        try:
            classes = np.array(classes.tolist(), dtype=np.int64)
        except OverflowError:  # beyond 64 bits: refused below
            pass
    if classes.dtype.kind == "U":
        values = classes
    elif classes.dtype.kind in "biu" and (classes.dtype.kind != "u" or classes.max() <= np.iinfo(np.int64).max):
        values = classes.astype(np.int64)
    elif classes.dtype.kind == "f" and np.all(np.isfinite(classes) & (classes == np.round(classes))
                                              & (np.abs(classes) < 2.0**63)):
        values = classes.astype(np.int64)
    else:
        raise InputError(f"labels {classes[:5].tolist()!r} ({classes.dtype}) cannot be ONNX class labels, which are "
                         "64-bit integers or strings; train with such labels")
    return onnx.numpy_helper.from_array(values, name)


def prediction_graph(network, classes, x, outputs, dtype=np.float32, cast=False, fresh=lambda name: name):
    """(nodes, initialisers) computing outputs = (labels, probabilities) from input x.

    nodes are (op_type, inputs, outputs, attributes) tuples, initialisers TensorProtos; fresh(name)
    gives each intermediate a unique name (skl2onnx's scope, inside a pipeline). dtype: the
    arithmetic's, float32 or float64; cast: x (uint8 pixels, or any non-float input) is Cast to it first.
    """
    numpy_helper, tensor = require("onnx").numpy_helper, require("onnx").TensorProto
    onnx_type = tensor.DOUBLE if np.dtype(dtype) == np.float64 else tensor.FLOAT
    nodes, inits = [], []

    def const(name, value):
        name = fresh(name)
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype), name))
        return name

    def node(op, inputs, name, **attrs):
        out = fresh(name)
        nodes.append((op, list(inputs), [out], attrs))
        return out

    if cast:
        x = node("Cast", [x], "cast_input", to=onnx_type)
    scale, shift = network.input_scale, network.input_shift
    if not (np.all(scale == 1) and np.all(shift == 0)):  # x·1 + 0 is x: no nodes for no scaling
        x = node("Add", [node("Mul", [x, const("input_scale", scale)], "scaled"), const("input_shift", shift)],
                 "inputs")
    from kernels import layer_views

    Ws, bs = layer_views(network.params, network.sizes)
    for i, (W, b, activation) in enumerate(zip(Ws, bs, network.activations)):
        x = node("Gemm", [x, const(f"W{i}", W), const(f"b{i}", b)], f"linear{i}")
        if ACTIVATION_OPS[activation] is not None:
            x = node(ACTIVATION_OPS[activation], [x], f"{activation}{i}")
    label_out, proba_out = outputs
    nodes.append(("Softmax", [x], [proba_out], {"axis": 1}))
    index = node("ArgMax", [x], "class_index", axis=1, keepdims=0)
    inits.append(label_tensor(classes, fresh("classes")))
    nodes.append(("Gather", [inits[-1].name, index], [label_out], {"axis": 0}))
    return nodes, inits


def to_onnx(network, classes, recipe, path=None, *, input="float", opset=None):
    """The ONNX ModelProto of a fastnet network (fastnet.model.MLP) with labels `classes`, checked by
    onnx.checker (full_check); with path, also written there atomically. recipe: the stored recipe's
    fields (a dict), kept in the graph's metadata. InputError on bad input."""
    onnx = require("onnx")
    helper, tensor = onnx.helper, onnx.TensorProto
    if input not in INPUTS:
        raise InputError(f"input must be one of {', '.join(INPUTS)}, got {input!r}")
    opset = check_opset(opset)
    if path is not None:
        path = check_destination(path, "ONNX file")
    if network.params.size * 4 > PROTOBUF_LIMIT - (1 << 20):
        raise InputError(f"a network of {network.params.size:,} parameters does not fit one ONNX file "
                         "(protobuf's 2 GiB limit)")
    nodes, inits = prediction_graph(network, classes, "X", ("output_label", "output_probability"),
                                    cast=input == "uint8")
    labels = inits[-1].data_type
    graph = helper.make_graph(
        [helper.make_node(op, i, o, name=o[0], **attrs) for op, i, o, attrs in nodes],
        "fastnet_mlp",
        [helper.make_tensor_value_info("X", tensor.UINT8 if input == "uint8" else tensor.FLOAT,
                                       ["N", network.sizes[0]])],
        [helper.make_tensor_value_info("output_label", labels, ["N"]),
         helper.make_tensor_value_info("output_probability", tensor.FLOAT, ["N", network.sizes[-1]])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="fastnet",
                              producer_version=__version__,
                              doc_string=f"fastnet MLP, layers {','.join(map(str, network.sizes))}")
    # a runtime reads files up to its own IR version: claim the oldest IR that has this opset, not the newest
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    helper.set_model_props(model, {"producer": "fastnet", "fastnet_version": __version__,
                                   "layers": ",".join(map(str, network.sizes)),
                                   "activations": ",".join(network.activations),
                                   "trained_dtype": str(network.dtype),
                                   "recipe": json.dumps(recipe, sort_keys=True, default=str)})
    onnx.checker.check_model(model, full_check=True)
    if path is not None:
        with atomic_write(path, "wb", "ONNX file") as f:
            f.write(model.SerializeToString())
    return model


def check_opset(opset):
    """opset as an int from MIN_OPSET to what the installed onnx knows (None: DEFAULT_OPSET)."""
    newest = require("onnx").defs.onnx_opset_version()
    if opset is None:
        return min(DEFAULT_OPSET, newest)
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= newest:
        raise InputError(f"opset must be an integer from {MIN_OPSET} to {newest} (the installed onnx's newest), "
                         f"got {opset!r}")
    return int(opset)


# ---------------------------------------------------------------- skl2onnx


def register_skl2onnx():
    """Register fastnet.sklearn.MLPClassifier with skl2onnx, so that skl2onnx.to_onnx converts it,
    alone or inside a pipeline. Call it once before converting; importing fastnet never imports
    skl2onnx. Options as skl2onnx's classifiers: zipmap (True, skl2onnx's default: outputs
    output_label and output_probability, a list of {class: probability} dicts; False: outputs label
    and probabilities, an (N, K) tensor; "columns": one output per class) and nocl. A pipeline
    converted for float64 input computes in float64; ONNX's ZipMap takes float32 only, so there pass
    zipmap=False (or convert for float32 input), as for scikit-learn's own classifiers.

    >>> import numpy as np, skl2onnx
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from fastnet.sklearn import MLPClassifier
    >>> import fastnet.export
    >>> fastnet.export.register_skl2onnx()
    >>> X = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
    >>> pipe = make_pipeline(StandardScaler(), MLPClassifier((8,), max_iter=50, random_state=0)).fit(X, X[:, 0] > 0)
    >>> onx = skl2onnx.to_onnx(pipe, X[:1], options={MLPClassifier: {"zipmap": False}})
    >>> [o.name for o in onx.graph.output]
    ['label', 'probabilities']
    """
    try:
        require("onnx")
        skl2onnx = require("skl2onnx")
    except MissingPackage as exc:
        raise ImportError(str(exc)) from None
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes

    from ..sklearn import MLPClassifier

    skl2onnx.update_registered_converter(MLPClassifier, SKL2ONNX_ALIAS, calculate_linear_classifier_output_shapes,
                                         _convert, options={"zipmap": [True, False, "columns"], "nocl": [True, False]})


def _convert(scope, operator, container):
    """skl2onnx converter: the estimator's prediction graph, in the dtype of its input (float32 or
    float64); labels as skl2onnx gives them (its option nocl: 0..K-1)."""
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
    from skl2onnx.common.utils_classifier import get_label_classes

    est = operator.raw_operator
    x = operator.inputs[0]
    dtype = np.float64 if isinstance(x.type, DoubleTensorType) else np.float32
    try:
        nodes, inits = prediction_graph(est.model_.network, get_label_classes(scope, est), x.full_name,
                                        [v.full_name for v in operator.outputs[:2]], dtype,
                                        cast=not isinstance(x.type, (DoubleTensorType, FloatTensorType)),
                                        fresh=scope.get_unique_variable_name)
    except InputError as exc:
        raise ValueError(str(exc)) from None
    tensor = require("onnx").TensorProto
    for t in inits:
        content = list(t.string_data) if t.data_type == tensor.STRING else t
        container.add_initializer(t.name, t.data_type, list(t.dims), content)
    for op, inputs, outputs, attrs in nodes:
        container.add_node(op, inputs, outputs, name=scope.get_unique_operator_name(op), **attrs)
