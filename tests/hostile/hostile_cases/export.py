"""Hostile cases of python -m fastnet.export: damaged and inexpressible model files, outputs that are
not regular files or are the model itself, bad flags, a missing onnx package, a full standard output.
A failure leaves no .onnx file and no earlier file changed (the sweep's snapshot checks both)."""

import os

import numpy as np

EXPORT = ["fastnet.export", "{model}", "{ws}/m.onnx"]


def fake_missing_onnx(ws):
    """An `onnx` package that cannot be imported, first on the path: as if the extra were not installed."""
    (ws / "fake" / "onnx").mkdir(parents=True)
    (ws / "fake" / "onnx" / "__init__.py").write_text("raise ImportError('simulated: no onnx here')\n")


def add(case, sweep):
    root = str(sweep.ROOT)
    for name, argv, code, setup, writes in [
        ("ok", EXPORT, 0, None, ("m.onnx",)),
        ("ok_uint8_opset13", EXPORT + ["--input", "uint8", "--opset", "13"], 0, None, ("m.onnx",)),
        ("replaces_old_file", EXPORT, 0, sweep.data_file("m.onnx", b"old"), ("m.onnx",)),
        ("out_is_the_model", ["fastnet.export", "{model}", "{model}"], 2, None, ()),
        ("out_is_the_model_via_link", ["fastnet.export", "{model}", "{ws}/alias.onnx"], 2,
         sweep.link("alias.onnx", "model.npz"), ()),
        ("out_missing_directory", ["fastnet.export", "{model}", "{ws}/missing/m.onnx"], 2, None, ()),
        ("out_is_a_directory", ["fastnet.export", "{model}", "{data}"], 2, None, ()),
        ("out_fifo", ["fastnet.export", "{model}", "{ws}/m.fifo"], 2, sweep.fifo("m.fifo"), ()),
        ("out_dev_full", ["fastnet.export", "{model}", "/dev/full"], 2, None, ()),
        ("model_missing", ["fastnet.export", "{ws}/absent.npz", "{ws}/m.onnx"], 2, None, ()),
        ("model_is_text", EXPORT, 2, sweep.data_file("model.npz", b"not a model\n"), ()),
        ("model_truncated", EXPORT, 2, lambda ws: sweep.put(ws, "model.npz", (ws / "model.npz").read_bytes()[:500]),
         ()),
        ("model_without_params", EXPORT, 2, sweep.model_with(params=None), ()),
        ("model_nan_weight", EXPORT, 2, sweep.model_with(params=lambda p: np.where(np.arange(p.size) == 3, np.nan, p)),
         ()),
        ("labels_fractional", EXPORT, 2, sweep.model_with(classes=np.array([0.5, 1.5, 2.5, 3.5])), ()),
        ("labels_fractional_keeps_old_file", EXPORT, 2,
         sweep.both(sweep.model_with(classes=np.array([0.5, 1.5, 2.5, 3.5])), sweep.data_file("m.onnx", b"old")), ()),
        ("labels_huge_unsigned", EXPORT, 2,
         sweep.model_with(classes=np.array([0, 1, 2, 2**64 - 1], dtype=np.uint64)), ()),
        ("labels_text_ok", EXPORT, 0, sweep.model_with(classes=np.array(["a", "b", "c", "d"])), ("m.onnx",)),
        ("opset_too_old", EXPORT + ["--opset", "12"], 2, None, ()),
        ("opset_too_new", EXPORT + ["--opset", "1000"], 2, None, ()),
        ("opset_text", EXPORT + ["--opset", "latest"], 2, None, ()),
        ("input_unknown", EXPORT + ["--input", "float16"], 2, None, ()),
        ("no_out", ["fastnet.export", "{model}"], 2, None, ()),
    ]:
        case(f"export_{name}", "export", argv, code, setup=setup, writes=writes, fast=name == "labels_fractional")
    case("export_without_onnx", "export", EXPORT, 2, setup=fake_missing_onnx,
         env={"PYTHONPATH": "{ws}/fake" + os.pathsep + root, "PYTHONDONTWRITEBYTECODE": "1"})
    case("export_stdout_full", "export", EXPORT, 2, stdout="full", writes=("m.onnx",))
