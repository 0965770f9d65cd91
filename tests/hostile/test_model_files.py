"""Hostile model files: tampered checkpoints, --resume against its recipe, padded or oversized members.

Commands run in subprocesses on tiny IDX data sets (tests/helpers.py), on the numpy backend,
one thread, a private cache and no network (the env, tiny and model fixtures: tests/hostile/conftest.py).
The numbers in the section comments are the red-team report's item numbers.
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fastnet import checkpoint
from fastnet.errors import InputError
from fastnet.optim import OPTIMIZERS
from tests.helpers import ROOT, assert_one_line_error, progress_of, rewrite_model, run_cli


# --- 5. tampered checkpoints; --resume keeps its recipe; errors name what the user gave -----------

def _history(**lists):
    good = {"epoch_seconds": [0.1], "eval_seconds": [0.1], "train_loss": [1.0], "train_accuracy": [0.5],
            "val_loss": [1.0], "val_accuracy": [0.5], "step_loss": [1.2, 1.1, 1.0]}
    return {**good, **lists}


TAMPERED_PROGRESS = {
    "history_of_strings": ({"history": _history(train_loss=["x"])}, "not a number"),
    "batch_1e9": ({"batch": 10**9}, "partial losses"),
    "batch_float": ({"batch": 1.5}, "whole counts"),
    "epoch_bool": ({"epoch": True}, "whole counts"),
    "epoch_float": ({"epoch": 1.0}, "whole counts"),
    "epoch_beyond_history": ({"epoch": 10**9}, "entries for"),
    "history_short": ({"history": _history(val_loss=[])}, "entries for"),
    "history_infinite": ({"history": _history(train_loss=[float("inf")])}, "outside"),
    "history_nan_loss": ({"history": _history(train_loss=[float("nan")])}, "outside"),
    "accuracy_above_1": ({"history": _history(train_accuracy=[1.5])}, "outside"),
    "negative_seconds": ({"history": _history(epoch_seconds=[-1.0])}, "outside"),
    "history_a_list": ({"history": []}, "fields"),
    "history_missing_field": ({"history": {k: v for k, v in _history().items() if k != "step_loss"}}, "fields"),
    "too_few_step_losses": ({"history": _history(step_loss=[])}, "step_loss"),
    "partial_losses_text": ({"batch": 1, "partial_losses": ["1.0"]}, "not a number"),
    "rng_text": ({"rng": "PCG64"}, "objects"),
    "rng_bad_state": ({"rng": {"bit_generator": "PCG64", "state": {"state": "x", "inc": 1}}}, "incomplete"),
    "no_batch": (None, "no batch"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TAMPERED_PROGRESS))
def test_a_tampered_checkpoint_is_one_error_before_resuming(name, model, tmp_path, env, tiny):
    change, word = TAMPERED_PROGRESS[name]
    progress = progress_of(model)
    if change is None:
        del progress["batch"]
    else:
        progress.update(change)
    bad = rewrite_model(model, tmp_path / f"{name}.npz", progress=np.array(json.dumps(progress)))
    with pytest.raises(InputError) as info:
        checkpoint.load_state(str(bad), OPTIMIZERS)
    assert word in str(info.value) and "\n" not in str(info.value)
    if name in ("history_of_strings", "batch_1e9"):  # the report's two reproductions, end to end
        proc = run_cli("fastnet.train", "--resume", bad, "--epochs", "2", "--data-dir", tiny, env=env)
        assert_one_line_error(proc, 2, "cannot be resumed")


def test_a_batch_past_the_end_of_an_epoch_is_refused_once_the_data_is_known(model, tmp_path, env, tiny):
    progress = progress_of(model)  # 280 training images in batches of 128: 3 steps an epoch
    progress.update(batch=4, partial_losses=[1.0] * 4, epoch_rng=progress["rng"])
    bad = rewrite_model(model, tmp_path / "bad.npz", progress=np.array(json.dumps(progress)))
    proc = run_cli("fastnet.train", "--resume", bad, "--epochs", "2", "--data-dir", tiny, env=env)
    assert_one_line_error(proc, 2, "batch 4", "has 3")


def test_a_checkpoint_stopped_after_an_epochs_last_batch_resumes(model, tmp_path, env, tiny):
    """batch == steps: what a stop right after an epoch's last chunk used to write (issue 21 S1).
    Resuming completes that epoch's bookkeeping, then trains on."""
    progress = progress_of(model)
    progress.update(batch=3, partial_losses=[1.0] * 3, epoch_rng=progress["rng"])
    old = rewrite_model(model, tmp_path / "old.npz", progress=np.array(json.dumps(progress)))
    proc = run_cli("fastnet.train", "--resume", old, "--epochs", "3", "--data-dir", tiny, env=env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    state, _, _ = checkpoint.load_state(str(old), OPTIMIZERS)
    assert (state.epoch, state.batch) == (3, 0) and state.history.step_loss[3:6] == [1.0] * 3


@pytest.mark.slow
@pytest.mark.parametrize("flag, value", [("--layers", "64,16,4"), ("--lr", "0.5"), ("--batch-size", "7")])
def test_resume_refuses_recipe_flags_that_contradict_the_checkpoint(model, tmp_path, env, tiny, flag, value):
    mine = shutil.copy(model, tmp_path / "m.npz")
    proc = run_cli("fastnet.train", "--resume", mine, "--epochs", "2", "--data-dir", tiny, flag, value, env=env)
    assert_one_line_error(proc, 2, flag, "contradicts")
    assert Path(mine).read_bytes() == Path(model).read_bytes()


def test_errors_name_the_checkpoint_not_flags_the_user_never_passed(model, tmp_path, env, tiny):
    bad = rewrite_model(model, tmp_path / "bad.npz", recipe={"batch_size": 0})
    proc = run_cli("fastnet.train", "--resume", bad, "--epochs", "2", "--data-dir", tiny, env=env)
    assert_one_line_error(proc, 2, "the checkpoint's recipe", "batch_size must be an integer >= 1")
    assert "--batch-size" not in proc.stderr


# --- 6. a model file padded with a huge member, or claiming more than its layers need ------------

LOAD = "import sys; from fastnet import checkpoint; checkpoint.load(sys.argv[1]); print('loaded')"


def peak_rss_mb(*argv):
    """(CompletedProcess-like stdout+stderr, peak RSS in MB) of `python argv` (os.wait4's own rusage)."""
    proc = subprocess.Popen([sys.executable, *map(str, argv)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    return out, proc.returncode, usage.ru_maxrss / 1024


@pytest.mark.slow
def test_a_huge_extra_member_is_never_read(model, tmp_path):
    padded = shutil.copy(model, tmp_path / "padded.npz")
    header = io_npy_header((200 << 20,), "|u1")
    with zipfile.ZipFile(padded, "a", zipfile.ZIP_DEFLATED) as zf:
        for name in ("padding.npy", "padding.bin"):  # 200 MB of zeros each, ~200 KB deflated
            with zf.open(name, "w", force_zip64=True) as f:
                f.write(header if name.endswith(".npy") else b"")
                block = bytes(1 << 20)
                for _ in range(200):
                    f.write(block)
    assert os.path.getsize(padded) < 2 << 20
    out, code, base = peak_rss_mb("-c", LOAD, model)
    assert code == 0, out
    out, code, peak = peak_rss_mb("-c", LOAD, padded)
    assert code == 0 and "loaded" in out, out
    assert peak < base + 50, (peak, base)  # not 200 MB more


def io_npy_header(shape, descr):
    """The bytes of a version 1.0 .npy header for an array of shape and dtype descr."""
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def test_a_params_member_claiming_more_than_the_layers_need_is_refused(model, tmp_path, env, tiny):
    big = rewrite_model(model, tmp_path / "big.npz", params=np.zeros(10**6, np.float32))  # 556 needed
    with zipfile.ZipFile(shutil.copy(model, tmp_path / "liar.npz")) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members["params.npy"] = io_npy_header((10**9,), "<f4") + bytes(64)  # claims 4 GB, holds 64 bytes
    with zipfile.ZipFile(tmp_path / "liar.npz", "w") as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    for path, word in ((big, "more than a model file of these layers needs"), (tmp_path / "liar.npz", "larger")):
        proc = run_cli("fastnet.evaluate", path, "--data-dir", tiny, "--backend", "numpy", env=env)
        assert_one_line_error(proc, 2, word)


