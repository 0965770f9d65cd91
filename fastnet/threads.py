"""One threading plan for BLAS and Numba, so the two never oversubscribe the cores.

The plan (docs/performance.md): the numba backend runs a batch's parts on Numba's threads, each
part calling BLAS on one thread, so BLAS's own pool is held to one thread (its idle threads would
otherwise spin against Numba's). The numpy backend has no parallel work of its own: BLAS gets every
thread for the matrix products. A kernel module says which it wants in BLAS_THREADS.

How many threads when none are asked for is decided in one place, default_threads: the cores this
process may run on, fewer where whoever started the process gave it a share of them (a joblib/loky
worker, a Dask worker) or where the caller limits BLAS with threadpoolctl.

The command line sets the plan for its whole process (set_threads); the Python API sets it only
for the duration of a call (limited), so a library call leaves the caller's settings as they were.
"""

import contextlib
import os
import sys
import tempfile
import time

# What a parent process sets to give a worker its share of the cores: joblib's loky backend sets
# all of these in its workers (cores // n_jobs each), Dask's nanny the first three (to 1).
SHARE_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                   "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS", "NUMEXPR_NUM_THREADS")

_own_blas_limit = [None]  # the BLAS limit set_threads put in place: fastnet's own, not a caller's
_pools = [None, -1]  # threadpoolctl's controller of the loaded thread pools, and len(sys.modules) then


def _controller():
    """threadpoolctl's controller of the thread pools loaded in this process, made again only when
    modules were imported since (a new BLAS comes with a new extension module): finding the pools
    scans every loaded library, which every fit and predict would pay
    (docs/performance.md#constants-and-where-they-come-from)."""
    if _pools[1] != len(sys.modules):
        from threadpoolctl import ThreadpoolController

        _pools[0], _pools[1] = ThreadpoolController(), len(sys.modules)
    return _pools[0]


