"""Tests of fastnet.predict: the Fashion-MNIST-style conversion of image files, real classifications, CLI errors."""

import json

import numpy as np
import pytest

from fastnet import predict
from fastnet.backend import get_backend
from fastnet.errors import InputError
from fastnet.model import MLP, predict_logits
from fastnet.optim import Adam
from fastnet.training import TrainState, fit
from tests.helpers import FASHION_NAMES as NAMES
from tests.helpers import model_file, needs_real, run_cli

Image = pytest.importorskip("PIL.Image")


def run_predict(*args):
    """`python -m fastnet.predict ARGS` from the repository root; returns the CompletedProcess."""
    return run_cli("fastnet.predict", *args)


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    """An untrained 784-16-10 model file: enough for the command's error paths."""
    path = tmp_path_factory.mktemp("model") / "random.npz"
    return model_file(path)


def bbox(pixels):
    """(top, bottom, left, right) of the non-zero pixels of a 28x28 image."""
    rows, cols = np.nonzero(pixels.reshape(28, 28))
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


def test_light_garment_on_white_is_inverted_trimmed_and_centred():
    photo = np.full((120, 90), 255, np.uint8)
    photo[10:70, 5:35] = 200  # a light-grey garment, 60 tall and 30 wide, in the top-left corner
    out = predict.to_fashion_mnist(photo)
    assert out.dtype == np.uint8 and out.shape == (784,)
    img = out.reshape(28, 28)
    assert img[:, :5].max() == 0 and img[:, -5:].max() == 0, "background must be black"
    assert img[14, 14] == 55, "garment must be the negative of its grey (255 - 200)"
    top, bottom, left, right = bbox(out)
    assert (top, bottom) == (0, 28), "the longer side fills the 28 pixels"
    assert right - left in (14, 15), "the aspect ratio is kept"
    assert abs((left + right) / 2 - 14) <= 0.5, "centred horizontally"


def test_dark_background_is_not_inverted_and_wide_objects_are_centred_vertically():
    img = np.zeros((50, 100), np.uint8)
    img[30:45, 60:100] = 180  # a bright object, 15 tall and 40 wide, low and right
    out = predict.to_fashion_mnist(img).reshape(28, 28)
    assert out.max() >= 170 and out[:5].max() == 0 and out[-5:].max() == 0
    top, bottom, left, right = bbox(out)
    assert (left, right) == (0, 28)
    assert abs((top + bottom) / 2 - 14) <= 0.5 and bottom - top in (10, 11)


def test_noisy_photo_background_is_ignored_when_trimming():
    rng = np.random.default_rng(0)
    photo = np.clip(245 + rng.normal(0, 4, (200, 200)), 0, 255).astype(np.uint8)
    photo[50:150, 80:120] = 60
    top, bottom, left, right = bbox(predict.to_fashion_mnist(photo))
    assert (top, bottom) == (0, 28) and right - left in (11, 12, 13)


def test_fashion_mnist_sized_image_is_kept_as_it_is():
    img = np.zeros((28, 28), np.uint8)
    img[3:20, 2:9] = 99
    np.testing.assert_array_equal(predict.to_fashion_mnist(img), img.ravel())


def test_transparent_background_counts_as_white(tmp_path):
    rgba = np.zeros((60, 40, 4), np.uint8)
    rgba[..., :3] = 50
    rgba[10:50, 10:30, 3] = 255  # an opaque dark garment, transparent all around
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cutout.png")
    out = predict.to_fashion_mnist(predict.read_image(tmp_path / "cutout.png")).reshape(28, 28)
    assert out[:, :5].max() == 0 and out[:, -5:].max() == 0 and out[14, 14] == 205


def test_read_image_any_mode_and_format(tmp_path):
    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(tmp_path / "red.jpg", quality=95)
    Image.fromarray(rgb).convert("P").save(tmp_path / "red.png")
    for name in ("red.jpg", "red.png"):
        gray = predict.read_image(tmp_path / name)
        assert gray.shape == (30, 40) and gray.dtype == np.uint8 and abs(int(gray.mean()) - 76) <= 3


def test_read_image_errors_name_the_file(tmp_path):
    (tmp_path / "notes.png").write_text("not a picture")
    for path in (tmp_path / "missing.png", tmp_path / "notes.png", tmp_path):
        with pytest.raises(InputError, match=str(path)):
            predict.read_image(path)


