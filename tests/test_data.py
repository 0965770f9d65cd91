"""Tests of fastnet.data: the IDX reader, the search order, hash checks, the Split value, downloads,
the decoded cache, real data."""

import dataclasses
import functools
import gzip
import hashlib
import http.server
import os
import shutil
import socket
import struct
import threading
import tracemalloc
import types
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import write_idx
from fastnet import data
from fastnet.data import cache, idx, load, read_idx, sources
from fastnet.errors import InputError

REAL_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = [base for pair in data.SPLIT_FILES.values() for base in pair]


def encode(array) -> bytes:
    """The IDX bytes of a uint8 array."""
    array = np.asarray(array, dtype=np.uint8)
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def raises_naming(path, func, *args, **kwargs) -> str:
    """Call func, expect an InputError whose message is one line naming path; return the message."""
    with pytest.raises(InputError) as info:
        func(*args, **kwargs)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    return message


def make_set(directory, n_train=6, n_test=4, rows=3, cols=2, classes=3, gz=True, seed=0):
    """Write the four files of a small IDX data set into directory; return its arrays by base name."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, rows, cols), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % classes).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, rows, cols), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % classes).astype(np.uint8),
    }
    for base, array in arrays.items():
        write_idx(directory / (base + ".gz" if gz else base), array, gz=gz)
    return arrays


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_cache):
    """Every test: a private cache, no data-set variables from the environment."""
    for var in ("FASHION_MNIST_DIR", "MNIST_DIR", "FASTNET_MIRROR", "TOY_DIR"):
        monkeypatch.delenv(var, raising=False)


def register(monkeypatch, info):
    """Make info a known data set for one test (DATASETS is read-only: it is replaced, not edited)."""
    monkeypatch.setattr(sources, "DATASETS", types.MappingProxyType({**sources.DATASETS, info.name: info}))


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A known data set 'toy': its published files in pub/, hashes registered, an empty system dir."""
    pub = tmp_path / "pub"
    arrays = make_set(pub)
    info = data.DatasetInfo(
        name="toy",
        files=data.SPLIT_FILES,
        sha256={base: hashlib.sha256(encode(a)).hexdigest() for base, a in arrays.items()},
        class_names=["a", "b", "c"],
        env_var="TOY_DIR",
        system_dir=tmp_path / "system",
        mirror="http://127.0.0.1:9/",
        debian_package="dataset-toy",
    )
    register(monkeypatch, info)
    return types.SimpleNamespace(info=info, pub=pub, arrays=arrays)


def check_split(result, arrays, split="train"):
    """Assert that load's result is the split of arrays, flattened."""
    images, labels = result.images, result.labels
    want_images, want_labels = (arrays[base] for base in data.SPLIT_FILES[split])
    assert result.split == split
    assert images.dtype == np.uint8 and labels.dtype == np.uint8
    assert images.flags.c_contiguous
    np.testing.assert_array_equal(images, want_images.reshape(len(want_images), -1))
    np.testing.assert_array_equal(labels, want_labels)


# ---------------------------------------------------------------- the IDX reader


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("shape", [(5,), (4, 3, 2), (0, 28, 28), (2, 1), (1, 2, 3, 2)])
def test_round_trip(tmp_path, gz, shape):
    array = np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)
    got = read_idx(write_idx(tmp_path / "f", array, gz=gz))
    assert got.dtype == np.uint8 and got.shape == shape
    np.testing.assert_array_equal(got, array)


def test_gzip_is_told_by_magic_bytes_not_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "raw.gz", array)), array)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "packed", array, gz=True)), array)


def test_multi_member_gzip(tmp_path):
    payload = encode(np.arange(100, dtype=np.uint8))
    path = tmp_path / "f.gz"
    path.write_bytes(gzip.compress(payload[:30]) + gzip.compress(payload[30:]))
    np.testing.assert_array_equal(read_idx(path), np.arange(100))