def available_cores():
    """The cores this process may run on (its CPU affinity), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1


def _blas_limit():
    """The smallest thread count of the BLAS libraries loaded so far (threadpoolctl), or None."""
    counts = [info["num_threads"] for info in _controller().info() if info.get("user_api") == "blas"]
    return min(counts) if counts else None


def default_threads():
    """The threads fastnet uses when none are asked for: the cores this process may run on (its
    affinity), capped by the share a parent gave it and by a BLAS limit the caller set.

    A share is a positive integer in any of SHARE_VARIABLES: joblib's loky workers get
    cores // n_jobs in all of them (so GridSearchCV(n_jobs=2) on 2 cores fits with 1 thread per
    worker), Dask workers 1 in OMP/MKL/OPENBLAS_NUM_THREADS. A BLAS limit below that
    (threadpoolctl.threadpool_limits around the call) caps it too, unless set_threads set it.
    """
    n = available_cores()
    for name in SHARE_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            n = min(n, int(value))
    blas = _blas_limit()
    if blas is not None and blas > 0 and blas != _own_blas_limit[0]:
        n = min(n, blas)
    return n


def _numba_threads(n, backend):
    """n capped by the threads Numba may run (NUMBA_NUM_THREADS at its import), and the note why;
    the numba module, or None where no backend uses it yet or the numpy backend runs."""
    numba = sys.modules.get("numba")  # only where a backend already uses it
    if numba is None or backend == "numpy":
        return n, "", None
    most = numba.config.NUMBA_NUM_THREADS
    if n > most:
        return most, f" (asked for {n}; Numba runs at most {most})", numba
    return n, "", numba


def set_threads(n=None, blas=None, backend=None):
    """Use n threads (default: default_threads()) for Numba, and `blas` (default n) for BLAS, for
    the rest of the process. Returns (threads that really run, a note for the run's header: empty,
    or why fewer)."""
    n = n or default_threads()
    _controller().limit(limits=blas or n, user_api="blas")
    _own_blas_limit[0] = blas or n
    n, note, numba = _numba_threads(n, backend)
    if numba is not None:
        numba.set_num_threads(n)
    return n, note


@contextlib.contextmanager
def limited(n=None, blas=None, backend=None):
    """set_threads for the duration of a with block, restoring BLAS's and Numba's thread counts
    after it. Yields the threads that really run."""
    n = n or default_threads()
    with _controller().limit(limits=blas or n, user_api="blas"):
        n, _, numba = _numba_threads(n, backend)
        if numba is None:
            yield n
            return
        before = numba.get_num_threads()
        numba.set_num_threads(n)
        try:
            yield n
        finally:
            numba.set_num_threads(before)


class CoreShare:
    """Shares the cores with whatever else runs on this machine. A step's threads work in lockstep:
    when another process takes one of their cores, the others wait for it at every barrier
    (docs/performance.md#sharing-the-cores). So a run uses no more threads than cores are free.

    Two signals, looked at after a step at most every `interval` seconds:
    - other fastnet runs: each registers itself in a per-user directory (a file named by its process
      id, removed at the end; files of processes that no longer exist are removed), and each takes
      cores // runs. The directory is used only when it is this user's own (_own_folder), and
      every file in it is made and removed relative to it, never through a link: else one note on
      stderr, and the run keeps its threads;
    - other busy processes: the kernel's count of running tasks (/proc/loadavg), averaged over the
      last samples, less this run's own threads.
    Results do not change with the number of threads: the batch is cut into a fixed number of parts
    (kernels.mlp_workspace), however many threads run them.

    A run registers on entering (before it loads its data, so that runs already going give up their
    threads before it starts to compete), and start(wanted) says how many threads it was cut for.
    """

    def __init__(self, apply, folder=None, interval=0.2):
        self.apply, self.interval = apply, interval
        self.folder = folder or os.path.join(_runtime_dir(), f"fastnet-{os.getuid()}")
        self.path = os.path.join(self.folder, str(os.getpid()))
        self.dir_fd = None  # the folder, opened once verified: every file operation is relative to it
        self.wanted = self.running = 1  # until start(): nothing to share
        self.checked = 0.0
        self.sampled = 0.0
        self.busy = 0.0  # moving average of running tasks that are not this run's threads

    def __enter__(self):
        self.dir_fd, why = _own_folder(self.folder)
        if self.dir_fd is None:
            if why:
                print(f"note: {self.folder} {why}: running without sharing the cores with other fastnet runs",
                      file=sys.stderr)
            self.path = None  # no shared directory of our own: run as asked
            return self
        name = str(os.getpid())
        try:
            try:  # a stale entry of a dead process that had this id; unlink never follows a link
                os.unlink(name, dir_fd=self.dir_fd)
            except FileNotFoundError:
                pass
            os.close(os.open(name, _NEW_FILE, 0o600, dir_fd=self.dir_fd))
        except OSError:
            self.path = None
            os.close(self.dir_fd)
            self.dir_fd = None
        return self

    def start(self, wanted):
        """The run is cut for `wanted` threads: run as many of them as its share allows now."""
        self.wanted = self.running = wanted
        self.checked = 0.0
        return self.poll()

    def __exit__(self, *exc):
        if self.dir_fd is not None:  # registered
            try:
                os.unlink(str(os.getpid()), dir_fd=self.dir_fd)
            except OSError:
                pass
            os.close(self.dir_fd)
            self.dir_fd = None
        if self.running != self.wanted:
            self.apply(self.wanted)

    def others(self):
        """How many other fastnet runs are registered and alive."""
        count = 0
        if self.dir_fd is None:
            return 0
        try:
            names = os.listdir(self.dir_fd)
        except OSError:
            return 0
        for name in names:
            if not name.isdigit() or int(name) == os.getpid():
                continue
            try:
                os.kill(int(name), 0)
                count += 1
            except ProcessLookupError:
                try:
                    os.unlink(name, dir_fd=self.dir_fd)  # inside the verified folder, never through a link
                except OSError:
                    pass
            except OSError:  # alive, but another user's
                count += 1
        return count

    def poll(self):
        """Run the threads this run's share allows now; returns that number."""
        now = time.monotonic()
        if self.wanted == 1:
            return 1
        if now - self.sampled >= self.interval / 8:
            self.sampled = now
            self.busy += (max(_running_tasks() - self.running, 0) - self.busy) / 4
        if self.path is None or now - self.checked < self.interval:
            return self.running
        self.checked = now
        cores = available_cores()
        share = min(cores // (1 + self.others()), cores - int(self.busy + 0.5))
        threads = max(1, min(self.wanted, share))
        if threads != self.running:
            self.apply(threads)
            self.running = threads
        return threads


# A registry file: created new (never an existing file, never through a link), closed in child processes.
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _own_folder(folder):
    """(an open descriptor of folder, "") once it is verified to be this user's own: a directory, not
    a link, owned by this user, that no one else may write to; made (mode 0700) when missing.
    Else (None, why): why is empty when the folder cannot be made at all, and says what is wrong
    with it when it is there but not safe. Another local user could make the shared runtime
    directory's fastnet-<uid> first and plant links named by upcoming process ids: a file opened
    through one would truncate whatever it points to."""
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None, ""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None, "is a link" if os.path.islink(folder) else "is not a directory"
    info = os.fstat(fd)
    why = ("belongs to another user" if info.st_uid != os.getuid()
           else "may be written by other users" if info.st_mode & 0o022 else "")
    if why:
        os.close(fd)
        return None, why
    return fd, ""


def _running_tasks():
    """Tasks running or ready to run on the whole machine right now (Linux /proc/loadavg), else 0."""
    try:
        with open("/proc/loadavg") as f:
            return int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return 0


def _runtime_dir():
    """A directory for small per-machine files: shared memory where there is one, else the temp dir."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


def numba_threads(n):
    """Run n of Numba's threads from now on (CoreShare's apply for the numba backend)."""
    import numba

    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
