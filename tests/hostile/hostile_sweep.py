"""A hostile sweep of fastnet's commands: fresh cases of the red-team's defect families, each run in
a subprocess and classified.

    python tests/hostile/hostile_sweep.py            # every case (about two minutes)
    python tests/hostile/hostile_sweep.py --fast     # the FAST subset, which tests/hostile/test_sweep.py runs
    python tests/hostile/hostile_sweep.py -k fifo -v # cases whose name holds "fifo", with their stderr

A case is clean when its command exits with the status the case expects (0 done, 2 bad input,
3 divergence, 130 interrupted; a process killed by the signal the case sent, which happens when a
second signal lands while the interpreter shuts down, counts as 130) and writes no traceback; when
on failure stderr holds one line ("error: ..." for 2 and 3, "interrupted", "terminated" or "hung up"
for 130) besides "note:", "downloading" and "compiling kernels" lines, and on success none; when it
leaves no temporary file anywhere in its folder; and when every file it was not asked to write is
as it was. Anything else is a defect. The sweep prints each defect, the counts, and exits 1 when
there is any; a case marked `known` (a defect in a file owned elsewhere, reported) is listed apart.

Each case runs in a fresh copy of one folder: data/ (a custom IDX set of 300 training and 60 test
images of 8x8 pixels in 4 classes), model.npz (a 64,8,4 model trained one epoch on it, a complete
checkpoint) and img.png, with a private cache, no network (the mirror is a closed port on
127.0.0.1) and one thread. Commands run on the numpy backend unless a case is about Numba.
"""

import argparse
import dataclasses
import gzip
import hashlib
import http.server
import json
import os
import queue
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ["fastnet.train", "--epochs", "1", "--quiet", "--val-split", "20", "--layers", "64,8,4",
         "--backend", "numpy", "--threads", "1", "--data-dir", "{data}"]
LOUD = [a for a in TRAIN if a != "--quiet"]
EVALUATE = ["fastnet.evaluate", "{model}", "--backend", "numpy", "--data-dir", "{data}"]
PREDICT = ["fastnet.predict", "{model}"]
FOREVER = ["--epochs", "1000000000"]
IS_ROOT = os.geteuid() == 0


@dataclasses.dataclass
class Case:
    """One hostile run: `python -m argv` in a fresh workspace, after setup(ws)."""

    name: str
    family: str
    argv: list
    code: object  # the exit status expected: an int, or a set when either outcome is right
    setup: object = None  # setup(ws) prepares the workspace
    env: dict = dataclasses.field(default_factory=dict)  # set (None: unset) in the environment
    writes: tuple = ()  # workspace paths the command may create or change
    signals: tuple = ()  # (signal, after: seconds or a text on stdout to wait for), in order
    stdout: str = "pipe"  # "pipe", "full" (/dev/full), "closed" (fd 1 closed), "broken" (reader gone)
    ignored: tuple = ()  # signals the command starts with ignored (nohup, a background job)
    check: object = None  # check(ws) -> a problem (str) or None, after the run
    fast: bool = False  # in the FAST subset that tests/hostile/test_sweep.py runs
    timeout: float = 60
    known: str = ""  # a defect found and reported to the owner of a file this sweep's author may not edit


CASES = []


def case(name, family, argv, code, **kw):
    CASES.append(Case(name, family, list(argv), code, **kw))


# ----------------------------------------------------------------- workspace helpers

def idx_bytes(array, dtype_code=0x08):
    array = np.ascontiguousarray(array, np.uint8)
    return bytes([0, 0, dtype_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def put(ws, rel, payload):
    """Write payload (bytes) at ws/rel, replacing any file there."""
    path = ws / rel
    if path.exists() or path.is_symlink():
        path.unlink()
    path.write_bytes(payload)


def images(n=300, side=8):
    return np.random.default_rng(1).integers(0, 256, (n, side, side))


def labels(n=300, classes=4):
    return np.arange(n) % classes


TI, TL, SI, SL = ("data/train-images-idx3-ubyte", "data/train-labels-idx1-ubyte",
                  "data/t10k-images-idx3-ubyte", "data/t10k-labels-idx1-ubyte")


def fifo(rel):
    def setup(ws):
        path = ws / rel
        if path.exists():
            path.unlink()
        os.mkfifo(path)
    return setup


def link(rel, target):
    def setup(ws):
        path = ws / rel
        if path.exists() or path.is_symlink():
            path.unlink()
        os.symlink(target, path)
    return setup


def mkdir(rel):
    def setup(ws):
        path = ws / rel
        if path.exists():
            path.unlink()
        path.mkdir()
    return setup


def data_file(rel, payload):
    return lambda ws: put(ws, rel, payload)


def model_with(**members):
    """Setup: model.npz with members replaced (values: arrays, or callables of the old array);
    None drops a member; a dict for recipe/trained/progress updates its JSON."""
    def setup(ws):
        path = ws / "model.npz"
        arrays = dict(np.load(path))
        for key, value in members.items():
            if value is None:
                arrays.pop(key, None)
                continue
            if isinstance(value, dict):
                doc = json.loads(str(arrays[key]))
                doc.update(value)
                value = np.array(json.dumps(doc))
            elif callable(value):
                value = value(arrays[key])
            arrays[key] = value
        path.unlink()
        np.savez(path, **arrays)
    return setup


def png(rel, array):
    def setup(ws):
        from PIL import Image

        Image.fromarray(array).save(ws / rel)
    return setup


def png_claiming(rel, width, height):
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    payload = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
               + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))
    return data_file(rel, payload)


def loads_as_model(rel, epochs=None):
    """Check: ws/rel is a complete model file (and has `epochs` epochs, when given)."""
    def check(ws):
        sys.path.insert(0, str(ROOT))
        from fastnet import checkpoint
        from fastnet.optim import OPTIMIZERS

        try:
            state, _, _ = checkpoint.load_state(str(ws / rel), OPTIMIZERS)
        except Exception as exc:  # noqa: BLE001 - any failure is the finding
            return f"{rel} is not a complete model: {exc}"
        if epochs is not None and state.epoch != epochs:
            return f"{rel} has {state.epoch} epochs, expected {epochs}"
        return None
    return check


