"""threads.CoreShare: a run takes no more threads than the cores that are free for it."""

import os
import subprocess
import sys

import pytest

from fastnet import threads


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
    with threads.CoreShare(2, apply, folder=str(tmp_path), interval=0) as share:
        assert share.poll() == 2
        assert (tmp_path / str(os.getpid())).read_text() == "2"
    assert applied == [] and not list(tmp_path.iterdir()), "registered while running, removed after"


def test_a_second_live_run_halves_the_threads_and_a_dead_one_is_forgotten(tmp_path, quiet_machine):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / str(other.pid)).write_text("2")
        applied, apply = recorder()
        with threads.CoreShare(2, apply, folder=str(tmp_path), interval=0) as share:
            assert share.poll() == 1 and applied == [1]
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
    with threads.CoreShare(2, apply, folder=str(tmp_path), interval=0) as share:
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
    with threads.CoreShare(1, apply, folder=str(tmp_path), interval=0) as share:
        assert share.poll() == 1
    assert applied == []


def test_an_unwritable_folder_means_running_as_asked(tmp_path, quiet_machine):
    blocker = tmp_path / "file"
    blocker.write_text("")
    applied, apply = recorder()
    with threads.CoreShare(2, apply, folder=str(blocker / "sub"), interval=0) as share:
        assert share.poll() == 2
    assert applied == []
