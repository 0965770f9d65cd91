"""Writing files safely (the one helper every writer in fastnet uses), and reading a .npy header safely.

A file is written to a temporary name in its destination's own directory (a rename across file
systems would fail), flushed, fsynced and renamed over the destination, so a reader, or a crash at
any moment, sees either the old complete file or the new complete one. Only regular files are
ever replaced: a device node, a directory or a socket at the destination is refused.
"""

import os
import signal
import stat
import tempfile
import threading
from contextlib import contextmanager

import numpy as np

from .errors import InputError

NPY_HEADER = 1 << 16  # bytes allowed for a .npy header beside its data


def _umask():
    """The process's umask (reading it means setting it: set 0, then put it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def signals_held():
    """Stop signals wait while the block runs (delivered right after it): a Ctrl-C between creating
    the temporary file and naming it, or while removing it, would leave it behind; one inside
    zipfile's writing (checkpoint.save) turns into a ValueError and a traceback.

    Their Python handlers are swapped for one that notes them, and the noted ones are raised again
    once the handlers are back. Blocking them in this thread (pthread_sigmask) is not enough: any of
    the process's other threads (BLAS's, Numba's) may take a signal sent to the process, and Python
    then runs the handler in this thread anyway."""
    if threading.current_thread() is not threading.main_thread():  # handlers run in the main thread only
        yield
        return
    noted, before = [], {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        handler = signal.getsignal(sig)
        if handler not in (signal.SIG_IGN, None):  # ignored stays ignored; None: a handler set outside Python
            before[sig] = signal.signal(sig, lambda signum, frame: noted.append(signum))
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        for signum in dict.fromkeys(noted):
            signal.raise_signal(signum)


def check_destination(path, what="output", probe=True):
    """InputError unless path can become a regular file: its directory exists and is writable, and
    nothing but a regular file is there now. Called before work starts, so a bad path costs nothing.

    With probe, an empty temporary file is created in the directory and removed at once: the only
    test that tells for root too (permission bits do not stop root; /proc, /sys, an immutable or
    read-only-mounted directory do)."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise InputError(f"{what}: cannot write to an empty path")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"{what}: cannot write {path}: directory {folder} does not exist")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise InputError(f"{what}: cannot write {path}: {exc.strerror or exc}") from None
    if mode is not None and not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise InputError(f"{what}: cannot write {path}: it is {kind}; fastnet only writes regular files")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{what}: cannot write {path}: directory {folder} is not writable")
    if probe:
        try:
            fd, name = tempfile.mkstemp(prefix=".tmp-", suffix="-probe", dir=folder)
        except OSError as exc:
            raise InputError(f"{what}: cannot write {path}: cannot create a file in {folder} "
                             f"({exc.strerror or exc})") from None
        os.close(fd)
        os.unlink(name)
    return path


@contextmanager
def atomic_write(path, mode="wb", what="output"):
    """Yield a file open on a temporary name beside path; on a clean exit it is fsynced and renamed
    over path. Any exception (Ctrl-C included) removes the temporary file and leaves path as it was;
    an OSError becomes one InputError line. The file gets the permissions of any new file
    (0666 less the umask), not the temporary file's private 0600. A process killed outright
    (SIGKILL) may leave one hidden .tmp-* file beside path: it could be another process's write in progress,
    so it is never guessed stale and removed."""
    path = check_destination(path, what, probe=False)  # the temporary file below is the probe
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        with signals_held():
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=f"-{os.path.basename(path)}", dir=folder)
        with os.fdopen(fd, mode) as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            yield f
            f.flush()
            os.fsync(f.fileno())
        check_destination(path, what, probe=False)  # nothing else appeared there meanwhile
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise InputError(f"{what}: cannot write {path}: {exc.strerror or exc}") from None
    finally:
        with signals_held():
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def npy_header(zf, info, path, key):
    """(shape, dtype) from a member's .npy header, read without its data; pickles are refused."""
    try:
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(f, max_header_size=NPY_HEADER)
    except ValueError as exc:
        raise InputError(f"{path}: '{key}' is not a valid NumPy array ({exc})") from None
    if dtype.hasobject:
        raise InputError(f"{path} holds pickled objects; fastnet never loads those")
    return shape, dtype