def both(*setups):
    def setup(ws):
        for s in setups:
            s(ws)
    return setup


# ----------------------------------------------------------------- the cases

# flags: huge, negative, NaN, malformed values
for name, args, code in [
    ("epochs_negative", ["--epochs", "-1"], 2), ("epochs_float", ["--epochs", "1e3"], 2),
    ("epochs_empty", ["--epochs", ""], 2), ("batch_negative", ["--batch-size", "-1"], 2),
    ("batch_hex", ["--batch-size", "0x10"], 2), ("batch_1e9", ["--batch-size", "1000000000"], 0),
    ("lr_inf", ["--lr", "inf"], 2), ("lr_negative_zero", ["--lr", "-0"], 2), ("lr_underflow", ["--lr", "1e-400"], 2),
    ("lr_overflow", ["--lr", "1e400"], 2), ("lr_tiny", ["--lr", "1e-30"], 0), ("beta1_one", ["--beta1", "1"], 2),
    ("beta1_nan", ["--beta1", "nan"], 2), ("beta2_negative", ["--beta2", "-0.1"], 2), ("beta2_inf", ["--beta2", "inf"], 2),
    ("eps_nan", ["--eps", "nan"], 2), ("eps_zero", ["--eps", "0"], 2), ("eps_negative", ["--eps", "-1"], 2),
    ("eps_inf", ["--eps", "inf"], 2), ("eps_denormal_float64", ["--eps", "1e-310", "--dtype", "float64"], 2),
    ("warmup_negative", ["--warmup", "-1"], 2), ("warmup_1e9", ["--warmup", "1000000000"], 0),
    ("warmup_float", ["--warmup", "1.5"], 2), ("val_split_one", ["--val-split", "1.0"], 2),
    ("val_split_all", ["--val-split", "300"], 2), ("val_split_all_but_one", ["--val-split", "299"], 0),
    ("val_split_nan", ["--val-split", "nan"], 2), ("val_split_negative_fraction", ["--val-split", "-0.5"], 2),
    ("val_split_0999", ["--val-split", "0.999"], 0), ("seed_2_pow_70", ["--seed", str(2**70)], 0),
    ("seed_nan", ["--seed", "nan"], 2), ("layers_empty_size", ["--layers", "64,,4"], 2),
    ("layers_trailing_comma", ["--layers", "64,8,4,"], 2), ("layers_spaces", ["--layers", " 64, 8 ,4"], 0),
    ("layers_negative", ["--layers", "64,-8,4"], 2), ("layers_zero_classes", ["--layers", "64,8,0"], 2),
    ("layers_float", ["--layers", "64,1e3,4"], 2), ("layers_huge", ["--layers", "64,99999999999,4"], 2),
    ("layers_wrong_inputs", ["--layers", "65,8,4"], 2), ("layers_too_few_classes", ["--layers", "64,8,3"], 2),
    ("layers_too_many_classes", ["--layers", "64,8,40"], 2), ("layers_one_size", ["--layers", "64"], 2),
    ("layers_empty", ["--layers", ""], 2), ("threads_zero", ["--threads", "0"], 2),
    ("threads_negative", ["--threads", "-1"], 2), ("threads_huge", ["--threads", str(10**20)], 2),
    ("dtype_float16", ["--dtype", "float16"], 2), ("optimizer_unknown", ["--optimizer", "sgd"], 2),
    ("checkpoint_every_without_save", ["--checkpoint-every", "1"], 2),
    ("checkpoint_every_zero", ["--checkpoint-every", "0", "--save", "m.npz"], 2),
    ("preset_unknown", ["--preset", "bogus"], 2), ("flag_unknown", ["--foo"], 2),
    ("dataset_unknown", ["--dataset", "nope"], 2), ("schedule_unknown", ["--schedule", "linear"], 2),
    ("backend_empty", ["--backend", ""], 2), ("positional_junk", ["extra"], 2),
    ("alpha_nan", ["--alpha", "nan"], 2), ("alpha_negative", ["--alpha", "-1"], 2), ("alpha_inf", ["--alpha", "inf"], 2),
    ("alpha_huge_diverges", ["--alpha", "1e300"], 3), ("activation_unknown", ["--activation", "gelu"], 2),
    ("activation_tanh", ["--activation", "tanh"], 0),
]:
    case(f"flag_{name}", "flags", TRAIN + args, code, fast=name in ("lr_underflow", "threads_huge", "batch_1e9"))

# outputs: devices, FIFOs, links, directories, odd names, the same file twice
LONG = "m" * 300 + ".npz"
for name, args, code, setup, writes in [
    ("save_dev_zero", ["--save", "/dev/zero"], 2, None, ()),
    ("save_fifo", ["--save", "out.fifo"], 2, fifo("out.fifo"), ()),
    ("save_link_to_dev_null", ["--save", "null.npz"], 2, link("null.npz", "/dev/null"), ()),
    ("save_existing_directory", ["--save", "data"], 2, None, ()),
    ("save_missing_directory", ["--save", "missing/m.npz"], 2, None, ()),
    ("save_dangling_link", ["--save", "dangling.npz"], 0, link("dangling.npz", "nowhere.npz"), ("dangling.npz",)),
    ("metrics_dev_stdout", ["--metrics-json", "/dev/stdout"], 2, None, ()),
    ("metrics_fifo", ["--metrics-json", "m.fifo"], 2, fifo("m.fifo"), ()),
    ("plot_dev_null", ["--plot", "/dev/null"], 2, None, ()),
    ("plot_regular_file", ["--plot", "model.npz"], 2, None, ()),
    ("save_unicode_name", ["--save", "mödel ☃.npz"], 0, None, ("mödel ☃.npz",)),
    ("save_newline_name", ["--save", "a\nb.npz"], 0, None, ("a\nb.npz",)),
    ("save_name_too_long", ["--save", LONG], 2, None, ()),
    ("metrics_same_as_resume", ["--resume", "model.npz", "--epochs", "2", "--metrics-json", "model.npz"], 2, None, ()),
    ("save_and_metrics_same_spelled_twice", ["--save", "m.npz", "--metrics-json", "./m.npz"], 2, None, ()),
    ("save_and_metrics_same_via_link", ["--save", "m.npz", "--metrics-json", "alias.json"], 2,
     link("alias.json", "m.npz"), ()),
    ("save_proc_self_fd_1", ["--save", "/proc/self/fd/1"], 2, None, ()),
    ("plot_missing_parent", ["--plot", "missing/sub"], 2, None, ()),
    ("save_into_sys", ["--save", "/sys/fastnet.npz"], 2, None, ()),
    ("metrics_dev_full", ["--metrics-json", "/dev/full"], 2, None, ()),
    ("save_empty_and_metrics_empty", ["--save", "", "--metrics-json", ""], 2, None, ()),
    ("save_over_a_data_file", ["--save", TI], 0, None, (TI,)),  # allowed: the data were read first
]:
    case(f"out_{name}", "outputs", TRAIN + args, code, setup=setup, writes=writes,
         fast=name in ("save_fifo", "save_and_metrics_same_via_link"))

