"""fastnet.threads: default_threads (all the cores this process may use, or the share of them that a
joblib/loky or Dask worker was given, or fewer where the caller limits BLAS) and CoreShare (a run
takes no more threads than the cores that are free for it)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from threadpoolctl import threadpool_limits

from fastnet import threads
from fastnet.threads import SHARE_VARIABLES, available_cores, default_threads
from tests.helpers import ROOT, idx_set


@pytest.fixture
def no_share(monkeypatch):
    """No share in the environment, and no BLAS limit of fastnet's own (an earlier in-process
    command line's set_threads leaves one)."""
    for name in SHARE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "_own_blas_limit", [None])
    return monkeypatch


def test_all_usable_cores_by_default(no_share):
    import numpy  # noqa: F401 (loads BLAS, as any caller has)

    with threadpool_limits(available_cores(), user_api="blas"):
        assert default_threads() == available_cores()


@pytest.mark.parametrize("name", SHARE_VARIABLES)
def test_a_share_set_by_the_parent_caps_it(no_share, name):
    no_share.setenv(name, "1")
    assert default_threads() == 1


@pytest.mark.parametrize("value", ["0", "", "two", "-3"])
def test_meaningless_shares_are_ignored(no_share, value):
    no_share.setenv("OMP_NUM_THREADS", value)
    with threadpool_limits(available_cores(), user_api="blas"):
        assert default_threads() == available_cores()


def test_a_callers_blas_limit_caps_it_but_not_fastnets_own(no_share):
    import numpy  # noqa: F401

    with threadpool_limits(1, user_api="blas"):
        assert default_threads() == 1
    with threadpool_limits(available_cores(), user_api="blas"):  # restores what set_threads changes
        threads.set_threads(None, 1, "numba")  # the command line's plan: BLAS on one thread under Numba's
        assert default_threads() == available_cores()


def test_limited_restores_blas_and_numba():
    numba = pytest.importorskip("numba")
    from threadpoolctl import threadpool_info

    import kernels.jit  # noqa: F401 (the numba backend in use, as after get_backend("numba"))

    before = numba.get_num_threads(), [i["num_threads"] for i in threadpool_info()]
    with threads.limited(1, 1, "numba") as n:
        assert n == 1 and numba.get_num_threads() == 1
        assert all(i["num_threads"] == 1 for i in threadpool_info() if i["user_api"] == "blas")
    assert (numba.get_num_threads(), [i["num_threads"] for i in threadpool_info()]) == before


def test_inside_loky_workers_each_gets_its_share():
    joblib = pytest.importorskip("joblib")
    got = joblib.Parallel(n_jobs=2, backend="loky")(joblib.delayed(default_threads)() for _ in range(2))
    assert got == [max(joblib.cpu_count() // 2, 1)] * 2


# CoreShare

def recorder():
    applied = []
    return applied, applied.append


@pytest.fixture
def quiet_machine(monkeypatch):
    """No other running tasks, two cores."""
    monkeypatch.setattr(threads, "_running_tasks", lambda: 0)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)


def test_alone_a_run_keeps_its_threads(tmp_path, quiet_machine):
    applied, apply = recorder()
    with threads.CoreShare(apply, folder=str(tmp_path), interval=0) as share:
        assert (tmp_path / str(os.getpid())).exists(), "registered on entering, before start"
        assert share.start(2) == 2 and share.poll() == 2
    assert applied == [] and not list(tmp_path.iterdir()), "registered while running, removed after"


def test_a_second_live_run_halves_the_threads_and_a_dead_one_is_forgotten(tmp_path, quiet_machine):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / str(other.pid)).write_text("2")
        applied, apply = recorder()
        with threads.CoreShare(apply, folder=str(tmp_path), interval=0) as share:
            assert share.start(2) == 1 and applied == [1]
            other.kill()
            other.wait()
            assert share.poll() == 2 and applied == [1, 2]
            assert not (tmp_path / str(other.pid)).exists(), "a dead run's file is removed"
    finally:
        other.kill()


