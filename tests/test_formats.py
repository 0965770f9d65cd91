"""python -m fastnet.train on data that is not IDX: a .npz file, or a directory of CSV files in the
common layout (a header, then label and pixels per line); bad files are one-line errors."""

import io
import json
import os
import zipfile
import zlib

import numpy as np
import pytest

from fastnet.data import formats, kind, load
from fastnet.data.arrays import as_rows
from fastnet.errors import InputError
from tests.helpers import assert_one_line_error, banded_images, npz_set, run_cli, write_csv, zip_bytes


def train(*args):
    """`python -m fastnet.train ARGS` from the repository root; the CompletedProcess."""
    return run_cli("fastnet.train", *args)


@pytest.fixture
def npz(tmp_path):
    return npz_set(tmp_path / "data.npz")


@pytest.mark.slow
def test_npz_trains_with_layers_fitted_to_its_data(npz, tmp_path):
    done = train("--data-dir", npz, "--epochs", "3", "--batch-size", "8", "--threads", "1",
                 "--save", tmp_path / "m.npz", "--metrics-json", tmp_path / "m.json")
    assert done.returncode == 0, done.stderr
    assert "layers 64,128,3" in done.stdout and str(npz) in done.stdout
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["layers"] == "64,128,3" and metrics["test_accuracy"] > 0.9
    ev = run_cli("fastnet.evaluate", tmp_path / "m.npz", "--json")  # finds the .npz it was trained on
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["test_accuracy"] == metrics["test_accuracy"]


@pytest.mark.slow
def test_npz_of_float_features(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    np.savez(tmp_path / "f.npz", X_train=X[:150], y_train=y[:150], X_test=X[150:], y_test=y[150:])
    done = train("--data-dir", tmp_path / "f.npz", "--epochs", "5", "--batch-size", "16", "--threads", "1",
                 "--metrics-json", tmp_path / "m.json")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "m.json").read_text())["test_accuracy"] > 0.85


@pytest.mark.slow
def test_csv_directory_of_two_images_per_class_trains_with_default_flags(tmp_path):
    """Ten classes of 28x28 images, two of each, in fashion-mnist_train.csv / _test.csv: no flag but
    --data-dir (5 epochs, 784-128-10, one image held out for validation)."""
    data = tmp_path / "csv"
    data.mkdir()
    write_csv(data / "fashion-mnist_train.csv", *banded_images(20, 10, side=28))
    write_csv(data / "fashion-mnist_test.csv", *banded_images(10, 10, side=28, seed=1))
    done = train("--data-dir", data)
    assert done.returncode == 0, done.stderr
    assert "19 train / 1 val, layers 784,128,10" in done.stdout
    assert len([line for line in done.stdout.splitlines() if line.startswith("epoch ")]) == 5
    assert "test accuracy" in done.stdout


def test_csv_reader(tmp_path):
    X, y = banded_images(12, 3)
    for header in (True, False):
        path = write_csv(tmp_path / f"train{header}.csv", X, y, header)
        rows, labels = formats.read_csv(path)
        assert rows.dtype == np.uint8 and labels.dtype == np.uint8
        np.testing.assert_array_equal(rows, X.reshape(12, -1))
        np.testing.assert_array_equal(labels, y)
    (tmp_path / "float.csv").write_text("label,a,b\n0,0.5,1.5\n1,2.25,-1\n")
    rows, labels = formats.read_csv(tmp_path / "float.csv")
    assert rows.dtype == np.float32 and rows.tolist() == [[0.5, 1.5], [2.25, -1.0]]


def test_data_dir_kinds(tmp_path, npz):
    assert kind(None) == kind(tmp_path) == "idx"
    assert kind(npz) == "npz"
    (tmp_path / "a_train.csv").write_text("label,p\n0,1\n")
    assert kind(tmp_path) == "csv"
    with pytest.raises(InputError, match="not one CSV file"):
        kind(tmp_path / "a_train.csv")


def bad_npz(tmp_path, **arrays):
    (X, y), (Xt, yt) = banded_images(20, 2), banded_images(10, 2, seed=1)
    members = dict(X_train=X, y_train=y, X_test=Xt, y_test=yt)
    members.update(arrays)
    path = tmp_path / "bad.npz"
    if isinstance(members["X_train"], str):
        path.write_text(members["X_train"])
    else:
        np.savez(path, **{k: v for k, v in members.items() if v is not None})
    return path


@pytest.mark.slow
@pytest.mark.parametrize("arrays, words", [
    (dict(y_test=None), ["lacks y_test"]),
    (dict(X_train="not a zip"), ["not a .npz"]),
    (dict(X_train=np.array([object()] * 20, dtype=object)), ["pickled objects"]),
    (dict(X_train=np.full((20, 4), np.nan)), ["X_train", "NaN"]),
    (dict(X_train=np.array(["a"] * 20)), ["X_train", "real numbers"]),
    (dict(y_train=-np.ones(20, int)), ["y_train", "non-negative integers"]),
    (dict(y_train=np.full(20, 0.5)), ["y_train", "non-negative integers"]),
    (dict(y_train=np.zeros(19, int)), ["y_train", "one label for each of the 20"]),
    (dict(X_test=np.zeros((10, 63), np.uint8)), ["63 pixels"]),
])
def test_bad_npz_files_are_one_line_errors(tmp_path, arrays, words):
    assert_one_line_error(train("--data-dir", bad_npz(tmp_path, **arrays), "--backend", "numpy"), 2, *words)


