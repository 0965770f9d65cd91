"""One threading plan for BLAS and Numba, so the two never oversubscribe the cores.

The plan (measured, see README): BLAS gets all threads for the matrix products; fastnet's Numba
kernels run serially between them, so BLAS's thread pool and Numba's never spin at the same time.
"""

import os
import sys


def set_threads(n=None):
    """Use n threads (default: all cores this process may run on) for BLAS and Numba; returns n."""
    if n is None:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    from threadpoolctl import threadpool_limits

    threadpool_limits(n)
    numba = sys.modules.get("numba")  # only where a backend already uses it
    if numba is not None:
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    return n