def test_busy_cores_lower_the_threads_and_free_ones_restore_them(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    running = {"tasks": 2 + 3}  # this run's two threads and three other busy tasks
    monkeypatch.setattr(threads, "_running_tasks", lambda: running["tasks"])
    applied, apply = recorder()
    with threads.CoreShare(apply, folder=str(tmp_path), interval=0) as share:
        share.start(2)
        for _ in range(20):  # the average follows the samples
            share.poll()
        assert share.running == 1 and applied[-1] == 1
        running["tasks"] = 1
        for _ in range(20):
            share.poll()
        assert share.running == 2 and applied[-1] == 2


def test_one_thread_wanted_is_never_polled(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "_running_tasks", lambda: pytest.fail("polled a one-thread run"))
    applied, apply = recorder()
    with threads.CoreShare(apply, folder=str(tmp_path), interval=0) as share:
        assert share.poll() == 1, "before start: nothing to share"
        assert share.start(1) == 1 and share.poll() == 1
    assert applied == []


def test_an_unwritable_folder_means_running_as_asked(tmp_path, quiet_machine):
    blocker = tmp_path / "file"
    blocker.write_text("")
    applied, apply = recorder()
    with threads.CoreShare(apply, folder=str(blocker / "sub"), interval=0) as share:
        assert share.start(2) == 2
    assert applied == []


def test_the_numpy_backend_trains_without_loading_numba(tmp_path):
    """A workspace for the numpy backend needs no first-layer pieces: making one must not import
    Numba, nor start its thread pool (which loads libgomp: it complains about a bad OMP_NUM_THREADS)."""
    code = ("import sys, numpy as np, kernels\n"
            "from kernels import reference\n"
            "from fastnet.model import MLP, Workspace, loss_and_grads\n"
            "model = MLP.he_init((6, 4, 3), np.random.default_rng(0), np.dtype(np.float32))\n"
            "ws = Workspace(model.sizes, 5, model.dtype)\n"
            "images, labels = np.arange(30, dtype=np.uint8).reshape(5, 6), np.array([0, 1, 2, 0, 1], np.uint8)\n"
            "loss_and_grads(model, reference, images, np.arange(5), labels, ws)\n"
            "assert ws.buffers.partials.size == 0\n"
            "print(sorted(m for m in sys.modules if m == 'numba' or m.startswith('numba.')))\n")
    root = str(ROOT)
    env = dict(os.environ, OMP_NUM_THREADS="abc", PYTHONPATH=root)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]" and done.stderr == ""


# The registry belongs to this user alone: never written through a link, nor in another user's folder

def _victim(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    return victim


def _refused(folder, capsys):
    """Enter a CoreShare on folder: it must run as asked (no sharing), say why in one note line, and
    have written nothing."""
    applied, apply = recorder()
    with threads.CoreShare(apply, folder=str(folder), interval=0) as share:
        assert share.path is None and share.start(2) == 2 and share.others() == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"note: {folder} ") and "without sharing" in err, err
    assert applied == []
    return err


def test_a_folder_of_another_user_is_not_used(tmp_path, quiet_machine, capsys):
    folder = tmp_path / "fastnet-x"
    folder.mkdir(mode=0o700)
    victim = _victim(tmp_path)
    (folder / str(os.getpid())).symlink_to(victim)
    if os.geteuid() == 0:
        os.chown(folder, 12345, 12345)  # made first by another user
    else:  # no way to give a folder away: one that is another user's already
        folder = Path("/")
    assert "another user" in _refused(folder, capsys)
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o720, 0o702])
def test_a_folder_others_may_write_to_is_not_used(tmp_path, quiet_machine, capsys, mode):
    folder = tmp_path / "fastnet-x"
    folder.mkdir()
    folder.chmod(mode)
    victim = _victim(tmp_path)
    (folder / str(os.getpid())).symlink_to(victim)
    (folder / "1").symlink_to(victim)  # a dead process's name: cleanup must not touch it either
    assert "written by other users" in _refused(folder, capsys)
    assert victim.read_text() == "precious\n" and (folder / "1").is_symlink()


def test_a_symlinked_folder_is_not_used(tmp_path, quiet_machine, capsys):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    (real / dead).write_text("someone's file named like a dead process\n")
    link = tmp_path / "fastnet-x"
    link.symlink_to(real)
    assert "is a link" in _refused(link, capsys)
    assert (real / dead).read_text() == "someone's file named like a dead process\n"
    assert sorted(p.name for p in real.iterdir()) == [dead]


