"""Hostile data files: the test set checked before the first step, gzip bombs, huge or wide images,
custom data beside published files, a vanishing training folder, one-pixel data, a trickling mirror.

Commands run in subprocesses on tiny IDX data sets (tests/helpers.py), on the numpy backend,
one thread, a private cache and no network (the env, tiny and model fixtures: tests/hostile/conftest.py).
The numbers in the section comments are the red-team report's item numbers.
"""

import dataclasses
import json
import os
import shutil
import struct
import tracemalloc
import types
import zlib
from pathlib import Path

import numpy as np
import pytest

from fastnet import data, predict
from fastnet.data import download, idx, sources
from fastnet.errors import InputError
from tests.helpers import (REAL, TINY_ARGS, assert_one_line_error, clustered_idx_set, hang_guard, leftovers,
                           needs_real, run_cli, train_tiny, write_idx)
from tests.hostile import hostile_sweep


# --- 1. the test set is checked before the first step; the model is saved before the test evaluation

def test_a_test_class_unseen_in_training_is_refused_before_the_first_step(tmp_path, env):
    data_dir = clustered_idx_set(tmp_path / "unseen", classes=3)
    write_idx(data_dir / "t10k-labels-idx1-ubyte", np.arange(60) % 4)  # the test set has class 3
    model = tmp_path / "m.npz"
    proc = run_cli("fastnet.train", *[a for a in TINY_ARGS if a != "--quiet"], "--epochs", "2", "--layers", "64,8,3",
                   "--data-dir", data_dir, "--save", model, env=env)
    assert_one_line_error(proc, 2, "label 3")
    assert "epoch" not in proc.stdout and not model.exists()


def test_a_test_count_mismatch_is_refused_before_the_first_step(tmp_path, env):
    data_dir = clustered_idx_set(tmp_path / "mismatch")
    write_idx(data_dir / "t10k-labels-idx1-ubyte", np.arange(59) % 4)
    proc = train_tiny(env, data_dir, "--save", tmp_path / "m.npz")
    assert_one_line_error(proc, 2, "60 images", "59 labels")
    assert not (tmp_path / "m.npz").exists()



# --- 7. a gzip IDX bomb: the four headers are cross-checked before any body is inflated ----------

def gzip_of_zeros(path, header, nbytes):
    """A gzip file holding header and nbytes of zeros, compressed in 1 MiB blocks (no big buffer)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    with open(path, "wb") as f:
        f.write(c.compress(header))
        for start in range(0, nbytes, len(block)):
            f.write(c.compress(block[: min(len(block), nbytes - start)]))
        f.write(c.flush())
    return path


@pytest.fixture
def bomb(tmp_path):
    """A data set whose train-images.gz (~150 KB) claims 200000 x 28 x 28 (157 MB) consistently with
    its size, beside 300 training labels."""
    folder = clustered_idx_set(tmp_path / "bomb", side=28)
    (folder / "train-images-idx3-ubyte").unlink()
    gzip_of_zeros(folder / "train-images-idx3-ubyte.gz", struct.pack(">BBBBIII", 0, 0, 8, 3, 200000, 28, 28),
                  200000 * 28 * 28)
    return folder


def test_a_gzip_bomb_is_refused_from_its_header_before_inflating(bomb, tmp_cache, monkeypatch):
    """The 157 MB body is never inflated: at most one chunk of it is decompressed (for the header), and
    the memory traced stays far below the claim."""
    inflated = []
    gunzip = idx._gunzip

    def counted(f, path):
        for chunk in gunzip(f, path):
            inflated.append(len(chunk))
            yield chunk

    monkeypatch.setattr(idx, "_gunzip", counted)
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match="200000 images but .* 300 labels"):
            data.load(data_dir=bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak
    assert 0 < sum(inflated) <= idx.OUT_CHUNK, inflated  # the header's chunk, not 157 MB
    assert not tmp_cache.exists() or not list(tmp_cache.rglob("*.npy"))  # nothing decoded, nothing cached


def test_a_claim_beyond_the_available_memory_is_refused(tmp_path, tmp_cache, monkeypatch):
    folder = clustered_idx_set(tmp_path / "set", side=28)
    monkeypatch.setattr(idx, "available_memory", lambda: 100_000)  # the 300 x 784 images need 235 KB
    with pytest.raises(InputError, match="memory available"):
        data.load(data_dir=folder)
    assert not tmp_cache.exists() or not list(tmp_cache.rglob("*.npy"))


def test_a_gzip_bomb_through_train_is_one_line_and_leaves_no_cache(bomb, env, tmp_path):
    e = dict(env, FASTNET_CACHE_DIR=str(tmp_path / "cache"))
    proc = run_cli("fastnet.train", *TINY_ARGS, "--layers", "784,8,4", "--data-dir", bomb, env=e)
    assert_one_line_error(proc, 2, "200000 images")
    assert not (tmp_path / "cache").exists() or not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


# --- 8, 9. predict: the image size is checked from the header; wide samples are scaled, not clipped

def png_header_claiming(path, width, height):
    """A PNG whose IHDR claims width x height 8-bit grey pixels, with one tiny (wrong) IDAT."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side", [20000, 10000])
