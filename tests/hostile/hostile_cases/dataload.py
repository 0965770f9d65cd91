"""Hostile cases of gradcheck and show on the data that train reads besides IDX (one loader,
fastnet.data.load): a .npz file and a CSV directory, good, damaged, and of rows that are not images.

dload_*: prefixed so that `-k dload` runs them alone."""

import numpy as np

SHOW = ["fastnet.show", "--out", "s.png", "--data-dir"]
GRAD = ["fastnet.gradcheck", "--backend", "numpy", "--layers", "64,8,4", "--data-dir"]


def add(case, sweep):
    table = sweep.npz_data("t.npz", X_train=np.random.default_rng(0).random((300, 7)),
                           X_test=np.random.default_rng(1).random((60, 7)))
    for name, argv, code, setup, writes in [
        ("show_npz", SHOW + ["d.npz"], 0, sweep.npz_data("d.npz"), ("s.png",)),
        ("show_csv", SHOW + ["csv", "--split", "test"], 0, sweep.csv_data(), ("s.png",)),
        ("show_npz_of_float_pixels", SHOW + ["d.npz"], 0,
         sweep.npz_data("d.npz", X_train=np.random.default_rng(0).random((300, 64)).astype(np.float32)), ("s.png",)),
        ("show_npz_rows_not_square", SHOW + ["t.npz"], 2, table, ()),
        ("show_npz_missing_test_labels", SHOW + ["d.npz"], 2, sweep.npz_data("d.npz", y_test=None), ()),
        ("show_csv_ragged_line", SHOW + ["csv"], 2, sweep.csv_data(train_rows=["1,2,3", "1,2"]), ()),
        ("show_one_csv_file", SHOW + ["csv/train.csv"], 2, sweep.csv_data(), ()),
        ("gradcheck_npz", GRAD + ["d.npz"], 0, sweep.npz_data("d.npz"), ()),
        ("gradcheck_csv", GRAD + ["csv"], 0, sweep.csv_data(), ()),
        ("gradcheck_npz_rows_of_7", GRAD + ["t.npz"], 2, table, ()),
        ("gradcheck_npz_pickled_images", GRAD + ["d.npz"], 2,
         sweep.npz_data("d.npz", X_train=np.array([{"a": 1}], dtype=object)), ()),
        ("gradcheck_csv_text_cell", GRAD + ["csv"], 2, sweep.csv_data(train_rows=["1," + ",".join(["x"] * 64)]), ()),
    ]:
        case(f"dload_{name}", "dataload", argv, code, setup=setup, writes=writes)