GOOD = encode(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
MALFORMED = {
    "wrong magic": (b"\x01\x00" + GOOD[2:], "magic bytes 01 00"),
    "wrong type byte": (GOOD[:2] + b"\x0d" + GOOD[3:], "element type 0x0d"),
    "wrong rank": (encode(np.zeros((6, 4))), "2 dimensions, expected 3"),
    "rank zero": (b"\x00\x00\x08\x00", "0 dimensions"),
    "short header": (GOOD[:3], "too short for an IDX header"),
    "truncated header": (GOOD[:10], "truncated inside its IDX header"),
    "truncated body": (GOOD[:-1], "truncated"),
    "no body": (GOOD[:16], "truncated"),
    "trailing bytes": (GOOD + b"\x00", "trailing"),
    "header claims fewer": (GOOD[:4] + struct.pack(">III", 1, 3, 4) + GOOD[16:], "trailing"),
}


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("case", MALFORMED)
def test_malformed(tmp_path, case, gz):
    content, expected = MALFORMED[case]
    path = tmp_path / ("f.gz" if gz else "f")
    path.write_bytes(gzip.compress(content) if gz else content)
    assert expected in raises_naming(path, read_idx, path, rank=3)


def corrupt_middle(blob: bytes) -> bytes:
    """blob with the bytes in its middle inverted."""
    middle = len(blob) // 2
    return blob[:middle - 2] + bytes(b ^ 0xFF for b in blob[middle - 2:middle + 2]) + blob[middle + 2:]


GZ = gzip.compress(encode(np.random.default_rng(1).integers(0, 256, (50, 28, 28))))
BAD_FILES = {
    "empty file": (b"", "is empty"),
    "corrupt gzip": (corrupt_middle(GZ), "corrupt gzip data"),
    "truncated gzip": (GZ[: len(GZ) // 2], "truncated"),
    "gzip without trailer": (GZ[:-8], "truncated"),
    "gzip with bad crc": (GZ[:-8] + bytes(8), "corrupt gzip data"),
    "gzip header only": (GZ[:10], "truncated"),
    "gzip magic only": (b"\x1f\x8b", "truncated"),
    "garbage after gzip": (GZ + b"garbage!", "unexpected bytes after the end of its gzip data"),
    "one byte after gzip": (GZ + b"\x1f", "unexpected bytes after"),
    "bad second member": (GZ + b"\x1f\x8b\x07" + bytes(20), "corrupt gzip data"),
    "not gzip despite name": (b"PK\x03\x04 this is a zip file", "not gzip data despite its .gz name"),
    "gzip of nothing": (gzip.compress(b""), "too short for an IDX header"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_files(tmp_path, case):
    content, expected = BAD_FILES[case]
    path = tmp_path / "images.gz"
    path.write_bytes(content)
    assert expected in raises_naming(path, read_idx, path)


def test_unreadable_paths(tmp_path):
    assert "cannot read" in raises_naming(tmp_path / "none", read_idx, tmp_path / "none")
    assert "cannot read" in raises_naming(tmp_path, read_idx, tmp_path)


def peak_allocation(func) -> int:
    """The peak bytes traced by tracemalloc while func runs (its InputError expected and swallowed)."""
    tracemalloc.start()
    try:
        with pytest.raises(InputError):
            func()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dims", [(4_000_000_000, 28, 28), (4_000_000_000,), (4_000_000_000, 1, 1)])
def test_forged_header_fails_without_allocating(tmp_path, gz, dims):
    content = bytes([0, 0, 8, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + bytes(5000)
    path = tmp_path / "forged"
    path.write_bytes(gzip.compress(content) if gz else content)
    assert peak_allocation(functools.partial(read_idx, path)) < 2 << 20


def test_gzip_bomb_stops_once_past_the_header_claim(tmp_path):
    claimed = 1 << 20  # the header says 1 MiB; the gzip stream holds 32 MiB of zeros
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(struct.pack(">BBBBI", 0, 0, 8, 1, claimed) + bytes(32 << 20)))
    assert path.stat().st_size * idx.DEFLATE_MAX_RATIO > 32 << 20  # the size bound alone cannot catch it
    assert peak_allocation(functools.partial(read_idx, path)) < claimed + (4 << 20)
    assert "trailing data" in raises_naming(path, read_idx, path)


def test_gzip_holding_less_than_claimed(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8).tobytes()
    path = tmp_path / "short.gz"
    path.write_bytes(gzip.compress(struct.pack(">BBBBI", 0, 0, 8, 1, 10 << 20) + bytes(5 << 20) + noise))
    assert "is truncated" in raises_naming(path, read_idx, path)


# ---------------------------------------------------------------- where the files come from


def test_data_dir_beats_env_var(tmp_path, toy, monkeypatch):
    by_env = make_set(tmp_path / "env", n_train=7, n_test=3, seed=1)  # no file equal to toy's
    by_arg = make_set(tmp_path / "arg", n_train=5, n_test=2, seed=2)
    monkeypatch.setenv("TOY_DIR", str(tmp_path / "env"))
    by_arg_split = load("toy", data_dir=tmp_path / "arg")
    check_split(by_arg_split, by_arg)
    assert (by_arg_split.source, by_arg_split.found_by, by_arg_split.custom) == (tmp_path / "arg", "--data-dir", True)
    by_env_split = load("toy")
    check_split(by_env_split, by_env)
    assert (by_env_split.source, by_env_split.found_by, by_env_split.custom) == (tmp_path / "env", "$TOY_DIR", True)


def test_env_var_beats_system_dir_and_cache(tmp_path, toy, monkeypatch, tmp_cache):
    shutil.copytree(toy.pub, toy.info.system_dir)
    shutil.copytree(toy.pub, tmp_cache / "toy")
    by_env = make_set(tmp_path / "env", n_train=7, n_test=3, seed=1)
    monkeypatch.setenv("TOY_DIR", str(tmp_path / "env"))
    split = load("toy")
    check_split(split, by_env)
    assert split.source == tmp_path / "env"


def test_system_dir_beats_cache(toy, tmp_cache):
    shutil.copytree(toy.pub, toy.info.system_dir)
    make_set(tmp_cache / "toy", gz=False)  # the same arrays, raw
    split = load("toy", "test")
    check_split(split, toy.arrays, "test")
    assert (split.source, split.found_by, split.custom) == (toy.info.system_dir, "system copy", False)
    shutil.rmtree(toy.info.system_dir)
    split = load("toy", "test")
    check_split(split, toy.arrays, "test")
    assert (split.source, split.found_by, split.custom) == (tmp_cache / "toy", "user cache", False)


def test_explicit_data_dir_without_the_files_is_an_error(tmp_path, toy, monkeypatch):
    monkeypatch.setenv("TOY_DIR", str(toy.pub))
    (tmp_path / "empty").mkdir()
    message = raises_naming(tmp_path / "empty", load, "toy", data_dir=tmp_path / "empty")
    assert "--data-dir" in message and "train-images-idx3-ubyte" in message
    assert "no such directory" in raises_naming(tmp_path / "nowhere", load, "toy", data_dir=tmp_path / "nowhere")


def test_env_var_without_the_files_is_an_error(tmp_path, toy, monkeypatch):
    shutil.copytree(toy.pub, toy.info.system_dir)
    (toy.pub / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv("TOY_DIR", str(toy.pub))
    assert "$TOY_DIR" in raises_naming(toy.pub, load, "toy")


def test_nothing_found_without_download(toy):
    message = raises_naming(toy.info.system_dir, load, "toy", download=False)
    assert "apt-get install dataset-toy" in message and "--data-dir" in message


def test_unknown_name_or_split(toy):
    with pytest.raises(InputError, match="unknown data set"):
        load("cifar")
    with pytest.raises(InputError, match="unknown split"):
        load("toy", "validation", data_dir=toy.pub)


# ---------------------------------------------------------------- known data or just data


def test_trusted_copy_must_match(toy):
    shutil.copytree(toy.pub, toy.info.system_dir)
    bad = toy.info.system_dir / "train-labels-idx1-ubyte.gz"
    write_idx(bad, np.zeros(6), gz=True)
    assert "corrupt or modified" in raises_naming(bad, load, "toy")


def test_one_known_file_makes_the_set_known(tmp_path, toy):
    make_set(tmp_path / "mixed", seed=5)
    shutil.copy(toy.pub / "t10k-images-idx3-ubyte.gz", tmp_path / "mixed")
    message = raises_naming(tmp_path / "mixed" / "train-images-idx3-ubyte.gz", load, "toy",
                            data_dir=tmp_path / "mixed")
    assert "corrupt or modified" in message


def test_custom_set_is_just_data(tmp_path):
    arrays = make_set(tmp_path / "mine", classes=5, n_train=10, n_test=5, rows=4, cols=4)
    train = load(data_dir=tmp_path / "mine")
    test = load(split="test", data_dir=tmp_path / "mine")
    check_split(train, arrays)
    check_split(test, arrays, "test")
    for split in (train, test):  # a custom directory gets numbered class names, the count from train labels
        assert split.custom and split.dataset == "fashion-mnist"
        assert split.num_classes == 5
        assert split.class_names == ("0", "1", "2", "3", "4")


def test_custom_test_label_outside_class_range(tmp_path):
    make_set(tmp_path / "mine", classes=5, n_train=10)
    labels = tmp_path / "mine" / "t10k-labels-idx1-ubyte.gz"
    write_idx(labels, [0, 7, 1, 2], gz=True)
    message = raises_naming(labels, load, split="test", data_dir=tmp_path / "mine")
    assert "label 7 outside the class range 0..4" in message


def test_known_label_outside_class_range(tmp_path, toy, monkeypatch):
    # a data set without published payload hashes (like MNIST) found in a trusted place
    register(monkeypatch, dataclasses.replace(toy.info, sha256={}))
    make_set(toy.info.system_dir)
    labels = toy.info.system_dir / "train-labels-idx1-ubyte.gz"
    write_idx(labels, [0, 1, 2, 3, 1, 0], gz=True)
    assert "label 3 outside the class range 0..2" in raises_naming(labels, load, "toy")


def test_image_and_label_counts_must_agree(tmp_path):
    make_set(tmp_path / "mine")
    labels = write_idx(tmp_path / "mine" / "train-labels-idx1-ubyte.gz", [0, 1, 2, 0, 1], gz=True)
    message = raises_naming(labels, load, data_dir=tmp_path / "mine")
    assert "train-images-idx3-ubyte.gz holds 6 images" in message and "5 labels" in message


def test_custom_train_and_test_image_sizes_must_agree(tmp_path):
    make_set(tmp_path / "mine")
    write_idx(tmp_path / "mine" / "t10k-images-idx3-ubyte.gz", np.zeros((4, 2, 2)), gz=True)
    with pytest.raises(InputError, match="2x2 pixels in the test set, 3x2 in"):
        load(split="test", data_dir=tmp_path / "mine")


def test_empty_split_is_an_error(tmp_path):
    make_set(tmp_path / "mine")
    write_idx(tmp_path / "mine" / "train-images-idx3-ubyte.gz", np.zeros((0, 3, 2)), gz=True)
    write_idx(tmp_path / "mine" / "train-labels-idx1-ubyte.gz", np.zeros(0), gz=True)
    with pytest.raises(InputError, match="holds no images"):
        load(data_dir=tmp_path / "mine")


# ---------------------------------------------------------------- the Split value


def test_known_class_names():
    names = data.DATASETS["fashion-mnist"].class_names
    assert len(names) == 10 and names[0] == "T-shirt/top" and names[9] == "Ankle boot"
    assert data.DATASETS["mnist"].class_names == tuple(str(i) for i in range(10))


def test_split_carries_the_known_class_names_and_count(toy, monkeypatch):
    # a known data set without payload hashes (like MNIST) in a trusted place, whose labels use only 0..1
    register(monkeypatch, dataclasses.replace(toy.info, sha256={}))
    make_set(toy.info.system_dir, classes=2)
    for split in ("train", "test"):
        result = load("toy", split)
        assert not result.custom and (result.dataset, result.split) == ("toy", split)
        assert result.num_classes == 3 and result.class_names == ("a", "b", "c")


def test_custom_class_count_is_the_largest_train_label_plus_one(tmp_path):
    make_set(tmp_path / "mine")
    write_idx(tmp_path / "mine" / "train-labels-idx1-ubyte.gz", [0, 3, 0, 3, 0, 3], gz=True)
    for split in ("test", "train"):
        result = load(split=split, data_dir=tmp_path / "mine")
        assert result.custom and result.num_classes == 4 and result.class_names == ("0", "1", "2", "3")


def fields(split):
    """A Split's fields other than its arrays, and the arrays' bytes."""
    return {**{f.name: getattr(split, f.name) for f in dataclasses.fields(split) if f.name not in ("images", "labels")},
            "images": split.images.tobytes(), "labels": split.labels.tobytes()}


def test_nothing_depends_on_call_order(tmp_path, toy):
    make_set(tmp_path / "mine", classes=5, n_train=10)
    shutil.copytree(toy.pub, toy.info.system_dir)
    calls = {"custom test": lambda: load("toy", "test", data_dir=tmp_path / "mine"),
             "custom train": lambda: load("toy", "train", data_dir=tmp_path / "mine"),
             "known test": lambda: load("toy", "test"),
             "known train": lambda: load("toy", "train")}
    first = {name: fields(call()) for name, call in calls.items()}
    again = {name: fields(calls[name]()) for name in reversed(list(calls))}
    assert first == again
    assert first["custom test"]["num_classes"] == 5 and first["known test"]["num_classes"] == 3


def test_split_is_a_frozen_value(toy):
    split = load("toy", data_dir=toy.pub)
    with pytest.raises(dataclasses.FrozenInstanceError):
        split.num_classes = 4
    assert isinstance(split.class_names, tuple)


def test_no_module_level_mutable_state():
    import fastnet.data.cache
    import fastnet.data.download

    for module in (data, idx, sources, fastnet.data.cache, fastnet.data.download):
        for name, value in vars(module).items():
            if not name.startswith("__"):
                assert not isinstance(value, (dict, list, set, bytearray)), f"{module.__name__}.{name}"
    info = data.DATASETS["fashion-mnist"]
    with pytest.raises(TypeError):
        info.sha256["train-images-idx3-ubyte"] = "0" * 64


# ---------------------------------------------------------------- downloads


def assert_cache_complete(cache: Path):
    """All four .gz files are in cache and no temporary download is left."""
    assert sorted(p.name for p in cache.iterdir() if p.is_file()) == sorted(b + ".gz" for b in FILES)


def test_download_from_file_mirror(toy, monkeypatch, tmp_cache, capsys):
    monkeypatch.setenv("FASTNET_MIRROR", toy.pub.as_uri())
    train = load("toy")
    check_split(train, toy.arrays)
    assert (train.source, train.found_by) == (tmp_cache / "toy", f"downloaded from {toy.pub.as_uri()}")
    assert_cache_complete(tmp_cache / "toy")
    assert "downloading" in capsys.readouterr().err
    monkeypatch.setattr(idx, "_assemble", None)  # verified downloads went straight into the decoded cache
    # (only the headers are read again, by check_headers: no payload is decompressed)
    test = load("toy", "test")
    check_split(test, toy.arrays, "test")
    assert (test.source, test.found_by, test.custom) == (tmp_cache / "toy", "user cache", False)


@pytest.fixture
def http_mirror(toy):
    """An HTTP server on 127.0.0.1 serving toy.pub; yields its base URL."""
    handler = functools.partial(QuietHandler, directory=str(toy.pub))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """A file handler that does not log requests."""

    def log_message(self, *args):
        pass


def test_download_over_http(toy, monkeypatch, tmp_cache, http_mirror):
    monkeypatch.setenv("FASTNET_MIRROR", http_mirror)
    check_split(load("toy"), toy.arrays)
    assert_cache_complete(tmp_cache / "toy")
    (toy.pub / "t10k-labels-idx1-ubyte.gz").unlink()
    (tmp_cache / "toy" / "t10k-labels-idx1-ubyte.gz").unlink()
    message = raises_naming(http_mirror, load, "toy")
    assert "HTTP 404" in message
    assert not any(p.name.startswith(".") for p in (tmp_cache / "toy").iterdir())  # no temporary file left


def test_download_with_wrong_payload_is_rejected(toy, monkeypatch, tmp_cache):
    write_idx(toy.pub / "train-images-idx3-ubyte.gz", np.zeros((6, 3, 2)), gz=True)
    monkeypatch.setenv("FASTNET_MIRROR", toy.pub.as_uri() + "/")
    message = raises_naming(toy.pub.as_uri() + "/train-images-idx3-ubyte.gz", load, "toy")
    assert "corrupt or modified" in message
    assert os.listdir(tmp_cache / "toy") == []


def test_download_with_wrong_md5_is_rejected(toy, monkeypatch, tmp_cache):
    register(monkeypatch, dataclasses.replace(toy.info, gz_md5={"train-labels-idx1-ubyte.gz": "0" * 32}))
    monkeypatch.setenv("FASTNET_MIRROR", toy.pub.as_uri())
    assert "MD5" in raises_naming("train-labels-idx1-ubyte.gz", load, "toy")
    assert "train-labels-idx1-ubyte.gz" not in os.listdir(tmp_cache / "toy")


def test_download_of_non_idx_is_rejected(toy, monkeypatch):
    (toy.pub / "train-images-idx3-ubyte.gz").write_bytes(b"<html>not found</html>")
    monkeypatch.setenv("FASTNET_MIRROR", toy.pub.as_uri())
    assert "not a valid IDX file" in raises_naming("train-images-idx3-ubyte.gz", load, "toy")


def test_download_into_unwritable_cache(toy, monkeypatch, tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    monkeypatch.setenv("FASTNET_CACHE_DIR", str(tmp_path / "a-file"))
    monkeypatch.setenv("FASTNET_MIRROR", toy.pub.as_uri())
    assert "cannot create" in raises_naming(tmp_path / "a-file", load, "toy")


def test_no_network_says_how_to_get_the_data(tmp_path, monkeypatch):
    register(monkeypatch, dataclasses.replace(data.DATASETS["fashion-mnist"], system_dir=tmp_path / "absent"))
    with socket.socket() as sock:  # a port on 127.0.0.1 that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("FASTNET_MIRROR", f"http://127.0.0.1:{port}")
    message = raises_naming(f"http://127.0.0.1:{port}/train-images-idx3-ubyte.gz", load)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "--data-dir DIR" in message and "FASHION_MNIST_DIR" in message


# ---------------------------------------------------------------- the decoded cache


def decoded_entries(cache: Path, name="fashion-mnist") -> list[Path]:
    """The .npy files in the decoded cache of data set name."""
    return sorted((cache / name / "decoded").glob("*.npy"))


def test_second_load_uses_decoded_cache(tmp_path, tmp_cache, monkeypatch):
    arrays = make_set(tmp_path / "mine")
    check_split(load(data_dir=tmp_path / "mine"), arrays)
    # the test files were not decoded: files of other dims than the published ones cannot match their hashes
    assert len(decoded_entries(tmp_cache)) == 2
    check_split(load(split="test", data_dir=tmp_path / "mine"), arrays, "test")
    assert len(decoded_entries(tmp_cache)) == 4

    def no_decoding(*args):
        raise AssertionError("decompressed although the decoded cache holds the file")

    monkeypatch.setattr(idx, "_assemble", no_decoding)  # only the headers are read again (check_headers)
    check_split(load(data_dir=tmp_path / "mine"), arrays)
    check_split(load(split="test", data_dir=tmp_path / "mine"), arrays, "test")


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage"])
def test_damaged_cache_entry_is_ignored_and_rewritten(tmp_path, tmp_cache, damage):
    arrays = make_set(tmp_path / "mine", n_train=50, rows=10, cols=10)
    load(data_dir=tmp_path / "mine")
    for entry in decoded_entries(tmp_cache):
        blob = entry.read_bytes()
        entry.write_bytes({"truncate": blob[: len(blob) // 2], "flip": blob[:-1] + bytes([blob[-1] ^ 1]),
                           "empty": b"", "garbage": b"x" * 200}[damage])
    check_split(load(data_dir=tmp_path / "mine"), arrays)
    check_split(load(split="test", data_dir=tmp_path / "mine"), arrays, "test")
    for entry in decoded_entries(tmp_cache):
        assert idx.payload_sha256(np.load(entry)) == entry.name.split(".")[-2]


def test_changed_source_misses_cache(tmp_path, tmp_cache):
    make_set(tmp_path / "mine")
    load(data_dir=tmp_path / "mine")
    newer = make_set(tmp_path / "mine", seed=9)
    os.utime(tmp_path / "mine" / "train-images-idx3-ubyte.gz", ns=(1, 1))
    check_split(load(data_dir=tmp_path / "mine"), newer)
    assert len(decoded_entries(tmp_cache)) == 2  # stale copies were dropped (the train files only: see above)


def test_decoded_cache_is_bounded_least_recently_used_first(tmp_path, tmp_cache, monkeypatch):
    """Each source path has its own decoded copy: many copies of a data set keep the cache within
    MAX_BYTES, dropping the copies used longest ago; a hit marks its copy used."""
    make_set(tmp_path / "first", n_train=500, rows=10, cols=10)
    load(data_dir=tmp_path / "first")
    one = sum(e.stat().st_size for e in decoded_entries(tmp_cache))  # the train images and labels
    monkeypatch.setattr(cache, "MAX_BYTES", 3 * one)
    for n in range(2, 6):
        make_set(tmp_path / f"copy{n}", n_train=500, rows=10, cols=10)
        load(data_dir=tmp_path / f"copy{n}")
        load(data_dir=tmp_path / "first")  # a hit: the first copy stays the most recently used
        entries = decoded_entries(tmp_cache)
        assert sum(e.stat().st_size for e in entries) <= 3 * one and len(entries) == 2 * min(n, 3)
    kept = {e.name.split(".")[0] for e in decoded_entries(tmp_cache)}
    sources_kept = {p.parent.name for p in tmp_path.glob("*/train-images-idx3-ubyte.gz")
                    if any(cache._names(p, "fashion-mnist")[2] in e.name for e in decoded_entries(tmp_cache))}
    assert kept == {"train-images-idx3-ubyte", "train-labels-idx1-ubyte"}
    assert sources_kept == {"first", "copy4", "copy5"}


def test_unwritable_cache_is_skipped(tmp_path, monkeypatch):
    arrays = make_set(tmp_path / "mine")
    (tmp_path / "a-file").write_text("not a directory")
    monkeypatch.setenv("FASTNET_CACHE_DIR", str(tmp_path / "a-file"))
    check_split(load(data_dir=tmp_path / "mine"), arrays)
    check_split(load(data_dir=tmp_path / "mine"), arrays)


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTNET_CACHE_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("FASTNET_CACHE_DIR")
    assert data.cache_dir() == tmp_path / "x" / "fastnet"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert data.cache_dir() == tmp_path / "home" / ".cache" / "fastnet"


# ---------------------------------------------------------------- the real Fashion-MNIST


@pytest.fixture(scope="session")
def real_cache(tmp_path_factory):
    """The real data's directory, with one decoded cache shared by the tests that use it."""
    if any(sources.file_in(REAL_DIR, base) is None for base in FILES):
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the real Fashion-MNIST in {REAL_DIR} (apt-get install dataset-fashion-mnist)")
        pytest.skip(f"no Fashion-MNIST in {REAL_DIR}")
    return tmp_path_factory.mktemp("real-cache")


@pytest.fixture
def real(real_cache, monkeypatch):
    """Use the session's shared cache for the real data."""
    monkeypatch.setenv("FASTNET_CACHE_DIR", str(real_cache))
    return REAL_DIR


def test_real_fashion_mnist(real):
    for split, n in (("train", 60000), ("test", 10000)):
        result = load("fashion-mnist", split)
        images, labels = result.images, result.labels
        assert images.shape == (n, 784) and images.dtype == np.uint8 and images.flags.c_contiguous
        assert labels.shape == (n,) and labels.dtype == np.uint8
        assert labels.max() <= 9
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), [n // 10] * 10)
        assert not result.custom and result.num_classes == 10
        assert result.class_names[0] == "T-shirt/top" and result.class_names[9] == "Ankle boot"
        assert (result.source, result.found_by) == (real, "system copy")


def test_real_data_via_data_dir_is_known(real, tmp_path):
    for base in FILES:
        os.symlink(sources.file_in(real, base), tmp_path / sources.file_in(real, base).name)
    result = load(split="test", data_dir=tmp_path)
    assert result.images.shape == (10000, 784) and not result.custom
    assert (result.num_classes, result.class_names[0], result.found_by) == (10, "T-shirt/top", "--data-dir")


@pytest.mark.parametrize("split", ["train", "test"])
def test_real_modified_file_is_rejected(real, tmp_path, split):
    for base in FILES[:3]:
        os.symlink(sources.file_in(real, base), tmp_path / sources.file_in(real, base).name)
    payload = bytearray(encode(read_idx(sources.file_in(real, FILES[3]))))
    payload[8 + 123] = (payload[8 + 123] + 1) % 10  # still a valid label: only the hash can tell
    modified = tmp_path / "t10k-labels-idx1-ubyte.gz"
    modified.write_bytes(gzip.compress(bytes(payload)))
    message = raises_naming(modified, load, split=split, data_dir=tmp_path)
    assert "corrupt or modified" in message