def test_predict_refuses_a_huge_image_from_its_header(tmp_path, model, env, side):
    pytest.importorskip("PIL")
    image = png_header_claiming(tmp_path / "huge.png", side, side)
    proc = run_cli("fastnet.predict", model, image, env=env)
    assert_one_line_error(proc, 2, "25,000,000 pixels")


def test_predict_reads_16_bit_int32_and_float_images_as_the_8_bit_one(tmp_path, model, env):
    Image = pytest.importorskip("PIL.Image")
    gray = np.random.default_rng(3).integers(0, 256, (8, 8)).astype(np.uint8)
    gray[0, :] = gray[-1, :] = gray[:, 0] = gray[:, -1] = 0  # a dark frame, as data set images have
    paths = {
        "8-bit png": (gray, "png"),
        "16-bit png": (gray.astype(np.uint16) * 257, "png"),
        "int32 tiff": (gray.astype(np.int32) * 257, "tiff"),
        "float tiff": (gray.astype(np.float32) / 255, "tiff"),
    }
    files = []
    for i, (name, (array, fmt)) in enumerate(paths.items()):
        files.append(tmp_path / f"{i}.{fmt}")
        Image.fromarray(array).save(files[-1])
        np.testing.assert_array_equal(predict.read_image(files[-1]), gray, err_msg=name)
    proc = run_cli("fastnet.predict", model, *files, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    tops = [r["top"] for r in json.loads(proc.stdout)]
    assert all(t == tops[0] for t in tops), tops



# --- 15. messages that say what happened (data) -----------------------------------------------------

def register_toy(monkeypatch, pub, arrays, dims=True):
    info = data.DatasetInfo(
        name="toy", files=data.SPLIT_FILES, class_names=("a", "b", "c", "d"), env_var="TOY_DIR",
        sha256={b: idx.payload_sha256(a) for b, a in arrays.items()}, system_dir=pub / "absent",
        mirror="http://127.0.0.1:9/", dims={b: a.shape for b, a in arrays.items()} if dims else {})
    monkeypatch.setattr(sources, "DATASETS", types.MappingProxyType({**sources.DATASETS, "toy": info}))


def published(folder):
    return {p.name: idx.read_idx(p) for p in folder.iterdir()}


def test_published_test_files_beside_a_training_subset_are_custom_data(tmp_path, tmp_cache, monkeypatch):
    pub = clustered_idx_set(tmp_path / "pub", n_train=40, n_test=20)
    register_toy(monkeypatch, pub, published(pub))
    mine = shutil.copytree(pub, tmp_path / "mine")
    for base in data.SPLIT_FILES["train"]:  # a subset of the published training files
        write_idx(mine / base, idx.read_idx(pub / base)[:10])
    for split in ("train", "test"):
        result = data.load("toy", split, mine)
        assert result.custom and result.class_names == ("0", "1", "2", "3")
    assert not data.load("toy", "test", pub).custom
    # the same dims as the published file but other bytes: a damaged copy, still an error
    damaged = shutil.copytree(pub, tmp_path / "damaged")
    labels = idx.read_idx(pub / "train-labels-idx1-ubyte")
    write_idx(damaged / "train-labels-idx1-ubyte", (labels + 1) % 4)
    with pytest.raises(InputError, match="corrupt or modified"):
        data.load("toy", "test", damaged)


@needs_real
def test_the_real_test_files_beside_a_500_image_training_subset_are_custom_data(tmp_path, tmp_cache):
    for base in data.SPLIT_FILES["test"]:
        os.symlink(REAL / f"{base}.gz", tmp_path / f"{base}.gz")
    for base in data.SPLIT_FILES["train"]:
        write_idx(tmp_path / base, idx.read_idx(REAL / f"{base}.gz")[:500])
    result = data.load("fashion-mnist", "test", tmp_path)
    assert result.custom and len(result.labels) == 10000


def test_the_download_hint_reads_as_a_sentence(tmp_path, env):
    assert data.DATASETS["mnist"].how_to_get().startswith("pass --data-dir DIR or set MNIST_DIR=DIR")
    assert data.DATASETS["fashion-mnist"].how_to_get().startswith(
        "install it with 'apt-get install dataset-fashion-mnist' (Debian), or pass --data-dir DIR")
    e = dict(env, FASTNET_CACHE_DIR=str(tmp_path / "cache"))
    proc = run_cli("fastnet.train", *TINY_ARGS, "--dataset", "mnist", env=e)
    if Path("/usr/share/datasets/mnist").exists():
        pytest.skip("MNIST is installed: nothing to download")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    notice, error = proc.stderr.strip().splitlines()  # "downloading URL", then the one error line
    assert notice.startswith("downloading ") and "cannot download" in error, proc.stderr
    assert "; pass --data-dir DIR or set MNIST_DIR=DIR" in error and "with pass" not in error
    assert leftovers(tmp_path / "cache" / "mnist") == []


def test_evaluate_on_custom_data_names_its_directory(model, env, tiny):
    proc = run_cli("fastnet.evaluate", model, "--backend", "numpy", env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"the test set in {tiny}" in proc.stdout and "fashion-mnist test set" not in proc.stdout


# --- 16. evaluate never silently swaps the test set -------------------------------------------------

@pytest.mark.slow
def test_evaluate_refuses_a_vanished_training_directory_and_notes_another_test_set(tmp_path, env, tiny):
    gone = shutil.copytree(tiny, tmp_path / "gone")
    path = tmp_path / "m.npz"
    assert train_tiny(env, gone, "--save", path).returncode == 0
    shutil.rmtree(gone)
    assert_one_line_error(run_cli("fastnet.evaluate", path, "--backend", "numpy", env=env), 2, "gone", "--data-dir")
    other = clustered_idx_set(tmp_path / "other", seed=7)
    proc = run_cli("fastnet.evaluate", path, "--backend", "numpy", "--data-dir", other, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("note: ") and "not the test set" in lines[0], proc.stderr
    same = run_cli("fastnet.evaluate", path, "--backend", "numpy", "--data-dir", tiny, env=env)
    assert same.returncode == 0 and same.stderr == "", same.stderr


# --- 17. gradcheck at ReLU kinks ------------------------------------------------------------------

def test_gradcheck_on_one_pixel_data_skips_probes_at_a_kink(tmp_path, env):
    folder = tmp_path / "one-pixel"
    folder.mkdir()
    for prefix, n in (("train", 40), ("t10k", 10)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", (np.arange(n) % 2 * 255).reshape(n, 1, 1))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    proc = run_cli("fastnet.gradcheck", "--layers", "1,3,10", "--backend", "numpy", "--data-dir", folder,
                   "--samples", "20", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "skipped" in proc.stdout and "Traceback" not in proc.stderr



# --- 18. a trickling mirror --------------------------------------------------------------------------

@pytest.fixture
def trickle():
    """A loopback mirror that trickles (hostile_sweep.Trickle); stops with the test."""
    server = hostile_sweep.trickle_server(0.2)
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["stall", "deadline"])
def test_a_trickling_mirror_gives_up_and_leaves_no_file(tmp_path, tmp_cache, monkeypatch, trickle, mode):
    mnist = data.DATASETS["mnist"]
    monkeypatch.setattr(sources, "DATASETS", types.MappingProxyType(
        {**sources.DATASETS, "mnist": dataclasses.replace(mnist, system_dir=tmp_path / "absent")}))
    monkeypatch.setenv("FASTNET_MIRROR", f"http://127.0.0.1:{trickle.server_address[1]}/")
    monkeypatch.setattr(download, "STALL_SECONDS", 1)
    if mode == "deadline":  # enough bytes to pass the stall check, never the whole file
        trickle.burst = 64
        monkeypatch.setattr(download, "STALL_BYTES", 16)
        monkeypatch.setattr(download, "DEADLINE_SECONDS", 1.5)
    with pytest.raises(InputError, match="stalled" if mode == "stall" else "unfinished after 1.5 s") as info:
        hang_guard(data.load, "mnist")
    assert "\n" not in str(info.value)
    assert os.listdir(tmp_cache / "mnist") == []