@pytest.mark.slow
@pytest.mark.parametrize("files, words", [
    ({"x_train.csv": "label,p1,p2\n0,1,2\n1,3\n", "x_test.csv": "label,p1,p2\n0,1,2\n"},
     ["x_train.csv", "line 3 has 2 columns"]),
    ({"x_train.csv": "label,p1\n0,1\n1,abc\n", "x_test.csv": "label,p1\n0,1\n"}, ["x_train.csv", "line 3 holds 'abc'"]),
    ({"x_train.csv": "label,p1\n", "x_test.csv": "label,p1\n0,1\n"}, ["x_train.csv", "no rows"]),
    ({"x_train.csv": "label,p1\n0,1\n", "y_train.csv": "label,p1\n0,1\n", "x_test.csv": "label,p1\n0,1\n"},
     ["2 *train*.csv files", "keep one"]),
    ({"x_train.csv": "label,p1\n0,1\n1,2\n"}, ["no *test*.csv"]),
    ({"x_train.csv": "label,p1\n0,1\n-1,2\n", "x_test.csv": "label,p1\n0,1\n"}, ["label column", "non-negative"]),
    ({"x_train.csv": "label\n0\n1\n", "x_test.csv": "label\n0\n"}, ["1 column"]),
])
def test_bad_csv_files_are_one_line_errors(tmp_path, files, words):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert_one_line_error(train("--data-dir", tmp_path, "--backend", "numpy"), 2, *words)


def test_one_csv_file_is_not_a_data_dir(tmp_path):
    write_csv(tmp_path / "train.csv", *banded_images(4, 2))
    assert_one_line_error(train("--data-dir", tmp_path / "train.csv", "--backend", "numpy"), 2, "*test*.csv")


def test_untrusted_data_files_are_read_within_bounds(tmp_path):
    """A label of 10**9 (10**9 classes), a member whose .npy header claims a terabyte, and a FIFO
    named train.csv: each is refused before anything large is allocated or a read blocks."""
    (X, y), (Xt, yt) = banded_images(40, 4), banded_images(20, 4, seed=1)
    huge_label = tmp_path / "label.npz"
    np.savez(huge_label, X_train=X, y_train=np.r_[y[:-1], 10**9], X_test=Xt, y_test=yt)
    with pytest.raises(InputError, match="label 1000000000"):
        load("fashion-mnist", "train", str(huge_label))
    forged = tmp_path / "forged.npz"
    np.savez(forged, X_train=X, y_train=y, y_test=yt)  # X_test comes next, forged
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.uint8))
    header["shape"] = (10**12,)
    raw = io.BytesIO()
    np.lib.format.write_array_header_1_0(raw, header)
    with zipfile.ZipFile(forged, "a") as zf:
        zf.writestr("X_test.npy", raw.getvalue() + bytes(100))
    with pytest.raises(InputError, match="larger than its data"):
        load("fashion-mnist", "test", str(forged))
    folder = tmp_path / "csv"
    folder.mkdir()
    write_csv(folder / "test.csv", Xt, yt)
    os.mkfifo(folder / "train.csv")
    with pytest.raises(InputError, match="not a regular file"):
        load("fashion-mnist", "train", str(folder))


def npy(array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array)
    return buffer.getvalue()


def forged_npz(tmp_path, x_train, **member):
    """A .npz of the four members, written by hand (helpers.zip_bytes): X_train's .npy bytes are
    x_train, stored as `member` says (method, flags, the sizes its directory claims, deflated)."""
    (_, y), (Xt, yt) = banded_images(20, 2), banded_images(10, 2, seed=1)
    members = [dict(name=f"{k}.npy", data=npy(v), crc=zlib.crc32(npy(v)))
               for k, v in dict(y_train=y, X_test=Xt, y_test=yt).items()]
    first = dict(name="X_train.npy", data=x_train, crc=zlib.crc32(x_train), size=len(x_train))
    if member.pop("deflate", False):
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        first.update(data=packer.compress(x_train) + packer.flush(), method=zipfile.ZIP_DEFLATED)
    first.update(member)
    path = tmp_path / "forged.npz"
    path.write_bytes(zip_bytes([first, *members]))
    return str(path)


def huge_header(shape, descr="|u1"):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


