"""python -m fastnet.export: a model file as an ONNX graph, to run in ONNX Runtime or any ONNX runtime
(fastnet.export: what the graph holds)."""

import os

import numpy as np

from fastnet import checkpoint
from fastnet.cli import ArgumentParser, printable, run
from fastnet.errors import InputError
from fastnet.export import DEFAULT_OPSET, INPUTS, MIN_OPSET, check_opset, require, to_onnx
from fastnet.files import check_destination


def build_parser():
    """The command line of fastnet.export."""
    p = ArgumentParser(prog="python -m fastnet.export", description=__doc__.split("\n")[0])
    p.add_argument("model", metavar="MODEL", help="model file written by python -m fastnet.train --save or Model.save")
    p.add_argument("out", metavar="OUT", help="the ONNX file to write (replaced atomically)")
    p.add_argument("--input", choices=INPUTS, default="float",
                   help="the graph's input: float32 features (default), or uint8 pixels")
    p.add_argument("--opset", type=int, default=None,
                   help=f"ONNX opset, from {MIN_OPSET} to the installed onnx's newest (default {DEFAULT_OPSET})")
    return p


def main(argv=None):
    """Export MODEL to OUT; print one line saying what was written."""
    args = build_parser().parse_args(argv)
    require("onnx")
    check_opset(args.opset)
    check_destination(args.out, "ONNX file")
    if os.path.exists(args.model) and os.path.exists(args.out) and os.path.samefile(args.model, args.out):
        raise InputError(f"OUT {printable(args.out)} is the model file itself; give the ONNX file a name of its own")
    network, record, _, arrays = checkpoint.load(args.model)
    classes = checkpoint.classes(arrays, args.model, network.num_classes)
    classes = np.arange(network.num_classes) if classes is None else classes
    model = to_onnx(network, classes, record["recipe"], args.out,
                    input=args.input, opset=args.opset)
    print(f"wrote {printable(args.out)}: ONNX opset {model.opset_import[0].version}, input X {args.input} "
          f"(N, {network.sizes[0]}), outputs output_label (N,) and output_probability (N, {network.sizes[-1]})")
    return 0


if __name__ == "__main__":
    run(main)
