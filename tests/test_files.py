"""fastnet.files.atomic_write: a signal at any moment leaves the old file whole and no temporary file."""

import os
import signal
import tempfile

import pytest

from fastnet import files


@pytest.mark.parametrize("moment", ["created", "removing"])
def test_a_ctrl_c_while_the_temporary_file_is_made_or_removed_leaves_nothing_behind(tmp_path, monkeypatch, moment):
    """A Ctrl-C right after mkstemp made the file (before its name is kept) or right before the
    clean-up removes it: the signal waits for that moment to pass, so the file is still removed.
    Before, the first left a '.tmp-*' file beside the destination (seen in the hostile tests)."""
    target = tmp_path / "out.json"
    target.write_text("old")
    real_mkstemp, real_exists = tempfile.mkstemp, os.path.exists

    def ctrl_c():
        os.kill(os.getpid(), signal.SIGINT)

    def mkstemp(*args, **kw):
        made = real_mkstemp(*args, **kw)
        if moment == "created":
            ctrl_c()  # Python runs the handler (KeyboardInterrupt) at its next chance
        return made

    def exists(path):
        if moment == "removing" and os.path.basename(str(path)).startswith(".tmp-"):
            ctrl_c()
        return real_exists(path)

    monkeypatch.setattr(files.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(files.os.path, "exists", exists)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with files.atomic_write(target, "w") as f:
                f.write("new")
                if moment == "removing":
                    raise KeyboardInterrupt  # the write is cut: the clean-up runs
    finally:
        signal.signal(signal.SIGINT, previous)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