# data: devices, FIFOs and links where an IDX file should be; malformed and forged IDX files
RAW_TI = idx_bytes(images())
for name, setup, code in [
    ("dir_dev_null", None, 2), ("dir_missing", None, 2), ("dir_regular_file", None, 2),
    ("images_fifo", fifo(TI), 2), ("images_link_dev_zero", link(TI, "/dev/zero"), 2), ("images_directory", mkdir(TI), 2),
    ("wrong_magic", data_file(TI, b"\x01\x00" + RAW_TI[2:]), 2),
    ("float_elements", data_file(TI, idx_bytes(images(), 0x0D)), 2),
    ("labels_two_dims", data_file(TL, idx_bytes(labels().reshape(150, 2))), 2),
    ("images_four_dims", data_file(TI, idx_bytes(images().reshape(300, 8, 8, 1))), 2),
    ("truncated_body", data_file(TI, RAW_TI[:-7]), 2),
    ("trailing_bytes", data_file(TI, RAW_TI + b"xyz"), 2),
    ("truncated_gzip", data_file(TI + ".gz", gzip.compress(RAW_TI)[:-40]), 2),
    ("corrupt_gzip", data_file(TI + ".gz", (lambda b: b[:40] + bytes(x ^ 0xFF for x in b[40:80]) + b[80:])(
        gzip.compress(RAW_TI))), 2),
    ("gzip_then_garbage", data_file(TI + ".gz", gzip.compress(RAW_TI) + b"garbage!"), 2),
    ("gz_name_raw_content", None, 0), ("raw_beside_broken_gz", data_file(TI + ".gz", b"broken"), 0),
    ("empty_images", data_file(TI, b""), 2),
    ("zero_images", both(data_file(TI, idx_bytes(np.zeros((0, 8, 8)))), data_file(TL, idx_bytes(np.zeros(0)))), 2),
    ("zero_pixel_images", data_file(TI, idx_bytes(np.zeros((300, 0, 8)))), 2),
    ("label_200", data_file(TL, idx_bytes(np.r_[labels()[:-1], 200])), 2),
    ("test_images_9x9", data_file(SI, idx_bytes(images(60, 9))), 2),
    ("test_labels_59", data_file(SL, idx_bytes(labels(59))), 2),
    ("gzip_bomb_consistent_header", data_file(TI + ".gz", gzip.compress(
        struct.pack(">BBBBIII", 0, 0, 8, 3, 20000, 28, 28) + bytes(20000 * 784))), 2),
    ("header_claims_4e9", data_file(TI, struct.pack(">BBBBIII", 0, 0, 8, 3, 4_000_000_000, 1, 1) + bytes(64)), 2),
    ("multi_member_gzip", data_file(TI + ".gz", gzip.compress(RAW_TI[:1000]) + gzip.compress(RAW_TI[1000:])), 0),
    ("test_label_beyond_train_classes", data_file(SL, idx_bytes(np.r_[labels(59), 4])), 2),
    ("dir_symlink_loop", link("loop", "loop"), 2),
]:
    argv = TRAIN
    if name == "dir_dev_null":
        argv = TRAIN + ["--data-dir", "/dev/null"]
    elif name == "dir_missing":
        argv = TRAIN + ["--data-dir", "missing"]
    elif name == "dir_regular_file":
        argv = TRAIN + ["--data-dir", "model.npz"]
    elif name == "dir_symlink_loop":
        argv = TRAIN + ["--data-dir", "loop"]
    elif name == "gz_name_raw_content":
        setup = lambda ws: os.rename(ws / TI, ws / (TI + ".gz"))  # noqa: E731
    elif name in ("truncated_gzip", "corrupt_gzip", "gzip_then_garbage", "multi_member_gzip",
                  "gzip_bomb_consistent_header"):
        setup = both(lambda ws: (ws / TI).unlink(), setup)
    case(f"data_{name}", "data", argv, code, setup=setup,
         fast=name in ("images_fifo", "gzip_bomb_consistent_header", "corrupt_gzip", "test_images_9x9"))

for name, argv, code, setup, env in [
    ("one_pixel_images", TRAIN + ["--layers", "1,4,4"], 0,
     both(data_file(TI, idx_bytes(images(300, 1))), data_file(SI, idx_bytes(images(60, 1)))), {}),
    ("one_training_image", TRAIN + ["--val-split", "0"], 0,
     both(data_file(TI, idx_bytes(images(1))), data_file(TL, idx_bytes([3]))), {}),
    ("one_class", TRAIN + ["--layers", "64,8,1"], 0,
     both(data_file(TL, idx_bytes(np.zeros(300))), data_file(SL, idx_bytes(np.zeros(60)))), {}),
    ("env_dir_missing", [a for a in TRAIN if a not in ("--data-dir", "{data}")], 2, None,
     {"FASHION_MNIST_DIR": "missing"}),
    ("cache_dir_is_a_file", TRAIN, 0, None, {"FASTNET_CACHE_DIR": "{ws}/model.npz"}),
    ("cache_dir_dev_null", TRAIN, 0, None, {"FASTNET_CACHE_DIR": "/dev/null"}),
    ("unicode_data_dir", [a if a != "{data}" else "dätä ☃" for a in TRAIN], 0,
     lambda ws: shutil.copytree(ws / "data", ws / "dätä ☃"), {}),
]:
    case(f"data_{name}", "data", argv, code, setup=setup, env=env)