@pytest.mark.parametrize("make", ["missing", "text", "directory"])
def test_cli_bad_image_exits_2_with_one_line(tmp_path, random_model, make):
    bad = tmp_path / "x.png"
    if make == "text":
        bad.write_text("hello")
    elif make == "directory":
        bad.mkdir()
    proc = run_predict(random_model, bad)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_cli_bad_model_and_missing_args_exit_2(tmp_path, random_model):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(img)
    for args in ((tmp_path / "nope.npz", img), (random_model,), (random_model, img, "--top", "0")):
        proc = run_predict(*args)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_cli_text_and_json_output(tmp_path, random_model):
    img = tmp_path / "a.png"
    Image.fromarray(np.full((40, 30), 255, np.uint8)).save(img)
    proc = run_predict(random_model, img, "--top", "4")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == str(img) and len(lines) == 5
    assert all(line.startswith("  ") and line.endswith("%") for line in lines[1:])
    proc = run_predict(random_model, img, img, "--json", "--top", "20")
    result = json.loads(proc.stdout)
    assert [r["file"] for r in result] == [str(img)] * 2
    probs = [t["probability"] for t in result[0]["top"]]
    assert len(probs) == 10 and probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-5
    assert sorted(t["class"] for t in result[0]["top"]) == sorted(NAMES)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained for one epoch on half of real Fashion-MNIST's training set, its file, and the test split."""
    from fastnet import data

    K = get_backend("numpy")
    train, test = (data.load("fashion-mnist", split, download=False) for split in ("train", "test"))
    images, labels, test_images, test_labels = train.images, train.labels, test.images, test.labels
    model = MLP.he_init((784, 64, 10), np.random.default_rng(0))
    state = TrainState(model, Adam(model.params.size, model.dtype), np.random.default_rng(1))
    fit(state, K, (images[:30000], labels[:30000]), (images[:0], labels[:0]), 1, 128, 1e-3)
    path = model_file(tmp_path_factory.mktemp("trained") / "model.npz", model)
    return path, model, K, test_images, test_labels


def confident_examples(model, K, images, labels, per_class=1, threshold=0.9):
    """Indices of test images the model gets right with probability >= threshold, one class after another."""
    logits = predict_logits(model, K, images)
    probs = K.softmax(logits, np.empty_like(logits))
    chosen = []
    for c in range(10):
        ok = np.flatnonzero((labels == c) & (probs.argmax(1) == c) & (probs.max(1) >= threshold))
        chosen.extend(ok[:per_class])
    return chosen


@needs_real
def test_real_test_images_as_png_are_classified_as_their_class(tmp_path, trained):
    path, model, K, images, labels = trained
    chosen = confident_examples(model, K, images, labels)
    assert len(chosen) >= 8, "a one-epoch model is confidently right on most classes"
    files = []
    for i in chosen:
        files.append(tmp_path / f"test{i}.png")
        Image.fromarray(images[i].reshape(28, 28)).save(files[-1])
    proc = run_predict(path, *files, "--json")
    assert proc.returncode == 0, proc.stderr
    got = [r["top"][0]["class"] for r in json.loads(proc.stdout)]
    assert got == [NAMES[labels[i]] for i in chosen]


@needs_real
def test_real_test_image_as_large_photo_on_white_is_classified_as_its_class(tmp_path, trained):
    path, model, K, images, labels = trained
    chosen = confident_examples(model, K, images, labels, threshold=0.99)[:4]
    files = []
    for i in chosen:
        big = Image.fromarray(images[i].reshape(28, 28)).resize((280, 280), Image.Resampling.BICUBIC)
        photo = np.pad(255 - np.asarray(big), ((30, 80), (100, 20)), constant_values=255)
        files.append(tmp_path / f"photo{i}.jpg")
        Image.fromarray(photo).convert("RGB").save(files[-1], quality=85)
    proc = run_predict(path, *files, "--json")
    assert proc.returncode == 0, proc.stderr
    got = [r["top"][0]["class"] for r in json.loads(proc.stdout)]
    assert got == [NAMES[labels[i]] for i in chosen]
