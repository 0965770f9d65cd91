"""python -m fastnet.show draws every kind of --data-dir that train reads (IDX, .npz, CSV), through
the same loader; rows that are not square images are a one-line error."""

import os
from pathlib import Path

import numpy as np
import pytest

from fastnet import data, plots, show
from tests.helpers import assert_one_line_error, run_cli

PNG = b"\x89PNG\r\n\x1a\n"


def command(*args):
    """`python -m ARGS` (tests.helpers.run_cli), help unwrapped."""
    return run_cli(*args, env={**os.environ, "COLUMNS": "400"})



@pytest.mark.parametrize("kind", ["idx", "npz", "float-npz", "csv"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_show_draws_every_kind_of_data_dir(data_dirs, tmp_path, kind, split):
    out = tmp_path / "grid.png"
    proc = command("fastnet.show", "--data-dir", data_dirs[kind], "--split", split, "--count", "9", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    assert out.read_bytes().startswith(PNG)


def test_rows_that_are_not_square_images_are_one_line(tmp_path):
    """Seven features a row (a .npz of measurements, not pictures): refused before anything is drawn."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "table.npz", X_train=rng.random((12, 7)), y_train=np.arange(12) % 2,
             X_test=rng.random((4, 7)), y_test=np.arange(4) % 2)
    out = tmp_path / "grid.png"
    line = assert_one_line_error(command("fastnet.show", "--data-dir", tmp_path / "table.npz", "--out", out))
    assert "rows of 7 values are not square images" in line and "table.npz" in line
    assert not out.exists()


def test_show_refuses_bad_data_in_the_words_of_train(data_dirs):
    one_csv = Path(data_dirs["csv"]) / "train.csv"
    line = assert_one_line_error(command("fastnet.show", "--data-dir", one_csv))
    assert line == assert_one_line_error(command("fastnet.train", "--data-dir", one_csv))


def test_show_help_describes_data_dir_as_train_does():
    assert " ".join(data.DATA_DIR_HELP.split()) in " ".join(command("fastnet.show", "--help").stdout.split())


def test_custom_data_is_titled_by_its_file_and_float_pixels_fill_the_grey_scale(data_dirs, tmp_path, monkeypatch):
    """The grid of a float .npz: titled by the file (not "Fashion-MNIST"), its pixels in 0..1 drawn
    across 0..255 (drawn as they are, they would all be near white)."""
    drawn = {}
    monkeypatch.setattr(plots, "image_grid", lambda path, images, *a, title, **k: drawn.update(images=images,
                                                                                               title=title))
    assert show.main(["--data-dir", data_dirs["float-npz"], "--count", "30", "--out", str(tmp_path / "g.png")]) == 0
    assert drawn["title"].startswith("float.npz: 30 random training images")
    assert drawn["images"].min() == 0 and drawn["images"].max() == pytest.approx(255)


def test_drawable_pixels():
    """uint8 pixels as they are; any other values stretched onto 0..255 without overflow, even near
    the float64 limits; an image of one value is blank."""
    pixels = np.arange(16, dtype=np.uint8).reshape(1, 16)
    assert show.drawable(pixels) is pixels
    with np.errstate(all="raise"):
        huge = show.drawable(np.array([[-1e308, 0.0, 1e308]]))
    np.testing.assert_allclose(huge, [[0, 127.5, 255]])
    np.testing.assert_allclose(show.drawable(np.array([[0.0, 0.25, 1.0]], np.float32)), [[0, 63.75, 255]], rtol=1e-6)
    assert not show.drawable(np.full((2, 4), 7.5)).any()