def test_a_file_in_place_of_the_folder_is_not_used(tmp_path, quiet_machine, capsys):
    folder = _victim(tmp_path)
    assert "not a directory" in _refused(folder, capsys)
    assert folder.read_text() == "precious\n"


def test_a_link_planted_as_our_own_pid_is_replaced_not_followed(tmp_path, quiet_machine, capsys):
    """In our own folder (only we or root could plant it; or a stale entry): the link is removed and
    a file of our own made in its place; the file it pointed to is untouched."""
    folder = tmp_path / "fastnet-x"
    folder.mkdir(mode=0o700)
    victim = _victim(tmp_path)
    (folder / str(os.getpid())).symlink_to(victim)
    applied, apply = recorder()
    with threads.CoreShare(apply, folder=str(folder), interval=0) as share:
        mine = folder / str(os.getpid())
        assert share.path is not None and mine.is_file() and not mine.is_symlink()
        assert mine.stat().st_mode & 0o777 == 0o600
    assert not list(folder.iterdir()) and victim.read_text() == "precious\n"
    assert capsys.readouterr().err == ""


def test_cleanup_unlinks_inside_the_verified_folder_even_if_its_path_is_swapped(tmp_path, quiet_machine):
    """Every operation is relative to the folder opened and verified on entering: a folder swapped
    for a link afterwards (renamed away, a link put in its place) does not redirect the cleanup."""
    folder = tmp_path / "fastnet-x"
    folder.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    (elsewhere / dead).write_text("not ours\n")
    applied, apply = recorder()
    with threads.CoreShare(apply, folder=str(folder), interval=0) as share:
        share.start(2)
        folder.rename(tmp_path / "moved")
        folder.symlink_to(elsewhere)
        assert share.others() == 0
    assert (elsewhere / dead).read_text() == "not ours\n"
    assert not list((tmp_path / "moved").iterdir())


def test_a_new_folder_is_private(tmp_path, quiet_machine):
    folder = tmp_path / "fastnet-x"
    with threads.CoreShare(lambda n: None, folder=str(folder), interval=0) as share:
        assert share.path is not None
        assert folder.stat().st_mode & 0o777 == 0o700 and folder.stat().st_uid == os.getuid()


# The whole command: `python -m fastnet.train` with its runtime directory prepared by "another user"
PLANTED_RUN = """
import os, sys
from fastnet import cli, threads, train
runtime, victim, how = sys.argv[1:4]
threads._runtime_dir = lambda: runtime
folder = os.path.join(runtime, f"fastnet-{os.getuid()}")
os.symlink(victim, os.path.join(folder, str(os.getpid())))  # a link named by this very run's process id
if how == "other-user":
    os.chown(folder, 12345, 12345)
cli.run(train.main, sys.argv[4:])
"""


@pytest.mark.parametrize("how", ["other-user", "mode-0777", "own-0700"])
def test_a_planted_registry_never_truncates_a_file_and_the_run_trains(tmp_path, how):
    if how == "other-user" and os.geteuid() != 0:
        pytest.skip("giving a folder to another user needs root")
    data = idx_set(tmp_path / "data", 200, 40)
    runtime = tmp_path / "shm"
    folder = runtime / f"fastnet-{os.getuid()}"
    folder.mkdir(parents=True)
    folder.chmod(0o777 if how == "mode-0777" else 0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    root = str(ROOT)
    env = dict(os.environ, PYTHONPATH=root, OMP_NUM_THREADS="1", FASTNET_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", PLANTED_RUN, str(runtime), str(victim), how, "--epochs", "1",
                           "--quiet", "--layers", "16,8,3", "--backend", "numpy", "--data-dir", str(data)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("test accuracy"), done.stderr
    assert victim.read_text() == "precious\n"
    if how == "own-0700":  # our own folder: the link is replaced by our file, which is removed at the end
        assert done.stderr == "" and not list(folder.iterdir())
    else:
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"note: {folder} "), done.stderr
