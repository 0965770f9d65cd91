"""One threading plan for BLAS and Numba, so the two never oversubscribe the cores.

The plan (docs/performance.md): the numba backend runs a batch's parts on Numba's threads, each
part calling BLAS on one thread, so BLAS's own pool is held to one thread (its idle threads would
otherwise spin against Numba's). The numpy backend has no parallel work of its own: BLAS gets every
thread for the matrix products. A kernel module says which it wants in BLAS_THREADS.
"""

import os
import sys
import tempfile
import time


def available_cores():
    """The cores this process may run on (its CPU affinity), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1


def set_threads(n=None, blas=None, backend=None):
    """Use n threads (default: the cores this process may use) for Numba, and `blas` (default n) for
    BLAS. Returns (threads that really run, a note for the run's header: empty, or why fewer)."""
    asked = n
    n = n or available_cores()
    from threadpoolctl import threadpool_limits

    threadpool_limits(blas or n, user_api="blas")
    note = ""
    numba = sys.modules.get("numba")  # only where a backend already uses it
    if numba is not None and backend != "numpy":
        most = numba.config.NUMBA_NUM_THREADS
        if n > most:
            note = f" (asked for {asked}; Numba runs at most {most})"
            n = most
        numba.set_num_threads(n)
    return n, note


class CoreShare:
    """Shares the cores with whatever else runs on this machine. A step's threads work in lockstep:
    when another process takes one of their cores, the others wait for it at every barrier (two
    default runs at once: epochs ~100x slower). So a run uses no more threads than cores are free.

    Two signals, looked at after a step at most every `interval` seconds:
    - other fastnet runs: each registers itself in a per-user directory (a file named by its process
      id, removed at the end; files of processes that no longer exist are removed), and each takes
      cores // runs;
    - other busy processes: the kernel's count of running tasks (/proc/loadavg), averaged over the
      last samples, less this run's own threads.
    Results do not change with the number of threads: the batch is cut into a fixed number of parts
    (kernels.mlp_workspace), however many threads run them.
    """

    def __init__(self, wanted, apply, folder=None, interval=0.5):
        self.wanted, self.apply, self.interval = wanted, apply, interval
        self.folder = folder or os.path.join(_runtime_dir(), f"fastnet-{os.getuid()}")
        self.path = os.path.join(self.folder, str(os.getpid()))
        self.running = wanted
        self.checked = 0.0
        self.sampled = 0.0
        self.busy = 0.0  # moving average of running tasks that are not this run's threads

    def __enter__(self):
        try:
            os.makedirs(self.folder, mode=0o700, exist_ok=True)
            with open(self.path, "w") as f:
                f.write(str(self.wanted))
        except OSError:
            self.path = None  # no shared directory: run as asked
        self.checked = 0.0
        self.poll()
        return self

    def __exit__(self, *exc):
        if self.path is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
        if self.running != self.wanted:
            self.apply(self.wanted)

    def others(self):
        """How many other fastnet runs are registered and alive."""
        count = 0
        try:
            names = os.listdir(self.folder)
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
                    os.unlink(os.path.join(self.folder, name))
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