if not IS_ROOT:  # root reads any file
    case("data_unreadable_images", "data", TRAIN, 2, setup=lambda ws: (ws / TI).chmod(0))

# models: what evaluate, predict and --resume are handed
for name, setup, code in [
    ("empty_file", data_file("model.npz", b""), 2), ("directory", mkdir("model.npz"), 2),
    ("link_dev_zero", link("model.npz", "/dev/zero"), 2), ("fifo", fifo("model.npz"), 2),
    ("link_dev_urandom", link("model.npz", "/dev/urandom"), 2),
    ("params_float16", model_with(params=lambda a: a.astype(np.float16)), 2),
    ("params_int32", model_with(params=lambda a: a.astype(np.int32)), 2),
    ("params_complex", model_with(params=lambda a: a.astype(np.complex64)), 2),
    ("params_short", model_with(params=lambda a: a[:-1]), 2),
    ("sizes_negative", model_with(sizes=np.array([64, -8, 4])), 2),
    ("sizes_float", model_with(sizes=np.array([64.0, 8.0, 4.0])), 2),
    ("sizes_huge", model_with(sizes=np.array([100000, 100000, 4])), 2),
    ("class_names_too_few", model_with(class_names=np.array(["a", "b"])), 2),
    ("class_names_ints", model_with(class_names=np.arange(4)), 2),
    ("input_scale_nan", model_with(input_scale=lambda a: a * np.nan), 2),
    ("recipe_not_json", model_with(recipe=np.array("{not json")), 2),
    ("recipe_a_list", model_with(recipe=np.array("[1, 2]")), 2),
    ("trained_unknown_dataset", model_with(trained={"dataset": "cifar"}), 2),
    ("format_other", model_with(format=np.array("other")), 2),
    ("version_99", model_with(version=np.array(99)), 2),
    ("truncated_zip", lambda ws: put(ws, "model.npz", (ws / "model.npz").read_bytes()[:500]), 2),
    ("npy_named_npz", lambda ws: np.save(ws / "model.npz.npy", np.zeros(3)) or os.replace(
        ws / "model.npz.npy", ws / "model.npz"), 2),
    ("pickle", lambda ws: put(ws, "model.npz", b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01."), 2),
    ("object_member", model_with(extra=np.array([{"a": 1}], dtype=object)), 2),
    ("params_more_outputs_than_data_classes", model_with(
        sizes=np.array([64, 8, 5]), params=lambda a: np.zeros(64 * 8 + 8 + 8 * 5 + 5, a.dtype),
        class_names=np.array(list("abcde"))), 0),
    ("encrypted_member", None, 2),
]:
    if name == "encrypted_member":
        def setup(ws):  # the "encrypted" flag bit set on every member: zipfile asks for a password
            blob = bytearray((ws / "model.npz").read_bytes())
            for sig, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
                start = 0
                while (start := blob.find(sig, start)) >= 0:
                    blob[start + at] |= 1
                    start += 4
            put(ws, "model.npz", bytes(blob))
    if name == "object_member":  # np.savez would pickle it: write the member by hand
        def setup(ws):
            with zipfile.ZipFile(ws / "model.npz", "a") as zf, zf.open("extra.npy", "w") as f:
                np.lib.format.write_array(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    case(f"model_{name}", "models", EVALUATE, code, setup=setup,
         fast=name in ("fifo", "params_float16", "encrypted_member", "sizes_huge"))

for name, argv, code, setup in [
    ("resume_model_without_progress", TRAIN + ["--resume", "model.npz", "--epochs", "2"], 2, model_with(progress=None)),
    ("resume_missing", TRAIN + ["--resume", "missing.npz", "--epochs", "2"], 2, None),
    ("resume_no_more_epochs", TRAIN + ["--resume", "model.npz"], 2, None),
    ("resume_epoch_rng_garbage", TRAIN + ["--resume", "model.npz", "--epochs", "2"], 2,
     model_with(progress={"batch": 1, "partial_losses": [1.0], "epoch_rng": {"bit_generator": "nope"}})),
    ("resume_adam_moment_nan", TRAIN + ["--resume", "model.npz", "--epochs", "2"], 2,
     model_with(opt_m=lambda a: a * np.nan)),
    ("resume_history_dict_values", TRAIN + ["--resume", "model.npz", "--epochs", "2"], 2,
     model_with(progress={"history": {"train_loss": {"a": 1}}})),
    ("resume_step_negative", TRAIN + ["--resume", "model.npz", "--epochs", "2"], 2,
     model_with(opt_step=np.array(-5))),
    ("resume_trained_threads_text", TRAIN[:-6] + ["--data-dir", "{data}", "--resume", "model.npz", "--epochs", "2"],
     2, model_with(trained={"threads": "many"})),
    ("resume_continues", TRAIN + ["--resume", "model.npz", "--epochs", "2"], 0, None),
    ("evaluate_other_inputs", EVALUATE, 2, both(data_file(TI, idx_bytes(images(300, 9))),
                                                data_file(SI, idx_bytes(images(60, 9))))),
    ("evaluate_dataset_mnist_on_custom", EVALUATE + ["--dataset", "mnist"], 0, None),
]:
    writes = ("model.npz",) if name == "resume_continues" else ()
    case(f"model_{name}", "models", argv, code, setup=setup, writes=writes,
         check=loads_as_model("model.npz", 2) if name == "resume_continues" else None)

# predict: what is handed over as an image
for name, args, code, setup in [
    ("missing", ["missing.png"], 2, None), ("text", ["model.npz"], 2, None), ("directory", ["data"], 2, None),
    ("dev_zero", ["/dev/zero"], 2, None), ("fifo", ["img.fifo"], 2, fifo("img.fifo")),
    ("link_dev_urandom", ["rand.png"], 2, link("rand.png", "/dev/urandom")),
    ("truncated_png", ["cut.png"], 2, lambda ws: put(ws, "cut.png", (ws / "img.png").read_bytes()[:60])),
    ("one_pixel", ["one.png"], 0, png("one.png", np.array([[200]], np.uint8))),
    ("header_30M_by_1", ["wide.png"], 2, png_claiming("wide.png", 30_000_000, 1)),
    ("top_zero", ["{img}", "--top", "0"], 2, None), ("top_1000", ["{img}", "--top", "1000"], 0, None),
    ("float_tiff_nan", ["nan.tiff"], 2, png("nan.tiff", np.full((8, 8), np.nan, np.float32))),
    ("escape_in_file_name", ["\x1b[2Jx.png"], 0, lambda ws: shutil.copy(ws / "img.png", ws / "\x1b[2Jx.png")),
    ("rgba_16_bit", ["rgba.png"], 0, png("rgba.png", np.zeros((8, 8, 4), np.uint8))),
    ("non_square_model", ["{img}"], 2, model_with(
        sizes=np.array([10, 8, 4]), params=lambda a: np.zeros(10 * 8 + 8 + 8 * 4 + 4, a.dtype),
        input_scale=np.ones(10, np.float32), input_shift=np.zeros(10, np.float32))),
]:
    case(f"predict_{name}", "predict", PREDICT + args, code, setup=setup, fast=name in ("fifo", "header_30M_by_1"))

# signals at other moments
case("signal_sigint_mid_training_saves", "signals", LOUD + FOREVER + ["--save", "m.npz"], 130,
     signals=((signal.SIGINT, "epoch 2/"),), writes=("m.npz",), check=loads_as_model("m.npz"), fast=True)
case("signal_sigterm_mid_training_saves", "signals", LOUD + FOREVER + ["--save", "m.npz"], 130,
     signals=((signal.SIGTERM, "epoch 2/"),), writes=("m.npz",), check=loads_as_model("m.npz"))
case("signal_sighup_mid_training_saves", "signals", LOUD + FOREVER + ["--save", "m.npz"], 130,
     signals=((signal.SIGHUP, "epoch 2/"),), writes=("m.npz",), check=loads_as_model("m.npz"))
case("signal_sigint_without_save", "signals", LOUD + FOREVER, 130, signals=((signal.SIGINT, "epoch 1/"),))
case("signal_double_sigint_keeps_a_complete_model", "signals", LOUD + FOREVER + ["--save", "model.npz"], 130,
     signals=((signal.SIGINT, "epoch 1/"), (signal.SIGINT, 0.01)), writes=("model.npz",),
     check=loads_as_model("model.npz"))
# at 0.2 s a numba-backend command is importing its modules (NumPy, then Numba): one line, no traceback
START = TRAIN + ["--backend", "numba"]
case("signal_sigint_at_start_up", "signals", START, 130, signals=((signal.SIGINT, 0.2),), fast=True)
case("signal_sigterm_at_start_up", "signals", START, 130, signals=((signal.SIGTERM, 0.2),))
case("signal_sighup_at_start_up", "signals", START, 130, signals=((signal.SIGHUP, 0.2),))
case("signal_sighup_ignored_under_nohup", "signals", LOUD + ["--epochs", "3", "--save", "m.npz"], 0,
     signals=((signal.SIGHUP, "epoch 1/"),), ignored=(signal.SIGHUP,), writes=("m.npz",),
     check=loads_as_model("m.npz", 3))
case("signal_sigint_ignored_in_a_background_job", "signals", LOUD + ["--epochs", "3"], 0,
     signals=((signal.SIGINT, "epoch 1/"),), ignored=(signal.SIGINT,))
case("signal_sigint_with_checkpoints", "signals", LOUD + FOREVER + ["--save", "m.npz", "--checkpoint-every", "1"],
     130, signals=((signal.SIGINT, "epoch 3/"),), writes=("m.npz",), check=loads_as_model("m.npz"))
case("signal_sigint_during_download", "signals",
     [a for a in TRAIN if a not in ("--data-dir", "{data}")] + ["--dataset", "mnist"], 130,
     signals=((signal.SIGINT, 1.5),), env={"FASTNET_MIRROR": "{trickle}", "MNIST_DIR": None})

# environment
for name, argv, code, env, kw in [
    ("numba_threads_fraction", TRAIN + ["--backend", "numba"], 2, {"NUMBA_NUM_THREADS": "1.5"}, {}),
    ("numba_cache_dir_dev_null", TRAIN + ["--backend", "numba"], 0, {"NUMBA_CACHE_DIR": "/dev/null"}, {}),
    ("numba_disable_jit_bad", TRAIN + ["--backend", "numba"], 2, {"NUMBA_DISABLE_JIT": "abc"}, {}),
    ("home_unset", TRAIN, 0, {"HOME": None}, {}),
    ("home_missing", TRAIN, 0, {"HOME": "/nonexistent"}, {}),
    ("ascii_terminal_unicode_missing_dir", TRAIN + ["--data-dir", "dätä-☃"], 2, {"PYTHONIOENCODING": "ascii"}, {}),
    ("c_locale_unicode_save", TRAIN + ["--save", "mödel.npz"], 0, {"LC_ALL": "C", "LANG": "C"},
     {"writes": ("mödel.npz",)}),
    ("stdout_closed", TRAIN, 2, {}, {"stdout": "closed", "fast": True}),
    ("stdout_full_evaluate", EVALUATE, 2, {}, {"stdout": "full"}),
    ("stdout_reader_gone", EVALUATE, 1, {}, {"stdout": "broken"}),  # a closed pipe: exit 1, silently
    ("omp_threads_text", TRAIN, 0, {"OMP_NUM_THREADS": "abc"}, {}),
    ("mirror_ftp", [a for a in TRAIN if a not in ("--data-dir", "{data}")] + ["--dataset", "mnist"], 2,
     {"FASTNET_MIRROR": "ftp://127.0.0.1:9/", "MNIST_DIR": None}, {}),
    ("mirror_missing_file_url", [a for a in TRAIN if a not in ("--data-dir", "{data}")] + ["--dataset", "mnist"], 2,
     {"FASTNET_MIRROR": "file:///nonexistent/", "MNIST_DIR": None}, {}),
    ("mirror_not_a_url", [a for a in TRAIN if a not in ("--data-dir", "{data}")] + ["--dataset", "mnist"], 2,
     {"FASTNET_MIRROR": "not a url", "MNIST_DIR": None}, {}),
]:
    case(f"env_{name}", "environment", argv, code, env=env, **kw)
if os.environ.get("NUMBA_DISABLE_JIT") != "1":
    case("env_numba_disable_jit_trains", "environment", TRAIN + ["--backend", "numba"], 0,
         env={"NUMBA_DISABLE_JIT": "1"}, timeout=180)

# the other data formats (fastnet.data): a .npz file or a directory of two CSV files as --data-dir
def npz_data(rel, **changes):
    """Setup: a .npz data set from data/'s arrays, with members replaced (None drops one; bytes are
    written as the member's raw .npy contents)."""
    def setup(ws):
        sys.path.insert(0, str(ROOT))
        from fastnet.data.idx import read_idx

        arrays = {"X_train": read_idx(ws / TI), "y_train": read_idx(ws / TL),
                  "X_test": read_idx(ws / SI), "y_test": read_idx(ws / SL)}
        with zipfile.ZipFile(ws / rel, "w", zipfile.ZIP_DEFLATED) as zf:
            for key, value in {**arrays, **changes}.items():
                if value is None:
                    continue
                with zf.open(f"{key}.npy", "w", force_zip64=True) as f:
                    if isinstance(value, bytes):
                        f.write(value)
                    else:
                        np.lib.format.write_array(f, np.asarray(value), allow_pickle=True)
    return setup


def npy_header(shape, descr="|u1"):
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def csv_data(rel="csv", train_rows=None, test_rows=None):
    """Setup: rel/train.csv and rel/test.csv from data/'s arrays, a header line first; train_rows
    and test_rows (lists of text lines) replace the data lines when given."""
    def setup(ws):
        sys.path.insert(0, str(ROOT))
        from fastnet.data.idx import read_idx

        (ws / rel).mkdir()
        for split, (xi, yi), rows in (("train", (TI, TL), train_rows), ("test", (SI, SL), test_rows)):
            x, y = read_idx(ws / xi).reshape(-1, 64), read_idx(ws / yi)
            lines = rows if rows is not None else [f"{y[i]}," + ",".join(map(str, x[i])) for i in range(len(y))]
            (ws / rel / f"{split}.csv").write_text("label," + ",".join(f"p{i}" for i in range(64)) + "\n"
                                                  + "".join(line + "\n" for line in lines))
    return setup


NPZ_ARGS = [a for a in TRAIN if a != "{data}"]
for name, data_arg, code, setup, kw in [
    ("npz_good", "d.npz", 0, npz_data("d.npz"), {}),
    ("npz_pickled_images", "d.npz", 2, npz_data("d.npz", X_train=np.array([{"a": 1}], dtype=object)), {}),
    ("npz_missing_test_labels", "d.npz", 2, npz_data("d.npz", y_test=None), {}),
    ("npz_nan_pixels", "d.npz", 2, npz_data("d.npz", X_train=np.full((300, 64), np.nan)), {}),
    ("npz_negative_label", "d.npz", 2, npz_data("d.npz", y_train=np.r_[np.arange(299) % 4, -1]), {}),
    ("npz_fractional_labels", "d.npz", 2, npz_data("d.npz", y_train=np.arange(300) % 4 + 0.5), {}),
    ("npz_four_dim_images", "d.npz", 2, npz_data("d.npz", X_train=np.zeros((300, 8, 8, 1))), {}),
    ("npz_test_other_width", "d.npz", 2, npz_data("d.npz", X_test=np.zeros((60, 65))), {}),
    ("npz_truncated", "d.npz", 2, both(npz_data("d.npz"),
                                       lambda ws: put(ws, "d.npz", (ws / "d.npz").read_bytes()[:300])), {}),
    ("npz_label_1e9", "d.npz", 2, npz_data("d.npz", y_train=np.r_[np.arange(299) % 4, 10**9]),
     {"timeout": 15}),
    ("npz_header_claims_1_tb", "d.npz", 2, npz_data("d.npz", X_train=npy_header((10**12,)) + bytes(100)),
     {}),
    ("csv_good", "csv", 0, csv_data(), {}),
    ("csv_ragged_line", "csv", 2, csv_data(train_rows=["1,2,3"]), {}),
    ("csv_text_cell", "csv", 2, csv_data(train_rows=["1," + ",".join(["x"] * 64)]), {}),
    ("csv_header_only", "csv", 2, csv_data(train_rows=[]), {}),
    ("csv_nan_pixel", "csv", 2, csv_data(train_rows=["1," + ",".join(["nan"] * 64)] * 4), {}),
    ("csv_latin1_bytes", "csv", 2, both(csv_data(), lambda ws: (ws / "csv" / "train.csv").write_bytes(
        (ws / "csv" / "train.csv").read_bytes().replace(b"label", b"lab\xe9l\xff", 1) + b"1,\xe9\n")), {}),
    ("csv_two_train_files", "csv", 2, both(csv_data(), lambda ws: shutil.copy(
        ws / "csv" / "train.csv", ws / "csv" / "train2.csv")), {}),
    ("csv_label_1e9", "csv", 2, csv_data(train_rows=["1000000000," + ",".join(["1"] * 64)] + [
        f"{i % 4}," + ",".join(["1"] * 64) for i in range(40)]),
     {"timeout": 15}),
    ("csv_train_is_a_fifo", "csv", 2, both(csv_data(), lambda ws: (ws / "csv" / "train.csv").unlink(),
                                           fifo("csv/train.csv")),
     {"timeout": 15}),
]:
    case(f"formats_{name}", "formats", NPZ_ARGS + [data_arg], code, setup=setup,
         fast=name in ("npz_pickled_images", "csv_ragged_line"), **kw)


# show, gradcheck, evaluate's outputs
SHOW = ["fastnet.show", "--data-dir", "{data}"]
GRAD = ["fastnet.gradcheck", "--backend", "numpy", "--layers", "64,8,4", "--data-dir", "{data}"]
for name, argv, code, setup, writes in [
    ("show_count_zero", SHOW + ["--count", "0"], 2, None, ()),
    ("show_count_101", SHOW + ["--count", "101"], 2, None, ()),
    ("show_out_dev_null", SHOW + ["--out", "/dev/null"], 2, None, ()),
    ("show_out_fifo", SHOW + ["--out", "o.fifo"], 2, fifo("o.fifo"), ()),
    ("show_out_directory", SHOW + ["--out", "data"], 2, None, ()),
    ("show_split_unknown", SHOW + ["--split", "validation"], 2, None, ()),
    ("show_out_missing_dir", SHOW + ["--out", "missing/x.png"], 2, None, ()),
    ("show_seed_2_pow_70", SHOW + ["--seed", str(2**70), "--out", "s.png"], 0, None, ("s.png",)),
    ("show_one_image", SHOW + ["--out", "s.png"], 0,
     both(data_file(TI, idx_bytes(images(1))), data_file(TL, idx_bytes([2]))), ("s.png",)),
    ("gradcheck_samples_zero", GRAD + ["--samples", "0"], 2, None, ()),
    ("gradcheck_per_tensor_zero", GRAD + ["--per-tensor", "0"], 2, None, ()),
    ("gradcheck_no_hidden_layer", GRAD + ["--layers", "64,4"], 0, None, ()),
    ("gradcheck_wrong_inputs", GRAD + ["--layers", "65,8,4"], 2, None, ()),
    ("gradcheck_samples_huge", GRAD + ["--samples", "1000000"], 0, None, ()),
    ("evaluate_plot_dev_null", EVALUATE + ["--plot", "/dev/null"], 2, None, ()),
    ("evaluate_plot_regular_file", EVALUATE + ["--plot", "model.npz"], 2, None, ()),
    ("evaluate_json_to_full", EVALUATE + ["--json"], 2, None, ()),
]:
    case(f"cmd_{name}", "commands", argv, code, setup=setup, writes=writes,
         stdout="full" if name == "evaluate_json_to_full" else "pipe", fast=name == "show_out_fifo")


# ----------------------------------------------------------------- families kept in files of their own

def load_families(folder=Path(__file__).resolve().parent / "hostile_cases"):
    """Import every tests/hostile/hostile_cases/*.py: each defines add(case, sweep), which calls
    case(...) for its cases and may use this module's helpers (sweep.put, sweep.TRAIN, ...)."""
    import importlib.util

    sys.path.insert(0, str(ROOT))  # the families import tests.helpers when run as a script
    for path in sorted(folder.glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"hostile_cases.{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.add(case, sys.modules[__name__])


load_families()


# ----------------------------------------------------------------- running and classifying

def build_base(root, env):
    """data/, model.npz and img.png in root (the folder every case copies)."""
    sys.path.insert(0, str(ROOT))
    rng = np.random.default_rng(0)
    centers = rng.integers(0, 256, (4, 64))
    (root / "data").mkdir()
    for prefix, n in (("train", 300), ("t10k", 60)):
        y = np.arange(n) % 4
        x = np.clip(centers[y] + rng.normal(0, 60, (n, 64)), 0, 255)
        put(root, f"data/{prefix}-images-idx3-ubyte", idx_bytes(x.reshape(n, 8, 8)))
        put(root, f"data/{prefix}-labels-idx1-ubyte", idx_bytes(y))
    proc = subprocess.run([sys.executable, "-m", *[a.format(data=root / "data") for a in TRAIN],
                           "--save", str(root / "model.npz")], cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"cannot build the sweep's model: {proc.stderr}")
    try:
        from PIL import Image

        Image.fromarray(x[0].reshape(8, 8).astype(np.uint8)).save(root / "img.png")
    except ImportError:
        pass


def snapshot(ws):
    """{relative path: (kind, size, digest)} of everything in ws but the cache, never opening a FIFO."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(ws):
        rel_dir = Path(dirpath).relative_to(ws)
        if rel_dir.parts[:1] == ("cache",):
            continue
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if rel_dir == Path(".") and name == "cache":
                continue
            st = os.lstat(path)
            size, digest = 0, None  # a directory's size follows its entries: not compared
            if os.path.isfile(path) and not os.path.islink(path):
                size, digest = st.st_size, hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(rel_dir / name)] = (st.st_mode & 0o170000, size, digest)
    return found


def temporaries(ws):
    return [str(Path(d).relative_to(ws) / n) for d, _, files in os.walk(ws) for n in files if n.startswith(".tmp-")]


def run_case(c, base, env, extra):
    """Run one case in a fresh copy of base; returns (problems, proc summary)."""
    ws = Path(tempfile.mkdtemp(prefix="case-", dir=base.parent))
    try:
        shutil.copytree(base, ws, dirs_exist_ok=True, symlinks=True)
        if c.setup:
            c.setup(ws)
        names = dict(ws=ws, data=ws / "data", model=ws / "model.npz", img=ws / "img.png", **extra)
        argv = [a.format(**names) for a in c.argv]
        e = dict(env, FASTNET_CACHE_DIR=str(ws / "cache"))
        for k, v in c.env.items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = v.format(**names)
        before = snapshot(ws)
        code, out, err, problem = execute(c, argv, e, ws)
        problems = [problem] if problem else []
        if not problems:
            problems += classify(c, code, out, err)
        after = snapshot(ws)
        for rel in sorted(set(before) | set(after)):
            if rel in c.writes:
                continue
            if rel not in after:
                problems.append(f"removed {rel!r}")
            elif rel not in before:
                problems.append(f"left {rel!r} behind")
            elif before[rel] != after[rel]:
                problems.append(f"changed {rel!r}")
        problems += [f"left temporary file {t!r}" for t in temporaries(ws)]
        if c.check and not problems:
            found = c.check(ws)
            if found:
                problems.append(found)
        return problems, code, err
    finally:
        subprocess.run(["chmod", "-R", "u+rwX", str(ws)], capture_output=True)
        shutil.rmtree(ws, ignore_errors=True)


def execute(c, argv, env, ws):
    """Start the command, deliver the case's signals, collect (code, stdout, stderr, problem). Both
    streams are read by threads, so a command that hangs is killed at the case's timeout."""
    stdout = subprocess.PIPE
    devfull = None
    if c.stdout == "full":
        devfull = stdout = open("/dev/full", "w")
    cmd = [sys.executable, "-m", *argv]
    if c.stdout == "closed":
        cmd = ["sh", "-c", 'exec "$@" >&-', "sh", *cmd]

    def ignore():
        for sig in c.ignored:
            signal.signal(sig, signal.SIG_IGN)

    proc = subprocess.Popen(cmd, cwd=ws, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True,
                            preexec_fn=ignore if c.ignored else None)
    if devfull:
        devfull.close()
    if c.stdout == "broken":
        proc.stdout.close()
    err, lines = [], queue.Queue()
    readers = [threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)]
    if proc.stdout and not proc.stdout.closed:
        readers.append(threading.Thread(target=lambda: [lines.put(l) for l in proc.stdout] + [lines.put(None)],
                                        daemon=True))
    for r in readers:
        r.start()
    out, problem, deadline = [], None, time.monotonic() + c.timeout
    try:
        for sig, after in c.signals:
            if isinstance(after, str):  # wait for a line holding `after` (or the end of the output)
                while (line := lines.get(timeout=max(deadline - time.monotonic(), 0.01))) is not None:
                    out.append(line)
                    if after in line:
                        break
            else:
                time.sleep(after)
            proc.send_signal(sig)
        proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
    except (subprocess.TimeoutExpired, queue.Empty):
        proc.kill()
        proc.wait()
        problem = f"hung: killed after {c.timeout:g} s"
    for r in readers:
        r.join(10)
    while not lines.empty():
        out.append(lines.get() or "")
    return proc.returncode, "".join(out), "".join(err), problem


def classify(c, code, out, err):
    """The problems of a finished run: its exit status, its stderr, any traceback."""
    problems = []
    expected = c.code if isinstance(c.code, (set, frozenset)) else {c.code}
    lines = [l for l in err.strip().splitlines() if not l.startswith(("note: ", "downloading ", "compiling kernels"))]
    if "Traceback" in err or "Traceback" in out:
        problems.append("traceback")
    if code < 0 and -code in [sig for sig, _ in c.signals] and 130 in expected:
        code = 130  # a signal landing while the interpreter shuts down (handlers reset) kills it: 128 + n in a shell
    if code not in expected:
        problems.append(f"exit status {code}, expected {' or '.join(map(str, sorted(expected)))}")
    if code == 0:
        if lines:
            problems.append(f"succeeded but wrote to stderr: {lines[0][:120]!r}")
    elif code in (2, 3):
        if len(lines) != 1 or not lines[0].startswith("error: "):
            problems.append(f"not one 'error:' line on stderr ({len(lines)} lines)")
    elif code == 130:
        if len(lines) != 1 or not lines[0].startswith(("interrupted", "terminated", "hung up")):
            problems.append(f"not one 'interrupted' line on stderr ({len(lines)} lines)")
    elif code == 1 and c.stdout == "broken":
        if lines:
            problems.append(f"a closed pipe is quiet, but stderr says {lines[0][:120]!r}")
    return problems


class Trickle(http.server.BaseHTTPRequestHandler):
    """A mirror that claims a 1 MB file and sends `burst` bytes every `gap` seconds (the server's)."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 20))
        self.end_headers()
        try:
            for _ in range(240):
                self.wfile.write(b"\x1f" * self.server.burst)
                self.wfile.flush()
                time.sleep(self.server.gap)
        except OSError:  # the client gave up
            pass

    def log_message(self, *args):
        pass


def trickle_server(gap, burst=1):
    """A Trickle mirror on a free loopback port (127.0.0.1 only), serving in a daemon thread; stop it
    with shutdown() and server_close(). gap and burst may be changed while it runs."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    server.gap, server.burst = gap, burst
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def sweep(cases, verbose=False, out=sys.stdout):
    """Run cases; print each defect and the counts; return {name: problems} of the defects."""
    root = Path(tempfile.mkdtemp(prefix="fastnet-sweep-"))
    server = trickle_server(0.5)
    try:
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT), FASTNET_MIRROR="http://127.0.0.1:9/",
                   OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", FASTNET_CACHE_DIR=str(root / "cache"))
        for var in ("FASHION_MNIST_DIR", "MNIST_DIR", "NUMBA_NUM_THREADS", "NUMBA_CACHE_DIR"):
            env.pop(var, None)
        base = root / "base"
        base.mkdir()
        build_base(base, env)
        extra = {"trickle": f"http://127.0.0.1:{server.server_address[1]}/"}
        defects, families, known = {}, {}, []
        for c in cases:
            problems, code, err = run_case(c, base, env, extra)
            clean, total = families.get(c.family, (0, 0))
            families[c.family] = (clean + (not problems), total + 1)
            if problems and c.known:
                known.append(c.name)
                print(f"KNOWN  {c.name}: {'; '.join(problems)} [{c.known}]", file=out)
            elif c.known:
                print(f"FIXED  {c.name}: clean now; drop its `known` note", file=out)
            elif problems:
                defects[c.name] = problems
                print(f"DEFECT {c.name}: {'; '.join(problems)}", file=out)
                last = err.strip().splitlines()[-3:]
                for line in last:
                    print(f"    | {line[:200]}", file=out)
            elif verbose:
                print(f"clean  {c.name} (exit {code}) {err.strip().splitlines()[-1][:150] if err.strip() else ''}",
                      file=out)
        for family, (clean, total) in families.items():
            print(f"{family:12} {clean:3} clean of {total}", file=out)
        print(f"{'total':12} {len(cases) - len(defects) - len(known):3} clean of {len(cases)}, "
              f"{len(defects)} defects, {len(known)} known (reported)", file=out)
        return defects
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(root, ignore_errors=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fast", action="store_true", help="only the FAST subset")
    p.add_argument("-k", help="only cases whose name contains this")
    p.add_argument("-v", action="store_true", help="list clean cases too")
    args = p.parse_args(argv)
    cases = [c for c in CASES if (not args.fast or c.fast) and (not args.k or args.k in c.name)]
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)), "two cases share a name"
    return 1 if sweep(cases, args.v) else 0


if __name__ == "__main__":
    sys.exit(main())