@pytest.mark.parametrize("member, words", [
    (dict(flags=1), ["'X_train' is encrypted"]),
    (dict(method=99), ["compression method 99"]),
    (dict(method=zipfile.ZIP_DEFLATED, deflate=True, size=179 << 30), ["claims 192,", "deflate"]),
    (dict(size=179 << 30), ["claims 192,", "stored"]),
    (dict(compressed=179 << 30), ["compressed bytes, more than the file holds"]),
])
def test_npz_members_are_read_within_bounds(tmp_path, member, words):
    """An encrypted member, an unknown compression method, a directory claiming 179 GiB for a
    member of a few KB (stored or deflated; the .npy header claiming as much), a compressed size
    beyond the file: each is one InputError, before anything is allocated (no MemoryError)."""
    data = huge_header((179 << 30,)) + bytes(4000) if "size" in member else npy(banded_images(20, 2)[0])
    path = forged_npz(tmp_path, data, **member)
    with pytest.raises(InputError) as caught:
        load("fashion-mnist", "train", path)
    assert all(w in str(caught.value) for w in words), caught.value


def test_npz_member_beyond_the_memory_available_is_not_read(tmp_path, monkeypatch):
    """A member whose sizes agree (a real deflated 4 MB of zeros) but are more than the memory left."""
    path = forged_npz(tmp_path, npy(np.zeros((4000, 1000), np.uint8)), deflate=True)
    monkeypatch.setattr(formats.memory, "available", lambda: 1 << 20)
    with pytest.raises(InputError, match="more than the 1 MiB of memory available"):
        load("fashion-mnist", "train", path)


def test_npz_member_shorter_than_its_claim_is_an_error(tmp_path):
    """A header and directory that agree on 40 MB, deflated data that hold 4 KB: the read ends with
    an error, having filled only what arrived."""
    data = huge_header((40_000_000,)) + bytes(4000)
    with pytest.raises(InputError, match="forged.npz"):
        load("fashion-mnist", "train", forged_npz(tmp_path, data, deflate=True, size=40_000_128))


@pytest.mark.parametrize("order", ["C", "F"])
def test_hand_written_npz_of_any_layout_reads_as_numpy_writes_it(tmp_path, order):
    X = np.asfortranarray(banded_images(20, 2)[0].reshape(20, -1)) if order == "F" else banded_images(20, 2)[0]
    images_, labels = load("fashion-mnist", "train", forged_npz(tmp_path, npy(X), deflate=True))
    np.testing.assert_array_equal(images_, X.reshape(20, -1))
    assert images_.flags.c_contiguous and labels.tolist() == banded_images(20, 2)[1].tolist()


@pytest.mark.parametrize("dtype", [">f4", ">f8", ">i4", "<f4"])
def test_other_byte_orders_become_native_with_the_same_values(dtype):
    X = np.random.default_rng(0).normal(size=(6, 3)).astype(dtype)
    rows = as_rows(X)
    assert rows.dtype.isnative and rows.dtype.itemsize == (4 if dtype[1:] == "f4" else 8)
    np.testing.assert_array_equal(rows, X)


@pytest.mark.slow
def test_big_endian_npz_trains_the_same_model_as_native(tmp_path):
    """The CLI on a .npz of >f4 images gives the bits of the same images in native order."""
    X = np.random.default_rng(0).normal(size=(60, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    for name, dtype in (("native", "<f4"), ("big", ">f4")):
        np.savez(tmp_path / f"{name}.npz", X_train=X.astype(dtype), y_train=y, X_test=X[:20].astype(dtype),
                 y_test=y[:20])
        done = train("--data-dir", tmp_path / f"{name}.npz", "--epochs", "2", "--threads", "1", "--quiet",
                     "--save", tmp_path / f"{name}-model.npz")
        assert done.returncode == 0, done.stderr
    native, big = (np.load(tmp_path / f"{name}-model.npz")["params"] for name in ("native", "big"))
    np.testing.assert_array_equal(native, big)


def test_csv_with_a_byte_order_mark_and_no_header_keeps_its_first_row(tmp_path):
    X, y = banded_images(6, 3)
    path = write_csv(tmp_path / "train.csv", X, y, header=False)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    rows, labels = formats.read_csv(path)
    assert len(rows) == 6 and labels.tolist() == y.tolist()
    np.testing.assert_array_equal(rows, X.reshape(6, -1))
    with_header = write_csv(tmp_path / "h.csv", X, y)
    with_header.write_bytes(b"\xef\xbb\xbf" + with_header.read_bytes())
    assert len(formats.read_csv(with_header)[0]) == 6


def test_utf16_csv_and_float_labels_beyond_any_class_are_one_line_errors(tmp_path):
    """UTF-16 text is named as such (not 'line 2 holds a NUL'); a float label of 1e20 is refused before
    a cast to integers that cannot hold it (NumPy warned on stderr, a second line)."""
    X, y = banded_images(6, 3)
    path = write_csv(tmp_path / "train.csv", X, y)
    path.write_bytes(path.read_text().encode("utf-16"))
    with pytest.raises(InputError, match="is UTF-16 text; save it as UTF-8"):
        formats.read_csv(path)
    path.write_text("label,p\n1e20,1\n0,2\n")
    with np.errstate(all="raise"), pytest.raises(InputError, match="holds label 1e"):
        formats.read_csv(path)
    path.write_text("label,p\n-1e20,1\n0,2\n")
    with np.errstate(all="raise"), pytest.raises(InputError, match="non-negative integers"):
        formats.read_csv(path)
