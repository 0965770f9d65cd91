"""One threading plan for BLAS and Numba, so the two never oversubscribe the cores.

The plan (measured, see README): the numba backend runs a batch's parts on Numba's threads, each
part calling BLAS on one thread, so BLAS's own pool is held to one thread (its idle threads would
otherwise spin against Numba's). The numpy backend has no parallel work of its own: BLAS gets every
thread for the matrix products. A kernel module says which it wants in BLAS_THREADS.
"""

import os
import sys


def set_threads(n=None, blas=None):
    """Use n threads (default: all cores this process may run on) for Numba, and `blas` (default n)
    for BLAS; returns n."""
    if n is None:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    from threadpoolctl import threadpool_limits

    threadpool_limits(blas or n, user_api="blas")
    numba = sys.modules.get("numba")  # only where a backend already uses it
    if numba is not None:
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    return n
