"""One threading plan for BLAS and Numba, so the two never oversubscribe the cores.

The plan (docs/performance.md): the numba backend runs a batch's parts on Numba's threads, each
part calling BLAS on one thread, so BLAS's own pool is held to one thread (its idle threads would
otherwise spin against Numba's). The numpy backend has no parallel work of its own: BLAS gets every
thread for the matrix products. A kernel module says which it wants in BLAS_THREADS.
"""

import os
import sys


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
