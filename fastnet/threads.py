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

# What a parent process sets to give a worker its share of the cores: joblib's loky backend sets
# all of these in its workers (cores // n_jobs each), Dask's nanny the first three (to 1).
SHARE_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                   "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS", "NUMEXPR_NUM_THREADS")

_own_blas_limit = [None]  # the BLAS limit set_threads put in place: fastnet's own, not a caller's


def available_cores():
    """The cores this process may run on (its CPU affinity), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1


def _blas_limit():
    """The smallest thread count of the BLAS libraries loaded so far (threadpoolctl), or None."""
    from threadpoolctl import threadpool_info

    counts = [info["num_threads"] for info in threadpool_info() if info.get("user_api") == "blas"]
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
    from threadpoolctl import threadpool_limits

    threadpool_limits(blas or n, user_api="blas")
    _own_blas_limit[0] = blas or n
    n, note, numba = _numba_threads(n, backend)
    if numba is not None:
        numba.set_num_threads(n)
    return n, note


@contextlib.contextmanager
def limited(n=None, blas=None, backend=None):
    """set_threads for the duration of a with block, restoring BLAS's and Numba's thread counts
    after it. Yields the threads that really run."""
    from threadpoolctl import threadpool_limits

    n = n or default_threads()
    with threadpool_limits(blas or n, user_api="blas"):
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
